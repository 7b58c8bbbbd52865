"""What starting a job costs the editor's GUI thread (Krita, Blender), by selection size.

Before hostkit's JobWatch sent jobs itself, the GUI thread made the upload: `Client.submit`,
whose time grows with the crop (a 4096 px selection is 85 MB of JSON) and with a slow link. Now
`Client.watch` returns at once and its thread sends the job; the GUI's timer polls. Per crop,
alternating old and new: `submit_ms` (the old stall), `watch_ms` (the new one: watch() until
it returns), `poll_max_ms` (the longest of the timer's poll() calls, every 20 ms, until the job
is sent) and `sent_ms` (until the job has its id, the upload's time off the GUI thread). Building
the job (the plan and the crop; its base64 is written while the job is sent) happens on the GUI
thread both ways: `build_ms`; `base64_ms` is what making the job's base64 strings took there
before (hostkit's Base64). A real `paintbridge serve` on loopback (test:tiny; each job is
cancelled once sent: generation is not measured).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from client_fill import canvas as make_canvas
from report import Report
from serverproc import Server

SECTION = "gui_thread"
COLUMNS = (
    "selection",
    "box",
    "mb_up",
    "repeats",
    "build_ms",
    "base64_ms",
    "submit_ms",
    "watch_ms",
    "poll_max_ms",
    "sent_ms",
    "stall_new_vs_old",
)
SELECTIONS = (512, 2048, 4096)
POLL_S = 0.02


def run(report: Report) -> None:
    report.section(SECTION, "GUI thread time to start a job: upload on it vs off it", COLUMNS)
    repeats = report.repeats or 5
    with Server("--model", "test:tiny", "--queue-size", "16") as server:
        server.wait_ready()
        client, _ = server.client(timeout=120)
        for side in SELECTIONS:
            build, job, box = _timed_job(side)
            marks: dict[str, list[float]] = {
                "submit": [],
                "watch": [],
                "poll_max": [],
                "sent": [],
            }
            for i in range(repeats):
                for way in ("old", "new") if i % 2 == 0 else ("new", "old"):
                    if way == "old":
                        marks["submit"].append(_submit(client, job))
                    else:
                        for key, value in _watch(client, job).items():
                            marks[key].append(value)
            row: dict[str, Any] = {
                "selection": side,
                "box": box,
                "mb_up": round(_size(job) / 2**20, 1),
                "repeats": repeats,
                "build_ms": round(build * 1000, 1),
                "base64_ms": round(_base64_time(job) * 1000, 1),
            }
            for key, values in marks.items():
                row[key + "_ms"] = round(statistics.median(values) * 1000, 1)
            old = build + statistics.median(marks["submit"])
            new = build + statistics.median(marks["watch"]) + statistics.median(marks["poll_max"])
            row["stall_new_vs_old"] = round(new / old, 3)
            report.add(SECTION, row)
    report.note(
        "stall_new_vs_old: (build + watch + the longest poll) / (build + submit), medians; "
        "loopback, so a remote server's upload makes the old stall longer still; "
        "base64_ms: the job's base64 strings made at once, which build_ms held before the "
        "body learned to encode them while it is sent (now in submit_ms and sent_ms)",
        SECTION,
    )


def _timed_job(side: int) -> tuple[float, dict[str, Any], str]:
    """An inpaint job of a `side` px selection (hostkit's plan, crop and payloads) and the
    seconds it took to build (the median of 3)."""
    from paintbridge.hostkit import inpaint_job, plan_fill_selection
    from paintbridge.hostkit.geometry import crop_bytes

    canvas_side = side + 256
    pixels, mask = make_canvas(canvas_side, side)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        plan = plan_fill_selection(mask, canvas_side, canvas_side, (0, 0, canvas_side, canvas_side))
        assert plan is not None
        rgba = crop_bytes(pixels, canvas_side, canvas_side, plan.box, 4)
        job = inpaint_job(
            rgba, plan.mask, plan.box.width, plan.box.height, prompt="a door", steps=4
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times), job, f"{plan.box.width}x{plan.box.height}"


def _base64_time(job: dict[str, Any]) -> float:
    """Seconds to make the job's base64 strings at once (the median of 3)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for payload in (job["image"], job["mask"]):
            str(payload["data"])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _size(job: dict[str, Any]) -> int:
    from paintbridge.hostkit.transport import json_body

    return len(json_body(job))


def _submit(client: Any, job: dict[str, Any]) -> float:
    start = time.perf_counter()
    job_id = client.submit(job)
    took = time.perf_counter() - start
    client.cancel(job_id)
    return took


def _watch(client: Any, job: dict[str, Any]) -> dict[str, float]:
    start = time.perf_counter()
    watch = client.watch(job)
    returned = time.perf_counter()
    longest = 0.0
    while watch.id is None:
        time.sleep(POLL_S)
        before = time.perf_counter()
        status = watch.poll()
        longest = max(longest, time.perf_counter() - before)
        if status.finished:
            raise RuntimeError(f"the job ended before it was sent: {status!r}")
    sent = time.perf_counter() - start
    watch.cancel(wait=10)
    watch.close()
    watch.join(10)
    return {"watch": returned - start, "poll_max": longest, "sent": sent}
