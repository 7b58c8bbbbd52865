# ruff: noqa: UP004, UP010, UP031  -- Python 2.7, like the GIMP 2.10 plug-in it stands in for
"""STAND-IN for GIMP 2.10's `gimpfu` module, for tests only: NOT GIMP.

GIMP 2.10 with Python 2 cannot run on these machines, so the GIMP 2.10 plug-in is tested against
this module instead. It has the names the plug-in uses (register, main, gimp, pdb, constants,
layers with pixel regions, the selection channel), keeps pixels in memory the way GIMP's
8-bit pixel regions hand them out (rows top to bottom, bpp bytes a pixel), and records every
call in CALLS so a test can check what the plug-in asked GIMP to do. Python 2.7 and 3.
"""

from __future__ import absolute_import, division, print_function

CALLS = []  # (name, details) in call order
REGISTERED = {}  # procedure name -> dict of what register() got
MESSAGES = []  # what gimp.message showed

RGB, GRAY, INDEXED = 0, 1, 2
RGB_IMAGE, RGBA_IMAGE, GRAY_IMAGE, GRAYA_IMAGE, INDEXED_IMAGE, INDEXEDA_IMAGE = range(6)
NORMAL_MODE, MULTIPLY_MODE = 0, 3
LAYER_MODE_PASS_THROUGH = 61  # a layer group's own mode (GimpLayerMode, GIMP 2.10)
LAYER_MODE_NORMAL = 28  # GIMP 2.10's Normal; NORMAL_MODE (0) is its "Normal (legacy)"
EXPAND_AS_NECESSARY, CLIP_TO_IMAGE, CLIP_TO_BOTTOM_LAYER = 0, 1, 2
(PF_INT, PF_FLOAT, PF_STRING, PF_IMAGE, PF_DRAWABLE, PF_TOGGLE, PF_OPTION, PF_SLIDER) = range(8)
_BPP = {RGB_IMAGE: 3, RGBA_IMAGE: 4, GRAY_IMAGE: 1, GRAYA_IMAGE: 2, INDEXED_IMAGE: 1}
_BPP[INDEXEDA_IMAGE] = 2


def _record(_call, **details):
    CALLS.append((_call, details))


def register(
    proc_name,
    blurb,
    help,
    author,
    copyright,
    date,
    label,
    imagetypes,
    params,
    results,
    function,
    menu=None,
    domain=None,
    on_query=None,
    on_run=None,
):
    REGISTERED[proc_name] = {
        "blurb": blurb,
        "label": label,
        "menu": menu,
        "imagetypes": imagetypes,
        "params": [p[1] for p in params],
        "function": function,
    }
    _record("register", name=proc_name)


def main():
    _record("main")


def _to_rgba(data, bpp):
    out = bytearray()
    for i in range(0, len(data), bpp):
        px = bytearray(data[i : i + bpp])
        if bpp == 1:
            out += bytearray([px[0], px[0], px[0], 255])
        elif bpp == 2:
            out += bytearray([px[0], px[0], px[0], px[1]])
        elif bpp == 3:
            out += px + bytearray([255])
        else:
            out += px
    return out


class PixelRgn(object):
    """drawable.get_pixel_rgn(x, y, w, h, dirty, shadow): slices in drawable coordinates."""

    def __init__(self, drawable, x, y, w, h, dirty, shadow):
        if x < 0 or y < 0 or x + w > drawable.width or y + h > drawable.height:
            raise ValueError("pixel region %r outside the drawable" % ((x, y, w, h),))
        self.drawable, self.box, self.dirty, self.shadow = drawable, (x, y, w, h), dirty, shadow

    def _rows(self, key):
        xs, ys = key
        x0, y0, w, h = self.box
        if xs.start < x0 or ys.start < y0 or xs.stop > x0 + w or ys.stop > y0 + h:
            raise IndexError("slice %r outside the region %r" % (key, self.box))
        return xs.start, xs.stop, ys.start, ys.stop

    def __getitem__(self, key):
        x1, x2, y1, y2 = self._rows(key)
        d, bpp = self.drawable, self.drawable.bpp
        stride = d.width * bpp
        rows = [d.data[y * stride + x1 * bpp : y * stride + x2 * bpp] for y in range(y1, y2)]
        return bytes(bytearray().join(rows))

    def __setitem__(self, key, value):
        if not self.dirty:
            raise TypeError("this pixel region is read-only (dirty=False)")
        x1, x2, y1, y2 = self._rows(key)
        d, bpp = self.drawable, self.drawable.bpp
        row = (x2 - x1) * bpp
        if len(value) != row * (y2 - y1):
            raise ValueError("got %d bytes for a %d-byte region" % (len(value), row * (y2 - y1)))
        value = bytearray(value)
        stride = d.width * bpp
        for i, y in enumerate(range(y1, y2)):
            d.data[y * stride + x1 * bpp : y * stride + x2 * bpp] = value[i * row : (i + 1) * row]
        d.image._mutated("pixels", d)


class Drawable(object):
    def __init__(self, image, name, width, height, bpp):
        self.image, self.name, self.width, self.height, self.bpp = image, name, width, height, bpp
        self.offsets = (0, 0)
        self.parent = None
        self.visible = True
        self.removed = False
        self.data = bytearray(width * height * bpp)

    def get_pixel_rgn(self, x, y, w, h, dirty=True, shadow=False):
        _record("get_pixel_rgn", name=self.name, box=(x, y, w, h), dirty=dirty)
        return PixelRgn(self, x, y, w, h, dirty, shadow)

    def set_offsets(self, x, y):
        self.offsets = (x, y)
        self.image._mutated("offsets", self)

    def flush(self):
        _record("flush", name=self.name)

    def update(self, x, y, w, h):
        _record("update", name=self.name, box=(x, y, w, h))

    def rgba(self):
        return _to_rgba(self.data, self.bpp)


class Layer(Drawable):
    """A layer; `mask` a Channel (its layer mask) or None, shown when `apply_mask`. The stand-in
    keeps opacity, mode and the mask but composites (Image.flattened) without them."""

    def __init__(self, image, name, width, height, type, opacity=100, mode=NORMAL_MODE):
        # GIMP's own rule (app/core/gimpgrouplayer.c: "PASS_THROUGH mode is invalid for
        # regular layers"); a GroupLayer here is made Normal
        if mode == LAYER_MODE_PASS_THROUGH:
            raise RuntimeError("execution error: pass-through is for layer groups only")
        Drawable.__init__(self, image, name, width, height, _BPP[type])
        self.type, self.opacity, self.mode = type, float(opacity), mode
        self.mask, self.apply_mask = None, True
        _record("gimp.Layer", name=name, size=(width, height), type=type)


class GroupLayer(Layer):
    """A layer group, only as a layer's `parent` (its pixels locked or not): the stand-in's
    image stack is flat, and the plug-in must not put a layer into a locked group."""

    def __init__(self, image, name):
        Layer.__init__(self, image, name, image.width, image.height, RGBA_IMAGE)
        self.lock_content = False


class Channel(Drawable):
    """A channel or layer mask: a drawable that is not a layer."""

    def __init__(self, image, name, width, height):
        Drawable.__init__(self, image, name, width, height, 1)


class Image(object):
    def __init__(self, width, height, base_type=RGB):
        self.width, self.height, self.base_type = width, height, base_type
        self.layers = []  # top first
        self.selection = Drawable(self, "selection", width, height, 1)
        self.selection.image = self
        self.active_layer = None
        self.undo_depth = 0
        self.undo_groups = 0
        self.undo_enabled = True
        self.mutations = []  # (what, name, undo depth) for every change to this image
        self.deleted = False
        _record("gimp.Image", size=(width, height))

    def _mutated(self, what, item):
        if item is not self.selection and (item in self.layers or what == "insert"):
            self.mutations.append((what, item.name, self.undo_depth))

    def flattened(self):
        """RGBA of the visible layers over transparency (normal mode, straight alpha)."""
        out = bytearray(self.width * self.height * 4)
        for layer in reversed(self.layers):
            if not layer.visible:
                continue
            src, (ox, oy) = layer.rgba(), layer.offsets
            for y in range(layer.height):
                for x in range(layer.width):
                    cx, cy = x + ox, y + oy
                    if not (0 <= cx < self.width and 0 <= cy < self.height):
                        continue
                    s, d = (y * layer.width + x) * 4, (cy * self.width + cx) * 4
                    a = src[s + 3]
                    if a == 255:
                        out[d : d + 4] = src[s : s + 4]
                    elif a:
                        da = out[d + 3]
                        oa = a + da * (255 - a) // 255
                        for c in range(3):
                            num = src[s + c] * a * 255 + out[d + c] * da * (255 - a)
                            out[d + c] = (num // (oa * 255) if oa else 0) & 255
                        out[d + 3] = oa
        return bytes(out)


class _Gimp(object):
    Layer = Layer
    Image = Image

    def Display(self, image):
        _record("gimp.Display", size=(image.width, image.height))
        return object()

    def message(self, text):
        MESSAGES.append(text)
        _record("gimp.message", text=text)

    def progress_init(self, text=""):
        _record("gimp.progress_init", text=text)

    def progress_update(self, fraction):
        _record("gimp.progress_update", fraction=fraction)

    def displays_flush(self):
        _record("gimp.displays_flush")


class _Pdb(object):
    # pygimp's `gimp` module has no progress_set_text or progress_end (gimpmodule.c's method
    # table): plug-ins call these procedures
    def gimp_progress_set_text(self, text):
        _record("pdb.gimp_progress_set_text", text=text)

    def gimp_progress_end(self):
        _record("pdb.gimp_progress_end")

    def gimp_selection_bounds(self, image):
        sel = image.selection
        pts = [i for i, v in enumerate(bytearray(sel.data)) if v]
        if not pts:
            return (0, 0, 0, image.width, image.height)
        xs, ys = [i % image.width for i in pts], [i // image.width for i in pts]
        return (1, min(xs), min(ys), max(xs) + 1, max(ys) + 1)

    def gimp_item_is_layer(self, item):
        return isinstance(item, Layer)

    def gimp_item_is_valid(self, item):
        return not item.removed and not item.image.deleted

    def gimp_item_get_lock_content(self, item):
        return getattr(item, "lock_content", False)

    def gimp_image_is_valid(self, image):
        return not image.deleted

    def gimp_image_remove_layer(self, image, layer):
        _record("pdb.gimp_image_remove_layer", name=layer.name)
        image.layers.remove(layer)
        layer.removed = True

    def gimp_image_crop(self, image, new_width, new_height, offx, offy):
        """Modelled cheaply: the canvas takes the new size and the layers move by the offset;
        their pixels are not cut."""
        _record("pdb.gimp_image_crop", size=(new_width, new_height), offset=(offx, offy))
        image.width, image.height = new_width, new_height
        for layer in image.layers:
            x, y = layer.offsets
            layer.offsets = (x - offx, y - offy)

    def gimp_image_get_item_position(self, image, item):
        return image.layers.index(item)

    def gimp_image_insert_layer(self, image, layer, parent, position):
        _record("pdb.gimp_image_insert_layer", name=layer.name, position=position)
        if parent is not None:
            raise NotImplementedError("the stand-in has no layer groups")
        if layer.removed or layer.image is not image or layer in image.layers:
            raise RuntimeError("execution error: the layer cannot be inserted")
        image.layers.insert(position, layer)
        image._mutated("insert", layer)

    def gimp_image_undo_group_start(self, image):
        _record("pdb.gimp_image_undo_group_start")
        image.undo_depth += 1
        image.undo_groups += 1

    def gimp_image_undo_group_end(self, image):
        _record("pdb.gimp_image_undo_group_end")
        image.undo_depth -= 1

    def gimp_image_undo_disable(self, image):
        image.undo_enabled = False

    def gimp_image_undo_enable(self, image):
        image.undo_enabled = True

    def gimp_image_duplicate(self, image):
        _record("pdb.gimp_image_duplicate")
        copy = Image(image.width, image.height, image.base_type)
        for layer in image.layers:
            twin = Layer(copy, layer.name, layer.width, layer.height, layer.type)
            twin.data, twin.offsets = bytearray(layer.data), layer.offsets
            twin.visible = layer.visible
            copy.layers.append(twin)
        return copy

    def gimp_image_merge_visible_layers(self, image, merge_type):
        _record("pdb.gimp_image_merge_visible_layers", merge_type=merge_type)
        if merge_type != CLIP_TO_IMAGE:
            raise NotImplementedError("the stand-in merges CLIP_TO_IMAGE only")
        # GIMP 2.10: one layer over the visible layers' bounds cut to the canvas, not always
        # the canvas; with nothing visible the procedure fails, which pygimp raises
        boxes = []
        for layer in image.layers:
            if layer.visible:
                (x, y), w, h = layer.offsets, layer.width, layer.height
                left, top = max(x, 0), max(y, 0)
                right, bottom = min(x + w, image.width), min(y + h, image.height)
                if right > left and bottom > top:
                    boxes.append((left, top, right, bottom))
        if not boxes:
            raise RuntimeError("execution error")
        left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
        right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
        flat, stride = image.flattened(), image.width * 4
        merged = Layer(image, "merged", right - left, bottom - top, RGBA_IMAGE)
        rows = [flat[y * stride + left * 4 : y * stride + right * 4] for y in range(top, bottom)]
        merged.data = bytearray(b"".join(rows))
        merged.offsets = (left, top)
        image.layers = [merged]
        return merged

    def gimp_image_delete(self, image):
        _record("pdb.gimp_image_delete")
        image.deleted = True


gimp = _Gimp()
pdb = _Pdb()
