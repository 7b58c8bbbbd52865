"""Checks that run inside real Blender (the bpy module), one per process.

    <blender-venv>/bin/python inhost.py CHECK RESULT.json ADDON_DIR MODULE [INSTALL ZIP|FOLDER]

Enables the add-on MODULE from ADDON_DIR (the folder that holds it), or installs ZIP the way a
user would when given (or enables what the CLI installed in FOLDER), runs the check and writes
{"ok", "error", "data"} to RESULT.json. The server is found through $PAINTBRIDGE_CONFIG_DIR
(server.json), as a user's Blender finds it. Most checks use the tiny test model: images are
noise, so they look at sizes, pixels that must not change, datablocks, links and properties,
never at what the picture shows. The test:identity checks give images back, so they compare
every pixel.
"""

import json
import os
import struct
import sys
import threading
import time
import traceback
import types
import zlib

import bpy
import numpy as np

CHECKS = {}
MODEL = "test:tiny"
IDENTITY = "test:identity"  # gives every input image back, 50 ms a step


def check(func):
    CHECKS[func.__name__] = func
    return func


def enable(addon_dir, module, install=None, zip_path=None):
    """Enables the add-on: from ADDON_DIR on sys.path (default), or installs ZIP as a user
    would: "legacy-zip" (Preferences > Add-ons > Install) or "extension-zip" (Install from
    Disk, 4.2+), or enables the extension `paintbridge plugins install` put in
    $BLENDER_USER_EXTENSIONS/user_default ("installed-extension"). Returns the add-on's
    module."""
    import addon_utils  # importable once bpy is

    if install == "legacy-zip":
        bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True)
        bpy.ops.preferences.addon_enable(module=module)
    elif install == "extension-zip":
        bpy.ops.extensions.package_install_files(
            filepath=zip_path, repo="user_default", enable_on_install=True
        )
        module = "bl_ext.user_default." + module
    elif install == "installed-extension":  # already unpacked into the user_default repository
        module = "bl_ext.user_default." + module
        addon_utils.enable(module, default_set=True, handle_error=_raise)
    else:
        sys.path.insert(0, addon_dir)
        addon_utils.enable(module, default_set=True, handle_error=_raise)
    if module not in bpy.context.preferences.addons:
        raise AssertionError(f"add-on {module} is not enabled")
    return sys.modules[module]


def _raise(exc):
    raise exc


def settings(**values):
    s = bpy.context.scene.paintbridge
    s.prompt = "a red brick wall"
    s.model = MODEL
    s.steps = 2
    s.width, s.height = 96, 64
    s.seed_mode = "FIXED"
    s.seed = 7
    for key, value in values.items():
        setattr(s, key, value)
    return s


def pixels(image):
    values = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
    image.pixels.foreach_get(values)
    return values


def byte_image(name, width, height, rgba_top_down):
    """A byte image whose pixels are given top row first (as a user sees them)."""
    image = bpy.data.images.new(name, width, height, alpha=True)
    array = np.asarray(rgba_top_down, dtype=np.uint8).reshape(height, width, 4)[::-1]
    image.pixels.foreach_set((array.astype(np.float32) / 255).ravel())
    return image


def pattern(width, height, seed=0):
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    return rgba


def datablocks():
    return {
        "images": sorted(i.name for i in bpy.data.images),
        "materials": sorted(m.name for m in bpy.data.materials),
        "node_groups": sorted(g.name for g in bpy.data.node_groups),
    }


def new_images(before):
    return [bpy.data.images[n] for n in sorted(set(i.name for i in bpy.data.images) - before)]


def expect_error(call, *fragments):
    try:
        call()
    except RuntimeError as exc:
        message = str(exc)
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        return message
    raise AssertionError(f"expected an error with {fragments}")


# --- checks ---------------------------------------------------------------------------------


@check
def registered(addon, data):
    for name in ("generate", "img2img", "inpaint", "generate_texture", "cancel", "start_server"):
        assert hasattr(bpy.ops.paintbridge, name), name
        bpy.ops.paintbridge.__getattr__(name).get_rna_type()
    image_menu = [f.__name__ for f in bpy.types.IMAGE_MT_image.draw._draw_funcs]
    node_menu = [f.__name__ for f in bpy.types.NODE_MT_add.draw._draw_funcs]
    assert "draw_image_menu" in image_menu, image_menu
    assert "draw_node_add_menu" in node_menu, node_menu
    assert hasattr(bpy.types, "PAINTBRIDGE_PT_image")
    assert bpy.types.PAINTBRIDGE_PT_image.bl_category == "Paintbridge"
    assert hasattr(bpy.context.scene, "paintbridge")
    data["image_menu"] = image_menu
    import addon_utils

    # unregister is clean and the add-on comes back
    module = addon.__name__
    addon_utils.disable(module, default_set=True)
    assert not hasattr(bpy.types, "PAINTBRIDGE_PT_image")
    assert "draw_image_menu" not in [
        f.__name__ for f in getattr(bpy.types.IMAGE_MT_image.draw, "_draw_funcs", [])
    ]
    # Reload Scripts (done while it is off) runs every submodule again
    import importlib

    def own_functions(submodule):
        return {
            key: value
            for key, value in vars(submodule).items()
            if isinstance(value, types.FunctionType) and value.__module__ == submodule.__name__
        }

    names = [n for n in sys.modules if n.startswith(module + ".") and ".hostkit" not in n]
    before = {name: own_functions(sys.modules[name]) for name in names}
    assert len(before) >= 9, sorted(before)
    importlib.reload(addon)
    for name, functions in before.items():
        after = own_functions(sys.modules[name])
        assert functions and all(after[key] is not f for key, f in functions.items()), name
    addon_utils.enable(module, default_set=True, handle_error=_raise)
    assert hasattr(bpy.ops.paintbridge, "generate")


@check
def pixel_conversion(addon, data):
    convert, params = addon.convert, addon.params
    from_image = addon.images.read_rgba8
    w, h = 5, 3
    top_down = pattern(w, h, 1)
    top_down[..., 3] = np.arange(w * h).reshape(h, w) * 17
    # byte image: rows bottom-up in Blender, top-down out; exact
    img = byte_image("bytes", w, h, top_down)
    rw, rh, rgba = from_image(img)
    assert (rw, rh) == (w, h)
    assert rgba == top_down.tobytes(), "byte image read differs"
    # the first pixel Blender stores is the bottom-left one
    assert np.allclose(pixels(img)[:4] * 255, top_down[h - 1, 0], atol=0.01)
    # writing a result: packed as the PNG made off Blender's thread, read back exact, kept
    png = addon.results.png(top_down.tobytes(), w, h)
    made = addon.images.new_result_image("made", png, {"task": "t"})
    assert tuple(made.size) == (w, h) and from_image(made)[2] == top_down.tobytes()
    assert made.packed_file is not None and made.use_fake_user
    assert made.packed_file.data == png  # Blender encoded nothing
    # float image: linear and premultiplied in Blender (see float_alpha), straight sRGB bytes
    # out, within 1/255 of Blender's own transform
    fimg = bpy.data.images.new("floats", w, h, alpha=True, float_buffer=True)
    assert fimg.is_float and fimg.colorspace_settings.name != "sRGB"
    linear = np.linspace(0, 0.5, w * h * 4, dtype=np.float32).reshape(h, w, 4)
    linear[..., 3] = 0.5
    fimg.pixels.foreach_set(linear.ravel())
    _, _, frgba = from_image(fimg)
    got = np.frombuffer(frgba, dtype=np.uint8).reshape(h, w, 4)[::-1]  # back to Blender rows
    # reference: Blender's sRGB byte conversion of the same color (generated_color round trip)
    want = convert.linear_to_srgb(linear[..., :3] / 0.5) * 255
    assert np.abs(got[..., :3] - want).max() <= 1.0, np.abs(got[..., :3] - want).max()
    assert np.all(got[..., 3] == 128)
    probe = bpy.data.images.new("probe", 1, 1, alpha=True, float_buffer=True)
    for value in (0.0, 0.002, 0.01, 0.05, 0.2, 0.5, 0.8, 1.0):
        probe.generated_color = (value, value, value, 1.0)  # a color given in sRGB...
        stored = pixels(probe)[0]  # ...is stored linear by Blender's own color management
        mine = convert.linear_to_srgb(np.float32(stored)) * 255
        assert abs(float(mine) - value * 255) <= 1.0, (value, stored, float(mine))
    # a fully transparent premultiplied pixel keeps its (black) RGB, no division by zero
    clear = convert.pixels_to_rgba8([0, 0, 0, 0, 0.25, 0, 0, 0.5], 2, 1, premultiplied=True)
    assert clear == bytes([0, 0, 0, 0, 128, 0, 0, 128]), list(clear)
    # Non-Color float image: values pass through, alpha left alone
    dimg = bpy.data.images.new("data", w, h, alpha=True, float_buffer=True)
    dimg.colorspace_settings.name = "Non-Color"  # (changing it reloads the pixels: first)
    dimg.pixels.foreach_set(linear.ravel())
    _, _, data_rgba = from_image(dimg)
    got = np.frombuffer(data_rgba, dtype=np.uint8).reshape(h, w, 4)[::-1]
    assert np.abs(got.astype(float) - linear * 255).max() <= 0.5 + 1e-3
    # round trips: bytes -> linear floats -> bytes, and through hostkit's PNG codec
    every = np.arange(256, dtype=np.uint8).repeat(4).reshape(16, 16, 4)
    back = convert.pixels_to_rgba8(
        convert.rgba8_to_pixels(every.tobytes(), 16, 16, linear=True), 16, 16, linear=True
    )
    assert back == every.tobytes(), "sRGB -> linear -> sRGB is not exact"
    pix = addon.hostkit.pixels
    png = pix.encode_png(top_down.tobytes(), w, h)
    assert pix.decode_png(png)[3] == top_down.tobytes()
    # masks, composite, crop/paste
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = [[255, 0], [128, 255]]
    assert convert.transparency_mask(rgba[..., 3].tobytes()) == bytes([0, 255, 127, 0])
    # the alpha planned from on Blender's thread is the alpha of the RGBA8 sent
    for premultiplied in (False, True):
        values = np.linspace(-0.1, 1.2, 6 * 4 * 4, dtype=np.float32)
        sent = convert.pixels_to_rgba8(values, 6, 4, True, premultiplied)
        assert convert.alpha_bytes(values, 6, 4) == sent[3::4]
    white = np.full((1, 2, 4), 255, np.uint8)
    white[0, 1, :3] = 0
    assert convert.luma_mask(white.tobytes()) == bytes([255, 0])
    source = pattern(2, 1, 3)
    result = pattern(2, 1, 4)
    result[0, 0, 3], result[0, 1, 3] = 0, 255
    out = np.frombuffer(convert.composite_over(source.tobytes(), result.tobytes()), np.uint8)
    assert out[:4].tolist() == source[0, 0].tolist() and out[4:].tolist() == result[0, 1].tolist()
    # a hole (transparent source) inside the mask fills at full strength despite the feather
    hole = np.zeros((1, 2, 4), np.uint8)
    hole[0, 1] = [10, 20, 30, 255]
    faint = np.full((1, 2, 4), 200, np.uint8)
    faint[..., 3] = 64
    out = np.frombuffer(
        convert.composite_over(hole.tobytes(), faint.tobytes(), bytes([255, 255])), np.uint8
    )
    assert out[:4].tolist() == [200, 200, 200, 255], out
    assert out[7] == 255 and abs(int(out[4]) - (200 * 64 + 10 * 191) // 255) <= 1, out
    big = pattern(6, 4, 5).tobytes()
    patch = convert.crop(big, 6, 4, (1, 2, 3, 2))
    assert convert.paste(big, 6, 4, (1, 2, 3, 2), patch) == big
    # params
    assert params.job_seed("FIXED", 5, 9) == 5 and params.job_seed("REUSE", 5, 9) == 9
    assert 0 <= params.job_seed("RANDOM", 5, 9) <= params.MAX_SEED
    assert 0 <= params.job_seed("REUSE", 5, -1) <= params.MAX_SEED
    assert params.result_name("  a   cat ", "txt2img") == "a cat"
    assert params.result_name("", "txt2img") == "txt2img"
    long_name = params.result_name("é" * 80, "t")
    assert len(long_name.encode("utf-8")) <= 63 and long_name.endswith("...")
    # a fresh scene's steps and guidance are 0: the model's own, sent as nothing
    fresh = bpy.data.scenes.new("fresh").paintbridge
    assert (fresh.steps, fresh.guidance) == (0, 0.0)
    sent = params.job_parameters(fresh.as_dict())
    assert sent["steps"] is None and sent["guidance"] is None, sent
    assert "steps" not in addon.hostkit.tasks.txt2img_job("x", **sent)
    sent = params.job_parameters(dict(fresh.as_dict(), steps=3, guidance=0.5))
    assert (sent["steps"], sent["guidance"]) == (3, 0.5), sent
    rec = params.record({"task": "img2img", "image": {}, "seed": None, "steps": 2}, 2**32 + 1)
    assert rec == {"task": "img2img", "steps": 2, "seed": str(2**32 + 1)}


@check
def generate(addon, data):
    s = settings()
    before = set(i.name for i in bpy.data.images)
    assert bpy.ops.paintbridge.generate() == {"FINISHED"}
    made = new_images(before)
    assert len(made) == 1, made
    image = made[0]
    assert tuple(image.size) == (96, 64), tuple(image.size)
    assert image.name == "a red brick wall"
    assert image.packed_file is not None and image.use_fake_user
    record = image["paintbridge"].to_dict()
    for key, want in (("task", "txt2img"), ("prompt", s.prompt), ("seed", 7), ("steps", 2)):
        assert record[key] == want, (key, record)
    assert record["model"] == MODEL and record["width"] == 96 and record["height"] == 64
    assert s.last_seed == 7
    values = pixels(image)
    assert np.all(values[3::4] == 1.0) and values[0::4].std() > 0.01
    # the same operator from a menu (INVOKE_DEFAULT) runs synchronously in background mode
    s.seed_mode = "REUSE"
    s.width, s.height = 64, 72
    assert bpy.ops.paintbridge.generate("INVOKE_DEFAULT") == {"FINISHED"}
    second = new_images(before | {image.name})
    assert len(second) == 1 and tuple(second[0].size) == (64, 72)
    assert second[0]["paintbridge"]["seed"] == 7
    data["saved"] = {i.name: pixels(i).tolist()[:64] for i in (image, second[0])}
    # save, reload: the results are still there, packed, with their pixels and parameters
    path = os.path.join(os.environ["PB_TMP"], "generate.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_homefile(use_empty=True)
    assert not set(data["saved"]) & set(i.name for i in bpy.data.images)
    bpy.ops.wm.open_mainfile(filepath=path)
    for name, first in data["saved"].items():
        loaded = bpy.data.images[name]
        assert loaded.packed_file is not None
        assert np.allclose(pixels(loaded)[:64], first, atol=0.5 / 255), name
        assert loaded["paintbridge"]["model"] == MODEL
    assert bpy.context.scene.paintbridge.last_seed == 7  # settings are saved with the scene
    data.pop("saved")


@check
def img2img(addon, data):
    settings(strength=0.6)
    source = byte_image("photo", 80, 72, pattern(80, 72, 2))
    fsource = bpy.data.images.new("render", 64, 64, alpha=True, float_buffer=True)
    fsource.generated_color = (0.2, 0.4, 0.8, 1.0)
    snapshot = {img.name: pixels(img).copy() for img in (source, fsource)}
    before = set(i.name for i in bpy.data.images)
    assert bpy.ops.paintbridge.img2img(image_name="photo") == {"FINISHED"}
    with bpy.context.temp_override(edit_image=fsource):
        assert bpy.ops.paintbridge.img2img() == {"FINISHED"}
    made = new_images(before)
    assert len(made) == 2, made
    by_source = {m["paintbridge"]["source_image"]: m for m in made}
    assert tuple(by_source["photo"].size) == (80, 72)
    assert tuple(by_source["render"].size) == (64, 64)
    record = by_source["photo"]["paintbridge"].to_dict()
    assert record["task"] == "img2img" and abs(record["strength"] - 0.6) < 1e-6, record
    for img in (source, fsource):
        assert np.array_equal(pixels(img), snapshot[img.name]), f"source {img.name} changed"
        assert img.packed_file is None
    # no image open and none named: a clean error, nothing made
    before = set(i.name for i in bpy.data.images)
    expect_error(bpy.ops.paintbridge.img2img, "Open an image")
    assert new_images(before) == []


@check
def inpaint(addon, data):
    settings(strength=0.5)  # a transparent hole is filled at full strength all the same
    w, h = 160, 120
    base = pattern(w, h, 3)
    hole = base.copy()
    hole[40:70, 100:130, 3] = 0  # rows 40-69, columns 100-129 (top-down) are transparent
    source = byte_image("wall", w, h, hole)
    snapshot = pixels(source).copy()
    before = set(i.name for i in bpy.data.images)
    assert bpy.ops.paintbridge.inpaint(image_name="wall") == {"FINISHED"}
    (made,) = new_images(before)
    assert tuple(made.size) == (w, h)
    assert np.array_equal(pixels(source), snapshot), "the source image changed"
    out = np.frombuffer(addon.images.read_rgba8(made)[2], np.uint8).reshape(h, w, 4)
    keep = np.ones((h, w), bool)
    keep[40:70, 100:130] = False
    assert np.array_equal(out[keep], hole[keep]), "pixels outside the hole changed"
    assert np.all(out[40:70, 100:130, 3] == 255), "the hole was not filled"
    record = made["paintbridge"].to_dict()
    assert record["task"] == "inpaint" and record["source_image"] == "wall"
    assert record["strength"] == 1.0, record
    x, y, bw, bh = record["box"]
    assert x <= 100 and y <= 40 and x + bw >= 130 and y + bh >= 70 and bw * bh < w * h
    data["box"] = record["box"]
    # with a mask image: white = regenerate, on an opaque image
    mask = np.zeros((h, w, 4), np.uint8)
    mask[..., 3] = 255
    mask[10:30, 20:50, :3] = 255
    bpy.context.scene.paintbridge.mask_image = byte_image("mask", w, h, mask)
    opaque = byte_image("opaque", w, h, base)
    before = set(i.name for i in bpy.data.images)
    with bpy.context.temp_override(edit_image=opaque):
        assert bpy.ops.paintbridge.inpaint() == {"FINISHED"}
    (masked,) = new_images(before)
    out = np.frombuffer(addon.images.read_rgba8(masked)[2], np.uint8).reshape(h, w, 4)
    keep = np.ones((h, w), bool)
    keep[10:30, 20:50] = False
    assert np.array_equal(out[keep], base[keep])
    assert not np.array_equal(out[10:30, 20:50], base[10:30, 20:50])
    assert masked["paintbridge"]["mask_image"] == "mask"
    assert abs(masked["paintbridge"]["strength"] - 0.5) < 1e-6  # under a mask: the panel's
    # an empty mask (an opaque image, no mask image) is a clean error
    bpy.context.scene.paintbridge.mask_image = None
    before = set(i.name for i in bpy.data.images)
    expect_error(lambda: bpy.ops.paintbridge.inpaint(image_name="opaque"), "Nothing to inpaint")
    # a mask of another size too
    bpy.context.scene.paintbridge.mask_image = byte_image("small", 8, 8, pattern(8, 8))
    expect_error(lambda: bpy.ops.paintbridge.inpaint(image_name="opaque"), "same size")
    # an image wider than a server takes, sent whole: what to do in Blender (no "select")
    bpy.context.scene.paintbridge.mask_image = None
    wide = pattern(8200, 2)
    wide[:, :100, 3] = 0
    byte_image("wide", 8200, 2, wide)
    for call in (
        lambda: bpy.ops.paintbridge.img2img(image_name="wide"),
        lambda: bpy.ops.paintbridge.inpaint(image_name="wide"),  # seamless: sent whole
    ):
        bpy.context.scene.paintbridge.seamless = "xy"
        message = expect_error(call, '"wide" is 8200 x 2 px', "Image > Resize")
        assert "elect" not in message, message
    bpy.context.scene.paintbridge.seamless = "none"
    assert new_images(before | {"small", "wide"}) == []


@check
def inpaint_data_and_seamless(addon, data):
    """A result of a Non-Color (data) image is Non-Color too, for inpaint and img2img alike;
    a seamless inpaint sends the whole image, so the fill tiles with the image's far side,
    not with the edges of a crop."""
    settings(strength=1.0, steps=2)
    normal = np.zeros((64, 64, 4), np.uint8)
    normal[...] = (128, 128, 255, 255)
    normal[30:34, 30:34, 3] = 0
    source = byte_image("normal", 64, 64, normal)
    source.colorspace_settings.name = "Non-Color"
    source.pixels.foreach_set((normal[::-1].astype(np.float32) / 255).ravel())
    for operator in (bpy.ops.paintbridge.inpaint, bpy.ops.paintbridge.img2img):
        made = run_and_take(operator, image_name="normal")
        assert made.colorspace_settings.name == "Non-Color", made.colorspace_settings.name
    inpainted = run_and_take(bpy.ops.paintbridge.inpaint, image_name="normal")
    out = np.frombuffer(addon.images.read_rgba8(inpainted)[2], np.uint8).reshape(64, 64, 4)
    keep = normal[..., 3] == 255
    assert np.array_equal(out[keep], normal[keep]), "data values outside the hole changed"
    colour = run_and_take(
        bpy.ops.paintbridge.inpaint, image_name=byte_image("c", 64, 64, normal).name
    )
    assert colour.colorspace_settings.name == "sRGB"
    # a byte image in another colour space: its bytes go as they are, and come back tagged
    # with its space, so what the inpaint left alone shows as in the image
    linear = byte_image("linear", 64, 64, normal)
    linear.colorspace_settings.name = "Linear Rec.709"
    linear.pixels.foreach_set((normal[::-1].astype(np.float32) / 255).ravel())
    for operator in (bpy.ops.paintbridge.img2img, bpy.ops.paintbridge.inpaint):
        made = run_and_take(operator, image_name="linear")
        assert made.colorspace_settings.name == "Linear Rec.709", made.colorspace_settings.name
    out = np.frombuffer(addon.images.read_rgba8(made)[2], np.uint8).reshape(64, 64, 4)  # inpaint
    assert np.array_equal(out[keep], normal[keep])
    # seamless: the hole near the right edge is filled knowing the left edge
    tile = pattern(256, 256, 3)
    tile[100:120, 230:250, 3] = 0
    byte_image("tile", 256, 256, tile)
    settings(seamless="xy")
    made = run_and_take(bpy.ops.paintbridge.inpaint, image_name="tile")
    record = made["paintbridge"].to_dict()
    assert record["seamless"] == "xy" and list(record["box"]) == [0, 0, 256, 256], record
    out = np.frombuffer(addon.images.read_rgba8(made)[2], np.uint8).reshape(256, 256, 4)
    keep = tile[..., 3] == 255
    assert np.array_equal(out[keep], tile[keep]), "pixels outside the hole changed"
    settings(seamless="none")
    made = run_and_take(bpy.ops.paintbridge.inpaint, image_name="tile")
    assert list(made["paintbridge"]["box"]) != [0, 0, 256, 256]  # a crop, without seamless


@check
def inpaint_float_source(addon, data):
    """Inpaint of a float image: the result is a float image too, holding the source's own
    values wherever the inpaint left a pixel alone (an HDR's 4.0, a 32-bit height map's fine
    steps), also once the .blend is saved and opened again (it was 8-bit sRGB, clipped)."""
    settings(strength=1.0, steps=2)
    w, h = 48, 32
    hdr = bpy.data.images.new("hdr", w, h, alpha=True, float_buffer=True)
    values = np.full((h, w, 4), 4.0, np.float32)
    values[..., 3] = 1.0
    values[10:14, 20:24] = 0.0  # a transparent hole (premultiplied: all zero)
    hdr.pixels.foreach_set(values.ravel())
    height = bpy.data.images.new("height", w, h, alpha=True, float_buffer=True)
    height.colorspace_settings.name = "Non-Color"
    ramp = np.linspace(0.0, 1.0, w * h, dtype=np.float32).reshape(h, w)
    steps = np.stack([ramp, ramp, ramp, np.ones_like(ramp)], axis=-1)
    steps[10:14, 20:24, 3] = 0.0
    height.pixels.foreach_set(steps.ravel())
    made = {}
    for source, want in ((hdr, values), (height, steps)):
        result = run_and_take(bpy.ops.paintbridge.inpaint, image_name=source.name)
        assert result.is_float, source.name
        assert result.colorspace_settings.name == source.colorspace_settings.name
        got = pixels(result).reshape(h, w, 4)
        keep = np.ones((h, w), bool)
        keep[10:14, 20:24] = False
        assert np.array_equal(got[keep], want[keep]), f"{source.name}: kept pixels changed"
        assert np.all(got[10:14, 20:24, 3] > 0.99), f"{source.name}: the hole was not filled"
        made[source.name] = result.name
    # a 16-bit PNG (tagged sRGB, premultiplied on load) and a float image made in Blender
    # (alpha mode Straight), both semi-transparent: their results too must reopen as they were
    picture = pattern(w, h, 5)
    picture[..., 3] = 180
    picture[10:14, 20:24, 3] = 0
    png16 = bpy.data.images.load(
        write_png(os.path.join(os.environ["PB_TMP"], "p16.png"), picture, 16)
    )
    semi = bpy.data.images.new("semi", w, h, alpha=True, float_buffer=True)
    half = np.full((h, w, 4), (0.4, 0.2, 0.1, 0.5), np.float32)
    half[10:14, 20:24] = 0.0
    semi.pixels.foreach_set(half.ravel())
    assert semi.alpha_mode == "STRAIGHT" and png16.colorspace_settings.name == "sRGB"
    for source in (png16, semi):
        made[source.name] = run_and_take(bpy.ops.paintbridge.inpaint, image_name=source.name).name
    before = {name: pixels(bpy.data.images[name]) for name in made.values()}
    path = os.path.join(os.environ["PB_TMP"], "floats.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    reopened = pixels(bpy.data.images[made["hdr"]]).reshape(h, w, 4)
    assert abs(float(reopened[0, 0, 0]) - 4.0) < 1e-3, reopened[0, 0]
    data["reopened_corner"] = reopened[0, 0].tolist()
    for name, values in before.items():  # once, not twice, decoded and premultiplied
        image = bpy.data.images[name]
        after = pixels(image)
        gap = float(np.abs(after - values).max())
        assert np.allclose(after, values, rtol=1e-3, atol=1e-3), (name, gap)
        image.reload()
        assert np.allclose(pixels(image), values, rtol=1e-3, atol=1e-3), name


@check
def working_spaces(addon, data):
    """Blender 5.0: a .blend's linear values may be in Linear Rec.2020 or ACEScg. A float
    image is sent as the sRGB the Image Editor shows (pure red stays 255, 0, 0; it went as
    205, 75, 39 under ACEScg), and an inpaint result's floats are decoded into the working
    space as Blender decodes the same 8-bit values from a file."""
    reopened_as_made(addon, "packed", "CHANNEL_PACKED")  # any version: no second premultiply
    if not hasattr(bpy.data, "colorspace"):  # before 5.0: Linear Rec.709, nothing to convert
        assert addon.images.working_space_to_rec709() is None
        return
    picture = np.zeros((4, 6, 4), np.uint8)
    picture[...] = (255, 0, 0, 255)
    picture[1] = (0, 200, 0, 255)
    picture[2] = (30, 90, 250, 255)
    picture[3, :3] = (250, 240, 10, 255)
    path = write_png(os.path.join(os.environ["PB_TMP"], "colours16.png"), picture, 16)
    seen = {}
    for space in ("Linear Rec.709", "Linear Rec.2020", "ACEScg"):
        bpy.ops.wm.set_working_color_space(working_space=space, convert_colors=False)
        assert bpy.data.colorspace.working_space == space
        image = bpy.data.images.load(path, check_existing=False)
        assert image.is_float
        width, height, rgba = addon.images.read_rgba8(image)
        sent = np.frombuffer(rgba, np.uint8).reshape(height, width, 4)
        assert gap_255(rgba, picture) <= 1, (space, sent[:, 0].tolist())
        to_rec709 = addon.images.working_space_to_rec709()
        decoded = addon.convert.rgba8_to_pixels(picture.tobytes(), 6, 4, True, to_rec709)
        assert np.allclose(decoded, pixels(image), atol=2e-3), space  # as Blender decodes it
        seen[space] = pixels(image)[:4].tolist()
    assert seen["ACEScg"] != seen["Linear Rec.709"]  # the spaces did differ
    data["red"] = seen
    # a float inpaint result holds working-space values: tagged so, it reopens as it was made
    bpy.ops.wm.set_working_color_space(working_space="ACEScg", convert_colors=False)
    result = reopened_as_made(addon, "acescg", "STRAIGHT")
    assert result == "ACEScg", result


def reopened_as_made(addon, name, alpha_mode):
    """A float inpaint result (images.new_float_result) of a semi-transparent float image in
    `alpha_mode`, saved in a .blend and opened again: its pixels must be the same. Returns the
    result's colour space."""
    source = bpy.data.images.new(name, 8, 8, alpha=True, float_buffer=True)
    source.alpha_mode = alpha_mode
    values = np.tile(np.float32([0.8, 0.4, 0.2, 0.5]), 64)
    source.pixels.foreach_set(values)
    float_source = addon.images.FloatSource.of(source)
    made = addon.images.new_float_result(name + " result", 8, 8, values, {}, float_source)
    made_name, colorspace = made.name, made.colorspace_settings.name
    path = os.path.join(os.environ["PB_TMP"], name + ".blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    after = pixels(bpy.data.images[made_name])
    assert np.allclose(after, values, atol=1e-3), (name, alpha_mode, after[:4].tolist())
    return colorspace


def write_png(path, rgba_top_down, depth):
    """An RGBA PNG file of these 8-bit pixels, at 8 or 16 bits a channel (16: v * 257, the same
    values exactly). Written here: Blender's Python has no Pillow."""
    array = np.asarray(rgba_top_down, dtype=np.uint8)
    height, width = array.shape[:2]
    samples = array if depth == 8 else (array.astype(">u2") * 257)
    raw = b"".join(b"\0" + samples[row].tobytes() for row in range(height))

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, depth, 6, 0, 0, 0)  # 6: RGBA
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header))
        handle.write(chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def read_png16_first_pixel(path):
    """The first pixel's four 16-bit samples of an uncompressed-filter RGBA16 PNG file."""
    with open(path, "rb") as handle:
        data = handle.read()
    assert data[24:26] == bytes([16, 6]), data[24:26]  # 16 bits, RGBA
    at = data.index(b"IDAT")
    size = struct.unpack(">I", data[at - 4 : at])[0]
    raw = zlib.decompress(data[at + 4 : at + 4 + size])
    assert raw[0] == 0, "filtered row"
    return struct.unpack(">4H", raw[1:9])


def gap_255(got, want):
    got = np.frombuffer(got, np.uint8).astype(int)
    return int(np.abs(got - np.asarray(want).astype(int).ravel()).max())


@check
def float_alpha(addon, data):
    """Blender holds float images premultiplied (a straight 16-bit PNG too, once loaded): what
    is sent is the file's straight pixels, and the untouched pixels come back as they were."""
    read = addon.images.read_rgba8
    premultiplied = addon.images.premultiplied
    w, h = 64, 48
    picture = pattern(w, h, 11)
    picture[..., 3] = np.linspace(40, 255, w * h).reshape(h, w)  # semi-transparent everywhere
    picture[0, 0] = [255, 128, 0, 128]  # the reported pixel: sent as [188, 92, 0, 128]
    folder = os.environ["PB_TMP"]
    loaded = {}
    for depth in (8, 16):
        path = write_png(os.path.join(folder, f"alpha{depth}.png"), picture, depth)
        loaded[depth] = bpy.data.images.load(path)
    assert not loaded[8].is_float and loaded[16].is_float, "16-bit PNG: float buffer"
    assert loaded[16].alpha_mode == "STRAIGHT" and premultiplied(loaded[16])
    assert not premultiplied(loaded[8])
    # what Blender holds for the 16-bit file: linear RGB times alpha (so the sRGB encode alone
    # would darken it)
    held = pixels(loaded[16]).reshape(h, w, 4)[::-1]
    alpha = picture[..., 3:] / 255
    linear = srgb_decode(picture[..., :3] / 255)
    assert np.abs(held[..., :3] - linear * alpha).max() < 1e-3, "not premultiplied any more?"
    assert read(loaded[8])[2] == picture.tobytes(), "8-bit PNG"
    sent = read(loaded[16])[2]
    assert list(sent[:4]) == [255, 128, 0, 128], list(sent[:4])
    data["gap_16bit"] = gap_255(sent, picture)
    assert data["gap_16bit"] <= 1, data["gap_16bit"]
    # alpha left alone by Blender: Channel Packed, and data (Non-Color): read as it is
    packed = bpy.data.images.load(os.path.join(folder, "alpha16.png"), check_existing=False)
    packed.alpha_mode = "CHANNEL_PACKED"
    noncolor = bpy.data.images.load(os.path.join(folder, "alpha16.png"), check_existing=False)
    noncolor.colorspace_settings.name = "Non-Color"
    for image in (packed, noncolor):
        assert image.is_float and not premultiplied(image), image.name
        assert gap_255(read(image)[2], picture) <= 1, image.name
    # a float image made in Blender: premultiplied too, as Blender's own saving takes it
    made = bpy.data.images.new("made float", 1, 1, alpha=True, float_buffer=True)
    made.pixels.foreach_set(np.array([0.5, 0.0, 0.0, 0.5], np.float32))  # red at 50%
    assert premultiplied(made) and list(read(made)[2]) == [255, 0, 0, 128]
    made.filepath_raw = os.path.join(folder, "made.png")
    made.file_format = "PNG"
    made.save()
    assert read_png16_first_pixel(made.filepath_raw)[0] == 65535, "Blender saved it straight"
    # img2img through test:identity (the picture over gray, its own alpha): the 16-bit file
    # comes back as the 8-bit one does, within 1/255
    scene_settings = settings(model=IDENTITY, strength=1.0, steps=2)
    source = loaded[16]
    snapshot = pixels(source).copy()
    want = run_and_take(bpy.ops.paintbridge.img2img, image_name=loaded[8].name)
    result = run_and_take(bpy.ops.paintbridge.img2img, image_name=source.name)
    want = np.frombuffer(read(want)[2], np.uint8)
    assert np.array_equal(want[3::4], picture[..., 3].ravel()), "alpha not kept"
    data["gap_img2img"] = gap_255(read(result)[2], want)
    assert data["gap_img2img"] <= 1, data["gap_img2img"]
    # inpaint with a mask image: every pixel outside the mask comes back straight, as sent
    mask = np.zeros((h, w, 4), np.uint8)
    mask[..., 3] = 255
    mask[20:30, 10:40, :3] = 255
    scene_settings.mask_image = byte_image("mask", w, h, mask)
    result = run_and_take(bpy.ops.paintbridge.inpaint, image_name=source.name)
    out = np.frombuffer(read(result)[2], np.uint8).reshape(h, w, 4)
    keep = mask[..., 0] == 0
    assert np.array_equal(out[keep], np.frombuffer(sent, np.uint8).reshape(h, w, 4)[keep])
    data["gap_inpaint_kept"] = int(np.abs(out[keep].astype(int) - picture[keep]).max())
    assert data["gap_inpaint_kept"] <= 1, data["gap_inpaint_kept"]
    assert np.array_equal(pixels(source), snapshot), "the source changed"


def links_of(tree):
    return sorted(
        (link.from_node.name, link.from_socket.identifier, link.to_node.name, link.to_socket.name)
        for link in tree.links
    )


@check
def texture(addon, data):
    settings()
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.object
    material = bpy.data.materials.new("Bricks")
    material.use_nodes = True
    tree = material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    value = tree.nodes.new("ShaderNodeValue")
    tree.links.new(value.outputs[0], bsdf.inputs["Roughness"])
    rgb = tree.nodes.new("ShaderNodeRGB")
    tree.links.new(rgb.outputs[0], bsdf.inputs["Base Color"])
    bump = tree.nodes.new("ShaderNodeBump")
    tree.links.new(bump.outputs[0], bsdf.inputs["Normal"])
    cube.data.materials.append(material)
    before_links = links_of(tree)
    before = set(i.name for i in bpy.data.images)
    assert bpy.ops.paintbridge.generate_texture() == {"FINISHED"}
    (image,) = new_images(before)
    assert image["paintbridge"]["seamless"] == "xy"
    assert image["paintbridge"]["material"] == "Bricks"
    assert image.packed_file is not None
    base = bsdf.inputs["Base Color"]
    assert base.is_linked and base.links[0].from_node.type == "TEX_IMAGE"
    node = base.links[0].from_node
    assert node.image == image
    after = links_of(tree)
    replaced = [link for link in before_links if link[3] == "Base Color"]
    kept = [link for link in before_links if link[3] != "Base Color"]
    assert set(kept) <= set(after), "a link the user made is gone"
    assert len(after) == len(before_links), (before_links, after)
    assert rgb.name in tree.nodes and replaced  # the replaced source stays in the tree
    # again: the same node gets the new texture, no pile of nodes
    count = len(tree.nodes)
    assert bpy.ops.paintbridge.generate_texture() == {"FINISHED"}
    assert len(tree.nodes) == count and node.image != image
    assert links_of(tree) == after
    # an object without material gets one, named after the texture
    bpy.ops.mesh.primitive_plane_add()
    plane = bpy.context.object
    settings(texture_seamless="x", prompt="moss")
    assert bpy.ops.paintbridge.generate_texture() == {"FINISHED"}
    made = plane.active_material
    assert made is not None and made.name == "moss"
    node = made.node_tree.nodes.active
    assert node.type == "TEX_IMAGE" and node.image["paintbridge"]["seamless"] == "x"
    # an object whose active slot is empty: the new material fills that slot, which its faces
    # use, instead of a second slot no face uses
    bpy.ops.mesh.primitive_cube_add()
    box = bpy.context.object
    box.data.materials.append(None)  # as the slot list's "+" leaves it
    assert len(box.material_slots) == 1 and box.active_material is None
    settings(prompt="slate")
    assert bpy.ops.paintbridge.generate_texture() == {"FINISHED"}
    slots = [slot.material.name if slot.material else None for slot in box.material_slots]
    assert slots == ["slate"], slots
    assert {face.material_index for face in box.data.polygons} == {0}
    assert node_image_name(box.active_material) == "slate"
    # by name, from anywhere
    settings(prompt="sand")
    assert bpy.ops.paintbridge.generate_texture(material_name="Bricks") == {"FINISHED"}
    assert node_image_name(material) == "sand"


def shader_material(name, *kinds, mix=False):
    """A material whose output is fed by new nodes of these kinds (a Mix Shader of the first
    two when `mix`); returns (material, nodes)."""
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    tree = material.node_tree
    for node in [n for n in tree.nodes if n.type != "OUTPUT_MATERIAL"]:
        tree.nodes.remove(node)
    output = next(n for n in tree.nodes if n.type == "OUTPUT_MATERIAL")
    nodes = [tree.nodes.new(kind) for kind in kinds]
    if mix:
        mixer = tree.nodes.new("ShaderNodeMixShader")
        tree.links.new(nodes[0].outputs[0], mixer.inputs[1])
        tree.links.new(nodes[1].outputs[0], mixer.inputs[2])
        tree.links.new(mixer.outputs[0], output.inputs["Surface"])
    elif nodes:
        tree.links.new(nodes[0].outputs[0], output.inputs["Surface"])
    return material, nodes


def texture_source(socket):
    """The image an Image Texture node linked to `socket` shows, None if nothing is linked."""
    if not socket.is_linked:
        return None
    node = socket.links[0].from_node
    assert node.type == "TEX_IMAGE", node.type
    return node.image.name


@check
def texture_shaders(addon, data):
    """Materials without a Principled BSDF on their output: the texture goes to the colour of
    the shader the output shows, or stands unlinked (and the operator says so); the artist's
    nodes and links stay."""
    settings(prompt="rust")
    session = bpy.context.window_manager.paintbridge
    cases = {
        "diffuse": (("ShaderNodeBsdfDiffuse",), False, 0, "Color"),
        "emission": (("ShaderNodeEmission",), False, 0, "Color"),
        # alpha cut-out: the Principled BSDF, not the Transparent BSDF's tint
        "cutout": (
            ("ShaderNodeBsdfTransparent", "ShaderNodeBsdfPrincipled"),
            True,
            1,
            "Base Color",
        ),
        "diffuse+glossy": (("ShaderNodeBsdfDiffuse", "ShaderNodeBsdfGlossy"), True, 0, "Color"),
    }
    for name, (kinds, mix, index, socket_name) in cases.items():
        material, nodes = shader_material(name, *kinds, mix=mix)
        tree = material.node_tree
        before_links, count = links_of(tree), len(tree.nodes)
        image = run_and_take(bpy.ops.paintbridge.generate_texture, material_name=name)
        target = nodes[index].inputs[socket_name]
        assert texture_source(target) == image.name, (name, links_of(tree))
        assert len(tree.nodes) == count + 1, (name, [n.name for n in tree.nodes])
        assert set(before_links) <= set(links_of(tree)), name
        assert len(links_of(tree)) == len(before_links) + 1, name
        record = image["paintbridge"]
        assert record["linked_to"] == f"{nodes[index].name}: {socket_name}", record["linked_to"]
        assert session.message == "", session.message
    # the output fed by a Holdout (no colour of its own): the node is added unlinked, the
    # operator warns, the links stay as they were; a second run reuses that node
    material, (holdout,) = shader_material("holdout", "ShaderNodeHoldout")
    tree = material.node_tree
    before_links, count = links_of(tree), len(tree.nodes)
    image = run_and_take(bpy.ops.paintbridge.generate_texture, material_name="holdout")
    assert links_of(tree) == before_links, links_of(tree)
    assert len(tree.nodes) == count + 1
    (node,) = [n for n in tree.nodes if n.type == "TEX_IMAGE"]
    assert node.image == image and not node.outputs["Color"].is_linked
    assert image["paintbridge"]["linked_to"] == "" and tree.nodes.active == node
    assert "not linked" in session.message and node.name in session.message, session.message
    assert "Principled BSDF" not in [n.name for n in tree.nodes]
    again = run_and_take(bpy.ops.paintbridge.generate_texture, material_name="holdout")
    assert len(tree.nodes) == count + 1 and node.image == again
    data["warning"] = session.message
    # nothing on the output's Surface: an unlinked Principled BSDF there is linked to it
    material, (bsdf,) = shader_material("loose", "ShaderNodeBsdfPrincipled")
    tree = material.node_tree
    tree.links.remove(tree.links[0])
    image = run_and_take(bpy.ops.paintbridge.generate_texture, material_name="loose")
    output = tree.get_output_node("ALL")
    assert output.inputs["Surface"].links[0].from_node == bsdf
    assert texture_source(bsdf.inputs["Base Color"]) == image.name
    # no shader at all: a Principled BSDF is made and linked
    material, _ = shader_material("empty")
    image = run_and_take(bpy.ops.paintbridge.generate_texture, material_name="empty")
    shader = material.node_tree.get_output_node("ALL").inputs["Surface"].links[0].from_node
    assert shader.type == "BSDF_PRINCIPLED"
    assert texture_source(shader.inputs["Base Color"]) == image.name


def node_image_name(material):
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    return bsdf.inputs["Base Color"].links[0].from_node.image.name


@check
def server_down(addon, data):
    settings()
    source = byte_image("photo", 64, 64, pattern(64, 64))
    bpy.ops.mesh.primitive_cube_add()
    before = datablocks()
    for call in (
        bpy.ops.paintbridge.generate,
        lambda: bpy.ops.paintbridge.img2img(image_name="photo"),
        lambda: bpy.ops.paintbridge.generate_texture(),
    ):
        message = expect_error(call, "paintbridge serve")
        assert datablocks() == before, (before, datablocks())
    data["message"] = message
    session = bpy.context.window_manager.paintbridge
    assert session.server == "not running", session.server
    # a server named by hand that does not answer
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    prefs.server_url = os.environ["PB_DEAD_URL"]
    expect_error(bpy.ops.paintbridge.generate, "Could not reach", os.environ["PB_DEAD_URL"])
    # a URL that is not one: says what to type, whether Blender is online or not
    prefs.server_url = "localhost:7860"
    expect_error(bpy.ops.paintbridge.generate, "must start with http:// or https://")
    prefs.server_url = "http://[::1"
    expect_error(bpy.ops.paintbridge.generate, "is not a valid URL")
    # a remote one while Blender is offline: refused before any request
    if not getattr(bpy.app, "online_access", True):
        prefs.server_url = "http://192.0.2.1:7860"
        expect_error(bpy.ops.paintbridge.generate, "online access")
    assert datablocks() == before
    assert source.packed_file is None


class ModalDriver:
    """Runs the job operators' modal path by hand: background mode has no event loop, so this
    plays Blender's part (timer events, Esc) on the add-on's own modal code."""

    def __init__(self, operator_class, **props):
        self.cls = operator_class
        self.op = type("Driven", (operator_class.__mro__[1],), {})()  # the _JobOperator mixin
        self.op.plan = types.MethodType(operator_class.plan, self.op)
        for key, value in props.items():
            setattr(self.op, key, value)
        self.reports = []
        self.op.report = lambda level, text: self.reports.append((sorted(level)[0], text))

    @staticmethod
    def event(kind, value="PRESS"):
        # Only what a real bpy.types.Event has: it has no `timer` (reading one raised in the UI)
        return types.SimpleNamespace(type=kind, value=value if kind != "TIMER" else "NOTHING")

    def invoke(self, context):
        # invoke() would take the synchronous path in background mode: do what it does in the UI
        session = context.window_manager.paintbridge
        self.op._start(context)
        session.running = True
        self.op._timer = context.window_manager.event_timer_add(0.2, window=context.window)

    def tick_until_done(self, context, seconds=120):
        """Sends timer events until the modal ends; its answer ({"FINISHED"}...)."""
        deadline = time.time() + seconds
        answer = {"PASS_THROUGH"}
        while answer == {"PASS_THROUGH"} and time.time() < deadline:
            time.sleep(0.1)
            answer = self.op.modal(context, self.event("TIMER"))
        return answer

    def make_client(self, context):
        addon = sys.modules[self.cls.__module__.rsplit(".", 1)[0]]
        return addon.plans.client(context, background=False)


@check
def modal(addon, data):
    context = bpy.context
    settings(steps=2)
    session = context.window_manager.paintbridge
    ops = addon.operators
    before = set(i.name for i in bpy.data.images)
    driver = ModalDriver(ops.PAINTBRIDGE_OT_generate)
    prepared = []  # (thread, what the plan's prepare made)

    def plan(context):
        made = addon.plans.plan_generate(context, "none")

        def prepare(results):
            ready = made.prepare(results)
            prepared.append((threading.current_thread(), ready))
            return ready

        return made._replace(prepare=prepare)

    driver.op.plan = plan
    driver.invoke(context)
    assert driver.op.modal(context, driver.event("MOUSEMOVE")) == {"PASS_THROUGH"}
    answers = []
    deadline = time.time() + 120
    while time.time() < deadline:
        answer = driver.op.modal(context, driver.event("TIMER"))
        answers.append(session.message)
        if answer != {"PASS_THROUGH"}:
            break
        time.sleep(0.1)
    assert answer == {"FINISHED"}, (answer, driver.reports)
    (image,) = new_images(before)
    assert tuple(image.size) == (96, 64) and not session.running
    assert driver.op._timer is None
    # the result's PNG was made on the job's thread; Blender's thread only packed it
    ((thread, (ready,)),) = prepared
    assert thread is driver.op._handle._thread and thread is not threading.main_thread()
    assert image.packed_file.data == ready.png
    data["messages"] = sorted(set(answers))
    # a result the add-on cannot use (prepare raises) ends the job with its message
    driver = ModalDriver(ops.PAINTBRIDGE_OT_generate)

    def unusable(results):
        raise ValueError("the result is 8 x 8, not 96 x 64")

    driver.op.plan = lambda context: addon.plans.plan_generate(context, "none")._replace(
        prepare=unusable
    )
    driver.invoke(context)
    answer = driver.tick_until_done(context)
    assert answer == {"CANCELLED"}, (answer, driver.reports)
    level, text = driver.reports[-1]
    assert level == "ERROR" and "could not use its result: the result is 8 x 8" in text, text
    assert f"history export {driver.op._handle.id}" in text, text
    assert new_images(before) == [image] and not session.running
    # Blender refusing to make the image (bpy raises RuntimeError in finish): a message that
    # says where the result is kept, not a traceback
    driver = ModalDriver(ops.PAINTBRIDGE_OT_generate)

    def refused(context, ready):
        raise RuntimeError("Error: Image could not be packed")

    driver.op.plan = lambda context: addon.plans.plan_generate(context, "none")._replace(
        finish=refused
    )
    driver.invoke(context)
    assert driver.tick_until_done(context) == {"CANCELLED"}, driver.reports
    level, text = driver.reports[-1]
    assert level == "ERROR" and "could not use its result: Error: Image could not" in text, text
    assert f"history export {driver.op._handle.id}" in text and not session.running, text
    # the same on the synchronous path (background mode, scripts): the operator's error says
    # where the result is kept
    images_module, new_result_image = addon.images, addon.images.new_result_image
    images_module.new_result_image = lambda *args: refused(None, None)
    try:
        before = set(i.name for i in bpy.data.images)
        expect_error(bpy.ops.paintbridge.generate, "could not use its result", "history export")
        assert new_images(before) == []
    finally:
        images_module.new_result_image = new_result_image
    # the source's conversion for the wire runs on the job's thread as the job is sent: Blender's
    # thread only copies its floats (and plans the inpaint mask from their alpha)
    fsource = bpy.data.images.new("modal float", 48, 32, alpha=True, float_buffer=True)
    floats = np.full((32, 48, 4), 0.5, np.float32)
    floats[..., 3] = 1.0
    floats[8:12, 8:12] = 0.0  # a transparent hole
    fsource.pixels.foreach_set(floats.ravel())
    converted, convert = [], addon.convert
    original = convert.pixels_to_rgba8

    def recorded(*args, **kwargs):
        converted.append(threading.current_thread())
        return original(*args, **kwargs)

    convert.pixels_to_rgba8 = recorded
    try:
        before = set(i.name for i in bpy.data.images)
        driver = ModalDriver(ops.PAINTBRIDGE_OT_inpaint, image_name=fsource.name)
        driver.invoke(context)
        answer = driver.tick_until_done(context)
    finally:
        convert.pixels_to_rgba8 = original
    assert answer == {"FINISHED"}, (answer, driver.reports)
    assert converted == [driver.op._handle._thread], converted
    (inpainted,) = new_images(before)
    assert inpainted.is_float and tuple(inpainted.size) == (48, 32)
    kept = pixels(inpainted).reshape(32, 48, 4)
    assert np.array_equal(kept[:8], floats[:8]), "pixels outside the hole changed"
    # Esc once the job is done, while its result is readied: nothing added, and the message
    # says where the result is kept (it was "no image was made")
    driver = ModalDriver(ops.PAINTBRIDGE_OT_generate)
    preparing, may_end = threading.Event(), threading.Event()

    def slow(results):
        preparing.set()
        may_end.wait(30)
        return addon.results.as_png(results)

    driver.op.plan = lambda context: addon.plans.plan_generate(context, "none")._replace(
        prepare=slow
    )
    before = set(i.name for i in bpy.data.images)
    driver.invoke(context)
    assert preparing.wait(120), "the job did not finish"
    assert driver.op.modal(context, driver.event("ESC")) == {"CANCELLED"}
    may_end.set()
    level, text = driver.reports[-1]
    assert level == "WARNING" and text.startswith("Cancelled; no image was added. "), text
    assert f"history export {driver.op._handle.id}" in text, text
    assert driver.op._handle.join(30) and new_images(before) == [] and not session.running
    # Esc while the job runs: cancelled on the server, nothing made
    settings(steps=150, width=512, height=512)
    before = set(i.name for i in bpy.data.images)
    driver = ModalDriver(ops.PAINTBRIDGE_OT_generate)
    driver.invoke(context)
    deadline = time.time() + 120
    while driver.op._handle.poll().state in ("sending", "queued") and time.time() < deadline:
        time.sleep(0.1)
    job_id = driver.op._handle.id
    assert job_id is not None
    # the release of an Esc that cancelled something else (a move, a box select) is not ours
    assert driver.op.modal(context, driver.event("ESC", "RELEASE")) == {"PASS_THROUGH"}
    # Esc that stops playback is Blender's, not a cancel
    screen = types.SimpleNamespace(is_animation_playing=True, areas=[])
    playing = types.SimpleNamespace(
        window_manager=context.window_manager, workspace=None, screen=screen
    )
    assert driver.op.modal(playing, driver.event("ESC")) == {"PASS_THROUGH"}
    assert session.running
    assert driver.op.modal(context, driver.event("ESC")) == {"CANCELLED"}
    assert driver.reports[-1] == ("WARNING", "Cancelled; no image was made."), driver.reports
    client = driver.make_client(context)
    deadline = time.time() + 60
    while client.poll(job_id).state not in ("cancelled", "done", "failed"):
        assert time.time() < deadline, "the server did not cancel"
        time.sleep(0.1)
    assert client.poll(job_id).state == "cancelled"
    assert new_images(before) == [] and not session.running
    # the panel's Cancel button does the same through the session flag
    driver = ModalDriver(ops.PAINTBRIDGE_OT_generate)
    driver.invoke(context)
    deadline = time.time() + 60
    while driver.op._handle.id is None:  # sent (a cancel while sending: tests/hostkit)
        assert time.time() < deadline, "the job was not sent"
        time.sleep(0.05)
    assert bpy.ops.paintbridge.cancel() == {"FINISHED"} and session.cancel_requested
    assert driver.op.modal(context, driver.event("TIMER")) == {"CANCELLED"}
    assert driver.op._handle.join(10)  # its thread sent the cancel after the modal's close
    deadline = time.time() + 60
    while client.poll(driver.op._handle.id).state != "cancelled":
        assert time.time() < deadline, "the server did not cancel"
        time.sleep(0.1)
    assert new_images(before) == [] and not session.cancel_requested
    # other timers' ticks (Blender sends every timer's TIMER events to every modal handler)
    # do not make the job poll faster than its own timer
    driver = ModalDriver(ops.PAINTBRIDGE_OT_generate)
    driver.invoke(context)
    polls = []
    poll = driver.op._handle.poll
    driver.op._handle.poll = lambda: polls.append(1) or poll()
    for _ in range(10):
        assert driver.op.modal(context, driver.event("TIMER")) == {"PASS_THROUGH"}
    assert len(polls) == 1
    assert bpy.ops.paintbridge.cancel() == {"FINISHED"}
    assert driver.op.modal(context, driver.event("TIMER")) == {"CANCELLED"}
    # the add-on disabled (or updated) while a job runs: Blender drops the modal without its
    # cancel(), so unregister cancels the job on the server and clears the session itself
    import addon_utils

    driver = ModalDriver(ops.PAINTBRIDGE_OT_generate)
    driver.invoke(context)
    deadline = time.time() + 60
    while driver.op._handle.id is None:
        assert time.time() < deadline, "the job was not sent"
        time.sleep(0.05)
    assert session.running and driver.op in ops._LIVE
    addon_utils.disable(addon.__name__, default_set=True)
    assert driver.op._handle.join(10) and driver.op._timer is None and not ops._LIVE
    deadline = time.time() + 60
    while client.poll(driver.op._handle.id).state != "cancelled":
        assert time.time() < deadline, "the server did not cancel"
        time.sleep(0.1)
    addon_utils.enable(addon.__name__, default_set=True, handle_error=_raise)
    assert not context.window_manager.paintbridge.running
    assert new_images(before) == []


@check
def start_server_modal(addon, data):
    """Start Server's modal path as the UI runs it, on a server process that exited at once."""
    context = bpy.context
    ops = addon.operators
    start = ops.PAINTBRIDGE_OT_start_server
    reports = []
    methods = ("modal", "cancel", "_stop_waiting")
    op = type("Driven", (), {name: getattr(start, name) for name in methods})()
    op.report = lambda level, text: reports.append((sorted(level)[0], text))
    exited = types.SimpleNamespace(poll=lambda: 1, pid=0)
    op._launch = addon.hostkit.client.ServerLaunch(
        exited, addon.hostkit.client.user_config_dir(), "server.log"
    )
    op._give_up_at = time.monotonic() + 60
    op._timer = context.window_manager.event_timer_add(0.5, window=context.window)
    live = addon.connection.local_client_if_live() is not None
    assert op.modal(context, ModalDriver.event("MOUSEMOVE")) == {"PASS_THROUGH"}
    answer = op.modal(context, ModalDriver.event("TIMER"))
    session = context.window_manager.paintbridge
    if live:
        assert answer == {"FINISHED"} and session.server == "connected", (answer, reports)
    else:
        assert answer == {"CANCELLED"} and session.server == "not running", (answer, reports)
        assert reports[-1][0] == "ERROR" and "stopped while starting" in reports[-1][1], reports
    assert op._timer is None
    data["live"] = live
    # ended by Blender (a file loaded, the add-on disabled) while it waits: its timer goes
    waiting = type("Driven", (), {name: getattr(start, name) for name in methods})()
    waiting._timer = context.window_manager.event_timer_add(0.5, window=context.window)
    ops._LIVE.add(waiting)
    waiting.cancel(context)
    assert waiting._timer is None and not ops._LIVE and session.server == "unknown"


@check
def server_stopped(addon, data):
    """A long test:identity job while the test stops the server ($PB_PATH: "sync" runs the
    operator as background mode does, "modal" drives its modal path as the UI does)."""
    context = bpy.context
    settings(model=IDENTITY, steps=200, strength=1.0)  # 200 steps of 50 ms
    source = byte_image("photo", 64, 64, pattern(64, 64))
    snapshot = pixels(source).copy()
    session = context.window_manager.paintbridge
    before = datablocks()
    started = time.time()
    if os.environ["PB_PATH"] == "sync":
        message = expect_error(lambda: bpy.ops.paintbridge.img2img(image_name="photo"))
    else:
        driver = ModalDriver(addon.operators.PAINTBRIDGE_OT_img2img, image_name="photo")
        driver.invoke(context)
        answer = {"PASS_THROUGH"}
        while answer == {"PASS_THROUGH"} and time.time() - started < 120:
            time.sleep(0.1)
            answer = driver.op.modal(context, driver.event("TIMER"))
        assert answer == {"CANCELLED"}, (answer, driver.reports)
        level, message = driver.reports[-1]
        assert level == "ERROR", driver.reports
        assert driver.op._timer is None, "the timer is still there"
    data["seconds"], data["message"] = time.time() - started, message
    assert "server stopped before the job finished; no image was made" in message, message
    assert "Start it with `paintbridge serve`" in message, message
    assert session.message and session.message in message and not session.running
    assert session.server == "not running"  # the panel offers Start Server
    assert datablocks() == before, (before, datablocks())
    assert np.array_equal(pixels(source), snapshot) and source.packed_file is None


@check
def render_of_view_layers(addon, data):
    """A render of two view layers is read as the compositor's result or, without compositing,
    as its first view layer (what the README says): a red plane in the first layer, the
    second without it (the world's green), each order."""
    scene = render_scene(8, 8, (0.0, 0.5, 0.0, 1.0))
    scene.render.use_compositing = False
    scene.view_settings.view_transform = "Standard"
    scene.camera.location, scene.camera.rotation_euler = (0.0, 0.0, 5.0), (0.0, 0.0, 0.0)
    planes = bpy.data.collections.new("planes")
    scene.collection.children.link(planes)
    mesh = bpy.data.meshes.new("plane")
    mesh.from_pydata([(-20, -20, 0), (20, -20, 0), (20, 20, 0), (-20, 20, 0)], [], [(0, 1, 2, 3)])
    plane = bpy.data.objects.new("plane", mesh)
    planes.objects.link(plane)
    material = bpy.data.materials.new("red")
    material.use_nodes = True
    nodes = material.node_tree.nodes
    nodes.clear()
    glow = nodes.new("ShaderNodeEmission")
    glow.inputs[0].default_value = (1.0, 0.0, 0.0, 1.0)
    output = nodes.new("ShaderNodeOutputMaterial")
    material.node_tree.links.new(glow.outputs[0], output.inputs[0])
    mesh.materials.append(material)
    first = scene.view_layers[0]
    second = scene.view_layers.new("second")
    seen = {}
    for shown, hidden in ((first, second), (second, first)):
        shown.layer_collection.children["planes"].exclude = False
        hidden.layer_collection.children["planes"].exclude = True
        bpy.ops.render.render()
        made = run_and_take(bpy.ops.paintbridge.img2img, image_name="Render Result")
        red, green = as_srgb(made)[..., :3].reshape(-1, 3).mean(axis=0)[:2]
        seen[shown.name] = (round(red, 3), round(green, 3))
        assert (red > 0.9 and green < 0.1) == (shown == first), (shown.name, red, green)
        bpy.data.images.remove(made)
    data["seen"] = seen


# --- round trips through test:identity (every task gives its input image back) ---------------

TOLERANCE = 1 / 255 + 1e-6


def srgb_decode(encoded):
    """The sRGB curve (IEC 61966-2-1), written here apart from convert.py so this checks it."""
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def srgb_encode(linear):
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def float_image(name, width, height, rgba_top_down):
    """A float (linear) image showing these sRGB bytes, top row first."""
    image = bpy.data.images.new(name, width, height, alpha=True, float_buffer=True)
    assert image.is_float and not image.colorspace_settings.is_data
    values = np.asarray(rgba_top_down, dtype=np.float64).reshape(height, width, 4)[::-1] / 255
    values[..., :3] = srgb_decode(values[..., :3])
    image.pixels.foreach_set(values.astype(np.float32).ravel())
    return image


def as_srgb(image):
    """The image's pixels as Blender stores them (rows bottom-up), RGB sRGB-encoded."""
    values = pixels(image).reshape(image.size[1], image.size[0], 4).astype(np.float64)
    if image.is_float:
        values[..., :3] = srgb_encode(values[..., :3])
    return values


def assert_same_picture(result, source, where=None):
    """result shows source within 1/255 (sRGB), the right way up; returns the largest gap."""
    want, got = as_srgb(source), as_srgb(result)
    assert got.shape == want.shape, (got.shape, want.shape)
    upside_down = np.abs(want[::-1] - want).max()
    assert upside_down > 0.5, "the source rows are symmetric: a flip would go unnoticed"
    gap = np.abs(got - want)
    if where is not None:
        gap[~where] = 0
    if gap.max() > TOLERANCE:
        bad = np.argwhere(gap > TOLERANCE)
        rows, columns, channels = bad[:, 0], bad[:, 1], sorted(set(bad[:, 2].tolist()))
        raise AssertionError(
            f"{result.name} differs from {source.name} by up to {gap.max() * 255:.1f}/255 at "
            f"{len(bad)} values, rows {rows.min()}-{rows.max()}, columns {columns.min()}-"
            f"{columns.max()} (Blender's rows, bottom-up), channels {channels}"
        )
    return float(gap.max() * 255)


def run_and_take(operator, **props):
    """Runs an operator and returns the one image it made."""
    before = set(i.name for i in bpy.data.images)
    assert operator(**props) == {"FINISHED"}
    made = new_images(before)
    assert len(made) == 1, made
    return made[0]


def sources(width, height, seed):
    """A byte (sRGB) and a float (linear) image of one opaque random picture."""
    picture = pattern(width, height, seed)
    tag = f"{width}x{height}"
    return byte_image("bytes " + tag, width, height, picture), float_image(
        "floats " + tag, width, height, picture
    )


@check
def identity_roundtrip(addon, data):
    scene_settings = settings(model=IDENTITY, strength=1.0, steps=2)
    gaps = {}
    for width, height in ((64, 64), (128, 32)):
        for source in sources(width, height, width):
            snapshot = pixels(source).copy()
            made = run_and_take(bpy.ops.paintbridge.img2img, image_name=source.name)
            assert not made.is_float and tuple(made.size) == (width, height)
            gaps["img2img " + source.name] = assert_same_picture(made, source)
            # inpaint with a mask image, white in the top left part (box: the whole image)
            mask = np.zeros((height, width, 4), np.uint8)
            mask[..., 3] = 255
            mask[2 : height // 3, 4 : width - 8, :3] = 255
            scene_settings.mask_image = byte_image("mask", width, height, mask)
            made = run_and_take(bpy.ops.paintbridge.inpaint, image_name=source.name)
            assert made["paintbridge"]["box"].to_list() == [0, 0, width, height]
            gaps["inpaint mask " + source.name] = assert_same_picture(made, source)
            scene_settings.mask_image = None
            assert np.array_equal(pixels(source), snapshot), "the source changed"
    data["largest_gap_in_255ths"] = gaps
    # inpaint where the image is transparent: the hole comes back as the model saw it (over
    # mid gray), opaque; every other pixel as it was
    for width, height in ((64, 64), (128, 32)):
        picture = pattern(width, height, 9)
        picture[1 : height // 2, 2 : width - 2, 3] = 0
        for source in (
            byte_image("holed bytes", width, height, picture),
            float_image("holed floats", width, height, picture),
        ):
            made = run_and_take(bpy.ops.paintbridge.inpaint, image_name=source.name)
            assert made["paintbridge"]["box"].to_list() == [0, 0, width, height]
            hole = (picture[..., 3] == 0)[::-1]  # in Blender's rows
            assert_same_picture(made, source, where=~hole)
            got = as_srgb(made)[hole]
            assert np.abs(got[:, :3] - 128 / 255).max() <= TOLERANCE, "the hole is not gray"
            assert np.all(got[:, 3] == 1.0), "the hole was not filled"


@check
def seeds(addon, data):
    """Blender's int properties are 32-bit signed; server seeds go up to 2**32 - 1."""
    top = addon.params.MAX_SEED
    assert top == 2**31 - 1
    s = settings(model=IDENTITY, width=64, height=64, steps=1)  # txt2img: noise of the seed
    for name, low in (("seed", 0), ("last_seed", -1)):
        prop = s.bl_rna.properties[name]
        assert (prop.hard_min, prop.hard_max) == (low, top), (name, prop.hard_min, prop.hard_max)
    s.seed = top
    for too_big in (top + 1, 2**32 - 1):
        try:
            s.seed = too_big
        except (ValueError, OverflowError):
            pass
        else:
            raise AssertionError(f"the seed field took {too_big}")
        assert s.seed == top, s.seed
    # the largest seed: sent, recorded and remembered as it is, and "reuse last" repeats it
    first = run_and_take(bpy.ops.paintbridge.generate)
    assert first["paintbridge"]["seed"] == top and s.last_seed == top
    s.seed_mode, s.seed = "REUSE", 0
    again = run_and_take(bpy.ops.paintbridge.generate)
    assert again["paintbridge"]["seed"] == top and np.array_equal(pixels(again), pixels(first))
    # random seeds: drawn up to the largest seed a property holds, and remembered
    s.seed_mode = "RANDOM"
    drawn = []
    for _ in range(3):
        image = run_and_take(bpy.ops.paintbridge.generate)
        drawn.append(image["paintbridge"]["seed"])
        assert 0 <= drawn[-1] <= top and s.last_seed == drawn[-1], (drawn, s.last_seed)
    assert len(set(drawn)) == 3, drawn
    highest = types.SimpleNamespace(randint=lambda low, high: high)  # the top of the draw
    s.last_seed = addon.params.job_seed("RANDOM", 0, -1, rng=highest)
    assert s.last_seed == top
    # a seed the server chose itself, above what a property holds: kept on the image as text,
    # "reuse last" keeps the last seed it can hold, nothing overflows or fails
    s.last_seed = 5
    plan = addon.plans.plan_generate(bpy.context, "none")
    rgba = bytes(64 * 64 * 4)
    chosen = addon.hostkit.client.Result(64, 64, rgba, 2**32 - 1)
    (made,) = plan.finish(bpy.context, plan.prepare([chosen]))
    assert made["paintbridge"]["seed"] == str(2**32 - 1) and s.last_seed == 5
    data["random_seeds"] = drawn


class LayoutStandIn:
    """A stand-in for bpy.types.UILayout, which Blender makes only while it draws a region of a
    window, never in background mode. It records what a draw function asks for and checks each
    request against Blender's own registries: the property exists on its data, the operator is
    registered, the icon is one this Blender has."""

    ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())

    def __init__(self, log=None, parent=None):
        self.log = [] if log is None else log
        self.parent = parent
        self.enabled = True
        self.operator_context = "EXEC_REGION_WIN"

    @property
    def usable(self):
        """Enabled here and in every enclosing layout, as Blender greys out a disabled column."""
        return self.enabled and (self.parent is None or self.parent.usable)

    def _icon(self, icon):
        assert icon in self.ICONS, f"no icon {icon!r} in {bpy.app.version_string}"

    def row(self, align=False):
        return LayoutStandIn(self.log, self)

    column = row

    def separator(self):
        self.log.append(("separator",))

    def label(self, text="", icon="NONE"):
        self._icon(icon)
        self.log.append(("label", text))

    def prop(self, data, name, text=None, icon="NONE", slider=False):
        assert name in data.bl_rna.properties, f"{data} has no property {name!r}"
        self._icon(icon)
        self.log.append(("prop", name, self.usable))

    def operator(self, idname, text=None, icon="NONE"):
        module, name = idname.split(".")
        getattr(getattr(bpy.ops, module), name).get_rna_type()  # raises if not registered
        self._icon(icon)
        self.log.append(("operator", idname, self.usable))


def draw(draw_function, context=None):
    """What draw_function(self, context) puts in a stand-in layout."""
    owner = types.SimpleNamespace(layout=LayoutStandIn())
    draw_function(owner, context or bpy.context)
    return owner.layout.log


def node_editor(tree_type, shader_type):
    """A stand-in context whose space is a node editor showing this kind of tree."""
    space = types.SimpleNamespace(type="NODE_EDITOR", tree_type=tree_type, shader_type=shader_type)
    return types.SimpleNamespace(space_data=space, object=bpy.context.object, material=None)


@check
def texture_poll(addon, data):
    """Generate Texture's poll refuses, with a message, where it has nothing to write into: a
    Shader Editor on a World or Line Style tree, or no object or material at all."""
    plans = addon.plans
    bpy.ops.mesh.primitive_cube_add()
    for shader_type, shown in (("WORLD", "World"), ("LINESTYLE", "Linestyle")):
        problem = plans.texture_target_problem(node_editor("ShaderNodeTree", shader_type))
        assert problem and f"switch the Shader Editor from {shown}" in problem, problem
    assert plans.texture_target_problem(node_editor("ShaderNodeTree", "OBJECT")) is None
    assert bpy.ops.paintbridge.generate_texture.poll()  # an object that can have a material
    bpy.ops.wm.read_homefile(use_empty=True)
    for material in list(bpy.data.materials):
        bpy.data.materials.remove(material)
    assert bpy.context.object is None and len(bpy.data.materials) == 0
    assert not bpy.ops.paintbridge.generate_texture.poll()
    data["message"] = expect_error(bpy.ops.paintbridge.generate_texture, "poll()", "Select an")
    bpy.data.materials.new("Any")  # a material that material_name can name
    assert bpy.ops.paintbridge.generate_texture.poll()


@check
def texture_grease_pencil(addon, data):
    """Grease Pencil strokes are drawn from the material's Grease Pencil settings, never from a
    node tree: Generate Texture is refused before the job runs, nothing made or changed."""
    bpy.ops.wm.read_homefile(use_empty=True)
    settings()
    bpy.ops.object.grease_pencil_add(type="STROKE")
    pencil = bpy.context.object
    assert pencil.type == "GREASEPENCIL" and pencil.active_material.is_grease_pencil
    gp_material = pencil.active_material
    messages = []

    def refused(call, *fragments):
        before = datablocks()
        messages.append(expect_error(call, "Grease Pencil", *fragments))
        assert datablocks() == before, (before, datablocks())
        assert gp_material.node_tree is None or not any(
            n.type == "TEX_IMAGE" for n in gp_material.node_tree.nodes
        )

    refused(bpy.ops.paintbridge.generate_texture, f'"{pencil.name}"')
    # without a material: none is made for it
    pencil.data.materials.clear()
    refused(bpy.ops.paintbridge.generate_texture, f'"{pencil.name}"')
    assert len(pencil.data.materials) == 0
    # a Grease Pencil material named from a mesh
    mesh_object("Mesh")
    refused(
        lambda: bpy.ops.paintbridge.generate_texture(material_name=gp_material.name),
        f'material "{gp_material.name}"',
    )
    data["messages"] = messages


@check
def panels(addon, data):
    ui = addon.ui
    s = settings()
    session = bpy.context.window_manager.paintbridge
    session.server, session.running = "not running", False
    log = draw(ui.PAINTBRIDGE_PT_image.draw)
    names = [entry[1] for entry in log if entry[0] in ("prop", "operator")]
    for name in ("prompt", "negative_prompt", "model", "width", "height", "steps", "guidance"):
        assert name in names, name
    for name in ("strength", "seed_mode", "seed", "seamless", "mask_image"):
        assert name in names, name
    for idname in ("paintbridge.start_server", "paintbridge.generate", "paintbridge.inpaint"):
        assert idname in names, idname
    assert ("prop", "seed", True) in log  # FIXED: the seed can be typed
    assert ("operator", "paintbridge.generate", True) in log
    assert "paintbridge.cancel" not in names and not any("Last seed" in e[1] for e in log)
    # connected, a job running, a seed remembered, random seeds
    session.server, session.running, session.message = "connected", True, "Step 3 of 20"
    s.seed_mode, s.last_seed = "RANDOM", 123
    log = draw(ui.PAINTBRIDGE_PT_image.draw)
    names = [entry[1] for entry in log]
    assert "paintbridge.start_server" not in names
    assert ("prop", "seed", False) in log and ("operator", "paintbridge.generate", False) in log
    assert ("prop", "progress", True) in log and "paintbridge.cancel" in names
    assert ("label", "Last seed: 123") in log
    # the material panel: texture settings, Generate Texture, no strength
    session.running = False
    log = draw(ui.PAINTBRIDGE_PT_material.draw)
    names = [entry[1] for entry in log]
    assert "texture_seamless" in names and "strength" not in names
    assert ("operator", "paintbridge.generate_texture", True) in log
    # the menus and the preferences
    assert [e[1] for e in draw(ui.draw_image_menu) if e[0] == "operator"] == [
        "paintbridge.generate",
        "paintbridge.img2img",
        "paintbridge.inpaint",
    ]
    assert ("operator", "paintbridge.generate_texture", True) in draw(
        ui.draw_node_add_menu, node_editor("ShaderNodeTree", "OBJECT")
    )
    # only in an object's material tree: World and Line Style trees are not what it writes
    for shader_type in ("WORLD", "LINESTYLE"):
        assert draw(ui.draw_node_add_menu, node_editor("ShaderNodeTree", shader_type)) == []
    assert draw(ui.draw_node_add_menu, node_editor("GeometryNodeTree", "OBJECT")) == []
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    owner = types.SimpleNamespace(layout=LayoutStandIn(), bl_rna=prefs.bl_rna)
    type(prefs).draw(owner, bpy.context)
    assert [e[1] for e in owner.layout.log] == ["server_url", "token", "timeout", "autostart"]
    data["icons"] = len(LayoutStandIn.ICONS)


# --- what review 3 found in real Blender ---------------------------------------------------


def library_file(name, build):
    """Saves a .blend holding what `build()` makes and opens an empty file again (the add-on
    stays enabled); returns the library's path."""
    bpy.ops.wm.read_homefile(use_empty=True)
    build()
    path = os.path.join(os.environ["PB_TMP"], name)
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_homefile(use_empty=True)
    return path


def mesh_object(name, material=None):
    obj = bpy.data.objects.new(name, bpy.data.meshes.new(name))
    bpy.context.scene.collection.objects.link(obj)
    if material is not None:
        obj.data.materials.append(material)
    bpy.context.view_layer.objects.active = obj
    return obj


@check
def texture_linked(addon, data):
    """Generate Texture on linked data (or a library override) would be lost on save: refused
    before the job runs, nothing made."""

    def build():
        material = bpy.data.materials.new("LibMat")
        material.use_nodes = True
        mesh_object("LibObj", material)
        mesh_object("Bare")

    path = library_file("lib.blend", build)
    settings(width=64, height=64)
    with bpy.data.libraries.load(path, link=True) as (_src, dst):
        dst.materials, dst.objects = ["LibMat"], ["LibObj", "Bare"]
    linked_material = bpy.data.materials["LibMat"]
    linked_bare = bpy.data.objects["Bare"]
    bpy.context.scene.collection.objects.link(linked_bare)
    messages = []

    def refused(call, *fragments):
        before = datablocks()
        messages.append(expect_error(call, *fragments, "Make Local"))
        assert datablocks() == before, (before, datablocks())

    # a linked material: by name, and as a local object's active material
    refused(
        lambda: bpy.ops.paintbridge.generate_texture(material_name="LibMat"),
        'material "LibMat"',
        "linked from the library file",
    )
    mesh_object("Local", linked_material)
    refused(bpy.ops.paintbridge.generate_texture, 'material "LibMat"')
    # a linked object (and mesh) without material: a material would be added to linked data
    bpy.context.view_layer.objects.active = linked_bare
    refused(bpy.ops.paintbridge.generate_texture, '"Bare"', "linked from the library file")
    assert list(linked_bare.data.materials) == []
    # a local object whose mesh is linked
    local = bpy.data.objects.new("LocalOnLinked", linked_bare.data)
    bpy.context.scene.collection.objects.link(local)
    bpy.context.view_layer.objects.active = local
    refused(bpy.ops.paintbridge.generate_texture, 'mesh data "Bare"')
    # library overrides: of the material, and of an object whose mesh stays linked
    override = linked_material.override_create()
    assert override.override_library is not None and override.library is None
    mesh_object("Overridden", override)
    refused(bpy.ops.paintbridge.generate_texture, 'material "LibMat"', "library override")
    overridden = linked_bare.override_create(remap_local_usages=True)
    bpy.context.view_layer.objects.active = overridden
    refused(bpy.ops.paintbridge.generate_texture, '"Bare"')
    data["messages"] = messages
    # a local material still works
    mesh_object("Fine", bpy.data.materials.new("Fine"))
    image = run_and_take(bpy.ops.paintbridge.generate_texture)
    assert image["paintbridge"]["material"] == "Fine"


def render_scene(width, height, world_colour):
    """The scene set to render `width` x `height` px in Cycles at 1 sample: its camera and
    the world (`world_colour`) alone, for jobs through test:identity."""
    settings(model=IDENTITY, strength=1.0, steps=2)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    for obj in [o for o in scene.objects if o.type != "CAMERA"]:  # the world alone: no value
        bpy.data.objects.remove(obj)  # above what the view can show
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    if world.node_tree is None:  # (5.0: worlds always have nodes)
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs[0].default_value = world_colour
    return scene


@check
def render_result(addon, data):
    """Image to Image on the Render Result (after F12) reads the render as the Image Editor
    shows it (the scene's view transform and exposure), whatever the scene's output format,
    and leaves the scene's settings as they were. An image sequence or movie is refused with
    what to do; a missing file is named only when it is missing."""
    scene = render_scene(24, 16, (0.2, 0.3, 0.1, 1.0))
    scene.render.dither_intensity = 0.0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.exposure = 1.0  # twice as bright as the linear values
    output = scene.render.image_settings
    output.file_format = "OPEN_EXR"  # the user's choice: the add-on reads PNG all the same
    output.color_depth = "16"
    output.exr_codec = "PIZ"
    scenes = len(bpy.data.scenes)
    render = bpy.data.images.get("Render Result")
    if render is not None:  # no render yet: says to render first
        expect_error(lambda: bpy.ops.paintbridge.img2img(image_name=render.name), "F12")
    bpy.ops.render.render()
    render = bpy.data.images["Render Result"]
    assert tuple(render.size) == (0, 0)  # Blender gives no pixels for it
    snapshot = addon.images._values(output)
    made = run_and_take(bpy.ops.paintbridge.img2img, image_name="Render Result")
    assert tuple(made.size) == (24, 16), tuple(made.size)
    assert made["paintbridge"]["source_image"] == "Render Result"
    assert addon.images._values(output) == snapshot, "the output settings changed"
    assert len(bpy.data.scenes) == scenes and output.file_format == "OPEN_EXR"
    assert output.exr_codec == "PIZ" and output.color_depth == "16"
    assert [i.name for i in bpy.data.images if i.name.startswith("render")] == []
    # an output colour management override is the user's too: kept as it was, curve included,
    # while the render is read as the Image Editor shows it (the scene's view) all the same
    output.color_management = "OVERRIDE"
    view = output.view_settings
    view.view_transform, view.exposure, view.use_curve_mapping = "AgX", 2.5, True
    view.curve_mapping.curves[3].points.new(0.3, 0.6)
    output.display_settings.display_device = "sRGB"
    override = addon.images._output_override(output)
    assert override["view"]["view_transform"] == "AgX" and len(override["points"][3]) == 3
    with_override = run_and_take(bpy.ops.paintbridge.img2img, image_name="Render Result")
    assert addon.images._output_override(output) == override, "the output override changed"
    assert output.color_management == "OVERRIDE" and view.exposure == 2.5
    assert np.abs(as_srgb(with_override) - as_srgb(made)).max() <= 1 / 255
    output.color_management = "FOLLOW_SCENE"
    # the picture: the render's linear values (the EXR the scene's own settings save), doubled
    # by the exposure, sRGB-encoded by the Standard view
    reference = os.path.join(os.environ["PB_TMP"], "reference.exr")
    output.color_depth = "32"
    render.save_render(reference, scene=scene)
    linear = pixels(bpy.data.images.load(reference)).reshape(-1, 4)  # Blender's rows, as made's
    assert linear[:, :3].min() > 0.05, linear[0]
    got = as_srgb(made).reshape(-1, 4)
    want = srgb_encode(linear[:, :3] * 2)
    gap = np.abs(got[:, :3] - want)
    worst = int(gap.max(axis=1).argmax())
    assert gap.max() <= 2 / 255, (worst, got[worst] * 255, want[worst] * 255)
    assert np.all(got[:, 3] == 1.0)
    data["pixel"] = (got[0] * 255).round().tolist()
    # a multilayer EXR (how renders are often kept) has no `pixels` either: read as shown too
    if hasattr(output, "media_type"):  # Blender 5.0: a kind of file apart from its format
        output.media_type = "MULTI_LAYER_IMAGE"
    output.file_format = "OPEN_EXR_MULTILAYER"
    layered = os.path.join(os.environ["PB_TMP"], "layers.exr")
    render.save_render(layered, scene=scene)
    multilayer = bpy.data.images.load(layered)
    from_layers = run_and_take(bpy.ops.paintbridge.img2img, image_name=multilayer.name)
    assert multilayer.type == "MULTILAYER", multilayer.type  # known once loaded
    assert from_layers.colorspace_settings.name == "sRGB"  # read as shown (is_float is False)
    assert tuple(from_layers.size) == (24, 16)
    assert np.abs(as_srgb(from_layers) - as_srgb(made)).max() <= 1 / 255
    # inpaint reads it the same way (an opaque render: a mask image says where)
    mask = np.zeros((16, 24, 4), np.uint8)
    mask[..., 3] = 255
    mask[2:8, 3:12, :3] = 255
    bpy.context.scene.paintbridge.mask_image = byte_image("mask", 24, 16, mask)
    made = run_and_take(bpy.ops.paintbridge.inpaint, image_name="Render Result")
    assert tuple(made.size) == (24, 16)
    bpy.context.scene.paintbridge.mask_image = None
    # an image sequence: what to do, not "missing file"
    folder = os.path.join(os.environ["PB_TMP"], "frames")
    os.makedirs(folder)
    for frame in (1, 2):
        write_png(os.path.join(folder, f"frame_{frame:03d}.png"), pattern(8, 8, frame), 8)
    sequence = bpy.data.images.load(os.path.join(folder, "frame_001.png"))
    sequence.source = "SEQUENCE"
    message = expect_error(
        lambda: bpy.ops.paintbridge.img2img(image_name=sequence.name),
        "image sequence",
        "Save As",
    )
    assert "missing" not in message, message
    data["sequence"] = message
    # a file that is really missing is named
    gone = bpy.data.images.load(os.path.join(folder, "frame_002.png"), check_existing=False)
    os.remove(os.path.join(folder, "frame_002.png"))
    gone.reload()
    expect_error(lambda: bpy.ops.paintbridge.img2img(image_name=gone.name), "missing", "frame_002")


@check
def start_server_url(addon, data):
    """With a Server URL in the preferences, Start Server asks that server (where the jobs
    go), never the local one (which runs here) and never launches one."""
    session = bpy.context.window_manager.paintbridge
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    assert addon.connection.local_client_if_live() is not None  # the local server answers
    prefs.server_url = os.environ["PB_DEAD_URL"]
    for call in (
        bpy.ops.paintbridge.start_server,
        lambda: bpy.ops.paintbridge.start_server("INVOKE_DEFAULT"),
    ):
        session.server, session.server_detail = "unknown", ""
        message = expect_error(call, "Could not reach", os.environ["PB_DEAD_URL"])
        assert session.server == "not running", session.server
        assert os.environ["PB_DEAD_URL"] in session.server_detail, session.server_detail
    data["message"] = message
    # the UI's invoke path too (background mode would take `execute` anyway)
    reports = []
    op = types.SimpleNamespace(report=lambda level, text: reports.append((level, text)))
    op._check_named = types.MethodType(addon.operators.PAINTBRIDGE_OT_start_server._check_named, op)
    invoke = addon.operators.PAINTBRIDGE_OT_start_server.invoke
    assert invoke(op, bpy.context, None) == {"CANCELLED"} and not hasattr(op, "_launch")
    assert reports and "Could not reach" in reports[-1][1], reports
    # the named server answering: connected, with its health
    info = json.load(open(os.path.join(os.environ["PAINTBRIDGE_CONFIG_DIR"], "server.json")))
    prefs.server_url, prefs.token = info["url"], info["token"]
    assert bpy.ops.paintbridge.start_server() == {"FINISHED"}
    assert session.server == "connected" and "model" in session.server_detail
    # a wrong token: the real error, not "connected"
    prefs.token = "wrong"
    expect_error(bpy.ops.paintbridge.start_server)
    assert session.server == "error", session.server


def texture_job(ops, context, while_running, material_name=""):
    """Generate Texture through its modal path, calling while_running() once the job is
    submitted; returns the last report (level, text)."""
    driver = ModalDriver(ops.PAINTBRIDGE_OT_generate_texture, material_name=material_name)
    driver.op.summary = types.MethodType(ops.PAINTBRIDGE_OT_generate_texture.summary, driver.op)
    driver.invoke(context)
    while_running()
    answer = driver.tick_until_done(context)
    assert answer == {"FINISHED"}, (answer, driver.reports)
    return driver.reports[-1]


@check
def texture_target_renamed(addon, data):
    """The material renamed (or deleted) while Generate Texture runs: the texture still goes to
    it when renamed; when it is gone the image is kept and the report says so, no material is
    made for nothing."""
    ops = addon.operators
    context = bpy.context
    settings(width=64, height=64, prompt="moss")
    others = set(datablocks()["materials"])  # the startup file's
    material = bpy.data.materials.new("Mine")
    material.use_nodes = True
    mesh_object("Wall", material)

    def run(while_running, material_name=""):
        return texture_job(ops, context, while_running, material_name)

    before = datablocks()

    def rename():
        material.name = "Bricks"

    level, text = run(rename)
    assert level == "INFO", text
    after = datablocks()
    assert set(after["materials"]) == others | {"Bricks"}, after  # no new material
    (image,) = [bpy.data.images[n] for n in set(after["images"]) - set(before["images"])]
    assert image["paintbridge"]["material"] == "Bricks"
    assert node_image_name(material) == image.name
    # by name, renamed meanwhile
    level, text = run(lambda: setattr(material, "name", "Stones"), material_name="Bricks")
    assert set(datablocks()["materials"]) == others | {"Stones"}, (text, datablocks())
    assert level == "INFO", text
    # deleted while the job runs: the image is made and packed, the report says where it went
    bpy.context.view_layer.objects.active = bpy.data.objects["Wall"]
    before = datablocks()
    level, text = run(lambda: bpy.data.materials.remove(material))
    after = datablocks()
    assert set(after["materials"]) == others, after
    (name,) = set(after["images"]) - set(before["images"])
    image = bpy.data.images[name]
    assert image.packed_file is not None and image.use_fake_user
    assert image["paintbridge"]["target_gone"] == 'material "Stones"'
    assert level == "WARNING" and 'material "Stones" was deleted' in text, (level, text)
    assert context.window_manager.paintbridge.message == text
    data["deleted"] = text
    # an object without material, deleted while the job runs: no material made for nothing
    mesh_object("Plain")
    before = datablocks()
    level, text = run(lambda: bpy.data.objects.remove(bpy.data.objects["Plain"]))
    assert datablocks()["materials"] == before["materials"], datablocks()
    assert level == "WARNING" and 'object "Plain"' in text, text


@check
def texture_target_changes(addon, data):
    """Undo while Generate Texture runs (Blender replaces its data: the add-on had kept a
    collection from before and crashed Blender), and a material given to a bare object while
    the job runs (the texture goes into it, not into an extra slot no face uses)."""
    ops = addon.operators
    context = bpy.context
    settings(width=64, height=64, prompt="moss", steps=2)
    bpy.ops.ed.undo_push(message="start")
    material = bpy.data.materials.new("Mine")
    material.use_nodes = True
    mesh_object("Wall", material)
    bpy.ops.ed.undo_push(message="wall")

    def run(while_running):
        return texture_job(ops, context, while_running)

    def undo():
        bpy.data.materials["Mine"].diffuse_color = (1, 0, 0, 1)
        bpy.ops.ed.undo_push(message="colour")
        bpy.ops.ed.undo()

    level, text = run(undo)
    assert level == "INFO" and 'material "Mine"' in text, (level, text)
    assert node_image_name(bpy.data.materials["Mine"]) is not None
    # a bare object, then Material > New while the job runs
    plain = mesh_object("Plain")

    def add_material():
        made = bpy.data.materials.new("UserMat")
        made.use_nodes = True
        plain.active_material = made

    level, text = run(add_material)
    assert level == "INFO" and 'material "UserMat"' in text, (level, text)
    assert [slot.material.name for slot in plain.material_slots] == ["UserMat"]
    assert node_image_name(bpy.data.materials["UserMat"]) is not None


@check
def no_repeat(addon, data):
    """Repeat Last (Shift+R) and Adjust Last Operation (F9) take only REGISTER operators and
    re-run them through `execute`, which blocks: no job operator is registered. Each still is
    one undo step (UNDO)."""
    ops = addon.operators
    for cls in (
        ops.PAINTBRIDGE_OT_generate,
        ops.PAINTBRIDGE_OT_img2img,
        ops.PAINTBRIDGE_OT_inpaint,
        ops.PAINTBRIDGE_OT_generate_texture,
        ops.PAINTBRIDGE_OT_start_server,
    ):
        assert "REGISTER" not in cls.bl_options, (cls.bl_idname, cls.bl_options)
    settings(width=64, height=64)
    bpy.ops.ed.undo_push(message="before")
    mesh_object("Wall", bpy.data.materials.new("Wall"))
    bpy.ops.ed.undo_push(message="object")
    before = datablocks()
    # as the UI calls it: with undo (a script's call makes no undo step)
    assert bpy.ops.paintbridge.generate_texture("EXEC_DEFAULT", True) == {"FINISHED"}
    # what Repeat Last and F9 would pick: the last registered operator run
    wm = bpy.context.window_manager
    ran = [(op.bl_idname, sorted(op.bl_options)) for op in wm.operators]
    registered = [name for name, options in ran if "REGISTER" in options]
    assert not any("paintbridge" in name.lower() for name in registered), ran
    data["operators"] = ran
    made = datablocks()
    assert made != before
    (name,) = [i.name for i in bpy.data.images if i.get("paintbridge")]
    picture = pixels(bpy.data.images[name])
    bpy.ops.ed.undo()  # one step takes the texture (and its node) away
    assert datablocks() == before, (before, datablocks())
    material = bpy.data.materials["Wall"]
    assert material.node_tree is None or material.node_tree.nodes.get("Image Texture") is None
    bpy.ops.ed.redo()  # and gives it back, its packed pixels with it
    assert datablocks() == made
    image = bpy.data.images[name]
    assert image.packed_file is not None and np.array_equal(pixels(image), picture)


@check
def connected_detail(addon, data):
    """A job that reached the server clears an old error shown under "Server: connected"."""
    session = bpy.context.window_manager.paintbridge
    settings(width=64, height=64)
    session.server, session.server_detail = "not running", "Could not reach the server"
    assert bpy.ops.paintbridge.generate() == {"FINISHED"}
    assert session.server == "connected" and session.server_detail == "", session.server_detail
    # the modal path too
    session.server, session.server_detail = "error", "401 old"
    driver = ModalDriver(addon.operators.PAINTBRIDGE_OT_generate)
    driver.invoke(bpy.context)
    answer, deadline = {"PASS_THROUGH"}, time.time() + 120
    while answer == {"PASS_THROUGH"} and time.time() < deadline:
        time.sleep(0.1)
        answer = driver.op.modal(bpy.context, driver.event("TIMER"))
    assert answer == {"FINISHED"} and session.server_detail == "", session.server_detail
    # a health answer (connected before) stays
    session.server_detail = "0.1 on cpu, model test:tiny"
    assert bpy.ops.paintbridge.generate() == {"FINISHED"}
    assert session.server_detail == "0.1 on cpu, model test:tiny"


def main(argv):
    name, result_path, addon_dir, module = argv[:4]
    install, zip_path = (argv[4], argv[5]) if len(argv) > 5 else (None, None)
    result = {"ok": False, "error": None, "data": {}}
    try:
        addon = enable(addon_dir, module, install, zip_path)
        result["data"]["module"] = addon.__name__
        result["data"]["path"] = addon.__file__
        CHECKS[name](addon, result["data"])
        result["ok"] = True
    except BaseException:  # noqa: B036 - everything goes to the result file
        result["error"] = traceback.format_exc()
    with open(result_path, "w") as handle:
        json.dump(result, handle, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:])
