"""The pure parts of the server (Host parsing, token, error messages, discovery file), and the
app in-process with FastAPI's TestClient: no input, however odd, gets a 5xx."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paintbridge.engine.types import EngineSettings, Limits
from paintbridge.hostkit.discovery import live_proof
from paintbridge.server import ServerSettings, create_app, discovery
from paintbridge.server.guard import allowed_host_names, is_loopback, split_host
from paintbridge.server.handlers import validation_message
from paintbridge.server.settings import body_limit_for

TOKEN = "in-process-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost:7860", ("localhost", "7860")),
        ("[::1]:80", ("[::1]", "80")),
        ("[::1]", ("[::1]", None)),
        ("[::1", None),
        ("[::1]x", None),
        ("host:port", None),
        ("host:123456", None),
        (":80", None),
        ("", None),
    ],
)
def test_split_host(value: str, expected: tuple[str, str | None] | None) -> None:
    assert split_host(value) == expected


def test_allowed_host_names() -> None:
    assert allowed_host_names("127.0.0.1") == {"localhost", "127.0.0.1", "[::1]"}
    assert "[fe80::1]" in allowed_host_names("fe80::1")
    names = allowed_host_names("0.0.0.0", ["Pb.Example.org", " "])
    assert "0.0.0.0" not in names and "pb.example.org" in names and "" not in names


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("192.168.1.2", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_default_body_limit_fits_the_largest_valid_request() -> None:
    limits = Limits()
    image_b64 = (limits.max_pixels * 4 + 2) // 3 * 4
    mask_b64 = (limits.max_pixels + 2) // 3 * 4
    assert image_b64 + mask_b64 < body_limit_for(limits) < (image_b64 + mask_b64) * 1.1


def test_settings_refuse_an_empty_token() -> None:
    with pytest.raises(ValueError, match="token"):
        ServerSettings(token="")


def test_validation_message_names_fields() -> None:
    errors = [
        {"type": "missing", "loc": ("body", "prompt"), "msg": "Field required"},
        {"type": "int_type", "loc": ("body", "image", "width"), "msg": "Input should be a "
         "valid integer", "input": "x" * 100},
    ]  # fmt: skip
    message = validation_message(errors)
    assert message.startswith("`prompt` is required; `image.width`: Input should be")
    assert "..." in message and len(message) < 200


def test_discovery_file_is_0600_and_only_removed_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "config" / "server.json"
    info = discovery.write(path, url="http://127.0.0.1:1", token="abc", version="9")
    assert info["pid"] == os.getpid() and discovery.read(path) == info
    if os.name != "nt":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not discovery.remove_if_ours(path, "another-token")
    path.write_text(json.dumps({**info, "pid": info["pid"] + 1}))
    assert not discovery.remove_if_ours(path, "abc") and path.exists()
    discovery.write(path, url="http://127.0.0.1:1", token="abc", version="9")
    assert discovery.remove_if_ours(path, "abc") and not path.exists()
    assert not discovery.remove_if_ours(path, "abc")  # already gone: no error


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("inprocess")
    settings = ServerSettings(
        token=TOKEN,
        engine=EngineSettings(default_model="test:tiny", model_dirs=(root / "models",)),
        history_dir=root / "history",
        queue_size=1,
        max_body_bytes=64 * 1024,
        discovery_file=root / "server.json",
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1:7860") as client:
        written = json.loads((root / "server.json").read_text())
        assert written["token"] == TOKEN and written["history"] == str(root / "history")
        yield client
    assert not (root / "server.json").exists()


def test_in_process_routes(app_client: TestClient) -> None:
    assert app_client.get("/v1/live").json() == {"ok": True}
    # with a challenge, the proof that the server holds the token (hostkit.discovery)
    proof = app_client.get("/v1/live?challenge=00ff17").json()["proof"]
    url = app_client.app.state.runtime.settings.url  # type: ignore[attr-defined]
    assert proof == live_proof(TOKEN, url, "00ff17") != live_proof("other", url, "00ff17")
    assert proof != live_proof(TOKEN, "http://127.0.0.1:1", "00ff17")  # another server's
    for bad in ("xyz", "0" * 65, ""):
        assert app_client.get(f"/v1/live?challenge={bad}").status_code in (400, 422), bad
    assert app_client.head("/v1/live").status_code == 200  # health checkers probe with HEAD
    assert app_client.get("/v1/health").status_code == 401
    assert app_client.head("/v1/health").status_code == 401
    health = app_client.get("/v1/health", headers=AUTH).json()
    assert health["queue"] == {"length": 0, "max": 1} and health["model"] is None
    models = app_client.get("/v1/models", headers=AUTH).json()
    assert models["default"] == "test:tiny"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
job_fields = st.fixed_dictionaries(
    {},
    optional={
        "task": st.sampled_from(["txt2img", "img2img", "inpaint", "x"]) | json_values,
        "prompt": st.text(max_size=30) | json_values,
        "width": st.integers(-10, 10_000) | json_values,
        "height": st.integers(-10, 10_000) | json_values,
        "steps": st.integers(-1, 200) | json_values,
        "strength": st.floats(allow_nan=True) | json_values,
        "count": st.integers(-1, 10) | json_values,
        "seed": st.integers(-(2**70), 2**70) | json_values,
        "model": st.sampled_from(["../x", "/etc", "a/b/c", "nope", "http://x"]) | json_values,
        "image": st.fixed_dictionaries(
            {
                "width": st.integers(-1, 5000),
                "height": st.integers(-1, 5000),
                "format": st.sampled_from(["rgba8", "png", "a8", "jpeg"]),
                "data": st.sampled_from(["", "AAAA", "@", "iVBORw0KGgo="]),
            }
        )
        | json_values,  # fmt: skip
        "mask": json_values,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=job_fields | json_values)
def test_no_job_body_gets_a_5xx(app_client: TestClient, body: object) -> None:
    # Valid-looking txt2img jobs would queue real work: keep them small and let 429s happen.
    content = json.dumps(body)  # NaN and Infinity too: Python's JSON parser accepts them
    headers = {**AUTH, "Content-Type": "application/json"}
    response = app_client.post("/v1/jobs", headers=headers, content=content)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]
    else:
        app_client.post(f"/v1/jobs/{response.json()['id']}/cancel", headers=AUTH)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.text(alphabet="/abcv1jos%?=.-_{}", max_size=30),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
)
def test_no_route_or_method_gets_a_5xx(app_client: TestClient, path: str, method: str) -> None:
    response = app_client.request(method, "/" + path.lstrip("/"), headers=AUTH)
    assert response.status_code < 500, response.text
