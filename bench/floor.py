"""The floor (issue 7, item 6): UNet FLOPs per step against this CPU's matrix-multiply ceiling.

FLOPs: torch's `FlopCounterMode` over one forward of the SD 1.5 UNet (published configuration,
built on the meta device: no weights needed) at 512 px with classifier-free guidance (batch 2,
77 text tokens). Counted on the meta device on purpose: on the CPU, torch's counter has no
formula for the fused attention kernel (`_scaled_dot_product_flash_attention_for_cpu`) and
silently counts attention as 0; on meta, attention runs as plain matmuls (bmm) and is counted.

Ceiling: the GFLOP/s of the fastest of 20 2048x2048 matrix products (2 n^3 FLOPs) in float32
and bfloat16, after a warm-up. The fastest, not the median: a ceiling is what the CPU can do,
and on a shared machine a neighbour only ever slows a product down (a median of 5 read 1540
GFLOP/s in bf16 where a quiet minute gave 2400-2500). Where the CPU has no native bf16, a bf16
product is about a hundred times slower than float32 (no fast kernel), so a 512x512 one stands
in and the row says "emulated".

Achieved: seconds per step of the random-weight, full-size SD 1.5 UNet at 512 px, batch 2
(medians; one warm-up call first):
- a direct `unet(latents, t, text)` call (the model alone; as in a guided step, both halves of
  the batch hold the same latents, with two different text embeddings),
- plain diffusers' pipeline step: the times between the first four `callback_on_step_end`
  calls of a `StableDiffusionPipeline` txt2img (steps 2, 3 and 4: UNet + guidance + scheduler
  step; the first step is left out, as it also allocates what the generation reuses), stopped
  there with diffusers' own interrupt (no VAE decode),
- paintbridge's Engine step: the same of `Engine.generate` (dtype `auto`: what the engine picks
  on this CPU; its progress callbacks), cancelled there.
The step rows' repeats count these intervals, three per generation.
Plain and engine runs alternate (plain first, then engine first...). Both models are loaded at
once (about 9 GB in float32). On a native-bf16 CPU the engine's bf16 UNet (channels_last, weights
packed for oneDNN: engine/prepack.py) is also called directly, and the UNet as diffusers loads it
in bf16, in channels_last and in its own contiguous layout. The float32
direct call is also timed with the UNet in channels_last and, in full mode, under torch.compile
(what the engine does on CUDA, and on request): whether either pays on this CPU.
GFLOP/s = counted FLOPs / seconds; vs_ceiling = that / the matmul ceiling of the same dtype.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from report import Report

SECTION = "floor"
COLUMNS = (
    "what",
    "size",
    "dtype",
    "repeats",
    "gflop",
    "seconds",
    "gflop_per_s",
    "vs_ceiling",
)
SIZE = 512
BATCH = 2  # classifier-free guidance: the unconditional and the conditional half
TOKENS = 77
MATMUL = 2048
MATMUL_EMULATED = 512
MATMUL_REPEATS = 20
STEP_CALLBACKS = 4  # steps 2, 3 and 4 timed
PROMPT = "a lighthouse on a cliff at sunset, oil painting"
SEED = 1234
GUIDANCE = 7.5


def run(report: Report) -> None:
    import torch
    from diffusers.utils import logging as diffusers_logging

    from paintbridge.engine.device import cpu_has_native_bf16, resolve_dtype
    from sd15_random import ensure_sd15_random

    diffusers_logging.disable_progress_bar()

    report.section(SECTION, "The floor: SD 1.5 UNet FLOPs per step vs the matmul ceiling", COLUMNS)
    quick = report.quick
    unet_repeats = report.repeats or (1 if quick else 3)
    step_repeats = report.repeats or (1 if quick else 3)
    native_bf16 = cpu_has_native_bf16()

    counted = count_unet_flops(SIZE)
    gflop = counted["total"] / 1e9
    report.add(
        SECTION,
        {
            "what": "SD 1.5 UNet step, CFG (FlopCounterMode, meta device)",
            "size": f"{SIZE}x{SIZE}",
            "dtype": "-",
            "repeats": 1,
            "gflop": gflop,
            **{f"gflop_{op}": flops / 1e9 for op, flops in counted.items()},
        },
    )
    report.note(
        f"UNet FLOPs at {SIZE} px, batch {BATCH}: {gflop:.0f} GFLOP, of which attention "
        f"(bmm) {counted.get('aten.bmm', 0) / 1e9:.0f}; counted on the CPU instead, the fused "
        "attention counts 0 (no formula in torch's counter): total - attention is the issue's "
        "'about 1350 GFLOP'",
        SECTION,
    )

    ceilings: dict[str, float] = {}
    for dtype, n in (
        ("float32", MATMUL),
        ("bfloat16", MATMUL if native_bf16 else MATMUL_EMULATED),
    ):
        emulated = ", emulated: no native bf16" if dtype == "bfloat16" and not native_bf16 else ""
        seconds = matmul_seconds(getattr(torch, dtype), n, MATMUL_REPEATS)
        flop = 2 * n**3
        ceilings[dtype] = flop / min(seconds) / 1e9
        report.add(
            SECTION,
            {
                "what": f"matmul ceiling ({n}x{n}{emulated}, fastest of {MATMUL_REPEATS})",
                "size": f"{n}x{n}",
                "dtype": dtype,
                "repeats": MATMUL_REPEATS,
                "gflop": flop / 1e9,
                "seconds": min(seconds),
                "gflop_per_s": ceilings[dtype],
                "vs_ceiling": 1.0,
                "all_s": [round(s, 4) for s in seconds],
            },
        )

    sd15 = ensure_sd15_random(report.cache_dir)

    def add_step(what: str, dtype: str, seconds: list[float]) -> None:
        per_s = gflop / statistics.median(seconds)
        report.add(
            SECTION,
            {
                "what": what,
                "size": f"{SIZE}x{SIZE}",
                "dtype": dtype,
                "repeats": len(seconds),
                "gflop": gflop,
                "seconds": statistics.median(seconds),
                "gflop_per_s": per_s,
                "vs_ceiling": per_s / ceilings[dtype],
                "all_s": [round(s, 3) for s in seconds],
            },
        )
        if per_s > ceilings[dtype]:
            report.note(
                f"{what}: above the {dtype} matmul ceiling, so the machine's load changed "
                "between the two measurements: rerun on a quiet machine",
                SECTION,
            )

    unet_s, variants, plain_s, engine_s = step_times(sd15, unet_repeats, step_repeats, quick)
    gc.collect()
    add_step("UNet forward alone (plain diffusers module call)", "float32", unet_s)
    for (what, dtype), seconds in variants.items():
        add_step(what, dtype, seconds)
    add_step("plain diffusers pipeline step", "float32", plain_s)
    engine_dtype = resolve_dtype("auto", "cpu")
    add_step("paintbridge Engine step (dtype auto)", engine_dtype, engine_s)
    floor_s = gflop / ceilings[engine_dtype]
    engine_step = statistics.median(engine_s)
    report.note(
        f"the Engine step takes {engine_step / floor_s:.2f}x the {engine_dtype} matmul floor "
        f"({gflop:.0f} GFLOP at {ceilings[engine_dtype]:.0f} GFLOP/s = {floor_s:.2f} s; goal: "
        f"within 2x); plain diffusers' float32 step takes "
        f"{statistics.median(plain_s) / engine_step:.2f}x as long",
        SECTION,
    )
    if quick:
        report.note(
            f"quick mode: full-size SD 1.5 at {SIZE} px, but 1 timed UNet call and 1 generation "
            f"({STEP_CALLBACKS - 1} steps) per pipeline (full mode: 3 each, medians)",
            SECTION,
        )


def count_unet_flops(size: int) -> dict[str, int]:
    """FLOPs of one SD 1.5 UNet forward at `size` px, batch BATCH, by aten op, plus "total"."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from sd15_random import UNET

    with torch.device("meta"):
        unet = UNet2DConditionModel(**UNET)
        latents = torch.zeros(BATCH, 4, size // 8, size // 8)
        text = torch.zeros(BATCH, TOKENS, UNET["cross_attention_dim"])
        timestep = torch.tensor(500)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(latents, timestep, encoder_hidden_states=text)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return {**by_op, "total": int(counter.get_total_flops())}


def matmul_seconds(dtype: Any, n: int, repeats: int) -> list[float]:
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(dtype)
    b = torch.randn(n, n, generator=generator).to(dtype)
    torch.mm(a, b)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - start)
    return seconds


def step_times(
    folder: Path, unet_repeats: int, step_repeats: int, quick: bool
) -> tuple[list[float], dict[tuple[str, str], list[float]], list[float], list[float]]:
    """Seconds of direct UNet calls (as loaded; in the GPU layouts and, on a native-bf16 CPU,
    the engine's bf16 UNet: `variants`, by label and dtype), plain diffusers steps and Engine
    steps (float32 plain, the engine's `auto` dtype); the pipeline steps run in alternating
    order, so a machine that changes speed favours neither."""
    plain = _plain_pipeline(folder)
    unet_s = unet_seconds(plain.unet, unet_repeats + 1)[1:]  # the first call is a warm-up
    variants = {
        (what, "float32"): seconds
        for what, seconds in gpu_switches_on_cpu(plain.unet, unet_repeats, quick).items()
    }
    engine = _engine(folder)
    if engine.dtype == "bfloat16":
        variants.update(bf16_unet(engine._model.base.unet, folder, unet_repeats))  # noqa: SLF001
    plain_s: list[float] = []
    engine_s: list[float] = []
    for i in range(step_repeats):
        if i % 2 == 0:
            plain_s += plain_step(plain)
            engine_s += engine_step(engine, folder)
        else:
            engine_s += engine_step(engine, folder)
            plain_s += plain_step(plain)
    engine.unload()
    return unet_s, variants, plain_s, engine_s


def gpu_switches_on_cpu(unet: Any, repeats: int, quick: bool) -> dict[str, list[float]]:
    """The UNet call with what the engine does on a GPU (channels_last; torch.compile, which is
    opt-in): whether either pays on this CPU. torch.compile's own time is in the label."""
    import torch

    unet.to(memory_format=torch.channels_last)
    found = {"UNet forward, channels_last (on only on CUDA)": unet_seconds(unet, repeats + 1)[1:]}
    unet.to(memory_format=torch.contiguous_format)
    if not quick:  # compiling the full UNet takes minutes on a small CPU
        compiled = torch.compile(unet)
        first = unet_seconds(compiled, 1)[0]
        label = f"UNet forward, torch.compile (opt-in; its first call took {first:.0f} s)"
        found[label] = unet_seconds(compiled, repeats)
        del compiled
        torch._dynamo.reset()
    return found


def bf16_unet(engine_unet: Any, folder: Path, repeats: int) -> dict[tuple[str, str], list[float]]:
    """The engine's bf16 UNet called directly (channels_last, weights packed for oneDNN), and the
    same UNet as diffusers loads it in bf16, in channels_last and in its own contiguous layout;
    alternating, one untimed call after each switch."""
    import torch
    from diffusers import UNet2DConditionModel

    loaded = UNet2DConditionModel.from_pretrained(folder / "unet", dtype=torch.bfloat16)
    contiguous = torch.contiguous_format
    variants = {
        "UNet forward, bf16, the engine's (channels_last, packed for oneDNN)": (engine_unet, None),
        "UNet forward, bf16 channels_last, not packed": (loaded, torch.channels_last),
        "UNet forward, bf16 contiguous (plain diffusers' layout)": (loaded, contiguous),
    }
    found: dict[tuple[str, str], list[float]] = {(what, "bfloat16"): [] for what in variants}
    for i in range(repeats):
        for what, (unet, layout) in list(variants.items())[:: 1 if i % 2 == 0 else -1]:
            if layout is not None:
                unet.to(memory_format=layout)
            found[(what, "bfloat16")] += unet_seconds(unet, 2)[1:]
    return found


def _plain_pipeline(folder: Path) -> Any:
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def unet_seconds(unet: Any, calls: int) -> list[float]:
    """Seconds of direct UNet calls as a guided step makes them: 512 px, batch 2 holding the
    same latents twice, with two different text embeddings of 77 tokens."""
    import torch

    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=generator).to(unet.dtype)
    latents = latents.repeat(BATCH, 1, 1, 1)
    text = torch.randn(BATCH, TOKENS, unet.config.cross_attention_dim, generator=generator)
    text = text.to(unet.dtype)
    seconds = []
    with torch.inference_mode():
        for _ in range(calls):
            start = time.perf_counter()
            unet(latents, torch.tensor(500), encoder_hidden_states=text)
            seconds.append(time.perf_counter() - start)
    return seconds


def plain_step(pipe: Any) -> list[float]:
    """Seconds between the first STEP_CALLBACKS step callbacks of a plain diffusers txt2img; the
    rest of the steps and the VAE decode are skipped."""
    import torch

    stamps: list[float] = []

    def on_step_end(pipe_: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict:
        stamps.append(time.perf_counter())
        if len(stamps) == STEP_CALLBACKS:
            pipe_._interrupt = True  # diffusers' own early stop: the remaining steps are skipped
        return kwargs

    pipe(
        prompt=PROMPT,
        width=SIZE,
        height=SIZE,
        num_inference_steps=STEP_CALLBACKS + 1,
        guidance_scale=GUIDANCE,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="latent",  # no VAE decode
        callback_on_step_end=on_step_end,
    )
    return _intervals(stamps)


def _engine(folder: Path) -> Any:
    from paintbridge.engine import Engine
    from paintbridge.engine.types import EngineSettings

    engine = Engine(
        EngineSettings(device="cpu", dtype="auto", allow_any_path=True, model_dirs=(folder.parent,))
    )
    engine.load(str(folder))
    return engine


def engine_step(engine: Any, folder: Path) -> list[float]:
    """Seconds between the first STEP_CALLBACKS progress callbacks of `Engine.generate`,
    cancelled there (before the VAE decode), as the server and the CLI call it."""
    from paintbridge.engine.types import GenerationRequest
    from paintbridge.errors import Cancelled

    cancel = threading.Event()
    stamps: list[float] = []

    def progress(step: int, steps: int) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) == STEP_CALLBACKS:
            cancel.set()

    request = GenerationRequest(
        task="txt2img",
        prompt=PROMPT,
        model=str(folder),
        width=SIZE,
        height=SIZE,
        steps=STEP_CALLBACKS + 1,
        guidance=GUIDANCE,
        seed=SEED,
        scheduler="default",
    )
    try:
        engine.generate(request, progress=progress, cancel=cancel)
    except Cancelled:
        return _intervals(stamps)
    raise RuntimeError("the engine did not stop at the cancel: the step time is wrong")


def _intervals(stamps: list[float]) -> list[float]:
    if len(stamps) != STEP_CALLBACKS:
        raise RuntimeError(f"expected {STEP_CALLBACKS} step callbacks, got {len(stamps)}")
    return [stamps[i + 1] - stamps[i] for i in range(len(stamps) - 1)]
