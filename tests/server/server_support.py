"""Run a real `paintbridge serve` subprocess on a free loopback port, and talk to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from paintbridge.hostkit.client import Client

TOKEN = "test-token-0123456789"


class ServerProcess:
    """`paintbridge serve --port 0 --model test:tiny ...` with its own config/data folders."""

    def __init__(self, root: Path, *args: str, token: str | None = TOKEN) -> None:
        """`token=None`: no --token (the server makes one; read from server.json when ready)."""
        self.root = root
        self.config_dir = root / "config"
        self.history_dir = root / "history"
        self.server_file = self.config_dir / "server.json"
        self.token = token or ""
        self.log_path = root / "server.log"
        env = dict(os.environ)
        env.pop("PAINTBRIDGE_TOKEN", None)
        env.update(
            HF_HUB_OFFLINE="1",
            PAINTBRIDGE_CONFIG_DIR=str(self.config_dir),
            PAINTBRIDGE_DATA_DIR=str(root / "data"),
            OMP_NUM_THREADS="1",
        )
        command = [
            sys.executable,
            "-m",
            "paintbridge",
            "serve",
            "--port",
            "0",
            *(["--token", token] if token is not None else []),
            "--model",
            "test:tiny",
            "--history-dir",
            str(self.history_dir),
            *args,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root
            )
        self.started_at = time.monotonic()
        self.url = ""

    def wait_ready(self, timeout: float = 120.0) -> ServerProcess:
        """Wait for server.json and a live answer; raises with the server's log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited ({self.process.returncode}):\n{self.log}")
            info = self.info()
            if info and Client(info["url"], "", timeout=5).is_live():
                self.url = info["url"]
                self.token = self.token or info["token"]
                return self
            time.sleep(0.1)
        raise AssertionError(f"the server did not start within {timeout} s:\n{self.log}")

    def info(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.server_file.read_text())
        except (OSError, ValueError):
            return None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self, token: str | None = None, timeout: float = 30) -> Client:
        return Client(self.url, self.token if token is None else token, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll `predicate()` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


def assert_no_server_bugs(server: ServerProcess) -> None:
    """A 5xx or an escaped exception in the server's log is a bug."""
    log = server.log
    assert "internal error" not in log, log
    assert "Exception in ASGI application" not in log, log
