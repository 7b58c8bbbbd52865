"""The Blender add-on's pixel conversions, which run on Blender's GUI thread: reading an image
for a job (a byte image, and a float one: linear, premultiplied), making a result image (byte,
and float: decoded, premultiplied, the untouched pixels kept from the source) and an inpaint's
composite over its source. plugins/blender/convert.py as it is ("new") against the whole-image
formulas it had before block-wise work and sRGB tables ("old", read from git at BASELINE), in
the same run, alternating, on random 1024 / 2048 / 4096 px images (4096: `--quick` skips it).
numpy only: Blender's own foreach_get / foreach_set and packing are not timed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from report import Report, old_vs_new, time_alternating

SECTION = "blender_convert"
COLUMNS = ("operation", "side", "repeats", "old_ms", "new_ms", "old_vs_new")
BASELINE = "065acbf"  # the last commit with the whole-image formulas
REPO = Path(__file__).resolve().parents[1]
CONVERT = "plugins/blender/convert.py"


def run(report: Report) -> None:
    report.section(SECTION, "Blender add-on pixel conversions: before and after", COLUMNS)
    repeats = report.repeats or 3
    old, new = _baseline(), _load(REPO / CONVERT, "convert_new")
    for side in (1024, 2048) if report.quick else (1024, 2048, 4096):
        args = _inputs(side)
        for name, make in OPERATIONS.items():
            before, after = time_alternating(
                partial(make, old, *args), partial(make, new, *args), repeats
            )
            report.add(
                SECTION,
                {
                    "operation": name,
                    "side": side,
                    "repeats": repeats,
                    **old_vs_new(before, after),
                },
            )
    report.note(
        f"old: {CONVERT} at {BASELINE}; old_vs_new: how many times faster new is (medians)",
        SECTION,
    )


def _read_byte(convert: ModuleType, side: int, values: Any, *_: Any) -> Any:
    return convert.pixels_to_rgba8(values, side, side)


def _read_float(convert: ModuleType, side: int, values: Any, *_: Any) -> Any:
    return convert.pixels_to_rgba8(values, side, side, linear=True, premultiplied=True)


def _write_byte(convert: ModuleType, side: int, _values: Any, rgba: bytes, *_: Any) -> Any:
    return convert.rgba8_to_pixels(rgba, side, side)


def _write_float(
    convert: ModuleType, side: int, values: Any, rgba: bytes, source_rgba: bytes, _mask: bytes
) -> Any:
    """images.new_float_result's conversions."""
    array = convert.premultiply(convert.rgba8_to_pixels(rgba, side, side, True).reshape(-1, 4))
    return convert.keep_unchanged(array.ravel(), values, source_rgba, rgba, side, side)


def _composite(
    convert: ModuleType, _side: int, _values: Any, rgba: bytes, source_rgba: bytes, mask: bytes
) -> Any:
    return convert.composite_over(source_rgba, rgba, mask)


OPERATIONS: dict[str, Callable[..., Any]] = {
    "read byte image": _read_byte,
    "read float image": _read_float,
    "make byte result": _write_byte,
    "make float result": _write_float,
    "inpaint composite": _composite,
}


def _inputs(side: int) -> tuple[Any, ...]:
    """(side, Blender pixels, a result, its source, a mask): the result equals the source in
    the top half, as an inpaint's does outside its mask."""
    rng = np.random.default_rng(side)
    values = rng.random(side * side * 4, dtype=np.float32)
    source = rng.integers(0, 256, side * side * 4, np.uint8)
    result = rng.integers(0, 256, side * side * 4, np.uint8)
    result[: result.size // 2] = source[: source.size // 2]
    mask = np.zeros(side * side, np.uint8)
    mask[mask.size // 2 :] = 255
    return side, values, result.tobytes(), source.tobytes(), mask.tobytes()


def _baseline() -> ModuleType:
    text = subprocess.run(
        ["git", "show", f"{BASELINE}:{CONVERT}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "convert_old.py"
        path.write_text(text)
        return _load(path, "convert_old")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
