"""Runs a bench section's script inside Blender's Python (the bpy wheel that `./dev hosts`
installs into .hosts/blender-venv), with the add-on's bundle importable: the sections that time
what the Blender add-on does on Blender's thread."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from paintbridge.bundles import build_blender
from report import Report

REPO = Path(__file__).resolve().parents[1]
BLENDER_PYTHON = REPO / ".hosts" / "blender-venv" / "bin" / "python"


def sides_and_repeats(report: Report, section: str) -> tuple[list[int], int] | None:
    """The picture sides and repeats to run, or None (noted in the section) without Blender."""
    if not BLENDER_PYTHON.is_file():
        report.note(f"skipped: no Blender Python at {BLENDER_PYTHON} (`./dev hosts`)", section)
        return None
    return ([1024, 2048] if report.quick else [1024, 2048, 4096]), report.repeats or 3


# What every child script starts with: the bundle importable, `sides` and `repeats` read.
PREAMBLE = """
import json, statistics, sys, time
import numpy as np
import bpy

sys.path.insert(0, sys.argv[1])
sides, repeats = json.loads(sys.argv[2]), int(sys.argv[3])
"""


def run_child(script: str, sides: list[int], repeats: int) -> list[dict[str, Any]]:
    """Runs PREAMBLE + `script` in Blender's Python; the JSON list its last line of output
    prints."""
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(build_blender(Path(folder))) as bundle:
            bundle.extractall(folder)
        child = Path(folder) / "child.py"
        child.write_text(PREAMBLE + script)
        env = dict(os.environ, PYTHONNOUSERSITE="1")
        out = subprocess.run(
            [str(BLENDER_PYTHON), str(child), folder, json.dumps(sides), str(repeats)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
    return json.loads(out.strip().splitlines()[-1])


def timed_rows(report: Report, section: str, script: str):
    """Each row `script` prints, with its medians in ms (rounded) and the repeats run; none
    without Blender (the section says why)."""
    planned = sides_and_repeats(report, section)
    if planned is None:
        return
    sides, repeats = planned
    for row in run_child(script, sides, repeats):
        yield row, {k: round(v * 1000, 1) for k, v in row["medians"].items()}, repeats
