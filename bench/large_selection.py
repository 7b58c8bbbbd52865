"""Large selections (issue 7, item 3): inpaint a 512, 2048 and 4096 px square selection.

Each selection is centred on an RGBA8 canvas a bit larger than it and filled through the code
path every adapter uses (client_fill.py: hostkit planning, cropping and packing, `Client.run`
against a real `paintbridge serve` with 0.05 s polling, `placements`). The model
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

Memory, per size: the server's peak RSS above its RSS before the job (Linux: VmHWM reset
through /proc/PID/clear_refs before each job; the largest over all jobs of that size; the server
gives freed memory back after every job here, so that each job's growth is its own), and the
client's, measured as a plug-in would see it: one fill in a fresh process that holds hostkit only,
with glibc's default allocator (client_fill.py; client_py = tracemalloc's peak of Python
allocations during a second fill there). The server's peak is mostly the generation's working
memory, the same at every size but not the same from job to job (its heap's layout swings it by
hundreds of MB), so the same fills also go to a server generating with test:tiny, which needs
next to no working memory; the server's memory goal is read on what a larger crop adds there:
tiny_server_x_crop_beyond_512.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client_fill import canvas as make_canvas
from client_fill import fill as fill_selection
from report import Report
from server_overhead import post_id
from serverproc import TOKEN, Server

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
    "tiny_server_peak_mb",
    "tiny_server_x_crop_beyond_512",
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
    canvases = {case: make_canvas(case.canvas, case.selection) for case in CASES}
    marks: dict[Case, list[dict[str, float]]] = {case: [] for case in CASES}
    client_memory: dict[Case, dict[str, float]] = {}
    # --keep-memory-seconds 0: each job starts from a heap given back, so its peak is its own
    server_args = (*model.server_args, "--device", "cpu", "--dtype", "float32")
    with Server(*server_args, "--keep-memory-seconds", "0") as server:
        server.wait_ready()
        filler = _Filler(server, model.steps)
        filler.fill(CASES[0], *canvases[CASES[0]])  # warm-up
        for case in CASES:  # smallest first: memory freed by a larger fill hides a smaller one's
            client_memory[case] = filler.fill_in_child(case)
        for _ in range(repeats):
            for case in CASES:
                marks[case].append(filler.fill(case, *canvases[case]))
    if report.quick:  # the server above already generated with test:tiny
        tiny_peaks = {case: [m["server_peak"] for m in marks[case]] for case in CASES}
    else:
        tiny_peaks = _tiny_server_peaks(canvases, repeats)
    native = 64 if report.quick else 512
    steps_ms = {case: _server_steps(case, *canvases[case], native) for case in CASES}
    _add_rows(
        report, model.label, repeats, marks, client_memory, tiny_peaks, steps_ms, filler.boxes
    )
    report.note(
        f"{model.steps} steps, strength 1, float32; x_crop = peak growth / crop_mb; "
        "server_x_crop_beyond_512 = (server peak - the 512 px one) / (crop_mb - its crop_mb): "
        "what a larger crop adds to the generation's own working memory, which swings by "
        "hundreds of MB from job to job; tiny_server: the same fills against a server "
        "generating with test:tiny (64 px, next to no working memory), the largest per-job "
        "peak, and its growth beyond the 512 px job per crop MB: what the crop itself costs "
        "the server (the memory goal is read on it); "
        "client_peak: a fresh hostkit-only process's VmHWM growth during one fill (what a "
        "plug-in adds to its editor's memory), client_py: tracemalloc's peak there",
        SECTION,
    )


class _Filler:
    """Fills selections through hostkit against one server, recording times, bytes and peaks."""

    def __init__(self, server: Server, steps: int) -> None:
        self.server = server
        self.client, self.transport = server.client()
        self.steps = steps
        self.boxes: dict[Case, str] = {}

    def fill(self, case: Case, canvas: bytes, mask: bytes) -> dict[str, float]:
        server_base = _reset_peak(self.server.process.pid)
        self.transport.log.clear()
        start = time.time()
        self.boxes[case] = fill_selection(self.client, case.canvas, canvas, mask, self.steps, 0.05)
        end = time.time()
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
        }

    def fill_in_child(self, case: Case) -> dict[str, float]:
        """The client's memory for one fill, from a fresh hostkit-only process (two fills)."""
        server_base = _reset_peak(self.server.process.pid)
        command = [sys.executable, str(Path(__file__).with_name("client_fill.py")), self.server.url]
        command += [TOKEN, str(case.selection), str(case.canvas), str(self.steps)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"client_fill.py failed:\n{done.stderr[-3000:]}")
        memory = json.loads(done.stdout.strip().splitlines()[-1])
        memory["server_peak"] = _peak_mib(self.server.process.pid) - server_base
        return dict(memory)


def _tiny_server_peaks(
    canvases: dict[Case, tuple[bytes, bytes]], repeats: int
) -> dict[Case, list[float]]:
    """Per-job server peaks (MiB) of the same fills against a server generating with test:tiny:
    without the full model's working memory, what is left is the crop's cost."""
    args = ("--model", "test:tiny", "--device", "cpu", "--dtype", "float32")
    peaks: dict[Case, list[float]] = {case: [] for case in CASES}
    with Server(*args, "--keep-memory-seconds", "0") as server:
        server.wait_ready()
        filler = _Filler(server, 4)
        filler.fill(CASES[0], *canvases[CASES[0]])  # warm-up
        for _ in range(repeats):
            for case in CASES:
                peaks[case].append(filler.fill(case, *canvases[case])["server_peak"])
    return peaks


def _add_rows(
    report: Report,
    label: str,
    repeats: int,
    marks: dict[Case, list[dict[str, float]]],
    client_memory: dict[Case, dict[str, float]],
    tiny_peaks: dict[Case, list[float]],
    steps_ms: dict[Case, dict[str, float]],
    boxes: dict[Case, str],
) -> None:
    def med(case: Case, key: str) -> float:
        return statistics.median(m[key] for m in marks[case])

    def crop_of(case: Case) -> float:
        width, height = (int(x) for x in boxes[case].split("x"))
        return width * height * 4 / MIB

    def server_peak_of(case: Case) -> float:
        peaks = [m["server_peak"] for m in marks[case]]
        return max(peaks + [client_memory[case]["server_peak"]])

    base = med(CASES[0], "total")
    for case in CASES:
        crop_mib = crop_of(case)
        server_peak = server_peak_of(case)
        client_peak = client_memory[case]["client_peak_mb"]
        client_py_peak = client_memory[case]["client_py_peak_mb"]
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
            "tiny_server_peak_mb": max(tiny_peaks[case]),
            "tiny_server_x_crop_beyond_512": (
                (max(tiny_peaks[case]) - max(tiny_peaks[CASES[0]])) / (crop_mib - crop_of(CASES[0]))
                if case is not CASES[0]
                else None
            ),
            "client_peak_mb": client_peak,
            "client_x_crop": client_peak / crop_mib,
            "client_py_x_crop": client_py_peak / crop_mib,
            "client_py_peak_mb": client_py_peak,
            **{f"{name}_ms": ms for name, ms in steps_ms[case].items()},
            "total_all_s": [round(m["total"], 4) for m in marks[case]],
            "server_peak_all_mb": [
                round(m["server_peak"], 1) for m in [client_memory[case], *marks[case]]
            ],
            "tiny_server_peak_all_mb": [round(peak, 1) for peak in tiny_peaks[case]],
        }
        report.add(SECTION, row)
        if row["time_vs_512"] > TIME_GOAL:
            report.note(
                f"{case.name}: {row['time_vs_512']:.2f}x the 512 px time, goal {TIME_GOAL}x",
                SECTION,
            )
        # the full model's server peak holds its generation's working memory, whose swings hide
        # the crop's cost: the goal is read on the test:tiny server's growth beyond 512
        for side, column in (
            ("server", "tiny_server_x_crop_beyond_512"),
            ("client", "client_x_crop"),
        ):
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
