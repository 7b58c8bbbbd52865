"""Generation parameters inside PNG files.

Every PNG paintbridge writes carries two text chunks:

- `parameters`: AUTOMATIC1111's human-readable format, which image viewers, civitai and the
  A1111/Forge "PNG info" tabs understand::

      a cat in a hat
      Negative prompt: blurry
      Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: sd15

- `paintbridge`: an iTXt chunk with the full parameters as JSON, which `read_parameters` reads
  back exactly (the A1111 text is for people and other tools, the JSON is for us).

`save_png` is atomic: a crash or a full disk never leaves a half-written PNG at the target path.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from paintbridge.atomicfile import write_atomic
from paintbridge.engine.schedulers import A1111_NAMES
from paintbridge.errors import InvalidRequest, PaintbridgeError

__all__ = [
    "COMPRESS_LEVEL",
    "JSON_KEY",
    "TEXT_KEY",
    "fsync_folder",
    "parameters_text",
    "png_bytes",
    "read_parameters",
    "save_png",
]

TEXT_KEY = "parameters"  # AUTOMATIC1111's chunk name
JSON_KEY = "paintbridge"
# zlib level 1, not Pillow's 6: a 512 px picture encodes 5-10x faster (40 ms instead of 170-400
# ms on a busy 2-core CPU) for files 0-10% larger; a job's result waits for this before `done`.
COMPRESS_LEVEL = 1

# Our parameter name (and the names other tools use for it) -> A1111 label, in A1111's order.
_LABELS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("steps", "num_inference_steps"), "Steps"),
    (("scheduler", "sampler"), "Sampler"),
    (("guidance", "guidance_scale", "cfg_scale"), "CFG scale"),
    (("seed",), "Seed"),
    (("size",), "Size"),
    (("model",), "Model"),
    (("strength", "denoising_strength"), "Denoising strength"),
)
# Consumed by the prompt lines, the Size field, or not worth a label.
_SKIP = {"prompt", "negative_prompt", "width", "height", "image", "mask"}


def _format_value(value: Any) -> str:
    """One value as A1111 writes it: quoted (JSON) when it holds a comma, colon or quote."""
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:g}" if abs(value) < 1e16 else repr(value)
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    if any(c in text for c in ',:"'):
        text = json.dumps(text, ensure_ascii=False)
    return text


def _label(key: str) -> str:
    """`clip_skip` -> `Clip skip` (A1111 labels are sentence case)."""
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def parameters_text(parameters: Mapping[str, Any]) -> str:
    """The parameters in AUTOMATIC1111's format: prompt, `Negative prompt:` line, fields line.

    Known fields come first in A1111's order (Steps, Sampler, CFG scale, Seed, Size, Model,
    Denoising strength); every other non-empty value follows as `Label: value`. Denoising
    strength is left out for txt2img, where it means nothing.
    """
    params = dict(parameters)
    lines = [str(params.get("prompt") or "")]
    negative = params.get("negative_prompt") or ""
    if negative:
        lines.append(f"Negative prompt: {negative}")

    if "size" not in params and params.get("width") and params.get("height"):
        params["size"] = f"{params['width']}x{params['height']}"
    if params.get("task") == "txt2img":
        for key in ("strength", "denoising_strength"):
            params.pop(key, None)

    fields: list[str] = []
    used: set[str] = set(_SKIP)
    for names, label in _LABELS:
        for name in names:
            if name in used:
                continue
            if params.get(name) is not None:
                value = params[name]
                if label == "Sampler":  # A1111's name, so its tools know the sampler
                    value = A1111_NAMES.get(str(value), value)
                fields.append(f"{label}: {_format_value(value)}")
                used.update(names)
                break
        used.update(names)
    for key, value in params.items():
        if key in used or value is None or value == "":
            continue
        fields.append(f"{_label(key)}: {_format_value(value)}")
    if fields:
        lines.append(", ".join(fields))
    return "\n".join(lines)


def _json_text(parameters: Mapping[str, Any]) -> str:
    return json.dumps(dict(parameters), ensure_ascii=False, default=str, sort_keys=False)


def png_bytes(image: Image.Image, parameters: Mapping[str, Any]) -> bytes:
    """Encode `image` as PNG with both text chunks (see the module docstring)."""
    chunks = _text_chunks(parameters)
    if image.mode not in ("RGBA", "RGB", "L", "LA", "I;16", "P", "1"):
        image = image.convert("RGBA")
    import numpy as np

    from paintbridge import pngwrite  # numpy: not imported by commands that write no PNG

    if image.mode in pngwrite.COLOR_TYPES:  # every result: the fast encoder
        return pngwrite.png_file(np.asarray(image), image.mode, chunks, COMPRESS_LEVEL)
    info = PngImagePlugin.PngInfo()
    for kind, payload in chunks:
        info.add(kind, payload)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=COMPRESS_LEVEL)
    return buffer.getvalue()


def _text_chunks(parameters: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """The A1111 text (tEXt when it fits Latin-1, the form most tools read; else iTXt, as A1111
    does) and our JSON (iTXt, compressed)."""
    text = parameters_text(parameters)
    try:
        latin = text.encode("latin-1")
    except UnicodeEncodeError:
        first = (b"iTXt", _itxt(TEXT_KEY, text, compress=False))
    else:
        first = (b"tEXt", TEXT_KEY.encode("latin-1") + b"\0" + latin)
    return [first, (b"iTXt", _itxt(JSON_KEY, _json_text(parameters), compress=True))]


def _itxt(key: str, text: str, *, compress: bool) -> bytes:
    # keyword, compression flag and method, no language tag, no translated keyword, the text
    data = text.encode("utf-8")
    flag = b"\1\0" if compress else b"\0\0"
    return (
        key.encode("latin-1") + b"\0" + flag + b"\0\0" + (zlib.compress(data) if compress else data)
    )


def save_png(
    image: Image.Image,
    path: str | os.PathLike[str],
    parameters: Mapping[str, Any],
    *,
    sync_folder: bool = True,
) -> Path:
    """Write the PNG atomically: a temp file in the same folder, fsync, then `os.replace`, then
    fsync the folder so the new name survives a crash (`sync_folder=False`: the caller calls
    `fsync_folder` once after writing several files).

    Raises PaintbridgeError (code `output_not_writable`) when the folder is missing or not
    writable; no partial file is left behind on any error.
    """
    target = Path(path)
    data = png_bytes(image, parameters)  # encode first: an encoding error touches no file
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise PaintbridgeError(
            f"output folder {str(folder)!r} does not exist", code="output_not_writable"
        )
    try:
        write_atomic(target, data)  # a random O_EXCL temp name: never clobbers anything else
    except OSError as exc:
        raise PaintbridgeError(
            f"cannot write {str(target)!r}: {exc.strerror or exc}", code="output_not_writable"
        ) from exc
    if sync_folder:
        fsync_folder(folder)
    return target


def fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_parameters(source: str | os.PathLike[str] | bytes) -> dict[str, Any]:
    """The parameters from a paintbridge PNG's JSON chunk; `{}` when it has none.

    Raises InvalidRequest when `source` is not a readable image.
    """
    try:
        if isinstance(source, bytes):
            image = Image.open(io.BytesIO(source))
        else:
            image = Image.open(source)
        with image:
            image.load()  # text chunks after the image data are only read with the pixels
            text = getattr(image, "text", {}).get(JSON_KEY)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        name = "data" if isinstance(source, bytes) else repr(str(source))
        raise InvalidRequest(f"cannot read PNG parameters from {name}: {exc}") from exc
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
