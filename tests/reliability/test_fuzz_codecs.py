"""Hostile bytes into hostkit's PNG codec: a ValueError with a reason, never anything else.

hostkit decodes what a server sends (a remote one may be hostile or broken), inside the user's
editor: an exception other than ValueError there is a traceback in Krita, GIMP or Blender.
Three layers of input: arbitrary bytes, a real PNG with bytes flipped (the CRC check must catch
them), and well-formed chunk streams with valid CRCs whose contents are arbitrary.
"""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paintbridge.hostkit import pixels
from paintbridge.hostkit.pixels import decode_png, encode_png, payload_to_mask, payload_to_rgba

GOOD = encode_png(bytes(range(256)) * 3, 16, 12, "RGBA")


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def ihdr(width: int, height: int, depth: int, color: int, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))


def decodes_or_value_error(data: bytes) -> None:
    for mode in ("RGBA", "L", None):
        try:
            width, height, got, out = decode_png(data, mode)
        except ValueError as exc:
            assert str(exc)
            continue
        assert len(out) == width * height * (4 if got == "RGBA" else 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_value_error(data)
    decodes_or_value_error(pixels.PNG_SIGNATURE + data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), min_size=1))
def test_a_real_png_with_flipped_bytes(flips: list[tuple[int, int]]) -> None:
    data = bytearray(GOOD)
    for position, xor in flips:
        data[position] ^= xor
    decodes_or_value_error(bytes(data))
    decodes_or_value_error(bytes(data[: flips[0][0]]))  # and cut short there


# Well-formed chunk streams: valid CRCs, so the decoder's own checks are what is tested.
headers = st.builds(
    ihdr,
    st.integers(0, 24),
    st.integers(0, 24),
    st.sampled_from([1, 2, 4, 8, 16, 3, 32]),
    st.sampled_from([0, 2, 3, 4, 6, 1, 7]),
    st.sampled_from([0, 0, 0, 1]),
)
bodies = st.one_of(
    st.builds(lambda raw: chunk(b"IDAT", zlib.compress(raw)), st.binary(max_size=2500)),
    st.builds(lambda raw: chunk(b"IDAT", raw), st.binary(max_size=64)),
    st.builds(lambda raw: chunk(b"PLTE", raw), st.binary(max_size=48)),
    st.builds(lambda raw: chunk(b"tRNS", raw), st.binary(max_size=8)),
    st.builds(lambda raw: chunk(b"IHDR", raw), st.binary(max_size=16)),
)
streams = st.builds(
    lambda head, rest, end: pixels.PNG_SIGNATURE + head + b"".join(rest) + end,
    headers,
    st.lists(bodies, max_size=4),
    st.sampled_from([chunk(b"IEND", b""), b""]),
)


@settings(max_examples=400, deadline=None)
@given(streams)
def test_well_formed_chunk_streams(data: bytes) -> None:
    decodes_or_value_error(data)


_SIG = pixels.PNG_SIGNATURE
_GRAY_1X1 = chunk(b"IDAT", zlib.compress(b"\x00\x00\x00"))


@pytest.mark.parametrize(
    "data",
    [
        _SIG + chunk(b"IHDR", b"\x00\x00\x00\x01") + chunk(b"IEND", b""),  # IHDR of 4 bytes
        _SIG + ihdr(1, 1, 8, 0) + chunk(b"tRNS", b"") + _GRAY_1X1 + chunk(b"IEND", b""),
        _SIG + ihdr(1, 1, 2, 0) + chunk(b"tRNS", b"\x01") + _GRAY_1X1 + chunk(b"IEND", b""),
        _SIG + ihdr(1, 1, 16, 0) + chunk(b"tRNS", b"") + _GRAY_1X1 + chunk(b"IEND", b""),
    ],
    ids=["short-IHDR", "empty-tRNS-gray8", "short-tRNS-gray2", "empty-tRNS-gray16"],
)
def test_short_header_and_transparency_chunks_are_value_errors(data: bytes) -> None:
    """Found by the stream fuzzer above: these once raised struct.error/IndexError."""
    decodes_or_value_error(data)


payload_values = st.one_of(
    st.none(), st.integers(-3, 70), st.text(max_size=8), st.binary(max_size=8), st.lists(st.none())
)
payloads = st.one_of(
    st.dictionaries(
        st.sampled_from(["width", "height", "format", "data"]), payload_values, max_size=4
    ),
    st.fixed_dictionaries(
        {
            "width": st.integers(-1, 20),
            "height": st.integers(-1, 20),
            "format": st.sampled_from(["rgba8", "a8", "png", "jpeg"]),
            "data": st.one_of(
                st.binary(max_size=1700).map(lambda raw: base64.b64encode(raw).decode()),
                st.just(base64.b64encode(GOOD).decode()),
                st.text(max_size=20),
            ),
        }
    ),
    st.none(),
    st.lists(st.integers()),
)


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_any_result_payload(payload: object) -> None:
    for decode in (payload_to_rgba, payload_to_mask):
        try:
            decode(payload)
        except ValueError as exc:
            assert str(exc)
