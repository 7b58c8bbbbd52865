"""A finished result's selection alpha in the GIMP and Krita plug-ins: hostkit's `mask_alpha`
(the result shows only where the selection is, partly where partly selected), and for Krita
with `rgba_to_bgra` after it (its pixelData order). hostkit as it is ("new": an opaque result's
alpha becomes the mask at once) against BASELINE ("old": every pixel through a Python
generator), read from git, in the same run, alternating. Opaque random results (all results
are opaque) with a left-to-right feathered mask, 512 / 2048 / 4096 px (4096: `--quick` skips it).
Krita does this on the job's watch thread since cfcdc83 (its GUI thread did before); GIMP in the
plug-in's process.
"""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from types import ModuleType

from paintbridge.hostkit import pixels as new_pixels
from report import Report, old_vs_new, time_alternating

SECTION = "result_alpha"
COLUMNS = ("operation", "side", "repeats", "old_ms", "new_ms", "old_vs_new")
BASELINE = "8915255"  # the last commit whose mask_alpha took every pixel through Python
REPO = Path(__file__).resolve().parents[1]
PACKAGE = "core/paintbridge/hostkit"


def run(report: Report) -> None:
    report.section(SECTION, "A result's selection alpha (GIMP, Krita): before and after", COLUMNS)
    repeats = report.repeats or 3
    with tempfile.TemporaryDirectory() as folder:
        old_pixels = _baseline(Path(folder))
        for side in (512, 2048) if report.quick else (512, 2048, 4096):
            rgba, mask = _inputs(side)
            for name, work in OPERATIONS.items():
                before, after = time_alternating(
                    partial(work, old_pixels, rgba, mask),
                    partial(work, new_pixels, rgba, mask),
                    repeats,
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
    report.note(f"old: {PACKAGE} at {BASELINE}; old_vs_new: medians", SECTION)


def _alpha(pixels: ModuleType, rgba: bytes, mask: bytes) -> bytes:
    return pixels.mask_alpha(rgba, mask)


def _alpha_bgra(pixels: ModuleType, rgba: bytes, mask: bytes) -> bytes:
    return pixels.rgba_to_bgra(pixels.mask_alpha(rgba, mask))


OPERATIONS = {"mask_alpha (GIMP)": _alpha, "mask_alpha + rgba_to_bgra (Krita)": _alpha_bgra}


def _inputs(side: int) -> tuple[bytes, bytes]:
    rgba = bytearray(random.Random(side).randbytes(side * side * 4))
    rgba[3::4] = b"\xff" * (side * side)
    feather = bytes(bytearray(x * 255 // side for x in range(side)))
    return bytes(rgba), feather * side


def _baseline(folder: Path) -> ModuleType:
    """hostkit's pixels module at BASELINE, imported as a package of its own."""
    archive = subprocess.run(
        ["git", "archive", BASELINE, PACKAGE], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    package = folder / PACKAGE
    spec = importlib.util.spec_from_file_location(
        "hostkit_baseline", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostkit_baseline"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("hostkit_baseline.pixels")
