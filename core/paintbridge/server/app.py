"""The HTTP service: `create_app(settings)` builds the FastAPI app of docs/protocol.md.

The lifespan creates the engine (unless one is given), the history and the job worker, writes
server.json once everything is ready and removes it on shutdown. Nothing is global: two apps
with different settings can live in one process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import TypeAdapter, ValidationError

from paintbridge import __version__, config
from paintbridge.engine.models import check_model
from paintbridge.engine.types import GenerationRequest
from paintbridge.errors import InvalidRequest, PaintbridgeError
from paintbridge.history import History
from paintbridge.hostkit.discovery import live_proof
from paintbridge.imageops import unreadable_reason
from paintbridge.jobs import Generator, JobQueue, JobView
from paintbridge.server import discovery, handlers
from paintbridge.server.guard import Guard
from paintbridge.server.payloads import decode_image, decode_mask, encode_file, read_result
from paintbridge.server.schemas import (
    CancelAnswer,
    ErrorAnswer,
    ErrorBody,
    Health,
    JobAnswer,
    JobRequest,
    Live,
    ModelEntry,
    ModelsAnswer,
    Progress,
    QueueInfo,
    ResultImage,
    Submitted,
)
from paintbridge.server.settings import ServerSettings

__all__ = ["Runtime", "create_app"]

log = logging.getLogger("paintbridge.server")
_JOB_ANSWER = TypeAdapter(JobAnswer)
# The longest a status request may wait for a change: under uvicorn's 10 s graceful shutdown,
# and each waiting request holds one of the thread pool's 40 threads.
MAX_WAIT = 5.0
# Paths AUTOMATIC1111 clients call, with its login (serve --a1111): its API, and the ControlNet
# extension's, which paintbridge has not. A client asking whether it is there gets 404 with the
# login it uses for the rest (a 401 read as a wrong password).
A1111_PREFIXES = ("/sdapi/", "/controlnet/")

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": text}
    for status, text in {
        400: "invalid request (`invalid_request`)",
        401: "no token or a wrong one (`unauthorized`)",
        404: "unknown job, model or route",
        413: "body or image over the limits (`too_large`)",
        421: "the Host header is not this server's (`misdirected`)",
        429: "the queue is full (`queue_full`); see Retry-After",
    }.items()
}


@dataclass
class Runtime:
    """What the lifespan builds and the routes use."""

    settings: ServerSettings
    engine: Any  # paintbridge.engine.Engine, or anything with the same surface
    jobs: JobQueue
    history: History


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


async def _job_request(request: Request) -> JobRequest:
    """The job parsed by pydantic straight from the body's bytes.

    FastAPI's own body parameter would first decode the whole body to one str for json.loads: an
    inpaint of a 4096 px crop is a 107 MB body, and that str a third copy of it beside the body
    and the parsed fields. Errors are FastAPI's validation errors, answered as usual (400)."""
    # Read through stream(), not Request.body(), which would keep the body cached on the request
    # until the response: once parsed, it is freed before the images are decoded.
    chunks = [chunk async for chunk in request.stream() if chunk]
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    try:
        return JobRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        # pydantic's parser refuses some JSON Python's takes (a lone surrogate in the prompt,
        # which the job queue's own check then names by field): on this error path only
        try:
            return JobRequest.model_validate(json.loads(body))
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        except (ValueError, RecursionError):  # not JSON for Python either, or nested too deep
            pass
    raise RequestValidationError(errors)


JobRequestDep = Annotated[JobRequest, Depends(_job_request)]
_JOB_REQUEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}},
}


def _document_job_request(app: FastAPI) -> None:
    """Put JobRequest in /openapi.json's components: FastAPI does not see the body that
    `_job_request` parses, and the /v1/jobs route's requestBody refers to it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            job = JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in job.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components["JobRequest"] = job
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


SHARED_THREADS = 40  # anyio's default for sync routes and to_thread calls


def create_app(settings: ServerSettings, engine: Generator | None = None) -> FastAPI:
    """The app; `engine` defaults to `paintbridge.engine.Engine(settings.engine)`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from paintbridge.engine import Engine

        the_engine = engine if engine is not None else Engine(settings.engine)
        # The sync routes share anyio's threads (40), and an A1111 request holds one until its
        # job ends: with a long queue they could hold them all, and /v1/live, polls and cancel
        # would wait behind them. At most queue_size + 1 such jobs exist; the 40 stay free.
        threads = anyio.to_thread.current_default_thread_limiter()
        threads.total_tokens = max(threads.total_tokens, SHARED_THREADS + settings.queue_size + 1)
        history = History(settings.history_dir or config.history_dir())
        jobs = JobQueue(
            the_engine,
            history.record,
            max_queued=settings.queue_size,
            keep_seconds=settings.keep_seconds,
            keep_count=settings.keep_count,
            idle_seconds=settings.idle_seconds,
        )
        jobs.start()
        app.state.runtime = Runtime(settings, the_engine, jobs, history)
        replaced = None
        if settings.discovery_file is not None:
            replaced = discovery.read(settings.discovery_file)
            discovery.write(
                settings.discovery_file,
                url=settings.url,
                token=settings.token,
                version=__version__,
                history=history.folder,
            )
        try:
            yield
        finally:
            if settings.discovery_file is not None:
                discovery.remove_if_ours(settings.discovery_file, settings.token, replaced)
            await anyio.to_thread.run_sync(jobs.stop)

    app = FastAPI(
        title="paintbridge",
        version=__version__,
        summary="Local AI image generation for Blender, GIMP and Krita (see docs/protocol.md)",
        lifespan=lifespan,
        docs_url=None,  # the interactive docs load scripts from a CDN; /openapi.json is enough
        redoc_url=None,
        responses=_ERRORS,
    )
    app.add_middleware(
        Guard,
        token=settings.token,
        host_names=settings.host_names,
        max_body=settings.body_limit,
        basic_prefixes=A1111_PREFIXES if settings.a1111 else (),
        open_prefixes=A1111_PREFIXES if settings.a1111_no_auth else (),
    )
    handlers.install(app)
    _add_routes(app)
    _document_job_request(app)
    if settings.a1111:  # AUTOMATIC1111-compatible routes (serve --a1111)
        from paintbridge.server import a1111

        a1111.install(app)
    return app


def _add_routes(app: FastAPI) -> None:
    @app.get("/v1/live", response_model=Live, response_model_exclude_none=True, tags=["service"])
    def live(
        rt: RuntimeDep,
        challenge: Annotated[str | None, Query(max_length=64, pattern="^[0-9a-f]+$")] = None,
    ) -> Live:
        """Is a paintbridge server listening here? The only route without a token. With a
        `challenge` (hex), `proof` shows that this server, at the URL server.json gives, holds
        the token (hostkit checks it before it trusts the server named in server.json: the
        file outlives a crash)."""
        if challenge is None:
            return Live(ok=True)
        return Live(ok=True, proof=live_proof(rt.settings.token, rt.settings.url, challenge))

    # HEAD for uptime monitors: a route of its own, out of the schema (one route with both
    # methods gave both operations one operationId, which OpenAPI forbids)
    app.add_api_route(
        "/v1/live", live, methods=["HEAD"], response_model=Live, include_in_schema=False
    )

    @app.get("/v1/health", response_model=Health, tags=["service"])
    def health(rt: RuntimeDep) -> Health:
        """Version, device, dtype, the loaded model and the queue."""
        engine = rt.engine
        return Health(
            version=__version__,
            device=str(engine.device),
            dtype=str(engine.dtype).removeprefix("torch."),
            model=engine.loaded_model,
            queue=QueueInfo(length=rt.jobs.length, max=rt.jobs.max_queued),
        )

    @app.get("/v1/models", response_model=ModelsAnswer, tags=["service"])
    def models(rt: RuntimeDep) -> ModelsAnswer:
        """The presets, test models and local models this server can load."""
        from paintbridge.engine import list_models

        engine_settings = rt.settings.engine
        return ModelsAnswer(
            default=engine_settings.default_model,
            models=[
                ModelEntry(
                    name=info.name,
                    kind=info.kind,
                    description=info.description,
                    tasks=list(info.tasks),
                    native=info.native,
                )
                for info in list_models(engine_settings)
            ],
        )

    @app.post(
        "/v1/jobs",
        status_code=202,
        response_model=Submitted,
        tags=["jobs"],
        openapi_extra={"requestBody": _JOB_REQUEST_BODY},
    )
    def submit(body: JobRequestDep, rt: RuntimeDep) -> Submitted:
        """Queue a generation; poll `GET /v1/jobs/{id}` for progress and results."""
        request = to_generation_request(body, rt.settings)
        job_id = rt.jobs.submit(request, request_parameters(body))
        view = rt.jobs.get(job_id)
        return Submitted(id=view.id, state=view.state, position=view.position or 0)

    @app.get("/v1/jobs/{job_id}", response_model=JobAnswer, tags=["jobs"])
    def get_job(
        job_id: str,
        rt: RuntimeDep,
        image_format: Literal["png", "rgba8", "none"] = "png",
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT, allow_inf_nan=False)] = 0,
    ) -> Response:
        """The job's state and progress; when done, its results (already in history), or with
        image_format=none only their seeds (then fetch each from /v1/jobs/{id}/results/{n}).
        `wait` (s): answer once the state changes, or the step (0.25 s after the request at the
        earliest), at the latest after `wait` s."""
        answer = job_answer(rt.jobs.get(job_id, wait), image_format)
        # Straight to JSON bytes: a result of 4096 px is ~90 MB of base64, and FastAPI's own
        # path (validate, dict, json.dumps to str, encode) would hold two more copies of it.
        return Response(_JOB_ANSWER.dump_json(answer), media_type="application/json")

    @app.get(
        "/v1/jobs/{job_id}/results/{index}",
        response_class=Response,
        tags=["jobs"],
        responses={200: {"content": {"application/octet-stream": {}, "image/png": {}}}},
    )
    def get_result(
        job_id: str,
        index: int,
        rt: RuntimeDep,
        format: Literal["rgba8", "png"] = "rgba8",  # noqa: A002 (the query parameter's name)
    ) -> Response:
        """A finished job's result `index` (from 0) as bare bytes: RGBA8 pixels (rows top to
        bottom; its size in the X-Width / X-Height headers) or the history PNG. No base64 and
        no JSON: a 4096 px result is 64 MB here, where a JSON answer costs the client 3 copies."""
        path, seed = result_file(rt.jobs.get(job_id), index)
        try:
            data, width, height = read_result(path, format)
        except (OSError, Image.UnidentifiedImageError, ValueError) as exc:
            raise _result_gone(path, exc) from exc
        media = "image/png" if format == "png" else "application/octet-stream"
        headers = {"X-Width": str(width), "X-Height": str(height), "X-Seed": str(seed)}
        return Response(data, media_type=media, headers=headers)

    @app.post("/v1/jobs/{job_id}/cancel", response_model=CancelAnswer, tags=["jobs"])
    def cancel(job_id: str, rt: RuntimeDep) -> CancelAnswer:
        """Cancel a queued job at once, a running one at its next step."""
        view = rt.jobs.cancel(job_id)
        return CancelAnswer(id=view.id, state=view.state)

    @app.get("/", include_in_schema=False)
    def root() -> JSONResponse:
        return JSONResponse({"service": "paintbridge", "version": __version__, "api": "/v1"})


def result_file(view: JobView, index: int) -> tuple[Path, int]:
    """The history file and seed of a finished job's result `index`."""
    if view.state != "done":
        raise PaintbridgeError(
            f"job {view.id} is {view.state}: only a done job has results", code="not_found"
        )
    if not 0 <= index < len(view.files):
        raise PaintbridgeError(
            f"job {view.id} has {len(view.files)} result(s); there is no result {index}",
            code="not_found",
        )
    return view.files[index], view.seeds[index]


def _result_gone(path: Path, exc: Exception) -> PaintbridgeError:
    return PaintbridgeError(
        f"the result {str(path)!r} was removed from the history folder or is unreadable "
        f"({unreadable_reason(exc)}); the job's other results may still be there",
        code="not_found",
    )


def to_generation_request(body: JobRequest, settings: ServerSettings) -> GenerationRequest:
    """Decode the images and check everything; raises InvalidRequest, TooLarge, ModelNotFound."""
    from paintbridge.engine import check_request

    limits = settings.engine.limits
    image = mask = None
    if body.task == "txt2img":
        for name in ("image", "mask"):
            if getattr(body, name) is not None:
                raise InvalidRequest(f"`{name}` is not used by txt2img: leave it out or null")
    else:
        if body.image is None:
            raise InvalidRequest(f"`image` is required for {body.task}: send the picture to change")
        size = (body.image.width, body.image.height)
        for name, value, side in (("width", body.width, size[0]), ("height", body.height, size[1])):
            if value is not None and value != side:
                raise InvalidRequest(
                    f"`{name}` is for txt2img; {body.task} returns the size of `image` "
                    f"({size[0]}x{size[1]}), got {name}={value}: leave it out or null"
                )
        image = decode_image(body.image, limits)
        if body.task == "inpaint":
            if body.mask is None:
                raise InvalidRequest("`mask` is required for inpaint: 255 = regenerate, 0 = keep")
            if (body.mask.width, body.mask.height) != (body.image.width, body.image.height):
                raise InvalidRequest(
                    f"`mask` must be the size of `image` ({body.image.width}x"
                    f"{body.image.height}), got {body.mask.width}x{body.mask.height}"
                )
            mask = decode_mask(body.mask, limits)
        elif body.mask is not None:
            raise InvalidRequest("`mask` is only used by inpaint: leave it out or null")
    request = GenerationRequest(
        task=body.task,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        model=body.model,
        width=body.width if body.task == "txt2img" else None,  # else: the image's size
        height=body.height if body.task == "txt2img" else None,
        steps=body.steps,
        guidance=body.guidance,
        strength=body.strength,
        seed=body.seed,
        count=body.count,
        seamless=body.seamless,
        scheduler=body.scheduler,
        image=image,
        mask=mask,
    )
    check_request(request, limits)
    # An unknown model, or one that is not cached and cannot be downloaded, is a 404 now, not
    # a job that fails later; a model that cannot do the task is a 400.
    check_model(request.model or settings.engine.default_model, settings.engine, request.task)
    return request


def request_parameters(body: JobRequest) -> dict[str, Any]:
    """The request as a job shows it before it runs: every field but the pixels."""
    parameters = body.model_dump(exclude={"image", "mask"})
    for name in ("image", "mask"):
        payload = getattr(body, name)
        if payload is not None:
            parameters[f"{name}_size"] = f"{payload.width}x{payload.height}"
    return parameters


def job_answer(view: JobView, image_format: str) -> JobAnswer:
    results = None
    if view.state == "done":
        results = []
        for path, seed in zip(view.files, view.seeds, strict=True):
            image = None
            if image_format != "none":
                try:
                    image = encode_file(path, image_format)
                except (OSError, Image.UnidentifiedImageError, ValueError) as exc:
                    raise _result_gone(path, exc) from exc
            results.append(ResultImage(image=image, seed=seed))
    return JobAnswer(
        id=view.id,
        state=view.state,
        position=view.position,
        progress=Progress(step=view.step, steps=view.steps),
        error=ErrorBody(code=view.error[0], message=view.error[1]) if view.error else None,
        results=results,
        parameters=view.parameters,
    )
