"""Decoding images and masks from the wire: exact sizes, and a clear 4xx for anything else."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from paintbridge.engine.types import Limits
from paintbridge.errors import InvalidRequest
from paintbridge.server.payloads import TooLarge, decode_image, decode_mask, encode_file, png_size
from paintbridge.server.schemas import ImagePayload

LIMITS = Limits(max_pixels=256 * 256, max_side=512)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def payload(width: int, height: int, fmt: str, data: bytes) -> ImagePayload:
    return ImagePayload(
        width=width, height=height, format=fmt, data=base64.b64encode(data).decode()
    )


def test_rgba8_round_trips_exactly() -> None:
    raw = bytes(range(256)) * 3 * 4  # 3072 bytes = 32x24 RGBA
    image = decode_image(payload(32, 24, "rgba8", raw), LIMITS)
    assert image.mode == "RGBA" and image.size == (32, 24) and image.tobytes() == raw


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "LA", "P", "1", "I;16"])
def test_any_png_mode_becomes_rgba_or_gray(mode: str) -> None:
    data = png(Image.new(mode, (10, 6)))
    assert decode_image(payload(10, 6, "png", data), LIMITS).mode == "RGBA"
    assert decode_mask(payload(10, 6, "png", data), LIMITS).mode == "L"


def test_16_bit_gray_is_scaled_not_clipped() -> None:
    """Pillow's own convert clips 16-bit gray at 255: 32768 would be white, 300 a full mask."""
    wide = Image.fromarray(np.array([[0, 300, 32768, 65535]], dtype=np.uint16))
    data = png(wide)
    image = decode_image(payload(4, 1, "png", data), LIMITS)
    assert [image.getpixel((x, 0)) for x in range(4)] == [
        (0, 0, 0, 255), (1, 1, 1, 255), (128, 128, 128, 255), (255, 255, 255, 255)
    ]  # fmt: skip
    assert list(decode_mask(payload(4, 1, "png", data), LIMITS).tobytes()) == [0, 1, 128, 255]
    buffer = io.BytesIO()
    wide.save(buffer, format="PNG", transparency=300)  # tRNS: the value 300 is transparent
    image = decode_image(payload(4, 1, "png", buffer.getvalue()), LIMITS)
    assert [image.getpixel((x, 0))[3] for x in range(4)] == [255, 0, 255, 255]


def test_exif_orientation_is_not_applied() -> None:
    """Payloads are pixels: rows top to bottom as stored, at the declared size (a plug-in's
    layer goes back where its crop came from), whatever a PNG's EXIF says."""
    stored = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    stored.putpixel((0, 0), (0, 0, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif.tobytes())
    image = decode_image(payload(4, 2, "png", buffer.getvalue()), LIMITS)
    assert image.tobytes() == stored.tobytes()


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_a_png_masks_transparency_keeps(mode: str) -> None:
    """White where the selection is, transparent elsewhere (an editor's selection saved as a
    PNG): gray times alpha, as `paintbridge inpaint` reads the same file, not all white."""
    white = Image.new(mode, (4, 1), (255,) * len(mode))
    white.putalpha(Image.frombytes("L", (4, 1), bytes([0, 64, 255, 0])))
    mask = decode_mask(payload(4, 1, "png", png(white)), LIMITS)
    assert list(mask.tobytes()) == [0, 64, 255, 0]


def test_a8_mask_keeps_its_values() -> None:
    raw = bytes([0, 128, 255, 7]) * 6
    mask = decode_mask(payload(6, 4, "a8", raw), LIMITS)
    assert mask.mode == "L" and mask.tobytes() == raw


def test_png_size_reads_the_header_only() -> None:
    data = png(Image.new("RGB", (300, 200)))
    assert png_size(data[:24]) == (300, 200)
    assert png_size(b"GIF89a" + data[6:]) is None


def _crafted_png(width: int, height: int) -> bytes:
    """A PNG header claiming a huge size, followed by a little compressed data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_before_any_decoding() -> None:
    bomb = _crafted_png(100_000, 100_000)
    with pytest.raises(InvalidRequest, match="100000x100000"):
        decode_image(payload(16, 16, "png", bomb), LIMITS)
    with pytest.raises(TooLarge):
        decode_image(payload(100_000, 100_000, "png", bomb), LIMITS)


def test_a_truncated_png_is_a_400() -> None:
    data = png(Image.new("RGBA", (64, 64), (1, 2, 3, 4)))
    with pytest.raises(InvalidRequest, match="not a readable PNG"):
        decode_image(payload(64, 64, "png", data[: len(data) // 2]), LIMITS)
    with pytest.raises(InvalidRequest, match="not a readable PNG"):
        decode_image(payload(16, 16, "png", _crafted_png(16, 16)), LIMITS)


@pytest.mark.parametrize(
    ("width", "height", "error"),
    [(600, 1, TooLarge), (257, 256, TooLarge), (0, 5, InvalidRequest), (5, -1, InvalidRequest)],
)
def test_declared_sizes_are_checked_before_decoding(width: int, height: int, error: type) -> None:
    with pytest.raises(error):
        decode_image(payload(width, height, "rgba8", b""), LIMITS)


def test_whitespace_or_urlsafe_base64_is_refused() -> None:
    good = base64.b64encode(b"\xfb\xff" * 8).decode()
    for bad in (good[:4] + "\n" + good[4:], good.replace("+", "-").replace("/", "_"), good[:-1]):
        if bad == good:
            continue
        with pytest.raises(InvalidRequest, match="base64"):
            decode_mask(ImagePayload(width=4, height=4, format="a8", data=bad), LIMITS)


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(-2, 300),
    height=st.integers(-2, 300),
    fmt=st.sampled_from(["rgba8", "png", "a8"]),
    data=st.one_of(st.binary(max_size=2000), st.builds(png, st.just(Image.new("L", (3, 3))))),
)
def test_any_payload_decodes_or_raises_a_4xx_error(
    width: int, height: int, fmt: str, data: bytes
) -> None:
    for decode in (decode_image, decode_mask):
        try:
            image = decode(payload(width, height, fmt, data), LIMITS)
        except (InvalidRequest, TooLarge):
            continue
        assert image.size == (width, height)


def test_encode_file_gives_the_file_or_its_pixels(tmp_path) -> None:
    path = tmp_path / "result.png"
    image = Image.new("RGBA", (5, 3), (10, 20, 30, 40))
    path.write_bytes(png(image))
    as_png = encode_file(path, "png")
    assert base64.b64decode(as_png.data) == path.read_bytes()
    as_rgba = encode_file(path, "rgba8")
    assert (as_rgba.width, as_rgba.height) == (5, 3)
    assert base64.b64decode(as_rgba.data) == image.tobytes()
