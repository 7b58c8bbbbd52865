"""Making a Blender image from a job's result, on Blender's GUI thread, before and after the
result's PNG was made off it. Runs inside Blender's Python (the bpy wheel that `./dev hosts`
installs into .hosts/blender-venv; without it the section says so and is empty).

- old: what images.new_result_image did on Blender's thread until 2026-12-03: RGBA8 to
  Blender's floats, a new image of the result's size, foreach_set, then image.pack(), where
  Blender encodes the PNG it keeps in the .blend.
- new: what it does now: a 1 x 1 image, image.pack(data=) with the PNG results.png made on the
  job's watch thread (timed apart as `png_ms`, off the GUI thread), source set to FILE.
- first_read: the first read of the image's pixels afterwards (foreach_get). The new image is
  decoded from its PNG then, as Blender does when it first shows it; the old one was in memory.

On smooth 1024 / 2048 / 4096 px pictures with a little noise, like a generated image (random
noise does not compress and would make both files the raw size); 4096: `--quick` skips it.
"""

from __future__ import annotations

import inblender
from report import Report

SECTION = "blender_result"
COLUMNS = (
    "side",
    "repeats",
    "old_gui_ms",
    "new_gui_ms",
    "old_vs_new",
    "png_ms",
    "old_mb",
    "new_mb",
    "old_first_read_ms",
    "new_first_read_ms",
    "with_read_old_vs_new",
)

CHILD = r"""
from paintbridge_blender import convert, images, results


def picture(side):
    rng = np.random.default_rng(side)
    cells = side // 64 + 2
    coarse = rng.random((cells, cells, 3), dtype=np.float32)
    index = np.arange(side) * (cells - 1) / side
    low, frac = index.astype(int), (index % 1)[:, None]
    rows = coarse[low] * (1 - frac[..., None]) + coarse[low + 1] * frac[..., None]
    smooth = rows[:, low] * (1 - frac[None]) + rows[:, low + 1] * frac[None]
    noise = rng.normal(0, 3, (side, side, 3))
    rgba = np.empty((side, side, 4), np.uint8)
    rgba[..., :3] = np.clip(smooth * 230 + noise, 0, 255)
    rgba[..., 3] = 255
    return rgba.tobytes()


def old(rgba, side):
    image = bpy.data.images.new("old", side, side, alpha=True)
    image.pixels.foreach_set(convert.rgba8_to_pixels(rgba, side, side))
    image.update()
    image.pack()
    return image


def new(png, side):
    return images.new_result_image("new", png, {})


def first_read(image, side):
    values = np.empty(side * side * 4, np.float32)
    started = time.perf_counter()
    image.pixels.foreach_get(values)
    return time.perf_counter() - started


rows = []
for side in sides:
    rgba = picture(side)
    times = {"old": [], "new": [], "png": [], "old_read": [], "new_read": []}
    sizes = {}
    for _ in range(repeats):
        started = time.perf_counter()
        png = results.png(rgba, side, side)
        times["png"].append(time.perf_counter() - started)
        for name, make, given in (("old", old, rgba), ("new", new, png)):
            started = time.perf_counter()
            image = make(given, side)
            times[name].append(time.perf_counter() - started)
            sizes[name] = image.packed_file.size
            times[name + "_read"].append(first_read(image, side))
            bpy.data.images.remove(image)
    medians = {k: statistics.median(v) for k, v in times.items()}
    rows.append({"side": side, "medians": medians, "sizes": sizes})
print(json.dumps(rows))
"""


def run(report: Report) -> None:
    report.section(SECTION, "Blender: a result image made on the GUI thread", COLUMNS)
    for row, ms, repeats in inblender.timed_rows(report, SECTION, CHILD):
        report.add(
            SECTION,
            {
                "side": row["side"],
                "repeats": repeats,
                "old_gui_ms": ms["old"],
                "new_gui_ms": ms["new"],
                "old_vs_new": round(ms["old"] / ms["new"], 1),
                "png_ms": ms["png"],
                "old_mb": round(row["sizes"]["old"] / 1e6, 1),
                "new_mb": round(row["sizes"]["new"] / 1e6, 1),
                "old_first_read_ms": ms["old_read"],
                "new_first_read_ms": ms["new_read"],
                "with_read_old_vs_new": round(
                    (ms["old"] + ms["old_read"]) / (ms["new"] + ms["new_read"]), 1
                ),
            },
        )
    report.note(
        "old/new_gui_ms: Blender's GUI thread making the image (medians); png_ms: the PNG made "
        "on the job's thread (new only); first_read: the first foreach_get of its pixels; "
        "with_read_old_vs_new: the GUI thread's making plus first read, old over new",
        SECTION,
    )
