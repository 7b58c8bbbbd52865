"""Images on the wire <-> PIL images, decoded defensively.

Nothing is decoded before its declared size passes the limits, a PNG's own header must agree
with the declared size before Pillow inflates a single row, and every decoding failure is an
InvalidRequest (400) or TooLarge (413) that names the field: no client input can make a 5xx.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import sys
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from paintbridge.engine.types import Limits
from paintbridge.errors import InvalidRequest, PaintbridgeError
from paintbridge.imageops import to_mask, to_mode, unreadable_reason
from paintbridge.server.schemas import ImagePayload

__all__ = ["PNG_SIGNATURE", "TooLarge", "decode_image", "decode_mask", "encode_file", "png_size"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class TooLarge(PaintbridgeError):
    """A body or an image over the server's limits (HTTP 413)."""

    code = "too_large"


def decode_image(payload: ImagePayload, limits: Limits, name: str = "image") -> Image.Image:
    """An `rgba8` or `png` payload as an RGBA image of exactly the declared size."""
    if payload.format not in ("rgba8", "png"):
        raise InvalidRequest(
            f"`{name}.format` must be rgba8 or png for an image, got {payload.format!r}"
        )
    image = _decode(payload, limits, name, channels=4, raw_mode="RGBA")
    return image if image.mode == "RGBA" else _convert(image, "RGBA", name)


def decode_mask(payload: ImagePayload, limits: Limits, name: str = "mask") -> Image.Image:
    """An `a8` or `png` payload as an 8-bit gray (L) image; 255 = regenerate. A PNG with
    transparency is its gray times its alpha, transparent = keep, as the CLI reads a mask file."""
    if payload.format not in ("a8", "png"):
        raise InvalidRequest(
            f"`{name}.format` must be a8 or png for a mask, got {payload.format!r}"
        )
    image = _decode(payload, limits, name, channels=1, raw_mode="L")
    return image if image.mode == "L" else _convert(image, "L", name)


def _convert(image: Image.Image, mode: str, name: str) -> Image.Image:
    try:
        return to_mask(image) if mode == "L" else to_mode(image, mode)
    except (ValueError, OSError) as exc:
        raise InvalidRequest(
            f"`{name}`: cannot convert a {image.mode} PNG to {mode} ({exc}): "
            "send 8-bit RGBA or gray"
        ) from exc


def _decode(
    payload: ImagePayload, limits: Limits, name: str, *, channels: int, raw_mode: str
) -> Image.Image:
    width, height = payload.width, payload.height
    if width < 1 or height < 1:
        raise InvalidRequest(f"`{name}` must be at least 1x1 pixels, got {width}x{height}")
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise TooLarge(
            f"`{name}` is {width}x{height}; the server accepts at most {limits.max_side} px a "
            f"side and {limits.max_pixels} pixels: send a smaller crop"
        )
    expected = width * height * channels
    if payload.format != "png" and len(payload.data) != (expected + 2) // 3 * 4:
        # checked on the text, before decoding: a megabyte of base64 for a 1x1 image is
        # refused without decoding (or holding the decoded copy of) any of it
        raise InvalidRequest(
            f"`{name}.data` is {len(payload.data)} characters of base64, but {payload.format} "
            f"at {width}x{height} needs {width}*{height}*{channels} = {expected} bytes, "
            f"{(expected + 2) // 3 * 4} characters: check width, height and format"
        )
    if payload.format == "png" and len(payload.data) > _png_b64_limit(width * height):
        raise TooLarge(
            f"`{name}.data` is {len(payload.data)} characters of base64, far more than any PNG "
            f"of {width}x{height} needs: send the image at the size it declares"
        )
    raw = _b64decode(payload.data, name)
    if payload.format == "png":
        return _decode_png(raw, width, height, name)
    if len(raw) != expected:
        raise InvalidRequest(
            f"`{name}.data` holds {len(raw)} bytes, but {payload.format} at {width}x{height} "
            f"needs {width}*{height}*{channels} = {expected}: check width, height and format"
        )
    # frombuffer wraps the decoded bytes (read-only) instead of copying them: a 4096 px crop
    # is 64 MB a copy, and nothing downstream changes its input in place
    return Image.frombuffer(raw_mode, (width, height), raw, "raw", raw_mode, 0, 1)


def _png_b64_limit(pixels: int) -> int:
    """The most base64 any PNG of that many pixels can honestly need, in any mode (a mask may
    be a 16-bit RGBA PNG): 8 bytes a pixel stored uncompressed, a filter byte per row, and
    4 MiB of ancillary chunks."""
    return (9 * pixels + 4 * 1024 * 1024) // 3 * 4


def _b64decode(data: str, name: str) -> bytes:
    try:
        if sys.version_info >= (3, 11):
            # reads the str in place; b64decode would first copy it to bytes (85 MB for the
            # base64 of a 4096 px crop)
            return binascii.a2b_base64(data, strict_mode=True)
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            f"`{name}.data` is not valid base64 ({exc}): use the standard alphabet, padded, "
            "without line breaks"
        ) from exc


def png_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when `raw` does not start like a PNG."""
    if len(raw) < 24 or not raw.startswith(PNG_SIGNATURE) or raw[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def _decode_png(raw: bytes, width: int, height: int, name: str) -> Image.Image:
    size = png_size(raw)
    if size is None:
        raise InvalidRequest(
            f"`{name}.data` is not a PNG file (format is png): send a PNG or use rgba8"
        )
    if size != (width, height):
        raise InvalidRequest(
            f"`{name}` declares {width}x{height} but its PNG is {size[0]}x{size[1]}: "
            "the sizes must match"
        )
    try:
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as opened:
            if opened.size != (width, height):
                raise InvalidRequest(f"`{name}`: the PNG's size does not match its header")
            opened.load()
            image = opened.copy()
    except InvalidRequest:
        raise
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"`{name}`: the PNG is too large to decode ({exc})") from exc
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, struct.error) as exc:
        raise InvalidRequest(
            f"`{name}.data` is not a readable PNG: {unreadable_reason(exc)}"
        ) from exc
    return image


def read_result(path: Path, result_format: str) -> tuple[bytes, int, int]:
    """A history PNG's bytes (`png`) or its RGBA8 pixels (`rgba8`), with its width and height."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        width, height = image.size
        if result_format == "png":
            return data, width, height
        del data  # each copy of a large result is tens of MB: hold as few at once as we can
        pixels = (image if image.mode == "RGBA" else image.convert("RGBA")).tobytes()
    return pixels, width, height


def encode_file(path: Path, image_format: str) -> ImagePayload:
    """A history PNG as a payload: the file itself (`png`), or its RGBA pixels (`rgba8`)."""
    data, width, height = read_result(path, image_format)
    encoded = base64.b64encode(data)
    del data
    return ImagePayload(width=width, height=height, format=image_format, data=encoded.decode())
