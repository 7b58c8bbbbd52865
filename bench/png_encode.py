"""A result's PNG: what writing it costs, Pillow's encoder against paintbridge's (pngwrite.py).

Every job's result is written to the history folder before the job is done, and the A1111 routes
send results as PNG, so the encoding is part of every job's time: little beside a CPU's
half-minute generation, a tenth of a GPU's 0.8 s one. Both encoders get the same RGB picture and
the same two text chunks (pngmeta.png_bytes's), at zlib level 1 (pngmeta.COMPRESS_LEVEL):
- Pillow: `Image.save(format="PNG", compress_level=1, pnginfo=...)`, which tries five filters
  on every row and deflates on one thread (what pngmeta used before pngwrite.py);
- paintbridge: `pngmeta.png_bytes`, rows filtered Up with numpy and deflated in bands of 256 KB
  to 1 MB (one or more a thread) on up to 8 threads (as many as this process may use).
Pictures, 512 / 1024 / 2048 px: "picture", smooth shapes with a little grain (a photograph's
kind of content); "noise", uniform random bytes (what random-weight models make, the worst case).
Alternating, after one call each; ms is the median; kb is the file's size.
"""

from __future__ import annotations

import functools
import io
from typing import Any

from report import Report, time_alternating

SECTION = "png_encode"
COLUMNS = ("content", "size", "repeats", "pillow_ms", "paintbridge_ms", "speedup", "pillow_kb",
           "paintbridge_kb", "threads")  # fmt: skip
SIZES = (512, 1024, 2048)
REPEATS = 7


def run(report: Report) -> None:
    from PIL import Image

    from paintbridge import pngmeta, pngwrite

    report.section(SECTION, "A result's PNG: Pillow's encoder vs pngwrite", COLUMNS)
    parameters = {"task": "txt2img", "prompt": "a lighthouse at dusk", "steps": 20, "seed": 1}
    repeats = report.repeats or (3 if report.quick else REPEATS)
    for content in ("picture", "noise"):
        for size in SIZES:
            image = Image.fromarray(_pixels(content, size))
            pillow = _pillow_encoder(image, pngmeta._text_chunks(parameters))
            ours = functools.partial(pngmeta.png_bytes, image, parameters)
            pillow_bytes, our_bytes = pillow(), ours()
            pillow_t, our_t = time_alternating(pillow, ours, repeats)
            report.add(
                SECTION,
                {
                    "content": content,
                    "size": f"{size}x{size}",
                    "repeats": repeats,
                    "pillow_ms": 1000 * pillow_t.median,
                    "paintbridge_ms": 1000 * our_t.median,
                    "speedup": pillow_t.median / our_t.median,
                    "pillow_kb": len(pillow_bytes) / 1024,
                    "paintbridge_kb": len(our_bytes) / 1024,
                    "threads": pngwrite.threads(size, 3 * size),
                    "pillow_all_ms": [round(1000 * s, 2) for s in pillow_t.seconds],
                    "paintbridge_all_ms": [round(1000 * s, 2) for s in our_t.seconds],
                },
            )


def _pixels(content: str, size: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(size)
    if content == "noise":
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    y, x = np.mgrid[0:size, 0:size] / size
    shapes = np.stack(
        [
            128 + 100 * np.sin(6 * x + 2 * y),
            128 + 90 * np.cos(5 * y - 3 * x * y),
            255 * ((x - 0.5) ** 2 + (y - 0.4) ** 2 < 0.1),
        ],
        axis=-1,
    )
    return np.clip(shapes + rng.normal(0, 3, shapes.shape), 0, 255).astype(np.uint8)


def _pillow_encoder(image: Any, chunks: list[tuple[bytes, bytes]]) -> Any:
    from PIL import PngImagePlugin

    from paintbridge.pngmeta import COMPRESS_LEVEL

    info = PngImagePlugin.PngInfo()
    for kind, payload in chunks:
        info.add(kind, payload)

    def encode() -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info, compress_level=COMPRESS_LEVEL)
        return buffer.getvalue()

    return encode
