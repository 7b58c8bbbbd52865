"""What the local service costs on top of diffusers: hostkit -> HTTP -> `paintbridge serve`.

For each case, in one run on one machine: a plain diffusers pipeline called in this process, and
the same generation (model folder, size, steps, guidance, seed, the model's own scheduler,
dtype) submitted with hostkit's `Client.run` (default 0.25 s polling, as the plug-ins use it) to
a real `paintbridge serve` subprocess that loaded the same folder with --preload. Both are warmed
up once, then run `repeats` times in alternating order; the ratio is median(server) /
median(plain). Goal: <= 1.03 at 512 px. One extra tiny row polls every 0.02 s instead: since
status requests wait on the server for the next change (`?wait=`), the interval only paces
polls that brought nothing new, so the two tiny rows should read alike.

Where the difference goes, per call (medians), from hostkit's own requests (a recording
transport) and the result PNG's modification time in the server's history folder:
encode = building the job and its JSON before the POST starts; submit = the POST round trip
(transfer, server-side JSON decode and validation, enqueue); busy = from the POST's answer to the
history PNG written (queue wait + generation + PNG write); history = writing that PNG with its
parameters, timed in this process on the same image; poll wait = from the PNG written to the
start of the poll that saw "done" (polling latency); fetch = that poll's round trip (the server
building the RGBA8 payload, transfer); decode = the client's JSON + base64 decode after it.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overhead import GUIDANCE, PROMPT, SEED, plain_txt2img
from report import Report, time_alternating
from serverproc import Server

SECTION = "server"
COLUMNS = (
    "case",
    "size",
    "generated",
    "steps",
    "repeats",
    "plain_s",
    "server_s",
    "ratio",
    "encode_ms",
    "submit_ms",
    "busy_s",
    "history_ms",
    "poll_wait_ms",
    "fetch_ms",
    "decode_ms",
    "polls",
    "kb_up",
    "kb_down",
    "same_pixels",
)
GOAL = 1.03


@dataclass(frozen=True)
class Case:
    name: str
    server_args: tuple[str, ...]
    folder: Path
    size: int
    steps: int
    repeats: int
    full_size: bool = False
    poll: float = 0.25  # hostkit's default poll interval


def run(report: Report) -> None:
    from paintbridge.engine.allocator import keep_freed_memory
    from paintbridge.engine.testmodel import ensure_test_model

    report.section(
        SECTION, "Service overhead: hostkit -> HTTP -> paintbridge serve vs plain", COLUMNS
    )
    # The server's engine keeps freed memory for reuse (engine/allocator.py, process-wide). Plain
    # diffusers here gets the same settings, as it does anyway once an earlier section made an
    # Engine in this process: the ratio is then the service's own cost, the same in every run.
    keep_freed_memory()
    tiny = ensure_test_model("test:tiny")
    tiny_args = ("--model", "test:tiny")
    cases = [
        Case("tiny (test:tiny)", tiny_args, tiny, 256, 10, 7),
        Case("tiny, 0.02 s polling", tiny_args, tiny, 256, 10, 7, poll=0.02),
        # a large result after a fast generation, as on a GPU: the PNG written and fetched
        Case("tiny, 1024 px result", tiny_args, tiny, 1024, 10, 7),
    ]
    if report.quick:
        report.note("quick mode: full-size SD 1.5 skipped", SECTION)
    else:
        from sd15_random import ensure_sd15_random

        sd15 = ensure_sd15_random(report.cache_dir)
        args = ("--models-dir", str(sd15.parent), "--model", sd15.name)
        cases.append(Case("SD 1.5 arch, random weights", args, sd15, 512, 2, 3, True))
    report.note(
        "plain runs at the size the server generates at (`generated`); the tiny model "
        "generates at 64 px and the server resizes to the size asked. float32, device cpu, "
        "both processes with the same torch thread count and allocator settings. busy - "
        "history = queue wait + the server's generation; compare it with plain_s",
        SECTION,
    )
    for case in cases:
        gc.collect()
        row = measure(case, report.repeats)
        report.add(SECTION, row)
        if case.full_size and row["ratio"] > GOAL:
            report.note(f"full size: ratio {row['ratio']:.3f} above goal {GOAL}", SECTION)


def measure(
    case: Case,
    repeats: int | None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    plain: Any = None,
    warm_ups: int = 1,
) -> dict[str, Any]:
    """One case's row: plain diffusers in this process (`plain`, or a pipeline loaded here on
    the CPU) against a server on `device`, alternating, with where the server's time went.
    `warm_ups` untimed jobs first (2 for a server with --compile on CUDA: the first compiles,
    the second records the CUDA graphs)."""
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from PIL import Image

    from paintbridge import pngmeta
    from paintbridge.hostkit import txt2img_job

    diffusers_logging.disable_progress_bar()
    n = repeats or case.repeats
    if plain is None:
        plain = DiffusionPipeline.from_pretrained(case.folder, dtype=getattr(torch, dtype))
        plain.set_progress_bar_config(disable=True)
    with Server(*case.server_args, "--device", device, "--dtype", dtype) as server:
        server.wait_ready()
        client, transport = server.client()
        job = txt2img_job(
            PROMPT,
            width=case.size,
            height=case.size,
            negative_prompt="",
            steps=case.steps,
            guidance=GUIDANCE,
            seed=SEED,
            scheduler="default",
        )
        marks: list[dict[str, float]] = []
        last: list[Any] = []

        def server_call() -> None:
            transport.log.clear()
            start = time.time()
            results = client.run(dict(job), poll_interval=case.poll)
            end = time.time()
            post, final = transport.log[0], transport.log[-1]
            job_id = post_id(transport)
            written = server.history_png(job_id).stat().st_mtime
            marks.append(
                {
                    "encode": post.start - start,
                    "submit": post.end - post.start,
                    "busy": written - post.end,
                    "poll_wait": final.start - written,
                    "fetch": final.end - final.start,
                    "decode": end - final.end,
                    "polls": len(transport.log) - 1,
                    "up": post.sent,
                    "down": final.received,
                }
            )
            last[:] = results

        for _ in range(warm_ups):
            server_call()
        result = last[0]
        parameters = _job_parameters(client, transport)
        gen_w = int(parameters.get("generated_width", case.size))
        gen_h = int(parameters.get("generated_height", case.size))

        def plain_call() -> Any:
            return plain_txt2img(plain, gen_w, gen_h, case.steps)

        plain_image = plain_call()  # warm-up
        same: bool | str = "-"
        if plain_image.size == (result.width, result.height):
            theirs = np.frombuffer(result.rgba, np.uint8).reshape(result.height, result.width, 4)
            same = bool(np.array_equal(np.asarray(plain_image.convert("RGB")), theirs[..., :3]))
        marks.clear()
        plain_t, server_t = time_alternating(plain_call, server_call, n)
        server_rss = server.rss_mib()
    image = Image.frombytes("RGBA", (result.width, result.height), bytes(result.rgba))
    history_s = _median_time(
        lambda path: pngmeta.save_png(image, path, dict(parameters, seed=SEED)), 5
    )

    def med(key: str) -> float:
        return statistics.median(m[key] for m in marks)

    return {
        "case": case.name,
        "size": f"{case.size}x{case.size}",
        "generated": f"{gen_w}x{gen_h}",
        "steps": case.steps,
        "repeats": n,
        "plain_s": plain_t.median,
        "server_s": server_t.median,
        "ratio": server_t.median / plain_t.median,
        "encode_ms": 1000 * med("encode"),
        "submit_ms": 1000 * med("submit"),
        "busy_s": med("busy"),
        "history_ms": 1000 * history_s,
        "poll_wait_ms": 1000 * med("poll_wait"),
        "fetch_ms": 1000 * med("fetch"),
        "decode_ms": 1000 * med("decode"),
        "polls": med("polls"),
        "kb_up": med("up") / 1024,
        "kb_down": med("down") / 1024,
        "same_pixels": same,
        "poll_interval_s": case.poll,
        "plain_all_s": [round(s, 4) for s in plain_t.seconds],
        "server_all_s": [round(s, 4) for s in server_t.seconds],
        "server_generation_est_s": med("busy") - history_s,
        "server_rss_mib": round(server_rss, 1),
    }


def post_id(transport: Any) -> str:
    """The job id from the first poll's path (/v1/jobs/{id}?image_format=...)."""
    poll = transport.log[1]
    return poll.path.split("/v1/jobs/", 1)[1].split("?", 1)[0]


def _job_parameters(client: Any, transport: Any) -> dict[str, Any]:
    """The finished warm-up job's parameters (generated size) from a PNG-less status call."""
    job_id = post_id(transport)
    return dict(client.status(job_id, "png").get("parameters") or {})


def _median_time(fn: Any, repeats: int) -> float:
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            path = Path(tmp) / f"{i}.png"
            start = time.perf_counter()
            fn(path)
            seconds.append(time.perf_counter() - start)
            os.remove(path)
    return statistics.median(seconds)
