"""What to read from a Krita document, what to send, and where the result goes.

Plain functions on Krita's own objects (Document, Node, Selection), no widgets and no network:
`plan_*` read pixels and build the job, `place_results` writes new layers. Call them on the GUI
thread; `prepare_results`, which touches no Krita object, runs on the job's watch thread. RGBA
pixelData is B, G, R, A (8-bit: 4 bytes a pixel; 16-bit integer or float: 8; 32-bit float: 16);
the wire is 8-bit R, G, B, A. Models take and give 8-bit sRGB: pixels at another depth or in
another profile (the document's, or a layer's own) are converted on the way out and back (see
convert_bgra); selection masks, crops and alpha are handled at 8 bits in between.
"""

import json

from .hostkit import pixels, tasks
from .hostkit.errors import PaintbridgeError
from .hostkit.geometry import Box, crop_bytes, selection_bounds
from .hostkit.transport import Later
from .params import layer_name

ANNOTATION = "paintbridge"  # document annotation: {"layers": {layer uuid: job parameters}}
SRGB = "sRGB-elle-V2-srgbtrc.icc"  # Krita's sRGB profile, its default for 8-bit RGB/Alpha
SRGB8 = ("U8", SRGB)  # (depth, profile) of what models take and give
PIXEL_BYTES = {"U8": 4, "U16": 8, "F16": 8, "F32": 16}  # RGBA pixelData per pixel, by depth


class PlanError(ValueError):
    """The document, layer or selection cannot be used; the message says what to do."""


class PlaceError(PaintbridgeError):
    """Krita did not take a result layer; the message says what became of the result."""


class Plan(object):
    """One job ready to send: `job` (protocol v1 dict), `box` (canvas coordinates the result
    covers), the document and the node the result goes above, the parameters to record, and
    `mask` (box.width * box.height bytes, or None): the selection the result's alpha is
    multiplied by, so that it shows only inside the selection; `look` ((opacity 0-255, blending
    mode), or None for Krita's defaults): what the result layers get, the source layer's own when
    the pixels came from it, so that they show the way the source did. `canvas` and `space`
    (model, depth, profile) are the document's when the plan was made (see check_unchanged)."""

    def __init__(self, task, job, box, document, anchor, parameters, mask=None, look=None):
        self.task = task
        self.job = job
        self.box = box
        self.document = document
        self.anchor = anchor
        self.parameters = parameters
        self.mask = mask
        self.look = look
        self.canvas = (document.width(), document.height()) if document is not None else None
        self.space = color_space(document) if document is not None else None
        # where the source layer's pixels were: a result follows the layer if it is moved
        self.anchor_box = self.frame = None
        if anchor is not None and task != "txt2img":
            self.anchor_box, self.frame = _box(anchor.bounds()), document.currentTime()

    def __repr__(self):
        return "Plan(%s, %r)" % (self.task, self.box)


def canvas_box(document):
    return Box(0, 0, document.width(), document.height())


def color_space(document):
    """(model, depth, profile) of the document: ("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")."""
    return document.colorModel(), document.colorDepth(), document.colorProfile()


def check_layer(document, node):
    """Raises PlanError unless `node` is a layer of RGBA pixels (at any depth Krita has, in any
    profile: read_rgba converts them to 8-bit sRGB)."""
    if document is None:
        raise PlanError("Open an image first.")
    if node is None:
        raise PlanError("Select a layer first.")
    if node.type().endswith("mask"):
        raise PlanError("The active node is a mask; select a layer.")
    model, depth = node.colorModel(), node.colorDepth()
    if model != "RGBA" or depth not in PIXEL_BYTES:
        raise PlanError(
            "Paintbridge works on RGB/Alpha layers; the layer %r is %s. Convert it with "
            "Layer > Convert > Convert Layer Color Space (RGB/Alpha, 8-bit integer, profile %s)."
            % (node.name(), color_space_name(model, depth), SRGB)
        )


def _check_document(document):
    if document is None:
        raise PlanError("Open an image first.")
    if document.colorModel() != "RGBA" or document.colorDepth() not in PIXEL_BYTES:
        raise PlanError(
            "Paintbridge works on RGB/Alpha images; this one is %s. Convert it with "
            "Image > Convert Image Color Space (RGB/Alpha, 8-bit integer, profile %s)."
            % (color_space_name(document.colorModel(), document.colorDepth()), SRGB)
        )


COLOR_MODELS = {"RGBA": "RGB/Alpha", "GRAYA": "Grayscale/Alpha", "CMYKA": "CMYK/Alpha"}
COLOR_DEPTHS = {
    "U8": "8-bit integer",
    "U16": "16-bit integer",
    "F16": "16-bit float",
    "F32": "32-bit float",
}


def color_space_name(model, depth):
    """Krita's menu words for a colour space: ("GRAYA", "U16") -> "Grayscale/Alpha 16-bit
    integer" (Krita's own code for one it does not know)."""
    return "%s %s" % (COLOR_MODELS.get(model, model), COLOR_DEPTHS.get(depth, depth))


def check_unchanged(plan):
    """What changed in the document since `plan` was made. Raises PlaceError when the image was
    converted to another colour model than RGB/Alpha (its layers take other pixels); returns a
    note when it was converted to another depth or profile (the result is converted to them as
    it is placed) or when the canvas changed size (cropped, resized or scaled: the result goes
    where the job's area was, which may no longer be where the pixels are); else None."""
    document = plan.document
    space = color_space(document)
    if space[0] != plan.space[0]:
        raise PlaceError(
            "The image was converted to %s while the job ran, so the result was not added. "
            "Convert it back with Image > Convert Image Color Space (RGB/Alpha) to add results."
            % color_space_name(*space[:2])
        )
    notes = []
    if space != plan.space:
        notes.append(
            "The image was converted to %s (profile %s) while the job ran; the result was "
            "converted to it as well." % (color_space_name(*space[:2]), space[2])
        )
    canvas = tasks.canvas_changed(plan.canvas, (document.width(), document.height()), plan.box)
    notes += [canvas] if canvas else []
    return " ".join(notes) or None


def moved_by(plan):
    """(dx, dy) the source layer was moved by while the job ran (its pixels the same size in
    another place, as the Move tool leaves them), else None: its result then goes where the
    pixels went, not where they were."""
    anchor, before = plan.anchor, plan.anchor_box
    if before is None or before.is_empty or anchor.parentNode() is None:
        return None
    if plan.document.currentTime() != plan.frame:  # another frame's pixels, not a move
        return None
    now = _box(anchor.bounds())
    if (now.width, now.height) != (before.width, before.height) or (now.x, now.y) == (
        before.x,
        before.y,
    ):
        return None
    return now.x - before.x, now.y - before.y


def _box(qrect):
    return Box(qrect.x(), qrect.y(), qrect.width(), qrect.height())


def reads_projection(node):
    """True when read_rgba reads the node's projection rather than its own pixels."""
    return not (node.type() == "paintlayer" and not node.childNodes())


def content_box(document, node):
    """Where the node shows pixels, within the canvas. A layer of any kind with a filter or
    transform mask can show them beyond its own pixels (a blur's soft edge, a moved copy),
    which node.bounds() leaves out: then the projection's alpha over the canvas says."""
    canvas = canvas_box(document)
    own = canvas.intersect(_box(node.bounds()))
    masks = [child.type() for child in node.childNodes()]
    if not any(m in _REACHING_MASKS for m in masks):
        return own
    document.waitForDone()
    data = bytes(node.projectionPixelData(canvas.x, canvas.y, canvas.width, canvas.height))
    space = node_space(node)
    if len(data) != canvas.width * canvas.height * PIXEL_BYTES.get(space[0], 0):
        return own
    try:
        data = convert_bgra(data, canvas.width, canvas.height, space, ("U8", space[1]))
    except PlaceError as exc:
        raise PlanError(str(exc)) from None
    shown = selection_bounds(data[3::4], canvas.width, canvas.height)  # B,G,R,A: the alpha
    return Box(0, 0, 0, 0) if shown is None else shown


_REACHING_MASKS = ("filtermask", "transformmask")


def node_space(node):
    """(depth, profile) of the node's pixels: ("U16", "sRGB-elle-V2-g10.icc")."""
    return node.colorDepth(), node.colorProfile()


def convert_bgra(data, width, height, source, target):
    """RGBA pixelData (B, G, R, A) at the (depth, profile) `source`, ("U16",
    "sRGB-elle-V2-g10.icc"), converted to the (depth, profile) `target`, by Krita, in a scratch
    document that is closed at once (so that the conversion is not an undo step of the user's
    image). Going to 8 bits rounds, and values outside 0-1 (HDR, out of gamut) are clipped.
    Raises PlaceError when Krita does not convert them."""
    source, target = tuple(source), tuple(target)
    if source == target:
        return data
    from krita import Krita

    scratch = Krita.instance().createDocument(
        width, height, "paintbridge colour conversion", "RGBA", source[0], source[1], 72.0
    )
    try:
        node = scratch.createNode("pixels", "paintlayer")
        node.setPixelData(data, 0, 0, width, height)
        node.setColorSpace("RGBA", target[0], target[1])
        made = (scratch.colorDepth(), scratch.colorProfile())
        converted = made == source and node_space(node) == target
        out = bytes(node.pixelData(0, 0, width, height))
    finally:
        scratch.close()
    if not converted or len(out) != width * height * PIXEL_BYTES.get(target[0], 0):
        raise PlaceError(
            "Krita could not convert colours from %s %s to %s %s."
            % (
                COLOR_DEPTHS.get(source[0], source[0]),
                source[1],
                COLOR_DEPTHS.get(target[0], target[0]),
                target[1],
            )
        )
    return out


def read_rgba(document, node, box):
    """What the layer looks like in `box` (canvas coordinates) as sRGB RGBA8, rows top to bottom,
    before its own opacity and blending mode (see `look`): a paint layer's own pixels when it has
    no masks, else its projection, which its masks shape (a transparency mask hides, a filter
    mask filters; pixelData ignores both, so a hidden area would come back); the projection of
    any other layer (group, vector and text, clone, file, fill, filter), whose pixelData Krita
    gives empty or at one byte per pixel. Both are at the node's depth and in its profile (a
    layer can have its own, other than the image's), converted to 8-bit sRGB here for the model.
    The bytes are a hostkit Later: their B, G, R, A order is swapped (about 100 ms at 4096 px)
    on the job's thread, as it sends the job."""
    data = read_bgra8(document, node, box)
    return Later(lambda: pixels.bgra_to_rgba(data))


def read_bgra8(document, node, box):
    """read_rgba's pixels, converted to 8-bit sRGB now, in Krita's B, G, R, A order."""
    if not reads_projection(node):
        data = bytes(node.pixelData(box.x, box.y, box.width, box.height))
    else:
        document.waitForDone()  # the projection may still be catching up with the last change
        data = bytes(node.projectionPixelData(box.x, box.y, box.width, box.height))
    space = node_space(node)
    if len(data) != box.width * box.height * PIXEL_BYTES.get(space[0], 0):
        raise PlanError(
            "Paintbridge cannot read the pixels of the layer %r (a %s). Select a paint layer, "
            "or convert this one (Layer > Convert > Convert to Paint Layer)."
            % (node.name(), node.type())
        )
    try:
        return convert_bgra(data, box.width, box.height, space, SRGB8)
    except PlaceError as exc:
        raise PlanError(str(exc)) from None


def shows_any(alpha, mask=None):
    """True when some pixel has alpha above 0 (and, with `mask`, bytes of the same length, is
    selected there): as big integers, one bit per pixel, so a 4096 px layer takes milliseconds."""
    on = bytes([0] + [1] * 255)
    shown = int.from_bytes(alpha.translate(on), "little")
    if mask is None:
        return shown != 0
    return shown & int.from_bytes(bytes(mask).translate(on), "little") != 0


def look(node):
    """(opacity 0-255, blending mode, inherit alpha) of `node`: a result made from its pixels
    gets them, so that an unchanged result over what is below looks the way the node did (not
    100% Normal, and clipped to the layers below when the node was)."""
    return node.opacity(), node.blendingMode(), node.inheritAlpha()


def _selection(document):
    """(mask bytes, Box) of the document's selection, or None when nothing is selected."""
    selection = document.selection()
    if selection is None or selection.width() <= 0 or selection.height() <= 0:
        return None
    box = Box(selection.x(), selection.y(), selection.width(), selection.height())
    mask = bytes(selection.pixelData(box.x, box.y, box.width, box.height))
    bounds = selection_bounds(mask, box.width, box.height)
    if bounds is None:
        return None
    return mask, box, bounds.translate(box.x, box.y)


def plan_img2img(document, node, params):
    """img2img of the layer's pixels: the selection's bounds inside the layer, or the whole
    layer (clipped to the canvas). The result covers the same box; with a selection, its alpha
    is multiplied by the selection there (see prepare_results), so that only what is selected
    changes, partly where partly selected."""
    _check_document(document)
    check_layer(document, node)
    limit = content_box(document, node)
    if limit.is_empty:
        raise PlanError("The layer %r is empty here; paint something first." % node.name())
    selected = _selection(document)
    box = limit if selected is None else selected[2].intersect(limit)
    mask = None
    if selected is not None and not box.is_empty:
        sel_mask, sel_box = selected[0], selected[1]
        inside = box.translate(-sel_box.x, -sel_box.y)
        mask = crop_bytes(sel_mask, sel_box.width, sel_box.height, inside, 1, fill=0)
        box, mask = tasks.selected_part(mask, box) or (Box(0, 0, 0, 0), None)
    if not box.is_empty:
        tasks.check_sendable(box.width, box.height)
        data = read_bgra8(document, node, box)
    if box.is_empty or not shows_any(data[3::4], mask):  # B, G, R, A: the alpha
        if selected is None:
            raise PlanError("The layer %r is empty here; paint something first." % node.name())
        raise PlanError("The selection does not cover any pixel of the layer %r." % node.name())
    job = tasks.img2img_job(
        Later(lambda: pixels.bgra_to_rgba(data)),  # swapped on the job's thread
        box.width,
        box.height,
        prompt=params.prompt,
        **params.job_parameters("img2img"),
    )
    return Plan("img2img", job, box, document, node, params.wire("img2img"), mask, look(node))


def plan_fill(document, node, params):
    """Inpaint of the selection: only the context box around it is read and sent, with the
    selection (partly selected pixels included) as the mask."""
    _check_document(document)
    check_layer(document, node)
    selected = _selection(document)
    if selected is None:
        raise PlanError("Select the area to fill first (Fill Selection repaints the selection).")
    mask, mbox = selected[0], selected[1]
    plan = tasks.plan_fill_selection(
        mask, mbox.width, mbox.height, canvas_box(document), mask_x=mbox.x, mask_y=mbox.y
    )
    if plan is None:
        raise PlanError("The selection is outside the canvas; select part of the image.")
    job = tasks.inpaint_job(
        read_rgba(document, node, plan.box),
        plan.mask,
        plan.box.width,
        plan.box.height,
        prompt=params.prompt,
        **params.job_parameters("inpaint"),
    )
    return Plan("inpaint", job, plan.box, document, node, params.wire("inpaint"), look=look(node))


def plan_generate(document, node, params):
    """txt2img at the canvas size, or the selection's bounds (clipped to the canvas)."""
    _check_document(document)
    canvas = canvas_box(document)
    selected = _selection(document)
    box = canvas if selected is None else selected[2].intersect(canvas)
    if box.is_empty:
        raise PlanError("The selection is outside the canvas; select part of the image.")
    job = tasks.txt2img_job(
        params.prompt, box.width, box.height, **params.job_parameters("txt2img")
    )
    return Plan("txt2img", job, box, document, node, params.wire("txt2img"))


PLANNERS = {"img2img": plan_img2img, "inpaint": plan_fill, "txt2img": plan_generate}


def document_is_open(document):
    """True while `document` is still one of Krita's open documents."""
    from krita import Krita

    return any(open_doc == document for open_doc in Krita.instance().documents())


def _insert_point(plan):
    """(parent, node to go above) for the new layer: above the anchor layer (above the layer
    that owns it when the anchor is a mask: a layer takes only masks as children) if it is
    still in the document, else on top of the image."""
    anchor = plan.anchor
    while anchor is not None and anchor.type().endswith("mask"):
        anchor = anchor.parentNode()
    parent = anchor.parentNode() if anchor is not None else None
    if parent is None:
        return plan.document.rootNode(), None
    return parent, anchor


def _holds(parent, node):
    """True when `node` is one of `parent`'s children (addChildNode can say True and not add)."""
    uid = node.uniqueId()
    return any(child.uniqueId() == uid for child in parent.childNodes())


class Ready(object):
    """One result ready to become a layer: `box` (canvas coordinates), `bgra` (8-bit sRGB
    pixelData, its alpha multiplied by the plan's selection mask) and `seed`."""

    __slots__ = ("box", "bgra", "seed")

    def __init__(self, box, bgra, seed):
        self.box, self.bgra, self.seed = box, bgra, seed


def prepare_results(plan, results):
    """Each hostkit Result as a Ready, at the planned box (txt2img: its corner, at the size that
    came back, which the server may round). Only plain values of the plan are read, no Krita
    object: this runs on the job's watch thread. Raises ServerFault for a result whose size
    differs from the box's."""
    if plan.task == "txt2img":
        placed = [
            tasks.Placement(Box(plan.box.x, plan.box.y, r.width, r.height), r.rgba) for r in results
        ]
    else:
        placed = tasks.placements(plan.box, results, plan.mask)
    return [
        Ready(placement.box, pixels.rgba_to_bgra(placement.rgba), result.seed)
        for placement, result in zip(placed, results)
    ]


def place_results(plan, ready, offset=(0, 0)):
    """New paint layers above the anchor, one per result (a Ready, see prepare_results), at its
    box and with the plan's opacity and blending mode; the source layer is not touched. A result
    (8-bit sRGB) is converted to the new layer's depth and profile, the image's.
    Returns the new nodes (bottom to top); raises PlaceError when Krita does not take one."""
    document = plan.document
    parent, above = _insert_point(plan)
    nodes = []
    for index, result in enumerate(ready):
        name = layer_name(
            plan.task,
            plan.parameters.get("prompt"),
            result.seed,
            index if len(ready) > 1 else None,
        )
        layer = document.createNode(name, "paintlayer")
        box = result.box.translate(*offset)
        bgra = convert_bgra(result.bgra, box.width, box.height, SRGB8, node_space(layer))
        layer.setPixelData(bgra, box.x, box.y, box.width, box.height)
        if plan.look is not None:
            layer.setOpacity(plan.look[0])
            layer.setBlendingMode(plan.look[1])
            layer.setInheritAlpha(plan.look[2])
        parent.addChildNode(layer, above)
        if not _holds(parent, layer):
            document.refreshProjection()
            added = " (%d of %d added)" % (index, len(ready)) if len(ready) > 1 else ""
            raise PlaceError("Krita did not add the layer %r to the image%s." % (name, added))
        above = layer
        record_parameters(document, layer, dict(plan.parameters, seed=result.seed))
        nodes.append(layer)
    document.refreshProjection()
    return nodes


def recorded_parameters(document):
    """{layer uuid: parameters} kept in the document (saved in .kra files)."""
    try:
        raw = bytes(document.annotation(ANNOTATION)).decode("utf-8")
        data = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        data = {}
    layers = data.get("layers") if isinstance(data, dict) else None
    return layers if isinstance(layers, dict) else {}


def record_parameters(document, layer, parameters):
    """Keeps the job's parameters for `layer` in a document annotation, so they survive a save."""
    from PyQt5.QtCore import QByteArray

    layers = recorded_parameters(document)
    layers[layer.uniqueId().toString()] = dict(parameters, layer=layer.name())
    blob = json.dumps({"layers": layers}, sort_keys=True).encode("utf-8")
    document.setAnnotation(ANNOTATION, "paintbridge generation parameters", QByteArray(blob))
