"""Hostile inputs against a real server: each is a 4xx that names the problem, answered before
any expensive work (fast, and the worker never sees it), or, where the input is legitimate
(a 1x1 crop, a mask of all 255, unicode text), a job that works and is recorded.

What tests/server/ already covers (bad base64, wrong sizes, out-of-range numbers, an empty
mask, a PNG whose header lies, body limits) is not repeated here.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from server_support import ServerProcess, assert_no_server_bugs

from paintbridge.engine.types import Limits
from paintbridge.history import History
from paintbridge.hostkit.pixels import image_payload, mask_payload, payload_to_rgba
from paintbridge.hostkit.transport import json_text
from paintbridge.server.payloads import decode_image, decode_mask
from paintbridge.server.schemas import ImagePayload

pytestmark = pytest.mark.slow

# The worst a refusal may take: every one of them happens before the queue.
FAST = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("hostile")
    process = ServerProcess(root, "--queue-size", "4").wait_ready()
    yield process
    process.stop()
    assert_no_server_bugs(process)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        yield client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted_png(width: int, height: int, idat: bytes, depth: int = 8, color: int = 6) -> bytes:
    head = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_payload(data: bytes, width: int = 16, height: int = 16) -> dict[str, object]:
    return {"width": width, "height": height, "format": "png", "data": b64(data)}


def inpaint(image: object = None, mask: object = None, **fields: object) -> bytes:
    job = {
        "task": "inpaint",
        "prompt": "x",
        "steps": 2,
        "image": image or image_payload(b"\x80" * 16 * 16 * 4, 16, 16),
        "mask": mask or mask_payload(b"\xff" * 16 * 16, 16, 16),
        **fields,
    }
    return json_text(job).encode()


def txt2img(**fields: object) -> bytes:
    return json.dumps({"task": "txt2img", "prompt": "x", "steps": 1, **fields}).encode()


RGB = Image.new("RGB", (16, 16), (200, 30, 30))
ZLIB_BOMB = crafted_png(16, 16, zlib.compress(b"\x00" * 64 * 1024 * 1024, 9))  # 64 MiB inflated

# (name, body, status, code, words in the message)
HOSTILE: list[tuple[str, bytes, int, str, str]] = [
    # images
    (
        "bomb-declared-huge",
        inpaint(png_payload(crafted_png(60000, 60000, b""), 60000, 60000)),
        413,
        "too_large",
        "smaller crop",
    ),
    (
        "bomb-declared-small",
        inpaint(png_payload(crafted_png(60000, 60000, b""))),
        400,
        "invalid_request",
        "60000x60000",
    ),
    (
        "zlib-bomb-decodes-only-its-pixels",
        inpaint(png_payload(ZLIB_BOMB), mask_payload(b"\x00" * 256, 16, 16)),
        400,
        "invalid_request",
        "mask is empty",
    ),
    ("jpeg-as-png", inpaint(png_payload(encoded(RGB, "JPEG"))), 400, "invalid_request", "PNG"),
    (
        "cmyk-jpeg-as-png",
        inpaint(png_payload(encoded(RGB.convert("CMYK"), "JPEG"))),
        400,
        "invalid_request",
        "PNG",
    ),
    ("gif-as-png", inpaint(png_payload(encoded(RGB, "GIF"))), 400, "invalid_request", "PNG"),
    ("webp-as-png", inpaint(png_payload(encoded(RGB, "WEBP"))), 400, "invalid_request", "PNG"),
    (
        "jpeg-as-mask",
        inpaint(mask=png_payload(encoded(RGB.convert("L"), "JPEG"))),
        400,
        "invalid_request",
        "PNG",
    ),
    (
        "megabyte-of-base64-for-1x1",
        inpaint(
            {"width": 1, "height": 1, "format": "rgba8", "data": "AAAA" * 250_000},
            mask_payload(b"\xff", 1, 1),
        ),
        400,
        "invalid_request",
        "1000000 characters",
    ),
    (
        "png-of-megabytes-for-1x1",
        inpaint(
            {"width": 1, "height": 1, "format": "png", "data": "AAAA" * 1_500_000},
            mask_payload(b"\xff", 1, 1),
        ),
        413,
        "too_large",
        "far more than any PNG",
    ),
    (
        "zero-by-zero",
        inpaint(
            {"width": 0, "height": 0, "format": "rgba8", "data": ""},
            {"width": 0, "height": 0, "format": "a8", "data": ""},
        ),
        400,
        "invalid_request",
        "1x1",
    ),
    (
        "negative-size",
        inpaint({"width": -4, "height": 4, "format": "rgba8", "data": ""}),
        400,
        "invalid_request",
        "1x1",
    ),
    # numbers that JSON parsers accept but are not numbers
    (
        "nan-guidance",
        b'{"task": "txt2img", "prompt": "x", "guidance": NaN}',
        400,
        "invalid_request",
        "finite",
    ),
    (
        "infinite-guidance",
        b'{"task": "txt2img", "prompt": "x", "guidance": Infinity}',
        400,
        "invalid_request",
        "finite",
    ),
    ("nan-strength", inpaint()[:-1] + b', "strength": NaN}', 400, "invalid_request", "finite"),
    (
        "minus-infinite-strength",
        inpaint()[:-1] + b', "strength": -Infinity}',
        400,
        "invalid_request",
        "strength",
    ),
    (
        "seed-1e400",
        b'{"task": "txt2img", "prompt": "x", "seed": 1e400}',
        400,
        "invalid_request",
        "seed",
    ),
    ("seed-2**64", txt2img(seed=2**64), 400, "invalid_request", "seed"),
    ("width-2**63", txt2img(width=2**63, height=64), 400, "invalid_request", "width"),
    ("steps-2**70", txt2img(steps=2**70), 400, "invalid_request", "steps"),
    # text
    ("100kB-prompt", txt2img(prompt="x" * 100_000), 400, "invalid_request", "4000"),
    ("100kB-unicode-prompt", txt2img(prompt="\U0001f3a8" * 25_000), 400, "invalid_request", "4000"),
    (
        "lone-surrogate-prompt",
        b'{"task": "txt2img", "prompt": "a \\ud800 b"}',
        400,
        "invalid_request",
        "surrogate",
    ),
    (
        "lone-surrogate-negative",
        b'{"task": "txt2img", "prompt": "a", "negative_prompt": "\\udfff"}',
        400,
        "invalid_request",
        "negative_prompt",
    ),
    (
        "deeply-nested-json",
        b'{"task": "txt2img", "prompt": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        400,
        "invalid_request",
        "JSON",
    ),
    # models: only names inside the models folders
    ("model-dotdot", txt2img(model="../../etc/secret.safetensors"), 400, "invalid_request", ".."),
    ("model-dotdot-inside", txt2img(model="a/../../b"), 400, "invalid_request", ".."),
    ("model-test-dotdot", txt2img(model="test:../../x"), 400, "invalid_request", ".."),
    ("model-absolute", txt2img(model="/etc/passwd"), 400, "invalid_request", "outside"),
    ("model-home", txt2img(model="~/m.safetensors"), 400, "invalid_request", "outside"),
    (
        "model-url",
        txt2img(model="https://evil.example/m.safetensors"),
        400,
        "invalid_request",
        "not a URL",
    ),
    ("model-file-url", txt2img(model="file:///etc/passwd"), 400, "invalid_request", "not a URL"),
    ("model-pickle", txt2img(model="x.ckpt"), 404, "model_not_found", "x.ckpt"),
    ("model-nul", txt2img(model="a\x00b"), 404, "model_not_found", "unknown model"),
    ("model-empty", txt2img(model=""), 400, "invalid_request", "model"),
    ("scheduler-path", txt2img(scheduler="../x"), 400, "invalid_request", "scheduler"),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_hostile_input_is_a_fast_4xx(
    http: httpx.Client, server: ServerProcess, body: bytes, status: int, code: str, words: str
) -> None:
    started = time.monotonic()
    response = http.post("/v1/jobs", content=body)
    took = time.monotonic() - started
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"], error
    assert took < FAST, f"{took:.2f} s: the refusal came after expensive work"
    assert http.get("/v1/health").json()["queue"]["length"] == 0  # nothing reached the queue


def test_a_body_claiming_gigabytes_is_refused_before_it_is_read(server: ServerProcess) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            (
                "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {server.token}\r\nContent-Type: application/json\r\n"
                "Content-Length: 4000000000\r\n\r\n"
            ).encode()
            + b'{"task": "img2img", "image": {"data": "AAAA'
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("rgba-16bit", crafted_png(4, 4, zlib.compress((b"\x00" + b"\x12\x34" * 16) * 4), 16, 6)),
        ("rgb-16bit", encoded(Image.new("I;16", (4, 4), 4000), "PNG")),
        ("palette", encoded(RGB.resize((4, 4)).convert("P"), "PNG")),
        ("gray", encoded(Image.new("L", (4, 4), 77), "PNG")),
        ("gray-alpha", encoded(Image.new("LA", (4, 4), (77, 9)), "PNG")),
        ("bilevel", encoded(Image.new("1", (4, 4), 1), "PNG")),
    ],
)
def test_every_png_kind_decodes(name: str, image: bytes) -> None:
    """Where PNG is expected any PNG works (16-bit, palette, gray, 1-bit): converted to RGBA or
    gray of the declared size, never a 5xx."""
    payload = ImagePayload(width=4, height=4, format="png", data=b64(image))
    decoded = decode_image(payload, Limits())
    assert decoded.mode == "RGBA" and decoded.size == (4, 4)
    assert decode_mask(payload, Limits()).mode == "L"


def test_16_bit_gray_keeps_its_values_end_to_end(http: httpx.Client) -> None:
    """Scaled to 8 bits, not clipped at 255 as Pillow's convert does: an image at 32768 stays
    mid gray (not white), a mask at 300/65535 is 1/255 strength (not a full mask).
    test:identity gives its input back."""
    wide = encoded(Image.new("I;16", (16, 16), 32768), "PNG")
    faint = encoded(Image.new("I;16", (16, 16), 300), "PNG")
    img2img = {**json.loads(inpaint(png_payload(wide))), "task": "img2img"}
    del img2img["mask"]
    jobs = {"image": img2img, "mask": json.loads(inpaint(mask=png_payload(faint)))}
    results = {}
    for name, job in jobs.items():
        response = http.post("/v1/jobs", json={**job, "model": "test:identity"})
        assert response.status_code == 202, (name, response.text)
        job_id = response.json()["id"]
        deadline = time.monotonic() + 120
        while (answer := http.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
        assert answer["state"] == "done", (name, answer)
        results[name] = payload_to_rgba(answer["results"][0]["image"])[2]
    image = results["image"]
    assert set(image[0::4]) == set(image[1::4]) == set(image[2::4]) == {128}
    assert set(image[3::4]) == {255}
    assert set(results["mask"][3::4]) == {1}


def test_legitimate_extremes_work_and_are_recorded(
    http: httpx.Client, server: ServerProcess
) -> None:
    """A 1x1 crop, a mask of all 255, and unicode (emoji, RTL, a NUL) in the prompt."""
    prompt = "\U0001f3a8 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u4e2d\u6587 \u202e a\x00b"
    jobs = {
        "one-pixel": inpaint(
            image_payload(b"\x10\x20\x30\xff", 1, 1), mask_payload(b"\xff", 1, 1), seed=5
        ),
        "all-255-mask": inpaint(seed=6),
        "unicode": txt2img(prompt=prompt, width=64, height=64, seed=7),
    }
    ids = {}
    for name, body in jobs.items():
        response = http.post("/v1/jobs", content=body)
        assert response.status_code == 202, (name, response.text)
        ids[name] = response.json()["id"]
    answers = {}
    for name, job_id in ids.items():
        deadline = time.monotonic() + 120
        while (answer := http.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
        assert answer["state"] == "done", (name, answer)
        answers[name] = answer
    width, height, rgba = payload_to_rgba(answers["one-pixel"]["results"][0]["image"])
    assert (width, height) == (1, 1) and rgba[3] == 255
    width, height, rgba = payload_to_rgba(answers["all-255-mask"]["results"][0]["image"])
    assert (width, height) == (16, 16) and set(rgba[3::4]) == {255}
    entries = {entry.job: entry for entry in History(server.history_dir).entries()}
    assert entries[ids["unicode"]].prompt == prompt
    assert answers["unicode"]["parameters"]["prompt"] == prompt
