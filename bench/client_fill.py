"""One selection fill as an editor plug-in makes it, and what it costs the client's memory.

`fill` is the code path every adapter uses: hostkit `plan_fill_selection` (default context
padding) on the full-canvas mask, `crop_bytes` of the planned box, `inpaint_job` (RGBA8 + A8
payloads), `Client.run` and `placements`.

Run as a script (`python client_fill.py URL TOKEN SELECTION CANVAS STEPS`), it fills once in a
fresh process that has imported hostkit and nothing else, with glibc's default allocator, as a
plug-in inside Blender, GIMP or Krita runs: it prints the growth of its peak RSS during a fill
(VmHWM, reset just before) and tracemalloc's peak of Python allocations during a second fill, in
MiB, as JSON. The benchmark process itself would not do: it holds torch, and it runs with the
server's allocator settings (engine/allocator.py), which keep freed blocks in the heap.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def canvas(side: int, selection: int) -> tuple[bytes, bytes]:
    """An RGBA8 canvas (not all zeros) and its A8 selection mask, the selection centred."""
    pixels = bytearray(side * side * 4)
    pixels[0::4] = bytes(range(256)) * (side * side // 256)
    mask = bytearray(side * side)
    top = (side - selection) // 2
    for row in range(top, top + selection):
        mask[row * side + top : row * side + top + selection] = b"\xff" * selection
    return bytes(pixels), bytes(mask)


def fill(client: Any, side: int, pixels: bytes, mask: bytes, steps: int, poll: float) -> str:
    """Fills the selection of a side x side canvas; returns the box sent ("WxH")."""
    from paintbridge.hostkit import inpaint_job, placements, plan_fill_selection
    from paintbridge.hostkit.geometry import crop_bytes

    plan = plan_fill_selection(mask, side, side, (0, 0, side, side))
    assert plan is not None
    rgba = crop_bytes(pixels, side, side, plan.box, 4)
    job = inpaint_job(
        rgba,
        plan.mask,
        plan.box.width,
        plan.box.height,
        prompt="a door",
        steps=steps,
        strength=1.0,
        seed=7,
    )
    del rgba
    results = client.run(job, poll_interval=poll)
    del job
    placed = placements(plan.box, results)
    assert len(placed) == 1
    return f"{plan.box.width}x{plan.box.height}"


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def main(url: str, token: str, selection: int, side: int, steps: int) -> dict[str, float]:
    from paintbridge.hostkit import Client

    client = Client(url, token, timeout=600)
    client.health()  # the first request imports what urllib needs: not the fill's memory
    pixels, mask = canvas(side, selection)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = _status_mib("VmRSS")
    fill(client, side, pixels, mask, steps, 0.05)
    peak = _status_mib("VmHWM") - base
    tracemalloc.start()
    fill(client, side, pixels, mask, steps, 0.05)
    python_peak = tracemalloc.get_traced_memory()[1] / MIB
    tracemalloc.stop()
    return {"client_peak_mb": peak, "client_py_peak_mb": python_peak}


if __name__ == "__main__":
    url, token, *numbers = sys.argv[1:]
    selection, side, steps = (int(n) for n in numbers)
    print(json.dumps(main(url, token, selection, side, steps)))
