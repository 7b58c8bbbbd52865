"""The core's exception tree. Every message says what went wrong and what to do about it.

`code` is a stable machine-readable name; the server sends it as `{"error": {"code", "message"}}`.
"""

from __future__ import annotations


def shown(value: object, limit: int = 120) -> str:
    """`value` as a message shows what a client sent: its repr, cut short when long (a 100 kB
    name was sent back whole in the error)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str) else len(text)
    return f"{text[: limit - 20]}...' ({size} characters)"


class PaintbridgeError(Exception):
    """Base of every error the core raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(PaintbridgeError, ValueError):
    """The caller asked for something impossible: a bad size, steps out of range, a bad image."""

    code = "invalid_request"


class ModelNotFound(PaintbridgeError):
    """The model name or path does not lead to loadable weights (or not offline)."""

    code = "model_not_found"


class UnsafeModelFile(PaintbridgeError):
    """A pickle checkpoint (.ckpt/.bin/.pt) that the user did not explicitly allow."""

    code = "unsafe_model_file"


class Cancelled(PaintbridgeError):
    """The job was cancelled; no image was produced."""

    code = "cancelled"


class GenerationFailed(PaintbridgeError):
    """The engine failed while generating (out of memory, a broken model file...)."""

    code = "generation_failed"
