"""What every adapter does, host-agnostic and pure: build job requests, plan which pixels to
read for a selection, and say where results go.

An adapter's whole job for "fill the selection":

    plan = plan_fill_selection(mask, mask_w, mask_h, canvas_box, layer_box)
    if plan is None: tell the user to select something
    rgba = <read plan.box from the layer>        (plan.box is in canvas coordinates)
    results = client.run(inpaint_job(rgba, plan.mask, plan.box.width, plan.box.height,
                                     prompt=...))
    for p in placements(plan.box, results): <new layer at p.box.x, p.box.y with p.rgba>

Standard library only, Python 2.7 and 3.8+.
"""

from __future__ import absolute_import, division, print_function

import random
from collections import namedtuple

from .errors import RequestRejected, ServerFault
from .geometry import Box, context_box, crop_bytes, selection_bounds
from .pixels import image_payload, mask_alpha, mask_payload

# The largest image a server with default limits takes (the engine's Limits): bigger crops are
# refused before a byte is sent, not by the server halfway through a 100 MB upload.
MAX_PIXELS = 4096 * 4096
MAX_SIDE = 8192
# Fill Selection regenerates what is selected (partly where the selection is partial): the
# model's whole schedule from noise, not the protocol's default strength 0.75, which keeps a
# quarter of what was there (as diffusers' own inpaint pipeline defaults to 1.0).
FILL_STRENGTH = 1.0

# Job fields an adapter may pass besides task, prompt, width, height, image, mask (protocol v1).
JOB_PARAMETERS = (
    "negative_prompt",
    "model",
    "steps",
    "guidance",
    "strength",
    "seed",
    "count",
    "seamless",
    "scheduler",
)
SEAMLESS = ("none", "x", "y", "xy")

# Blender's and GIMP's int fields are 32-bit signed, the server's seeds go to 2**32 - 1: a
# plug-in with such a field picks its random seeds itself, in this range, so the seed a result
# is named with can be typed back into the field it came from.
MAX_FIELD_SEED = 2**31 - 1


def random_seed(rng=random):
    """A random seed in [0, MAX_FIELD_SEED]."""
    return rng.randint(0, MAX_FIELD_SEED)


def _job(task, prompt, params):
    unknown = sorted(set(params) - set(JOB_PARAMETERS))
    if unknown:
        raise ValueError(
            "unknown job parameter(s) %s; known: %s"
            % (", ".join(unknown), ", ".join(JOB_PARAMETERS))
        )
    seamless = params.get("seamless")
    if seamless is not None and seamless not in SEAMLESS:
        raise ValueError("seamless must be one of %s, got %r" % (", ".join(SEAMLESS), seamless))
    job = {"task": task, "prompt": prompt or ""}
    for key, value in params.items():
        if value is not None:  # None means "the model's default", like leaving it out
            job[key] = value
    return job


def txt2img_job(prompt, width=None, height=None, **params):
    """A txt2img request; width/height None take the model's native size."""
    if width is not None and height is not None:
        check_sendable(width, height, "The area to generate")
    job = _job("txt2img", prompt, params)
    if width is not None:
        job["width"] = width
    if height is not None:
        job["height"] = height
    return job


def too_large(width, height):
    """Whether a width x height image is larger than a server takes."""
    return width * height > MAX_PIXELS or max(width, height) > MAX_SIDE


def check_sendable(width, height, what="The area to send"):
    """Raises RequestRejected (code "too_large") for an image larger than a server takes."""
    if too_large(width, height):
        raise RequestRejected(
            "%s is %dx%d px; paintbridge works on at most %.1f million pixels "
            "(4096x4096) and %d px a side at once. Select a smaller area, or scale the image "
            "down and back up." % (what, width, height, MAX_PIXELS / 1e6, MAX_SIDE),
            code="too_large",
        )


def img2img_job(rgba, width, height, strength=None, prompt="", image_format="rgba8", **params):
    """An img2img request on RGBA8 pixels (rows top to bottom); strength in [0, 1] or None."""
    check_sendable(width, height)
    if strength is not None and not 0 <= strength <= 1:
        raise ValueError("strength must be in [0, 1], got %r" % (strength,))
    params["strength"] = strength
    job = _job("img2img", prompt, params)
    job["image"] = image_payload(rgba, width, height, image_format)
    return job


def inpaint_job(rgba, mask, width, height, prompt="", image_format="rgba8", **params):
    """An inpaint request: RGBA8 pixels and an 8-bit mask of the same size (255 = regenerate)."""
    check_sendable(width, height)
    job = _job("inpaint", prompt, params)
    job["image"] = image_payload(rgba, width, height, image_format)
    job["mask"] = mask_payload(mask, width, height, "png" if image_format == "png" else "a8")
    return job


class FillPlan(namedtuple("FillPlan", "box selection mask")):
    """What to send for a selection: `box` (canvas coordinates) is the crop to read from the
    layer and where the result goes; `selection` the selection's tight bounds inside it; `mask`
    the selection cropped to `box` (box.width * box.height bytes, 255 = regenerate)."""

    __slots__ = ()

    def box_in(self, origin):
        """`box` relative to a layer or buffer whose top-left is at origin (x, y) on the canvas."""
        return self.box.translate(-origin[0], -origin[1])


def selected_part(mask, box):
    """(Box, mask) of what is selected inside `box` (`mask`: its box.width * box.height bytes):
    the tight bounds of the selected pixels, and the mask cut to them; None when none is. The
    selection's bounding box cut to a layer may hold none of its pixels (two blobs either side
    of the layer) or far more than them."""
    box = Box(*box)
    tight = selection_bounds(mask, box.width, box.height)
    if tight is None:
        return None
    if (tight.width, tight.height) == (box.width, box.height):
        return box, mask
    return tight.translate(box.x, box.y), crop_bytes(mask, box.width, box.height, tight, 1)


def plan_fill_selection(
    selection_mask,
    mask_width,
    mask_height,
    canvas_box,
    layer_box=None,
    mask_x=0,
    mask_y=0,
    padding=None,
    multiple=8,
    min_size=64,
    max_pixels=MAX_PIXELS,
):
    """Plans an inpaint of the selection, or returns None when nothing is selected there.

    `selection_mask` is 8-bit (0 = not selected), mask_width x mask_height, its top-left at
    (mask_x, mask_y) in canvas coordinates. The crop is context_box(selection bounds, canvas
    intersected with the layer): only pixels the layer has are read, only around the selection,
    with less context around a selection so large that the crop would exceed `max_pixels`.
    Raises RequestRejected when the selection alone is larger than a server takes."""
    canvas_box = Box(*canvas_box)
    limit = canvas_box if layer_box is None else canvas_box.intersect(Box(*layer_box))
    bounds = selection_bounds(selection_mask, mask_width, mask_height)
    if bounds is None or limit.is_empty:
        return None
    region = bounds.translate(mask_x, mask_y).intersect(limit)
    if region.is_empty:
        return None
    inside = crop_bytes(
        selection_mask, mask_width, mask_height, region.translate(-mask_x, -mask_y), 1
    )
    part = selected_part(inside, region)
    if part is None:
        return None
    selected = part[0]
    box = context_box(selected, limit, padding, multiple, min_size, max_pixels)
    check_sendable(box.width, box.height)
    mask = crop_bytes(
        selection_mask, mask_width, mask_height, box.translate(-mask_x, -mask_y), 1, fill=0
    )
    return FillPlan(box, selected, mask)


class Placement(namedtuple("Placement", "box rgba")):
    """A result to put back: a new layer at (box.x, box.y) on the canvas, box.width x
    box.height RGBA8 pixels (rows top to bottom)."""

    __slots__ = ()


def canvas_changed(before, now, box):
    """The note for a canvas that changed size (cropped, resized or scaled) while the job ran,
    or None when it did not: `before` and `now` are (width, height) or None; the result goes
    where the job's area (`box`) was, which may no longer be over the pixels it was made from."""
    if before is None or now is None or tuple(now) == tuple(before):
        return None
    box = Box(*box)
    return (
        "The canvas changed size while the job ran (%dx%d, now %dx%d): the result was placed "
        "where the job's area was then (x %d, y %d, %dx%d); move it if the image moved."
        % (tuple(before) + tuple(now) + (box.x, box.y, box.width, box.height))
    )


def placements(box, results, mask=None):
    """One Placement per Result of a job sent for `box`, in the results' order, with `mask`
    (selection bytes over the box, 255 = selected), when given, multiplied into each one's
    alpha (mask_alpha: it shows only where the selection is); raises ServerFault for a result
    that does not have the box's size (protocol v1 answers the size sent)."""
    box = Box(*box)
    out = []
    for result in results:
        if (result.width, result.height) != (box.width, box.height):
            raise ServerFault(
                "The server sent a %dx%d result for a %dx%d image, so it cannot be placed; "
                "results must have the size sent. Update or restart the paintbridge server."
                % (result.width, result.height, box.width, box.height)
            )
        rgba = result.rgba if mask is None else mask_alpha(result.rgba, mask)
        out.append(Placement(box, rgba))
    return out
