"""Security hardening found by review: each case here was a real server answer (a 500, or a
web page let through the A1111 opt-out) before its fix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from paintbridge.engine.models import _looks_like_path, resolve_model
from paintbridge.engine.types import EngineSettings
from paintbridge.errors import InvalidRequest, ModelNotFound
from paintbridge.server import ServerSettings, create_app
from paintbridge.server.guard import Guard

TOKEN = "secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Names the OS refuses to stat: longer than NAME_MAX (ENAMETOOLONG), or with a NUL byte.
UNSTATABLE = [
    "x" * 5000 + ".safetensors",
    "x" * 5000,
    "a" * 300 + "/" + "b" * 300,
    "sub/" + "y" * 5000 + "/z.safetensors",
    "a\x00b.safetensors",
    "a\x00b",
]


def _settings(tmp_path: Path) -> EngineSettings:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    return EngineSettings(model_dirs=(models,), allow_any_path=False, allow_download=False)


@pytest.mark.parametrize("name", UNSTATABLE, ids=lambda n: repr(n[:12]))
def test_a_name_the_os_refuses_is_an_unknown_model(tmp_path: Path, name: str) -> None:
    with pytest.raises((ModelNotFound, InvalidRequest)):
        resolve_model(name, _settings(tmp_path))


def test_a_name_the_os_refuses_is_a_4xx_from_the_server(tmp_path: Path) -> None:
    settings = ServerSettings(
        token=TOKEN, engine=_settings(tmp_path), history_dir=tmp_path / "history"
    )
    app = create_app(settings, engine=object())  # type: ignore[arg-type]
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        for name in UNSTATABLE:
            answer = client.post(
                "/v1/jobs", json={"task": "txt2img", "prompt": "x", "model": name}, headers=AUTH
            )
            assert answer.status_code in (400, 404), (name[:20], answer.text)
            assert answer.json()["error"]["code"] in ("invalid_request", "model_not_found")


@pytest.mark.parametrize("name", ["C:x", "c:model", "C:sub/x", "C:\\x", "\\\\server\\share\\x"])
def test_windows_drive_and_unc_names_are_paths_confined_to_the_models_folders(name: str) -> None:
    # On Windows `models / "C:x"` is `C:x` (the folder is dropped): such a name must take the
    # path branch, which checks the result is inside the models folders, not the bare-name one.
    assert _looks_like_path(name)


@pytest.mark.parametrize("name", ["sd15", "stabilityai/sd-turbo", "my-model", "test:tiny"])
def test_ordinary_names_are_not_paths(name: str) -> None:
    assert not _looks_like_path(name)


# --- the A1111 opt-out and web pages ---------------------------------------------------------


def _status(headers: dict[str, str], method: str = "POST") -> int:
    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = Guard(
        app,
        token=TOKEN,
        host_names=frozenset({"127.0.0.1"}),
        max_body=1024,
        basic_prefixes=("/sdapi/",),
        open_prefixes=("/sdapi/",),
    )
    statuses: list[int] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    raw = {"host": "127.0.0.1", **headers}
    scope = {
        "type": "http",
        "method": method,
        "path": "/sdapi/v1/interrupt",
        "headers": [(k.encode(), v.encode()) for k, v in raw.items()],
    }
    asyncio.run(guard(scope, receive, send))
    return statuses[0]


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"},
        {"sec-fetch-site": "same-site"},
        {"referer": "https://evil.example/page"},
        {"origin": "null"},
    ],
)
def test_a_request_a_web_page_made_gets_no_opt_out(headers: dict[str, str]) -> None:
    assert _status(headers) == 401
    assert _status({**headers, "authorization": f"Bearer {TOKEN}"}) == 200


@pytest.mark.parametrize("headers", [{}, {"sec-fetch-site": "none"}, {"user-agent": "curl/8"}])
def test_clients_that_are_not_web_pages_keep_the_opt_out(headers: dict[str, str]) -> None:
    assert _status(headers) == 200
