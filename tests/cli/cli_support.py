"""Helpers for the CLI tests: run `paintbridge` as a real subprocess, make input images."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

PAINTBRIDGE = Path(sys.executable).parent / "paintbridge"  # the installed console script


@dataclass
class Outcome:
    code: int
    out: str
    err: str


RunCli = Callable[..., Outcome]


def subprocess_env() -> dict[str, str]:
    """The test's environment (isolated folders, shared test-model cache, offline)."""
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_subprocess(*args: str | os.PathLike[str], timeout: float = 300) -> Outcome:
    proc = subprocess.run(
        [str(PAINTBRIDGE), *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def noise_image(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A deterministic RGB picture with structure (gradients), to feed img2img and inpaint."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata(
        [
            ((x * 255) // max(width - 1, 1), (y * 255) // max(height - 1, 1), (x * y + seed) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    return image


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int] | None) -> Image.Image:
    """Black (keep) with a white box (regenerate); `None` for an all-black (empty) mask."""
    mask = Image.new("L", size, 0)
    if box is not None:
        mask.paste(255, box)
    return mask
