"""A poll of a submitted job that gets no answer (a dropped connection, a timeout) is tried again
instead of ending the job; the job is given up only after LOST_AFTER_POLLS failures in a row over
LOST_AFTER_S s, saying that a finished result is in the server's history; a refused connection
(nothing listens: the server stopped) ends it at once. Scripted transports here; the real socket
cases are at the end and in test_hostkit_live_faults.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from paintbridge.hostkit import client as client_module
from paintbridge.hostkit import jobs as jobs_module
from paintbridge.hostkit.client import Client, NotRunning, Timeout

RGBA = bytes(range(16))  # 2 x 2
RESULT_HEADERS = {"x-width": "2", "x-height": "2", "x-seed": "42"}

Answer = Callable[[], tuple[int, dict[str, str], bytes]]


def _job(state: str, step: int = 0, results: bool = False) -> Answer:
    job: dict[str, Any] = {"id": "j1", "state": state, "progress": {"step": step, "steps": 4}}
    if results:
        job["results"] = [{"image": None, "seed": 42}]
    return lambda: (200, {}, json.dumps(job).encode())


def _result() -> tuple[int, dict[str, str], bytes]:
    return 200, RESULT_HEADERS, RGBA


def _dropped(refused: bool = False) -> Answer:
    def fail() -> tuple[int, dict[str, str], bytes]:
        error = NotRunning("Could not reach the paintbridge server at X. (connection dropped)")
        error.refused = refused  # type: ignore[attr-defined]
        raise error

    return fail


def _late() -> tuple[int, dict[str, str], bytes]:
    raise Timeout("The paintbridge server at X did not answer within 10 s.")


class Script:
    """Answers GET /v1/jobs/j1 and /results/0 from two lists of callables (the last repeats)."""

    def __init__(self, polls: list[Answer], results: list[Answer] | None = None) -> None:
        self.polls, self.results = polls, results or [_result]
        self.paths: list[str] = []

    def __call__(self, method: str, path: str, body: Any, headers: dict[str, str]):
        self.paths.append(path)
        if method == "POST":
            return 202, {}, b'{"id": "j1", "state": "queued", "position": 0}'
        answers = self.results if "/results/" in path else self.polls
        return (answers.pop(0) if len(answers) > 1 else answers[0])()


class Clock:
    """time.time() for hostkit (client.py, jobs.py), moved by hand; sleeping moves it too."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(client_module.time, "time", clock.time)
    monkeypatch.setattr(client_module.time, "sleep", clock.sleep)
    return clock


def _client(script: Script) -> Client:
    return Client("http://127.0.0.1:7860", "tok", transport=script)


def test_a_handle_polls_on_through_a_timeout_and_a_dropped_download(clock: Clock) -> None:
    script = Script(
        [_late, _job("running", 2), _job("done", 4, True)],
        [_dropped(), _result],
    )
    handle = _client(script).start({"task": "txt2img", "prompt": "x"})
    first = handle.poll()  # no answer yet: still queued as far as anyone knows
    assert (first.state, first.finished, handle.trouble.code) == ("queued", False, "timeout")
    assert handle.last is None
    second = handle.poll()
    assert (second.state, second.step, handle.trouble) == ("running", 2, None)
    third = handle.poll()  # done, but the result's download is dropped: the last status again
    assert third is second and isinstance(handle.trouble, NotRunning)
    fourth = handle.poll()
    assert fourth.done and fourth.results[0].rgba == RGBA and handle.trouble is None


def test_wait_polls_on_through_a_timeout_and_a_dropped_download(clock: Clock) -> None:
    script = Script(
        [_job("running", 1), _late, _job("done", 4, True)],
        [_dropped(), _dropped(), _result],
    )
    results = _client(script).wait("j1", poll_interval=0)
    assert [r.rgba for r in results] == [RGBA]
    assert clock.slept == [jobs_module.RETRY_PAUSE] * 3  # after each failed poll, no sooner


@pytest.mark.parametrize("fail", [_dropped(), _late])
def test_a_handle_gives_up_after_enough_failures_over_enough_time(
    clock: Clock, fail: Answer
) -> None:
    handle = _client(Script([_job("running", 1), fail])).start({})
    assert handle.poll().state == "running"
    for _ in range(jobs_module.LOST_AFTER_POLLS + 2):  # many failures, no time: polls on
        assert handle.poll().state == "running"
    clock.now += jobs_module.LOST_AFTER_S - 0.5
    assert handle.poll().state == "running"
    clock.now += 0.5
    with pytest.raises((NotRunning, Timeout)) as info:
        handle.poll()
    assert type(info.value) is type(handle.trouble)  # the failure's own kind, and its code
    assert info.value.code == handle.trouble.code
    message = info.value.message
    assert message.startswith(
        f"Lost contact with the paintbridge server before job j1 finished: {handle.trouble} "
        "If the server is still running, the job goes on there and its result is kept. The "
        "paintbridge server keeps every finished result in its history: `paintbridge history "
        "export j1 --out DIR` on the server's machine saves it"
    ), message
    assert "no image was made" not in message


def test_a_long_poll_timeout_counts_from_when_it_was_asked(clock: Clock) -> None:
    """Three 10 s timeouts in a row are 30 s without an answer: given up at the third."""

    def late_by_ten() -> tuple[int, dict[str, str], bytes]:
        clock.now += 10
        return _late()

    handle = _client(Script([late_by_ten])).start({})
    for _ in range(jobs_module.LOST_AFTER_POLLS - 1):
        handle.poll()
    with pytest.raises(Timeout, match="^Lost contact"):
        handle.poll()


def test_an_answer_starts_the_count_again(clock: Clock) -> None:
    polls: list[Answer] = []
    for _ in range(4):
        polls += [_dropped()] * (jobs_module.LOST_AFTER_POLLS - 1) + [_job("running", 1)]
    handle = _client(Script(polls + [_job("done", 4, True)])).start({})
    for _ in range(len(polls)):
        handle.poll()
        clock.now += jobs_module.LOST_AFTER_S
    assert handle.poll().done


def test_a_done_job_whose_result_cannot_be_fetched_says_it_is_in_history(clock: Clock) -> None:
    script = Script([_job("done", 4, True)], [_dropped()])
    with pytest.raises(NotRunning) as info:
        _client(script).wait("j1")
    assert info.value.message == (
        "Job j1 is done, but its result could not be fetched: Could not reach the paintbridge "
        "server at X. (connection dropped) The paintbridge server keeps every finished result in "
        "its history: `paintbridge history export j1 --out DIR` on the server's machine saves "
        "it (`paintbridge history` lists the latest)."
    )
    assert clock.now - 1000.0 >= jobs_module.LOST_AFTER_S


def test_a_refused_connection_ends_the_job_at_once(clock: Clock) -> None:
    """Nothing listens any more: the server stopped, and with it the job (as before)."""
    for wait in (
        lambda client: client.wait("j1"),
        lambda client: client.start({}).poll(),
    ):
        script = Script([_dropped(refused=True)])
        with pytest.raises(NotRunning) as info:
            wait(_client(script))
        assert info.value.message.startswith(
            "The paintbridge server stopped before the job finished; no image was made. Could "
            "not reach"
        )
        assert clock.slept == []


def test_a_server_that_stops_after_saying_done_keeps_the_result(clock: Clock) -> None:
    script = Script([_job("done", 4, True)], [_dropped(refused=True)])
    handle = _client(script).start({})
    with pytest.raises(NotRunning) as info:
        handle.poll()
    assert info.value.message.startswith(
        "Job j1 is done, but the paintbridge server stopped before its result came: "
    )
    assert "`paintbridge history export j1 --out DIR`" in info.value.message


def test_cancelling_while_polls_fail_still_cancels(clock: Clock) -> None:
    script = Script([_dropped()])
    cancels = iter([False, True])
    with pytest.raises(client_module.Cancelled):
        _client(script).wait("j1", should_cancel=lambda: next(cancels))
    assert script.paths[-1] == "/v1/jobs/j1/cancel"


# --- the real transport: refused, or dropped ----------------------------------------------------


def test_the_real_transport_tells_refused_from_dropped() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(NotRunning) as refused:
        Client(f"http://127.0.0.1:{closed_port}", "t", timeout=5).health()
    assert refused.value.refused is True

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def accept_and_close() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=accept_and_close, daemon=True)
    thread.start()
    try:
        with pytest.raises(NotRunning) as dropped:
            Client(f"http://127.0.0.1:{listener.getsockname()[1]}", "t", timeout=5).health()
    finally:
        thread.join(5)
        listener.close()
    assert dropped.value.refused is False
