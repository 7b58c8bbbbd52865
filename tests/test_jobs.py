"""The job queue with a scripted generator: FIFO, states, positions, progress, cancel, failure,
retention and "history before done"."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from paintbridge import jobs as jobs_module
from paintbridge.engine.types import GeneratedImage, GenerationRequest, GenerationResult
from paintbridge.errors import Cancelled, GenerationFailed
from paintbridge.jobs import JobNotFound, JobQueue, QueueFull


class ScriptedGenerator:
    """Runs `steps` steps per request; each step waits for `go` (or runs free when it is set)."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.started = threading.Semaphore(0)
        self.order: list[str] = []
        self.fail_prompts: dict[str, BaseException] = {}

    def generate(self, request, *, progress=None, cancel=None) -> GenerationResult:
        self.order.append(request.prompt)
        self.started.release()
        if request.prompt in self.fail_prompts:
            raise self.fail_prompts[request.prompt]
        steps = request.steps or 3
        for step in range(1, steps + 1):
            while not self.go.wait(0.01):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("cancelled")
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            if progress is not None:
                progress(step, steps)
        seed = request.seed if request.seed is not None else 7
        image = Image.new("RGBA", (4, 4))
        return GenerationResult([GeneratedImage(image, seed)], {"prompt": request.prompt})


class Recorder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls: list[str] = []
        self.fail = False

    def __call__(self, job_id, request, result) -> list[Path]:
        if self.fail:
            from paintbridge.errors import PaintbridgeError

            raise PaintbridgeError("disk full", code="history_not_writable")
        self.calls.append(job_id)
        path = self.folder / f"{job_id}.png"
        path.write_bytes(b"png")
        return [path]


@pytest.fixture
def generator() -> ScriptedGenerator:
    return ScriptedGenerator()


@pytest.fixture
def recorder(tmp_path: Path) -> Recorder:
    return Recorder(tmp_path)


@pytest.fixture
def queue(generator: ScriptedGenerator, recorder: Recorder) -> Iterator[JobQueue]:
    jobs = JobQueue(generator, recorder, max_queued=3)
    jobs.start()
    yield jobs
    generator.go.set()
    jobs.stop()


def req(prompt: str, **fields: object) -> GenerationRequest:
    return GenerationRequest(task="txt2img", prompt=prompt, **fields)  # type: ignore[arg-type]


def test_fifo_positions_and_done(queue: JobQueue, generator: ScriptedGenerator) -> None:
    ids = [queue.submit(req(f"p{n}", seed=n)) for n in range(3)]
    assert generator.started.acquire(timeout=10)
    assert [queue.get(i).position for i in ids] == [0, 1, 2]
    assert [queue.get(i).state for i in ids] == ["running", "queued", "queued"]
    assert queue.length == 2
    generator.go.set()
    views = [queue.wait(i, timeout=10) for i in ids]
    assert [v.state for v in views] == ["done"] * 3
    assert [v.seeds for v in views] == [(0,), (1,), (2,)]
    assert all(v.position is None and v.step == v.steps == 3 for v in views)
    assert generator.order == ["p0", "p1", "p2"]


def test_history_is_written_before_done(queue: JobQueue, generator: ScriptedGenerator,
                                        recorder: Recorder) -> None:  # fmt: skip
    generator.go.set()
    job_id = queue.submit(req("a"))
    view = queue.wait(job_id, timeout=10)
    assert view.state == "done" and recorder.calls == [job_id]
    assert view.files == (recorder.folder / f"{job_id}.png",) and view.files[0].exists()


def test_a_failed_history_write_fails_the_job(queue: JobQueue, generator: ScriptedGenerator,
                                              recorder: Recorder) -> None:  # fmt: skip
    recorder.fail = True
    generator.go.set()
    view = queue.wait(queue.submit(req("a")), timeout=10)
    assert view.state == "failed" and view.error == ("history_not_writable", "disk full")


def test_progress_is_reported(queue: JobQueue, generator: ScriptedGenerator) -> None:
    job_id = queue.submit(req("a", steps=50))
    assert generator.started.acquire(timeout=10)
    assert queue.get(job_id).step == 0
    generator.go.set()
    assert queue.wait(job_id, timeout=10).step == 50


def test_running_is_the_job_being_generated(queue: JobQueue, generator: ScriptedGenerator) -> None:
    assert queue.running() is None
    first, second = queue.submit(req("a")), queue.submit(req("b"))
    assert generator.started.acquire(timeout=10)
    running = queue.running()
    assert running is not None and (running.id, running.state) == (first, "running")
    assert running.run_seconds is not None and running.run_seconds >= 0
    assert queue.get(second).run_seconds is None  # queued: not started
    generator.go.set()
    assert queue.wait(second, timeout=10).state == "done"
    assert queue.running() is None


def test_queue_full_then_free(queue: JobQueue, generator: ScriptedGenerator) -> None:
    running = queue.submit(req("running"))
    assert generator.started.acquire(timeout=10)
    waiting = [queue.submit(req(f"w{n}")) for n in range(3)]
    with pytest.raises(QueueFull) as full:
        queue.submit(req("one too many"))
    assert full.value.code == "queue_full" and full.value.retry_after >= 1
    queue.cancel(waiting[0])
    queue.submit(req("fits again"))
    assert queue.get(running).state == "running"


def test_cancel_queued_at_once_and_running_at_next_step(
    queue: JobQueue, generator: ScriptedGenerator, recorder: Recorder
) -> None:
    running = queue.submit(req("running"))
    assert generator.started.acquire(timeout=10)
    queued = queue.submit(req("queued"))
    after = queue.submit(req("after"))
    assert queue.cancel(queued).state == "cancelled"
    assert queue.get(after).position == 1
    assert queue.cancel(running).state == "running"  # stops at its next step
    assert queue.wait(running, timeout=10).state == "cancelled"
    generator.go.set()
    assert queue.wait(after, timeout=10).state == "done"
    assert generator.order == ["running", "after"]
    assert recorder.calls == [after]
    assert queue.cancel(after).state == "done"  # finished: nothing changes


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (GenerationFailed("out of memory"), "generation_failed"),
        (RuntimeError("boom"), "generation_failed"),
        (MemoryError(), "generation_failed"),
    ],
)
def test_a_failure_fails_one_job_and_the_worker_goes_on(
    queue: JobQueue, generator: ScriptedGenerator, error: BaseException, code: str
) -> None:
    generator.fail_prompts["bad"] = error
    generator.go.set()
    bad, good = queue.submit(req("bad")), queue.submit(req("good"))
    failed = queue.wait(bad, timeout=10)
    assert failed.state == "failed" and failed.error is not None and failed.error[0] == code
    assert queue.wait(good, timeout=10).state == "done"


def test_unknown_job_is_not_found(queue: JobQueue) -> None:
    with pytest.raises(JobNotFound, match="history"):
        queue.get("nope")
    with pytest.raises(JobNotFound):
        queue.cancel("nope")


def test_finished_jobs_are_forgotten_after_a_while_or_beyond_the_count(
    generator: ScriptedGenerator, recorder: Recorder
) -> None:
    now = [1000.0]
    jobs = JobQueue(generator, recorder, keep_seconds=60, keep_count=2, clock=lambda: now[0])
    jobs.start()
    generator.go.set()
    try:
        ids = [jobs.submit(req(f"p{n}")) for n in range(3)]
        for job_id in ids:
            jobs.wait(job_id, timeout=10)
        with pytest.raises(JobNotFound):
            jobs.get(ids[0])  # only the last 2 are kept
        assert jobs.get(ids[1]).state == "done"
        now[0] += 61
        with pytest.raises(JobNotFound):
            jobs.get(ids[2])
    finally:
        jobs.stop()


def test_stop_fails_every_unfinished_job_as_shut_down(
    generator: ScriptedGenerator, recorder: Recorder
) -> None:
    """Not "cancelled": a client polling while the server stops must hear that the server
    went, not that someone cancelled its job."""
    jobs = JobQueue(generator, recorder)
    jobs.start()
    running = jobs.submit(req("r"))
    assert generator.started.acquire(timeout=10)
    queued = jobs.submit(req("q"))
    jobs.stop(timeout=10)
    for job_id in (queued, running):
        view = jobs.get(job_id)
        assert (view.state, view.error) == ("failed", jobs_module.SHUT_DOWN), view
    with pytest.raises(Exception, match="shutting down"):
        jobs.submit(req("late"))


def test_a_job_a_client_cancelled_stays_cancelled_through_a_stop(
    generator: ScriptedGenerator, recorder: Recorder
) -> None:
    jobs = JobQueue(generator, recorder)
    jobs.start()
    running = jobs.submit(req("r"))
    assert generator.started.acquire(timeout=10)
    jobs.cancel(running)
    jobs.stop(timeout=10)
    assert jobs.get(running).state == "cancelled"


@pytest.fixture
def given_back(monkeypatch: pytest.MonkeyPatch) -> threading.Semaphore:
    """Released each time the queue gives freed memory back."""
    released = threading.Semaphore(0)
    monkeypatch.setattr(jobs_module, "give_back_freed_memory", released.release)
    return released


def test_freed_memory_is_kept_while_jobs_come_and_given_back_once_idle(
    generator: ScriptedGenerator, recorder: Recorder, given_back: threading.Semaphore
) -> None:
    queue = JobQueue(generator, recorder, idle_seconds=0.3)
    queue.start()
    try:
        assert given_back.acquire(timeout=10)  # what a preloaded model's loading freed
        assert not given_back.acquire(timeout=0.6)  # once, not again and again
        ids = [queue.submit(req(f"p{n}")) for n in range(2)]  # back to back
        generator.go.set()
        for job_id in ids:
            assert queue.wait(job_id, timeout=10).state == "done"
        assert given_back.acquire(timeout=10)  # once idle
        assert not given_back.acquire(timeout=0.6)  # once, not again and again
        queue.wait(queue.submit(req("p2")), timeout=10)
        assert given_back.acquire(timeout=10)
    finally:
        queue.stop()


def test_get_may_wait_for_the_next_step_or_the_end(
    queue: JobQueue, generator: ScriptedGenerator
) -> None:
    job_id = queue.submit(req("p", steps=3))
    assert generator.started.acquire(timeout=10)
    assert queue.get(job_id, wait=0.2).step == 0  # no step within 0.2 s: as it was
    stepper = threading.Timer(0.2, generator.go.set)
    stepper.start()
    started = time.monotonic()
    assert queue.get(job_id, wait=10).step >= 1
    assert time.monotonic() - started < 5  # woken by the step, not by the 10 s
    assert queue.wait(job_id, timeout=10).state == "done"
    started = time.monotonic()
    assert queue.get(job_id, wait=10).state == "done"
    assert time.monotonic() - started < 1  # finished: at once
    stepper.join()


def test_idle_seconds_zero_gives_memory_back_after_every_job(
    generator: ScriptedGenerator, recorder: Recorder, given_back: threading.Semaphore
) -> None:
    queue = JobQueue(generator, recorder, idle_seconds=0)
    queue.start()
    generator.go.set()
    try:
        for n in range(2):
            queue.wait(queue.submit(req(f"p{n}")), timeout=10)
            assert given_back.acquire(timeout=10)
    finally:
        queue.stop()


class FastSteps:
    """A step every 5 ms until cancelled."""

    def generate(self, request, *, progress=None, cancel=None) -> GenerationResult:
        for step in range(1, 10_000):
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            time.sleep(0.005)
            if progress is not None:
                progress(step, 10_000)
        raise AssertionError("never cancelled")


def test_a_waiting_get_reports_fast_steps_a_few_times_a_second(recorder: Recorder) -> None:
    queue = JobQueue(FastSteps(), recorder)
    queue.start()
    try:
        job_id = queue.submit(req("p"))
        while queue.get(job_id, wait=5).state != "running":  # queued -> running: at once
            pass
        answers = []
        for _ in range(3):
            started = time.monotonic()
            view = queue.get(job_id, wait=5)
            answers.append((time.monotonic() - started, view.step))
        assert all(jobs_module.STEP_PACE - 0.01 <= took < 2 for took, _ in answers), answers
        assert answers[0][1] < answers[1][1] < answers[2][1]
        queue.cancel(job_id)
        assert queue.wait(job_id, timeout=10).state == "cancelled"
    finally:
        queue.stop()


def test_idle_seconds_beyond_a_lock_wait_never_give_memory_back(
    generator: ScriptedGenerator, recorder: Recorder, given_back: threading.Semaphore
) -> None:
    """`serve --keep-memory-seconds inf` made the worker die on its first wait (OverflowError):
    jobs were accepted and queued forever."""
    queue = JobQueue(generator, recorder, idle_seconds=float("inf"))
    queue.start()
    generator.go.set()
    try:
        assert queue.wait(queue.submit(req("p")), timeout=10).state == "done"
        assert not given_back.acquire(timeout=0.5)
    finally:
        queue.stop()


class WorkerKiller(BaseException):
    """Not an Exception: escapes the per-job handling, as a bug in the worker itself would."""


def test_a_dead_worker_fails_what_waits_and_refuses_new_jobs(
    queue: JobQueue, generator: ScriptedGenerator
) -> None:
    from paintbridge.errors import PaintbridgeError

    generator.fail_prompts["boom"] = WorkerKiller()
    first = queue.submit(req("boom"))
    second = queue.submit(req("after"))
    for job_id in (first, second):
        view = queue.wait(job_id, timeout=10)
        assert view.state == "failed" and view.error is not None
        assert view.error[0] == "server_fault" and "restart the server" in view.error[1]
    with pytest.raises(PaintbridgeError, match="restart the server") as refused:
        queue.submit(req("later"))
    assert refused.value.code == "server_fault"
