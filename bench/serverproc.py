"""A real `paintbridge serve` subprocess for the benchmarks, and what it costs.

The server runs exactly as a user starts it (`python -m paintbridge serve --port 0 ...`) with its
own config, data and history folders in a temporary folder, and the same thread settings as the
benchmark process (no OMP_NUM_THREADS override), so its generation is comparable with an
in-process one. `TimedTransport` wraps hostkit's own urllib transport and records every request,
so hostkit's `Client.run` runs unchanged while the benchmark sees where the time goes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paintbridge.hostkit.client import Client, UrllibTransport

TOKEN = "bench-token-0123456789"


@dataclass
class Exchange:
    """One HTTP request as the client saw it (wall-clock times, time.time())."""

    method: str
    path: str
    start: float
    end: float
    sent: int
    received: int
    state: str | None = None


@dataclass
class TimedTransport:
    """hostkit's UrllibTransport, recording each request in `log`."""

    inner: UrllibTransport
    log: list[Exchange] = field(default_factory=list)

    def __call__(
        self, method: str, path: str, body: Any = None, headers: Any = None
    ) -> tuple[int, dict[str, Any], bytes]:
        start = time.time()
        status, response_headers, data = self.inner(method, path, body, headers)
        end = time.time()
        state = None
        if method == "GET" and path.startswith("/v1/jobs/") and len(data) < 4096:
            try:
                state = json.loads(data.decode("utf-8")).get("state")
            except ValueError:
                state = None
        elif method == "GET" and path.startswith("/v1/jobs/"):
            state = "done"  # only a finished job's answer carries an image
        self.log.append(Exchange(method, path, start, end, len(body or b""), len(data), state))
        return status, response_headers, data


class Server:
    """`paintbridge serve --port 0 --preload ARGS` in a fresh temporary home; use as a context."""

    def __init__(self, *args: str, preload: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="paintbridge-bench-"))
        self.history_dir = self.root / "history"
        self.config_dir = self.root / "config"
        self.log_path = self.root / "server.log"
        env = dict(os.environ)
        env.pop("PAINTBRIDGE_TOKEN", None)
        env.update(
            HF_HUB_OFFLINE="1",
            PAINTBRIDGE_CONFIG_DIR=str(self.config_dir),
            PAINTBRIDGE_DATA_DIR=str(self.root / "data"),
        )
        command = [sys.executable, "-m", "paintbridge", "serve", "--port", "0"]
        command += ["--token", TOKEN, "--history-dir", str(self.history_dir)]
        command += (["--preload"] if preload else []) + list(args)
        self.started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.url = ""
        self.ready_s = 0.0

    def wait_ready(self, timeout: float = 600.0) -> Server:
        """Until server.json names it and /v1/live answers; raises with the server's log."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"paintbridge serve exited early:\n{self.log()}")
            try:
                url = json.loads((self.config_dir / "server.json").read_text())["url"]
            except (OSError, ValueError, KeyError):
                url = ""
            if url and Client(url, "", timeout=5).is_live():
                self.url = url
                self.ready_s = time.perf_counter() - self.started
                return self
            time.sleep(0.02)
        raise RuntimeError(f"paintbridge serve did not answer within {timeout} s:\n{self.log()}")

    def client(self, timeout: float = 600.0) -> tuple[Client, TimedTransport]:
        transport = TimedTransport(UrllibTransport(self.url, timeout))
        return Client(self.url, TOKEN, timeout=timeout, transport=transport), transport

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def rss_mib(self) -> float:
        return rss_mib(self.process.pid)

    def history_png(self, job_id: str) -> Path:
        found = sorted(self.history_dir.glob(f"*-{job_id}-1.png"))
        if not found:
            raise RuntimeError(f"job {job_id} is done but has no PNG in {self.history_dir}")
        return found[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_mib(pid: int | str = "self", field: str = "VmRSS") -> float:
    """Resident memory of a process in MiB (Linux /proc; 0.0 where it cannot be read).

    `field` "RssFile" is the part backed by files (safetensors weights are memory-mapped and
    count once a page is first read), "RssAnon" the process's own allocations."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0
