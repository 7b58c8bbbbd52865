"""Large selections (issue 7, item 3): inpaint a 512, 2048 and 4096 px square selection.

Each selection is centred on an RGBA8 canvas a bit larger than it and filled through the code
path every adapter uses: hostkit `plan_fill_selection` (default context padding) on the
full-canvas mask, `crop_bytes` of the planned box, `inpaint_job` (RGBA8 + A8 payloads),
`Client.run` against a real `paintbridge serve` (0.05 s polling) and `placements`. The model
generates at its own resolution whatever the crop's size, so the goal is that a 4096 px
selection costs at most 1.2x a 512 px one, and that peak memory grows by no more than a few
copies of the crop's RGBA8 buffer (`crop_mb` = box width x height x 4).

A 4096 px selection has no room for context under the server's pixel limit (4096 x 4096):
hostkit gives up the context padding to stay under it (before that, the 25% padding made the
crop too large and the server refused it mid-upload), so its box is the selection itself.

Sizes are visited round-robin; total = plan + crop + payloads + HTTP + server + placements
(medians). submit = the POST round trip (upload, server-side decode and validation); server = from
the POST's answer to the history PNG written (queue, scaling down, generation, scaling up and
compositing, PNG write); fetch = the round trip of the poll that brought the result.
Where the server's time goes is then timed in this process with the server's own functions on the
same crop: decode (rgba8 + a8 payloads to images), prepare (scaling to the model's size), finish
(scaling back, compositing), png (the history PNG write), result (rgba8 payload from that PNG).

Memory, per size (largest over a first pass, smallest size first, and the repeats: memory a
larger fill freed and the allocator kept hides part of a smaller fill's growth, so the smaller
sizes' figures are lower bounds): the server's peak RSS above its RSS before the job
(Linux: VmHWM reset through /proc/PID/clear_refs before each job) and the same for this client
process, whose free heap is given back first (malloc_trim: heap that earlier sections freed and
the allocator kept would otherwise take the client's allocations without raising its RSS, and
read as 0); client_py = tracemalloc's peak of Python allocations during one extra, untimed fill.
The server's peak is mostly the generation's working memory, the same at every size, so the
memory goal is read on what a larger crop adds: server_x_crop_beyond_512.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import Report
from server_overhead import post_id
from serverproc import Server

SECTION = "large_selection"
COLUMNS = (
    "model",
    "selection",
    "canvas",
    "box",
    "repeats",
    "total_s",
    "time_vs_512",
    "submit_ms",
    "server_s",
    "fetch_ms",
    "decode_ms",
    "prepare_ms",
    "finish_ms",
    "png_ms",
    "result_ms",
    "mb_up",
    "mb_down",
    "crop_mb",
    "server_peak_mb",
    "server_x_crop",
    "server_x_crop_beyond_512",
    "client_peak_mb",
    "client_x_crop",
    "client_py_x_crop",
)
MARGIN = 128  # canvas pixels on each side of the selection
TIME_GOAL = 1.2
MEMORY_GOAL = 4.0  # "a few" copies of the crop's RGBA8 buffer
MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    selection: int
    canvas: int

    @property
    def name(self) -> str:
        return f"{self.selection} on {self.canvas}"


@dataclass(frozen=True)
class ModelCase:
    label: str
    server_args: tuple[str, ...]
    steps: int
    repeats: int


CASES = tuple(Case(side, side + 2 * MARGIN) for side in (512, 2048, 4096))


def run(report: Report) -> None:
    report.section(SECTION, "Large selections: 512, 2048 and 4096 px selections", COLUMNS)
    if report.quick:
        model = ModelCase("test:tiny", ("--model", "test:tiny"), 4, 3)
        report.note("quick mode: test:tiny (generates at 64 px), not SD 1.5", SECTION)
    else:
        from sd15_random import ensure_sd15_random

        sd15 = ensure_sd15_random(report.cache_dir)
        args = ("--models-dir", str(sd15.parent), "--model", sd15.name)
        model = ModelCase("SD 1.5 arch, random weights", args, 2, 3)
    repeats = report.repeats or model.repeats
    canvases = {case: _canvas(case) for case in CASES}
    marks: dict[Case, list[dict[str, float]]] = {case: [] for case in CASES}
    python_peak: dict[Case, int] = {}
    with Server(*model.server_args, "--device", "cpu", "--dtype", "float32") as server:
        server.wait_ready()
        filler = _Filler(server, model.steps)
        filler.fill(CASES[0], *canvases[CASES[0]])  # warm-up
        for case in CASES:  # smallest first: memory freed by a larger fill hides a smaller one's
            marks[case].append(filler.fill(case, *canvases[case]))
        for case in CASES:
            python_peak[case] = filler.python_peak(case, *canvases[case])
        memory_pass = {case: marks[case].pop() for case in CASES}
        for _ in range(repeats):
            for case in CASES:
                marks[case].append(filler.fill(case, *canvases[case]))
    for case in CASES:
        marks[case].append({**memory_pass[case], "total": None})
    native = 64 if report.quick else 512
    steps_ms = {case: _server_steps(case, *canvases[case], native) for case in CASES}
    _add_rows(report, model.label, repeats, marks, python_peak, steps_ms, filler.boxes)
    report.note(
        f"{model.steps} steps, strength 1, float32; x_crop = peak growth / crop_mb; "
        "server_x_crop_beyond_512 = (server peak - the 512 px one) / (crop_mb - its crop_mb): "
        "what a larger crop adds to the generation's own working memory; "
        "client_peak is this process's VmHWM growth (a Python host's plug-in would add it to "
        "the host's memory), client_py tracemalloc's peak",
        SECTION,
    )


def _canvas(case: Case) -> tuple[bytes, bytes]:
    """An RGBA8 canvas (not all zeros) and its A8 selection mask, the selection centred."""
    side, sel = case.canvas, case.selection
    canvas = bytearray(side * side * 4)
    canvas[0::4] = bytes(range(256)) * (side * side // 256)
    mask = bytearray(side * side)
    top = (side - sel) // 2
    for row in range(top, top + sel):
        mask[row * side + top : row * side + top + sel] = b"\xff" * sel
    return bytes(canvas), bytes(mask)


class _Filler:
    """Fills selections through hostkit against one server, recording times, bytes and peaks."""

    def __init__(self, server: Server, steps: int) -> None:
        self.server = server
        self.client, self.transport = server.client()
        self.steps = steps
        self.boxes: dict[Case, str] = {}

    def fill(self, case: Case, canvas: bytes, mask: bytes) -> dict[str, float]:
        from paintbridge.engine.allocator import give_back_freed_memory

        server_base = _reset_peak(self.server.process.pid)
        # this process's free heap: its reuse would hide the client's growth
        give_back_freed_memory()
        client_base = _reset_peak("self")
        self.transport.log.clear()
        start = time.time()
        self._fill(case, canvas, mask)
        end = time.time()
        client_peak = _peak_mib("self")
        server_peak = _peak_mib(self.server.process.pid)
        post, final = self.transport.log[0], self.transport.log[-1]
        written = self.server.history_png(post_id(self.transport)).stat().st_mtime
        return {
            "total": end - start,
            "submit": post.end - post.start,
            "server": written - post.end,
            "fetch": final.end - final.start,
            "up": post.sent,
            "down": final.received,
            "server_peak": server_peak - server_base,
            "client_peak": client_peak - client_base,
        }

    def python_peak(self, case: Case, canvas: bytes, mask: bytes) -> int:
        tracemalloc.start()
        try:
            self._fill(case, canvas, mask)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def _fill(self, case: Case, canvas: bytes, mask: bytes) -> None:
        from paintbridge.hostkit import inpaint_job, placements, plan_fill_selection
        from paintbridge.hostkit.geometry import crop_bytes

        side = case.canvas
        plan = plan_fill_selection(mask, side, side, (0, 0, side, side))
        assert plan is not None
        self.boxes[case] = f"{plan.box.width}x{plan.box.height}"
        rgba = crop_bytes(canvas, side, side, plan.box, 4)
        job = inpaint_job(
            rgba,
            plan.mask,
            plan.box.width,
            plan.box.height,
            prompt="a door",
            steps=self.steps,
            strength=1.0,
            seed=7,
        )
        del rgba
        results = self.client.run(job, poll_interval=0.05)
        del job
        placed = placements(plan.box, results)
        assert len(placed) == 1


def _add_rows(
    report: Report,
    label: str,
    repeats: int,
    marks: dict[Case, list[dict[str, float]]],
    python_peak: dict[Case, int],
    steps_ms: dict[Case, dict[str, float]],
    boxes: dict[Case, str],
) -> None:
    def med(case: Case, key: str) -> float:  # the memory pass's times are left out
        return statistics.median(m[key] for m in marks[case] if m["total"] is not None)

    def crop_of(case: Case) -> float:
        width, height = (int(x) for x in boxes[case].split("x"))
        return width * height * 4 / MIB

    def server_peak_of(case: Case) -> float:
        return max(m["server_peak"] for m in marks[case])

    base = med(CASES[0], "total")
    for case in CASES:
        crop_mib = crop_of(case)
        server_peak = server_peak_of(case)
        client_peak = max(m["client_peak"] for m in marks[case])
        row: dict[str, Any] = {
            "model": label,
            "selection": f"{case.selection}x{case.selection}",
            "canvas": f"{case.canvas}x{case.canvas}",
            "box": boxes[case],
            "repeats": repeats,
            "total_s": med(case, "total"),
            "time_vs_512": med(case, "total") / base,
            "submit_ms": 1000 * med(case, "submit"),
            "server_s": med(case, "server"),
            "fetch_ms": 1000 * med(case, "fetch"),
            "mb_up": med(case, "up") / MIB,
            "mb_down": med(case, "down") / MIB,
            "crop_mb": crop_mib,
            "server_peak_mb": server_peak,
            "server_x_crop": server_peak / crop_mib,
            "server_x_crop_beyond_512": (
                (server_peak - server_peak_of(CASES[0])) / (crop_mib - crop_of(CASES[0]))
                if case is not CASES[0]
                else None
            ),
            "client_peak_mb": client_peak,
            "client_x_crop": client_peak / crop_mib,
            "client_py_x_crop": python_peak[case] / MIB / crop_mib,
            "client_py_peak_mb": python_peak[case] / MIB,
            **{f"{name}_ms": ms for name, ms in steps_ms[case].items()},
            "total_all_s": [round(m["total"], 4) for m in marks[case] if m["total"] is not None],
            "server_peak_all_mb": [round(m["server_peak"], 1) for m in marks[case]],
        }
        report.add(SECTION, row)
        if row["time_vs_512"] > TIME_GOAL:
            report.note(
                f"{case.name}: {row['time_vs_512']:.2f}x the 512 px time, goal {TIME_GOAL}x",
                SECTION,
            )
        # the server's peak holds the generation's working memory, the same at every size (it
        # generates at the model's resolution): what a larger crop adds is the growth beyond 512
        for side, column in (("server", "server_x_crop_beyond_512"), ("client", "client_x_crop")):
            if row[column] is not None and row[column] > MEMORY_GOAL:
                report.note(
                    f"{case.name}: {side} peak grew {row[column]:.1f}x the crop's "
                    f"RGBA8 buffer, goal at most {MEMORY_GOAL:.0f}x",
                    SECTION,
                )


def _status_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status (Linux only)")


def _server_steps(case: Case, canvas: bytes, mask: bytes, native: int) -> dict[str, float]:
    """Milliseconds of the server's own steps for this crop, timed here with the same functions
    (median of 3): payload decode, scaling to the model's size, scaling back and compositing,
    the history PNG write, and building the rgba8 result from that PNG."""
    import base64
    import tempfile

    from PIL import Image

    from paintbridge import pngmeta
    from paintbridge.engine.plan import finish_image, make_plan, prepare_inputs
    from paintbridge.engine.types import GenerationRequest, Limits
    from paintbridge.hostkit import plan_fill_selection
    from paintbridge.hostkit.geometry import crop_bytes
    from paintbridge.server.payloads import decode_image, decode_mask, encode_file
    from paintbridge.server.schemas import ImagePayload

    side = case.canvas
    fill = plan_fill_selection(mask, side, side, (0, 0, side, side))
    assert fill is not None
    width, height = fill.box.width, fill.box.height
    rgba = crop_bytes(canvas, side, side, fill.box, 4)
    image_payload = ImagePayload(
        width=width, height=height, format="rgba8", data=base64.b64encode(rgba).decode()
    )
    mask_payload = ImagePayload(
        width=width, height=height, format="a8", data=base64.b64encode(fill.mask).decode()
    )
    del rgba
    limits = Limits()
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        start = time.perf_counter()
        value = fn(*args)
        times.setdefault(name, []).append(1000 * (time.perf_counter() - start))
        return value

    def decode(image: Any, mask: Any) -> tuple[Any, Any]:
        return decode_image(image, limits), decode_mask(mask, limits)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.png"
        for _ in range(3):
            image, mask_image = timed("decode", decode, image_payload, mask_payload)
            request = GenerationRequest(
                task="inpaint", prompt="a door", image=image, mask=mask_image
            )
            plan = make_plan(request, model="bench", native=native, preset=None, limits=limits)
            inputs = timed("prepare", prepare_inputs, request, plan)
            generated = Image.new("RGB", plan.gen_size, (90, 120, 150))
            result = timed("finish", finish_image, generated, request, plan)
            timed("png", pngmeta.save_png, result, path, {"task": "inpaint"})
            timed("result", encode_file, path, "rgba8")
            del image, mask_image, request, inputs, result
    return {name: statistics.median(ms) for name, ms in times.items()}


def _reset_peak(pid: int | str) -> float:
    """Resets the process's peak RSS (VmHWM) to its current RSS; returns that RSS in MiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kib(pid, "VmRSS") / 1024


def _peak_mib(pid: int | str) -> float:
    return _status_kib(pid, "VmHWM") / 1024
