"""Cost follows the selection, not the canvas (issue 7, item 2).

Fills the same 256x256 selection, centred, on RGBA8 canvases of 1k, 4k and 8k px through the
code path the GIMP and Krita adapters use: the host says where the selection is (GIMP's
selection bounds, Krita's selection box), the adapter reads the mask over that box only and gives
it to hostkit `plan_fill_selection` with its offset, reads the planned box from the canvas
(`crop_bytes` here), builds `inpaint_job` (RGBA8 + A8 payloads), then
`Client.run` against a real `paintbridge serve` (test:tiny, 4 steps) and `placements`. The
canvases are visited round-robin so a machine that changes speed favours none. Goal: bytes sent
and time flat (within 10%) as the canvas grows.
An adapter the host gives no selection box (Blender's inpaint takes a mask image as large as the
picture) scans the whole mask with hostkit's `selection_bounds`: `scan_ms` is that scan, timed
apart, the one cost that grows with the canvas.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from report import Report
from serverproc import Server

SECTION = "selection"
COLUMNS = (
    "canvas",
    "selection",
    "box",
    "repeats",
    "plan_ms",
    "scan_ms",
    "crop_ms",
    "job_ms",
    "total_s",
    "kb_up",
    "kb_down",
    "time_vs_1k",
    "bytes_vs_1k",
)
CANVASES = (1024, 4096, 8192)
SELECTION = 256
STEPS = 4
GOAL = 1.10


def run(report: Report) -> None:
    from paintbridge.hostkit import inpaint_job, placements, plan_fill_selection
    from paintbridge.hostkit.geometry import Box, crop_bytes, selection_bounds

    report.section(
        SECTION, "Cost follows the selection: 256 px selection on growing canvases", COLUMNS
    )
    repeats = report.repeats or 5
    canvases = {}
    for side in CANVASES:
        canvas = bytearray(side * side * 4)
        canvas[0::4] = bytes(range(256)) * (side * side // 256)  # not all zeros
        mask = bytearray(side * side)
        top = (side - SELECTION) // 2
        for row in range(top, top + SELECTION):
            mask[row * side + top : row * side + top + SELECTION] = b"\xff" * SELECTION
        canvases[side] = (bytes(canvas), bytes(mask))
    marks: dict[int, list[dict[str, float]]] = {side: [] for side in CANVASES}
    boxes: dict[int, str] = {}
    with Server("--model", "test:tiny", "--device", "cpu", "--dtype", "float32") as server:
        server.wait_ready()
        client, transport = server.client()

        def fill(side: int) -> dict[str, float]:
            canvas, mask = canvases[side]
            transport.log.clear()
            top = (side - SELECTION) // 2
            start = time.perf_counter()
            region = Box(top, top, SELECTION, SELECTION)  # the host's selection box
            region_mask = crop_bytes(mask, side, side, region, 1)
            plan = plan_fill_selection(
                region_mask, region.width, region.height, (0, 0, side, side), None, top, top
            )
            planned = time.perf_counter()
            rgba = crop_bytes(canvas, side, side, plan.box, 4)
            cropped = time.perf_counter()
            job = inpaint_job(
                rgba,
                plan.mask,
                plan.box.width,
                plan.box.height,
                prompt="a door",
                steps=STEPS,
                seed=7,
            )
            built = time.perf_counter()
            results = client.run(job, poll_interval=0.05)
            placed = placements(plan.box, results)
            end = time.perf_counter()
            assert len(placed) == 1
            boxes[side] = f"{plan.box.width}x{plan.box.height}"
            scan_start = time.perf_counter()  # without the host's box: scan the whole mask
            selection_bounds(mask, side, side)
            scan = time.perf_counter() - scan_start
            return {
                "plan": planned - start,
                "scan": scan,
                "crop": cropped - planned,
                "job": built - cropped,
                "total": end - start,
                "up": sum(x.sent for x in transport.log),
                "down": sum(x.received for x in transport.log),
            }

        fill(CANVASES[0])  # warm-up
        for _ in range(repeats):
            for side in CANVASES:
                marks[side].append(fill(side))

    def med(side: int, key: str) -> float:
        return statistics.median(m[key] for m in marks[side])

    base_t, base_b = med(CANVASES[0], "total"), med(CANVASES[0], "up")
    for side in CANVASES:
        row: dict[str, Any] = {
            "canvas": f"{side}x{side}",
            "selection": f"{SELECTION}x{SELECTION}",
            "box": boxes[side],
            "repeats": repeats,
            "plan_ms": 1000 * med(side, "plan"),
            "scan_ms": 1000 * med(side, "scan"),
            "crop_ms": 1000 * med(side, "crop"),
            "job_ms": 1000 * med(side, "job"),
            "total_s": med(side, "total"),
            "kb_up": med(side, "up") / 1024,
            "kb_down": med(side, "down") / 1024,
            "time_vs_1k": med(side, "total") / base_t,
            "bytes_vs_1k": med(side, "up") / base_b,
            "total_all_s": [round(m["total"], 4) for m in marks[side]],
        }
        report.add(SECTION, row)
        if row["time_vs_1k"] > GOAL or row["bytes_vs_1k"] > GOAL:
            report.note(f"{side} px canvas: above the goal of {GOAL:.2f}x the 1k canvas", SECTION)
    report.note(
        "plan = reading the mask over the host's selection box + context box + mask crop; "
        "scan_ms = selection_bounds over the full-canvas mask (adapters without a host box; "
        "timed apart, not in total); crop = "
        "reading the box from the full RGBA8 canvas; job = RGBA8/A8 payloads (their base64 is "
        "written while the job is sent: in total); total "
        "includes the round trips, generation (test:tiny, 4 steps, 0.05 s polling) and "
        "placements",
        SECTION,
    )
