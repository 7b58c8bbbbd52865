"""What paintbridge's engine costs on top of diffusers.

For each case, in one process on one machine: a plain diffusers pipeline (loaded with
`DiffusionPipeline.from_pretrained`, called directly) and `Engine.generate`, with the same model,
size, steps, guidance, seed, scheduler (the model's own) and dtype. Each is warmed up once, then
both run `repeats` times in alternating order; the ratio is median(engine) / median(plain).
The goal is <= 1.02 at full size, where the engine's fixed costs (validation, PNG-ready RGBA
output, progress and cancel callbacks) should vanish next to the model's work. In bfloat16 (on a
CPU with native bf16) the engine also keeps the UNet and VAE in channels_last and packs the UNet's
weights for oneDNN (engine/prepack.py), which plain diffusers does not: that case's ratio includes
that speed-up, and its pixels differ by rounding.
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import Report, time_alternating

SECTION = "overhead"
COLUMNS = (
    "case",
    "size",
    "generated",
    "steps",
    "dtype",
    "repeats",
    "plain_s",
    "engine_s",
    "ratio",
    "plain_best_s",
    "engine_best_s",
    "same_pixels",
)
PROMPT = "a lighthouse on a cliff at sunset, oil painting"
SEED = 1234
GUIDANCE = 7.5
GOAL = 1.02


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # what the engine is asked for: a test-model name or a folder
    folder: Path  # what diffusers loads
    size: int
    steps: int
    dtype: str
    repeats: int
    full_size: bool = False


def plain_txt2img(plain: Any, width: int, height: int, steps: int, **extra: Any) -> Any:
    """The plain diffusers call every section compares against: same prompt, guidance, seed.
    `extra`: more keyword arguments for the pipeline (a step callback)."""
    import torch

    return plain(
        prompt=PROMPT,
        negative_prompt="",
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=GUIDANCE,
        generator=torch.Generator("cpu").manual_seed(SEED),
        **extra,
    ).images[0]


def run(report: Report) -> None:
    from paintbridge.engine.device import cpu_has_native_bf16
    from paintbridge.engine.testmodel import ensure_test_model

    report.section(SECTION, "Engine overhead: Engine.generate vs a plain diffusers call", COLUMNS)
    tiny = ensure_test_model("test:tiny")
    cases = [
        Case("tiny (test:tiny)", "test:tiny", tiny, 64, 10, "float32", 9),
        Case("tiny (test:tiny)", "test:tiny", tiny, 256, 10, "float32", 5),
    ]
    report.note(
        "the plain call runs at the size the engine generates at (`generated`): the engine "
        "generates at the model's own resolution and resizes to the size asked (the tiny "
        "model's is 64 px), so both do the same denoising work and the ratio is the overhead",
        SECTION,
    )
    if report.quick:
        report.note("quick mode: full-size SD 1.5 skipped", SECTION)
    else:
        from sd15_random import ensure_sd15_random

        print("building/loading the random-weight SD 1.5 pipeline (first time: a minute)...")
        sd15 = ensure_sd15_random(report.cache_dir)
        dtypes = ["float32"] + (["bfloat16"] if cpu_has_native_bf16() else [])
        if "bfloat16" not in dtypes:
            report.note("bfloat16 skipped: this CPU has no native bf16 (AMX/AVX512-BF16)", SECTION)
        for dtype in dtypes:
            cases.append(
                Case("SD 1.5 arch, random weights", str(sd15), sd15, 512, 2, dtype, 3, True)
            )
    for case in cases:
        gc.collect()  # the previous case's pipelines
        row = _run_case(case, report.repeats)
        report.add(SECTION, row)
        if case.full_size and row["ratio"] > GOAL:
            report.note(f"{case.dtype} full size: ratio {row['ratio']:.3f} above goal {GOAL}")
        if case.dtype == "bfloat16":
            report.note(
                "bfloat16: the engine's UNet and VAE are in channels_last and its UNet's weights "
                "are packed for oneDNN (plain diffusers' are not), so its ratio includes that "
                "speed-up and its pixels differ by rounding",
                SECTION,
            )


def _run_case(case: Case, repeats: int | None) -> dict[str, Any]:
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    from paintbridge.engine import Engine
    from paintbridge.engine.types import EngineSettings, GenerationRequest

    diffusers_logging.disable_progress_bar()
    n = repeats or case.repeats
    torch_dtype = getattr(torch, case.dtype)
    plain = DiffusionPipeline.from_pretrained(case.folder, dtype=torch_dtype)
    plain.set_progress_bar_config(disable=True)
    engine = Engine(
        EngineSettings(
            device="cpu", dtype=case.dtype, allow_any_path=True, model_dirs=(case.folder.parent,)
        )
    )
    engine.load(case.model)
    request = GenerationRequest(
        task="txt2img",
        prompt=PROMPT,
        model=case.model,
        width=case.size,
        height=case.size,
        steps=case.steps,
        guidance=GUIDANCE,
        seed=SEED,
        scheduler="default",  # the model's own scheduler, as the plain pipeline uses
    )
    cancel = threading.Event()  # what the CLI and the server pass: the realistic path

    def engine_call() -> Any:
        return engine.generate(request, progress=lambda step, steps: None, cancel=cancel)

    warm = engine_call()  # warm-up; tells the size the engine really generates at
    gen_width = int(warm.parameters.get("generated_width", case.size))
    gen_height = int(warm.parameters.get("generated_height", case.size))

    def plain_call() -> Any:
        return plain_txt2img(plain, gen_width, gen_height, case.steps)

    plain_image = plain_call()  # warm-up
    engine_image = warm.images[0].image
    same: bool | str = "-"  # pixels compare only where the engine did not resize
    if engine_image.size == plain_image.size:
        same = bool(
            np.array_equal(
                np.asarray(plain_image.convert("RGB")), np.asarray(engine_image)[..., :3]
            )
        )
    plain_t, engine_t = time_alternating(plain_call, engine_call, n)
    return {
        "case": case.name,
        "size": f"{case.size}x{case.size}",
        "generated": f"{gen_width}x{gen_height}",
        "steps": case.steps,
        "dtype": case.dtype,
        "repeats": n,
        "plain_s": plain_t.median,
        "engine_s": engine_t.median,
        "ratio": engine_t.median / plain_t.median,
        "plain_best_s": plain_t.best,
        "engine_best_s": engine_t.best,
        "same_pixels": same,
        "plain_all_s": [round(s, 4) for s in plain_t.seconds],
        "engine_all_s": [round(s, 4) for s in engine_t.seconds],
    }
