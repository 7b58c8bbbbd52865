"""AUTOMATIC1111-compatible routes (`paintbridge serve --a1111`): /sdapi/v1/...

Plug-ins and scripts written for the A1111 web UI API work unchanged. Their jobs go through
the same queue and history as /v1: a generation route submits a job and waits for it in a
worker thread (FastAPI runs these `def` routes in its threadpool, so the event loop stays free
for /sdapi/v1/progress and /interrupt). Authentication is the Guard's (HTTP Basic, the token
as password); errors keep the server's `{"error": ...}` shape with a 4xx status.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from PIL import Image
from pydantic_core import PydanticSerializationError

from paintbridge import pngmeta
from paintbridge.engine import GenerationRequest, check_request, list_models
from paintbridge.engine.models import check_model, model_tasks, resolve_model
from paintbridge.errors import InvalidRequest, PaintbridgeError
from paintbridge.imageops import mask_is_empty, unreadable_reason
from paintbridge.jobs import JobNotFound, JobView
from paintbridge.server import a1111_catalog
from paintbridge.server import a1111_convert as conv
from paintbridge.server.a1111_schemas import (
    A1111Model,
    ImagesAnswer,
    Img2ImgBody,
    ProgressAnswer,
    ProgressState,
    Txt2ImgBody,
)

__all__ = ["A1111State", "install"]

# Engine field names in check_request's messages -> what an A1111 client sent.
_FIELD_NAMES = {
    "guidance": "cfg_scale",
    "strength": "denoising_strength",
    "count": "batch_size * n_iter",
    "scheduler": "sampler_name",
    "image": "init_images[0]",
}


@dataclass
class _Tracked:
    job_id: str
    stamp: str
    interrupted: bool = False


@dataclass
class A1111State:
    """What A1111 keeps between requests: the selected checkpoint and the jobs in flight."""

    checkpoint: str | None = None  # None: the server's --model
    inflight: list[_Tracked] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def install(app: FastAPI) -> None:
    """Add the /sdapi/v1 routes and their state to `app` (made by create_app)."""
    app.state.a1111 = A1111State()
    app.include_router(_router(), prefix="/sdapi/v1", tags=["AUTOMATIC1111"])


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _state(request: Request) -> A1111State:
    return request.app.state.a1111


def _router() -> APIRouter:
    router = APIRouter()

    @router.post("/txt2img", response_model=ImagesAnswer)
    def txt2img(body: Txt2ImgBody, request: Request) -> ImagesAnswer:
        """Generate `batch_size * n_iter` images; waits until they are done."""
        return _generate(request, body, None)

    @router.post("/img2img", response_model=ImagesAnswer)
    def img2img(body: Img2ImgBody, request: Request) -> ImagesAnswer:
        """Change `init_images[0]`; with `mask`, repaint only its white part."""
        return _generate(request, body, body)

    @router.get("/progress", response_model=ProgressAnswer)
    def progress(request: Request) -> ProgressAnswer:
        """The running job's progress, from /sdapi or /v1 alike (no preview image)."""
        return _progress(_runtime(request), _state(request))

    @router.post("/interrupt")
    def interrupt(request: Request) -> dict[str, Any]:
        """Cancel the running A1111 job at its next step; it answers with no image."""
        rt, st = _runtime(request), _state(request)
        for tracked, view in _views(rt, st):
            if view.state == "running":
                tracked.interrupted = True
                rt.jobs.cancel(tracked.job_id)
                break
        return {}

    @router.post("/skip")
    def skip(request: Request) -> dict[str, Any]:
        """As interrupt (paintbridge cannot skip one image of a batch)."""
        return interrupt(request)

    @router.get("/options")
    def get_options(request: Request) -> dict[str, Any]:
        """The settings A1111 clients read; only `sd_model_checkpoint` can be set here. The
        others say what paintbridge does, in A1111's words: the model's own VAE, the text
        encoder's last layer (no CLIP skip), PNG."""
        rt, st = _runtime(request), _state(request)
        return {
            "sd_model_checkpoint": conv.model_name(
                st.checkpoint or rt.settings.engine.default_model
            ),
            "sd_checkpoint_hash": None,
            "sd_vae": "Automatic",
            "CLIP_stop_at_last_layers": 1,
            "samples_format": "png",
        }

    @router.post("/options")
    def set_options(options: dict[str, Any], request: Request) -> None:
        """Select the model later jobs use (`sd_model_checkpoint`); other keys are ignored."""
        name = options.get("sd_model_checkpoint")
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise InvalidRequest(f"`sd_model_checkpoint` must be a model name, got {name!r}")
            model = _model(name, _runtime(request), _state(request))
            check_model(model, _runtime(request).settings.engine)
            _state(request).checkpoint = model

    @router.get("/sd-models", response_model=list[A1111Model])
    def sd_models(request: Request) -> list[A1111Model]:
        """The models this server can load, by the names sd_model_checkpoint takes: the
        server's own and the selected one too where the models folders do not hold them."""
        rt, st = _runtime(request), _state(request)
        names = [info.name for info in list_models(rt.settings.engine)]
        for current in (rt.settings.engine.default_model, st.checkpoint):
            # a client looks the name /options gives up in this list (stable-gimpfusion)
            if current is not None and conv.model_name(current) not in names:
                names.append(conv.model_name(current))
        return [A1111Model(title=name, model_name=name, filename=name) for name in names]

    router.include_router(a1111_catalog.router())
    return router


# --- generation --------------------------------------------------------------------------------


def _generate(request: Request, body: Txt2ImgBody, edit: Img2ImgBody | None) -> ImagesAnswer:
    rt, st = _runtime(request), _state(request)
    limits = rt.settings.engine.limits
    notes: list[str] = []
    ignored = sorted(body.model_extra or {})
    model = st.checkpoint or rt.settings.engine.default_model
    for key, value in body.override_settings.items():
        if key == "sd_model_checkpoint" and isinstance(value, str) and value.strip():
            model = _model(value, rt, st)
        else:
            ignored.append(f"override_settings.{key}")
    task = "txt2img" if edit is None else "img2img" if edit.mask is None else "inpaint"
    check_model(model, rt.settings.engine, task)  # a 404 or 400 now, not a failed job later
    count = body.batch_size * body.n_iter
    if body.batch_size < 1 or body.n_iter < 1 or count > limits.max_count:
        raise InvalidRequest(
            f"`batch_size` * `n_iter` must be in [1, {limits.max_count}], got "
            f"{body.batch_size} * {body.n_iter}"
        )
    seed = conv.engine_seed(body.seed, notes)
    scheduler, sampler_name = conv.resolve_sampler(
        body.sampler_name or body.sampler_index, body.scheduler, notes
    )
    image = mask = original = None
    crop: conv.Crop | None = None
    strength = 0.75
    if edit is not None:
        original, image, mask, crop = _edit_inputs(edit, limits, notes)
        if task == "inpaint" and mask is None:  # the mask was empty: A1111 does img2img
            if "img2img" in model_tasks(resolve_model(model, rt.settings.engine)):
                task = "img2img"
            else:  # an inpainting model can only repaint the whole picture as an inpaint
                mask = Image.new("L", image.size, 255)
        # without `steps` the engine raises the default steps until one runs (a 1-step model at
        # 0.75 runs 2): only a strength too low even for the most steps is raised here
        steps = body.steps if body.steps is not None else limits.max_steps
        strength = conv.one_step_strength(edit.denoising_strength, steps, notes)
    generation = GenerationRequest(
        task=task,  # type: ignore[arg-type]
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        model=model,
        width=body.width if task == "txt2img" else None,
        height=body.height if task == "txt2img" else None,
        steps=body.steps,
        guidance=body.cfg_scale,
        strength=strength,
        seed=seed,
        count=count,
        seamless="xy" if body.tiling else "none",
        scheduler=scheduler,
        image=image,
        mask=mask,
    )
    try:
        check_request(generation, limits)
    except InvalidRequest as exc:
        raise InvalidRequest(_a1111_names(exc.message)) from exc
    fields = set(type(body).model_fields)  # not the extras: they may hold whole images
    parameters = body.model_dump(include=fields - {"init_images", "mask"})
    _check_echo(parameters)
    parameters.update(api="a1111", task=task, model=model)
    job_id = rt.jobs.submit(generation, parameters)
    tracked = _Tracked(job_id, datetime.now().strftime("%Y%m%d%H%M%S"))
    with st.lock:
        st.inflight.append(tracked)
    try:
        view = rt.jobs.wait(job_id)
    finally:
        with st.lock:
            st.inflight.remove(tracked)
    if view.state == "failed":
        code, message = view.error or ("generation_failed", "the job failed")
        raise PaintbridgeError(_a1111_names(message), code=code)
    pasted = original if task == "inpaint" else None
    images = (
        _answer_images(view, pasted, crop)
        if body.send_images
        else []  # A1111: the images are made (and kept in the history), not sent
    )
    if view.state == "cancelled":
        notes.append("the job was interrupted: no image was made")
    info = conv.info_object(
        body,
        edit,
        view,
        sampler_name,
        model,
        notes=notes,
        ignored=ignored,
        size=pasted.size if pasted is not None else None,
    )
    answer_parameters = body.model_dump(include=fields)
    if edit is not None:
        answer_parameters.update(init_images=None, mask=None)
    return ImagesAnswer(images=images, parameters=answer_parameters, info=json.dumps(info))


def _check_echo(parameters: dict[str, Any]) -> None:
    """The fields an answer sends back (and the job's history keeps) must make JSON: a lone
    surrogate in a string, or `override_settings` nested hundreds deep, failed only once the
    images were made, as a 500 with no answer."""
    try:
        ImagesAnswer(images=[], parameters=parameters, info="").model_dump_json()
    except (PydanticSerializationError, ValueError, RecursionError) as exc:
        raise InvalidRequest(
            f"the request cannot be answered: one of its fields ({exc}) is text with a lone "
            "surrogate (send UTF-8) or JSON nested too deep; fix that field"
        ) from exc


def _edit_inputs(
    edit: Img2ImgBody, limits: Any, notes: list[str]
) -> tuple[Image.Image, Image.Image, Image.Image | None, conv.Crop | None]:
    """(the whole init image, what the engine gets, its mask or None, the crop or None)."""
    if not edit.init_images:
        raise InvalidRequest("`init_images` must hold one image (base64 PNG) for img2img")
    if len(edit.init_images) > 1:
        notes.append(f"only the first of the {len(edit.init_images)} init_images was used")
    # A1111 flattens init images onto white: a render's transparent background comes back white
    image = conv.flatten(conv.decode_a1111_image(edit.init_images[0], "init_images[0]", limits))
    if edit.resize_mode != 0:
        notes.append(f"resize_mode {edit.resize_mode} is not supported: 0 (just resize) was used")
    wanted = (edit.width or image.width, edit.height or image.height)
    if wanted != image.size:
        conv.check_size(wanted, limits)
        image = image.resize(wanted, Image.Resampling.LANCZOS)
    original = image
    if edit.mask is None:
        return original, image.convert("RGBA"), None, None
    if edit.inpainting_fill != 1:
        notes.append(
            f"inpainting_fill {edit.inpainting_fill} is not supported: the masked area starts "
            "from the original picture (1, original)"
        )
    mask = conv.prepare_mask(
        conv.decode_a1111_image(edit.mask, "mask", limits),
        image.size,
        blur=edit.mask_blur,
        invert=bool(edit.inpainting_mask_invert),
        notes=notes,
    )
    if mask_is_empty(mask):
        notes.append("the mask is empty: the whole image was changed (img2img), as in A1111")
        return original, image.convert("RGBA"), None, None
    crop = conv.Crop.around(mask, edit.inpaint_full_res_padding) if edit.inpaint_full_res else None
    if crop is not None:
        image, mask = image.crop(crop.pil_box), mask.crop(crop.pil_box)
    return original, image.convert("RGBA"), mask, crop


def _model(title: str, rt: Any, st: A1111State) -> str:
    """The model a name from /sd-models or /options means: the server's own and the selected
    one by the name listed for them (`mymodel` for `mymodel.safetensors`, so it is not loaded
    again under another name), any other as conv.model_name reads it."""
    name = conv.model_name(title)
    for current in (st.checkpoint, rt.settings.engine.default_model):
        if current is not None and conv.model_name(current) == name:
            return current
    return name


def _a1111_names(message: str) -> str:
    return re.sub(r"`(\w+)`", lambda m: f"`{_FIELD_NAMES.get(m.group(1), m.group(1))}`", message)


def _answer_images(
    view: JobView, original: Image.Image | None, crop: conv.Crop | None
) -> list[str]:
    """The job's history PNGs as A1111's, in base64: RGB, with the `parameters` text; an
    inpaint layer pasted back over `original` (the whole picture, whose size they give)."""
    images: list[str] = []
    done = view.state == "done"
    for path, seed in zip(view.files, view.seeds, strict=True) if done else ():
        parameters = {**view.parameters, "seed": seed}  # as the history's PNG has them
        try:
            with Image.open(path, formats=["PNG"]) as layer:
                if original is None:
                    picture = layer.convert("RGB")
                else:
                    picture = conv.paste_back(original, layer, crop).convert("RGB")
                    parameters.update(width=original.width, height=original.height)
            images.append(base64.b64encode(pngmeta.png_bytes(picture, parameters)).decode())
        except (OSError, Image.UnidentifiedImageError, ValueError) as exc:
            raise PaintbridgeError(
                f"the result {str(path)!r} was removed from the history folder or is "
                f"unreadable ({unreadable_reason(exc)})",
                code="not_found",
            ) from exc
    return images


# --- progress ----------------------------------------------------------------------------------


def _views(rt: Any, st: A1111State) -> list[tuple[_Tracked, JobView]]:
    with st.lock:
        tracked = list(st.inflight)
    views = []
    for item in tracked:
        try:
            views.append((item, rt.jobs.get(item.job_id)))
        except JobNotFound:
            continue
    return views


def _progress(rt: Any, st: A1111State) -> ProgressAnswer:
    """The running job's progress, whichever API submitted it (the GPU is busy either way);
    `job_count` counts the A1111 requests waiting and the running job."""
    views = _views(rt, st)
    view = rt.jobs.running()
    if view is None:
        job = views[0][0].job_id if views else ""
        return ProgressAnswer(
            progress=0.0,
            eta_relative=0.0,
            state=ProgressState(job=job, job_count=len(views)),
        )
    tracked = next((t for t, v in views if v.id == view.id), None)
    fraction = view.step / view.steps if view.steps else 0.0
    elapsed = view.run_seconds or 0.0
    eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
    return ProgressAnswer(
        progress=round(fraction, 4),
        eta_relative=round(eta, 2),
        state=ProgressState(
            interrupted=tracked.interrupted if tracked is not None else False,
            job=view.id,
            job_count=len(views) + (tracked is None),
            job_timestamp=tracked.stamp if tracked is not None else "0",
            job_no=0,
            sampling_step=view.step,
            sampling_steps=view.steps,
        ),
    )
