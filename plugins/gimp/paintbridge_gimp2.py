#!/usr/bin/env python2
"""paintbridge for GIMP 2.10 (Python-Fu): Fill Selection, Generate and Image to Image under
Filters > Paintbridge, through the local paintbridge server.

Installed into GIMP 2.10's plug-ins folder with hostkit/ and paintbridge_gimpflow.py beside it
(`paintbridge plugins install --gimp2`). The flow is paintbridge_gimpflow, shared with the GIMP 3
plug-in; this file only reads and writes GIMP 2.10 images. Python 2.7.
"""

from __future__ import absolute_import, division, print_function

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paintbridge_gimpflow as flow  # noqa: E402
from gimpfu import (  # noqa: E402
    CLIP_TO_IMAGE,
    GRAY,
    GRAYA_IMAGE,
    INDEXED,
    NORMAL_MODE,
    PF_DRAWABLE,
    PF_FLOAT,
    PF_IMAGE,
    PF_INT,
    PF_OPTION,
    PF_SLIDER,
    PF_STRING,
    PF_TOGGLE,
    RGB,
    RGBA_IMAGE,
    gimp,
    main,
    pdb,
    register,
)
from hostkit.client import RESULT_KEPT, Cancelled, PaintbridgeError  # noqa: E402

try:
    from gimpfu import LAYER_MODE_NORMAL, LAYER_MODE_PASS_THROUGH  # noqa: E402
except ImportError:  # a gimpfu without the 2.10 layer modes' names
    LAYER_MODE_NORMAL = NORMAL_MODE
    LAYER_MODE_PASS_THROUGH = 61  # GimpLayerMode's value in GIMP 2.10
from hostkit.geometry import Box, crop_bytes  # noqa: E402
from hostkit.pixels import gray_to_rgba, rgb_to_rgba, rgba_to_gray  # noqa: E402

MENU = "<Image>/Filters/Paintbridge"
NEW_IMAGE_MENU = "<Image>/File/Create/Paintbridge"
AUTHOR = "paintbridge contributors"


def _to_rgba(data, bpp):
    """RGBA8 from a pixel region's bytes of 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 channels."""
    data = bytes(data)
    if bpp == 4:
        return data
    if bpp == 3:
        return rgb_to_rgba(data)
    if bpp == 2:
        return gray_to_rgba(data[0::2], data[1::2])
    if bpp == 1:
        return gray_to_rgba(data)
    raise flow.FlowError("Paintbridge works on 8-bit RGB and grayscale images (%d bpp)" % bpp)


def _from_rgba(rgba, bpp):
    """A pixel region's bytes (bpp 2 or 4) from RGBA8."""
    if bpp == 4:
        return rgba
    out = bytearray(len(rgba) // 2)
    out[0::2] = rgba_to_gray(rgba)
    out[1::2] = bytes(rgba)[3::4]
    return bytes(out)


def _read_raw(drawable, box):
    """The drawable's own bytes (bpp a pixel) of `box` in its own coordinates; what lies
    outside the drawable is zeros (transparent, as GIMP 3 reads it)."""
    bpp = drawable.bpp
    inside = box.intersect(Box(0, 0, drawable.width, drawable.height))
    if inside.is_empty:
        return bytes(bytearray(box.width * box.height * bpp))
    region = drawable.get_pixel_rgn(inside.x, inside.y, inside.width, inside.height, False, False)
    data = bytes(region[inside.x : inside.right, inside.y : inside.bottom])
    if inside == box:
        return data
    local = box.translate(-inside.x, -inside.y)
    return crop_bytes(data, inside.width, inside.height, local, bpp, fill=0)


def _read(drawable, box):
    """RGBA8 of `box` in the drawable's own coordinates (see _read_raw)."""
    return _to_rgba(_read_raw(drawable, box), drawable.bpp)


class Gimp2Host(flow.Host):
    """Reads and writes one GIMP 2.10 image for paintbridge_gimpflow."""

    def __init__(self, image, layer):
        self.image = image
        self.layer = layer

    def image_box(self):
        if self.image is None:
            return None
        return Box(0, 0, self.image.width, self.image.height)

    def is_indexed(self):
        return self.image.base_type == INDEXED

    def locked_group(self):
        group = self.layer.parent if self.layer is not None else None
        while group is not None:
            if pdb.gimp_item_get_lock_content(group):
                return group.name
            group = group.parent
        return None

    def image_is_open(self):
        return bool(pdb.gimp_image_is_valid(self.image))

    def layer_box(self):
        x, y = self.layer.offsets
        return Box(x, y, self.layer.width, self.layer.height)

    def selection_box(self):
        non_empty, x1, y1, x2, y2 = pdb.gimp_selection_bounds(self.image)
        if not non_empty or x2 <= x1 or y2 <= y1:
            return None
        return Box.from_edges(x1, y1, x2, y2)

    def read_selection(self, box):
        selection = self.image.selection
        region = selection.get_pixel_rgn(box.x, box.y, box.width, box.height, False, False)
        return bytes(region[box.x : box.right, box.y : box.bottom])

    def read_pixels(self, box, source):
        if source == "visible":
            copy = pdb.gimp_image_duplicate(self.image)
            try:
                pdb.gimp_image_undo_disable(copy)
                # Its layer covers the visible layers' bounds only, not always the canvas; with
                # nothing visible the call fails (pygimp: RuntimeError) or gives None.
                try:
                    merged = pdb.gimp_image_merge_visible_layers(copy, CLIP_TO_IMAGE)
                except RuntimeError:
                    merged = None
                if merged is None:
                    raise flow.FlowError(flow.NOTHING_VISIBLE)
                x, y = merged.offsets
                return _read(merged, box.translate(-x, -y))
            finally:
                pdb.gimp_image_delete(copy)
        origin = self.layer_box()
        return _read(self.layer, box.translate(-origin.x, -origin.y))

    def read_layer_mask(self, box):
        mask = self.layer.mask
        if mask is None or not self.layer.apply_mask:
            return None
        origin = self.layer_box()  # a layer mask lies exactly over its layer
        return _read_raw(mask, box.translate(-origin.x, -origin.y))

    def layer_look(self):
        mode = self.layer.mode
        if mode == LAYER_MODE_PASS_THROUGH:  # a group's own mode, which no layer can have
            mode = LAYER_MODE_NORMAL
        return {"opacity": self.layer.opacity, "mode": mode}

    def _new_layer(self, image, placement, name, look=None):
        """A layer for `placement`, filled and at its offsets but not yet in the image (so no
        lock on a group can stop its pixels being written, and no error leaves it empty)."""
        box = placement.box
        look = look or {}
        gray = image.base_type == GRAY
        layer = gimp.Layer(
            image,
            name,
            box.width,
            box.height,
            GRAYA_IMAGE if gray else RGBA_IMAGE,
            look.get("opacity", 100),
            # GIMP 2.10's Normal, not gimpfu's NORMAL_MODE: that is "Normal (legacy)",
            # which blends a feathered edge in another colour space than GIMP 3's Normal
            look.get("mode", LAYER_MODE_NORMAL),
        )
        layer.set_offsets(box.x, box.y)
        region = layer.get_pixel_rgn(0, 0, box.width, box.height, True, False)
        region[0 : box.width, 0 : box.height] = _from_rgba(placement.rgba, layer.bpp)
        layer.flush()  # inserting the layer then redraws its area
        return layer

    def add_layers(self, placements, name, look=None, on_top=False):
        image = self.image
        active = self.layer
        if on_top or (active is not None and not pdb.gimp_item_is_valid(active)):
            active = None  # the top of the image (the active layer was deleted during the job)
        parent = active.parent if active is not None else None
        position = pdb.gimp_image_get_item_position(image, active) if active is not None else 0
        layers = [self._new_layer(image, placement, name, look) for placement in placements]
        pdb.gimp_image_undo_group_start(image)
        try:
            for layer in layers:
                pdb.gimp_image_insert_layer(image, layer, parent, position)
        finally:
            pdb.gimp_image_undo_group_end(image)
        if layers:
            image.active_layer = layers[-1]
        gimp.displays_flush()
        return layers

    def notice(self, text):
        gimp.message("Paintbridge: %s" % (text,))

    def new_image(self, placements, name):
        first = placements[0].box
        image = gimp.Image(first.width, first.height, RGB)
        pdb.gimp_image_undo_disable(image)
        for placement in placements:
            pdb.gimp_image_insert_layer(image, self._new_layer(image, placement, name), None, 0)
        pdb.gimp_image_undo_enable(image)
        gimp.Display(image)
        return image


def _progress(fraction, text):
    # pygimp's `gimp` module has progress_init and progress_update only: the text and the end
    # are the PDB's, whose strings are UTF-8 bytes on Python 2
    if str is bytes and not isinstance(text, bytes):
        text = text.encode("utf-8")
    gimp.progress_update(fraction)
    pdb.gimp_progress_set_text(text)


def _run(command, image, layer, settings):
    """Runs a command; errors go to GIMP's message area (the image is left as it was)."""
    if layer is not None and not pdb.gimp_item_is_layer(layer):
        # A layer mask or channel being edited: the result must go into the layer stack
        if command != "generate":
            gimp.message("Paintbridge: %s" % flow.NOT_A_LAYER)
            return
        active = image.active_layer  # the mask's own layer
        layer = active if active is not None and pdb.gimp_item_is_layer(active) else None
    gimp.progress_init("Paintbridge: %s" % command)
    try:
        flow.run_command(command, Gimp2Host(image, layer), settings, progress=_progress)
    except Cancelled as exc:  # said only when the result may be in the server's history
        if exc.code == RESULT_KEPT:
            gimp.message("Paintbridge: %s" % (exc,))
    except PaintbridgeError as exc:
        gimp.message("Paintbridge: %s" % (exc,))
    finally:
        pdb.gimp_progress_end()


def _settings(common, **values):
    values.update(common)
    return flow.DEFAULTS._replace(**values)


def _common(prompt, negative, model, steps, guidance, seed, url, token):
    return {
        "prompt": prompt,
        "negative_prompt": negative,
        "model": model,
        "steps": int(steps),
        "guidance": float(guidance),
        "seed": int(seed),
        "server_url": url,
        "token": token,
    }


def fill_selection(
    image, drawable, prompt, negative, model, steps, guidance, seed, source, whole, url, token
):
    """Filters > Paintbridge > Fill Selection."""
    common = _common(prompt, negative, model, steps, guidance, seed, url, token)
    settings = _settings(common, source=flow.SOURCES[int(source)], whole_layer=bool(whole))
    _run("fill", image, drawable, settings)


def image_to_image(
    image, drawable, prompt, negative, model, steps, guidance, seed, strength, url, token
):
    """Filters > Paintbridge > Image to Image."""
    common = _common(prompt, negative, model, steps, guidance, seed, url, token)
    _run("img2img", image, drawable, _settings(common, strength=float(strength)))


def generate(
    image, drawable, prompt, negative, model, steps, guidance, seed, width, height, url, token
):
    """Filters > Paintbridge > Generate: a new layer of the image's size (or width x height)."""
    common = _common(prompt, negative, model, steps, guidance, seed, url, token)
    _run("generate", image, drawable, _settings(common, width=int(width), height=int(height)))


def generate_image(prompt, negative, model, steps, guidance, seed, width, height, url, token):
    """File > Create > Paintbridge > Generate Image: a new image."""
    common = _common(prompt, negative, model, steps, guidance, seed, url, token)
    _run("generate", None, None, _settings(common, width=int(width), height=int(height)))


PROMPTS = [
    (PF_STRING, "prompt", "Prompt", ""),
    (PF_STRING, "negative_prompt", "Negative prompt", ""),
    (PF_STRING, "model", "Model (empty = the server's default)", ""),
    (PF_INT, "steps", "Steps (0 = the model's default)", 0),
    (PF_FLOAT, "guidance", "Guidance (0 = the model's default)", 0.0),
    (PF_INT, "seed", "Seed (-1 = random)", -1),
]
SERVER = [
    (PF_STRING, "server_url", "Server URL (empty = the local server)", ""),
    (PF_STRING, "token", "Token of a remote server", ""),
]
IMAGE = [(PF_IMAGE, "image", "Image", None), (PF_DRAWABLE, "drawable", "Layer", None)]
SIZE = [
    (PF_INT, "width", "Width (0 = the image's)", 0),
    (PF_INT, "height", "Height (0 = the image's)", 0),
]


def _register(name, blurb, label, menu, imagetypes, params, function):
    register(
        name,
        blurb,
        blurb + " Talks to the paintbridge server (`paintbridge serve`).",
        AUTHOR,
        AUTHOR,
        "2025",
        label,
        imagetypes,
        params,
        [],
        function,
        menu=menu,
    )


_register(
    "python-fu-paintbridge-fill-selection",
    "Regenerate the selection from a prompt, as a new layer above the active one.",
    "_Fill Selection...",
    MENU,
    "*",  # on an indexed image the command says to convert it first
    IMAGE
    + PROMPTS
    + [
        (PF_OPTION, "source", "Source", 0, ["Active layer", "Visible image"]),
        (PF_TOGGLE, "whole_layer", "Whole layer if nothing is selected", False),
    ]
    + SERVER,
    fill_selection,
)
_register(
    "python-fu-paintbridge-img2img",
    "Redraw the active layer (or the selection within it) from a prompt, as a new layer.",
    "_Image to Image...",
    MENU,
    "*",  # on an indexed image the command says to convert it first
    IMAGE + PROMPTS + [(PF_SLIDER, "strength", "Strength", 0.75, (0.0, 1.0, 0.05))] + SERVER,
    image_to_image,
)
_register(
    "python-fu-paintbridge-generate",
    "Generate an image from a prompt into a new layer.",
    "_Generate...",
    MENU,
    "*",  # on an indexed image the command says to convert it first
    IMAGE + PROMPTS + SIZE + SERVER,
    generate,
)
_register(
    "python-fu-paintbridge-generate-image",
    "Generate a new image from a prompt.",
    "_Generate Image...",
    NEW_IMAGE_MENU,
    "",
    PROMPTS + SIZE + SERVER,
    generate_image,
)

if __name__ == "__main__":
    main()
