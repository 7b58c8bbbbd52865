"""What to read from a Krita document, what to send, and where the result goes.

Plain functions on Krita's own objects (Document, Node, Selection), no widgets and no network:
`plan_*` read pixels and build the job, `place_results` writes new layers. Call them on the GUI
thread. 8-bit RGBA pixelData is B, G, R, A; the wire is R, G, B, A.
"""

import json

from .hostkit import pixels, tasks
from .hostkit.geometry import Box, selection_bounds
from .params import layer_name

ANNOTATION = "paintbridge"  # document annotation: {"layers": {layer uuid: job parameters}}


class PlanError(ValueError):
    """The document, layer or selection cannot be used; the message says what to do."""


class Plan(object):
    """One job ready to send: `job` (protocol v1 dict), `box` (canvas coordinates the result
    covers), the document and the layer the result goes above, and the parameters to record."""

    def __init__(self, task, job, box, document, anchor, parameters):
        self.task = task
        self.job = job
        self.box = box
        self.document = document
        self.anchor = anchor
        self.parameters = parameters

    def __repr__(self):
        return "Plan(%s, %r)" % (self.task, self.box)


def canvas_box(document):
    return Box(0, 0, document.width(), document.height())


def check_layer(document, node):
    """Raises PlanError unless `node` is a layer of 8-bit RGBA pixels."""
    if document is None:
        raise PlanError("Open an image first.")
    if node is None:
        raise PlanError("Select a layer first.")
    if node.type().endswith("mask"):
        raise PlanError("The active node is a mask; select a layer.")
    model, depth = node.colorModel(), node.colorDepth()
    if (model, depth) != ("RGBA", "U8"):
        raise PlanError(
            "Paintbridge works on 8-bit RGB/Alpha layers; this layer is %s %s. Convert it with "
            "Image > Convert Image Color Space (RGB/Alpha, 8-bit integer)." % (model, depth)
        )


def _check_document(document):
    if document is None:
        raise PlanError("Open an image first.")
    if (document.colorModel(), document.colorDepth()) != ("RGBA", "U8"):
        raise PlanError(
            "Paintbridge works on 8-bit RGB/Alpha images; this one is %s %s. Convert it with "
            "Image > Convert Image Color Space (RGB/Alpha, 8-bit integer)."
            % (document.colorModel(), document.colorDepth())
        )


def _box(qrect):
    return Box(qrect.x(), qrect.y(), qrect.width(), qrect.height())


def read_rgba(node, box):
    """The node's pixels in `box` (canvas coordinates) as RGBA8, rows top to bottom."""
    data = bytes(node.pixelData(box.x, box.y, box.width, box.height))
    return pixels.bgra_to_rgba(data)


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
    layer (clipped to the canvas). The result covers the same box."""
    _check_document(document)
    check_layer(document, node)
    limit = canvas_box(document).intersect(_box(node.bounds()))
    if limit.is_empty:
        raise PlanError("The layer %r is empty here; paint something first." % node.name())
    selected = _selection(document)
    box = limit if selected is None else selected[2].intersect(limit)
    if box.is_empty:
        raise PlanError("The selection does not cover any pixel of the layer %r." % node.name())
    job = tasks.img2img_job(
        read_rgba(node, box),
        box.width,
        box.height,
        prompt=params.prompt,
        **params.job_parameters("img2img"),
    )
    return Plan("img2img", job, box, document, node, params.wire("img2img"))


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
        read_rgba(node, plan.box),
        plan.mask,
        plan.box.width,
        plan.box.height,
        prompt=params.prompt,
        **params.job_parameters("inpaint"),
    )
    return Plan("inpaint", job, plan.box, document, node, params.wire("inpaint"))


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
    """(parent, node to go above) for the new layer: above the anchor layer if it is still in
    the document, else on top of the image."""
    anchor = plan.anchor
    parent = anchor.parentNode() if anchor is not None else None
    if parent is None:
        return plan.document.rootNode(), None
    return parent, anchor


def place_results(plan, results):
    """New paint layers above the anchor, one per result, at the planned box; the source
    layer is not touched. Returns the new nodes (bottom to top)."""
    document = plan.document
    placed = tasks.placements(plan.box, results) if plan.task != "txt2img" else None
    if placed is None:  # txt2img: the server may round the size; place what came back
        placed = [
            tasks.Placement(Box(plan.box.x, plan.box.y, r.width, r.height), r.rgba) for r in results
        ]
    parent, above = _insert_point(plan)
    nodes = []
    for index, (placement, result) in enumerate(zip(placed, results)):
        name = layer_name(
            plan.task,
            plan.parameters.get("prompt"),
            result.seed,
            index if len(results) > 1 else None,
        )
        layer = document.createNode(name, "paintlayer")
        box = placement.box
        layer.setPixelData(pixels.rgba_to_bgra(placement.rgba), box.x, box.y, box.width, box.height)
        parent.addChildNode(layer, above)
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
