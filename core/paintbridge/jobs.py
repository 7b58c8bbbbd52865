"""The job queue: FIFO, one worker thread per engine, progress, cancel, history before "done".

A job moves queued -> running -> done | failed | cancelled (or queued -> cancelled or failed).
A stop of the server fails every unfinished job with code "shutting_down": nobody cancelled it,
and a client that polls while the server stops must hear that the server went. The worker
writes every result to the history folder before it marks the job done, so a client that
disappears mid-job still finds its images on disk. Finished jobs answer for `keep_seconds`
(at most the last `keep_count` of them), then `JobNotFound`; their results stay in history.
Memory a job freed is kept for the next one and given back after `idle_seconds` without a job.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from paintbridge.engine.allocator import give_back_freed_memory
from paintbridge.engine.types import GenerationRequest, GenerationResult, ProgressFn
from paintbridge.engine.validation import check_unicode
from paintbridge.errors import Cancelled, PaintbridgeError

__all__ = [
    "FINISHED",
    "Generator",
    "Job",
    "JobNotFound",
    "JobQueue",
    "JobView",
    "QueueFull",
    "ResultRecorder",
    "SHUT_DOWN",
    "State",
]

log = logging.getLogger(__name__)

State = Literal["queued", "running", "done", "failed", "cancelled"]
# A waiting status request answers a step change no sooner than this after it came: with fast
# steps (a GPU makes dozens a second) one request per step would take the GIL from the job.
STEP_PACE = 0.25
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})


SHUT_DOWN = ("shutting_down", "the server stopped before the job finished; no image was made")
WORKER_DIED = (
    "the server's job worker stopped, so no job can run: restart the server (its log says why)"
)


class QueueFull(PaintbridgeError):
    """Too many jobs are waiting; `retry_after` (seconds) says when to try again."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobNotFound(PaintbridgeError):
    code = "not_found"


class Generator(Protocol):
    """What the worker needs from an engine (paintbridge.engine.Engine is one)."""

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult: ...


# record(job_id, request, result) -> the files written; raises on any failure to write.
ResultRecorder = Callable[[str, GenerationRequest, GenerationResult], list[Path]]


@dataclass
class Job:
    """A job's mutable state; read it only through `JobQueue.get` (a consistent `JobView`)."""

    id: str
    request: GenerationRequest
    parameters: dict[str, Any]
    state: State = "queued"
    step: int = 0
    steps: int = 0
    error: tuple[str, str] | None = None  # (code, message)
    seeds: list[int] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    shut_down: bool = False  # cancelled by the server's stop, not by a client
    submitted: float = 0.0
    started: float | None = None
    finished: float | None = None


@dataclass(frozen=True)
class JobView:
    """A snapshot of one job, safe to read outside the queue's lock."""

    id: str
    state: State
    position: int | None
    step: int
    steps: int
    error: tuple[str, str] | None
    seeds: tuple[int, ...]
    files: tuple[Path, ...]
    parameters: dict[str, Any]
    run_seconds: float | None = None  # how long it has run (or ran); None: not started


class JobQueue:
    """A bounded FIFO of generation jobs, run one at a time by a worker thread."""

    def __init__(
        self,
        generator: Generator,
        record: ResultRecorder,
        *,
        max_queued: int = 16,
        keep_seconds: float = 3600.0,
        keep_count: int = 200,
        idle_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {max_queued}")
        self._generator = generator
        self._record = record
        self.max_queued = max_queued
        self._keep_seconds = keep_seconds
        self._keep_count = keep_count
        # beyond what a lock wait takes (about 292 years): never given back
        self._idle_seconds = idle_seconds if idle_seconds < threading.TIMEOUT_MAX else None
        self._clock = clock
        self._lock = threading.Condition()
        self._queued: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._finished: OrderedDict[str, Job] = OrderedDict()  # oldest first
        self._running: Job | None = None
        self._closed = False
        self._job_seconds = 5.0  # running average of job durations, for Retry-After
        self._thread: threading.Thread | None = None
        self._worker_died = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._work_or_report, name="paintbridge-worker", daemon=True
        )
        self._thread.start()

    @property
    def closed(self) -> bool:
        """True once stop() began: no job is taken, and every unfinished one failed (SHUT_DOWN)."""
        return self._closed

    def stop(self, timeout: float = 10.0) -> None:
        """Fail every queued job and stop the running one at its next step (SHUT_DOWN), and
        wait for the worker to end."""
        with self._lock:
            self._closed = True
            while self._queued:
                self._finish(self._queued.popleft(), "failed", SHUT_DOWN)
            if self._running is not None and not self._running.cancel.is_set():
                self._running.shut_down = True
                self._running.cancel.set()
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the API the server uses -------------------------------------------------------------

    @property
    def length(self) -> int:
        """Jobs waiting (not counting the running one)."""
        with self._lock:
            return len(self._queued)

    def submit(self, request: GenerationRequest, parameters: dict[str, Any] | None = None) -> str:
        """Queue `request` and return its job id; raises QueueFull when `max_queued` wait, and
        InvalidRequest for text that history (UTF-8) could not record."""
        for name in ("prompt", "negative_prompt"):
            check_unicode(name, getattr(request, name))
        with self._lock:
            if self._closed:
                raise PaintbridgeError("the server is shutting down", code="shutting_down")
            if self._worker_died:
                raise PaintbridgeError(WORKER_DIED, code="server_fault")
            if len(self._queued) >= self.max_queued:
                retry = self._retry_after()
                raise QueueFull(
                    f"the queue is full ({self.max_queued} jobs waiting): "
                    f"try again in {retry} s or cancel a job",
                    retry_after=retry,
                )
            job = Job(
                id=uuid.uuid4().hex,
                request=request,
                parameters=dict(parameters or {}),
                submitted=self._clock(),
            )
            self._jobs[job.id] = job
            self._queued.append(job)
            self._lock.notify_all()
            return job.id

    def running(self) -> JobView | None:
        """The job being generated now, whoever submitted it; None when the worker is idle."""
        with self._lock:
            return None if self._running is None else self._view(self._running)

    def get(self, job_id: str, wait: float = 0.0) -> JobView:
        """The job now; with `wait` > 0 s, once its state has changed (at once), or its step
        (at the earliest STEP_PACE s after the call), or `wait` s have passed: a client hears of
        the result at once and of progress a few times a second, however fast the steps go."""
        with self._lock:
            self._prune()
            job = self._find(job_id)
            if wait > 0 and job.state not in FINISHED:
                self._wait_for_change(job, wait)
            return self._view(job)

    def cancel(self, job_id: str) -> JobView:
        """Cancel a queued job at once, a running one at its next step; finished: no change."""
        with self._lock:
            self._prune()
            job = self._find(job_id)
            if job.state == "queued":
                self._queued.remove(job)
                self._finish(job, "cancelled")
            elif job.state == "running":
                job.cancel.set()
            return self._view(job)

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Block until the job finishes (or `timeout` passes); for tests and the CLI."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            job = self._find(job_id)
            while job.state not in FINISHED:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._lock.wait(left)
            return self._view(job)

    # -- internals (call with the lock held) -------------------------------------------------

    def _wait_for_change(self, job: Job, wait: float) -> None:
        start = time.monotonic()
        state, step = job.state, job.step
        while not self._closed and job.state == state:
            now = time.monotonic()
            until = start + wait if job.step == step else min(start + wait, start + STEP_PACE)
            if now >= until:
                return
            self._lock.wait(until - now)

    def _find(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(
                f"no job {job_id!r}: it never existed or finished long ago "
                "(its results are in the history folder: `paintbridge history`)"
            )
        return job

    def _view(self, job: Job) -> JobView:
        if job.state == "queued":
            position: int | None = self._queued.index(job) + (self._running is not None)
        elif job.state == "running":
            position = 0
        else:
            position = None
        return JobView(
            id=job.id,
            state=job.state,
            position=position,
            step=job.step,
            steps=job.steps,
            error=job.error,
            seeds=tuple(job.seeds),
            files=tuple(job.files),
            parameters=dict(job.parameters),
            run_seconds=self._run_seconds(job),
        )

    def _run_seconds(self, job: Job) -> float | None:
        if job.started is None:
            return None
        return (job.finished if job.finished is not None else self._clock()) - job.started

    def _finish(self, job: Job, state: State, error: tuple[str, str] | None = None) -> None:
        job.state = state
        job.error = error
        job.finished = self._clock()
        job.request = _forget_images(job.request)
        self._finished[job.id] = job
        self._prune()
        self._lock.notify_all()

    def _prune(self) -> None:
        now = self._clock()
        while self._finished:
            oldest_id, oldest = next(iter(self._finished.items()))
            expired = oldest.finished is not None and now - oldest.finished > self._keep_seconds
            if not expired and len(self._finished) <= self._keep_count:
                break
            del self._finished[oldest_id]
            del self._jobs[oldest_id]

    def _retry_after(self) -> int:
        # A slot frees up when the running job ends: about one job's time, 1 s to 10 min.
        return max(1, min(600, math.ceil(self._job_seconds)))

    # -- the worker --------------------------------------------------------------------------

    def _work_or_report(self) -> None:
        """The worker, and what follows if it ever stops by an error of its own (not a job's:
        those fail the job only): every job waiting fails with a message saying what to do,
        later submits are refused with it, instead of jobs queued forever."""
        try:
            self._work()
        except BaseException:
            log.critical("the job worker stopped: %s", WORKER_DIED, exc_info=True)
            with self._lock:
                self._worker_died = True
                failure = ("server_fault", WORKER_DIED)
                if self._running is not None:
                    self._finish(self._running, "failed", failure)
                    self._running = None
                while self._queued:
                    self._finish(self._queued.popleft(), "failed", failure)

    def _work(self) -> None:
        # Memory the last job freed stays in the process for the next one (engine/allocator.py:
        # giving it back after each job cost a 512 px float32 job 3 s of fresh pages, 12%) and
        # goes back to the system once no job has come for `idle_seconds`. Held from the start:
        # a model loaded before the queue started (serve --preload) leaves the memory its
        # loading freed (float32 weights converted, on the CPU dense weights packed: 0.8-1.3 GB
        # for SD 1.5 in bfloat16, measured).
        holding = True
        while True:
            with self._lock:
                ready = self._lock.wait_for(
                    lambda: bool(self._queued) or self._closed,
                    self._idle_seconds if holding else None,
                )
                if self._closed:
                    return
                if ready:
                    job = self._queued.popleft()
                    job.state = "running"
                    job.started = self._clock()
                    self._running = job
                    self._lock.notify_all()
            if not ready:
                give_back_freed_memory()
                holding = False
                continue
            started = time.monotonic()
            state, error = self._run(job)
            if state == "cancelled" and job.shut_down:
                state, error = "failed", SHUT_DOWN
            with self._lock:
                self._running = None
                self._job_seconds = 0.7 * self._job_seconds + 0.3 * (time.monotonic() - started)
                self._finish(job, state, error)
            holding = True

    def _run(self, job: Job) -> tuple[State, tuple[str, str] | None]:
        """Generate and record one job; never raises (a failure fails this job only)."""

        def progress(step: int, steps: int) -> None:
            with self._lock:
                job.step, job.steps = step, steps
                self._lock.notify_all()

        try:
            result = self._generator.generate(job.request, progress=progress, cancel=job.cancel)
            files = self._record(job.id, job.request, result)
        except Cancelled:
            return "cancelled", None
        except PaintbridgeError as exc:
            log.warning("job %s failed: %s", job.id, exc.message)
            return "failed", (exc.code, exc.message)
        except Exception as exc:  # a broken model, out of memory...: fail this job, go on
            log.exception("job %s failed", job.id)
            return "failed", (
                "generation_failed",
                f"generation failed: {type(exc).__name__}: {exc}",
            )
        with self._lock:
            job.files = list(files)
            job.seeds = [image.seed for image in result.images]
            job.parameters = dict(result.parameters) or job.parameters
            if job.steps:
                job.step = job.steps
        return "done", None


def _forget_images(request: GenerationRequest) -> GenerationRequest:
    """Drop a finished job's input pixels so 200 kept jobs cost almost no memory."""
    if request.image is None and request.mask is None:
        return request
    from dataclasses import replace

    return replace(request, image=None, mask=None)
