"""Model presets: short names (`sd15`, `sdxl`...) for Hugging Face repos, with their defaults.

The presets live in `paintbridge/presets.json` (package data). Pure: no torch, no diffusers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from paintbridge.engine.types import TASKS

ARCHITECTURES: tuple[str, ...] = ("sd1", "sd2", "sdxl")


@dataclass(frozen=True)
class Preset:
    """A named model and the defaults a request with `None` in a field gets from it."""

    name: str
    repo: str  # Hugging Face repo id
    architecture: str  # sd1 | sd2 | sdxl
    native: int  # side of the square the model was trained at, in pixels
    steps: int
    guidance: float
    scheduler: str
    tasks: tuple[str, ...]
    description: str


def _preset(name: str, raw: dict[str, Any]) -> Preset:
    preset = Preset(
        name=name,
        repo=str(raw["repo"]),
        architecture=str(raw["architecture"]),
        native=int(raw["native"]),
        steps=int(raw["steps"]),
        guidance=float(raw["guidance"]),
        scheduler=str(raw["scheduler"]),
        tasks=tuple(raw["tasks"]),
        description=str(raw["description"]),
    )
    if preset.architecture not in ARCHITECTURES:
        raise ValueError(f"preset {name!r}: unknown architecture {preset.architecture!r}")
    if not set(preset.tasks) <= set(TASKS) or not preset.tasks:
        raise ValueError(f"preset {name!r}: tasks must be a non-empty subset of {TASKS}")
    return preset


@lru_cache(maxsize=1)
def _load() -> tuple[str, dict[str, Preset]]:
    text = resources.files("paintbridge").joinpath("presets.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    presets = {name: _preset(name, entry) for name, entry in raw["presets"].items()}
    default = str(raw["default"])
    if default not in presets:
        raise ValueError(f"presets.json: default {default!r} is not a preset")
    return default, presets


def presets() -> dict[str, Preset]:
    """Every preset by name, in the file's order."""
    return dict(_load()[1])


def default_preset_name() -> str:
    return _load()[0]


def get_preset(name: str) -> Preset | None:
    """The preset called `name`, or None."""
    return _load()[1].get(name)


def preset_for_architecture(architecture: str, *, inpaint: bool) -> Preset | None:
    """The first preset of that architecture that is (or is not) an inpainting-only model."""
    for preset in _load()[1].values():
        if preset.architecture == architecture and (preset.tasks == ("inpaint",)) == inpaint:
            return preset
    return None
