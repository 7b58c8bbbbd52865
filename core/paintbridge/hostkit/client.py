"""The HTTP client every plug-in uses to talk to the paintbridge server (protocol v1).

Submit jobs, poll, cancel, fetch results. Three styles: blocking (`Client.run`, `Client.wait`)
for GIMP and Blender's background mode; `Client.watch` -> `JobWatch.poll` for a GUI timer (the
job is sent and followed from a background thread, so a poll never waits); and
one-request-per-call polling (`Client.start` -> `JobHandle.poll`). Finding and starting the
local server is discovery.py, the HTTP itself transport.py, the errors errors.py, a job's state
and following it jobs.py; this module re-exports the names plug-ins use, so they import them
all from `hostkit.client`.

Standard library only, Python 2.7 and 3.8+. Every failure is a PaintbridgeError (or subclass)
whose message a user can act on.
"""

from __future__ import absolute_import, division, print_function

import itertools
import json
import time

from .discovery import (
    APP,
    DEFAULT_URL,
    STARTED,
    ServerLaunch,
    discover,
    launch_server,
    new_challenge,
    proves_token,
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
from .jobs import (
    FINISHED,
    FINISHING,
    LONG_POLL,
    RESULT_KEPT,
    SENDING,
    STATUS_TIMEOUT,
    Contact,
    JobHandle,
    JobStatus,
    JobWatch,
    Result,
    follow_polls,
    job_body,
    kept_in_history,
    never,
    not_used,
    poll_delays,
    status_text,
    with_history,
)
from .transport import UrllibTransport, check_url, json_body, quote, urlsplit

__all__ = [
    "APP",
    "DEFAULT_URL",
    "FINISHED",
    "FINISHING",
    "RESULT_KEPT",
    "SENDING",
    "STARTED",
    "Cancelled",
    "Client",
    "JobFailed",
    "JobHandle",
    "JobStatus",
    "JobWatch",
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
    "kept_in_history",
    "launch_server",
    "not_running_message",
    "not_used",
    "poll_delays",
    "quote",
    "spawn_detached",
    "status_text",
    "try_local_client",
    "urlsplit",
    "user_config_dir",
    "with_history",
]


def _json_text(data):
    """A response body as json.loads takes it: Python 3 bytes decoded, a Python 2 str (bytes)
    as it is (its json reads UTF-8 bytes without a unicode copy of the whole body)."""
    return data if isinstance(data, str) else data.decode("utf-8")


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
        body = None if payload is None else json_body(payload)
        return self._request_body(method, path, body, auth, quick)

    def _request_body(self, method, path, body, auth=True, quick=False):
        """request() with the payload already made a body (json_body)."""
        headers = {"Accept": "application/json"}
        if body is not None:
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
        if 300 <= status < 400:  # not followed: a token must not go where the user did not say
            return RequestRejected(
                "The server at %s answered %s %s by sending it to %s. Put the address it should "
                "reach in the plug-in settings (https:// for a server behind TLS)."
                % (self.url, method, path, headers.get("location") or "another address"),
                code="redirected",
                status=status,
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

    def is_ours(self):
        """True when the server here answers /v1/live and proves it holds this client's token
        (discovery.live_proof), which is not sent; never raises. For a server named in
        server.json: after a crash another program may have its port."""
        if not self.token:
            return False
        challenge = new_challenge()
        try:
            answer = self.request("GET", "/v1/live?challenge=" + challenge, auth=False)
        except PaintbridgeError:
            return False
        return proves_token(answer, self.token, self.url, challenge)

    def health(self):
        """GET /v1/health: version, device, dtype, model, queue."""
        return self.request("GET", "/v1/health")

    def models(self):
        """GET /v1/models: {"default", "models": [...]}."""
        return self.request("GET", "/v1/models")

    def submit(self, job):
        """POST /v1/jobs; returns the new job's id."""
        return self._submit_body(job_body(job))

    def _submit_body(self, body, stopped=never):
        """submit() with the job made a body; `stopped()` true: the upload was broken off here,
        so the server need not be asked why it broke."""
        try:
            answer = self._request_body("POST", "/v1/jobs", body)
        except NotRunning as exc:
            if stopped():
                raise
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
        """POST /v1/jobs/{id}/cancel: {"id", "state"} (answered at once, so given up after
        STATUS_TIMEOUT s like a status)."""
        path = "/v1/jobs/%s/cancel" % quote(str(job_id), safe="")
        return self.request("POST", path, {}, quick=True)

    def start(self, job):
        """Submits `job` and returns a JobHandle to poll from a timer."""
        return JobHandle(self, self.submit(job))

    def watch(self, job, prepare=None):
        """A JobWatch that sends `job` and follows it from a background thread; returns at
        once. Polled from a timer, it never waits; a refusal comes from its poll(). `prepare`:
        see JobWatch."""
        return JobWatch(self, job, prepare)

    def wait(self, job_id, on_progress=None, should_cancel=None, poll_interval=None, timeout=None):
        """Blocks until the job finishes and returns its list of Result.

        Each poll waits on the server for the next change (up to LONG_POLL s), so steps and the
        result arrive as they happen; from a server that answers at once instead, polls every
        `poll_interval` s, by default quickly at first (see `poll_delays`).

        Calls on_progress(step, steps) whenever they change. If should_cancel() returns true,
        cancels the job on the server and raises Cancelled. Raises JobFailed / Cancelled for
        those states, and Timeout (after cancelling) when `timeout` seconds pass first. A poll
        that gets no answer is tried again as JobHandle.poll says, jobs.RETRY_PAUSE s later."""
        started = time.time()
        seen = None
        delays = poll_delays() if poll_interval is None else itertools.repeat(poll_interval)
        for status in follow_polls(Contact(self, job_id), time.sleep, delays):
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
