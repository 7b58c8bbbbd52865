"""hostkit.transport.json_body: a job's request body is the JSON of the job, byte for byte, and
its long base64 strings are sent from the job itself, never copied whole."""

from __future__ import annotations

import base64
import json
import os
import tracemalloc
from typing import Any

import pytest

from paintbridge.hostkit.transport import (
    LONG_STRING,
    PIECE,
    Base64,
    JsonBody,
    Later,
    json_body,
    json_text,
)


def _base64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode("ascii")


def _job(image: str, mask: str, **extra: Any) -> dict[str, Any]:
    return {
        "task": "inpaint",
        "prompt": 'a door, "quoted" and \u00e9',
        "image": {"width": 1, "height": 1, "format": "rgba8", "data": image},
        "mask": {"width": 1, "height": 1, "format": "a8", "data": mask},
        "seed": 7,
        **extra,
    }


def test_a_small_payload_is_the_json_bytes_as_before() -> None:
    job = _job("AAAA", "AA==")
    assert json_body(job) == json.dumps(job).encode("utf-8")


@pytest.mark.parametrize(
    "sizes",
    [
        (LONG_STRING, LONG_STRING + 1),  # the shortest long strings
        (3 * PIECE + 5, PIECE),  # several pieces, a short last one; exactly one piece
    ],
)
def test_long_strings_give_a_body_equal_to_the_json(sizes: tuple[int, int]) -> None:
    image, mask = (_base64(n)[:n] for n in sizes)
    job = _job(image, mask, extra=[{"data": image}, ("x", 1.5, None, True)])
    body = json_body(job)
    expected = json.dumps(job).encode("utf-8")
    assert isinstance(body, JsonBody)
    assert len(body) == len(expected)
    assert body.tobytes() == bytes(body) == expected
    assert b"".join(body) == expected  # iterating twice gives the same bytes
    pieces = list(body)
    assert all(isinstance(piece, bytes) and 0 < len(piece) <= PIECE for piece in pieces)


@pytest.mark.parametrize(
    "text",
    [
        "A" * LONG_STRING + '"',  # a quote: escaped
        "\u00e9" * LONG_STRING,  # not ASCII: \\u escapes
        "A" * (PIECE + 3) + "\n",  # a control character in the second piece
    ],
)
def test_long_strings_json_must_escape_are_encoded_as_usual(text: str) -> None:
    job = _job(text, _base64(LONG_STRING))
    body = json_body(job)
    assert bytes(body) == json.dumps(job).encode("utf-8")
    assert json.loads(bytes(body)) == job


def test_a_payload_string_equal_to_a_marker_falls_back_to_plain_json() -> None:
    marker = "\x00hostkit-long-string-0\x00"
    job = _job(_base64(LONG_STRING), "AA==", prompt=marker, **{marker: marker})
    body = json_body(job)
    assert body == json.dumps(job).encode("utf-8")
    assert json.loads(body)["prompt"] == marker


@pytest.mark.parametrize(
    "make",
    [
        lambda size: _base64(size),  # base64 text, 32 MB of it
        lambda size: Base64(os.urandom(size)),  # bytes written as base64 while sent
    ],
    ids=["strings", "Base64"],
)
def test_sending_a_body_never_copies_its_data_whole(make: Any) -> None:
    """Building and iterating the body of a job with 24 MB of image data allocates a few
    pieces, not the 32 MB JSON text and its 32 MB of bytes (what json.dumps(job).encode() did);
    a Base64's 32 MB of text is never made at all (a 4096 x 4096 crop's would be 85 MB)."""
    job = _job(make(24 * 1024 * 1024), make(1024 * 1024))
    tracemalloc.start()
    try:
        sent = sum(len(piece) for piece in json_body(job))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sent == len(json_text(job))
    assert peak < 4 * PIECE, peak


@pytest.mark.parametrize("size", [0, 1, 2, 3, PIECE // 4 * 3, PIECE // 4 * 3 + 1, 2 * PIECE + 7])
def test_base64_data_is_its_base64_string(size: int) -> None:
    data = os.urandom(size)
    text = base64.b64encode(data).decode("ascii")
    encoded = Base64(data)
    assert str(encoded) == text and len(encoded) == len(text)
    pieces = list(encoded.pieces())
    assert b"".join(pieces) == text.encode("ascii")
    assert all(0 < len(piece) <= PIECE for piece in pieces)


def test_a_job_with_base64_data_is_sent_as_the_json_of_its_strings() -> None:
    image, mask = os.urandom(PIECE + 11), os.urandom(5)
    job = _job(Base64(image), Base64(mask), prompt="\x00hostkit-long-string-0")
    as_strings = _job(
        base64.b64encode(image).decode(), base64.b64encode(mask).decode(), prompt=job["prompt"]
    )
    expected = json.dumps(as_strings).encode("utf-8")
    body = json_body(job)
    assert isinstance(body, JsonBody) and len(body) == len(expected)
    assert bytes(body) == expected
    assert json_text(job).encode("utf-8") == expected
    with pytest.raises(TypeError, match="not JSON serializable"):
        json_text({"x": object()})


def test_a_payload_string_equal_to_a_marker_falls_back_to_json_text() -> None:
    marker = "\x00hostkit-long-string-0\x00"
    job = _job(Base64(b"\xff" * 3), "AA==", prompt=marker, extra=marker)
    assert json_body(job) == json_text(job).encode("utf-8")
    assert json.loads(json_body(job))["image"]["data"] == "////"


def test_base64_data_is_a_copy_counted_in_bytes() -> None:
    """A buffer of wider items is sent as its bytes (len() and pieces count bytes), and a
    bytearray changed after the job was built does not change what is sent."""
    words = memoryview(bytearray(range(16))).cast("I")
    assert len(Base64(words)) == len(base64.b64encode(bytes(range(16))))
    assert str(Base64(words)) == base64.b64encode(bytes(range(16))).decode()
    pixels = bytearray(b"\x01\x02\x03")
    encoded = Base64(pixels)
    pixels[0] = 0xFF
    assert str(encoded) == "AQID"


def test_a_later_value_is_made_once_when_the_payload_is_first_written() -> None:
    """A plug-in's pixel work, made by the thread that writes the body (a JobWatch's), once."""
    image = os.urandom(PIECE + 5)
    made = []

    def make() -> Base64:
        made.append(1)
        return Base64(image)

    job = _job(Later(make), Later(lambda: "AA=="), prompt="x")
    assert made == []  # building the job made nothing
    expected = json.dumps(_job(base64.b64encode(image).decode(), "AA==", prompt="x"))
    assert bytes(json_body(job)) == expected.encode("utf-8")
    assert json_text(job) == expected
    assert made == [1]


def test_a_later_that_fails_raises_again_and_lets_go_of_what_it_held() -> None:
    held = bytearray(16)
    calls = []

    def make() -> bytes:
        calls.append(len(held))
        raise MemoryError

    later = Later(make)
    for _ in range(2):
        with pytest.raises(MemoryError):
            later.get()
    assert calls == [16]  # made once
    assert later._make is None  # the closure (and the pixels it holds) is gone
