"""Batch driver run INSIDE GIMP 3 (gimp-console-3.0 --batch-interpreter=python-fu-eval -b -).

Reads the JSON file named by $PAINTBRIDGE_GIMP_TEST ({"result": path, "down_url": url, and
optionally "only": the cases to run, "fault_url"/"fault_token": a server killed mid-job}), builds
images and selections, runs the paintbridge procedures non-interactively the way GIMP's PDB runs
them, and writes what it saw to the result file as JSON: one entry per case, each either
{"ok": true, ...facts} or {"ok": false, "error": traceback}. The pytest side
(test_gimp3.py) judges the facts; this script only measures.

GIMP's own Python (Python 3, PyGObject); standard library only.
"""

import base64
import json
import os
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

CONFIG = json.load(open(os.environ["PAINTBRIDGE_GIMP_TEST"]))
PDB = Gimp.get_pdb()
RGBA = "R'G'B'A u8"
PROCEDURES = ("paintbridge-fill-selection", "paintbridge-generate", "paintbridge-img2img")
STEPS = 2  # the tiny test model: quick, still a real denoising loop
results = {}


def save():
    with open(CONFIG["result"], "w") as handle:
        json.dump(results, handle, indent=1, sort_keys=True)


def case(name, alone=False):
    """Runs func now and records its facts under `name`. With CONFIG["only"], only the cases it
    names run; an `alone` case runs only when named there."""

    def wrap(func):
        if name not in CONFIG.get("only", [] if alone else [name]):
            return func
        try:
            facts = func() or {}
            facts["ok"] = True
        except Exception:
            facts = {"ok": False, "error": traceback.format_exc()}
        results[name] = facts
        save()
        return func

    return wrap


def last(values, n):
    values = tuple(values)
    return values[len(values) - n :]


def pattern(width, height, seed):
    """Deterministic, varied RGBA pixels (opaque)."""
    out = bytearray(width * height * 4)
    for y in range(height):
        for x in range(width):
            i = (y * width + x) * 4
            out[i] = (x * 7 + y * 3 + seed) % 256
            out[i + 1] = (x * 3 + y * 11 + 2 * seed) % 256
            out[i + 2] = (x * y + seed * 5) % 256
            out[i + 3] = 255
    return bytes(out)


def make_image(width, height, base, layer_type, layer_box=None, background=True):
    """An image with a patterned background and, on top, the patterned 'paint' layer (the
    active one) at layer_box (x, y, w, h; default the canvas)."""
    image = Gimp.Image.new(width, height, base)
    bg_type = Gimp.ImageType.GRAY_IMAGE if base == Gimp.ImageBaseType.GRAY else None
    bg_type = bg_type or Gimp.ImageType.RGB_IMAGE
    if background:
        bg = Gimp.Layer.new(image, "background", width, height, bg_type, 100, Gimp.LayerMode.NORMAL)
        image.insert_layer(bg, None, 0)
        fill(bg, pattern(width, height, 40))
    x, y, w, h = layer_box or (0, 0, width, height)
    layer = Gimp.Layer.new(image, "paint", w, h, layer_type, 100, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.set_offsets(x, y)
    fill(layer, pattern(w, h, 1))
    return image, layer


def fill(layer, rgba):
    buffer = layer.get_buffer()
    rect = Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height())
    buffer.set(rect, RGBA, rgba)
    buffer.flush()


def flattened(image):
    """The visible image as RGBA bytes (a merged duplicate; the image is not touched)."""
    copy = image.duplicate()
    merged = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    rect = Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height())
    data = bytes(merged.get_buffer().get(rect, 1.0, RGBA, Gegl.AbyssPolicy.NONE))
    copy.delete()
    return data


def selection_mask(image):
    rect = Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height())
    buffer = image.get_selection().get_buffer()
    return bytes(buffer.get(rect, 1.0, "Y u8", Gegl.AbyssPolicy.NONE))


def run(name, image, drawables, run_mode=Gimp.RunMode.NONINTERACTIVE, **args):
    """Runs a procedure (non-interactively by default); (status nick, error message or None)."""
    procedure = PDB.lookup_procedure(name)
    config = procedure.create_config()
    config.set_property("run-mode", run_mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", drawables)
    args.setdefault("steps", STEPS)
    for key, value in args.items():
        if value is not None:
            config.set_property(key.replace("_", "-"), value)
    values = procedure.run(config)
    status = values.index(0)
    failed = values.length() > 1 and status != Gimp.PDBStatusType.SUCCESS
    error = values.index(1) if failed else None
    return status.value_nick, error


def layer_facts(image, layer):
    x, y = last(layer.get_offsets(), 2)
    return {
        "name": layer.get_name(),
        "box": [x, y, layer.get_width(), layer.get_height()],
        "position": image.get_item_position(layer),
        "has_alpha": layer.has_alpha(),
    }


def layers(image):
    return list(image.get_layers())


def compare(before, after, mask, width, within=None):
    """Counts of changed pixels where the selection is 0, and where it is 255 (only inside
    `within`, (x, y, w, h): the pixels the command may change, e.g. the active layer's)."""
    counts = {"outside": 0, "outside_changed": 0, "inside": 0, "inside_changed": 0}
    x0, y0, w, h = within or (0, 0, width, len(mask) // width)
    for i, m in enumerate(mask):
        changed = before[4 * i : 4 * i + 4] != after[4 * i : 4 * i + 4]
        x, y = i % width, i // width
        if m == 255 and not (x0 <= x < x0 + w and y0 <= y < y0 + h):
            continue
        if m == 0:
            counts["outside"] += 1
            counts["outside_changed"] += changed
        elif m == 255:
            counts["inside"] += 1
            counts["inside_changed"] += changed
    return counts


def fill_case(image, layer, select, **args):
    """Selects with `select(image)`, runs Fill Selection on `layer`, reports what changed."""
    select(image)
    mask = selection_mask(image)
    image.clean_all()  # from here, "dirty" means something was pushed on the undo stack
    before = flattened(image)
    count, position = len(layers(image)), image.get_item_position(layer)
    within = None if args.get("source") == "visible" else layer_facts(image, layer)["box"]
    status, error = run("paintbridge-fill-selection", image, [layer], prompt="a red door", **args)
    after = flattened(image)
    new = [item for item in layers(image) if item.get_name().startswith("Paintbridge")]
    facts = {
        "status": status,
        "error": error,
        "layers_before": count,
        "layers_after": len(layers(image)),
        "active_position_before": position,
        "canvas": [image.get_width(), image.get_height()],
        "layer_box": layer_facts(image, layer)["box"],
        "compare": compare(before, after, mask, image.get_width(), within),
        "undo_enabled": image.undo_is_enabled(),
        "dirty": image.is_dirty(),
        "selection_unchanged": selection_mask(image) == mask,
    }
    # the selection's tight bounds, measured here (not by the plug-in)
    width, height = image.get_width(), image.get_height()
    rows = [y for y in range(height) if any(mask[y * width : (y + 1) * width])]
    cols = [x for x in range(width) if any(mask[x::width])]
    facts["selection_bounds"] = (
        [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]] if rows else None
    )
    if new:
        facts["new_layer"] = layer_facts(image, new[0])
        facts["new_layer_parent_is_active_parent"] = new[0].get_parent() == layer.get_parent()
    image.delete()
    return facts


@case("registered")
def _registered():
    facts = {}
    for name in PROCEDURES:
        procedure = PDB.lookup_procedure(name)
        facts[name] = {
            "found": procedure is not None,
            "menu_paths": list(procedure.get_menu_paths()) if procedure else [],
            "menu_label": procedure.get_menu_label() if procedure else None,
            "arguments": [spec.name for spec in procedure.get_arguments()] if procedure else [],
        }
    return facts


@case("fill_rectangle")
def _fill_rectangle():
    image, layer = make_image(200, 150, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    return fill_case(
        image, layer, lambda im: im.select_rectangle(Gimp.ChannelOps.REPLACE, 60, 40, 50, 30)
    )


@case("fill_ellipse_corner")
def _fill_ellipse_corner():
    image, layer = make_image(160, 120, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGBA_IMAGE)
    return fill_case(
        image, layer, lambda im: im.select_ellipse(Gimp.ChannelOps.REPLACE, 110, 80, 70, 60)
    )


@case("fill_feathered_gray_offset_layer")
def _fill_gray():
    # grayscale, a layer smaller than the canvas and offset, a feathered ellipse over its edge
    image, layer = make_image(
        180, 140, Gimp.ImageBaseType.GRAY, Gimp.ImageType.GRAYA_IMAGE, layer_box=(30, 20, 120, 90)
    )

    def select(im):
        im.select_ellipse(Gimp.ChannelOps.REPLACE, 10, 10, 70, 50)
        Gimp.Selection.feather(im, 8.0)

    return fill_case(image, layer, select)


@case("fill_visible_source")
def _fill_visible():
    image, layer = make_image(128, 96, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    return fill_case(
        image,
        layer,
        lambda im: im.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, 40, 40),
        source="visible",
    )


@case("fill_no_selection")
def _fill_no_selection():
    image, layer = make_image(96, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    return fill_case(image, layer, lambda im: Gimp.Selection.none(im))


@case("fill_no_selection_whole_layer")
def _fill_whole():
    image, layer = make_image(96, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    return fill_case(image, layer, lambda im: Gimp.Selection.none(im), whole_layer=True)


@case("fill_server_down")
def _fill_down():
    image, layer = make_image(96, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    return fill_case(
        image,
        layer,
        lambda im: im.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 20, 20),
        server_url=CONFIG["down_url"],
    )


def new_layer_case(name, image, drawables, **args):
    before = layers(image)
    image.clean_all()
    args.setdefault("prompt", "a lighthouse")
    status, error = run(name, image, drawables, **args)
    new = [item for item in layers(image) if item not in before]
    facts = {"status": status, "error": error, "new": [layer_facts(image, n) for n in new]}
    facts["layers_before"], facts["layers_after"] = len(before), len(layers(image))
    facts["dirty"] = image.is_dirty()
    return facts


@case("generate_image_size")
def _generate():
    image, layer = make_image(200, 150, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    facts = new_layer_case("paintbridge-generate", image, [layer])
    image.delete()
    return facts


@case("generate_chosen_size")
def _generate_sized():
    image, layer = make_image(200, 150, Gimp.ImageBaseType.GRAY, Gimp.ImageType.GRAY_IMAGE)
    facts = new_layer_case("paintbridge-generate", image, [layer], width=96, height=64)
    image.delete()
    return facts


@case("generate_no_image")
def _generate_no_image():
    before = list(Gimp.get_images())
    status, error = run("paintbridge-generate", None, [], prompt="a boat", width=80, height=48)
    new = [im for im in Gimp.get_images() if im not in before]
    facts = {"status": status, "error": error, "new_images": []}
    for image in new:
        facts["new_images"].append(
            {
                "size": [image.get_width(), image.get_height()],
                "layers": [layer_facts(image, n) for n in layers(image)],
            }
        )
        image.delete()
    return facts


@case("img2img_layer")
def _img2img():
    # an offset layer partly outside the canvas: only its part on the canvas is sent
    image, layer = make_image(
        160, 120, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGBA_IMAGE, layer_box=(-20, 30, 100, 120)
    )
    facts = new_layer_case("paintbridge-img2img", image, [layer], strength=0.6)
    image.delete()
    return facts


@case("img2img_selection")
def _img2img_selection():
    image, layer = make_image(160, 120, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 20, 30, 64, 40)
    mask = selection_mask(image)
    before = flattened(image)
    facts = new_layer_case("paintbridge-img2img", image, [layer], strength=0.9)
    facts["compare"] = compare(before, flattened(image), mask, image.get_width())
    image.delete()
    return facts


@case("generate_on_a_photo_sized_image")
def _generate_on_a_photo_sized_image():
    """6000x4000 (a camera photo): more than a server makes at once; the message says what to
    set in the dialog (it said to select a smaller area, which Generate does not use)."""
    image = Gimp.Image.new(6000, 4000, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(
        image, "photo", 6000, 4000, Gimp.ImageType.RGB_IMAGE, 100, Gimp.LayerMode.NORMAL
    )
    image.insert_layer(layer, None, 0)
    count = len(layers(image))
    status, error = run("paintbridge-generate", image, [layer], prompt="x")
    facts = {"status": status, "error": error, "layers_added": len(layers(image)) - count}
    image.delete()
    return facts


@case("img2img_selection_off_layer")
def _img2img_selection_off_layer():
    """A selection whose bounds cover the layer but none of its pixels: refused, not a job
    that ends in an empty layer."""
    image, layer = make_image(
        200, 200, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGBA_IMAGE, layer_box=(0, 0, 40, 40)
    )
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 30, 30, 150, 150)
    count = len(layers(image))
    status, error = run("paintbridge-img2img", image, [layer], prompt="x", strength=0.9)
    facts = {"status": status, "error": error, "layers_added": len(layers(image)) - count}
    image.delete()
    return facts


@case("img2img_layer_off_canvas")
def _img2img_layer_off_canvas():
    """Image to Image has no source to pick: its message does not offer one."""
    image, layer = make_image(
        64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGBA_IMAGE, layer_box=(100, 100, 32, 32)
    )
    Gimp.Selection.none(image)
    status, error = run("paintbridge-img2img", image, [layer], prompt="x", strength=0.9)
    image.delete()
    return {"status": status, "error": error}


@case("img2img_server_down")
def _img2img_down():
    image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    facts = new_layer_case("paintbridge-img2img", image, [layer], server_url=CONFIG["down_url"])
    image.delete()
    return facts


# -- round trips with the test:identity model (every task gives its input back) -------------
# Each crop is 64x64 or 128x32 (4096 pixels, sides multiples of 8), the sizes the identity
# model returns pixel for pixel, so the new layer must hold the source layer's own pixels.

IDENTITY = {"model": "test:identity", "steps": 2}
# what the progress says once the server runs the job (hostkit status_text)
RUNNING = ("Running", "Step ")


def read_rgba(drawable, box):
    """RGBA8 of `box` (x, y, w, h) in the drawable's own coordinates."""
    rect = Gegl.Rectangle.new(*box)
    return bytes(drawable.get_buffer().get(rect, 1.0, RGBA, Gegl.AbyssPolicy.NONE))


def read_mask(image, box):
    rect = Gegl.Rectangle.new(*box)
    buffer = image.get_selection().get_buffer()
    return bytes(buffer.get(rect, 1.0, "Y u8", Gegl.AbyssPolicy.NONE))


def alpha_pattern(width, height):
    """Opaque, except a band of partial and zero alpha (rows 4..11)."""
    out = bytearray(pattern(width, height, 9))
    for y in range(4, 12):
        for x in range(width):
            out[(y * width + x) * 4 + 3] = (x * 9 + y * 17) % 256
    return bytes(out)


def roundtrip(command, image, layer, **args):
    """Runs `command` with test:identity on `layer`; compares the new layer's colour with the
    source layer's in the new layer's box (where the source is opaque) and records the alphas
    and the selection over the box (base64) for the test to judge."""
    image.clean_all()
    count = len(layers(image))
    selection = list(last(Gimp.Selection.bounds(image), 5))
    status, error = run(command, image, [layer], prompt="identity", **dict(IDENTITY, **args))
    new = [item for item in layers(image) if item.get_name().startswith("Paintbridge")]
    facts = {"status": status, "error": error, "layers_added": len(layers(image)) - count}
    facts["selection"] = selection
    facts["canvas"] = [image.get_width(), image.get_height()]
    facts["layer_box"] = layer_facts(image, layer)["box"]
    if len(new) == 1:
        info = layer_facts(image, new[0])
        x, y, w, h = info["box"]
        lx, ly = last(layer.get_offsets(), 2)
        source = read_rgba(layer, (x - lx, y - ly, w, h))
        result = read_rgba(new[0], (0, 0, w, h))
        opaque = [i for i in range(w * h) if source[4 * i + 3] == 255]
        differ = [i for i in opaque if result[4 * i : 4 * i + 3] != source[4 * i : 4 * i + 3]]
        facts.update(new_layer=info, gray_layer=new[0].is_gray())
        facts.update(colour_checked=len(opaque), colour_diff=len(differ))
        facts["colour_mismatches"] = [[i % w, i // w] for i in differ[:8]]
        for name, data in (
            ("source_alpha", source[3::4]),
            ("result_alpha", result[3::4]),
            ("mask", read_mask(image, (x, y, w, h))),
        ):
            facts[name] = base64.b64encode(data).decode("ascii")
    image.delete()
    return facts


@case("identity_fill_visible_under_translucent")
def _identity_fill_visible_under_translucent():
    """Fill from the visible image under a 50% layer, test:identity: the result already shows
    that layer, so the image must look as before (placed under it, it showed twice)."""
    image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    red = Gimp.Layer.new(image, "red", 64, 64, Gimp.ImageType.RGBA_IMAGE, 50, Gimp.LayerMode.NORMAL)
    image.insert_layer(red, None, 0)
    fill(red, bytes((255, 0, 0, 255)) * (64 * 64))
    image.set_selected_layers([layer])
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 12, 30, 20)
    before = flattened(image)
    status, error = run(
        "paintbridge-fill-selection",
        image,
        [layer],
        prompt="identity",
        source="visible",
        **IDENTITY,
    )
    after = flattened(image)
    worst = max(abs(a - b) for a, b in zip(before, after, strict=True))
    facts = {"status": status, "error": error, "largest_change": worst}
    facts["top_layer"] = image.get_layers()[0].get_name()
    image.delete()
    return facts


@case("identity_fill_rgb")
def _identity_fill_rgb():
    image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 12, 30, 20)
    return roundtrip("paintbridge-fill-selection", image, layer)


@case("identity_img2img_rgb")
def _identity_img2img_rgb():
    image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    Gimp.Selection.none(image)
    return roundtrip("paintbridge-img2img", image, layer, strength=1.0)


def rgba_image():
    image, layer = make_image(128, 32, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGBA_IMAGE)
    fill(layer, alpha_pattern(128, 32))
    return image, layer


@case("identity_fill_rgba")
def _identity_fill_rgba():
    image, layer = rgba_image()
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 20, 4, 88, 24)
    return roundtrip("paintbridge-fill-selection", image, layer)


@case("identity_img2img_rgba")
def _identity_img2img_rgba():
    image, layer = rgba_image()
    Gimp.Selection.none(image)
    return roundtrip("paintbridge-img2img", image, layer, strength=0.5)


@case("identity_fill_gray_feathered")
def _identity_fill_gray():
    image, layer = make_image(64, 64, Gimp.ImageBaseType.GRAY, Gimp.ImageType.GRAYA_IMAGE)
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 14, 10, 36, 30)
    Gimp.Selection.feather(image, 10.0)
    return roundtrip("paintbridge-fill-selection", image, layer)


@case("identity_img2img_gray_selection")
def _identity_img2img_gray():
    image, layer = make_image(64, 64, Gimp.ImageBaseType.GRAY, Gimp.ImageType.GRAY_IMAGE)
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 0, 0, 64, 64)
    return roundtrip("paintbridge-img2img", image, layer, strength=1.0)


def offset_image():
    # the layer sticks out of the canvas on the left: only x 0..64, y 40..104 of it is on it
    return make_image(
        160, 120, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE, layer_box=(-36, 40, 100, 64)
    )


@case("identity_fill_offset_layer")
def _identity_fill_offset():
    image, layer = offset_image()
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 50, 20, 24)
    return roundtrip("paintbridge-fill-selection", image, layer)


@case("identity_img2img_offset_layer")
def _identity_img2img_offset():
    image, layer = offset_image()
    Gimp.Selection.none(image)
    return roundtrip("paintbridge-img2img", image, layer, strength=1.0)


# -- images the result cannot go into, the source layer's look, changes during the job ------


def indexed_image():
    image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    image.convert_indexed(
        Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 16, False, False, ""
    )
    return image, layer


@case("indexed_image")
def _indexed():
    """Every command on an indexed image, with the server down: the message must come first."""
    facts = {}
    for name in PROCEDURES:
        image, layer = indexed_image()
        Gimp.Selection.all(image)
        facts[name] = new_layer_case(name, image, [layer], server_url=CONFIG["down_url"])
        facts[name]["indexed"] = image.get_base_type() == Gimp.ImageBaseType.INDEXED
        facts[name]["image_types"] = PDB.lookup_procedure(name).get_image_types()
        image.delete()
    return facts


def all_layers(image):
    """Every layer, groups' children included."""
    found, todo = [], list(layers(image))
    while todo:
        item = todo.pop()
        found.append(item)
        if item.is_group():
            todo.extend(item.get_children())
    return found


def group_image(lock):
    """The 'paint' layer inside group "inner", inside group "outer"; `lock`: which group's
    pixels are locked (None: neither)."""
    image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    outer, inner = Gimp.GroupLayer.new(image, "outer"), Gimp.GroupLayer.new(image, "inner")
    image.insert_layer(outer, None, 0)
    image.insert_layer(inner, outer, 0)
    image.reorder_item(layer, inner, 0)
    if lock is not None:
        {"outer": outer, "inner": inner}[lock].set_lock_content(True)
    return image, layer


@case("locked_group")
def _locked_group():
    """Fill Selection and Generate on a layer in a group whose pixels are locked (the server
    down: the message must come before any job)."""
    facts = {}
    for name, lock in (("paintbridge-fill-selection", "outer"), ("paintbridge-generate", "inner")):
        image, layer = group_image(lock)
        image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 16, 16)
        count = len(all_layers(image))
        facts[name] = new_layer_case(name, image, [layer], server_url=CONFIG["down_url"])
        facts[name].update(locked=lock, added_anywhere=len(all_layers(image)) - count)
        image.delete()
    # a fill of the visible image goes on top of the image, in no group: the lock is no matter
    image, layer = group_image("outer")
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 16, 16)
    entry = new_layer_case(
        "paintbridge-fill-selection",
        image,
        [layer],
        source="visible",
        prompt="identity",
        **IDENTITY,
    )
    on_top = [item for item in layers(image) if item.get_name().startswith("Paintbridge")]
    facts["fill-visible"] = dict(entry, on_top=len(on_top))
    image.delete()
    return facts


def look_case(command, source_look, **args):
    """`command` with test:identity on a 64x64 layer given `source_look` (Gimp.Layer setter
    name -> value, in order: a mode resets the spaces): the new layer's look, and whether it
    shows as the source does (looks_like_the_source)."""
    image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    for setter, value in source_look.items():
        getattr(layer, setter)(value)
    if command == "paintbridge-fill-selection":
        image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 48, 48)
    else:
        Gimp.Selection.none(image)
    facts = new_layer_case(command, image, [layer], prompt="identity", **dict(IDENTITY, **args))
    facts.update(looks_like_the_source(image, layer))
    image.delete()
    return facts


def look(layer):
    return {
        "opacity": layer.get_opacity(),
        "mode": layer.get_mode().value_nick,
        "blend_space": layer.get_blend_space().value_nick,
        "composite_space": layer.get_composite_space().value_nick,
        "composite_mode": layer.get_composite_mode().value_nick,
    }


def looks_like_the_source(image, layer, transparent_too=False):
    """Compares the image showing the source layer alone with it showing the new layer alone,
    in the new layer's box: where the new layer is opaque (and where it is fully transparent,
    with `transparent_too`; not where its alpha is partial: the model saw those pixels over
    gray, so their colour is not the source's)."""
    new = [item for item in layers(image) if item.get_name().startswith("Paintbridge")]
    if len(new) != 1:
        return {"new_look": None}
    new = new[0]
    x, y, w, h = layer_facts(image, new)["box"]
    alpha = read_rgba(new, (0, 0, w, h))[3::4]
    new.set_visible(False)
    with_source = flattened(image)
    new.set_visible(True)
    layer.set_visible(False)
    with_new = flattened(image)
    layer.set_visible(True)
    differences = []
    for i, a in enumerate(alpha):
        if a == 255 or (transparent_too and a == 0):
            p = ((y + i // w) * image.get_width() + x + i % w) * 4
            pair = zip(with_source[p : p + 4], with_new[p : p + 4])  # noqa: B905
            differences.append(max(abs(s - n) for s, n in pair))
    return {
        "new_look": look(new),
        "source_look": look(layer),
        "compared": len(differences),
        "max_difference": max(differences or [0]),
    }


def group_look_case():
    """Fill Selection with a layer group active, at 60% in the mode GIMP's Layers dialog gives
    new groups (pass through, which only a group can have)."""
    image, layer = group_image(None)
    group = layer.get_parent()
    group.set_mode(Gimp.LayerMode.PASS_THROUGH)
    group.set_opacity(60.0)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 48, 48)
    facts = new_layer_case(
        "paintbridge-fill-selection", image, [group], prompt="identity", **IDENTITY
    )
    facts["group_mode"] = group.get_mode().value_nick
    new = [item for item in all_layers(image) if item.get_name().startswith("Paintbridge")]
    facts["new_look"] = look(new[0]) if len(new) == 1 else None
    image.delete()
    return facts


@case("look_from_layer")
def _look_from_layer():
    faded = {"set_opacity": 40.0}
    multiply = {"set_mode": Gimp.LayerMode.MULTIPLY, "set_opacity": 70.0}
    spaces = {
        "set_blend_space": Gimp.LayerColorSpace.RGB_PERCEPTUAL,
        "set_composite_space": Gimp.LayerColorSpace.RGB_LINEAR,
        "set_composite_mode": Gimp.LayerCompositeMode.CLIP_TO_BACKDROP,
    }
    return {
        "fill_40_percent": look_case("paintbridge-fill-selection", faded),
        "img2img_multiply": look_case("paintbridge-img2img", multiply, strength=1.0),
        "img2img_overlay_spaces": look_case(
            "paintbridge-img2img", dict(set_mode=Gimp.LayerMode.OVERLAY, **spaces), strength=1.0
        ),
        "fill_visible_40_percent": look_case("paintbridge-fill-selection", faded, source="visible"),
        "fill_group_pass_through": group_look_case(),
    }


@case("fill_selection_off_layer_whole_layer")
def _fill_selection_off_layer():
    """A selection that misses the active layer, with "whole layer" on (remembered from an
    earlier run): refused; the whole layer is for when nothing is selected, not for this."""
    image, layer = make_image(
        96, 96, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGBA_IMAGE, layer_box=(0, 0, 32, 32)
    )
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 40, 40, 16, 16)
    count = len(layers(image))
    status, error = run(
        "paintbridge-fill-selection", image, [layer], prompt="x", whole_layer=True, **IDENTITY
    )
    facts = {"status": status, "error": error, "layers_added": len(layers(image)) - count}
    image.delete()
    return facts


@case("clipping_composite")
def _clipping_composite():
    """A source layer in Clip to layer or Intersection composite mode: the new layer does not
    take it, or its transparent surroundings would erase every layer below outside the
    selection (the whole image vanished around a fill)."""
    facts = {}
    for name in ("CLIP_TO_LAYER", "INTERSECTION"):
        for command, args in (
            ("paintbridge-fill-selection", {}),
            ("paintbridge-img2img", {"strength": 1.0}),
        ):
            image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGBA_IMAGE)
            layer.set_composite_mode(getattr(Gimp.LayerCompositeMode, name))
            image.select_rectangle(Gimp.ChannelOps.REPLACE, 16, 16, 24, 24)
            before = flattened(image)
            entry = new_layer_case(
                command, image, [layer], prompt="identity", **dict(IDENTITY, **args)
            )
            after = flattened(image)
            outside = [
                i
                for i in range(64 * 64)
                if not (16 <= i % 64 < 40 and 16 <= i // 64 < 40)
                and before[i * 4 : i * 4 + 4] != after[i * 4 : i * 4 + 4]
            ]
            entry["outside_changed"] = len(outside)
            new = [item for item in layers(image) if item.get_name().startswith("Paintbridge")]
            entry["new_look"] = look(new[0]) if len(new) == 1 else None
            facts[f"{command} {name}"] = entry
            image.delete()
    return facts


def masked_image(apply_mask):
    """A 64x64 opaque layer whose mask hides x < 16, ramps over x 16..47, shows x >= 48."""
    image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGBA_IMAGE)
    mask = layer.create_mask(Gimp.AddMaskType.WHITE)
    layer.add_mask(mask)
    ramp = bytes(0 if x < 16 else 255 if x >= 48 else (x - 16) * 8 for x in range(64))
    buffer = mask.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, 64, 64), "Y u8", ramp * 64)
    buffer.flush()
    layer.set_apply_mask(apply_mask)
    return image, layer


@case("layer_mask")
def _layer_mask():
    """Image to Image with test:identity on a masked layer, and Fill Selection over its hidden
    part: what was sent is the layer as it shows."""
    facts = {}
    for apply_mask in (True, False):
        image, layer = masked_image(apply_mask)
        Gimp.Selection.none(image)
        before = flattened(image)
        entry = new_layer_case(
            "paintbridge-img2img", image, [layer], prompt="identity", strength=1.0, **IDENTITY
        )
        entry.update(looks_like_the_source(image, layer, transparent_too=True))
        new = [item for item in layers(image) if item.get_name().startswith("Paintbridge")]
        if new:
            alpha = read_rgba(new[0], (0, 0, 64, 64))[3::4]
            entry["alpha_by_column"] = list(alpha[:64])
            rows = [alpha[r * 64 : r * 64 + 64] for r in range(64)]
            entry["alpha_rows_alike"] = all(row == rows[0] for row in rows)
        entry["image_unchanged"] = flattened(image) == before
        facts["applied" if apply_mask else "disabled"] = entry
        image.delete()
    return facts


def plugin_module():
    """The installed plug-in, imported here (its Gimp3Host and flow, driven directly)."""
    import importlib.util
    import sys

    folder = os.path.join(os.environ["HOME"], ".config/GIMP/3.0/plug-ins/paintbridge-gimp")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("pb_gimp3", folder + "/paintbridge-gimp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def item_size(item):
    return item.get_width(), item.get_height()


def during_job(action, make=None):
    """Fill Selection (test:identity) through the plug-in's own flow and host, in this
    process; `action(image, layer)` runs at the job's first step, as a user would act while
    the job runs. What came of it: the new layers, or the error."""
    rgb = Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE
    image, layer = make() if make else make_image(64, 64, *rgb)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 48, 48)
    plugin = plugin_module()
    host = plugin.Gimp3Host(image, layer)
    # 6 steps of 0.05 s: the plug-in, which looks every 0.05 s, sees the job run
    settings = plugin.flow.DEFAULTS._replace(prompt="identity", **dict(IDENTITY, steps=6))
    acted = []
    notices = []
    show = host.notice

    def notice(text):  # recorded here, and still shown by the plug-in's own call
        notices.append(text)
        show(text)

    host.notice = notice

    def progress(_fraction, text):
        if text.startswith(RUNNING) and not acted:
            acted.append(text)
            action(image, layer)

    facts = {}
    try:
        made = plugin.flow.run_command("fill", host, settings, progress=progress)
        facts["new"] = [layer_facts(image, item) for item in made]
        facts["new_parents"] = [item.get_parent() and item.get_parent().get_name() for item in made]
        facts["new_locked_parent"] = [
            bool(item.get_parent().get_lock_content()) if item.get_parent() else None
            for item in made
        ]
        facts["new_filled"] = [
            any(read_rgba(item, (0, 0, *item_size(item)))[3::4]) for item in made
        ]
        facts["top"] = [item.get_name() for item in layers(image)]
    except Exception as exc:  # what the plug-in's run_procedure would see
        facts["error_type"] = type(exc).__name__
        facts["error"] = str(exc)
        facts["paintbridge_error"] = isinstance(exc, plugin.PaintbridgeError)
    facts["acted"] = bool(acted)
    facts["notices"] = notices
    if image.is_valid():
        facts["canvas"] = [image.get_width(), image.get_height()]
        facts["top"] = [item.get_name() for item in layers(image)]
        image.delete()
    return facts


@case("image_closed_during_job", alone=True)
def _closed():
    return during_job(lambda image, layer: image.delete())


@case("layer_deleted_during_job", alone=True)
def _layer_deleted():
    return during_job(lambda image, layer: image.remove_layer(layer))


@case("group_locked_during_job", alone=True)
def _locked_during():
    """The user locks the group holding the layer while the job runs: the result still lands,
    filled, in that group (GIMP lets a layer be put into it; its pixels were written before).
    Without that order, GIMP kills the plug-in here (this driver)."""
    lock = lambda image, layer: layer.get_parent().set_lock_content(True)  # noqa: E731
    return during_job(lock, make=lambda: group_image(None))


@case("canvas_cropped_during_job", alone=True)
def _cropped():
    """The user crops the 64x64 image to 40x40 from (16, 16) while the job runs."""
    return during_job(lambda image, layer: image.crop(40, 40, 16, 16))


@case("cancelled_during_job", alone=True)
def _cancelled():
    """Fill Selection (test:identity, 150 steps) through the plug-in's own flow, its Cancel
    pressed at the first step, as the progress window's should_cancel reports it: the image is
    as it was, and the server has the cancel by the time the plug-in would return."""
    rgb = Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE
    image, layer = make_image(64, 64, *rgb)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 48, 48)
    image.clean_all()
    before, count = flattened(image), len(layers(image))
    plugin = plugin_module()
    host = plugin.Gimp3Host(image, layer)
    settings = plugin.flow.DEFAULTS._replace(prompt="cancel", **dict(IDENTITY, steps=150))
    texts, watches = [], []
    watch = plugin.flow.Client.watch

    def recorded_watch(client, job):
        watches.append(watch(client, job))
        return watches[-1]

    plugin.flow.Client.watch = recorded_watch
    facts = {}
    try:
        plugin.flow.run_command(
            "fill",
            host,
            settings,
            progress=lambda _fraction, text: texts.append(text),
            should_cancel=lambda: any(text.startswith("Step ") for text in texts),
        )
    except Exception as exc:
        facts.update(error_type=type(exc).__name__, error=str(exc))
    finally:
        plugin.flow.Client.watch = watch
    facts["acted"] = any(text.startswith("Step ") for text in texts)
    facts["texts"] = texts
    facts["job_id"] = watches[0].id if watches else None
    facts.update(layers_after=len(layers(image)), layers_before=count, dirty=image.is_dirty())
    facts["pixels_unchanged"] = flattened(image) == before
    image.delete()
    return facts


@case("several_layers_selected")
def _several_layers():
    """Fill Selection and Generate with two layers selected ("paint" first, below "top")."""
    facts = {}
    for name in ("paintbridge-fill-selection", "paintbridge-generate"):
        rgb = Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE
        image, paint = make_image(64, 64, *rgb)
        rgba, normal = Gimp.ImageType.RGBA_IMAGE, Gimp.LayerMode.NORMAL
        top = Gimp.Layer.new(image, "top", 64, 64, rgba, 100, normal)
        image.insert_layer(top, None, 0)
        image.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 24, 24)
        entry = new_layer_case(name, image, [paint, top])
        entry["paint_position"] = image.get_item_position(paint)
        facts[name] = entry
        image.delete()
    return facts


@case("server_killed_mid_job", alone=True)
def _server_killed():
    """Fill Selection with a long test:identity job on a server the test kills mid-job."""
    image, layer = make_image(64, 64, Gimp.ImageBaseType.RGB, Gimp.ImageType.RGB_IMAGE)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 30, 30)
    image.clean_all()
    before, count = flattened(image), len(layers(image))
    server = {"server_url": CONFIG["fault_url"], "token": CONFIG["fault_token"]}
    status, error = run(
        "paintbridge-fill-selection",
        image,
        [layer],
        prompt="killed",
        **dict(IDENTITY, steps=150, **server),
    )
    facts = {"status": status, "error": error, "layers_before": count}
    facts["ended_at"] = time.monotonic()  # the same clock as the test's, also from a chroot
    facts.update(layers_after=len(layers(image)), dirty=image.is_dirty())
    facts["pixels_unchanged"] = flattened(image) == before
    image.delete()
    return facts


results["finished"] = True
save()
