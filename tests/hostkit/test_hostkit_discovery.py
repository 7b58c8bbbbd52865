"""hostkit.discovery: finding the local server (server.json), starting it from hostkit.json,
blocking (Client.discover) and non-blocking (launch_server + ServerLaunch.check,
try_local_client). The servers are real processes: a small stdlib HTTP server script that
announces itself in server.json like `paintbridge serve` does."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import textwrap
import time
import types
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from paintbridge import hostkit
from paintbridge.hostkit import discovery
from paintbridge.hostkit.client import Client, NotRunning, Timeout, spawn_detached

# Like `paintbridge serve --port N`: listens on N (the last --port; 0 or none: a free port)
# from the start, exits 2 when N is taken, announces itself after FAKE_SERVER_DELAY s.
FAKE_SERVER = textwrap.dedent(
    """
    import json, os, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from paintbridge.hostkit.discovery import live_proof

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            answer = {"ok": True}
            if "challenge=" in self.path:  # it holds the token it announces, "auto"
                url = "http://127.0.0.1:%d" % self.server.server_address[1]
                answer["proof"] = live_proof("auto", url, self.path.partition("challenge=")[2])
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass

    args = sys.argv[1:]
    ports = [int(args[i + 1]) for i, a in enumerate(args) if a == "--port"]
    try:
        server = HTTPServer(("127.0.0.1", ports[-1] if ports else 0), H)
    except OSError as exc:
        print("cannot listen: %s" % exc, flush=True)
        sys.exit(2)
    time.sleep(float(os.environ.get("FAKE_SERVER_DELAY", "0")))  # importing, loading a model
    config = os.environ["PAINTBRIDGE_CONFIG_DIR"]
    info = {"url": "http://127.0.0.1:%d" % server.server_address[1], "token": "auto",
            "pid": os.getpid(), "argv": args, "pythonpath": os.environ.get("PYTHONPATH")}
    with open(os.path.join(config, "server.json.tmp"), "w") as f:
        json.dump(info, f)
    os.replace(os.path.join(config, "server.json.tmp"), os.path.join(config, "server.json"))
    print("fake server up", flush=True)
    server.serve_forever()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """hostkit's STARTED list; the servers a test started are stopped after it."""
    before = len(discovery.STARTED)
    yield discovery.STARTED
    while len(discovery.STARTED) > before:
        process = discovery.STARTED.pop()
        if process.poll() is None:
            process.terminate()
        process.wait(30)


def _config_with_launcher(tmp_path: Path, command: list[str]) -> Path:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "hostkit.json").write_text(json.dumps({"command": command}))
    return config


def _fake_server_command(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    return [sys.executable, str(script), "serve"]


LIVE_TOKEN = "tk"


class _Live(BaseHTTPRequestHandler):
    """A paintbridge server's /v1/live, holding the token LIVE_TOKEN."""

    def do_GET(self) -> None:
        answer: dict[str, Any] = {"ok": True}
        if "challenge=" in self.path:
            url = f"http://127.0.0.1:{self.server.server_address[1]}"
            challenge = self.path.partition("challenge=")[2]
            answer["proof"] = discovery.live_proof(LIVE_TOKEN, url, challenge)
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def live_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Live)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- blocking: Client.discover ------------------------------------------------------------------


def test_discover_autostarts_from_hostkit_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[Any]
) -> None:
    config = _config_with_launcher(tmp_path, _fake_server_command(tmp_path))
    monkeypatch.setenv("PYTHONPATH", "/host/only/python")  # must not reach the server
    client = Client.discover(config_dir=str(config), start_timeout=30)
    info = json.loads((config / "server.json").read_text())
    assert client.token == "auto" and client.is_live()
    assert info["argv"] == ["serve"]
    assert info["pythonpath"] is None
    assert "fake server up" in (config / "server.log").read_text()
    assert started[-1].pid == info["pid"]


def test_discover_reports_a_server_that_dies_while_starting(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"]
    config = _config_with_launcher(tmp_path, command)
    with pytest.raises(NotRunning, match="exit code 3") as info:
        Client.discover(config_dir=str(config), start_timeout=30)
    assert str(config / "server.log") in info.value.message
    assert "no model here" in (config / "server.log").read_text()


def test_spawn_uses_a_new_session(tmp_path: Path) -> None:
    process = spawn_detached(
        [sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid())"],
        str(tmp_path / "log"),
    )
    assert process.wait(30) == 0
    assert os.getsid(0) != process.pid
    assert (tmp_path / "log").read_text().strip() == "True"


class _Imposter(BaseHTTPRequestHandler):
    """Another program on the port of a server that stopped, answering /v1/live as paintbridge
    does: with no proof of the token, a made-up one, the proof of a live server with the same
    token (relayed, or by a redirect to it); it keeps what reaches it."""

    seen: list[tuple[str, str, str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers.get("Authorization")))
        mode, real = self.server.mode, self.server.real  # type: ignore[attr-defined]
        if mode == "a redirect":
            self.send_response(307)
            self.send_header("Location", real + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer: dict[str, Any] = {"ok": True}
        if "challenge=" in self.path and mode == "a made-up proof":
            answer["proof"] = "0" * 64
        elif "challenge=" in self.path and mode == "a relayed proof":
            with urllib.request.urlopen(real + self.path, timeout=5) as reply:
                answer = json.loads(reply.read())
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.seen.append(("POST", self.path, self.headers.get("Authorization")))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def imposter(request: pytest.FixtureRequest, live_url: str) -> Iterator[tuple[str, str]]:
    """(URL, mode) of an _Imposter in the mode `request.param`; `live_url` is a live server
    that holds the same token, LIVE_TOKEN (a fixed one)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Imposter)
    server.mode, server.real = request.param, live_url  # type: ignore[attr-defined]
    Thread(target=server.serve_forever, daemon=True).start()
    _Imposter.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.shutdown()
    server.server_close()


IMPOSTERS = ["no proof", "a made-up proof", "a relayed proof", "a redirect"]


@pytest.mark.parametrize("imposter", IMPOSTERS, indirect=True)
def test_a_server_that_cannot_prove_the_token_gets_nothing(
    isolated_dirs: Path, imposter: tuple[str, str]
) -> None:
    """A stale server.json names a port another program took: no plug-in sends it the token or
    a job, and discovery says why, even when a live server with the same token answers the
    challenge for it (a fixed token: each server's proof names its own URL)."""
    url, mode = imposter
    config = isolated_dirs / "config"
    config.mkdir()
    (config / "server.json").write_text(json.dumps({"url": url, "token": LIVE_TOKEN}))
    assert hostkit.try_local_client() is None
    # a redirect is not followed, so nothing there answers /v1/live
    said = "Could not reach" if mode == "a redirect" else "cannot prove .* token in .*server.json"
    for autostart in (False, True):
        with pytest.raises(NotRunning, match=said):
            Client.discover(autostart=autostart)
    assert _Imposter.seen and all(
        method == "GET" and path.startswith("/v1/live") and auth is None
        for method, path, auth in _Imposter.seen
    ), _Imposter.seen


@pytest.mark.parametrize("imposter", ["no proof"], indirect=True)
def test_a_start_that_finds_its_port_taken_by_an_imposter_says_so_at_once(
    isolated_dirs: Path, imposter: tuple[str, str]
) -> None:
    """The server Start Server launched exits (its port is taken) while what holds the port
    cannot prove the token: the start ends with that, not after minutes of waiting."""
    url, _ = imposter
    config = isolated_dirs / "config"
    config.mkdir()
    (config / "server.json").write_text(json.dumps({"url": url, "token": LIVE_TOKEN}))
    exited = types.SimpleNamespace(poll=lambda: 2, pid=0)
    port = url.rsplit(":", 1)[1]
    command = ["paintbridge", "serve", "--port", port]
    launch = discovery.ServerLaunch(exited, str(config), "server.log", 5, command)
    with pytest.raises(NotRunning, match="cannot prove it holds the token"):
        launch.check()


def test_a_token_that_is_not_text_is_no_token(isolated_dirs: Path, live_url: str) -> None:
    """A damaged server.json (`"token": 123`) never makes try_local_client raise in a timer."""
    config = isolated_dirs / "config"
    config.mkdir()
    (config / "server.json").write_text(json.dumps({"url": live_url, "token": 123}))
    assert hostkit.try_local_client() is None


# --- non-blocking: try_local_client, launch_server ----------------------------------------------


def test_try_local_client(tmp_path: Path, live_url: str, isolated_dirs: Path) -> None:
    config = isolated_dirs / "config"
    assert hostkit.try_local_client() is None  # no folder, no server.json
    config.mkdir()
    (config / "server.json").write_text("{not json")
    assert hostkit.try_local_client() is None
    for damaged in ("http://[::1", "127.0.0.1:7860", 7860, None):  # never raises
        (config / "server.json").write_text(json.dumps({"url": damaged, "token": "x"}))
        assert hostkit.try_local_client() is None
    with ThreadingHTTPServer(("127.0.0.1", 0), _Live) as gone:
        stale = f"http://127.0.0.1:{gone.server_address[1]}"
    (config / "server.json").write_text(json.dumps({"url": stale, "token": "x"}))
    assert hostkit.try_local_client() is None  # named, but nothing answers
    (config / "server.json").write_text(json.dumps({"url": live_url, "token": "tk"}))
    client = hostkit.try_local_client(timeout=3)
    assert client is not None
    assert (client.url, client.token, client.timeout) == (live_url, "tk", 3)
    assert client.token_source == str(config / "server.json")
    other = tmp_path / "other"
    other.mkdir()
    assert hostkit.try_local_client(str(other)) is None  # an explicit folder wins


def test_launch_server_returns_at_once_and_check_finds_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[Any]
) -> None:
    config = _config_with_launcher(tmp_path, _fake_server_command(tmp_path))
    monkeypatch.setenv("FAKE_SERVER_DELAY", "1.5")
    monkeypatch.setenv("PYTHONPATH", "/host/only/python")
    began = time.monotonic()
    launch = hostkit.launch_server(str(config), timeout=4)
    assert time.monotonic() - began < 1.0  # did not wait for the server
    assert launch.process is started[-1]
    assert launch.log_path == str(config / "server.log")
    assert launch.check() is None  # still "loading"
    client = None
    deadline = time.monotonic() + 30
    while client is None and time.monotonic() < deadline:
        time.sleep(0.05)
        client = launch.check()
    assert client is not None, (config / "server.log").read_text()
    assert client.token == "auto" and client.timeout == 4
    info = json.loads((config / "server.json").read_text())
    assert info["pid"] == launch.process.pid and info["pythonpath"] is None
    if os.name != "nt":  # the log names jobs and files: the user's alone
        assert stat.S_IMODE((config / "server.log").stat().st_mode) == 0o600
    assert hostkit.try_local_client(str(config)) is not None


def test_launch_check_reports_a_server_that_stops(tmp_path: Path, started: list[Any]) -> None:
    command = [sys.executable, "-c", "import sys; print('port in use'); sys.exit(2)"]
    config = _config_with_launcher(tmp_path, command)
    launch = hostkit.launch_server(str(config))
    launch.process.wait(30)
    with pytest.raises(NotRunning, match="exit code 2") as info:
        launch.check()
    assert str(config / "server.log") in info.value.message


def test_launch_wait_times_out(tmp_path: Path, started: list[Any]) -> None:
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    config = _config_with_launcher(tmp_path, command)
    launch = hostkit.launch_server(str(config))
    with pytest.raises(Timeout, match="did not start within 0.3 s"):
        launch.wait(start_timeout=0.3, interval=0.05)
    assert launch.process.poll() is None  # still running: the fixture stops it


@pytest.mark.parametrize("launcher", [None, "[1, 2]", '{"command": []}', "{broken"])
def test_launch_server_without_a_launcher(tmp_path: Path, launcher: str | None) -> None:
    config = tmp_path / "config"
    config.mkdir()
    if launcher is not None:
        (config / "hostkit.json").write_text(launcher)
    with pytest.raises(NotRunning, match="paintbridge plugins install"):
        hostkit.launch_server(str(config))


def test_launch_server_with_a_missing_program(tmp_path: Path) -> None:
    config = _config_with_launcher(tmp_path, [str(tmp_path / "no-such-program"), "serve"])
    with pytest.raises(NotRunning, match="Could not start the paintbridge server"):
        hostkit.launch_server(str(config))


class _NotOurs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # AUTOMATIC1111 or another Gradio app on the port
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_port_another_program_holds_is_left_for_a_free_one(
    tmp_path: Path, started: list[Any]
) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _NotOurs) as other:
        Thread(target=other.serve_forever, daemon=True).start()
        port = other.server_address[1]
        command = _fake_server_command(tmp_path) + ["--port", str(port)]
        config = _config_with_launcher(tmp_path, command)
        client = hostkit.launch_server(str(config), timeout=4).wait(start_timeout=60)
        other.shutdown()
    info = json.loads((config / "server.json").read_text())
    assert info["argv"][-2:] == ["--port", "0"] and client.url == info["url"]
    assert not client.url.endswith(f":{port}")
    assert "cannot listen" in (config / "server.log").read_text()  # the first try


def test_a_second_start_waits_for_the_server_still_starting(
    tmp_path: Path, started: list[Any]
) -> None:
    """Two editors start the server at once: the second start finds the port taken by the
    first, which is still loading, and gets that server once it is up."""
    port = _free_port()
    command = _fake_server_command(tmp_path) + ["--port", str(port)]
    config = _config_with_launcher(tmp_path, command)
    env = dict(os.environ, PAINTBRIDGE_CONFIG_DIR=str(config), FAKE_SERVER_DELAY="5")
    first = spawn_detached(command, str(tmp_path / "first.log"), env)
    started.append(first)
    deadline = time.monotonic() + 60
    while True:  # until it listens (it announces itself 5 s later)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline and first.poll() is None, "the first never listened"
        time.sleep(0.05)
    launch = hostkit.launch_server(str(config), timeout=4)
    launch.process.wait(30)  # the port is taken: the second server gives up at once
    client = launch.wait(start_timeout=60, interval=0.1)
    assert json.loads((config / "server.json").read_text())["pid"] == first.pid
    assert client.is_live() and launch.process.returncode == 2


@pytest.mark.parametrize(
    ("command", "url"),
    [
        (["paintbridge", "serve"], discovery.DEFAULT_URL),
        (["paintbridge", "serve", "--port", "7000"], "http://127.0.0.1:7000"),
        (["paintbridge", "serve", "--port=7001"], "http://127.0.0.1:7001"),
        (["paintbridge", "serve", "--port", "0"], None),
        (["paintbridge", "serve", "--port", "x"], None),
        (["python", "-c", "pass"], None),
    ],
)
def test_command_url(command: list[str], url: str | None) -> None:
    assert discovery.command_url(command) == url


def test_spawn_options_on_windows_python_before_37(monkeypatch: pytest.MonkeyPatch) -> None:
    """GIMP 2.10's Python 2.7 on Windows refuses close_fds with redirected output."""
    seen = {}

    def popen(command, **kwargs):
        seen.update(kwargs)
        return None

    monkeypatch.setattr(discovery.sys, "platform", "win32")
    monkeypatch.setattr(discovery.subprocess, "Popen", popen)
    monkeypatch.setattr(discovery.sys, "version_info", (2, 7, 18))
    discovery.spawn_detached(["x"], os.devnull)
    assert seen["close_fds"] is False and seen["stdout"] is not None
    monkeypatch.setattr(discovery.sys, "version_info", (3, 11, 0))
    discovery.spawn_detached(["x"], os.devnull)
    assert seen["close_fds"] is True


def test_a_remote_token_is_kept_for_this_user_only(tmp_path: Path) -> None:
    """GIMP 3 saves a procedure's arguments into .xcf files: its plug-in keeps the token of a
    remote server here instead (hostkit.discovery.remember_token)."""
    from paintbridge.hostkit.discovery import TOKENS_FILE, remember_token, remembered_token

    folder = tmp_path / "config"
    assert remembered_token("https://gpu.example.org", str(folder)) is None
    remember_token("https://gpu.example.org", "s3cret", str(folder))
    remember_token("http://10.0.0.2:7860", "other", str(folder))
    assert remembered_token("https://gpu.example.org", str(folder)) == "s3cret"
    assert remembered_token("http://10.0.0.2:7860", str(folder)) == "other"
    if os.name == "posix":
        assert stat.S_IMODE((folder / TOKENS_FILE).stat().st_mode) == 0o600
    (folder / TOKENS_FILE).write_text("{damaged")
    assert remembered_token("https://gpu.example.org", str(folder)) is None
    remember_token("https://gpu.example.org", "new", str(folder))  # a damaged file is replaced
    assert remembered_token("https://gpu.example.org", str(folder)) == "new"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    remember_token("https://gpu.example.org", "t", str(blocker / "config"))  # no error raised
