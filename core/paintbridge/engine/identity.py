"""`test:identity`: a test model whose every task gives its input image back unchanged.

It lets tests outside the engine check what no random-weight model can show: that an image
survives the trip host -> hostkit -> HTTP -> engine -> history -> host pixel for pixel. It
goes through the same engine recipe as a real model (plan, scaling, progress every step, cancel
between steps, composite, history); only the pipeline call is replaced. Each step sleeps
STEP_SECONDS, so a test can stop a server or cancel in the middle of a job it can time.
Images keep their size when it is the model's native area (64x64, 128x32, ...): otherwise
scaling to the generation size and back changes them, as with any model. Like any model it sees
partly transparent pixels over mid gray; their alpha comes back exact.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from paintbridge.engine.pipelines import LoadedModel
from paintbridge.engine.types import TASKS

STEP_SECONDS = 0.05


class IdentityModel(LoadedModel):
    """test:tiny's modules, with an echoing pipeline for every task."""

    def pipeline(self, task: str) -> Any:
        if task not in TASKS:
            return super().pipeline(task)  # the same error as a real model
        return EchoPipeline(self.base.scheduler)


class EchoPipeline:
    """Called like a diffusers pipeline; denoises nothing."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.num_timesteps = 0

    def __call__(
        self,
        *,
        num_inference_steps: int,
        generator: Any,
        callback_on_step_end: Any,
        image: Image.Image | None = None,
        strength: float = 1.0,
        width: int | None = None,
        height: int | None = None,
        **_: Any,
    ) -> SimpleNamespace:
        edits = image is not None
        steps = min(int(num_inference_steps * strength), num_inference_steps)
        self.num_timesteps = steps if edits else num_inference_steps
        for step in range(self.num_timesteps):
            time.sleep(STEP_SECONDS)
            callback_on_step_end(self, step, step, {})
        if image is not None:
            return SimpleNamespace(images=[image.copy()])
        assert width is not None and height is not None
        rng = np.random.default_rng(generator.initial_seed())
        noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        return SimpleNamespace(images=[Image.fromarray(noise, "RGB")])
