"""Shared fixtures for the tests that run inside real host applications.

`live_server` is a real `paintbridge serve` subprocess on a free loopback port with the tiny
test models, its own config and data folders, for the whole test session.
`require_host(...)` skips a test whose host is missing, with the reason, or fails it when
PAINTBRIDGE_REQUIRE_HOSTS=1 (CI installs every host, so a skip there would hide a failure).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def require_host(available: bool, reason: str) -> None:
    if available:
        return
    if os.environ.get("PAINTBRIDGE_REQUIRE_HOSTS") == "1":
        pytest.fail(f"host missing where hosts are required: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class LiveServer:
    url: str
    token: str
    config_dir: Path
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def start_server(root: Path, *extra: str, timeout: float = 120.0) -> LiveServer:
    config_dir, data_dir = root / "config", root / "data"
    env = dict(
        os.environ, PAINTBRIDGE_CONFIG_DIR=str(config_dir), PAINTBRIDGE_DATA_DIR=str(data_dir)
    )
    with open(root / "server.log", "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "paintbridge", "serve", "--port", "0"]
            # one thread: the tiny models are fastest on one, and the editor gets the other core
            + ["--model", "test:tiny", "--cpu-threads", "1", *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server_file = config_dir / "server.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"paintbridge serve exited: {(root / 'server.log').read_text()}")
        if server_file.is_file():
            try:
                info = json.loads(server_file.read_text())
            except ValueError:
                info = None
            if info:
                return LiveServer(info["url"], info["token"], config_dir, data_dir, process)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"paintbridge serve did not start in {timeout} s")


def stop_server(server: LiveServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("live-server"))
    yield server
    stop_server(server)
