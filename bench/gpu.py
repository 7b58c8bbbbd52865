"""paintbridge on a CUDA card (issue 7, "On a GPU"): plain diffusers and the engine, same card.

Run it where a CUDA device is: `./dev bench --only gpu` (on this project's lent GPU machine,
bench/device.sh, which brings the packages that machine lacks). Without CUDA the section writes
one row saying so. PAINTBRIDGE_BENCH_GPU_REHEARSE=1 runs the same code on the CPU with the tiny
test model at 64 px, 3 steps: a check of the plumbing before device time is spent on it.

Models (random weights, published configurations, so each call costs what the real model costs):
SD 1.5 (bench/sd15_random.py) at 512 px and, in full mode, SDXL base (bench/sdxl_random.py) at
1024 px (each model's native size: the engine generates at about native**2 pixels whatever the
size asked, so only there do both generate the same); txt2img, 20 steps, guidance 7.5, the
model's own scheduler, one seed, float16.
Compared on one card, in alternating order after a warm-up call each:
- plain diffusers: `DiffusionPipeline.from_pretrained(folder, dtype=float16).to("cuda")`, its
  defaults (torch's SDPA attention, contiguous layout);
- paintbridge's `Engine.generate` (device cuda, dtype auto = float16; the UNet in
  channels_last, as engine/pipelines.py's channels_last_modules picks on CUDA);
- an experiment: the same engine with its UNet put back in the contiguous layout, which plain
  diffusers uses (the three alternate, each taking every place in the order in turn);
- for SD 1.5 in full mode, the engine with `compile` on (torch.compile of the UNet with CUDA
  graphs, opt-in): `first_s` is its first generation, which compiles; a second untimed one
  records the graphs (SDXL's compile would take minutes of the lent machine's few);
- for SD 1.5, hostkit -> HTTP -> `paintbridge serve --device cuda` (what the plug-ins do), and
  in full mode the same with `serve --compile`, each with a note of where its time went
  (server_overhead.measure's columns: submit, the server's generation, the history PNG, the
  poll, the fetch);
- in full mode, a launch check note: how long Python takes to queue one SD 1.5 UNet call's
  kernels against the whole call (launch_check).
it_per_s = 1 / the median gap between step callbacks; each callback first waits for the card
(torch.cuda.synchronize), so a gap is the step's time on the card or, where Python queues the
kernels slower than the card runs them, the time to queue them. total_s is
the whole call, text encoding to the decoded image. vs_plain = plain's step time / this row's
(it/s ratio; above 1 is faster than plain diffusers); for the server row, plain's total / the
server's. peak_gib = torch.cuda.max_memory_allocated during one call: this process's, so the
weights of every pipeline it holds (plain's and the engines') count with the call's own memory.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import server_overhead
from cpu_speed import Split
from overhead import GUIDANCE, PROMPT, SEED, plain_txt2img
from report import Report

SECTION = "gpu"
COLUMNS = (
    "model",
    "what",
    "size",
    "dtype",
    "steps",
    "repeats",
    "it_per_s",
    "step_ms",
    "total_s",
    "vs_plain",
    "peak_gib",
    "first_s",
)
STEPS = 20
REPEATS = 5
SERVICE_PARTS = ("submit_ms", "busy_s", "server_generation_est_s", "history_ms", "poll_wait_ms",
                 "fetch_ms", "polls", "kb_down")  # fmt: skip
SDXL_MIN_FREE_GIB = 32  # three float16 SDXL pipelines (plain, two engines), their activations


@dataclass(frozen=True)
class Case:
    model: str
    folder: Path
    size: int
    steps: int
    server_args: tuple[str, ...] = ()  # empty: no server row
    compile: bool = False  # also the engine with torch.compile (full mode only)


def run(report: Report) -> None:
    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    report.section(SECTION, "On a CUDA card: plain diffusers vs the engine, float16", COLUMNS)
    rehearse = os.environ.get("PAINTBRIDGE_BENCH_GPU_REHEARSE") == "1"
    if not torch.cuda.is_available() and not rehearse:
        report.add(SECTION, {"model": "-", "what": "skipped: no CUDA device on this machine"})
        report.note(
            "GPU figures come from a machine with a CUDA card: `./dev bench --only gpu` there "
            "(bench/device.sh on this project's lent GPU machine)",
            SECTION,
        )
        return
    device, dtype = ("cpu", "float32") if rehearse else ("cuda", "float16")
    if device == "cuda":
        report.machine["gpu_memory_gib"] = round(
            torch.cuda.get_device_properties(0).total_memory / 2**30, 1
        )
        report.note(f"card: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", SECTION)
    repeats = report.repeats or (1 if report.quick or rehearse else REPEATS)
    for case in _cases(report, device, rehearse):
        for row in _run_case(case, device, dtype, repeats):
            report.add(SECTION, row)
            if "service" in row:
                report.note(service_note(row), SECTION)
            if "launch" in row:
                report.note(launch_note(row), SECTION)
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    if rehearse:
        report.note("REHEARSAL on the CPU (tiny model, float32): plumbing only", SECTION)


def _cases(report: Report, device: str, rehearse: bool) -> list[Case]:
    import torch

    if rehearse:
        from paintbridge.engine.testmodel import ensure_test_model

        tiny = ensure_test_model("test:tiny")
        return [Case("test:tiny", tiny, 64, 3, ("--model", "test:tiny"), compile=True)]
    from sd15_random import ensure_sd15_random

    sd15 = ensure_sd15_random(report.cache_dir)
    cases = [
        Case(
            "SD 1.5",
            sd15,
            512,
            STEPS,
            ("--models-dir", str(sd15.parent), "--model", sd15.name),
            compile=not report.quick,
        )
    ]
    free_gib = torch.cuda.mem_get_info()[0] / 2**30
    if report.quick:
        report.note("quick mode: SDXL and torch.compile skipped", SECTION)
    elif free_gib < SDXL_MIN_FREE_GIB:
        report.note(f"SDXL skipped: {free_gib:.0f} GiB free on the card", SECTION)
    else:
        from sdxl_random import ensure_sdxl_random

        cases.append(Case("SDXL", ensure_sdxl_random(report.cache_dir, device), 1024, STEPS))
    return cases


def _run_case(case: Case, device: str, dtype: str, repeats: int) -> list[dict]:
    import torch
    from diffusers import DiffusionPipeline

    plain = DiffusionPipeline.from_pretrained(case.folder, dtype=getattr(torch, dtype))
    plain = plain.to(device)
    plain.set_progress_bar_config(disable=True)
    engine = _engine(case, device, compile=False)
    # the engine with its UNet back in the layout plain diffusers uses: is channels_last worth it?
    contiguous = _engine(case, device, compile=False)
    contiguous._model.base.unet.to(memory_format=torch.contiguous_format)
    calls = {
        "plain": partial(plain_call, plain, case, device),
        "engine": partial(engine_call, engine, case, device),
        "contiguous": partial(engine_call, contiguous, case, device),
    }
    for call in calls.values():  # warm-up: first calls are slower
        call()
    runs: dict[str, list[tuple[Split, float]]] = {who: [] for who in calls}
    order = list(calls)
    for i in range(repeats):  # each in every place of the order in turn
        for who in order[i % len(order) :] + order[: i % len(order)]:
            runs[who].append(calls[who]())
    engine.unload()
    contiguous.unload()
    del calls
    plain_step = statistics.median(split.step for split, _ in runs["plain"])
    rows = [
        _row(case, "plain diffusers (SDPA, contiguous)", dtype, runs["plain"], plain_step),
        _row(case, "paintbridge Engine (channels_last)", dtype, runs["engine"], plain_step),
        _row(case, "experiment: Engine, UNet contiguous", dtype, runs["contiguous"], plain_step),
    ]
    if case.compile:
        rows.append(_compiled_row(case, device, dtype, repeats, plain_step))
        torch._dynamo.reset()
    if case.compile and getattr(plain.unet.config, "addition_embed_type", None) is None:
        rows[0]["launch"] = launch_check(plain.unet, device)
    if case.server_args:
        rows.append(_server_row(case, device, dtype, plain, repeats))
    if case.server_args and case.compile:
        rows.append(_server_row(case, device, dtype, plain, repeats, compile=True))
    del plain
    return rows


def _compiled_row(
    case: Case, device: str, dtype: str, repeats: int, plain_step: float
) -> dict[str, Any]:
    """The engine with `compile` on: torch.compile of the UNet, with CUDA graphs on CUDA."""
    compiled = _engine(case, device, compile=True)
    start = time.perf_counter()
    engine_call(compiled, case, device)  # compiles
    first = time.perf_counter() - start
    engine_call(compiled, case, device)  # CUDA graphs record on the second call
    found = [engine_call(compiled, case, device) for _ in range(repeats)]
    compiled.unload()
    what = "paintbridge Engine, compile on" + (" (CUDA graphs)" if device == "cuda" else "")
    return {**_row(case, what, dtype, found, plain_step), "first_s": first}


def launch_check(unet: Any, device: str, repeats: int = 7) -> dict[str, float]:
    """One UNet call (a guidance batch of 2 at 512 px): how long Python takes to queue its
    kernels (the call returning, before the card is waited for) against the whole call. Queue
    time near the whole means the card waits on Python's launches, so CUDA graphs would pay."""
    import torch

    wait = _waiter(device)
    config = unet.config
    side = 512 // 8 if device == "cuda" else 8
    latents = torch.randn(2, config.in_channels, side, side, device=device, dtype=unet.dtype)
    context = torch.randn(2, 77, config.cross_attention_dim, device=device, dtype=unet.dtype)
    timestep = torch.tensor(500, device=device)
    queued, whole = [], []
    with torch.inference_mode():
        for i in range(repeats + 1):
            wait()
            start = time.perf_counter()
            unet(latents, timestep, encoder_hidden_states=context)
            queued_at = time.perf_counter()
            wait()
            if i:  # the first call warms up
                queued.append(queued_at - start)
                whole.append(time.perf_counter() - start)
    return {
        "queue_ms": 1000 * statistics.median(queued),
        "call_ms": 1000 * statistics.median(whole),
    }


def _engine(case: Case, device: str, compile: bool) -> Any:
    from paintbridge.engine import Engine
    from paintbridge.engine.types import EngineSettings

    settings = EngineSettings(
        device=device,
        dtype="auto" if device == "cuda" else "float32",
        allow_any_path=True,
        model_dirs=(case.folder.parent,),
        compile=compile,
    )
    engine = Engine(settings)
    engine.load(str(case.folder))
    return engine


def _waiter(device: str) -> Any:
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def _peak_reset(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0


def plain_call(pipe: Any, case: Case, device: str) -> tuple[Split, float]:
    wait = _waiter(device)
    stamps: list[float] = []

    def on_step_end(pipe_: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict:
        wait()
        stamps.append(time.perf_counter())
        return kwargs

    _peak_reset(device)
    wait()
    start = time.perf_counter()
    plain_txt2img(pipe, case.size, case.size, case.steps, callback_on_step_end=on_step_end)
    return Split(start, stamps, time.perf_counter()), _peak_gib(device)


def engine_call(engine: Any, case: Case, device: str) -> tuple[Split, float]:
    from paintbridge.engine.types import GenerationRequest

    wait = _waiter(device)
    stamps: list[float] = []

    def progress(step: int, steps: int) -> None:
        wait()
        stamps.append(time.perf_counter())

    request = GenerationRequest(
        task="txt2img",
        prompt=PROMPT,
        model=str(case.folder),
        width=case.size,
        height=case.size,
        steps=case.steps,
        guidance=GUIDANCE,
        seed=SEED,
        scheduler="default",  # the model's own, as the plain pipeline uses
    )
    _peak_reset(device)
    wait()
    start = time.perf_counter()
    engine.generate(request, progress=progress)
    return Split(start, stamps, time.perf_counter()), _peak_gib(device)


def _row(
    case: Case, what: str, dtype: str, runs: list[tuple[Split, float]], plain_step: float
) -> dict[str, Any]:
    step = statistics.median(split.step for split, _ in runs)
    return {
        "model": case.model,
        "what": what,
        "size": f"{case.size}x{case.size}",
        "dtype": dtype,
        "steps": case.steps,
        "repeats": len(runs),
        "it_per_s": 1 / step if step else None,
        "step_ms": 1000 * step,
        "total_s": statistics.median(split.total for split, _ in runs),
        "vs_plain": plain_step / step if step else None,
        "peak_gib": max(peak for _, peak in runs),
        "all_total_s": [round(split.total, 3) for split, _ in runs],
    }


def _server_row(
    case: Case, device: str, dtype: str, plain: Any, repeats: int, compile: bool = False
) -> dict[str, Any]:
    """hostkit's Client.run against `paintbridge serve` on the same card, alternating with plain
    diffusers in this process (total time per image, the result's bytes back included), with
    where the server's time went (server_overhead.measure, as on the CPU)."""
    args = (*case.server_args, "--compile") if compile else case.server_args
    found = server_overhead.measure(
        server_overhead.Case(case.model, args, case.folder, case.size, case.steps, repeats),
        repeats,
        device=device,
        dtype=dtype,
        plain=plain,
        warm_ups=2 if compile else 1,
    )
    return {
        "model": case.model,
        "what": "hostkit -> HTTP -> paintbridge serve" + (" --compile" if compile else ""),
        "size": f"{case.size}x{case.size}",
        "dtype": dtype,
        "steps": case.steps,
        "repeats": repeats,
        "total_s": found["server_s"],
        "vs_plain": found["plain_s"] / found["server_s"],
        "plain_total_s": found["plain_s"],
        "all_total_s": found["server_all_s"],
        "service": {key: found[key] for key in SERVICE_PARTS},
    }


def service_note(row: dict[str, Any]) -> str:
    """Where the server row's time went, a line (the keys are server_overhead's columns)."""
    part = row["service"]
    return (
        f"{row['model']}, {row['what']}, medians a job: submit {part['submit_ms']:.0f} ms, server "
        f"busy {part['busy_s']:.3f} s (its generation about {part['server_generation_est_s']:.3f} "
        f"s against plain's {row['plain_total_s']:.3f} s, the history PNG {part['history_ms']:.0f} "
        f"ms), then {part['poll_wait_ms']:.0f} ms until the poll that saw it done, fetch "
        f"{part['fetch_ms']:.0f} ms ({part['kb_down']:.0f} KB), {part['polls']:.0f} polls"
    )


def launch_note(row: dict[str, Any]) -> str:
    launch = row["launch"]
    return (
        f"{row['model']} launch check, one UNet call with guidance's batch of 2: Python queued "
        f"its kernels in {launch['queue_ms']:.1f} ms of the call's {launch['call_ms']:.1f} ms "
        "(plain diffusers' UNet; a queue time near the whole means the card waits on launches)"
    )
