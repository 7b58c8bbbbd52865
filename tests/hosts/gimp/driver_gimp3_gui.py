"""Batch driver run INSIDE GIMP 3's GUI (gimp-3.0 --batch-interpreter=python-fu-eval -b -, on
Xvfb), for what batch mode alone cannot show: that Fill Selection is ONE undo step (there is no
PDB call to undo) and that the dialog's values are remembered (GIMP saves last values only after
an INTERACTIVE run, whose dialog someone must accept).

The keyboard is the test's (test_gimp3_ui.py, with xdotool): when the driver needs a key pressed
it writes {"n": number, "action": ...} to CONFIG["request"] and waits. Actions: "undo" (Ctrl+Z
in the image window), "accept" (Return in the Paintbridge dialog). Facts go to CONFIG["result"]
as JSON, each step {"ok": true, ...} or {"ok": false, "error": traceback}.

GIMP's own Python (Python 3, PyGObject); standard library only.
"""

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
FILL = "paintbridge-fill-selection"
SERVER = {"server-url": CONFIG["url"], "token": CONFIG["token"]}
results = {}
requests = [0]


def save():
    with open(CONFIG["result"], "w") as handle:
        json.dump(results, handle, indent=1, sort_keys=True)


def step(name):
    def wrap(func):
        try:
            facts = func() or {}
            facts["ok"] = True
        except Exception:
            facts = {"ok": False, "error": traceback.format_exc()}
        results[name] = facts
        save()
        return func

    return wrap


def ask(action):
    """Asks the test to press keys (see the module's docstring)."""
    requests[0] += 1
    with open(CONFIG["request"] + ".tmp", "w") as handle:
        json.dump({"n": requests[0], "action": action}, handle)
    os.rename(CONFIG["request"] + ".tmp", CONFIG["request"])


def wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def new_image():
    """A displayed 64x64 RGB image with one patterned layer and a rectangle selected."""
    image = Gimp.Image.new(64, 64, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, "paint", 64, 64, Gimp.ImageType.RGB_IMAGE, 100, 0)
    image.insert_layer(layer, None, 0)
    data = bytearray(64 * 64 * 4)
    for i in range(64 * 64):
        x, y = i % 64, i // 64
        data[4 * i : 4 * i + 4] = bytes([(x * 7 + y) % 256, (y * 5) % 256, (x * y) % 256, 255])
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, 64, 64), RGBA, bytes(data))
    buffer.flush()
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 12, 10, 30, 24)
    display = Gimp.Display.new(image)
    Gimp.displays_flush()
    return image, layer, display


def pixels(image):
    """The visible image as RGBA bytes."""
    copy = image.duplicate()
    merged = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    rect = Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height())
    data = bytes(merged.get_buffer().get(rect, 1.0, RGBA, Gegl.AbyssPolicy.NONE))
    copy.delete()
    return data


def selection(image):
    return list(Gimp.Selection.bounds(image))[-5:]


def run(image, layer, run_mode, **args):
    """Runs Fill Selection; (status nick, error, names of the layers it added)."""
    procedure = PDB.lookup_procedure(FILL)
    config = procedure.create_config()
    config.set_property("run-mode", run_mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    for key, value in args.items():
        config.set_property(key, value)
    before = list(image.get_layers())
    values = procedure.run(config)
    status = values.index(0)
    failed = status != Gimp.PDBStatusType.SUCCESS and values.length() > 1
    error = values.index(1) if failed else None
    added = [item.get_name() for item in image.get_layers() if item not in before]
    return status.value_nick, error, added


@step("one_undo_step")
def _one_undo_step():
    image, layer, display = new_image()
    before, selected = pixels(image), selection(image)
    image.clean_all()
    mode = Gimp.RunMode.NONINTERACTIVE
    status, error, added = run(image, layer, mode, prompt="undo me", steps=2, **SERVER)
    facts = {"status": status, "error": error, "added": added}
    facts["changed_by_fill"] = pixels(image) != before
    facts["layers_after_fill"] = len(image.get_layers())
    ask("undo")
    facts["undone"] = wait_for(lambda: len(image.get_layers()) == 1)
    time.sleep(1.0)  # a second undo step, were there one, would have no key press to run it
    facts["layers_after_undo"] = len(image.get_layers())
    facts["pixels_restored"] = pixels(image) == before
    # the step before the fill (selecting the rectangle) is still there: exactly one was undone
    facts["selection_kept"] = selection(image) == selected
    display.delete()
    return facts


@step("remembered")
def _remembered():
    image, layer, display = new_image()
    chosen = {
        "prompt": "a remembered tower",
        "seed": 4321,
        "model": "test:identity",
        "steps": 2,
        **SERVER,
    }
    ask("accept")  # the dialog opens with these values (nothing is remembered yet)
    first = run(image, layer, Gimp.RunMode.INTERACTIVE, **chosen)
    # what GIMP saved of that run (the image's parasites, kept in the .xcf, and the plug-in
    # settings files) holds no token; the runs below work with the one hostkit kept
    token = CONFIG["token"].encode()
    parasites = [image.get_parasite(name) for name in image.get_parasite_list()]
    in_image = [p.get_name() for p in parasites if p is not None and token in bytes(p.get_data())]
    folder = os.path.join(Gimp.directory(), "plug-in-settings")
    saved = (
        [os.path.join(folder, name) for name in os.listdir(folder)] if os.path.isdir(folder) else []
    )
    in_files = [path for path in saved if token in open(path, "rb").read()]
    again = run(image, layer, Gimp.RunMode.WITH_LAST_VALS)
    # a script's run (NONINTERACTIVE) leaves what the dialog remembers alone, as GIMP intends
    script = run(image, layer, Gimp.RunMode.NONINTERACTIVE, **dict(chosen, prompt="a script"))
    display.delete()
    other, other_layer, other_display = new_image()
    elsewhere = run(other, other_layer, Gimp.RunMode.WITH_LAST_VALS)
    other_display.delete()
    return {
        "interactive": first,
        "same_image": again,
        "script": script,
        "other_image": elsewhere,
        "parasites": [p.get_name() for p in parasites if p is not None],
        "token_in_image": in_image,
        "token_in_settings_files": in_files,
        "settings_files": saved,
    }


@step("remembered_after_failure")
def _remembered_after_failure():
    """An interactive run that fails after its dialog was accepted (a layer mask is active: the
    plug-in says to pick a layer) on an image with no record yet: GIMP records the dialog's
    values all the same (the image's parasite), and the message reaches the user."""
    Gimp.message_set_handler(Gimp.MessageHandlerType.CONSOLE)  # into GIMP's log, not a dialog
    image, layer, display = new_image()
    mask = layer.create_mask(Gimp.AddMaskType.WHITE)
    layer.add_mask(mask)
    before = list(image.get_parasite_list())
    ask("accept")  # the dialog shows the values remembered from the step above
    status, error, added = run(image, mask, Gimp.RunMode.INTERACTIVE)
    parasites = [image.get_parasite(name) for name in image.get_parasite_list()]
    on_image = [bytes(p.get_data()).decode("utf-8", "replace") for p in parasites if p]
    display.delete()
    return {
        "status": status,
        "error": error,
        "added": added,
        "parasites_before": before,
        "image_record": on_image,
    }


results["finished"] = True
save()
