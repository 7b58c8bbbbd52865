"""`paintbridge serve` start and stop: server.json (mode 0600, removed on a clean exit, only if
still ours), signals, refusals at start."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from server_support import TOKEN, ServerProcess, assert_no_server_bugs

from paintbridge import __version__
from paintbridge.hostkit import Client, try_local_client

pytestmark = pytest.mark.slow


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes and signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_server_json_is_private_and_removed_on_a_signal(tmp_path: Path, sig: int) -> None:
    """Ctrl-C, a stop, and the terminal it runs in closed (SIGHUP): server.json goes."""
    server = ServerProcess(tmp_path).wait_ready()
    try:
        mode = stat.S_IMODE(server.server_file.stat().st_mode)
        assert mode == 0o600, oct(mode)
        info = server.info()
        assert info == {
            "url": server.url,
            "token": TOKEN,
            "pid": server.process.pid,
            "version": __version__,
            "history": str(server.history_dir),
        }
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        assert not list(server.config_dir.glob("*.tmp"))
    finally:
        code = server.stop(sig)
    assert not server.server_file.exists()
    # SIGHUP stops it as SIGTERM does (uvicorn raises SIGTERM again as it exits)
    stopped_by = -signal.SIGTERM if sig == signal.SIGHUP else -sig
    assert code in (0, 130, stopped_by), server.log
    assert_no_server_bugs(server)


@pytest.mark.skipif(os.name == "nt", reason="signals")
def test_a_server_started_with_sighup_ignored_keeps_serving_on_sighup(tmp_path: Path) -> None:
    """`nohup paintbridge serve &`: closing the terminal must not stop it."""
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the child inherits it, as nohup's
    try:
        server = ServerProcess(tmp_path)
    finally:
        signal.signal(signal.SIGHUP, ignored)
    try:
        server.wait_ready()
        server.process.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):  # a stop takes well under 3 s
            server.process.wait(3)
        assert Client(server.url, TOKEN, timeout=10).health()["version"] == __version__
        assert server.server_file.exists()
    finally:
        server.stop(signal.SIGTERM)


@pytest.mark.skipif(os.name == "nt", reason="signals")
def test_server_json_of_a_newer_server_is_left_alone(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).wait_ready()
    newer = {"url": "http://127.0.0.1:1", "token": "other", "pid": 1, "version": __version__}
    server.server_file.write_text(json.dumps(newer))
    server.stop(signal.SIGTERM)
    assert json.loads(server.server_file.read_text()) == newer


@pytest.mark.skipif(os.name == "nt", reason="signals, and no way to tell a process is alive")
@pytest.mark.parametrize("alive", [True, False], ids=["first-still-runs", "first-gone"])
def test_a_second_server_hands_server_json_back_to_the_first(tmp_path: Path, alive: bool) -> None:
    """A second server replaces the first one's server.json; on its exit the plug-ins must find
    the first again if it still runs (this test process stands for it), not no server at all."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = os.getpid() if alive else int(gone.stdout)
    first = {"url": "http://127.0.0.1:1", "token": "first", "pid": pid, "version": __version__}
    config = tmp_path / "config"
    config.mkdir(mode=0o700)
    (config / "server.json").write_text(json.dumps(first))
    server = ServerProcess(tmp_path).wait_ready()
    assert server.info()["pid"] == server.process.pid
    server.stop(signal.SIGTERM)
    if alive:
        assert json.loads(server.server_file.read_text()) == first
        assert stat.S_IMODE(server.server_file.stat().st_mode) == 0o600
    else:
        assert not server.server_file.exists()


def test_a_random_token_is_made_when_none_is_given(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, token=None).wait_ready()
    try:
        assert len(server.token) >= 32
        assert server.client().health()["version"] == __version__
        # the server named in server.json proves it holds that token, which is not sent
        found = try_local_client(str(server.server_file.parent), 5)
        assert found is not None and found.token == server.token and found.is_ours()
        assert not Client(found.url, "another token").is_ours()
    finally:
        server.stop()


def _serve(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "paintbridge", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_empty_token_is_refused(tmp_path: Path) -> None:
    env = {"PAINTBRIDGE_CONFIG_DIR": str(tmp_path)}
    done = _serve("--port", "0", "--token", "", env_extra=env)
    assert done.returncode == 2
    assert "--token must not be empty" in done.stderr
    assert not (tmp_path / "server.json").exists()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve("--port", str(port), env_extra={"PAINTBRIDGE_CONFIG_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_history_folder_it_cannot_write_is_refused_at_start(tmp_path: Path) -> None:
    """Not "serving on" and then every job run to its end only to lose its image."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    history = blocker / "hist"
    env = {"PAINTBRIDGE_CONFIG_DIR": str(tmp_path / "config")}
    done = _serve("--port", "0", "--history-dir", str(history), env_extra=env)
    assert done.returncode == 2
    assert f"cannot write to the history folder {str(history)!r}" in done.stderr
    assert "--history-dir" in done.stderr and "serving on" not in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "config" / "server.json").exists()
