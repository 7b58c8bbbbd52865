"""The HTTP client every plug-in uses to talk to the paintbridge server (protocol v1).

Find (and if need be start) the local server, submit jobs, poll, cancel, fetch results. Two
styles: blocking (`Client.run`, `Client.wait`) for GIMP and Blender's background mode, and
one-request-per-call polling (`Client.start` -> `JobHandle.poll`) for a GUI timer.

Standard library only, Python 2.7 and 3.8+. Every failure is a PaintbridgeError (or subclass)
whose message a user can act on.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import socket
import subprocess
import sys
import time

from .pixels import payload_to_rgba

try:  # Python 3
    from http.client import HTTPException  # novermin
    from urllib.error import HTTPError, URLError  # novermin
    from urllib.parse import quote, urlsplit  # novermin
    from urllib.request import ProxyHandler, Request, build_opener  # novermin
except ImportError:  # Python 2.7 (GIMP 2.10)
    from urllib import quote  # novermin

    from httplib import HTTPException  # novermin
    from urllib2 import HTTPError, ProxyHandler, Request, URLError, build_opener  # novermin
    from urlparse import urlsplit  # novermin

DEFAULT_URL = "http://127.0.0.1:7860"
APP = "paintbridge"


# --- errors ----------------------------------------------------------------------------------


class PaintbridgeError(Exception):
    """Every error hostkit raises on purpose. `code` is a stable name, `status` the HTTP status."""

    default_code = "error"

    def __init__(self, message, code=None, status=None):
        Exception.__init__(self, message)
        self.message = message
        self.code = code or self.default_code
        self.status = status

    def __str__(self):
        return self.message


class NotRunning(PaintbridgeError):
    """No server answers at the URL (connection refused, unknown host, connection dropped)."""

    default_code = "not_running"


class Unauthorized(PaintbridgeError):
    """The server refused the token (HTTP 401)."""

    default_code = "unauthorized"


class RequestRejected(PaintbridgeError):
    """The server said the request was wrong (HTTP 4xx); the message is the server's."""

    default_code = "invalid_request"


class QueueFull(RequestRejected):
    """HTTP 429: the server's queue is full. `retry_after` is seconds (float) or None."""

    default_code = "queue_full"

    def __init__(self, message, code=None, status=429, retry_after=None):
        RequestRejected.__init__(self, message, code, status)
        self.retry_after = retry_after


class ServerFault(PaintbridgeError):
    """HTTP 5xx or an answer that is not the protocol: a bug in the server."""

    default_code = "server_error"


class Timeout(PaintbridgeError):
    """The server did not answer (or the job did not finish) in time."""

    default_code = "timeout"


class JobFailed(PaintbridgeError):
    """The job ended in state "failed"; the message is the server's."""

    default_code = "job_failed"


class Cancelled(PaintbridgeError):
    """The job was cancelled (by the user here, or on the server); no image was made."""

    default_code = "cancelled"


def not_running_message(url):
    return (
        "Could not reach the paintbridge server at %s. Start it with `paintbridge serve`, "
        "or check the URL in the plug-in settings." % url
    )


# --- paths -----------------------------------------------------------------------------------


def user_config_dir(platform=None, environ=None, home=None):
    """paintbridge's config folder, as paintbridge itself computes it.

    $PAINTBRIDGE_CONFIG_DIR if set; else platformdirs' user_config_dir("paintbridge"):
    Linux $XDG_CONFIG_HOME/paintbridge (default ~/.config/paintbridge), macOS
    ~/Library/Application Support/paintbridge, Windows %LOCALAPPDATA%\\paintbridge."""
    platform = sys.platform if platform is None else platform
    environ = os.environ if environ is None else environ
    windows = platform.startswith("win")
    join = _ntjoin if windows else _posixjoin
    if home is None:
        home = os.path.expanduser("~")
    override = environ.get("PAINTBRIDGE_CONFIG_DIR")
    if override:
        return _expand(override, home)
    if windows:
        base = environ.get("LOCALAPPDATA") or join(home, "AppData", "Local")
    elif platform == "darwin":
        base = join(home, "Library", "Application Support")
    else:
        base = (environ.get("XDG_CONFIG_HOME") or "").strip() or join(home, ".config")
        base = _expand(base, home)
    return join(base, APP)


def _expand(path, home):
    if path == "~" or path.startswith("~/") or path.startswith("~\\"):
        return home + path[1:]
    return path


def _posixjoin(*parts):
    import posixpath

    return posixpath.join(*parts)


def _ntjoin(*parts):
    import ntpath

    return ntpath.join(*parts)


def _read_json(path):
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (IOError, OSError, ValueError):
        return None


# --- transport -------------------------------------------------------------------------------


def _is_loopback(host):
    return host in ("localhost", "::1") or (host or "").startswith("127.")


class UrllibTransport(object):
    """Sends one request with urllib: `transport(method, path, body, headers)` ->
    (status, headers with lower-case names, body bytes). HTTP error statuses are returned, not
    raised; network failures raise NotRunning or Timeout. Proxies are bypassed for loopback."""

    def __init__(self, base_url, timeout=30):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        host = urlsplit(self.base_url).hostname
        self._opener = build_opener(ProxyHandler({})) if _is_loopback(host) else build_opener()

    def __call__(self, method, path, body=None, headers=None):
        request = Request(self.base_url + path, data=body, headers=dict(headers or {}))
        request.get_method = lambda: method
        try:
            response = self._opener.open(request, timeout=self.timeout)
            try:
                return response.getcode(), _lower(response.info()), response.read()
            finally:
                response.close()
        except HTTPError as exc:
            try:
                data = exc.read()
            except Exception:
                data = b""
            return exc.code, _lower(exc.info()), data
        except URLError as exc:
            if isinstance(exc.reason, socket.timeout):
                raise self._timeout()  # noqa: B904
            raise NotRunning(  # noqa: B904
                not_running_message(self.base_url) + " (%s)" % (exc.reason,), status=None
            )
        except socket.timeout:
            raise self._timeout()  # noqa: B904
        except (HTTPException, socket.error) as exc:
            raise NotRunning(  # noqa: B904
                not_running_message(self.base_url) + " (the connection failed: %s)" % (exc,)
            )

    def _timeout(self):
        return Timeout(
            "The paintbridge server at %s did not answer within %s s. It may be busy loading a "
            "model; try again, or raise the timeout in the plug-in settings."
            % (self.base_url, self.timeout)
        )


def _lower(headers):
    try:
        items = headers.items()
    except AttributeError:
        return {}
    return dict((str(k).lower(), v) for k, v in items)


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
    error ({"code", "message"} when failed)."""

    __slots__ = ("id", "state", "position", "step", "steps", "results", "error", "raw")

    def __init__(self, raw):
        progress = raw.get("progress") or {}
        self.raw = raw
        self.id = raw.get("id")
        self.state = raw.get("state")
        self.position = raw.get("position")
        self.step = progress.get("step") or 0
        self.steps = progress.get("steps") or 0
        self.error = raw.get("error")
        self.results = None
        if raw.get("results") is not None:
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


class JobHandle(object):
    """A submitted job for hosts that poll from a timer: each `poll()` is one short request."""

    def __init__(self, client, job_id):
        self.client = client
        self.id = job_id
        self.last = None  # the latest JobStatus

    def poll(self):
        """The job's current JobStatus (never blocks longer than one request)."""
        self.last = self.client.poll(self.id)
        return self.last

    def cancel(self):
        """Asks the server to cancel; a running job stops at its next step."""
        return self.client.cancel(self.id)

    def __repr__(self):
        return "JobHandle(%r)" % (self.id,)


# --- client ----------------------------------------------------------------------------------


class Client(object):
    """A connection to one paintbridge server: `Client(url, token, timeout=30)`.

    `transport` (for tests) is a callable (method, path, body, headers) -> (status, headers,
    body); the default sends real requests with urllib and `timeout` seconds per request."""

    def __init__(self, url, token, timeout=30, transport=None, token_source=None):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.transport = transport or UrllibTransport(self.url, timeout)
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
        Raises NotRunning otherwise."""
        config_dir = config_dir or user_config_dir()
        client = _client_from_server_file(config_dir, timeout)
        if client is not None and client.is_live():
            return client
        url = client.url if client is not None else DEFAULT_URL
        if not autostart:
            raise NotRunning(not_running_message(url))
        launcher = _read_json(os.path.join(config_dir, "hostkit.json")) or {}
        command = launcher.get("command")
        if not command:
            raise NotRunning(
                not_running_message(url) + " (Run `paintbridge plugins install` once so the "
                "plug-in can start the server by itself.)"
            )
        return _start_server(command, config_dir, start_timeout, timeout)

    # requests ------------------------------------------------------------------------------

    def request(self, method, path, payload=None, auth=True):
        """Sends one request and returns the decoded JSON answer; raises the PaintbridgeError
        subclass matching a failure."""
        headers = {"Accept": "application/json"}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        status, response_headers, data = self.transport(method, path, body, headers)
        if 200 <= status < 300:
            try:
                return json.loads(data.decode("utf-8"))
            except ValueError:
                raise ServerFault(  # noqa: B904
                    "The server at %s answered %s %s with something that is not JSON; is it "
                    "a paintbridge server?" % (self.url, method, path),
                    status=status,
                )
        raise self._error(status, response_headers or {}, data, method, path)

    def _error(self, status, headers, data, method, path):
        code, message = None, None
        try:
            error = json.loads(data.decode("utf-8")).get("error") or {}
            code, message = error.get("code"), error.get("message")
        except (ValueError, AttributeError, UnicodeDecodeError):
            pass
        if status == 401:
            where = self.token_source or "the plug-in settings"
            return Unauthorized(
                "The paintbridge server at %s refused the token (%s). The token comes from %s, "
                "which `paintbridge serve` writes each time it starts; for a remote server, copy "
                "the token it printed into the plug-in settings."
                % (self.url, message or "unauthorized", where),
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
        answer = self.request("POST", "/v1/jobs", job)
        try:
            return answer["id"]
        except (KeyError, TypeError):
            message = "The server accepted the job but sent no job id: %r" % (answer,)
            raise ServerFault(message)  # noqa: B904

    def status(self, job_id, image_format="rgba8"):
        """GET /v1/jobs/{id} as the raw dict; results come as `image_format` payloads."""
        return self.request(
            "GET", "/v1/jobs/%s?image_format=%s" % (quote(str(job_id), safe=""), image_format)
        )

    def poll(self, job_id):
        """The job's JobStatus (one request; results decoded to RGBA8 when done)."""
        return JobStatus(self.status(job_id, "rgba8"))

    def cancel(self, job_id):
        """POST /v1/jobs/{id}/cancel: {"id", "state"}."""
        return self.request("POST", "/v1/jobs/%s/cancel" % quote(str(job_id), safe=""), {})

    def start(self, job):
        """Submits `job` and returns a JobHandle to poll from a timer."""
        return JobHandle(self, self.submit(job))

    def wait(self, job_id, on_progress=None, should_cancel=None, poll_interval=0.25, timeout=None):
        """Blocks until the job finishes and returns its list of Result.

        Calls on_progress(step, steps) whenever they change. If should_cancel() returns true,
        cancels the job on the server and raises Cancelled. Raises JobFailed / Cancelled for
        those states, and Timeout (after cancelling) when `timeout` seconds pass first."""
        started = time.time()
        seen = None
        while True:
            status = self.poll(job_id)
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
            time.sleep(poll_interval)

    def run(self, job, on_progress=None, should_cancel=None, poll_interval=0.25, timeout=None):
        """submit + wait: the list of Result for `job`."""
        return self.wait(self.submit(job), on_progress, should_cancel, poll_interval, timeout)

    def _cancel_quietly(self, job_id):
        try:
            self.cancel(job_id)
        except PaintbridgeError:
            pass


def _client_from_server_file(config_dir, timeout):
    path = os.path.join(config_dir, "server.json")
    info = _read_json(path)
    if not isinstance(info, dict) or not info.get("url"):
        return None
    return Client(info["url"], info.get("token"), timeout=timeout, token_source=path)


# --- starting the server ---------------------------------------------------------------------

# The servers this process started: kept so they are never garbage-collected while running
# (which would warn), and so a host (or a test) can stop them.
STARTED = []

# Variables a host sets for its own Python that would break the server's Python.
_HOST_ONLY_VARS = (
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "PYTHONNOUSERSITE",
)


def _server_environment(config_dir):
    env = dict(os.environ)
    for name in _HOST_ONLY_VARS:
        env.pop(name, None)
    if env.get("APPIMAGE") or env.get("APPDIR"):
        env.pop("LD_LIBRARY_PATH", None)  # an AppImage's libraries are for the host only
    env["PAINTBRIDGE_CONFIG_DIR"] = config_dir
    return env


def spawn_detached(command, log_path, env=None):
    """Starts `command` (a list) in the background so it outlives the host; output to log_path."""
    log = open(log_path, "ab")
    devnull = open(os.devnull, "rb")
    kwargs = {"stdin": devnull, "stdout": log, "stderr": subprocess.STDOUT, "env": env}
    if sys.platform.startswith("win"):
        # CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
        kwargs["creationflags"] = 0x00000200 | 0x08000000
        kwargs["close_fds"] = True
    else:
        # its own session: closing the host (or its terminal) does not stop the server
        kwargs["close_fds"] = True
        if sys.version_info[0] >= 3:
            kwargs["start_new_session"] = True
        else:
            kwargs["preexec_fn"] = os.setsid
    try:
        return subprocess.Popen([str(part) for part in command], **kwargs)
    finally:
        log.close()
        devnull.close()


def _start_server(command, config_dir, start_timeout, timeout):
    if not os.path.isdir(config_dir):
        os.makedirs(config_dir)
    log_path = os.path.join(config_dir, "server.log")
    try:
        process = spawn_detached(command, log_path, _server_environment(config_dir))
    except (OSError, ValueError) as exc:
        raise NotRunning(  # noqa: B904
            "Could not start the paintbridge server with %s: %s. Run `paintbridge plugins "
            "install` again, or start it yourself with `paintbridge serve`." % (command, exc)
        )
    STARTED.append(process)
    deadline = time.time() + start_timeout
    while time.time() < deadline:
        client = _client_from_server_file(config_dir, timeout)
        if client is not None and client.is_live():
            return client
        code = process.poll()
        if code is not None:
            raise NotRunning(
                "The paintbridge server stopped while starting (exit code %s). Its log is %s."
                % (code, log_path)
            )
        time.sleep(0.25)
    raise Timeout(
        "The paintbridge server did not start within %s s; it may still be loading. Its log is "
        "%s." % (start_timeout, log_path)
    )
