"""Every limit and refusal of a real server, over a real socket: each answer is a 4xx with the
`{"error": {"code", "message"}}` shape, never a 5xx, and the server keeps serving."""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from server_support import ServerProcess, assert_no_server_bugs, wait_for

from paintbridge.hostkit import client as hk
from paintbridge.hostkit.pixels import image_payload, mask_payload
from paintbridge.hostkit.transport import json_text

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("limits")
    process = ServerProcess(root, "--queue-size", "1", "--max-body-mb", "1").wait_ready()
    yield process
    process.stop()
    assert_no_server_bugs(process)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    return body["error"]["message"]


def png_b64(width: int, height: int, mode: str = "RGBA") -> str:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def inpaint_job(width: int = 16, height: int = 16, **changes: object) -> dict[str, object]:
    job: dict[str, object] = {
        "task": "inpaint",
        "prompt": "x",
        "steps": 2,
        "image": image_payload(b"\x80" * (width * height * 4), width, height),
        "mask": mask_payload(b"\xff" * (width * height), width, height),
    }
    job.update(changes)
    return json.loads(json_text(job))  # hostkit's Base64 data as the strings httpx sends


# --- auth, host, CORS -------------------------------------------------------------------------


def test_live_needs_no_token_but_everything_else_does(server: ServerProcess) -> None:
    assert server.client(token="").live() == {"ok": True}
    for token in ("", "wrong-token"):
        client = server.client(token=token)
        with pytest.raises(hk.Unauthorized):
            client.health()
        with pytest.raises(hk.Unauthorized):
            client.submit({"task": "txt2img", "prompt": "x"})
        with pytest.raises(hk.Unauthorized):
            client.result("0123456789abcdef", 0)
    response = httpx.get(server.url + "/openapi.json")
    assert "bearer" in error_of(response, 401, "unauthorized").lower()
    assert response.headers["www-authenticate"] == "Bearer"


def test_openapi_describes_the_protocol(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    assert {"/v1/live", "/v1/health", "/v1/models", "/v1/jobs", "/v1/jobs/{job_id}"} <= set(
        schema["paths"]
    )
    job = schema["components"]["schemas"]["JobRequest"]
    assert {"task", "prompt"} == set(job["required"])
    # /v1/jobs parses its own body (from bytes); the schema must still say what it takes
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/JobRequest"}
    assert job["properties"]["image"]["anyOf"][0] == {"$ref": "#/components/schemas/ImagePayload"}
    assert "data" in schema["components"]["schemas"]["ImagePayload"]["properties"]
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), sorted(ids)  # OpenAPI: unique (client generators)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", ""])
def test_a_foreign_host_header_is_misdirected(server: ServerProcess, host: str) -> None:
    response = httpx.get(
        server.url + "/v1/health",
        headers={"Host": host, "Authorization": f"Bearer {server.token}"},
    )
    assert "allow-host" in error_of(response, 421, "misdirected")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "LOCALHOST:{port}", "[::1]:{port}"])
def test_loopback_host_names_are_accepted(server: ServerProcess, host: str) -> None:
    response = httpx.get(
        server.url + "/v1/health",
        headers={"Host": host.format(port=server.port), "Authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 200, response.text


def test_no_cors_headers_even_for_a_preflight(server: ServerProcess) -> None:
    response = httpx.options(
        server.url + "/v1/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code in (401, 405)
    assert not any(name.lower().startswith("access-control-") for name in response.headers)


# --- body and image limits --------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_by_content_length(http: httpx.Client) -> None:
    payload = b'{"task": "txt2img", "prompt": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = http.post("/v1/jobs", content=payload, headers={"Content-Type": "application/json"})
    assert "1048576 bytes" in error_of(response, 413, "too_large")


def test_a_chunked_body_is_counted_as_it_arrives(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"task": "txt2img", "prompt": "'
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MiB in all, with no Content-Length
        yield b'"}'

    response = http.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    error_of(response, 413, "too_large")


@pytest.mark.parametrize("sized", [True, False], ids=["Content-Length", "chunked"])
def test_a_body_in_many_pieces_arrives_whole(http: httpx.Client, sized: bool) -> None:
    # the field that fails comes after the image, so the whole body was read and parsed
    body = json.dumps({**inpaint_job(), "strength": 1.5}).encode()
    pieces = [body[start : start + 97] for start in range(0, len(body), 97)]
    headers = {"Content-Type": "application/json"}
    if sized:  # else sent chunked
        headers["Content-Length"] = str(len(body))
    response = http.post("/v1/jobs", content=iter(pieces), headers=headers)
    assert "strength" in error_of(response, 400, "invalid_request")


def test_a_lying_content_length_cannot_sneak_a_big_body_in(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = (
            "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server.token}\r\nContent-Type: application/json\r\n"
            "Content-Length: 20\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 200_000)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")  # the JSON is cut at 20 bytes: invalid


def test_an_image_over_the_pixel_limit_is_413_before_decoding(http: httpx.Client) -> None:
    job = inpaint_job()
    job["image"] = {"width": 5000, "height": 5000, "format": "rgba8", "data": ""}
    job["mask"] = {"width": 5000, "height": 5000, "format": "a8", "data": ""}
    assert "smaller crop" in error_of(http.post("/v1/jobs", json=job), 413, "too_large")


def test_a_png_whose_header_lies_about_its_size_is_refused(http: httpx.Client) -> None:
    job = inpaint_job()
    job["image"] = {"width": 16, "height": 16, "format": "png", "data": png_b64(4000, 4000)}
    assert "4000x4000" in error_of(http.post("/v1/jobs", json=job), 400, "invalid_request")


@pytest.mark.parametrize(
    ("job", "words"),
    [
        ({"task": "txt2img", "prompt": "x", "width": 8192, "height": 8192}, "pixels"),
        ({"task": "txt2img", "prompt": "x", "width": 9000, "height": 8}, "width"),
        ({"task": "txt2img", "prompt": "x", "steps": 151}, "steps"),
        ({"task": "txt2img", "prompt": "x", "steps": 0}, "steps"),
        ({"task": "txt2img", "prompt": "x", "count": 9}, "count"),
        ({"task": "txt2img", "prompt": "x" * 4001}, "prompt"),
        ({"task": "txt2img", "prompt": "x", "negative_prompt": "n" * 4001}, "negative_prompt"),
        ({"task": "txt2img", "prompt": "x", "guidance": -1.0}, "guidance"),
        ({"task": "txt2img", "prompt": "x", "seed": -1}, "seed"),
        ({"task": "txt2img", "prompt": "x", "seamless": "z"}, "seamless"),
        ({"task": "txt2img", "prompt": "x", "steps": "20"}, "steps"),
        ({"task": "txt2img", "prompt": "x", "negative-prompt": ""}, "negative-prompt"),
        ({"task": "paint", "prompt": "x"}, "task"),
        ({"prompt": "x"}, "task"),
        ({"task": "img2img", "prompt": "x"}, "image"),
        ({"task": "inpaint", "prompt": "x", "image": inpaint_job()["image"]}, "mask"),
        (inpaint_job(strength=1.5), "strength"),
        (  # no steps: the default, raised to run one step, would be 1000
            {"task": "img2img", "prompt": "x", "image": inpaint_job()["image"], "strength": 0.001},
            "`strength` 0.001 is too low for the default steps: it needs 1000 steps",
        ),
        (inpaint_job(steps=None, strength=0.001), "too low for the default steps"),
        (
            {"task": "txt2img", "prompt": "x", "model": "test:tiny-inpaint"},
            "'test:tiny-inpaint' is an inpainting model",
        ),
        ({**inpaint_job(), "width": 32}, "is for txt2img"),
        (
            inpaint_job(image={"width": 16, "height": 16, "format": "rgba8", "data": "@@@"}),
            "base64",
        ),
        (inpaint_job(image={"width": 16, "height": 16, "format": "png", "data": "AAAA"}), "PNG"),
        (
            inpaint_job(image={"width": 16, "height": 16, "format": "rgba8", "data": "AAAA"}),
            "bytes",
        ),
        (inpaint_job(image={"width": 0, "height": 16, "format": "rgba8", "data": ""}), "1x1"),
        (inpaint_job(mask=mask_payload(b"\xff" * 64, 8, 8)), "size of `image`"),
        (inpaint_job(mask=mask_payload(b"\x00" * 256, 16, 16)), "mask is empty"),
        (
            inpaint_job(mask={"width": 16, "height": 16, "format": "png", "data": png_b64(8, 8)}),
            "8x8",
        ),
        (inpaint_job(mask=image_payload(b"\x00" * 1024, 16, 16)), "a8 or png"),
    ],
)
def test_bad_requests_are_400_with_a_message_naming_the_problem(
    http: httpx.Client, job: dict[str, object], words: str
) -> None:
    assert words in error_of(http.post("/v1/jobs", json=job), 400, "invalid_request")


def test_hostkit_sees_a_bad_request_as_rejected(server: ServerProcess) -> None:
    with pytest.raises(hk.RequestRejected) as rejected:
        server.client().submit({"task": "txt2img", "prompt": "x", "steps": 1000})
    assert rejected.value.status == 400 and rejected.value.code == "invalid_request"


def test_hostkit_sees_a_body_over_the_limit_as_too_large(server: ServerProcess) -> None:
    """16 MB to a server taking 1 MB: it answers 413 and closes mid-upload, which the client
    sees as a reset; hostkit must not call that "server not running"."""
    from paintbridge.hostkit.tasks import inpaint_job

    side = 2048
    job = inpaint_job(bytes(side * side * 4), b"\xff" * side * side, side, side, prompt="x")
    with pytest.raises(hk.RequestRejected) as rejected:
        server.client().submit(job)
    assert rejected.value.code == "too_large"
    assert "smaller" in rejected.value.message and "Could not reach" not in rejected.value.message
    assert server.client().is_live()


def test_an_unknown_model_is_404(http: httpx.Client) -> None:
    job = {"task": "txt2img", "prompt": "x", "model": "no-such-model"}
    assert "no-such-model" in error_of(http.post("/v1/jobs", json=job), 404, "model_not_found")


@pytest.mark.parametrize("model", ["nobody/not-in-the-cache", "sdxl"])
def test_a_hub_model_not_cached_offline_is_404_at_submit(
    server: ServerProcess, http: httpx.Client, model: str
) -> None:
    """The test server runs with HF_HUB_OFFLINE=1: nothing is queued for a model it cannot
    load, and the answer says what to do."""
    job = {"task": "txt2img", "prompt": "x", "steps": 2, "model": model}
    message = error_of(http.post("/v1/jobs", json=job), 404, "model_not_found")
    assert "not in the local Hugging Face cache" in message and "HF_HUB_OFFLINE=1" in message
    assert "go online" in message and "local diffusers folder" in message
    assert server.client().health()["queue"]["length"] == 0


def test_a_model_path_outside_the_models_folders_is_refused(http: httpx.Client) -> None:
    job = {"task": "txt2img", "prompt": "x", "model": "/etc/passwd.safetensors"}
    response = http.post("/v1/jobs", json=job)
    assert response.status_code in (400, 404)


# --- routes and shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code"),
    [
        ("GET", "/nope", None, 404, "not_found"),
        ("GET", "/v1/jobs/0123456789abcdef", None, 404, "not_found"),
        ("POST", "/v1/jobs/0123456789abcdef/cancel", None, 404, "not_found"),
        ("DELETE", "/v1/jobs", None, 405, "method_not_allowed"),
        ("POST", "/v1/jobs", b"{not json", 400, "invalid_request"),
        ("POST", "/v1/jobs", b"[1, 2]", 400, "invalid_request"),
        ("POST", "/v1/jobs", b"", 400, "invalid_request"),
        ("POST", "/v1/jobs", b"\xff\xfe\x00", 400, "invalid_request"),
        ("GET", "/v1/jobs/x?image_format=jpeg", None, 400, "invalid_request"),
        ("GET", "/v1/jobs/0123456789abcdef/results/0", None, 404, "not_found"),
        ("GET", "/v1/jobs/x/results/0?format=jpeg", None, 400, "invalid_request"),
        ("GET", "/v1/jobs/x/results/first", None, 400, "invalid_request"),
        ("GET", "/v1/jobs/x?wait=60", None, 400, "invalid_request"),
        ("GET", "/v1/jobs/x?wait=-1", None, 400, "invalid_request"),
        ("GET", "/v1/jobs/x?wait=nan", None, 400, "invalid_request"),
    ],
)
def test_errors_always_have_the_protocol_shape(
    http: httpx.Client, method: str, path: str, content: bytes | None, status: int, code: str
) -> None:
    headers = {"Content-Type": "application/json"}
    response = http.request(method, path, content=content, headers=headers)
    message = error_of(response, status, code)
    if "wait=nan" in path:
        assert "finite number" in message, message  # was "less than or equal to 5, got 'nan'"


# --- queue ------------------------------------------------------------------------------------


def test_a_full_queue_is_429_with_retry_after(server: ServerProcess) -> None:
    client = server.client()
    long_job = {"task": "txt2img", "prompt": "x", "width": 64, "height": 64, "steps": 150}
    running = client.submit({**long_job, "count": 8})
    wait_for(lambda: client.poll(running).state == "running")
    waiting = client.submit(long_job)
    try:
        assert client.health()["queue"] == {"length": 1, "max": 1}
        with pytest.raises(hk.QueueFull) as full:
            client.submit(long_job)
        assert full.value.retry_after is not None and full.value.retry_after >= 1
        assert "queue is full" in full.value.message
    finally:
        client.cancel(waiting)
        client.cancel(running)
    wait_for(lambda: client.poll(running).finished)
    assert client.poll(waiting).state == "cancelled"
    # a slot is free again
    job_id = client.submit({**long_job, "steps": 2})
    assert client.wait(job_id, poll_interval=0.05)[0].width == 64
