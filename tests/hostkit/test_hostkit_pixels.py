"""hostkit.pixels: channel and row shuffles, the PNG codec (checked against Pillow), payloads."""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from paintbridge.hostkit import pixels
from paintbridge.hostkit.pixels import (
    bgra_to_rgba,
    decode_png,
    encode_png,
    flip_rows,
    gray_to_rgba,
    image_payload,
    mask_alpha,
    mask_payload,
    payload_to_mask,
    payload_to_rgba,
    rgb_to_rgba,
    rgba_to_bgra,
    rgba_to_gray,
)
from paintbridge.hostkit.transport import Later, json_text

SIZES = [(1, 1), (7, 13), (257, 3), (3, 257), (64, 64)]


def _random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _smooth(width: int, height: int, channels: int, seed: int) -> bytes:
    """Gradients plus noise: makes libpng pick all five filter types."""
    rng = random.Random(seed)
    out = bytearray()
    for y in range(height):
        for x in range(width):
            for c in range(channels):
                out.append((x * (c + 1) + y * 3 + rng.randrange(4)) & 0xFF)
    return bytes(out)


def _png_filters(png: bytes) -> set[int]:
    """The filter types used by a non-interlaced 8-bit PNG's rows."""
    image = Image.open(io.BytesIO(png))
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1}[image.mode]
    stride = image.width * channels
    pos, idat = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        if png[pos + 4 : pos + 8] == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return {raw[row * (stride + 1)] for row in range(image.height)}


def test_flip_rows() -> None:
    data = bytes(range(24))  # 3 wide, 2 high, 4 channels
    assert flip_rows(data, 3, 2) == data[12:] + data[:12]
    assert flip_rows(flip_rows(data, 3, 2), 3, 2) == data
    assert flip_rows(b"abcdef", 1, 3, 2) == b"efcdab"
    with pytest.raises(ValueError):
        flip_rows(data, 3, 3)


def test_channel_swaps() -> None:
    bgra = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    assert bgra_to_rgba(bgra) == bytes([3, 2, 1, 4, 7, 6, 5, 8])
    assert rgba_to_bgra(bgra_to_rgba(bgra)) == bgra
    assert bgra_to_rgba(bytearray(bgra)) == bytes([3, 2, 1, 4, 7, 6, 5, 8])
    assert rgb_to_rgba(bytes([1, 2, 3, 4, 5, 6])) == bytes([1, 2, 3, 255, 4, 5, 6, 255])
    assert gray_to_rgba(b"\x05\x09") == bytes([5, 5, 5, 255, 9, 9, 9, 255])
    assert gray_to_rgba(b"\x05", b"\x80") == bytes([5, 5, 5, 128])
    with pytest.raises(ValueError):
        bgra_to_rgba(b"abc")


def test_rgba_to_gray_matches_pillow() -> None:
    data = _random_bytes(31 * 17 * 4, 3)
    expected = Image.frombytes("RGBA", (31, 17), data).convert("L").tobytes()
    assert rgba_to_gray(data) == expected


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L"])
def test_encode_png_pillow_reads_it(width: int, height: int, mode: str) -> None:
    channels = {"RGBA": 4, "RGB": 3, "L": 1}[mode]
    data = _random_bytes(width * height * channels, width * height)
    png = encode_png(data, width, height, mode)
    image = Image.open(io.BytesIO(png))
    assert (image.mode, image.size) == (mode, (width, height))
    assert image.tobytes() == data


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("mode", ["RGBA", "RGB", "LA", "L"])
def test_decode_pillow_png(width: int, height: int, mode: str) -> None:
    channels = {"RGBA": 4, "RGB": 3, "LA": 2, "L": 1}[mode]
    image = Image.frombytes(mode, (width, height), _smooth(width, height, channels, 7))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    w, h, out_mode, rgba = decode_png(buffer.getvalue())
    assert (w, h, out_mode) == (width, height, "RGBA")
    assert rgba == image.convert("RGBA").tobytes()
    _, _, gray_mode, gray = decode_png(buffer.getvalue(), "L")
    assert gray_mode == "L"
    assert gray == image.convert("L").tobytes()


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_row(kind: int, line: bytes, prev: bytes, bpp: int) -> bytes:
    """PNG's forward filter `kind` on one row (the reference the decoder must undo)."""
    out = bytearray()
    for i, x in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
        out.append((x - pred) & 0xFF)
    return bytes([kind]) + bytes(out)


def _encode_with_filters(
    data: bytes, width: int, height: int, mode: str, kinds: list[int]
) -> bytes:
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    color = {"L": 0, "LA": 4, "RGB": 2, "RGBA": 6}[mode]
    stride = width * channels
    prev = bytes(stride)
    raw = b""
    for row in range(height):
        line = data[row * stride : (row + 1) * stride]
        raw += _filter_row(kinds[row % len(kinds)], line, prev, channels)
        prev = line
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"".join(
        [
            pixels.PNG_SIGNATURE,
            pixels._chunk(b"IHDR", header),
            pixels._chunk(b"IDAT", zlib.compress(raw)),
            pixels._chunk(b"IEND", b""),
        ]
    )


@pytest.mark.parametrize("kinds", [[0], [1], [2], [3], [4], [4, 3, 2, 1, 0]])
@pytest.mark.parametrize("mode", ["RGBA", "RGB", "LA", "L"])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (7, 13), (257, 3)])
def test_decode_every_filter_type(kinds: list[int], mode: str, width: int, height: int) -> None:
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    data = _smooth(width, height, channels, len(kinds))
    png = _encode_with_filters(data, width, height, mode, kinds)
    assert _png_filters(png) <= set(kinds)
    reference = Image.open(io.BytesIO(png))
    assert reference.tobytes() == data  # Pillow agrees the test encoder is right
    assert decode_png(png)[3] == reference.convert("RGBA").tobytes()


def test_pillow_pngs_use_several_filter_types() -> None:
    """Pillow's own PNGs (what the server sends) use adaptive filtering, not just filter 0."""
    seen: set[int] = set()
    for width, height in SIZES:
        for mode, channels in (("RGBA", 4), ("RGB", 3), ("L", 1), ("LA", 2)):
            image = Image.frombytes(mode, (width, height), _smooth(width, height, channels, 7))
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            seen |= _png_filters(buffer.getvalue())
    assert len(seen) >= 3


@pytest.mark.parametrize("colors", [2, 4, 16, 200])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (7, 13), (257, 3)])
def test_decode_palette_with_transparency(colors: int, width: int, height: int) -> None:
    rng = random.Random(colors)
    palette = [rng.randrange(256) for _ in range(colors * 3)]
    indices = bytes(rng.randrange(colors) for _ in range(width * height))
    image = Image.frombytes("P", (width, height), indices)
    image.putpalette(palette)
    image.info["transparency"] = bytes(rng.randrange(256) for _ in range(colors))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=image.info["transparency"])
    expected = Image.open(io.BytesIO(buffer.getvalue())).convert("RGBA").tobytes()
    assert decode_png(buffer.getvalue())[3] == expected


@pytest.mark.parametrize("mode", ["1", "I;16"])
def test_decode_low_and_high_bit_depth_gray(mode: str) -> None:
    rng = random.Random(5)
    if mode == "1":
        image = Image.frombytes("L", (13, 5), bytes(rng.choice([0, 255]) for _ in range(65)))
        image = image.convert("1")
        expected = image.convert("L").tobytes()
    else:
        values = [rng.randrange(65536) for _ in range(65)]
        image = Image.frombytes("I;16", (13, 5), struct.pack("<65H", *values))
        expected = bytes(v >> 8 for v in values)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    assert decode_png(buffer.getvalue(), None)[2:] == ("L", expected)


def test_decode_gray_and_rgb_color_key() -> None:
    gray = Image.frombytes("L", (4, 1), bytes([0, 10, 20, 10]))
    buffer = io.BytesIO()
    gray.save(buffer, "PNG", transparency=10)
    assert decode_png(buffer.getvalue())[3][3::4] == bytes([255, 0, 255, 0])
    assert decode_png(buffer.getvalue(), None)[2] == "RGBA"
    rgb = Image.frombytes("RGB", (3, 1), bytes([1, 2, 3, 4, 5, 6, 1, 2, 3]))
    buffer = io.BytesIO()
    rgb.save(buffer, "PNG", transparency=(1, 2, 3))
    assert decode_png(buffer.getvalue())[3][3::4] == bytes([0, 255, 0])


def _png16(width: int, color: int, values: list[int], trns: list[int]) -> bytes:
    """A one-row 16-bit PNG (filter 0) of `values` with the tRNS colour key `trns`."""
    row = b"\x00" + struct.pack(f">{len(values)}H", *values)
    header = struct.pack(">IIBBBBB", width, 1, 16, color, 0, 0, 0)
    return b"".join(
        [
            pixels.PNG_SIGNATURE,
            pixels._chunk(b"IHDR", header),
            pixels._chunk(b"tRNS", struct.pack(f">{len(trns)}H", *trns)),
            pixels._chunk(b"IDAT", zlib.compress(row)),
            pixels._chunk(b"IEND", b""),
        ]
    )


def test_decode_16_bit_color_key_matches_all_16_bits() -> None:
    """A 16-bit tRNS key makes only the pixels equal to it in all 16 bits transparent, not
    those that share its high bytes (0x1234 is not the key 0x1299)."""
    gray = _png16(3, 0, [0x1234, 0x1299, 0x1299], [0x1299])
    assert decode_png(gray)[3][3::4] == bytes([255, 0, 0])
    assert decode_png(gray, None)[2] == "RGBA"
    rgb = _png16(2, 2, [0x1234, 0x5678, 0x9ABC, 0x1299, 0x5699, 0x9A99], [0x1299, 0x5699, 0x9A99])
    assert decode_png(rgb)[3] == bytes([0x12, 0x56, 0x9A, 255, 0x12, 0x56, 0x9A, 0])


def test_decode_errors() -> None:
    with pytest.raises(ValueError, match="not a PNG"):
        decode_png(b"GIF89a....")
    header = struct.pack(">IIBBBBB", 2, 2, 8, 6, 0, 0, 1)  # interlace method 1 (Adam7)
    interlaced = pixels.PNG_SIGNATURE + pixels._chunk(b"IHDR", header)
    interlaced += pixels._chunk(b"IDAT", zlib.compress(b"\0" * 40)) + pixels._chunk(b"IEND", b"")
    with pytest.raises(ValueError, match="interlaced"):
        decode_png(interlaced)
    good = encode_png(b"\x00" * 16, 2, 2, "RGBA")
    broken = good[:40] + bytes([good[40] ^ 0xFF]) + good[41:]
    with pytest.raises(ValueError, match="CRC|corrupt|truncated"):
        decode_png(broken)
    with pytest.raises(ValueError, match="truncated"):
        decode_png(good[:-10])
    with pytest.raises(ValueError, match="mode"):
        decode_png(good, "RGB")


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.sampled_from(["RGBA", "L"]),
    st.randoms(use_true_random=False),
)
def test_png_round_trip_property(width: int, height: int, mode: str, rng: random.Random) -> None:
    channels = 4 if mode == "RGBA" else 1
    data = bytes(rng.randrange(256) for _ in range(width * height * channels))
    assert decode_png(encode_png(data, width, height, mode), mode) == (width, height, mode, data)
    # and through Pillow's encoder, which filters rows
    buffer = io.BytesIO()
    Image.frombytes(mode, (width, height), data).save(buffer, "PNG")
    assert decode_png(buffer.getvalue(), mode)[3] == data


@pytest.mark.parametrize(
    ("alpha", "weight", "expected"),
    [(255, 255, 255), (255, 0, 0), (0, 255, 0), (255, 128, 128), (200, 128, 100), (1, 127, 0),
     (1, 128, 1), (128, 128, 64)],
)  # fmt: skip
def test_mask_alpha_multiplies_alpha_rounded(alpha: int, weight: int, expected: int) -> None:
    """alpha' = round(alpha * mask / 255); colours are kept, also where alpha becomes 0."""
    out = mask_alpha(bytes([10, 20, 30, alpha]), bytes([weight]))
    assert out == bytes([10, 20, 30, expected])


def test_mask_alpha_matches_float_rounding() -> None:
    rgba = _random_bytes(40 * 30 * 4, 5)
    mask = _random_bytes(40 * 30, 6)
    out = mask_alpha(bytearray(rgba), memoryview(mask))
    assert isinstance(out, bytes)
    assert out[0::4] == rgba[0::4] and out[1::4] == rgba[1::4] and out[2::4] == rgba[2::4]
    assert list(out[3::4]) == [
        int(a * m / 255 + 0.5) for a, m in zip(rgba[3::4], mask, strict=True)
    ]
    assert mask_alpha(rgba, b"\xff" * (40 * 30)) == rgba  # a rectangle selection: unchanged
    opaque = bytearray(rgba)
    opaque[3::4] = b"\xff" * (40 * 30)
    expected = bytearray(opaque)
    expected[3::4] = mask  # an opaque result's alpha becomes the mask, exactly
    assert mask_alpha(opaque, mask) == expected
    with pytest.raises(ValueError, match="mask has 3 bytes for 4 pixels"):
        mask_alpha(b"\0" * 16, b"\0" * 3)


def test_image_payloads_round_trip() -> None:
    rgba = _random_bytes(5 * 3 * 4, 9)
    raw = image_payload(rgba, 5, 3)
    assert {**raw, "data": str(raw["data"])} == {
        "width": 5,
        "height": 3,
        "format": "rgba8",
        "data": base64.b64encode(rgba).decode("ascii"),
    }
    assert payload_to_rgba(raw) == (5, 3, rgba)
    assert payload_to_rgba({**raw, "data": str(raw["data"])}) == (5, 3, rgba)  # as the server
    png = image_payload(rgba, 5, 3, "png")
    assert png["format"] == "png"
    assert payload_to_rgba(png) == (5, 3, rgba)
    with pytest.raises(ValueError, match="expected"):
        image_payload(rgba, 5, 4)
    with pytest.raises(ValueError, match="format"):
        image_payload(rgba, 5, 3, "jpeg")


def test_mask_payloads_round_trip() -> None:
    mask = _random_bytes(6 * 4, 2)
    a8 = mask_payload(mask, 6, 4)
    assert a8["format"] == "a8" and payload_to_mask(a8) == (6, 4, mask)
    png = mask_payload(mask, 6, 4, "png")
    assert Image.open(io.BytesIO(base64.b64decode(str(png["data"])))).mode == "L"
    assert payload_to_mask(png) == (6, 4, mask)


def test_payload_errors() -> None:
    with pytest.raises(ValueError, match="not an image payload"):
        payload_to_rgba({"width": 1})
    wrong = image_payload(b"\0" * 16, 2, 2, "png")
    wrong["width"] = 3
    with pytest.raises(ValueError, match="PNG is 2x2"):
        payload_to_rgba(wrong)
    short = {"width": 2, "height": 2, "format": "rgba8", "data": base64.b64encode(b"\0").decode()}
    with pytest.raises(ValueError, match="rgba8 payload"):
        payload_to_rgba(short)


def test_module_has_no_third_party_imports() -> None:
    import ast
    from pathlib import Path

    stdlib = {"base64", "binascii", "struct", "zlib", "__future__"}
    tree = ast.parse(Path(pixels.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(n.split(".")[0] in stdlib for n in names), names


def test_payloads_of_later_pixels_are_made_checked_and_encoded_when_sent() -> None:
    rgba, mask = bytes(range(24)), b"\xff\x00"
    made = []
    image = image_payload(Later(lambda: made.append("image") or rgba), 2, 3, "png")
    masked = mask_payload(Later(lambda: made.append("mask") or mask), 2, 1)
    assert made == [] and (image["width"], image["height"], image["format"]) == (2, 3, "png")
    assert payload_to_rgba(image) == (2, 3, rgba) and made == ["image"]
    assert json.loads(json_text(masked))["data"] == "/wA=" and made == ["image", "mask"]
    wrong = image_payload(Later(lambda: rgba[:-1]), 2, 3)  # checked when made
    with pytest.raises(ValueError, match="image data has 23 bytes, expected 2 x 3 x 4"):
        wrong["data"].get()
    with pytest.raises(ValueError, match="image format"):  # a wrong format at once
        image_payload(Later(lambda: rgba), 2, 3, "jpeg")
