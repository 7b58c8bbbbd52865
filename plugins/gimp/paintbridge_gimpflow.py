"""The GIMP flow shared by the GIMP 3 and GIMP 2.10 plug-ins: what to read, what to send, where
the new layer goes. No GIMP import here: each plug-in passes a `host` object that reads and
writes its image (see `Host`), so both plug-ins run the same three commands.

Standard library + hostkit only; Python 2.7 (GIMP 2.10) and 3.8+ (GIMP 3).
"""

from __future__ import absolute_import, division, print_function

from collections import namedtuple

from hostkit.client import (
    Client,
    PaintbridgeError,
    ServerFault,
    kept_in_history,
    not_used,
)
from hostkit.discovery import remember_token, remembered_token
from hostkit.geometry import Box
from hostkit.pixels import mask_alpha
from hostkit.tasks import (
    FILL_STRENGTH,
    MAX_PIXELS,
    MAX_SIDE,
    canvas_changed,
    img2img_job,
    inpaint_job,
    placements,
    plan_fill_selection,
    random_seed,
    selected_part,
    too_large,
    txt2img_job,
)

SOURCES = ("layer", "visible")
DEFAULT_SIZE = 512  # txt2img size when there is no image to take it from
LAYER_PREFIX = "Paintbridge"
NOTHING_VISIBLE = "Nothing is visible: show a layer, or use the active layer."
NOT_A_LAYER = "Select a layer first (not a channel or a layer mask)."
INDEXED = (
    "This image is indexed (a palette image): Paintbridge works on RGB and grayscale images. "
    "Convert it first with Image > Mode > RGB, then run the command again."
)


class Settings(
    namedtuple(
        "Settings",
        "prompt negative_prompt model steps guidance strength seed source whole_layer "
        "width height server_url token",
    )
):
    """What the user chose. GIMP's own "unset" values are accepted and mean the model's
    default: model "", steps 0, guidance 0, seed -1, width/height 0 (the image's size).
    source: "layer" (the active layer) or "visible" (the visible image). whole_layer: with no
    selection, regenerate the whole layer instead of failing. server_url "" = the local server
    found through server.json."""

    __slots__ = ()


DEFAULTS = Settings(
    prompt="",
    negative_prompt="",
    model="",
    steps=0,
    guidance=0.0,
    strength=0.75,
    seed=-1,
    source="layer",
    whole_layer=False,
    width=0,
    height=0,
    server_url="",
    token="",
)


class FlowError(PaintbridgeError):
    """Something about the image or the settings stops the command before anything is sent."""

    default_code = "invalid_input"


class NoSelection(FlowError):
    """Fill Selection needs a selection that touches the layer."""

    default_code = "no_selection"


class ImageClosed(FlowError):
    """The image was closed while its job ran: the result is only in the server's history."""

    default_code = "image_closed"


class Host(object):
    """What a plug-in implements for the flow. Boxes are in image (canvas) coordinates.

    image_box()              Box(0, 0, image width, image height), or None with no image
    layer_box()              the active layer's Box (its offsets and size)
    selection_box()          the selection's bounding Box, or None when nothing is selected
    read_selection(box)      box.width * box.height bytes of the selection (0-255)
    is_indexed()             the image is indexed (a palette image)
    locked_group()           the name of the layer group holding the active layer (its parent
                             or one above) whose pixels are locked, or None: the new layer
                             would go into it
    read_pixels(box, source) RGBA8 bytes of box: from the active layer ("layer", transparent
                             where the layer has no pixels) or the visible image ("visible")
    read_layer_mask(box)     the active layer's mask over box (one byte a pixel, 255 = shown)
                             when it has one that is applied, else None
    layer_look()             the active layer's opacity, mode... as add_layers takes them
    image_is_open()          the image is still open (the user may close it during the job)
    add_layers(placements, name, look, on_top) one new layer per Placement above the active
                             layer (at the top of the image when that layer is gone, or when
                             `on_top`: a result of the visible image), all in one undo
                             step, with `look` (from layer_look) or Normal 100%; a layer is
                             filled before it goes into the image, so an error leaves none
                             half-made; returns the new layers
    new_image(placements, name)  a new image holding them (Generate with no image open)
    notice(text)             shows text in GIMP's message area (the command went on)
    """


def job_parameters(settings):
    """The job fields for `settings`, with GIMP's "unset" values (0, "") as None and seed -1 as
    a random seed the Seed field can hold (so the one in the layer's name can be typed back)."""
    seed = settings.seed if settings.seed is not None and settings.seed >= 0 else random_seed()
    return {
        "prompt": settings.prompt or "",
        "negative_prompt": settings.negative_prompt or None,
        "model": settings.model or None,
        "steps": settings.steps if settings.steps and settings.steps > 0 else None,
        "guidance": settings.guidance if settings.guidance and settings.guidance > 0 else None,
        "seed": seed,
    }


def connect(settings, timeout=30):
    """The hostkit Client: the URL and token in the settings, else the local server (started
    by hostkit through hostkit.json if it is not running)."""
    if settings.server_url:
        # GIMP 3 keeps no token in its saved settings (they go into .xcf files): the last one
        # typed for this server is kept by hostkit, readable by this user only
        if settings.token:
            remember_token(settings.server_url, settings.token)
        token = settings.token or remembered_token(settings.server_url)
        return Client(settings.server_url, token or None, timeout=timeout, token_source=None)
    return Client.discover(timeout=timeout)


def layer_name(command, settings, seed=None):
    """The new layer's name: "Paintbridge fill: a red door (seed 42)", prompt cut at 40
    characters (GIMP 2.10's Python-Fu passes text as UTF-8 bytes: cut as characters, not in the
    middle of one, and given back as UTF-8 bytes)."""
    prompt = settings.prompt or ""
    as_bytes = isinstance(prompt, bytes)
    if as_bytes:
        prompt = prompt.decode("utf-8", "replace")
    prompt = prompt.strip().replace("\n", " ")
    if len(prompt) > 40:
        prompt = prompt[:39] + "..."
    name = "%s %s: %s" % (LAYER_PREFIX, command, prompt or "(no prompt)")
    if seed is not None:
        name += " (seed %s)" % (seed,)
    return name.encode("utf-8") if as_bytes else name


def _run(client, job, progress, should_cancel):
    """(job id, results). The job is sent and followed from hostkit's JobWatch thread; this one
    shows its progress (the upload, the queue, the steps) and asks should_cancel() every
    50 ms, so GIMP's progress window keeps answering and Cancel works during the upload too."""

    def on_status(status, text):
        if progress is not None:
            progress(status.fraction, text)

    watch = client.watch(job)
    results = watch.follow(on_status, should_cancel)
    return watch.id, results


def check_image(host, on_top=False):
    """Stops before any job on an image the result could not go into: an indexed one, or a
    layer group with locked pixels that would hold the new layer (`on_top`: it goes at the top
    of the image, in no group)."""
    if host.image_box() is None:
        return
    if host.is_indexed():
        raise FlowError(INDEXED)
    group = None if on_top else host.locked_group()
    if group is not None:
        raise FlowError(
            'The new layer would go into the layer group "%s", whose pixels are locked. '
            "Unlock them (the group's Lock pixels in the Layers dialog), or select a layer "
            "outside the group, then run the command again." % (group,)
        )


def read_source(host, box, source):
    """RGBA8 of box as the source shows it: the active layer with its alpha times its layer
    mask (when it has one that is applied), or the visible image."""
    rgba = host.read_pixels(box, source)
    if source == "layer":
        mask = host.read_layer_mask(box)
        if mask is not None:
            rgba = mask_alpha(rgba, mask)
    return rgba


def _layer_limit(host, settings, sources=("layer",)):
    """The part of the canvas the command works on: the canvas, cut to the active layer when
    the source is the layer (pixels outside a layer do not exist). `sources`: those the
    command offers (Fill Selection: the visible image too)."""
    canvas = host.image_box()
    if settings.source == "visible":
        return canvas, canvas, None
    layer = host.layer_box()
    limit = canvas.intersect(layer)
    if limit.is_empty:
        other = " or pick 'visible image' as the source" if "visible" in sources else ""
        raise FlowError(
            "The active layer lies outside the canvas; move it onto the canvas%s." % other
        )
    return canvas, limit, layer


class Prepared(namedtuple("Prepared", "box job mask from_layer")):
    """A job ready to send: `box` is where its result goes (image coordinates); `mask`
    (selection bytes over box, or None) is applied to img2img results' alpha; `from_layer`:
    the pixels came from the active layer, so the new layer takes its opacity and mode."""

    __slots__ = ()


def prepare_fill(host, settings):
    """Fill Selection: the crop around the selection (hostkit's context box) and its mask."""
    if settings.source not in SOURCES:
        raise FlowError("source must be one of %s, got %r" % (", ".join(SOURCES), settings.source))
    canvas, limit, layer = _layer_limit(host, settings, SOURCES)
    selection = host.selection_box()
    region = selection.intersect(limit) if selection is not None else None
    plan = None
    if region is not None and not region.is_empty:
        mask = host.read_selection(region)
        plan = plan_fill_selection(
            mask, region.width, region.height, canvas, layer, region.x, region.y
        )
    if plan is None and selection is not None:  # not "nothing selected": whole_layer is not
        raise FlowError(  # what the user meant then, nor a question to ask
            "The selection does not touch the active layer. Select part of the layer, or "
            "select the layer the selection is on, then run Fill Selection again."
        )
    if plan is None:
        if not settings.whole_layer:
            raise NoSelection(
                "Nothing is selected on the active layer. Select the area to regenerate "
                "(feathered edges blend), or allow regenerating the whole layer."
            )
        full = b"\xff" * (limit.width * limit.height)
        plan = plan_fill_selection(full, limit.width, limit.height, canvas, layer, limit.x, limit.y)
    rgba = read_source(host, plan.box, settings.source)
    params = job_parameters(settings)
    params["strength"] = FILL_STRENGTH
    job = inpaint_job(rgba, plan.mask, plan.box.width, plan.box.height, **params)
    return Prepared(plan.box, job, None, settings.source == "layer")


def prepare_img2img(host, settings):
    """Image to Image: the active layer, or the selection's bounding box within it."""
    if not 0 <= settings.strength <= 1:
        raise FlowError("strength must be in [0, 1], got %r" % (settings.strength,))
    _canvas, limit, _layer = _layer_limit(host, settings)
    selection = host.selection_box()
    mask = None
    box = limit
    if selection is not None:
        box = selection.intersect(limit)
        part = None if box.is_empty else selected_part(host.read_selection(box), box)
        if part is None:
            raise NoSelection(
                "The selection does not touch the active layer. Select part of the layer, or "
                "select none to use the whole layer."
            )
        box, mask = part
    rgba = read_source(host, box, settings.source)
    params = job_parameters(settings)
    job = img2img_job(rgba, box.width, box.height, strength=settings.strength, **params)
    return Prepared(box, job, mask, settings.source == "layer")


def generate_size(host, settings):
    """txt2img size: the chosen width/height, else the image's, else DEFAULT_SIZE."""
    image = host.image_box()
    width = settings.width or (image.width if image is not None else DEFAULT_SIZE)
    height = settings.height or (image.height if image is not None else DEFAULT_SIZE)
    return width, height


def prepare_generate(host, settings):
    """Generate: txt2img at the chosen size, placed at the canvas's top-left."""
    width, height = generate_size(host, settings)
    if too_large(width, height):
        raise FlowError(
            "Generate makes %dx%d px here (%s), more than paintbridge makes at once (%.1f "
            "million pixels, 4096x4096, and %d px a side): set Width and Height in the dialog, "
            "then scale the layer up (Layer > Scale Layer)."
            % (
                width,
                height,
                "the size chosen" if settings.width and settings.height else "the image's size",
                MAX_PIXELS / 1e6,
                MAX_SIDE,
            )
        )
    params = job_parameters(settings)
    prompt = params.pop("prompt")
    job = txt2img_job(prompt, width, height, **params)
    return Prepared(Box(0, 0, width, height), job, None, False)


COMMANDS = {"fill": prepare_fill, "img2img": prepare_img2img, "generate": prepare_generate}
COMMAND_TITLES = {"fill": "fill", "img2img": "img2img", "generate": "generate"}


def run_command(command, host, settings, client=None, progress=None, should_cancel=None):
    """Runs one command end to end: check, read, send, wait, write. Returns the new layers (or
    the new image for Generate with no image open). Raises a PaintbridgeError before anything
    in the image changes; writing happens only once every result is in."""
    # a result read from the visible image already shows every layer above the active one:
    # placed under them, they would show twice (a 50% layer above at 75%)
    on_top = command != "generate" and settings.source == "visible"
    check_image(host, on_top)
    canvas = host.image_box()  # the size the job's area is measured in
    had_image = canvas is not None
    prepared = COMMANDS[command](host, settings)
    look = host.layer_look() if prepared.from_layer else None  # kept if the layer goes
    client = client or connect(settings)
    job_id, results = _run(client, prepared.job, progress, should_cancel)
    if not results:
        raise ServerFault("The server finished the job but sent no image.")
    if had_image and not host.image_is_open():
        raise ImageClosed(
            "The image was closed while the job ran, so the result was not placed. "
            + kept_in_history(job_id)
        )
    name = layer_name(COMMAND_TITLES[command], settings, results[0].seed)
    if progress is not None:
        progress(1.0, "adding the result")
    try:  # the job is done: what goes wrong now says where its result is kept
        put = placements(prepared.box, results, prepared.mask)  # ServerFault: a wrong size
        if not had_image:
            return host.new_image(put, name)
        now = host.image_box()
        note = canvas_changed(
            (canvas.width, canvas.height), now and (now.width, now.height), prepared.box
        )
        made = host.add_layers(put, name, look, on_top)
    except Exception as exc:  # GIMP refused the layer (a group locked meanwhile...)
        raise not_used(exc, job_id)  # noqa: B904
    if note is not None:
        host.notice(note)
    return made


__all__ = [
    "DEFAULTS",
    "FlowError",
    "Host",
    "INDEXED",
    "ImageClosed",
    "NOTHING_VISIBLE",
    "NOT_A_LAYER",
    "NoSelection",
    "Prepared",
    "Settings",
    "check_image",
    "connect",
    "generate_size",
    "job_parameters",
    "layer_name",
    "mask_alpha",
    "prepare_fill",
    "prepare_generate",
    "prepare_img2img",
    "read_source",
    "run_command",
]
