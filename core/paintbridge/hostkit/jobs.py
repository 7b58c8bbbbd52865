"""A submitted job, followed: its state (JobStatus, Result), one-request polls (JobHandle), a
job sent and followed from a background thread for GUI hosts (JobWatch), the pauses between
polls, and the messages for a job whose server went away. Client (client.py) makes these; the
names are re-exported there.

Standard library only, Python 2.7 and 3.8+.
"""

from __future__ import absolute_import, division, print_function

import atexit
import threading
import time

from .errors import Cancelled, JobFailed, NotRunning, PaintbridgeError, ServerFault, Timeout
from .pixels import payload_to_rgba
from .transport import JsonBody, json_body

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
# JobWatch.follow: how often it looks at the job and the host's cancel, and how long a cancel
# may take to go out before Cancelled is raised
FOLLOW_INTERVAL = 0.05
CANCEL_WAIT = 3.0
# How much longer the exit hook waits for a JobWatch whose host's prepare() is running
PREPARE_WAIT = 30.0


def poll_delays(first=POLL_FIRST, most=POLL_MOST):
    """The pauses between polls, in seconds: `first`, doubling up to `most`, then `most` on."""
    delay = first
    while True:
        yield delay
        delay = min(most, delay * 2)


# --- job state -------------------------------------------------------------------------------

FINISHED = ("done", "failed", "cancelled")
SENDING = "sending"  # hostkit's own state: a JobWatch's job on its way to the server
# The code of a Cancelled whose job may have made a result, kept in the server's history: a
# host shows its message (a cancel the user asked for is otherwise silent).
RESULT_KEPT = "result_kept"
FINISHING = "finishing"  # hostkit's own: a JobWatch's job is done, its host's prepare() runs
SENDING_CANCELLED = "Cancelled while the job was being sent; no image was made."


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
    image payloads in raw["results"]. A JobWatch whose job is still being sent says so with
    the state SENDING (the server has not seen the job yet; `id` is None) and `sent`/`size`
    in bytes."""

    __slots__ = (
        "id",
        "state",
        "position",
        "step",
        "steps",
        "sent",
        "size",
        "results",
        "error",
        "raw",
    )

    def __init__(self, raw, results=None):
        progress = raw.get("progress") or {}
        upload = raw.get("upload") or {}
        self.raw = raw
        self.id = raw.get("id")
        self.state = raw.get("state")
        self.position = raw.get("position")
        self.step = progress.get("step") or 0
        self.steps = progress.get("steps") or 0
        self.sent = upload.get("sent") or 0
        self.size = upload.get("size") or 0
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
        """Progress in [0, 1]: of the steps (0 while queued or when steps are unknown), or of
        the upload while SENDING."""
        if self.state == SENDING:
            return min(1.0, self.sent / float(self.size)) if self.size else 0.0
        if self.state == FINISHING:
            return 1.0
        return min(1.0, self.step / self.steps) if self.steps else (1.0 if self.done else 0.0)

    @property
    def done(self):
        return self.state == "done"

    def raise_for_state(self):
        """Raises JobFailed or Cancelled for those states, NotRunning for a job the server's
        stop ended; returns self otherwise."""
        if self.state == "failed":
            error = self.error or {}
            if error.get("code") == "shutting_down":
                raise NotRunning(
                    SERVER_STOPPED + " Start it with `paintbridge serve` and try again."
                )
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


# Text on Python 2 too: a "\u2026" there is six characters, and formatters drop a u"" prefix
_TRYING_AGAIN = b"No answer from the server; trying again\xe2\x80\xa6".decode("utf-8")


def status_text(status, trouble=None):
    """What a GUI shows for an unfinished job's `status`: "Sending (12.0 of 48.0 MB)",
    "Queued (2 ahead)", "Step 3 of 20"; with `trouble` (a JobHandle's) that polls go
    unanswered."""
    if trouble is not None:
        return _TRYING_AGAIN
    if status.state == SENDING:
        if status.size < 1 << 20:
            return "Sending"
        return "Sending (%.1f of %.1f MB)" % (status.sent / 1048576.0, status.size / 1048576.0)
    if status.state == "queued":
        return "Queued (%s ahead)" % (status.position,) if status.position else "Queued"
    if status.state == FINISHING:
        return "Finishing"
    return "Step %d of %d" % (status.step, status.steps) if status.steps else "Running"


def _decode_result(item):
    try:
        width, height, rgba = payload_to_rgba(item["image"])
    except (KeyError, TypeError, ValueError) as exc:
        message = "The server sent a result that cannot be read: %s" % (exc,)
        raise ServerFault(message)  # noqa: B904
    return Result(width, height, rgba, item.get("seed"))


# --- when a job's result does not reach the plug-in ------------------------------------------


SERVER_STOPPED = "The paintbridge server stopped before the job finished; no image was made."


def server_lost(exc):
    """The NotRunning to raise when the server goes away while it holds our job."""
    return NotRunning("%s %s" % (SERVER_STOPPED, exc), status=exc.status)


def kept_in_history(job_id):
    """Where a finished result that did not reach the plug-in is, and the command that saves it."""
    return (
        "The paintbridge server keeps every finished result in its history: `paintbridge history "
        "export %s --out DIR` on the server's machine saves it (`paintbridge history` lists the "
        "latest)." % (job_id,)
    )


def with_history(exc, job_id):
    """`exc` (a PaintbridgeError about job `job_id`'s finished result) again, of its type and
    code, its message followed by where the result is kept."""
    message = "%s. %s" % (_detail(exc), kept_in_history(job_id))
    return type(exc)(message, code=exc.code, status=exc.status)


def _text(value):
    """`value` as text: on Python 2, UTF-8 bytes decoded, so that joining them with unicode
    (a job id from JSON) cannot raise UnicodeDecodeError."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _message(exc):
    """What `exc` says, as text."""
    if isinstance(exc, PaintbridgeError):
        return _text(exc.message if exc.message is not None else "")
    try:
        return _text(str(exc))
    except UnicodeError:  # Python 2: str() of a unicode message outside ASCII
        return _text(exc.args[0]) if len(exc.args) == 1 else repr(exc)


def _detail(exc):
    """What `exc` says, without a last full stop; its type's name when it says nothing."""
    return _message(exc).rstrip(".") or type(exc).__name__


def not_used(exc, job_id):
    """The PaintbridgeError for a done job whose result the plug-in could not use (`exc`, what
    its prepare or placing raised): what went wrong, and where the result is kept. A
    PaintbridgeError (a ServerFault: a result of the wrong size) keeps its type and code
    (with_history); anything else becomes code result_not_used, `exc` its `cause`."""
    if isinstance(exc, PaintbridgeError):
        return with_history(exc, job_id)
    error = PaintbridgeError(
        "Job %s is done, but the plug-in could not use its result: %s. %s"
        % (job_id, _detail(exc), kept_in_history(job_id)),
        code="result_not_used",
    )
    error.cause = exc
    return error


def job_body(job):
    """The request body of `job` (json_body), its Laters made; what they raise beyond a
    PaintbridgeError is raised as not_made's error."""
    try:
        return json_body(job)
    except PaintbridgeError:
        raise
    except Exception as exc:  # a Later's pixel work (MemoryError, a plug-in's bug)
        raise not_made(exc)  # noqa: B904


def not_made(exc):
    """The PaintbridgeError for a job whose pixels the plug-in could not make to send (`exc`,
    what a Later raised, is its `cause`): nothing was sent, the document is as it was."""
    if isinstance(exc, MemoryError):
        advice = "Close other programs or work on a smaller area, and try again."
    else:
        advice = "This is a bug in paintbridge; please report it with this message."
    error = PaintbridgeError(
        "The image could not be prepared for sending (%s); nothing was sent. %s"
        % (_detail(exc), advice),
        code="job_not_made",
    )
    error.cause = exc
    return error


def contact_lost(exc, job_id, done):
    """The error to raise when polls of `job_id` kept failing with `exc`: the server may have
    finished the job (`done`: it said so) and kept the result in its history."""
    refused = getattr(exc, "refused", False)
    if done:
        what = "its result could not be fetched"
        if refused:
            what = "the paintbridge server stopped before its result came"
        message = "Job %s is done, but %s: %s %s" % (
            job_id,
            what,
            _message(exc),
            kept_in_history(job_id),
        )
    elif refused:
        return server_lost(exc)
    else:
        message = (
            "Lost contact with the paintbridge server before job %s finished: %s If the server "
            "is still running, the job goes on there and its result is kept. %s"
            % (job_id, _message(exc), kept_in_history(job_id))
        )
    return type(exc)(message, code=exc.code, status=exc.status)


# --- following a job -------------------------------------------------------------------------


def never():
    return False


class Contact(object):
    """Polls one job and tells a failed poll worth trying again from one that ends the job
    (see LOST_AFTER_S). `trouble` is the latest failure while polls fail, else None."""

    def __init__(self, client, job_id):
        self.client = client
        self.job_id = job_id
        self.failures = 0
        self.since = None  # when the first of the failed polls in a row began
        self.done = False  # the server said the job is done (its results may not be here yet)
        self.finished = False  # the server said it is done, failed or cancelled
        self.trouble = None
        self.stopped = never  # true once nobody wants the results (JobWatch.close)

    def poll(self, wait=0):
        """The job's JobStatus, or None after a failed poll worth trying again; raises the error
        to show once it is not."""
        asked = time.time()
        try:
            raw = self.client.status(self.job_id, "none", wait)
            state = raw.get("state") if isinstance(raw, dict) else None
            self.done = self.done or state == "done"
            self.finished = self.finished or state in FINISHED
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
        except ServerFault as exc:  # e.g. a result that cannot be read
            if self.done:
                raise with_history(exc, self.job_id)  # noqa: B904
            raise
        self.failures, self.since, self.trouble = 0, None, None
        return status


class JobHandle(object):
    """A submitted job for hosts that poll from a timer: each `poll()` is one short request."""

    def __init__(self, client, job_id):
        self.client = client
        self.id = job_id
        self.last = None  # the latest JobStatus
        self._contact = Contact(client, job_id)

    @property
    def trouble(self):
        """The error of the latest poll while polls get no answer (they are being tried
        again), else None."""
        return self._contact.trouble

    @property
    def server_done(self):
        """True once the server said the job is done: its result is in the server's history,
        whatever becomes of it here (a Cancel now adds nothing, but makes nothing undone)."""
        return self._contact.done

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
    """A job sent and followed from a background thread, for GUI hosts: `poll()` answers at
    once with the latest status, and no request of the job runs on the caller's thread, so a
    large upload, a remote server's round trips, a large result's download or a server that
    hangs never stall the GUI. The thread sends the job (`poll()` says SENDING, with the bytes
    sent, until the server has it and `id` is set), long-polls it (each answer comes when the
    job's state or step changes), fetches the results and ends with the job, or at `close()`.
    A job the server refuses, or one given up (see JobHandle.poll), is raised by the next
    poll().

    `prepare(results)`, when given, runs on the thread once the job is done, and the finished
    status's `results` are what it returns: the host's pixel work on a result (compositing,
    encoding, reordering bytes) stays off its GUI thread, which then only makes its document's
    objects. Until it returns, poll() says FINISHING (not finished). What it raises, the next
    poll() raises, saying where the result is kept (see not_used)."""

    def __init__(self, client, job, prepare=None):
        JobHandle.__init__(self, client, None)
        self._job = job
        self._prepare = prepare
        self._preparing = False  # a Later is made or prepare() runs (see _close_watches)
        self._upload = None  # the request body while it is being sent
        self._error = None
        self._closed = threading.Event()
        self._wake = threading.Event()  # ends a pause between polls early: cancel() or close()
        self._cancel_wanted = False
        self._cancel_sent = False
        self._cancel_gone = threading.Event()  # the cancel was sent, or nothing is left to cancel
        self._contact.stopped = self._closed.is_set
        self._thread = threading.Thread(target=self._run, name="paintbridge job")
        self._thread.daemon = True  # never keeps the editor from quitting (see _close_watches)
        _WATCHES.add(self)
        self._thread.start()

    def _run(self):
        try:
            self._send()
            for status in follow_polls(self._contact, self._pause, poll_delays()):
                if status is not None and status.done and self._prepare is not None:
                    status = self._prepared(status)
                if status is not None and not self._closed.is_set():
                    self.last = status
                self._cancel_if_wanted()
            self._cancel_if_wanted()  # closed before a cancel() went out: it still goes
        except PaintbridgeError as exc:
            self._error = exc
        except Exception as exc:  # a bug here must still end the job for the GUI
            what = "Sending the job" if self.id is None else "Following job %s" % (self.id,)
            self._error = PaintbridgeError(
                "%s failed (%r). This is a bug in paintbridge; please report it with this "
                "message." % (what, exc)
            )
        finally:
            self._upload = None
            self._cancel_gone.set()
            _WATCHES.discard(self)

    def _send(self):
        self._preparing = True  # a Later's pixel work cannot be stopped half-way either
        try:
            body = _Upload(job_body(self._job), self._upload_stopped)  # makes each Later
        finally:
            self._preparing = False
            self._job = None  # made into the body, or failed: not kept for the job's life
        self._upload = body
        try:
            job_id = self.client._submit_body(body, self._upload_stopped)
        except PaintbridgeError:
            if self._upload_stopped():  # whatever ended the upload, it was stopped here
                raise Cancelled(SENDING_CANCELLED)
            raise
        self.id = self._contact.job_id = job_id
        self._thread.name = "paintbridge job %s" % (job_id,)
        self._upload = None

    def _prepared(self, status):
        self._preparing = True
        try:
            if self._closed.is_set():
                return None  # nobody wants the results
            progress = status.raw.get("progress")
            self.last = JobStatus({"id": self.id, "state": FINISHING, "progress": progress})
            results = self._prepare(status.results or [])
        except Cancelled:
            raise
        except Exception as exc:
            raise not_used(exc, self.id)  # noqa: B904
        finally:
            self._preparing = False
        return JobStatus(status.raw, [] if results is None else results)

    def _upload_stopped(self):
        return self._cancel_wanted or self._closed.is_set()

    def _cancel_if_wanted(self):
        if not self._cancel_wanted or self._cancel_sent or self._contact.finished:
            return
        self._cancel_sent = True
        try:
            answer = self.client.cancel(self.id)
        except PaintbridgeError as exc:
            raise Cancelled(  # noqa: B904
                "Cancelled here, but the server did not answer the cancel (%s). If it is still "
                "running, the job goes on there and its result is kept. %s"
                % (_message(exc), kept_in_history(self.id)),
                code=RESULT_KEPT,
            )
        finally:
            self._cancel_gone.set()
        if isinstance(answer, dict) and answer.get("state") == "done":
            self._contact.done = True  # it finished before the cancel came: see server_done

    def _cancelled(self):
        """The Cancelled a Cancel in follow() ends with: code RESULT_KEPT, saying where the
        result is kept, when the job was done by then or the server did not answer the cancel."""
        if self.server_done:
            return Cancelled(
                "Cancelled; nothing was added. " + kept_in_history(self.id), code=RESULT_KEPT
            )
        if isinstance(self._error, Cancelled):
            return self._error
        return Cancelled("Cancelled; no image was made.")

    def _pause(self, seconds):
        self._wake.wait(seconds)
        self._wake.clear()

    def poll(self):
        if self._error is not None:
            raise self._error
        if self._cancel_wanted and self.id is None:
            # the upload stops at its next piece, or a job the server got just then is
            # cancelled there; neither makes an image, and a stalled upload cannot hold the GUI
            raise Cancelled(SENDING_CANCELLED)
        upload = self._upload
        if self.id is None and upload is not None:
            return JobStatus(
                {"state": SENDING, "upload": {"sent": upload.sent, "size": upload.size}}
            )
        if self.last is None:  # the job is not sent yet, or no answer to the first poll yet
            state = SENDING if self.id is None else "queued"
            return JobStatus({"id": self.id, "state": state})
        return self.last

    def cancel(self, wait=0):
        """Asks for the job to be cancelled: an upload under way stops, and a sent job is
        cancelled on the server by the thread (a running job stops at its next step), even
        after close(). The next polls say how it ended; a cancel the server does not answer
        ends the job with Cancelled. Returns at once, or with `wait` once the cancel has gone
        out (at most `wait` s: for an editor that is closing)."""
        self._cancel_wanted = True
        self._wake.set()
        if wait:
            self._cancel_gone.wait(wait)

    def close(self):
        """Stops following the job: no more polls or downloads (a cancel() asked for still
        goes out); the server runs it on regardless."""
        self._closed.set()
        self._wake.set()

    def join(self, timeout=None):
        """Waits up to `timeout` s for the thread to end (it ends with the job, or soon after
        close()); True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def follow(self, on_status=None, should_cancel=None, interval=FOLLOW_INTERVAL):
        """Blocks until the job ends and returns its list of Result, for a host whose own loop
        must keep turning meanwhile (GIMP's progress window), which the thread's requests never
        hold up: every `interval` s, calls should_cancel(), and on_status(status, text) with
        the unfinished JobStatus and status_text's words for it when they changed. When
        should_cancel() says yes, the cancel goes out (waited for up to CANCEL_WAIT s: the
        caller may exit next) and Cancelled is raised. Raises what poll() raises, and JobFailed
        or Cancelled for those states; the watch is closed at the end."""
        shown = None
        try:
            while True:
                status = self.poll()
                if status.finished:
                    return status.raise_for_state().results or []
                text = status_text(status, self.trouble)
                if on_status is not None and (status.fraction, text) != shown:
                    shown = (status.fraction, text)
                    on_status(status, text)
                if should_cancel is not None and should_cancel():
                    self.cancel(CANCEL_WAIT)
                    raise self._cancelled()
                time.sleep(interval)
        finally:
            self.close()


class _Upload(JsonBody):
    """A job's request body that counts the bytes sent and ends the upload, raising Cancelled,
    once `stopped()` is true."""

    def __init__(self, body, stopped):
        JsonBody.__init__(self, body.parts if isinstance(body, JsonBody) else [body])
        self.sent = 0
        self._stopped = stopped

    def __iter__(self):
        for piece in JsonBody.__iter__(self):
            if self._stopped():
                raise Cancelled("Cancelled while the job was being sent.")
            yield piece
            self.sent += len(piece)


_WATCHES = set()  # the JobWatches whose thread runs


@atexit.register
def _close_watches():
    """Ends the watches' threads before the interpreter goes: Blender hung on exit when a
    daemon thread was still in a request then (a job followed when the editor quit). A host's
    pixel work (a Later made as the job is sent, prepare() on its results) cannot be stopped
    half-way, so a watch in it is given until it ends (at most PREPARE_WAIT s more): a thread
    left in numpy or zlib as the interpreter goes may crash it."""
    watches = list(_WATCHES)
    for watch in watches:
        watch.close()
    for watch in watches:
        watch.join(STATUS_TIMEOUT + LONG_POLL + (PREPARE_WAIT if watch._preparing else 0))


def follow_polls(contact, pause, delays):
    """Yields the job's JobStatus after each poll, None after one that got no answer (the next
    comes RETRY_PAUSE s later), until a finished one. Each poll but the first waits on the
    server for a change (LONG_POLL); from a server that answers at once instead, `delays` gives
    the pauses. `pause(seconds)` sleeps; it ends once `contact.stopped()`; errors are
    Contact.poll's."""
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
