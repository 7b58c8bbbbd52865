"""Beat plain diffusers on the CPU (issue 7, item 8): a whole 512 px generation.

Model: the random-weight, full-size SD 1.5 pipeline (bench/sd15_random.py), txt2img at 512 px
with the sd15 preset's 25 steps (full mode; quick mode: 4), guidance 7.5, the model's own
scheduler, one seed. Compared, in alternating order:
- plain diffusers' CPU default: `StableDiffusionPipeline.from_pretrained(folder)` in float32
  (diffusers' default dtype), called directly;
- paintbridge's `Engine.generate` with dtype `auto`: what the engine picks on this CPU (bfloat16
  with the UNet and VAE in channels_last and the UNet's weights packed for oneDNN where the CPU
  has native bf16, else float32).
Each call is split by its step callbacks: text encoding (start to first step), the steps (per
step: the median gap between step callbacks), the VAE decode and what follows (last step to the
end). speed_up = plain / engine, over the whole call. The two images are compared in 8-bit levels
(bf16 rounds, so they differ; how much bf16 moves the result is measured against float32 on the
same seed in the `bf16` section). Both run in this process, so plain diffusers also gets the
allocator settings the Engine makes process-wide (engine/allocator.py): the speed-up leaves
that part of the engine's gain out.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

from overhead import GUIDANCE, PROMPT, SEED, plain_txt2img
from report import Report

SECTION = "cpu_speed"
COLUMNS = (
    "what",
    "dtype",
    "steps",
    "repeats",
    "total_s",
    "text_s",
    "step_s",
    "decode_s",
    "speed_up",
)
SIZE = 512
GOAL = 3.0


def run(report: Report) -> None:
    import numpy as np
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    from paintbridge.engine import Engine
    from paintbridge.engine.device import cpu_has_native_bf16
    from paintbridge.engine.presets import get_preset
    from paintbridge.engine.types import EngineSettings
    from sd15_random import ensure_sd15_random

    diffusers_logging.disable_progress_bar()
    report.section(
        SECTION, "A whole 512 px generation: plain diffusers' CPU default vs the engine", COLUMNS
    )
    preset = get_preset("sd15")
    assert preset is not None
    steps = 4 if report.quick else preset.steps
    repeats = report.repeats or (1 if report.quick else 2)
    sd15 = ensure_sd15_random(report.cache_dir)

    plain = StableDiffusionPipeline.from_pretrained(sd15)  # diffusers' default: float32
    plain.set_progress_bar_config(disable=True)
    engine = Engine(
        EngineSettings(device="cpu", dtype="auto", allow_any_path=True, model_dirs=(sd15.parent,))
    )
    engine.load(str(sd15))
    plain_call(plain, 1)  # warm-up: first calls are slower
    engine_call(engine, str(sd15), 1)
    plain_runs: list[Split] = []
    engine_runs: list[Split] = []
    images: dict[str, Any] = {}
    for i in range(repeats):
        order = ("plain", "engine") if i % 2 == 0 else ("engine", "plain")
        for who in order:
            if who == "plain":
                split, images["plain"] = plain_call(plain, steps)
                plain_runs.append(split)
            else:
                split, images["engine"] = engine_call(engine, str(sd15), steps)
                engine_runs.append(split)
    plain_total = statistics.median(s.total for s in plain_runs)
    engine_total = statistics.median(s.total for s in engine_runs)
    report.add(
        SECTION, row("plain diffusers default", str(plain.unet.dtype), steps, plain_runs, 1.0)
    )
    speed_up = plain_total / engine_total
    report.add(
        SECTION, row("paintbridge Engine (dtype auto)", engine.dtype, steps, engine_runs, speed_up)
    )
    a = np.asarray(images["plain"].convert("RGB")).astype(int)
    b = np.asarray(images["engine"].convert("RGB")).astype(int)
    diff = np.abs(a - b)
    report.note(
        f"the two images differ by {diff.mean():.2f} levels on average, {diff.max()} at most "
        f"(engine {engine.dtype} vs plain float32, same seed)",
        SECTION,
    )
    if not cpu_has_native_bf16():
        report.note(
            "this CPU has no native bf16 (AMX / AVX512-BF16): the engine runs float32 like "
            "plain diffusers, so no speed-up is expected here",
            SECTION,
        )
    elif speed_up < GOAL:
        report.note(f"speed-up {speed_up:.2f} below the goal of {GOAL}", SECTION)
    engine.unload()
    del plain, engine
    gc.collect()


class Split:
    """One generation's wall time, cut at its step callbacks."""

    def __init__(self, start: float, stamps: list[float], end: float) -> None:
        self.total = end - start
        self.text = stamps[0] - start if stamps else 0.0
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        self.step = statistics.median(gaps) if gaps else 0.0
        # the first step's own time is hidden in `text`: take it out with the median step
        self.text = max(self.text - self.step, 0.0)
        self.decode = end - stamps[-1] if stamps else 0.0


def row(what: str, dtype: str, steps: int, runs: list[Split], speed_up: float) -> dict[str, Any]:
    return {
        "what": what,
        "dtype": dtype.removeprefix("torch."),
        "steps": steps,
        "repeats": len(runs),
        "total_s": statistics.median(s.total for s in runs),
        "text_s": statistics.median(s.text for s in runs),
        "step_s": statistics.median(s.step for s in runs),
        "decode_s": statistics.median(s.decode for s in runs),
        "speed_up": speed_up,
        "all_total_s": [round(s.total, 2) for s in runs],
    }


def plain_call(pipe: Any, steps: int) -> tuple[Split, Any]:
    stamps: list[float] = []

    def on_step_end(pipe_: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict:
        stamps.append(time.perf_counter())
        return kwargs

    start = time.perf_counter()
    image = plain_txt2img(pipe, SIZE, SIZE, steps, callback_on_step_end=on_step_end)
    return Split(start, stamps, time.perf_counter()), image


def engine_call(engine: Any, model: str, steps: int) -> tuple[Split, Any]:
    from paintbridge.engine.types import GenerationRequest

    stamps: list[float] = []
    request = GenerationRequest(
        task="txt2img",
        prompt=PROMPT,
        model=model,
        width=SIZE,
        height=SIZE,
        steps=steps,
        guidance=GUIDANCE,
        seed=SEED,
        scheduler="default",  # the model's own, as the plain pipeline uses
    )
    start = time.perf_counter()
    result = engine.generate(
        request, progress=lambda step, total: stamps.append(time.perf_counter())
    )
    return Split(start, stamps, time.perf_counter()), result.images[0].image
