"""AUTOMATIC1111 requests -> paintbridge ones, and results back. Pure: no HTTP, no torch.

Sampler names map to the engine's schedulers; images come as base64 (or data: URLs) of a PNG,
JPEG or WebP file and are decoded only after their size passes the limits; a mask follows
A1111's rules (white = repaint, or its alpha when it has one; blur, invert); an "only masked"
inpaint repaints a context box around the mask and is pasted back over the whole picture.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from paintbridge.engine.schedulers import A1111_NAMES, DEFAULT, scheduler_names
from paintbridge.engine.types import Limits
from paintbridge.errors import InvalidRequest
from paintbridge.hostkit.geometry import Box, context_box
from paintbridge.imageops import flatten_layer, to_mode, unreadable_reason
from paintbridge.jobs import JobView
from paintbridge.server.a1111_schemas import Img2ImgBody, Txt2ImgBody
from paintbridge.server.payloads import TooLarge

__all__ = [
    "A1111_SCHEDULERS",
    "A1111_SAMPLERS",
    "Crop",
    "b64_bytes",
    "check_image_size",
    "check_size",
    "decode_a1111_image",
    "engine_seed",
    "flatten",
    "info_object",
    "model_name",
    "one_step_strength",
    "parse_infotext",
    "paste_back",
    "prepare_mask",
    "resolve_sampler",
]

# A1111 sampler name -> (engine scheduler, its Karras twin or None). Lower-cased on lookup.
A1111_SAMPLERS: dict[str, tuple[str, str | None]] = {
    "Euler a": ("euler_a", None),
    "Euler": ("euler", None),
    "DDIM": ("ddim", None),
    "DPM++ 2M": ("dpm++", "dpm++_karras"),
    "DPM++ 2M Karras": ("dpm++_karras", None),
    "DPM++ 2M SDE": ("dpm++_sde_karras", None),
    "DPM++ 2M SDE Karras": ("dpm++_sde_karras", None),
    "DPM++ SDE": ("dpm++_sde_karras", None),
    "DPM++ SDE Karras": ("dpm++_sde_karras", None),
    "LMS": ("lms", None),
    "Heun": ("heun", None),
    "PLMS": ("pndm", None),
    "UniPC": ("unipc", None),
    "LCM": ("lcm", None),
}
_ALIASES = {"k_euler_a": "Euler a", "k_euler": "Euler", "k_lms": "LMS", "k_heun": "Heun"}
# A1111 >= 1.9 names the noise schedule apart from the sampler.
A1111_SCHEDULERS: dict[str, str] = {"automatic": "Automatic", "karras": "Karras"}
_LOWER = {name.lower(): name for name in A1111_SAMPLERS} | {
    alias: name for alias, name in _ALIASES.items()
}


def resolve_sampler(
    sampler: str | None, schedule: str | None, notes: list[str]
) -> tuple[str | None, str]:
    """(engine scheduler or None for the model's default, the A1111 name to report).

    Engine names (`euler_a`) are taken as they are; an unknown or uninstalled one falls back
    to the model's default with a sentence in `notes`.
    """
    available = scheduler_names()
    if not sampler:
        return None, "Default"
    if sampler in available and sampler != DEFAULT:
        return sampler, sampler
    name = _LOWER.get(sampler.strip().lower())
    if name is None:
        notes.append(
            f"sampler {sampler!r} is not available: the model's default scheduler was used "
            f"(samplers: {', '.join(A1111_SAMPLERS)})"
        )
        return None, "Default"
    engine, karras = A1111_SAMPLERS[name]
    wanted = (schedule or "automatic").strip().lower()
    if wanted == "karras" and karras is not None:
        engine, name = karras, f"{name} Karras"
    elif wanted not in A1111_SCHEDULERS and not (wanted == "karras" and "karras" in engine):
        notes.append(f"schedule type {schedule!r} is not available: its sampler's own was used")
    if engine not in available:
        notes.append(
            f"sampler {name!r} needs a package this server lacks (`pip install scipy` for LMS): "
            "the model's default scheduler was used"
        )
        return None, "Default"
    return engine, name


_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{6,64}\]$")


def model_name(title: str) -> str:
    """A model as A1111 clients name it: a title `name.safetensors [hash]` -> `name`."""
    name = _HASH_SUFFIX.sub("", title.strip())
    # only `.safetensors`, and not from `./sd15.safetensors` (a path, as /sd-models lists a
    # file named like a preset): `x.SAFETENSORS` and those are listed, and found, whole
    return name if name.startswith("./") else name.removesuffix(".safetensors")


_WHITESPACE = re.compile(r"\s+")


def b64_bytes(text: str, field: str) -> bytes:
    """The bytes of a base64 text or a base64 data: URL; line breaks and spaces in it are
    dropped, as A1111 does (MIME base64, `base64 file.png`)."""
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise InvalidRequest(f"`{field}` is a data: URL without base64 data")
    text = text.strip()
    if "\n" in text or "\r" in text or " " in text or "\t" in text:
        text = _WHITESPACE.sub("", text)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            f"`{field}` is not base64 ({exc}): send a PNG file in base64 or a data: URL"
        ) from exc


def check_image_size(size: tuple[int, int], field: str, limits: Limits) -> None:
    """Raise TooLarge for an image (`field`, still undecoded) over the server's limits."""
    width, height = size
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise TooLarge(
            f"`{field}` is {width}x{height}; the server accepts at most {limits.max_side} "
            f"px a side and {limits.max_pixels} pixels: send a smaller image"
        )


def decode_a1111_image(text: str, field: str, limits: Limits) -> Image.Image:
    """A base64 PNG/JPEG/WebP (or data: URL) as an RGBA or L... image, size checked first,
    turned upright by its EXIF orientation as A1111 does."""
    raw = b64_bytes(text, field)
    try:
        with Image.open(io.BytesIO(raw), formats=["PNG", "JPEG", "WEBP"]) as opened:
            width, height = opened.size
            check_image_size(opened.size, field, limits)
            opened.load()
            image = _upright(opened)
    except (TooLarge, InvalidRequest):
        raise
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"`{field}`: the image is too large to decode ({exc})") from exc
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as exc:
        raise InvalidRequest(
            f"`{field}` is not a readable PNG, JPEG or WebP image: {unreadable_reason(exc)}"
        ) from exc
    if width < 1 or height < 1:
        raise InvalidRequest(f"`{field}` is empty ({width}x{height})")
    return image


def _upright(image: Image.Image) -> Image.Image:
    """A copy of `image` as it is shown: rotated or flipped by its EXIF orientation."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block: the pixels as stored, as A1111's fix_image does
        return image.copy()


def flatten(image: Image.Image) -> Image.Image:
    """RGB: `image`'s transparent parts composited over white, as A1111 flattens every init
    image onto its img2img background colour."""
    if image.mode == "RGB":
        return image
    rgba = to_mode(image, "RGBA", "init_images[0]")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def check_size(size: tuple[int, int], limits: Limits) -> None:
    """`width` x `height` of an img2img answer must be within the limits."""
    width, height = size
    if min(width, height) < 1:
        raise InvalidRequest(f"`width` and `height` must be at least 1, got {width}x{height}")
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise InvalidRequest(
            f"`width` x `height` must be at most {limits.max_side} px a side and "
            f"{limits.max_pixels} pixels, got {width}x{height}"
        )


def prepare_mask(
    mask: Image.Image, size: tuple[int, int], *, blur: float, invert: bool, notes: list[str]
) -> Image.Image:
    """An L mask at `size`, 255 = repaint: the alpha of a mask that has transparency, else its
    brightness; then inverted and blurred as A1111 does (`blur` at most the larger side)."""
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        alpha = rgba.getchannel("A")
        mask = alpha if alpha.getextrema()[0] < 255 else rgba.convert("L")
    else:
        mask = to_mode(mask, "L", "mask")
    if mask.size != size:
        notes.append(f"the mask ({mask.width}x{mask.height}) was resized to the image {size}")
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    if invert:
        mask = ImageOps.invert(mask)
    if not math.isfinite(blur):
        raise InvalidRequest(f"`mask_blur` must be a finite number of pixels, got {blur}")
    if blur > max(size):
        # wider only flattens the mask further; Pillow refuses radii past ~1e9 (a 500)
        notes.append(f"mask_blur {blur:g} was reduced to {max(size)}, the image's larger side")
        blur = max(size)
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return mask


_SEEDS = 2**32


def engine_seed(seed: int, notes: list[str]) -> int | None:
    """The engine's seed for an A1111 `seed`: None (random) for -1; A1111 takes any other
    integer, here reduced modulo 2**32 (noted when that changes it)."""
    if seed == -1:
        return None
    if not 0 <= seed < _SEEDS:
        notes.append(f"seed {seed} is outside [0, {_SEEDS - 1}]: {seed % _SEEDS} was used")
    return seed % _SEEDS


def one_step_strength(strength: float, steps: int, notes: list[str]) -> float:
    """`denoising_strength` raised, where it runs no step of `steps` (img2img runs
    int(steps * strength)), to the lowest that runs one: A1111 always runs at least one step.
    A strength out of [0, 1] or NaN is left for check_request to refuse."""
    if not 0 <= strength <= 1 or steps < 1 or int(steps * strength) >= 1:
        return strength
    raised = 1 / steps
    while int(steps * raised) < 1:  # 1 / 49 * 49 is 0.999...
        raised = math.nextafter(raised, 1.0)
    notes.append(
        f"denoising_strength {strength:g} runs no step of {steps}: {raised:g}, the lowest that "
        "runs one, was used"
    )
    return raised


@dataclass(frozen=True)
class Crop:
    """Where an "only masked" inpaint was cut from the whole picture."""

    box: Box

    @classmethod
    def around(cls, mask: Image.Image, padding: int) -> Crop | None:
        """The context box around the mask's painted pixels; None for an empty mask."""
        bounds = mask.point(lambda v: 255 if v > 0 else 0).getbbox()
        if bounds is None:
            return None
        selection = Box.from_edges(*bounds)
        canvas = Box(0, 0, mask.width, mask.height)
        return cls(context_box(selection, canvas, padding=max(0, padding)))

    @property
    def pil_box(self) -> tuple[int, int, int, int]:
        return (self.box.x, self.box.y, self.box.right, self.box.bottom)


def paste_back(original: Image.Image, layer: Image.Image, crop: Crop | None) -> Image.Image:
    """The whole picture, as A1111 returns it: the inpaint `layer` (RGBA, alpha = blend)
    composited over `original` at the crop's place (or over all of it); imageops.flatten_layer,
    as the CLI writes an inpaint."""
    at = (0, 0) if crop is None else (crop.box.x, crop.box.y)
    return flatten_layer(original, layer.convert("RGBA"), at)


def info_object(
    body: Txt2ImgBody,
    edit: Img2ImgBody | None,
    view: JobView,
    sampler_name: str,
    model: str,
    *,
    notes: list[str],
    ignored: list[str],
    size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The `info` object A1111 clients parse (most read seed and all_seeds), with the values
    actually used (the model's defaults filled in), the fields ignored and notes. `size`: the
    whole picture's, where the engine repainted a crop of it."""
    used = view.parameters
    if sampler_name == "Default":  # none asked for (or not available): name the one used
        sampler_name = A1111_NAMES.get(used.get("scheduler", DEFAULT), sampler_name)
    seeds = list(view.seeds)
    steps = used.get("steps", body.steps)
    cfg = used.get("guidance", body.cfg_scale)
    width, height = size or (used.get("width", body.width), used.get("height", body.height))
    strength = used.get("strength", edit.denoising_strength) if edit is not None else 0
    # A1111's create_infotext: no "Negative prompt:" line when there is none
    negative = f"\nNegative prompt: {body.negative_prompt}" if body.negative_prompt else ""
    infotexts = [
        f"{body.prompt}{negative}\nSteps: {steps}, Sampler: {sampler_name}, CFG scale: {cfg}, "
        f"Seed: {seed}, Size: {width}x{height}, Model: {model}".strip()
        for seed in seeds
    ]
    return {
        "prompt": body.prompt,
        "all_prompts": [body.prompt] * len(seeds),
        "negative_prompt": body.negative_prompt,
        "all_negative_prompts": [body.negative_prompt] * len(seeds),
        "seed": seeds[0] if seeds else body.seed,
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * len(seeds),
        "subseed_strength": 0,
        "width": width,
        "height": height,
        "sampler_name": sampler_name,
        "cfg_scale": cfg,
        "steps": steps,
        "batch_size": body.batch_size,
        "n_iter": body.n_iter,
        "denoising_strength": strength,
        "sd_model_name": model,
        "sd_model_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "restore_faces": False,
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "job_timestamp": datetime.now().strftime("%Y%m%d%H%M%S"),
        "paintbridge_job": view.id,
        "paintbridge_scheduler": used.get("scheduler"),
        "interrupted": view.state == "cancelled",
        "ignored": ignored,
        "notes": notes,
    }


# One "Key: value" of an infotext's last line; a value with commas in it comes quoted. A1111's
# own pattern (a leading \s*, keys of any length) takes time quadratic in the line's length on
# lines without a colon: minutes for one request, holding the GIL. Bounded keys keep it linear.
_INFO_PAIR = re.compile(r'(\w[\w \-/]{0,99}):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_LONGEST_SETTINGS = 65536  # characters of a last line read as settings
_SIZE = re.compile(r"(\d+)x(\d+)")


def parse_infotext(text: str) -> dict[str, str]:
    """An A1111 `parameters` text read as A1111's png-info reads it: "Prompt", "Negative
    prompt", then each "Key: value" of the last line, as strings ("Size: 512x768" also gives
    "Size-1" and "Size-2"). `{}` for an empty text."""
    if not text.strip():
        return {}
    lines = text.strip().split("\n")
    pairs = _INFO_PAIR.findall(lines[-1]) if len(lines[-1]) <= _LONGEST_SETTINGS else []
    if len(pairs) >= 3:  # A1111's test that the last line holds the settings
        lines = lines[:-1]
    else:
        pairs = []
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if line.startswith("Negative prompt:") and not negative:
            negative.append(line[len("Negative prompt:") :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    result = {"Prompt": "\n".join(prompt).strip(), "Negative prompt": "\n".join(negative).strip()}
    for key, value in pairs:
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                value = str(json.loads(value))
            except ValueError:
                pass
        result[key] = value
        size = _SIZE.fullmatch(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.groups()
    return result
