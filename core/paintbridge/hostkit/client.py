"""The HTTP client every plug-in uses to talk to the paintbridge server (protocol v1).

Submit jobs, poll, cancel, fetch results. Two styles: blocking (`Client.run`, `Client.wait`)
for GIMP and Blender's background mode, and one-request-per-call polling (`Client.start` ->
`JobHandle.poll`) for a GUI timer. Finding and starting the local server is discovery.py, the
HTTP itself transport.py, the errors errors.py; this module re-exports their public names, so
`from hostkit.client import X` keeps working for all of them.

Standard library only, Python 2.7 and 3.8+. Every failure is a PaintbridgeError (or subclass)
whose message a user can act on.
"""

from __future__ import absolute_import, division, print_function

import atexit
import itertools
import json
import threading
import time

from .discovery import (
    APP,
    DEFAULT_URL,
    STARTED,
    ServerLaunch,
    discover,
    launch_server,
    spawn_detached,
    try_local_client,
    user_config_dir,
)
from .errors import (
    Cancelled,
    JobFailed,
    NotRunning,
    PaintbridgeError,
    QueueFull,
    RequestRejected,
    ServerFault,
    Timeout,
    Unauthorized,
    not_running_message,
)
from .pixels import payload_to_rgba
from .transport import UrllibTransport, check_url, json_body, quote, urlsplit

__all__ = [
    "APP",
    "DEFAULT_URL",
    "FINISHED",
    "STARTED",
    "Cancelled",
    "Client",
    "JobFailed",
    "JobHandle",
    "JobStatus",
    "NotRunning",
    "PaintbridgeError",
    "QueueFull",
    "RequestRejected",
    "Result",
    "ServerFault",
    "ServerLaunch",
    "Timeout",
    "Unauthorized",
    "UrllibTransport",
    "launch_server",
    "not_running_message",
    "poll_delays",
    "quote",
    "spawn_detached",
    "try_local_client",
    "urlsplit",
    "user_config_dir",
]

# Pauses between polls in Client.wait: quick at first (a small job is often done within a few
# tenths of a second), then no more than 4 requests a second.
POLL_FIRST = 0.05
POLL_MOST = 0.25
# How long one poll in Client.wait lets the server hold the answer for a change: also how soon a
# should_cancel() that turned true is seen.
LONG_POLL = 0.5
# A poll of a submitted job that gets no answer (a dropped connection, a timeout) is tried again
# (Client.wait after RETRY_PAUSE s, JobHandle.poll at the caller's next poll) until polls have
# failed LOST_AFTER_POLLS times in a row over at least LOST_AFTER_S s; only then is the job given
# up. A refused connection ends it at once: nothing listens there, the server has stopped.
LOST_AFTER_S = 10.0
LOST_AFTER_POLLS = 3
RETRY_PAUSE = 0.5
# How long a job's status (a few hundred bytes, answered from memory) may take. A GUI host polls
# on its own thread: a server that stopped answering (hung, or a dropped network link) froze the
# window for the whole request timeout (10-30 s) on every poll.
STATUS_TIMEOUT = 3.0


def poll_delays(first=POLL_FIRST, most=POLL_MOST):
    """The pauses between polls, in seconds: `first`, doubling up to `most`, then `most` on."""
    delay = first
    while True:
        yield delay
        delay = min(most, delay * 2)


# --- job state -------------------------------------------------------------------------------

FINISHED = ("done", "failed", "cancelled")


class Result(object):
    """One generated image: RGBA8 bytes, rows top to bottom, and the seed that made it."""

    __slots__ = ("width", "height", "rgba", "seed")

    def __init__(self, width, height, rgba, seed):
        self.width, self.height, self.rgba, self.seed = width, height, rgba, seed

    def __repr__(self):
        return "Result(%dx%d, seed=%r)" % (self.width, self.height, self.seed)


class JobStatus(object):
    """A snapshot of a job: state, position, step/steps, results (list of Result, when done),
    error ({"code", "message"} when failed). `results` given: those; else decoded from the
    image payloads in raw["results"]."""

    __slots__ = ("id", "state", "position", "step", "steps", "results", "error", "raw")

    def __init__(self, raw, results=None):
        progress = raw.get("progress") or {}
        self.raw = raw
        self.id = raw.get("id")
        self.state = raw.get("state")
        self.position = raw.get("position")
        self.step = progress.get("step") or 0
        self.steps = progress.get("steps") or 0
        self.error = raw.get("error")
        self.results = results
        if results is None and raw.get("results") is not None:
            self.results = [_decode_result(item) for item in raw["results"]]

    @property
    def finished(self):
        """True once the job is done, failed or cancelled."""
        return self.state in FINISHED

    @property
    def fraction(self):
        """Progress in [0, 1] (0 while queued or when steps are unknown)."""
        return min(1.0, self.step / self.steps) if self.steps else (1.0 if self.done else 0.0)

    @property
    def done(self):
        return self.state == "done"

    def raise_for_state(self):
        """Raises JobFailed or Cancelled for those states; returns self otherwise."""
        if self.state == "failed":
            error = self.error or {}
            raise JobFailed(
                error.get("message") or "The job failed on the server (no reason given).",
                code=error.get("code") or "job_failed",
            )
        if self.state == "cancelled":
            raise Cancelled("The job was cancelled; no image was made.")
        return self

    def __repr__(self):
        return "JobStatus(id=%r, state=%r, step=%r/%r)" % (
            self.id,
            self.state,
            self.step,
            self.steps,
        )


def _decode_result(item):
    try:
        width, height, rgba = payload_to_rgba(item["image"])
    except (KeyError, TypeError, ValueError) as exc:
        message = "The server sent a result that cannot be read: %s" % (exc,)
        raise ServerFault(message)  # noqa: B904
    return Result(width, height, rgba, item.get("seed"))


def _json_text(data):
    """A response body as json.loads takes it: Python 3 bytes decoded, a Python 2 str (bytes)
    as it is (its json reads UTF-8 bytes without a unicode copy of the whole body)."""
    return data if isinstance(data, str) else data.decode("utf-8")


def server_lost(exc):
    """The NotRunning to raise when the server goes away while it holds our job."""
    return NotRunning(
        "The paintbridge server stopped before the job finished; no image was made. %s" % exc,
        status=exc.status,
    )


def kept_in_history(job_id):
    """Where a finished result that did not reach the plug-in is, and the command that saves it."""
    return (
        "The paintbridge server keeps every finished result in its history: `paintbridge history "
        "export %s --out DIR` on the server's machine saves it (`paintbridge history` lists the "
        "latest)." % (job_id,)
    )


def contact_lost(exc, job_id, done):
    """The error to raise when polls of `job_id` kept failing with `exc`: the server may have
    finished the job (`done`: it said so) and kept the result in its history."""
    refused = getattr(exc, "refused", False)
    if done:
        what = "its result could not be fetched"
        if refused:
            what = "the paintbridge server stopped before its result came"
        message = "Job %s is done, but %s: %s %s" % (job_id, what, exc, kept_in_history(job_id))
    elif refused:
        return server_lost(exc)
    else:
        message = (
            "Lost contact with the paintbridge server before job %s finished: %s If the server "
            "is still running, the job goes on there and its result is kept. %s"
            % (job_id, exc, kept_in_history(job_id))
        )
    return type(exc)(message, code=exc.code, status=exc.status)


def _never():
    return False


class _Contact(object):
    """Polls one job and tells a failed poll worth trying again from one that ends the job
    (see LOST_AFTER_S). `trouble` is the latest failure while polls fail, else None."""

    def __init__(self, client, job_id):
        self.client = client
        self.job_id = job_id
        self.failures = 0
        self.since = None  # when the first of the failed polls in a row began
        self.done = False  # the server said the job is done (its results may not be here yet)
        self.trouble = None
        self.stopped = _never  # true once nobody wants the results (JobWatch.close)

    def poll(self, wait=0):
        """The job's JobStatus, or None after a failed poll worth trying again; raises the error
        to show once it is not."""
        asked = time.time()
        try:
            raw = self.client.status(self.job_id, "none", wait)
            self.done = self.done or (isinstance(raw, dict) and raw.get("state") == "done")
            if self.stopped():
                return None  # the results would be fetched for nobody
            status = self.client._with_results(self.job_id, raw)
        except (NotRunning, Timeout) as exc:
            self.trouble = exc
            self.failures += 1
            self.since = asked if self.since is None else self.since
            long_enough = time.time() - self.since >= LOST_AFTER_S
            if getattr(exc, "refused", False) or (
                self.failures >= LOST_AFTER_POLLS and long_enough
            ):
                raise contact_lost(exc, self.job_id, self.done)  # noqa: B904
            return None
        self.failures, self.since, self.trouble = 0, None, None
        return status


class JobHandle(object):
    """A submitted job for hosts that poll from a timer: each `poll()` is one short request."""

    def __init__(self, client, job_id):
        self.client = client
        self.id = job_id
        self.last = None  # the latest JobStatus
        self._contact = _Contact(client, job_id)

    @property
    def trouble(self):
        """The error of the latest poll while polls get no answer (they are being tried
        again), else None."""
        return self._contact.trouble

    def poll(self):
        """The job's current JobStatus (never blocks longer than one request, and one per
        result once the job is done). A poll that gets no answer (a dropped connection, a
        timeout) returns the latest status again, with `trouble` set, for the caller to poll on:
        the job is given up (NotRunning or Timeout, saying where a finished result is kept) only
        after LOST_AFTER_POLLS failures in a row over LOST_AFTER_S s, or at once when the server
        has stopped (the connection is refused)."""
        status = self._contact.poll()
        if status is not None:
            self.last = status
        elif self.last is None:  # no answer to the first poll yet
            return JobStatus({"id": self.id, "state": "queued"})
        return self.last

    def cancel(self):
        """Asks the server to cancel; a running job stops at its next step."""
        return self.client.cancel(self.id)

    def close(self):
        """Stops following the job (a JobWatch's thread); the server runs it on regardless."""

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.id)


class JobWatch(JobHandle):
    """A JobHandle followed from a background thread, for GUI hosts: `poll()` answers at once
    with the latest status, and no request of the job's runs on the caller's thread but
    `cancel()`, so a remote server's round trips, a large result's download or a server that
    hangs never stall the GUI. The thread long-polls (each answer comes when the job's state or
    step changes), fetches the results and ends with the job, or at `close()`. A job it gives
    up (see JobHandle.poll) is raised by the next poll()."""

    def __init__(self, client, job_id):
        JobHandle.__init__(self, client, job_id)
        self._error = None
        self._closed = threading.Event()
        self._contact.stopped = self._closed.is_set
        self._thread = threading.Thread(target=self._follow, name="paintbridge job %s" % (job_id,))
        self._thread.daemon = True  # never keeps the editor from quitting (see _close_watches)
        _WATCHES.add(self)
        self._thread.start()

    def _follow(self):
        try:
            for status in _follow(self._contact, self._closed.wait, poll_delays()):
                if status is not None and not self._closed.is_set():
                    self.last = status
        except PaintbridgeError as exc:
            self._error = exc
        except Exception as exc:  # a bug here must still end the job for the GUI
            self._error = ServerFault("Following job %s failed: %r" % (self.id, exc))
        finally:
            _WATCHES.discard(self)

    def poll(self):
        if self._error is not None:
            raise self._error
        if self.last is None:  # no answer to the first poll yet
            return JobStatus({"id": self.id, "state": "queued"})
        return self.last

    def close(self):
        self._closed.set()


_WATCHES = set()  # the JobWatches whose thread runs


@atexit.register
def _close_watches():
    """Ends the watches' threads before the interpreter goes: Blender hung on exit when a
    daemon thread was still in a request then (a job followed when the editor quit)."""
    watches = list(_WATCHES)
    for watch in watches:
        watch.close()
    for watch in watches:
        watch._thread.join(STATUS_TIMEOUT + LONG_POLL)


def _follow(contact, pause, delays):
    """Yields the job's JobStatus after each poll, None after one that got no answer (the next
    comes RETRY_PAUSE s later), until a finished one. Each poll but the first waits on the
    server for a change (LONG_POLL); from a server that answers at once instead, `delays` gives
    the pauses. `pause(seconds)` sleeps; it ends once `contact.stopped()`; errors are
    _Contact.poll's."""
    previous = None  # (state, step) of the previous answer
    while not contact.stopped():
        asked = time.time()
        status = contact.poll(LONG_POLL if previous is not None else 0)
        yield status
        if status is None:
            pause(max(0.0, RETRY_PAUSE - (time.time() - asked)))
            continue
        if status.finished:
            return
        if (status.state, status.step) == previous:  # nothing new, and the server did not wait
            pause(max(0.0, next(delays) - (time.time() - asked)))
        previous = (status.state, status.step)


# --- client ----------------------------------------------------------------------------------


class Client(object):
    """A connection to one paintbridge server: `Client(url, token, timeout=30)`.

    `transport` (for tests) is a callable (method, path, body, headers) -> (status, headers,
    body bytes); the default sends real requests with urllib and `timeout` seconds per request.
    The request body is None, bytes, or for a job with image data a transport.JsonBody: len() is
    its size in bytes, iterating gives its bytes in pieces, bytes(body) joins them."""

    def __init__(self, url, token, timeout=30, transport=None, token_source=None):
        self.url = check_url(url)  # a PaintbridgeError that says what to type
        self.token = token
        self.timeout = timeout
        self.transport = transport or UrllibTransport(self.url, timeout)
        # status polls (with at most LONG_POLL of waiting for a change) give up sooner
        self._status_transport = transport or UrllibTransport(
            self.url, min(timeout, STATUS_TIMEOUT + LONG_POLL)
        )
        self.token_source = token_source

    def __repr__(self):
        return "Client(%r)" % (self.url,)

    # discovery -----------------------------------------------------------------------------

    @classmethod
    def discover(cls, config_dir=None, autostart=True, start_timeout=120, timeout=30):
        """The client for the local server named in server.json, starting it if need be.

        If no server answers and autostart is true and hostkit.json (written by `paintbridge
        plugins install`) names a command, that command is started in the background (output to
        server.log in the config folder) and this waits up to start_timeout s for it to answer.
        Raises NotRunning otherwise. A GUI host uses `try_local_client` and `launch_server`
        instead, which never wait."""
        return discover(config_dir, autostart, start_timeout, timeout, client_class=cls)

    # requests ------------------------------------------------------------------------------

    def request(self, method, path, payload=None, auth=True, quick=False):
        """Sends one request and returns the decoded JSON answer; raises the PaintbridgeError
        subclass matching a failure. `quick`: a small answer the server has at hand (a job's
        status), given up after STATUS_TIMEOUT s."""
        headers = {"Accept": "application/json"}
        body = None
        if payload is not None:
            body = json_body(payload)
            headers["Content-Type"] = "application/json"
        status, _, data = self._send(method, path, body, headers, auth, quick)
        try:
            # rebinding lets go of the bytes before parsing
            data = _json_text(data)
            return json.loads(data)
        except ValueError:
            raise ServerFault(  # noqa: B904
                "The server at %s answered %s %s with something that is not JSON; is it "
                "a paintbridge server?" % (self.url, method, path),
                status=status,
            )

    def _send(self, method, path, body, headers, auth=True, quick=False):
        """(status, headers, body bytes) of a 2xx answer; raises the matching error."""
        if auth and self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        transport = self._status_transport if quick else self.transport
        status, response_headers, data = transport(method, path, body, headers)
        if 200 <= status < 300:
            return status, response_headers or {}, data
        raise self._error(status, response_headers or {}, data, method, path)

    def _error(self, status, headers, data, method, path):
        code, message = None, None
        try:
            error = json.loads(data.decode("utf-8")).get("error") or {}
            code, message = error.get("code"), error.get("message")
        except (ValueError, AttributeError, UnicodeDecodeError):
            pass
        if status == 401:
            if self.token_source:
                where = (
                    "The token comes from %s, which `paintbridge serve` writes each time it "
                    "starts; for a remote server, copy" % (self.token_source,)
                )
            else:  # typed into the plug-in's settings
                where = "The token comes from the plug-in settings: copy"
            return Unauthorized(
                "The paintbridge server at %s refused the token (%s). %s the token it was "
                "started with (--token or PAINTBRIDGE_TOKEN; also in its server.json) into the "
                "plug-in settings." % (self.url, message or "unauthorized", where),
                code=code,
                status=status,
            )
        if status == 429:
            retry = headers.get("retry-after")
            try:
                retry = float(retry) if retry is not None else None
            except ValueError:
                retry = None
            return QueueFull(
                message or "The paintbridge server's queue is full; try again in a moment.",
                code=code,
                status=status,
                retry_after=retry,
            )
        if 400 <= status < 500:
            if message is None and status == 404:
                message = (
                    "The server at %s has no %s; is it a paintbridge server of protocol v1?"
                    % (self.url, path)
                )
            return RequestRejected(
                message or "The server rejected %s %s (HTTP %d)." % (method, path, status),
                code=code,
                status=status,
            )
        return ServerFault(
            "The paintbridge server failed on %s %s (HTTP %d): %s. This is a bug in the server; "
            "its log says more." % (method, path, status, message or "no details"),
            code=code,
            status=status,
        )

    def live(self):
        """GET /v1/live (no token): {"ok": true}; raises NotRunning if nothing answers."""
        return self.request("GET", "/v1/live", auth=False)

    def is_live(self):
        """True when a paintbridge server answers /v1/live; never raises."""
        try:
            return bool(self.live().get("ok"))
        except (PaintbridgeError, AttributeError):
            return False

    def health(self):
        """GET /v1/health: version, device, dtype, model, queue."""
        return self.request("GET", "/v1/health")

    def models(self):
        """GET /v1/models: {"default", "models": [...]}."""
        return self.request("GET", "/v1/models")

    def submit(self, job):
        """POST /v1/jobs; returns the new job's id."""
        try:
            answer = self.request("POST", "/v1/jobs", job)
        except NotRunning as exc:
            raise self._why_the_upload_broke(exc)  # noqa: B904
        try:
            return answer["id"]
        except (KeyError, TypeError):
            message = "The server accepted the job but sent no job id: %r" % (answer,)
            raise ServerFault(message)  # noqa: B904

    def _why_the_upload_broke(self, exc):
        """The error to raise for a job whose upload broke with `exc`. A server refusing a
        request before it reads the body (a wrong token: 401, a Host not its own: 421, a body
        over its limit: 413) answers and closes the connection while a large upload is still
        going: the client sees a reset, not the answer. One small request that needs the token
        (GET /v1/health) shows the first two; when it succeeds, the size is what is left."""
        if getattr(exc, "refused", False):
            return exc  # nothing listens there
        try:
            self.health()
        except NotRunning:
            return exc
        except PaintbridgeError as refusal:
            return refusal
        return RequestRejected(
            "The server closed the connection while the job was being sent: the image is "
            "probably larger than this server accepts (its --max-body-mb). Select a smaller "
            "area; the server's log says more.",
            code="too_large",
        )

    def status(self, job_id, image_format="rgba8", wait=0):
        """GET /v1/jobs/{id} as the raw dict; results come as `image_format` payloads. With
        `wait` > 0 the server answers once the job's state or step changes (at most `wait` s)."""
        path = "/v1/jobs/%s?image_format=%s" % (quote(str(job_id), safe=""), image_format)
        if wait:
            path += "&wait=%g" % wait
        return self.request("GET", path, quick=wait <= LONG_POLL)

    def poll(self, job_id, wait=0):
        """The job's JobStatus (one request, which waits up to `wait` s for a change; when
        done, one more per result, each fetched as bare RGBA8 bytes: a 4096 px result costs
        64 MB here, where base64 in JSON costs 3x)."""
        return self._with_results(job_id, self.status(job_id, "none", wait))

    def _with_results(self, job_id, raw):
        """The JobStatus of `raw` (an answer of status(..., "none")), with a done job's results
        fetched."""
        results = None
        if isinstance(raw, dict) and raw.get("state") == "done" and raw.get("results"):
            results = [self.result(job_id, index) for index in range(len(raw["results"]))]
        return JobStatus(raw, results)

    def result(self, job_id, index=0):
        """GET /v1/jobs/{id}/results/{index}: a done job's result `index` as a Result."""
        path = "/v1/jobs/%s/results/%d?format=rgba8" % (quote(str(job_id), safe=""), index)
        _, headers, data = self._send("GET", path, None, {"Accept": "application/octet-stream"})
        try:
            width, height = int(headers["x-width"]), int(headers["x-height"])
            seed = int(headers["x-seed"])
        except (KeyError, TypeError, ValueError):
            raise ServerFault(  # noqa: B904
                "The server sent result %d of job %s without its size; is it a paintbridge "
                "server of this version?" % (index, job_id)
            )
        if width <= 0 or height <= 0 or len(data) != width * height * 4:
            raise ServerFault(
                "The server sent result %d of job %s as %d bytes, not %dx%d RGBA8 pixels."
                % (index, job_id, len(data), width, height)
            )
        return Result(width, height, data, seed)

    def cancel(self, job_id):
        """POST /v1/jobs/{id}/cancel: {"id", "state"}."""
        return self.request("POST", "/v1/jobs/%s/cancel" % quote(str(job_id), safe=""), {})

    def start(self, job):
        """Submits `job` and returns a JobHandle to poll from a timer."""
        return JobHandle(self, self.submit(job))

    def watch(self, job):
        """Submits `job` and returns a JobWatch: polled from a timer, it never waits."""
        return JobWatch(self, self.submit(job))

    def wait(self, job_id, on_progress=None, should_cancel=None, poll_interval=None, timeout=None):
        """Blocks until the job finishes and returns its list of Result.

        Each poll waits on the server for the next change (up to LONG_POLL s), so steps and the
        result arrive as they happen; from a server that answers at once instead, polls every
        `poll_interval` s, by default quickly at first (see `poll_delays`).

        Calls on_progress(step, steps) whenever they change. If should_cancel() returns true,
        cancels the job on the server and raises Cancelled. Raises JobFailed / Cancelled for
        those states, and Timeout (after cancelling) when `timeout` seconds pass first. A poll
        that gets no answer is tried again as JobHandle.poll says, RETRY_PAUSE s later."""
        started = time.time()
        seen = None
        delays = poll_delays() if poll_interval is None else itertools.repeat(poll_interval)
        for status in _follow(_Contact(self, job_id), time.sleep, delays):
            if status is not None:
                if on_progress is not None and (status.step, status.steps) != seen:
                    seen = (status.step, status.steps)
                    on_progress(status.step, status.steps)
                if status.finished:
                    status.raise_for_state()
                    return status.results or []
            if should_cancel is not None and should_cancel():
                self._cancel_quietly(job_id)
                raise Cancelled("Cancelled; no image was made.")
            if timeout is not None and time.time() - started > timeout:
                self._cancel_quietly(job_id)
                raise Timeout(
                    "The job did not finish within %s s and was cancelled. Try fewer steps or a "
                    "smaller selection, or raise the timeout." % (timeout,)
                )

    def run(self, job, on_progress=None, should_cancel=None, poll_interval=None, timeout=None):
        """submit + wait: the list of Result for `job`."""
        return self.wait(self.submit(job), on_progress, should_cancel, poll_interval, timeout)

    def _cancel_quietly(self, job_id):
        try:
            self.cancel(job_id)
        except PaintbridgeError:
            pass
