"""paintbridge.engine: diffusers pipelines behind one small interface.

    engine = Engine(EngineSettings(model_dirs=(Path("~/models"),)))
    result = engine.generate(GenerationRequest(task="txt2img", prompt="a red door"))

Importing this package is cheap: torch and diffusers are imported the first time an Engine is
made (or a model is loaded), so the server can validate requests and the CLI can show --help
without paying for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paintbridge.engine.models import ModelInfo, list_models
from paintbridge.engine.schedulers import scheduler_names
from paintbridge.engine.types import (
    EngineSettings,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    Limits,
)
from paintbridge.engine.validation import check_request

if TYPE_CHECKING:
    from paintbridge.engine.engine import Engine

__all__ = [
    "Engine",
    "EngineSettings",
    "GeneratedImage",
    "GenerationRequest",
    "GenerationResult",
    "Limits",
    "ModelInfo",
    "check_request",
    "list_models",
    "scheduler_names",
]


def __getattr__(name: str) -> Any:
    if name == "Engine":  # the one export that needs torch, imported on first use
        from paintbridge.engine.engine import Engine

        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
