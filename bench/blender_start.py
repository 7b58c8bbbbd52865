"""Starting an inpaint or img2img job from a Blender image: the GUI thread's share, before and
after the conversion of the image's pixels for the wire moved to the job's thread (hostkit
Later, 2026-12-04). Runs inside Blender's Python (the bpy wheel that `./dev hosts` installs into
.hosts/blender-venv; without it the section says so and is empty).

- old: what the add-on's plan did on Blender's thread until then: images.read_rgba8 (Blender's
  floats copied and converted to RGBA8), for inpaint the mask from that alpha, the fill plan
  and the crop, and the job built on those bytes.
- new: what it does now: images.read_source (the floats copied; their conversion a Later), for
  inpaint the mask from the floats' alpha, the fill plan, and the job built on Laters.
- made_ms: the new job's Laters made, as the JobWatch's thread makes them when it writes the
  body (json_body; the base64 is encoded later still, while the body is sent, in both).

On a byte image (8-bit sRGB, as a PNG loads) and a float image (linear, premultiplied: an EXR,
or a float image made in Blender), 1024 / 2048 / 4096 px with a 256 px transparent hole in the
middle (the inpaint's area); 4096: `--quick` skips it.
"""

from __future__ import annotations

import inblender
from report import Report

SECTION = "blender_start"
COLUMNS = (
    "task",
    "image",
    "side",
    "repeats",
    "old_gui_ms",
    "new_gui_ms",
    "old_vs_new",
    "made_ms",
)

CHILD = r"""
from paintbridge_blender import convert, images
from paintbridge_blender.hostkit import tasks, transport
scene = bpy.context.scene


def image(kind, side):
    rng = np.random.default_rng(side)
    values = rng.random((side, side, 4), dtype=np.float32)
    values[..., 3] = 1.0
    middle = side // 2
    values[middle - 128 : middle + 128, middle - 128 : middle + 128] = 0.0  # the hole
    made = bpy.data.images.new(kind, side, side, alpha=True, float_buffer=kind == "float")
    made.pixels.foreach_set(values.ravel())
    return made


def old(task, source):
    width, height, rgba = images.read_rgba8(source)
    if task == "img2img":
        return tasks.img2img_job(rgba, width, height, prompt="x")
    mask = convert.transparency_mask(rgba[3::4])
    plan = tasks.plan_fill_selection(mask, width, height, (0, 0, width, height))
    box = tuple(plan.box)
    crop = convert.crop(rgba, width, height, box)
    return tasks.inpaint_job(crop, plan.mask, box[2], box[3], prompt="x")


def new(task, source):
    read = images.read_source(source, scene)
    width, height, rgba = read.width, read.height, read.rgba
    if task == "img2img":
        return tasks.img2img_job(rgba, width, height, prompt="x")
    mask = convert.transparency_mask(read.alpha.get())
    plan = tasks.plan_fill_selection(mask, width, height, (0, 0, width, height))
    box = tuple(plan.box)
    crop = transport.Later(lambda: convert.crop(rgba.get(), width, height, box))
    return tasks.inpaint_job(crop, plan.mask, box[2], box[3], prompt="x")


def timed(call, *args):
    started = time.perf_counter()
    out = call(*args)
    return time.perf_counter() - started, out


rows = []
for task in ("inpaint", "img2img"):
    for kind in ("byte", "float"):
        for side in sides:
            source = image(kind, side)
            times = {"old": [], "new": [], "made": []}
            for _ in range(repeats):
                spent, job = timed(old, task, source)
                times["old"].append(spent)
                spent, job = timed(new, task, source)
                times["new"].append(spent)
                times["made"].append(timed(transport.json_body, job)[0])
                del job
            bpy.data.images.remove(source)
            medians = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"task": task, "image": kind, "side": side, "medians": medians})
print(json.dumps(rows))
"""


def run(report: Report) -> None:
    report.section(SECTION, "Blender: starting a job on the GUI thread", COLUMNS)
    for row, ms, repeats in inblender.timed_rows(report, SECTION, CHILD):
        report.add(
            SECTION,
            {
                "task": row["task"],
                "image": row["image"],
                "side": row["side"],
                "repeats": repeats,
                "old_gui_ms": ms["old"],
                "new_gui_ms": ms["new"],
                "old_vs_new": round(ms["old"] / ms["new"], 1),
                "made_ms": ms["made"],
            },
        )
    report.note(
        "old/new_gui_ms: Blender's GUI thread planning the job (medians); made_ms: the new "
        "job's pixels made on the job's thread as it is sent; old_vs_new: how many times less "
        "the GUI thread spends",
        SECTION,
    )
