"""Every error leaves the server as `{"error": {"code", "message"}}`.

PaintbridgeError -> its code with its status (STATUS_BY_CODE: a 4xx for the request's fault,
5xx for the server's); FastAPI's validation errors -> 400
`invalid_request` with a sentence naming the field; unknown routes and methods -> 404/405;
anything else is a bug: logged with its traceback and answered 500 `internal_error`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from paintbridge.errors import PaintbridgeError

__all__ = ["STATUS_BY_CODE", "error_response", "install", "validation_message"]

log = logging.getLogger("paintbridge.server")

STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "unsafe_model_file": 400,
    "unauthorized": 401,
    "not_found": 404,
    "model_not_found": 404,
    "method_not_allowed": 405,
    "too_large": 413,
    "misdirected": 421,
    "queue_full": 429,
    # a job's own failure, met by an A1111 route that waits for it (on /v1 they are the failed
    # job's error.code): the server's side, not the request's
    "generation_failed": 500,
    "history_not_writable": 507,
    "shutting_down": 503,
    "server_fault": 503,
}
_CODE_BY_STATUS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _field(loc: Sequence[Any]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    return ".".join(parts)


def _short_repr(value: Any) -> str:
    if isinstance(value, str | bytes | bytearray) and len(value) > 60:
        value = value[:60]  # an image's data may be 100 MB: never repr all of it
        return repr(value)[:60] + "..."
    shown = repr(value)
    return shown[:60] + "..." if len(shown) > 60 else shown


def validation_message(errors: Sequence[Any]) -> str:
    """pydantic's error list as one sentence: "`steps`: Input should be a valid integer, got
    '20'; `image.width`: Field required"."""
    sentences = []
    for error in errors[:5]:
        kind = error.get("type", "")
        where = _field(error.get("loc", ()))
        if kind == "json_invalid":
            detail = error.get("ctx", {}).get("error", "")
            sentences.append(f"the body is not valid JSON ({detail})")
            continue
        if kind == "missing":
            sentences.append(f"`{where}` is required" if where else "the body is required")
            continue
        if not where and kind in ("model_type", "model_attributes_type", "dict_type"):
            sentences.append("the body must be a JSON object with the job's fields")
            continue
        if kind == "extra_forbidden":
            sentences.append(f"`{where}` is not a field of this request (check its spelling)")
            continue
        message = str(error.get("msg", "invalid value"))
        if "input" in error and kind not in ("model_type", "model_attributes_type"):
            shown = _short_repr(error["input"])
            message += f", got {shown}"
        sentences.append(f"`{where}`: {message}" if where else f"the body: {message}")
    if len(errors) > 5:
        sentences.append(f"and {len(errors) - 5} more")
    return "; ".join(sentences)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the protocol's shape."""

    @app.exception_handler(PaintbridgeError)
    async def paintbridge_error(_: Request, exc: PaintbridgeError) -> JSONResponse:
        status = STATUS_BY_CODE.get(exc.code, 400)
        headers = None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers = {"Retry-After": str(retry_after)}
        return error_response(status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "invalid_request", validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_BY_STATUS.get(exc.status_code, "invalid_request")
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}: see /openapi.json"
        elif exc.status_code == 405:
            message = f"{request.url.path} does not take {request.method}: see /openapi.json"
        elif exc.status_code == 400 and "parsing the body" in str(exc.detail):
            message = "the body is not valid JSON (UTF-8 text): send a JSON object"
        else:
            message = str(exc.detail)
        if exc.status_code >= 500:
            code = "internal_error"
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(
            500,
            "internal_error",
            f"internal server error ({type(exc).__name__}); this is a bug in paintbridge: "
            "please report it with the server's log",
        )
