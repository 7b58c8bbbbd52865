"""hostkit against a real `paintbridge serve` when something goes wrong on the way.

A job refused while its upload is still going (a wrong token, a Host that is not the server's, a
body over its limit) says which: the server answers and closes the connection mid-upload, so the
client sees a reset, not the answer. A poll that gets no answer (dropped by a loopback proxy in
front of the server) is tried again instead of ending the job, and once given up the message
says the finished result is in the server's history, which it is."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paintbridge.hostkit import inpaint_job, txt2img_job
from paintbridge.hostkit import jobs as jobs_module
from paintbridge.hostkit.client import (
    Client,
    JobHandle,
    JobStatus,
    NotRunning,
    PaintbridgeError,
    RequestRejected,
    Unauthorized,
)

# tests/server/server_support.py starts and stops the real server; reuse it, do not copy it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from server_support import ServerProcess, assert_no_server_bugs, wait_for  # noqa: E402

SIZE = 1024  # 4 MiB of RGBA8 and 1 MiB of mask: a 7 MB body, far more than one socket write


def _large_job() -> dict:
    rgba = bytes(range(256)) * (SIZE * SIZE * 4 // 256)
    return inpaint_job(rgba, b"\xff" * (SIZE * SIZE), SIZE, SIZE, prompt="x", steps=2)


class DropProxy:
    """A loopback TCP proxy to `port` that closes, unanswered, the first `drops` connections
    whose request line contains `needle`, and passes every other one through."""

    def __init__(self, port: int, needle: str, drops: int = 1) -> None:
        self.target = ("127.0.0.1", port)
        self.needle, self.drops, self.dropped = needle.encode(), drops, 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            head += chunk
        if self.needle in head.split(b"\r\n", 1)[0] and self.dropped < self.drops:
            self.dropped += 1
            conn.close()
            return
        upstream = socket.create_connection(self.target)
        upstream.sendall(head)
        sending = threading.Thread(target=_pipe, args=(conn, upstream), daemon=True)
        sending.start()
        _pipe(upstream, conn)
        sending.join(10)
        conn.close()
        upstream.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("faults-server")).wait_ready()
    yield process
    process.stop()
    assert_no_server_bugs(process)


def _poll_to_the_end(handle: JobHandle, seconds: float = 60) -> JobStatus:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = handle.poll()
        if status.finished:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{handle} did not finish within {seconds} s")


def _small_job() -> dict:
    return txt2img_job("a lighthouse", 64, 64, model="test:tiny", steps=2)


# --- a job refused while it is sent -----------------------------------------------------------


def test_a_wrong_token_on_a_large_upload_says_the_token_is_wrong(server: ServerProcess) -> None:
    with pytest.raises(Unauthorized) as info:
        Client(server.url, "WRONG", timeout=30).submit(_large_job())
    assert info.value.status == 401
    assert info.value.message.startswith(
        f"The paintbridge server at {server.url} refused the token (the token is wrong"
    )


def test_a_host_not_the_servers_own_on_a_large_upload_says_so(server: ServerProcess) -> None:
    """127.1 is 127.0.0.1 to the resolver, but not a name the server answers to (421)."""
    with pytest.raises(RequestRejected) as info:
        Client(f"http://127.1:{server.port}", server.token, timeout=30).submit(_large_job())
    assert (info.value.code, info.value.status) == ("misdirected", 421)
    assert "does not answer to the Host '127.1:" in info.value.message
    assert "--allow-host" in info.value.message


def test_a_body_over_the_limit_still_says_too_large(tmp_path: Path) -> None:
    small = ServerProcess(tmp_path, "--max-body-mb", "1").wait_ready()
    try:
        with pytest.raises(RequestRejected) as info:
            small.client().submit(_large_job())
        assert info.value.code == "too_large"
        assert "Select a smaller area" in info.value.message
        with pytest.raises(Unauthorized):  # the token is checked first, as the server does
            small.client(token="WRONG").submit(_large_job())
    finally:
        small.stop()
    assert_no_server_bugs(small)


# --- a poll that gets no answer -----------------------------------------------------------------


@pytest.mark.parametrize("needle", ["/results/0?", "GET /v1/jobs/"])
def test_a_dropped_poll_is_tried_again_by_a_handle(server: ServerProcess, needle: str) -> None:
    """The result's download (or a status poll) is dropped once: the job still comes back."""
    proxy = DropProxy(server.port, needle, drops=1)
    try:
        handle = Client(proxy.url, server.token, timeout=30).start(_small_job())
        status = _poll_to_the_end(handle)
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert status.done and [(r.width, r.height) for r in status.results] == [(64, 64)]


def test_a_dropped_result_download_is_tried_again_by_wait(server: ServerProcess) -> None:
    proxy = DropProxy(server.port, "GET /v1/jobs/", drops=2)
    try:
        (result,) = Client(proxy.url, server.token, timeout=30).run(_small_job())
    finally:
        proxy.close()
    assert proxy.dropped == 2 and (result.width, result.height) == (64, 64)


def test_a_result_that_never_comes_is_said_to_be_in_history(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_module, "LOST_AFTER_S", 0.5)
    proxy = DropProxy(server.port, "/results/", drops=10**6)
    try:
        handle = Client(proxy.url, server.token, timeout=30).start(_small_job())
        with pytest.raises(NotRunning) as info:
            _poll_to_the_end(handle)
    finally:
        proxy.close()
    message = info.value.message
    assert message.startswith(
        f"Job {handle.id} is done, but its result could not be fetched: Could not reach the "
        f"paintbridge server at {proxy.url}."
    ), message
    assert f"`paintbridge history export {handle.id} --out DIR`" in message
    assert "no image was made" not in message
    assert [p.name for p in server.history_dir.glob(f"*-{handle.id}-1.png")]  # and so it is


def test_a_server_that_stops_mid_job_ends_the_job_at_once(tmp_path: Path) -> None:
    doomed = ServerProcess(tmp_path).wait_ready()
    try:
        client = doomed.client()
        job = txt2img_job("x", 64, 64, model="test:identity", steps=150)  # 7.5 s of steps
        handle = client.start(job)
        deadline = time.monotonic() + 60
        while handle.poll().state != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        doomed.stop(signal.SIGKILL)
        stopped = time.monotonic()
        with pytest.raises(NotRunning) as info:
            _poll_to_the_end(handle)
        # no retrying for LOST_AFTER_S (10 s) a server that is gone; generous for a busy machine
        assert time.monotonic() - stopped < 8.0
        assert info.value.message.startswith(
            "The paintbridge server stopped before the job finished; no image was made. Could "
            f"not reach the paintbridge server at {doomed.url}."
        )
    finally:
        doomed.stop()


def test_a_poll_that_meets_a_stopping_server_hears_that_it_stopped(tmp_path: Path) -> None:
    """uvicorn answers the requests open when SIGTERM comes before it closes: a status
    request waiting then must say the server stopped, not that the job was cancelled (a
    Blender check met that race). A queued job's long poll is open for sure at the stop."""
    stopping = ServerProcess(tmp_path).wait_ready()
    answers: list[Any] = []
    try:
        client = stopping.client()
        long_job = txt2img_job("x", 64, 64, model="test:identity", steps=150)  # 7.5 s of steps
        handle = client.start(long_job)
        wait_for(lambda: handle.poll().state == "running")
        waiting = client.start(long_job)
        waiter = threading.Thread(
            target=lambda: answers.append(client.status(waiting.id, "none", wait=5))
        )
        waiter.start()
        # the long poll reaches the server, which holds it until the stop (or 5 s): room to spare
        time.sleep(2.0)
        stopping.process.send_signal(signal.SIGTERM)
        waiter.join(30)
    finally:
        code = stopping.stop()
    (raw,) = answers
    assert raw["state"] == "failed" and raw["error"]["code"] == "shutting_down", raw
    with pytest.raises(NotRunning, match="server stopped before the job finished"):
        JobStatus(raw).raise_for_state()
    assert code in (0, -signal.SIGTERM), stopping.log
    assert_no_server_bugs(stopping)


def test_a_bad_url_never_gets_as_far_as_a_request() -> None:
    for url in ("gpu.example.org", "http://[::1", "localhost:7860"):
        with pytest.raises(PaintbridgeError, match="The server URL") as info:
            Client(url, "t", timeout=1).is_live()
        assert info.value.code == "invalid_url"
