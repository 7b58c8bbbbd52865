"""The wire protocol's bodies (docs/protocol.md) as pydantic models; they make /openapi.json.

Requests are strict: a string where a number belongs, or an unknown field (a typo such as
`negative-prompt`), is a 400 that names the field, never silently coerced or ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CancelAnswer",
    "ErrorAnswer",
    "ErrorBody",
    "Health",
    "ImagePayload",
    "JobAnswer",
    "JobRequest",
    "Live",
    "ModelEntry",
    "ModelsAnswer",
    "Progress",
    "QueueInfo",
    "ResultImage",
    "Submitted",
]

JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ImagePayload(_Request):
    """Pixels, rows top to bottom. rgba8: straight alpha, width*height*4 bytes; a8: one byte
    per pixel (masks); png: a PNG file of exactly width x height."""

    width: int = Field(description="pixels; must match the decoded data")
    height: int = Field(description="pixels; must match the decoded data")
    format: Literal["rgba8", "png", "a8"]
    data: str = Field(description="base64 (standard alphabet, padded)")


class JobRequest(_Request):
    """One generation. Only `task` and `prompt` are required; `null` means the model's default."""

    task: Literal["txt2img", "img2img", "inpaint"]
    prompt: str
    negative_prompt: str = ""
    model: str | None = Field(default=None, description="a name from /v1/models")
    width: int | None = Field(default=None, description="txt2img only")
    height: int | None = Field(default=None, description="txt2img only")
    steps: int | None = None
    guidance: float | None = None
    strength: float = Field(default=0.75, description="img2img/inpaint: how much to change")
    seed: int | None = Field(default=None, description="null: random; the seed used is returned")
    count: int = 1
    seamless: Literal["none", "x", "y", "xy"] = "none"
    scheduler: str | None = None
    image: ImagePayload | None = Field(default=None, description="img2img and inpaint: rgba8/png")
    mask: ImagePayload | None = Field(
        default=None, description="inpaint: a8/png, 255 = regenerate, 0 = keep"
    )


class Submitted(BaseModel):
    id: str
    state: JobState
    position: int


class Progress(BaseModel):
    step: int
    steps: int


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorAnswer(BaseModel):
    error: ErrorBody


class ResultImage(BaseModel):
    image: ImagePayload | None = Field(
        description="null when asked with image_format=none (fetch /v1/jobs/{id}/results/{n})"
    )
    seed: int


class JobAnswer(BaseModel):
    id: str
    state: JobState
    position: int | None = Field(description="jobs ahead of this one; 0 running, null finished")
    progress: Progress
    error: ErrorBody | None = None
    results: list[ResultImage] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class CancelAnswer(BaseModel):
    id: str
    state: JobState


class Live(BaseModel):
    ok: bool
    proof: str | None = Field(
        default=None,
        description="with ?challenge=: hex HMAC-SHA256 of 'paintbridge-live:' + the server's "
        "URL (as server.json gives it) + newline + challenge, keyed with the server's token "
        "(the server holds it; the client need not send it)",
    )


class QueueInfo(BaseModel):
    length: int = Field(description="jobs waiting, not counting the running one")
    max: int


class Health(BaseModel):
    version: str
    device: str
    dtype: str
    model: str | None
    queue: QueueInfo


class ModelEntry(BaseModel):
    name: str
    kind: str
    description: str
    tasks: list[str]
    native: int


class ModelsAnswer(BaseModel):
    default: str
    models: list[ModelEntry]
