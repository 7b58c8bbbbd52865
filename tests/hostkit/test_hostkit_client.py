"""hostkit.client: errors, polling and cancelling through a fake transport; the real urllib
transport against a small stdlib HTTP server on 127.0.0.1; discovery and auto-start."""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from paintbridge.hostkit import client as client_module
from paintbridge.hostkit import jobs as jobs_module
from paintbridge.hostkit.client import (
    Cancelled,
    Client,
    JobFailed,
    JobStatus,
    NotRunning,
    PaintbridgeError,
    QueueFull,
    RequestRejected,
    ServerFault,
    Timeout,
    Unauthorized,
    user_config_dir,
)
from paintbridge.hostkit.discovery import live_proof
from paintbridge.hostkit.tasks import img2img_job
from paintbridge.hostkit.transport import Later

RGBA = bytes(range(16))  # 2 x 2


def _job(state: str, step: int = 0, steps: int = 4, **extra: Any) -> dict[str, Any]:
    job = {"id": "j1", "state": state, "position": 0, "progress": {"step": step, "steps": steps}}
    job.update(extra)
    return job


def _result() -> dict[str, Any]:
    """A done job's result as hostkit asks for it (image_format=none): the image comes apart."""
    return {"image": None, "seed": 42}


class Raw:
    """A scripted answer that is not JSON: headers and bare bytes."""

    def __init__(self, headers: dict[str, str], data: bytes) -> None:
        self.headers, self.data = headers, data


RESULT = Raw({"x-width": "2", "x-height": "2", "x-seed": "42"}, RGBA)  # /results/N, format=rgba8


class FakeTransport:
    """Answers from a script: (status, body) answers per (method, longest path prefix); the
    last answer repeats."""

    def __init__(self, script: dict[tuple[str, str], list[tuple[int, Any]]]) -> None:
        self.script = script
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []

    def __call__(self, method: str, path: str, body: bytes | None, headers: dict[str, str]):
        self.calls.append((method, path, json.loads(bytes(body)) if body else None, headers))
        for (m, prefix), answers in sorted(self.script.items(), key=lambda i: -len(i[0][1])):
            if m == method and path.startswith(prefix):
                status, answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if isinstance(answer, Raw):
                    return status, answer.headers, answer.data
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                return status, {"content-type": "application/json"}, data
        return 404, {}, json.dumps({"error": {"code": "not_found", "message": "no"}}).encode()


def _client(script: dict[tuple[str, str], list[tuple[int, Any]]]) -> tuple[Client, FakeTransport]:
    transport = FakeTransport(script)
    return Client("http://127.0.0.1:7860", "tok", transport=transport), transport


# --- errors through the fake transport ---------------------------------------------------------


def test_request_sends_token_and_json() -> None:
    client, transport = _client({("POST", "/v1/jobs"): [(202, {"id": "j9", "state": "queued"})]})
    assert client.submit({"task": "txt2img", "prompt": "a cat"}) == "j9"
    method, path, body, headers = transport.calls[0]
    assert (method, path, body) == ("POST", "/v1/jobs", {"task": "txt2img", "prompt": "a cat"})
    assert headers["Authorization"] == "Bearer tok"
    assert headers["Content-Type"] == "application/json"


def test_live_needs_no_token() -> None:
    client, transport = _client({("GET", "/v1/live"): [(200, {"ok": True})]})
    assert client.is_live()
    assert "Authorization" not in transport.calls[0][3]


@pytest.mark.parametrize(
    ("status", "body", "error", "code", "text"),
    [
        (400, {"error": {"code": "invalid_request", "message": "steps must be in [1, 150]"}},
         RequestRejected, "invalid_request", "steps must be in [1, 150]"),
        (404, {"error": {"code": "model_not_found", "message": "no model 'x'"}},
         RequestRejected, "model_not_found", "no model 'x'"),
        (413, b"not json", RequestRejected, "invalid_request", "HTTP 413"),
        (401, {"error": {"code": "unauthorized", "message": "bad token"}},
         Unauthorized, "unauthorized", "The token comes from"),
        (429, {"error": {"code": "queue_full", "message": "the queue is full (8 jobs)"}},
         QueueFull, "queue_full", "the queue is full"),
        (500, b"Internal Server Error", ServerFault, "server_error", "bug"),
    ],
)  # fmt: skip
def test_http_errors(status: int, body: Any, error: type, code: str, text: str) -> None:
    client, _ = _client({("GET", "/v1/health"): [(status, body)]})
    with pytest.raises(error) as info:
        client.health()
    assert info.value.code == code
    assert info.value.status == status
    assert text in info.value.message
    assert isinstance(info.value, PaintbridgeError)


def test_unauthorized_names_the_token_source() -> None:
    transport = FakeTransport({("GET", "/v1/models"): [(401, {"error": {"code": "unauthorized"}})]})
    client = Client("http://h:1", "t", transport=transport, token_source="/x/server.json")
    with pytest.raises(Unauthorized, match="/x/server.json"):
        client.models()
    # a token typed into the settings: not said to be written by `paintbridge serve`
    transport = FakeTransport({("GET", "/v1/models"): [(401, {"error": {"code": "unauthorized"}})]})
    with pytest.raises(Unauthorized) as typed:
        Client("http://h:1", "t", transport=transport).models()
    assert "comes from the plug-in settings: copy the token it was started with" in str(typed.value)
    assert "writes each time" not in str(typed.value)


def test_ok_status_with_non_json_body_is_a_server_fault() -> None:
    client, _ = _client({("GET", "/v1/health"): [(200, b"<html>")]})
    with pytest.raises(ServerFault, match="not JSON"):
        client.health()


# --- polling, waiting, cancelling ---------------------------------------------------------------


def test_wait_reports_progress_and_returns_results() -> None:
    client, _ = _client(
        {
            ("GET", "/v1/jobs/j1"): [
                (200, _job("queued", 0, 0)),
                (200, _job("running", 1)),
                (200, _job("running", 1)),
                (200, _job("running", 3)),
                (200, _job("done", 4, results=[_result()])),
            ],
            ("GET", "/v1/jobs/j1/results/0"): [(200, RESULT)],
        }
    )
    seen: list[tuple[int, int]] = []
    results = client.wait("j1", on_progress=lambda s, n: seen.append((s, n)), poll_interval=0)
    assert seen == [(0, 0), (1, 4), (3, 4), (4, 4)]
    assert [(r.width, r.height, r.rgba, r.seed) for r in results] == [(2, 2, RGBA, 42)]


def test_wait_fetches_results_as_bare_rgba8() -> None:
    client, transport = _client(
        {
            ("GET", "/v1/jobs/"): [(200, _job("done", results=[_result(), _result()]))],
            ("GET", "/v1/jobs/a%20b%2Fc/results/"): [(200, RESULT)],
        }
    )
    assert [r.rgba for r in client.wait("a b/c", poll_interval=0)] == [RGBA, RGBA]
    assert [call[1] for call in transport.calls] == [
        "/v1/jobs/a%20b%2Fc?image_format=none",
        "/v1/jobs/a%20b%2Fc/results/0?format=rgba8",
        "/v1/jobs/a%20b%2Fc/results/1?format=rgba8",
    ]
    assert transport.calls[1][3]["Authorization"] == "Bearer tok"


@pytest.mark.parametrize(
    "answer",
    [
        Raw({"x-width": "2", "x-height": "2"}, RGBA),  # no seed
        Raw({"x-width": "2", "x-height": "two", "x-seed": "1"}, RGBA),
        Raw({"x-width": "3", "x-height": "2", "x-seed": "1"}, RGBA),  # 16 bytes are not 3x2
    ],
)
def test_a_result_that_does_not_add_up_is_a_server_fault(answer: Raw) -> None:
    client, _ = _client(
        {
            ("GET", "/v1/jobs/j1"): [(200, _job("done", results=[_result()]))],
            ("GET", "/v1/jobs/j1/results/0"): [(200, answer)],
        }
    )
    with pytest.raises(ServerFault, match="result 0 of job j1"):
        client.poll("j1")


def test_a_result_gone_from_history_says_so() -> None:
    gone = {"error": {"code": "not_found", "message": "the result was removed from history"}}
    client, _ = _client(
        {
            ("GET", "/v1/jobs/j1"): [(200, _job("done", results=[_result()]))],
            ("GET", "/v1/jobs/j1/results/0"): [(404, gone)],
        }
    )
    with pytest.raises(RequestRejected, match="removed from history"):
        client.poll("j1")


def test_should_cancel_cancels_on_the_server() -> None:
    client, transport = _client(
        {
            ("GET", "/v1/jobs/j1"): [(200, _job("running", 1))],
            ("POST", "/v1/jobs/j1/cancel"): [(200, {"id": "j1", "state": "cancelled"})],
        }
    )
    polls = iter([False, False, True])
    with pytest.raises(Cancelled):
        client.wait("j1", should_cancel=lambda: next(polls), poll_interval=0)
    assert ("POST", "/v1/jobs/j1/cancel") in [(c[0], c[1]) for c in transport.calls]


def test_failed_and_cancelled_states_raise() -> None:
    error = {"code": "generation_failed", "message": "CUDA out of memory; try a smaller size"}
    client, _ = _client({("GET", "/v1/jobs/j1"): [(200, _job("failed", error=error))]})
    with pytest.raises(JobFailed, match="out of memory") as info:
        client.wait("j1", poll_interval=0)
    assert info.value.code == "generation_failed"
    client, _ = _client({("GET", "/v1/jobs/j1"): [(200, _job("cancelled"))]})
    with pytest.raises(Cancelled):
        client.wait("j1", poll_interval=0)


def test_wait_timeout_cancels_the_job() -> None:
    client, transport = _client(
        {
            ("GET", "/v1/jobs/j1"): [(200, _job("running", 1))],
            ("POST", "/v1/jobs/j1/cancel"): [(200, {"id": "j1", "state": "running"})],
        }
    )
    with pytest.raises(Timeout, match="did not finish within"):
        client.wait("j1", poll_interval=0.01, timeout=0.05)
    assert transport.calls[-1][:2] == ("POST", "/v1/jobs/j1/cancel")


def test_poll_delays_start_quick_and_settle() -> None:
    assert list(itertools.islice(client_module.poll_delays(), 6)) == [
        0.05, 0.1, 0.2, 0.25, 0.25, 0.25
    ]  # fmt: skip
    assert list(itertools.islice(client_module.poll_delays(0.1, 0.3), 4)) == [0.1, 0.2, 0.3, 0.3]


@pytest.mark.parametrize(
    ("poll_interval", "expected"),
    [(None, [0.05, 0.1, 0.2, 0.25]), (0.3, [0.3] * 4)],
)
def test_wait_sleeps_between_polls_when_the_server_answers_at_once(
    monkeypatch: pytest.MonkeyPatch, poll_interval: float | None, expected: list[float]
) -> None:
    """A server that does not hold the answer (an older one): the same state back at once."""
    running = [(200, _job("running", 1))] * 5
    client, transport = _client({("GET", "/v1/jobs/j1"): [*running, (200, _job("done"))]})
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    assert client.wait("j1", poll_interval=poll_interval) == []
    assert slept == pytest.approx(expected, abs=0.01)
    assert [call[1] for call in transport.calls] == [
        "/v1/jobs/j1?image_format=none",
        *["/v1/jobs/j1?image_format=none&wait=0.5"] * 5,
    ]


def test_wait_polls_again_at_once_after_each_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each answer brings a new step (a server holding answers until a change): no sleeping."""
    steps = [(200, _job("running", step)) for step in (1, 2, 3)]
    client, transport = _client({("GET", "/v1/jobs/j1"): [*steps, (200, _job("done", 4))]})
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    assert client.wait("j1") == []
    assert slept == [] and len(transport.calls) == 4


def test_run_is_submit_plus_wait() -> None:
    client, _ = _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued", "position": 0})],
            ("GET", "/v1/jobs/j1"): [(200, _job("done", 4, results=[_result(), _result()]))],
            ("GET", "/v1/jobs/j1/results/"): [(200, RESULT)],
        }
    )
    assert len(client.run({"task": "txt2img", "prompt": "x"})) == 2


def test_job_handle_polls_without_blocking() -> None:
    client, transport = _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued", "position": 2})],
            ("GET", "/v1/jobs/j1"): [
                (200, _job("queued", 0, 0, position=2)),
                (200, _job("running", 2)),
                (200, _job("done", 4, results=[_result()])),
            ],
            ("GET", "/v1/jobs/j1/results/0"): [(200, RESULT)],
            ("POST", "/v1/jobs/j1/cancel"): [(200, {"id": "j1", "state": "cancelled"})],
        }
    )
    handle = client.start({"task": "txt2img", "prompt": "x"})
    first = handle.poll()
    assert (first.state, first.position, first.finished, first.fraction) == ("queued", 2, False, 0)
    second = handle.poll()
    assert (second.step, second.steps, second.fraction) == (2, 4, 0.5)
    third = handle.poll()
    assert third.finished and third.done and third.results[0].rgba == RGBA
    assert handle.last is third
    assert third.raise_for_state() is third
    assert handle.cancel() == {"id": "j1", "state": "cancelled"}
    assert len(transport.calls) == 6  # submit, 3 polls, the result, cancel


class HeldTransport(FakeTransport):
    """A FakeTransport whose status requests (and cancels) wait until `release` is set (a slow
    or hung server)."""

    def __init__(self, script: dict[tuple[str, str], list[tuple[int, Any]]]) -> None:
        super().__init__(script)
        self.release = threading.Event()

    def __call__(self, method: str, path: str, body: bytes | None, headers: dict[str, str]):
        if (method == "GET" and "/results/" not in path) or path.endswith("/cancel"):
            assert self.release.wait(30), "never released"
        return super().__call__(method, path, body, headers)


def _held_running_job() -> tuple[HeldTransport, Any]:
    """A HeldTransport and a JobWatch of a running job, sent, its first status request held."""
    transport = HeldTransport(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("running", 1))],
            ("POST", "/v1/jobs/j1/cancel"): [(200, {"id": "j1", "state": "cancelled"})],
        }
    )
    watch = Client("http://127.0.0.1:7860", "tok", transport=transport).watch({"prompt": "x"})
    assert _until(lambda: watch.id) == "j1"
    return transport, watch


def _until(condition: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"not within {seconds} s")


def test_a_watched_job_is_polled_off_the_callers_thread() -> None:
    """While the server holds every status request, the watch's poll() still answers (a
    JobHandle's would wait with it); once answers come, the watch has them, results included."""
    transport = HeldTransport(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued", "position": 1})],
            ("GET", "/v1/jobs/j1"): [
                (200, _job("running", 2)),
                (200, _job("done", 4, results=[_result()])),
            ],
            ("GET", "/v1/jobs/j1/results/0"): [(200, RESULT)],
        }
    )
    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    watch = client.watch({"task": "txt2img", "prompt": "x"})
    assert _until(lambda: watch.id) == "j1"
    answered = []
    caller = threading.Thread(target=lambda: answered.append(watch.poll()))
    caller.start()
    caller.join(5)
    assert answered and answered[0].state == "queued" and not answered[0].finished
    transport.release.set()
    done = _until(lambda: watch.poll().finished and watch.poll())
    assert done.done and done.results[0].rgba == RGBA and done.results[0].seed == 42
    gets = [path for method, path, _, _ in transport.calls if method == "GET"]
    assert "wait=" in gets[1]  # after the first answer, each poll waits on the server


class UploadTransport(FakeTransport):
    """A FakeTransport that reads a request body piece by piece, as urllib sends it, and stops
    after the first piece until `go_on` is set (a slow upload)."""

    def __init__(self, script: dict[tuple[str, str], list[tuple[int, Any]]]) -> None:
        super().__init__(script)
        self.go_on = threading.Event()
        self.first_piece = threading.Event()

    def __call__(self, method: str, path: str, body: Any, headers: dict[str, str]):
        if method == "POST" and path == "/v1/jobs":
            pieces = []
            for piece in body:
                pieces.append(piece)
                self.first_piece.set()
                assert self.go_on.wait(30), "never let go on"
            body = b"".join(pieces)
        return super().__call__(method, path, body, headers)


def _large_job() -> dict[str, Any]:
    rgba = bytes(1024 * 1024 * 3)  # 4 MB of base64: 4 pieces
    return {"task": "img2img", "prompt": "x", "image": _payload(rgba, 1024, 768)}


def test_a_watched_job_is_sent_off_the_callers_thread_and_says_how_far_it_is() -> None:
    transport = UploadTransport(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("done", 4, results=[_result()]))],
            ("GET", "/v1/jobs/j1/results/0"): [(200, RESULT)],
        }
    )
    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    job = _large_job()
    watch = client.watch(job)  # returns while the upload waits after its first piece
    assert transport.first_piece.wait(10)
    sending = watch.poll()
    assert (sending.state, sending.id, sending.finished) == (client_module.SENDING, None, False)
    assert sending.size == len(json.dumps(job)) and 0 <= sending.sent < sending.size
    sent, size = sending.sent / 2**20, sending.size / 2**20
    assert client_module.status_text(sending) == f"Sending ({sent:.1f} of {size:.1f} MB)"
    transport.go_on.set()
    done = _until(lambda: watch.poll().finished and watch.poll())
    assert done.done and watch.id == "j1"
    assert transport.calls[0][2] == job  # the body the server got is the whole job


def test_a_watch_cancelled_while_sending_stops_the_upload() -> None:
    transport = UploadTransport({("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})]})
    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    watch = client.watch(_large_job())
    assert transport.first_piece.wait(10)
    watch.cancel()
    transport.go_on.set()
    with pytest.raises(Cancelled, match="being sent"):
        _until(lambda: watch.poll().finished)
    assert watch.join(5) and watch.id is None and transport.calls == []  # never reached the server


def test_a_watch_cancelled_during_a_stalled_upload_ends_at_once() -> None:
    """The server stops reading (hung, or a link that stalled): the upload cannot stop before
    the socket gives up, but the job ends cancelled for the GUI at once, and the upload's
    failure that follows is not reported (nor the server asked why it broke)."""
    transport = UploadTransport({("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})]})
    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    watch = client.watch(_large_job())
    assert transport.first_piece.wait(10)
    watch.cancel()
    with pytest.raises(Cancelled, match="being sent"):
        watch.poll()
    transport.go_on.set()
    assert watch.join(5) and transport.calls == []


def test_no_cancel_goes_out_for_a_job_the_server_said_has_finished() -> None:
    """Blender's Esc cancels and closes the watch while a poll is out; its answer says the job
    is done: nothing is left to cancel."""
    transport = HeldTransport(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("done", 4, results=[_result()]))],
            ("POST", "/v1/jobs/j1/cancel"): [(200, {"id": "j1", "state": "done"})],
        }
    )
    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    watch = client.watch({"task": "txt2img", "prompt": "x"})
    assert _until(lambda: watch.id) == "j1"
    time.sleep(0.2)  # its first status request is held
    watch.cancel()
    watch.close()
    transport.release.set()
    assert watch.join(5)
    assert [p for _, p, _, _ in transport.calls if p.endswith("/cancel")] == []


def test_a_watch_cancels_from_its_thread_even_once_closed() -> None:
    """cancel() returns while the server holds every request (it makes none); the thread sends
    the cancel, also when the GUI closes the watch right after (Blender's Esc does both)."""
    transport, watch = _held_running_job()
    watch.cancel()
    watch.close()
    transport.release.set()
    assert watch.join(5)
    assert ("POST", "/v1/jobs/j1/cancel") in [(m, p) for m, p, _, _ in transport.calls]


def test_a_cancel_can_wait_until_it_has_gone_out() -> None:
    """An editor that is closing waits (a little) for the server to have the cancel."""
    transport, watch = _held_running_job()
    threading.Timer(0.3, transport.release.set).start()  # the requests under way end
    watch.cancel(wait=5)
    assert ("POST", "/v1/jobs/j1/cancel") in [(m, p) for m, p, _, _ in transport.calls]
    watch.close()


def test_a_watched_job_ends_as_the_server_says_after_a_cancel() -> None:
    client, transport = _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("running", 1))],
            ("POST", "/v1/jobs/j1/cancel"): [(200, {"id": "j1", "state": "cancelled"})],
        }
    )
    watch = client.watch({"task": "txt2img", "prompt": "x"})
    _until(lambda: watch.poll().state == "running")
    watch.cancel()
    _until(lambda: any(p.endswith("/cancel") for _, p, _, _ in transport.calls))
    transport.script[("GET", "/v1/jobs/j1")] = [(200, _job("cancelled", 1))]
    ended = _until(lambda: watch.poll().finished and watch.poll())
    assert ended.state == "cancelled"
    cancels = [p for m, p, _, _ in transport.calls if p.endswith("/cancel")]
    assert cancels == ["/v1/jobs/j1/cancel"]  # once


def test_a_cancel_the_server_does_not_answer_ends_the_watch_as_cancelled() -> None:
    client, _ = _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("running", 1))],
            ("POST", "/v1/jobs/j1/cancel"): [(500, {"error": {"code": "x", "message": "boom"}})],
        }
    )
    watch = client.watch({"task": "txt2img", "prompt": "x"})
    _until(lambda: watch.poll().state == "running")
    watch.cancel()
    with pytest.raises(Cancelled, match="did not answer the cancel.*history export j1"):
        _until(lambda: watch.poll().finished)


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ((200, {"id": "j1", "state": "done"}), "Cancelled; nothing was added. "),
        ((200, {"id": "j1", "state": "cancelled"}), None),
        ((500, {"error": {"code": "x", "message": "boom"}}), "did not answer the cancel"),
    ],
    ids=["done-before-the-cancel", "cancelled", "cancel-unanswered"],
)
def test_follow_cancelled_says_where_a_result_may_be_kept(answer: Any, kept: str | None) -> None:
    """GIMP's Cancel: silent when nothing was made; when the job finished before the cancel
    came (the server answers "done") or the cancel went unanswered, a Cancelled of code
    RESULT_KEPT whose message names the history command, which GIMP shows."""
    client, _ = _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("running", 1))],
            ("POST", "/v1/jobs/j1/cancel"): [answer],
        }
    )
    watch = client.watch({"task": "txt2img", "prompt": "x"})
    _until(lambda: watch.poll().state == "running")
    with pytest.raises(Cancelled) as raised:
        watch.follow(should_cancel=lambda: True)
    if kept is None:
        assert raised.value.code == "cancelled" and not watch.server_done
        assert raised.value.message == "Cancelled; no image was made."
    else:
        assert raised.value.code == client_module.RESULT_KEPT
        assert kept in raised.value.message and "history export j1" in raised.value.message


def test_a_job_the_server_refuses_is_raised_by_the_watchs_poll() -> None:
    client, _ = _client(
        {("POST", "/v1/jobs"): [(422, {"error": {"code": "invalid", "message": "no model"}})]}
    )
    watch = client.watch({"task": "txt2img", "prompt": "x"})
    with pytest.raises(RequestRejected, match="no model"):
        _until(lambda: watch.poll().finished)


def test_follow_shows_the_upload_then_the_job_and_returns_its_results() -> None:
    """GIMP's way: the caller's thread blocks but looks every 50 ms (its window keeps
    answering); the upload shows as it goes, then the steps."""
    transport = UploadTransport(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [
                (200, _job("running", 1)),
                (200, _job("running", 2)),
                (200, _job("done", 4, results=[_result()])),
            ],
            ("GET", "/v1/jobs/j1/results/0"): [(200, RESULT)],
        }
    )
    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    shown: list[tuple[float, str]] = []
    looks = []

    def on_status(status: JobStatus, text: str) -> None:
        shown.append((status.fraction, text))
        transport.go_on.set()  # the upload goes on once it has been shown

    watch = client.watch(_large_job())
    results = watch.follow(on_status, lambda: looks.append(1) and False)
    assert [(r.width, r.height, r.seed, r.rgba) for r in results] == [(2, 2, 42, RGBA)]
    assert shown[0][1].startswith("Sending") and shown[0][0] < 1.0
    assert len(shown) == len(set(shown))  # only changes are shown
    assert looks and watch.join(5)  # closed: its thread ended with the job


def test_follow_cancelled_during_the_upload_never_reaches_the_server() -> None:
    transport = UploadTransport({("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})]})
    client = Client("http://127.0.0.1:7860", "tok", transport=transport)

    def should_cancel() -> bool:
        if not transport.first_piece.is_set():
            return False
        transport.go_on.set()  # the next piece finds the upload stopped
        return True

    started = time.monotonic()
    with pytest.raises(Cancelled, match="no image was made"):
        client.watch(_large_job()).follow(should_cancel=should_cancel)
    assert time.monotonic() - started < 2.5  # not CANCEL_WAIT: the upload stopped at once
    assert transport.calls == []


def test_follow_cancelled_while_running_has_sent_the_cancel_when_it_raises() -> None:
    """GIMP's plug-in ends right after Cancel: the cancel must have gone out by then."""
    client, transport = _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("running", 1))],
            ("POST", "/v1/jobs/j1/cancel"): [(200, {"id": "j1", "state": "cancelled"})],
        }
    )
    texts: list[str] = []
    with pytest.raises(Cancelled, match="no image was made"):
        client.watch({"task": "txt2img", "prompt": "x"}).follow(
            lambda _status, text: texts.append(text), lambda: "Step 1 of 4" in texts
        )
    assert ("POST", "/v1/jobs/j1/cancel") in [(m, p) for m, p, _, _ in transport.calls]


def test_follow_raises_a_refusal_with_the_servers_message() -> None:
    client, _ = _client(
        {("POST", "/v1/jobs"): [(422, {"error": {"code": "invalid", "message": "no model"}})]}
    )
    with pytest.raises(RequestRejected, match="no model"):
        client.watch({"task": "txt2img", "prompt": "x"}).follow()


def test_a_sending_jobs_fraction_is_the_uploads() -> None:
    """Progress bars show the upload, then the steps."""
    assert JobStatus({"state": "sending", "upload": {"sent": 25, "size": 100}}).fraction == 0.25
    assert JobStatus({"state": "sending"}).fraction == 0.0
    assert JobStatus({"state": "running", "progress": {"step": 1, "steps": 4}}).fraction == 0.25


@pytest.mark.parametrize(
    ("raw", "trouble", "text"),
    [
        ({"state": "sending", "upload": {"sent": 10, "size": 900}}, None, "Sending"),
        (
            {"state": "sending", "upload": {"sent": 2**20, "size": 3 * 2**20}},
            None,
            "Sending (1.0 of 3.0 MB)",
        ),
        ({"state": "queued", "position": 2}, None, "Queued (2 ahead)"),
        ({"state": "queued", "position": 0}, None, "Queued"),
        ({"state": "running", "progress": {"step": 3, "steps": 20}}, None, "Step 3 of 20"),
        ({"state": "running"}, None, "Running"),
        ({"state": "finishing", "progress": {"step": 20, "steps": 20}}, None, "Finishing"),
        ({"state": "running"}, Timeout("late"), "No answer from the server; trying again\u2026"),
    ],
)
def test_status_text(raw: dict[str, Any], trouble: Exception | None, text: str) -> None:
    assert client_module.status_text(JobStatus(raw), trouble) == text


def test_a_watched_job_that_fails_or_is_given_up_raises_from_poll() -> None:
    client, _ = _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(404, {"error": {"code": "not_found", "message": "gone"}})],
        }
    )
    watch = client.watch({"task": "txt2img", "prompt": "x"})
    with pytest.raises(PaintbridgeError, match="gone"):
        _until(lambda: watch.poll().finished)


def test_a_closed_watch_stops_polling() -> None:
    client, transport = _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("queued", 0, 0))],
        }
    )
    watch = client.watch({"task": "txt2img", "prompt": "x"})
    _until(lambda: len(transport.calls) >= 3)
    watch.close()
    time.sleep(0.5)  # a poll under way may still end
    count = len(transport.calls)
    time.sleep(1.0)
    assert len(transport.calls) == count


def test_a_watch_closed_during_a_poll_fetches_no_result() -> None:
    """The answer to a poll under way when the watch is closed says the job is done: its
    results are not downloaded for nobody (a download could outlast the exit hook's wait)."""
    transport = HeldTransport(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("done", 4, results=[_result()]))],
            ("GET", "/v1/jobs/j1/results/0"): [(200, RESULT)],
        }
    )
    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    watch = client.watch({"task": "txt2img", "prompt": "x"})
    time.sleep(0.2)  # the thread is in its first status request, held
    watch.close()
    transport.release.set()
    watch._thread.join(5)
    assert not watch._thread.is_alive()
    assert [path for _, path, _, _ in transport.calls if "/results/" in path] == []
    assert [path for method, path, _, _ in transport.calls if method == "GET"] == [
        "/v1/jobs/j1?image_format=none"
    ]


def test_job_status_failed_raise_for_state() -> None:
    status = JobStatus(_job("failed", error={"code": "x", "message": "boom"}))
    assert status.finished and not status.done
    with pytest.raises(JobFailed, match="boom"):
        status.raise_for_state()


def test_a_job_the_servers_stop_ended_says_the_server_stopped() -> None:
    """The same words as when the stop refuses the next poll, whichever the poll met."""
    message = "the server stopped before the job finished; no image was made"
    status = JobStatus(_job("failed", error={"code": "shutting_down", "message": message}))
    with pytest.raises(NotRunning) as info:
        status.raise_for_state()
    assert info.value.message == (
        "The paintbridge server stopped before the job finished; no image was made. Start it "
        "with `paintbridge serve` and try again."
    )


def test_unreadable_result_is_a_server_fault() -> None:
    bad = {"image": {"width": 3, "height": 3, "format": "rgba8", "data": "AAAA"}, "seed": 1}
    with pytest.raises(ServerFault, match="cannot be read"):
        JobStatus(_job("done", results=[bad]))


# --- config folder --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "environ", "home", "expected"),
    [
        ("linux", {}, "/home/u", "/home/u/.config/paintbridge"),
        ("linux", {"XDG_CONFIG_HOME": "/xdg"}, "/home/u", "/xdg/paintbridge"),
        ("linux", {"XDG_CONFIG_HOME": "  "}, "/home/u", "/home/u/.config/paintbridge"),
        ("darwin", {"XDG_CONFIG_HOME": "/xdg"}, "/Users/u",
         "/Users/u/Library/Application Support/paintbridge"),
        ("win32", {"LOCALAPPDATA": "C:\\Users\\u\\AppData\\Local"}, "C:\\Users\\u",
         "C:\\Users\\u\\AppData\\Local\\paintbridge"),
        ("win32", {}, "C:\\Users\\u", "C:\\Users\\u\\AppData\\Local\\paintbridge"),
        ("linux", {"PAINTBRIDGE_CONFIG_DIR": "~/pb"}, "/home/u", "/home/u/pb"),
    ],
)  # fmt: skip
def test_user_config_dir_table(
    platform: str, environ: dict[str, str], home: str, expected: str
) -> None:
    assert user_config_dir(platform, environ, home) == expected


def test_user_config_dir_matches_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAINTBRIDGE_CONFIG_DIR")
    assert user_config_dir() == platformdirs.user_config_dir("paintbridge", appauthor=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/tmp/elsewhere")
    assert user_config_dir() == platformdirs.user_config_dir("paintbridge", appauthor=False)


def test_user_config_dir_honours_the_override(isolated_dirs: Path) -> None:
    assert user_config_dir() == str(isolated_dirs / "config")


# --- the real transport over a socket -----------------------------------------------------------


Route = Callable[[BaseHTTPRequestHandler, bytes], tuple[int, dict[str, str], bytes]]


class _Handler(BaseHTTPRequestHandler):
    routes: dict[tuple[str, str], Route] = {}
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, dict(self.headers), body))
        route = self.routes.get((self.command, self.path.split("?")[0]))
        if route is None:
            status, headers, data = 404, {}, b'{"error": {"code": "not_found", "message": "nf"}}'
        else:
            status, headers, data = route(self, body)
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = _serve

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"routes": {}, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Route:
    return lambda handler, data: (status, headers or {}, json.dumps(body).encode())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_says_start_the_server() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    client = Client(url, "t", timeout=5)
    with pytest.raises(NotRunning) as info:
        client.health()
    assert info.value.message.startswith(
        f"Could not reach the paintbridge server at {url}. Start it with `paintbridge serve`, "
        "or check the URL in the plug-in settings."
    )
    assert info.value.code == "not_running"
    assert not client.is_live()


def test_real_socket_job_flow(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    handler.routes[("POST", "/v1/jobs")] = _json(
        202, {"id": "j1", "state": "queued", "position": 0}
    )
    states = iter([_job("running", 1), _job("done", 4, results=[_result()])])
    handler.routes[("GET", "/v1/jobs/j1")] = lambda h, d: (
        200,
        {},
        json.dumps(next(states)).encode(),
    )
    handler.routes[("GET", "/v1/jobs/j1/results/0")] = lambda h, d: (
        200,
        {"X-Width": "2", "X-Height": "2", "X-Seed": "42"},
        RGBA,
    )
    results = Client(url, "secret", timeout=5).run({"task": "txt2img", "prompt": "é"}, None, None)
    assert results[0].rgba == RGBA
    method, path, headers, body = handler.seen[0]
    assert (method, path) == ("POST", "/v1/jobs")
    assert headers["Authorization"] == "Bearer secret"
    assert json.loads(body) == {"task": "txt2img", "prompt": "é"}
    assert handler.seen[1][1] == "/v1/jobs/j1?image_format=none"
    assert handler.seen[3][1] == "/v1/jobs/j1/results/0?format=rgba8"


def test_a_redirect_is_not_followed(http_server: tuple[str, type[_Handler]]) -> None:
    """urllib would follow it with the token to wherever it points; the user is told the
    address to use instead."""
    url, handler = http_server
    handler.routes[("GET", "/v1/health")] = _json(307, {}, {"Location": url + "/elsewhere"})
    handler.routes[("GET", "/elsewhere")] = _json(200, {"version": "x"})
    with pytest.raises(RequestRejected, match="sending it to .*/elsewhere") as caught:
        Client(url, "tok", timeout=5).health()
    assert caught.value.code == "redirected"
    assert [path for _, path, _, _ in handler.seen] == ["/v1/health"]


def test_real_socket_401(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    handler.routes[("GET", "/v1/health")] = _json(
        401, {"error": {"code": "unauthorized", "message": "wrong token"}}
    )
    with pytest.raises(Unauthorized, match="wrong token") as info:
        Client(url, "bad", timeout=5).health()
    assert info.value.status == 401


def test_real_socket_429_with_retry_after(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    handler.routes[("POST", "/v1/jobs")] = _json(
        429, {"error": {"code": "queue_full", "message": "queue full"}}, {"Retry-After": "5"}
    )
    with pytest.raises(QueueFull) as info:
        Client(url, "t", timeout=5).submit({"task": "txt2img", "prompt": "x"})
    assert info.value.retry_after == 5.0
    assert info.value.message == "queue full"


def test_real_socket_400_error_body(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    message = "mask is 10x10 but image is 20x20"
    handler.routes[("POST", "/v1/jobs")] = _json(
        400, {"error": {"code": "invalid_request", "message": message}}
    )
    with pytest.raises(RequestRejected) as info:
        Client(url, "t", timeout=5).submit({"task": "inpaint", "prompt": "x"})
    assert (info.value.message, info.value.code, info.value.status) == (
        message,
        "invalid_request",
        400,
    )


def test_real_socket_timeout(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server

    def slow(h: BaseHTTPRequestHandler, data: bytes) -> tuple[int, dict[str, str], bytes]:
        time.sleep(1.0)
        return 200, {}, b"{}"

    handler.routes[("GET", "/v1/health")] = slow
    started = time.monotonic()
    with pytest.raises(Timeout, match="did not answer within 0.2 s"):
        Client(url, "t", timeout=0.2).health()
    assert time.monotonic() - started < 0.9


def test_a_status_poll_gives_up_sooner_than_other_requests(
    http_server: tuple[str, type[_Handler]],
) -> None:
    """A GUI host polls on its own thread: a server that stops answering froze Krita for the
    whole request timeout (10 s there, 30 s in Blender) on every poll. A status poll gives up
    after STATUS_TIMEOUT (and is tried again, as any poll without an answer); other requests
    keep the client's timeout."""
    from paintbridge.hostkit import client as hk_client

    url, handler = http_server

    def hung(h: BaseHTTPRequestHandler, data: bytes) -> tuple[int, dict[str, str], bytes]:
        time.sleep(hk_client.STATUS_TIMEOUT + hk_client.LONG_POLL + 2)
        return 200, {}, b'{"id": "j1", "state": "running"}'

    handler.routes[("GET", "/v1/jobs/j1")] = hung
    handler.routes[("POST", "/v1/jobs")] = _json(202, {"id": "j1", "state": "queued"})
    client = Client(url, "t", timeout=30)
    job = client.start({"task": "txt2img", "prompt": "x"})
    started = time.monotonic()
    status = job.poll()
    took = time.monotonic() - started
    assert status.state == "queued" and isinstance(job.trouble, Timeout)  # tried again later
    assert took < hk_client.STATUS_TIMEOUT + hk_client.LONG_POLL + 1.5, took
    assert "did not answer within" in job.trouble.message

    handler.routes[("GET", "/v1/health")] = lambda h, d: time.sleep(5) or (200, {}, b"{}")
    assert Client(url, "t", timeout=30).health() == {}  # 5 s: within the client's timeout


def test_real_socket_connection_dropped() -> None:
    """A listener that accepts and closes at once (a crashed server) is 'not reachable'."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def accept_and_close() -> None:
        conn, _ = listener.accept()
        conn.close()

    thread = threading.Thread(target=accept_and_close, daemon=True)
    thread.start()
    try:
        with pytest.raises(NotRunning, match="Could not reach"):
            Client(f"http://127.0.0.1:{port}", "t", timeout=5).health()
    finally:
        thread.join(5)
        listener.close()


def test_proxies_are_bypassed_for_loopback(
    http_server: tuple[str, type[_Handler]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = http_server
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    handler.routes[("GET", "/v1/live")] = _json(200, {"ok": True})
    assert Client(url, "t", timeout=5).live() == {"ok": True}


# --- discovery and auto-start ------------------------------------------------------------------


def test_discover_reads_server_json(
    http_server: tuple[str, type[_Handler]], isolated_dirs: Path
) -> None:
    url, handler = http_server

    def live(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        challenge = request.path.partition("challenge=")[2]  # it proves it holds "tk"
        proof = live_proof("tk", url, challenge)
        return 200, {}, json.dumps({"ok": True, "proof": proof}).encode()

    handler.routes[("GET", "/v1/live")] = live
    config = isolated_dirs / "config"
    config.mkdir()
    (config / "server.json").write_text(json.dumps({"url": url, "token": "tk", "pid": 1}))
    client = Client.discover(autostart=False)
    assert (client.url, client.token) == (url, "tk")
    assert client.token_source == str(config / "server.json")


def test_discover_without_server_or_launcher(isolated_dirs: Path) -> None:
    with pytest.raises(NotRunning, match="plugins install"):
        Client.discover()
    config = isolated_dirs / "config"
    config.mkdir()
    stale = f"http://127.0.0.1:{_free_port()}"
    (config / "server.json").write_text(json.dumps({"url": stale, "token": "x"}))
    with pytest.raises(NotRunning, match=f"server at {stale}"):
        Client.discover(autostart=False)


def test_a_server_lost_mid_job_says_so_for_wait_and_for_a_polled_handle() -> None:
    """Submitted, then the server vanishes: the error says the job died with it, nothing was
    made, and still what to do."""
    script = {("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})]}
    answers = FakeTransport(script)

    def transport(method: str, path: str, body: bytes | None, headers: dict[str, str]):
        if method == "GET":
            # what UrllibTransport raises once nothing listens at the address (refused)
            gone = NotRunning("Could not reach the paintbridge server. Run `paintbridge serve`.")
            gone.refused = True  # type: ignore[attr-defined]
            raise gone
        return answers(method, path, body, headers)

    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    for wait in (lambda: client.run({"task": "txt2img"}), lambda: client.start({}).poll()):
        with pytest.raises(NotRunning) as info:
            wait()
        assert info.value.message.startswith(
            "The paintbridge server stopped before the job finished; no image was made. Could "
            "not reach the paintbridge server. Run `paintbridge serve`."
        )


# --- large images: the request body in pieces, the answer without extra copies -----------------


def _payload(data: bytes, width: int, height: int, format: str = "rgba8") -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    return {"width": width, "height": height, "format": format, "data": encoded}


def test_a_large_job_goes_in_pieces_with_its_exact_content_length(
    http_server: tuple[str, type[_Handler]],
) -> None:
    url, handler = http_server
    handler.routes[("POST", "/v1/jobs")] = _json(202, {"id": "j1", "state": "queued"})
    rgba = os.urandom(1000 * 800 * 4)  # 4.3 MB of base64: 4 pieces and a bit
    job = {
        "task": "inpaint",
        "prompt": "\u00e9",
        "image": _payload(rgba, 1000, 800),
        "mask": _payload(rgba[: 1000 * 800], 1000, 800, "a8"),
    }
    assert Client(url, "t", timeout=30).submit(job) == "j1"
    method, path, headers, body = handler.seen[0]
    assert (method, path) == ("POST", "/v1/jobs")
    assert "Transfer-Encoding" not in headers
    assert int(headers["Content-Length"]) == len(body) == len(json.dumps(job))
    assert body == json.dumps(job).encode()
    assert base64.b64decode(json.loads(body)["image"]["data"]) == rgba


def test_a_large_result_is_read_without_extra_copies() -> None:
    """A done job's 12 MB result: polling holds the bytes the socket gave once, and nothing
    more (as base64 in a JSON answer it cost 2x that answer, 2.7x the image, at best)."""
    rgba = os.urandom(12 * 1024 * 1024)
    status = json.dumps(_job("done", results=[{"image": None, "seed": 3}])).encode()
    headers = {"x-width": "2048", "x-height": "1536", "x-seed": "3"}

    def transport(method: str, path: str, body: bytes | None, headers_: dict[str, str]):
        if "/results/0" in path:
            return 200, headers, bytearray(rgba)  # a fresh buffer, as reading a socket makes
        return 200, {}, status

    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    tracemalloc.start()
    try:
        polled = client.poll("j1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert polled.results[0].rgba == rgba and polled.results[0].seed == 3
    assert peak < 1.1 * len(rgba), peak / len(rgba)


def test_a_large_json_answer_is_read_without_extra_copies() -> None:
    """A done job's answer with a 12 MB image inline (image_format=rgba8): at most the answer's
    text and its parsed string are alive at once (2x the answer), never the bytes as well, nor a
    bytes copy of the base64 before it is decoded (3x the answer or more before)."""
    rgba = os.urandom(12 * 1024 * 1024)
    result = {"image": _payload(rgba, 2048, 1536), "seed": 3}
    answer = bytearray(json.dumps(_job("done", results=[result])).encode())

    def transport(method: str, path: str, body: bytes | None, headers: dict[str, str]):
        return 200, {}, bytes(answer)  # a fresh copy, as reading a socket makes

    client = Client("http://127.0.0.1:7860", "tok", transport=transport)
    tracemalloc.start()
    try:
        status = JobStatus(client.status("j1", "rgba8"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status.results[0].rgba == rgba
    assert peak < 2.2 * len(answer), peak / len(answer)


def _done_job_client() -> tuple[Client, FakeTransport]:
    return _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [
                (200, _job("running", 3)),
                (200, _job("done", 4, results=[_result()])),
            ],
            ("GET", "/v1/jobs/j1/results/0"): [(200, RESULT)],
        }
    )


def test_a_watch_prepares_the_results_on_its_thread_before_it_says_done() -> None:
    """The host's pixel work on a result runs on the watch's thread: until it has returned,
    poll() says the job is finishing, then the finished status carries what it returned."""
    client, _ = _done_job_client()
    may_return, started = threading.Event(), threading.Event()
    threads = []

    def prepare(results: list[Any]) -> list[tuple[int, bytes]]:
        threads.append(threading.current_thread())
        started.set()
        assert may_return.wait(10)
        return [(result.seed, result.rgba) for result in results]

    watch = client.watch({"task": "txt2img", "prompt": "x"}, prepare=prepare)
    assert started.wait(10)
    status = watch.poll()
    assert status.state == client_module.FINISHING and not status.finished  # results not ready
    assert status.fraction == 1.0 and client_module.status_text(status) == "Finishing"
    may_return.set()
    done = _until(lambda: watch.poll().finished and watch.poll())
    assert done.done and done.results == [(42, RGBA)]
    assert threads == [watch._thread]
    assert client.watch({"task": "x"}, prepare=prepare).follow() == [(42, RGBA)]


def test_a_result_a_watchs_prepare_cannot_use_is_raised_saying_where_it_is_kept() -> None:
    """Whatever prepare raises (a host's check, a bug, MemoryError) ends the job for the GUI as
    a PaintbridgeError: the host shows its message, and the result is in the history."""
    client, _ = _done_job_client()
    problem = ValueError("the result is 8 x 8, not 64 x 64")

    def prepare(results: list[Any]) -> list[Any]:
        raise problem

    watch = client.watch({"task": "txt2img", "prompt": "x"}, prepare=prepare)
    with pytest.raises(PaintbridgeError, match="not 64 x 64. .*history export j1") as raised:
        _until(lambda: watch.poll().finished)
    assert raised.value.code == "result_not_used" and raised.value.cause is problem
    with pytest.raises(PaintbridgeError, match="use its result: MemoryError. "):
        client.watch({"task": "x"}, prepare=lambda results: _raise(MemoryError())).follow()
    fault = ServerFault("The server sent a 8x8 result for a 64x64 image.", status=200)
    with pytest.raises(ServerFault) as raised:  # a PaintbridgeError keeps its type and code
        client.watch({"task": "x"}, prepare=lambda results: _raise(fault)).follow()
    assert str(raised.value).startswith("The server sent a 8x8 result for a 64x64 image. ")
    assert "`paintbridge history export j1 --out DIR`" in str(raised.value)
    assert raised.value.code == "server_error" and raised.value.status == 200
    cancelled = Cancelled("Cancelled.")
    with pytest.raises(Cancelled) as raised:  # nothing to add: the user asked for no result
        client.watch({"task": "x"}, prepare=lambda results: _raise(cancelled)).follow()
    assert raised.value is cancelled


def test_a_done_jobs_result_that_cannot_be_read_says_where_it_is_kept() -> None:
    short = Raw({"x-width": "2", "x-height": "2", "x-seed": "42"}, RGBA[:-1])
    client, _ = _client(
        {
            ("POST", "/v1/jobs"): [(202, {"id": "j1", "state": "queued"})],
            ("GET", "/v1/jobs/j1"): [(200, _job("done", 4, results=[_result()]))],
            ("GET", "/v1/jobs/j1/results/0"): [(200, short)],
        }
    )
    with pytest.raises(ServerFault, match="not 2x2 RGBA8 pixels. .*history export j1 ") as raised:
        client.watch({"task": "txt2img", "prompt": "x"}).follow()
    assert raised.value.code == "server_error"


def test_a_watch_makes_a_jobs_later_pixels_on_its_thread() -> None:
    """A plug-in's pixel work on what it read (Blender's float conversion, Krita's byte order)
    runs on the watch's thread as the job is sent; what it raises ends the job, unsent."""
    client, transport = _done_job_client()
    threads = []

    def convert() -> bytes:
        threads.append(threading.current_thread())
        return RGBA

    watch = client.watch(img2img_job(Later(convert), 2, 2, prompt="x"))
    [result] = watch.follow()
    assert (result.rgba, result.seed) == (RGBA, 42) and threads == [watch._thread]
    sent = transport.calls[0][2]["image"]
    assert base64.b64decode(sent["data"]) == RGBA
    for problem, advice in (
        (MemoryError(), "Close other programs or work on a smaller area"),
        (ValueError("pixels has 3 values"), "This is a bug in paintbridge"),
    ):
        calls = len(transport.calls)
        job = img2img_job(Later(lambda problem=problem: _raise(problem)), 2, 2, prompt="x")
        with pytest.raises(PaintbridgeError, match="could not be prepared for sending") as raised:
            client.watch(job).follow()
        assert advice in raised.value.message and raised.value.code == "job_not_made"
        assert raised.value.cause is problem and len(transport.calls) == calls  # nothing sent
    # the same from the synchronous path (Blender's background mode: client.run)
    job = img2img_job(Later(lambda: _raise(MemoryError())), 2, 2, prompt="x")
    with pytest.raises(PaintbridgeError, match="Close other programs") as raised:
        client.run(job)
    assert raised.value.code == "job_not_made"
    # while it is made, the exit hook waits for it as for a prepare (numpy cannot be stopped)
    making, may_end = threading.Event(), threading.Event()

    def slow() -> bytes:
        making.set()
        assert may_end.wait(10)
        return RGBA

    watch = client.watch(img2img_job(Later(slow), 2, 2, prompt="x"))
    assert making.wait(10) and watch._preparing
    may_end.set()
    watch.follow()
    assert not watch._preparing and watch._job is None


def _raise(exc: BaseException) -> Any:
    raise exc


def test_a_watchs_prepare_that_returns_none_gives_no_results() -> None:
    client, _ = _done_job_client()
    assert client.watch({"task": "x"}, prepare=lambda results: None).follow() == []


def test_the_exit_hook_waits_for_a_prepare_under_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """A prepare cannot be stopped half-way; a thread left in it as the interpreter goes could
    crash the editor on quit, so the exit hook gives it the time it needs."""
    monkeypatch.setattr(jobs_module, "STATUS_TIMEOUT", 0.05)
    monkeypatch.setattr(jobs_module, "LONG_POLL", 0.05)
    client, _ = _done_job_client()
    started = threading.Event()

    def prepare(results: list[Any]) -> list[Any]:
        started.set()
        time.sleep(1.0)
        return results

    watch = client.watch({"task": "txt2img", "prompt": "x"}, prepare=prepare)
    assert started.wait(10)
    jobs_module._close_watches()
    assert not watch._thread.is_alive()
    assert watch.poll().state == "finishing"  # closed: its prepared results went to nobody
