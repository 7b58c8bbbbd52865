"""Schedulers by short name (the names A1111 and ComfyUI users know).

`scheduler_names()` is pure; `make_scheduler()` imports diffusers when called. A scheduler is
always built from the model's own scheduler config, so the model's training settings
(beta schedule, prediction type, timestep spacing) carry over.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from paintbridge.errors import InvalidRequest, shown

DEFAULT = "default"  # the scheduler the model ships with, unchanged


@dataclass(frozen=True)
class _Kind:
    cls: str  # class name in diffusers
    overrides: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None  # an optional package it needs


_SCHEDULERS: dict[str, _Kind] = {
    "ddim": _Kind("DDIMScheduler"),
    "euler": _Kind("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "euler_a": _Kind("EulerAncestralDiscreteScheduler"),
    "dpm++": _Kind(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False},
    ),
    "dpm++_karras": _Kind(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "dpm++_sde_karras": _Kind(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "lms": _Kind("LMSDiscreteScheduler", {"use_karras_sigmas": False}, needs="scipy"),
    "pndm": _Kind("PNDMScheduler", {"skip_prk_steps": True}),
    "unipc": _Kind("UniPCMultistepScheduler"),
    "heun": _Kind("HeunDiscreteScheduler", {"use_karras_sigmas": False}),
    "lcm": _Kind("LCMScheduler", {"original_inference_steps": 50}),
}
# Engine name -> the sampler name AUTOMATIC1111 shows for it (its infotexts, PNG info).
A1111_NAMES: dict[str, str] = {
    DEFAULT: "Default",
    "ddim": "DDIM",
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpm++": "DPM++ 2M",
    "dpm++_karras": "DPM++ 2M Karras",
    "dpm++_sde_karras": "DPM++ 2M SDE Karras",  # multistep SDE solver, Karras sigmas
    "lms": "LMS",
    "pndm": "PLMS",
    "unipc": "UniPC",
    "heun": "Heun",
    "lcm": "LCM",
}
# LCM picks its steps from a schedule of `original_inference_steps`: no more can be run.
LCM_MAX_STEPS = 50


def _installed(package: str | None) -> bool:
    return package is None or importlib.util.find_spec(package) is not None


def scheduler_names() -> list[str]:
    """Every name `make_scheduler` accepts on this install, `default` first."""
    return [DEFAULT] + [name for name, kind in _SCHEDULERS.items() if _installed(kind.needs)]


def check_scheduler_name(name: str) -> None:
    """Raise InvalidRequest unless `name` is a scheduler this install can build."""
    kind = _SCHEDULERS.get(name)
    if name != DEFAULT and kind is None:
        raise InvalidRequest(
            f"`scheduler` must be one of {', '.join(scheduler_names())}, got {shown(name)}"
        )
    if kind is not None and not _installed(kind.needs):
        raise InvalidRequest(
            f"`scheduler` {name!r} needs the {kind.needs} package: `pip install {kind.needs}`, "
            f"or pick one of {', '.join(scheduler_names())}"
        )


def check_scheduler_steps(name: str, steps: int) -> None:
    """Raise InvalidRequest for more `steps` than scheduler `name` can run (only LCM has a
    limit; diffusers fails in the middle of the job with its own words otherwise)."""
    if name == "lcm" and steps > LCM_MAX_STEPS:
        raise InvalidRequest(
            f"`steps` must be at most {LCM_MAX_STEPS} with the lcm scheduler (its schedule has "
            f"{LCM_MAX_STEPS}; LCM models need 4-8), got {steps}"
        )


def make_scheduler(name: str, config: Any) -> Any:
    """A new scheduler called `name`, built from a model's scheduler `config` (a FrozenDict).

    `default` rebuilds the model's own scheduler class from its config.
    """
    import diffusers

    check_scheduler_name(name)
    if name == DEFAULT:
        cls = getattr(diffusers, config["_class_name"])
        return cls.from_config(config)
    kind = _SCHEDULERS[name]
    cls = getattr(diffusers, kind.cls)
    return cls.from_config(config, **kind.overrides)
