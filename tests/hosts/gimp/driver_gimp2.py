# ruff: noqa: UP004, UP010, UP031  -- Python 2.7, like the GIMP 2.10 plug-in it drives
"""Runs the GIMP 2.10 plug-in (the built bundle: paintbridge_gimp2.py, paintbridge_gimpflow.py,
hostkit/) against the STAND-IN gimpfu (gimpfu_standin/, not GIMP) and a real paintbridge server,
and writes what it saw as JSON, one entry per case, for test_gimp2.py to judge.

    python driver_gimp2.py CONFIG.json   (Python 3, or 2.7 where one is installed)

CONFIG: {"result", "bundle", "standin", "url", "token", "down_url"}, and optionally "only" (the
cases to run) and "fault_url"/"fault_token" (a server the test kills mid-job).
"""

from __future__ import absolute_import, division, print_function

import json
import sys
import time
import traceback

CONFIG = json.load(open(sys.argv[1]))
sys.path[:0] = [CONFIG["standin"], CONFIG["bundle"]]

import gimpfu  # noqa: E402  (the stand-in)
import paintbridge_gimp2  # noqa: E402, F401  (importing it registers its procedures)

results = {"python": list(sys.version_info[:2])}
STEPS = 2


def save():
    with open(CONFIG["result"], "w") as handle:
        json.dump(results, handle, indent=1, sort_keys=True)


def case(name, alone=False):
    """Runs func now and records its facts under `name`. With CONFIG["only"], only the cases it
    names run; an `alone` case runs only when named there."""

    def wrap(func):
        if name not in CONFIG.get("only", [] if alone else [name]):
            return func
        del gimpfu.MESSAGES[:]
        try:
            facts = func() or {}
            facts["ok"] = True
        except Exception:
            facts = {"ok": False, "error": traceback.format_exc()}
        facts["messages"] = list(gimpfu.MESSAGES)
        results[name] = facts
        save()
        return func

    return wrap


def pattern(width, height, bpp, seed):
    out = bytearray(width * height * bpp)
    for i in range(len(out)):
        out[i] = (i * 7 + (i // (width * bpp)) * 13 + seed) % 256
    if bpp in (2, 4):
        out[bpp - 1 :: bpp] = bytearray([255]) * (width * height)
    return out


def make_image(width, height, base, layer_type, layer_box=None):
    image = gimpfu.gimp.Image(width, height, base)
    bg_type = gimpfu.GRAY_IMAGE if base == gimpfu.GRAY else gimpfu.RGB_IMAGE
    bg = gimpfu.gimp.Layer(image, "background", width, height, bg_type, 100, gimpfu.NORMAL_MODE)
    bg.data = pattern(width, height, bg.bpp, 40)
    x, y, w, h = layer_box or (0, 0, width, height)
    layer = gimpfu.gimp.Layer(image, "paint", w, h, layer_type, 100, gimpfu.NORMAL_MODE)
    layer.data = pattern(w, h, layer.bpp, 1)
    layer.offsets = (x, y)
    image.layers = [layer, bg]
    image.active_layer = layer
    return image, layer


def select_box(image, x, y, w, h, ellipse=False):
    sel = image.selection.data
    for py in range(max(0, y), min(image.height, y + h)):
        for px in range(max(0, x), min(image.width, x + w)):
            if ellipse:
                nx, ny = (px + 0.5 - x - w / 2.0) / (w / 2.0), (py + 0.5 - y - h / 2.0) / (h / 2.0)
                if nx * nx + ny * ny > 1:
                    continue
            sel[py * image.width + px] = 255


def common(**over):
    values = {
        "prompt": "a red door",
        "negative": "",
        "model": "",
        "steps": STEPS,
        "guidance": 0.0,
        "seed": -1,
        "url": CONFIG["url"],
        "token": CONFIG["token"],
    }
    values.update(over)
    return values


def call(name, *leading, **values):
    """Calls a registered procedure with its parameters in registered order."""
    proc = gimpfu.REGISTERED[name]
    names = proc["params"]
    given = dict(zip(["image", "drawable"], leading))  # noqa: B905
    given.update(values)
    rename = {"negative_prompt": "negative", "server_url": "url", "whole_layer": "whole"}
    args = [given[rename.get(n, n)] for n in names]
    return proc["function"](*args)


def compare(before, after, mask, width, within=None):
    counts = {"outside": 0, "outside_changed": 0, "inside": 0, "inside_changed": 0}
    x0, y0, w, h = within or (0, 0, width, len(mask) // width)
    for i, m in enumerate(bytearray(mask)):
        changed = before[4 * i : 4 * i + 4] != after[4 * i : 4 * i + 4]
        x, y = i % width, i // width
        if m == 255 and not (x0 <= x < x0 + w and y0 <= y < y0 + h):
            continue
        if m == 0:
            counts["outside"] += 1
            counts["outside_changed"] += int(changed)
        elif m == 255:
            counts["inside"] += 1
            counts["inside_changed"] += int(changed)
    return counts


def facts_after(image, layer, before_layers, before_pixels, mask, within=None):
    new = [item for item in image.layers if item not in before_layers]
    return {
        "canvas": [image.width, image.height],
        "layer_box": [layer.offsets[0], layer.offsets[1], layer.width, layer.height],
        "layers_before": len(before_layers),
        "layers_after": len(image.layers),
        "active_position_before": before_layers.index(layer),
        "new": [
            {
                "name": n.name,
                "box": [n.offsets[0], n.offsets[1], n.width, n.height],
                "position": image.layers.index(n),
                "bpp": n.bpp,
            }
            for n in new
        ],
        "compare": compare(before_pixels, image.flattened(), mask, image.width, within),
        "undo_groups": image.undo_groups,
        "undo_depth_after": image.undo_depth,
        "mutations": image.mutations,
    }


def run_case(proc, image, drawable, within="layer", layer=None, **values):
    """Runs `proc` on `drawable` (the active layer, unless `layer` says which that is)."""
    layer = layer or drawable
    mask = bytes(image.selection.data)
    before_layers, before_pixels = list(image.layers), image.flattened()
    first_call = len(gimpfu.CALLS)
    call(proc, image, drawable, **values)
    reads = [c[1] for c in gimpfu.CALLS[first_call:] if c[0] == "get_pixel_rgn"]
    if within == "layer":
        within = (layer.offsets[0], layer.offsets[1], layer.width, layer.height)
    facts = facts_after(image, layer, before_layers, before_pixels, mask, within)
    facts["selection_reads"] = [list(r["box"]) for r in reads if r["name"] == "selection"]
    bounds = gimpfu.pdb.gimp_selection_bounds(image)
    facts["selection_bounds"] = (
        [bounds[1], bounds[2], bounds[3] - bounds[1], bounds[4] - bounds[2]] if bounds[0] else None
    )
    return facts


FILL = "python-fu-paintbridge-fill-selection"
IMG2IMG = "python-fu-paintbridge-img2img"
GENERATE = "python-fu-paintbridge-generate"
GENERATE_IMAGE = "python-fu-paintbridge-generate-image"


@case("registered")
def _registered():
    procedures = {
        name: {"menu": p["menu"], "label": p["label"], "params": p["params"]}
        for name, p in gimpfu.REGISTERED.items()
    }
    return {"procedures": procedures}


@case("fill_rectangle")
def _fill_rectangle():
    image, layer = make_image(96, 72, gimpfu.RGB, gimpfu.RGB_IMAGE)
    select_box(image, 30, 20, 24, 16)
    return run_case(FILL, image, layer, **common(source=0, whole=False))


@case("fill_ellipse_corner_gray_offset")
def _fill_gray():
    image, layer = make_image(80, 64, gimpfu.GRAY, gimpfu.GRAYA_IMAGE, layer_box=(8, 4, 72, 60))
    select_box(image, 50, 40, 40, 30, ellipse=True)
    return run_case(FILL, image, layer, **common(source=0, whole=False))


@case("fill_visible")
def _fill_visible():
    image, layer = make_image(72, 56, gimpfu.RGB, gimpfu.RGBA_IMAGE)
    select_box(image, 0, 0, 20, 20)
    return run_case(FILL, image, layer, within=None, **common(source=1, whole=False))


@case("fill_visible_layers_short_of_the_canvas")
def _fill_visible_short():
    """The background hidden and the one visible layer not covering the selection's context:
    GIMP 2.10's merged layer is then smaller than the canvas."""
    image, layer = make_image(72, 56, gimpfu.RGB, gimpfu.RGBA_IMAGE, layer_box=(24, 16, 30, 28))
    image.layers[1].visible = False
    select_box(image, 30, 20, 16, 16)
    return run_case(FILL, image, layer, within=None, **common(source=1, whole=False))


@case("fill_visible_nothing_visible")
def _fill_visible_none():
    image, layer = make_image(48, 40, gimpfu.RGB, gimpfu.RGBA_IMAGE)
    for item in image.layers:
        item.visible = False
    select_box(image, 4, 4, 10, 10)
    return run_case(FILL, image, layer, **common(source=1, whole=False))


@case("fill_on_a_layer_mask")
def _fill_mask():
    image, layer = make_image(48, 40, gimpfu.RGB, gimpfu.RGB_IMAGE)
    select_box(image, 4, 4, 10, 10)
    mask = gimpfu.Channel(image, "mask", 48, 40)
    mask_before = bytes(mask.data)
    facts = run_case(FILL, image, mask, within=None, layer=layer, **common(source=0, whole=False))
    facts["mask_unchanged"] = bytes(mask.data) == mask_before
    return facts


@case("generate_on_a_layer_mask")
def _generate_mask():
    image, layer = make_image(48, 40, gimpfu.RGB, gimpfu.RGB_IMAGE)
    mask = gimpfu.Channel(image, "mask", 48, 40)
    return run_case(GENERATE, image, mask, within=None, layer=layer, **common(width=0, height=0))


@case("fill_no_selection")
def _fill_none():
    image, layer = make_image(48, 40, gimpfu.RGB, gimpfu.RGB_IMAGE)
    return run_case(FILL, image, layer, **common(source=0, whole=False))


@case("fill_server_down")
def _fill_down():
    image, layer = make_image(48, 40, gimpfu.RGB, gimpfu.RGB_IMAGE)
    select_box(image, 4, 4, 10, 10)
    return run_case(FILL, image, layer, **common(source=0, whole=False, url=CONFIG["down_url"]))


@case("fill_result_of_another_size")
def _fill_wrong_size():
    """A server that sends results one pixel narrower than the image sent (hostkit's Client
    patched in the plug-in's process): a message, nothing placed, the history named."""
    import hostkit.client as hostkit_client

    fetch = hostkit_client.Client.result

    def narrower(self, job_id, index=0):
        result = fetch(self, job_id, index)
        width, height = result.width - 1, result.height
        return hostkit_client.Result(width, height, b"\0" * (width * height * 4), result.seed)

    image, layer = make_image(48, 40, gimpfu.RGB, gimpfu.RGB_IMAGE)
    select_box(image, 4, 4, 10, 10)
    hostkit_client.Client.result = narrower
    try:
        return run_case(FILL, image, layer, **common(source=0, whole=False))
    finally:
        hostkit_client.Client.result = fetch


@case("fill_layer_refused")
def _fill_layer_refused():
    """GIMP refuses the result's layer (gimp.error, a RuntimeError): a message that says where
    the result is kept, not a traceback."""
    host_class = paintbridge_gimp2.Gimp2Host
    add_layers = host_class.add_layers

    def refused(self, *args, **kwargs):
        raise RuntimeError("Procedure 'gimp-image-insert-layer' returned no return values")

    image, layer = make_image(48, 40, gimpfu.RGB, gimpfu.RGB_IMAGE)
    select_box(image, 4, 4, 10, 10)
    host_class.add_layers = refused
    try:
        return run_case(FILL, image, layer, **common(source=0, whole=False))
    finally:
        host_class.add_layers = add_layers


@case("fill_strength")
def _fill_strength():
    """The strength Fill Selection sends (its dialog has no Strength field)."""
    import hostkit.client as hostkit_client

    watch = hostkit_client.Client.watch
    sent = []

    def recorded(self, job, prepare=None):
        sent.append(job.get("strength"))
        return watch(self, job, prepare)

    image, layer = make_image(48, 40, gimpfu.RGB, gimpfu.RGB_IMAGE)
    select_box(image, 4, 4, 10, 10)
    hostkit_client.Client.watch = recorded
    try:
        facts = run_case(FILL, image, layer, **common(source=0, whole=False))
    finally:
        hostkit_client.Client.watch = watch
    facts["strengths"] = sent
    return facts


@case("img2img_selection")
def _img2img():
    image, layer = make_image(80, 60, gimpfu.RGB, gimpfu.RGB_IMAGE)
    select_box(image, 10, 12, 40, 30, ellipse=True)
    return run_case(IMG2IMG, image, layer, **common(strength=0.9))


@case("generate")
def _generate():
    image, layer = make_image(72, 48, gimpfu.RGB, gimpfu.RGB_IMAGE)
    return run_case(GENERATE, image, layer, **common(width=0, height=0))


@case("generate_image")
def _generate_image():
    before = len([c for c in gimpfu.CALLS if c[0] == "gimp.Display"])
    call(GENERATE_IMAGE, **common(width=80, height=48))
    displays = [c[1] for c in gimpfu.CALLS if c[0] == "gimp.Display"][before:]
    return {"displays": [list(d["size"]) for d in displays]}


IDENTITY = {"model": "test:identity", "steps": 2}
# what the progress says once the server runs the job (hostkit status_text)
RUNNING = ("Running", "Step ")


@case("indexed_image")
def _indexed():
    """Every command on an indexed image, with the server down: the message must come first."""
    facts = {}
    for proc, values in (
        (FILL, common(source=0, whole=True)),
        (IMG2IMG, common(strength=0.5)),
        (GENERATE, common(width=0, height=0)),
    ):
        image, layer = make_image(48, 40, gimpfu.INDEXED, gimpfu.INDEXED_IMAGE)
        del gimpfu.MESSAGES[:]
        values["url"] = CONFIG["down_url"]
        facts[proc] = run_case(proc, image, layer, **values)
        facts[proc]["messages"] = list(gimpfu.MESSAGES)
    facts["imagetypes"] = {n: p["imagetypes"] for n, p in gimpfu.REGISTERED.items()}
    return facts


@case("locked_group")
def _locked_group():
    """The active layer in a group inside a group whose pixels are locked; the server down."""
    image, layer = make_image(48, 40, gimpfu.RGB, gimpfu.RGB_IMAGE)
    inner, outer = gimpfu.GroupLayer(image, "inner"), gimpfu.GroupLayer(image, "locked outer")
    layer.parent, inner.parent, outer.lock_content = inner, outer, True
    select_box(image, 4, 4, 10, 10)
    return run_case(FILL, image, layer, **common(source=0, whole=False, url=CONFIG["down_url"]))


def look_case(proc, opacity, mode, **values):
    """`proc` with test:identity on a 64x64 layer of `opacity` and `mode`: the new layer's."""
    image, layer = make_image(64, 64, gimpfu.RGB, gimpfu.RGB_IMAGE)
    layer.opacity, layer.mode = opacity, mode
    select_box(image, 8, 8, 24, 24)
    facts = run_case(proc, image, layer, **common(**dict(IDENTITY, **values)))
    new = [n for n in image.layers if n.name.startswith("Paintbridge")]
    facts["look"] = [[n.opacity, n.mode] for n in new]
    return facts


@case("look_fill_from_layer")
def _look_fill():
    return look_case(FILL, 40.0, gimpfu.MULTIPLY_MODE, source=0, whole=False)


@case("look_img2img_from_layer")
def _look_img2img():
    return look_case(IMG2IMG, 55.0, gimpfu.MULTIPLY_MODE, strength=1.0)


@case("look_fill_from_visible")
def _look_visible():
    return look_case(FILL, 40.0, gimpfu.MULTIPLY_MODE, source=1, whole=False)


@case("look_fill_from_pass_through")
def _look_pass_through():
    """The source's mode is a group's pass-through (the stand-in reads a group's pixels as a
    layer's; GIMP would refuse the mode for the new layer)."""
    return look_case(FILL, 70.0, gimpfu.LAYER_MODE_PASS_THROUGH, source=0, whole=False)


def masked_layer(apply_mask):
    """A 64x64 opaque RGBA layer whose mask hides x < 16, ramps over x 16..47, shows x >= 48."""
    image, layer = make_image(64, 64, gimpfu.RGB, gimpfu.RGBA_IMAGE)
    mask = gimpfu.Channel(image, "mask", 64, 64)
    ramp = [0 if x < 16 else 255 if x >= 48 else (x - 16) * 8 for x in range(64)]
    mask.data = bytearray(ramp * 64)
    layer.mask, layer.apply_mask = mask, apply_mask
    return image, layer, bytes(mask.data)


@case("img2img_layer_mask")
def _mask():
    """Image to Image with test:identity on a masked layer: the layer as it shows, so the new
    layer's alpha is the mask's (the layer is opaque)."""
    facts = {}
    for apply_mask in (True, False):
        image, layer, mask = masked_layer(apply_mask)
        run_case(IMG2IMG, image, layer, **common(**dict(IDENTITY, strength=1.0)))
        new = [n for n in image.layers if n.name.startswith("Paintbridge")]
        facts["applied" if apply_mask else "disabled"] = {
            "new_alpha_is_mask": bool(new) and bytes(new[0].rgba()[3::4]) == mask,
            "new_alpha_opaque": bool(new) and set(bytearray(new[0].rgba()[3::4])) == {255},
            "colour_kept": bool(new)
            and all(
                new[0].rgba()[4 * i : 4 * i + 3] == layer.rgba()[4 * i : 4 * i + 3]
                for i, m in enumerate(bytearray(mask))
                if m == 255
            ),
        }
    return facts


def during_job(action, **values):
    """Fill Selection with test:identity; `action(image, layer)` runs at the job's first step
    (the user closing the image or deleting the layer while the job runs)."""
    image, layer = make_image(64, 64, gimpfu.RGB, gimpfu.RGB_IMAGE)
    select_box(image, 8, 8, 24, 24)
    original = gimpfu.pdb.gimp_progress_set_text

    def progress_set_text(text):
        original(text)
        if text.startswith(RUNNING) and not done:
            done.append(text)
            action(image, layer)

    done = []
    gimpfu.pdb.gimp_progress_set_text = progress_set_text
    try:
        before = list(image.layers)
        # 6 steps of 0.05 s: the plug-in, which looks every 0.05 s, sees the job run
        job = dict(IDENTITY, steps=6, source=0, whole=False, **values)
        call(FILL, image, layer, **common(**job))
    finally:
        gimpfu.pdb.gimp_progress_set_text = original
    new = [n for n in image.layers if n not in before]
    return {
        "acted": bool(done),
        "new": [
            {
                "position": image.layers.index(n),
                "name": n.name,
                "box": list(n.offsets) + [n.width, n.height],
            }
            for n in new
        ],
        "layers": [n.name for n in image.layers],
        "canvas": [image.width, image.height],
        "undo_depth_after": image.undo_depth,
    }


@case("image_closed_during_job")
def _closed():
    return during_job(lambda image, layer: setattr(image, "deleted", True))


@case("layer_deleted_during_job")
def _layer_deleted():
    return during_job(lambda image, layer: gimpfu.pdb.gimp_image_remove_layer(image, layer))


@case("canvas_cropped_during_job")
def _cropped():
    """The user crops the 64x64 image to 40x40 from (16, 16) while the job runs."""
    return during_job(lambda image, layer: gimpfu.pdb.gimp_image_crop(image, 40, 40, 16, 16))


@case("server_killed_mid_job", alone=True)
def _server_killed():
    """Fill Selection with a long test:identity job on a server the test kills mid-job."""
    image, layer = make_image(64, 64, gimpfu.RGB, gimpfu.RGB_IMAGE)
    select_box(image, 10, 10, 30, 30)
    values = common(
        source=0,
        whole=False,
        model="test:identity",
        steps=150,
        url=CONFIG["fault_url"],
        token=CONFIG["fault_token"],
    )
    first_call = len(gimpfu.CALLS)
    facts = run_case(FILL, image, layer, **values)
    facts["ended_at"] = time.time()
    calls = gimpfu.CALLS[first_call:]
    facts["progress"] = [c[1]["text"] for c in calls if c[0] == "pdb.gimp_progress_set_text"]
    return facts


results["finished"] = True
save()
