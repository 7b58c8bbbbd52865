"""Runs one job, or starts the local server, without freezing Krita. A job is sent and
followed by hostkit's JobWatch from a background thread (the upload, long polls, a cancel, the
results' download); a QTimer on the GUI thread reads its latest status, so Krita API calls stay
on the GUI thread and no request of the job is made there. The server start is polled from the
timer (ServerLaunch.check, one short local request per tick).
"""

import time

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from .hostkit import launch_server, try_local_client
from .hostkit.client import (
    SENDING,
    Cancelled,
    PaintbridgeError,
    kept_in_history,
    not_used,
    status_text,
)


class JobRunner(QObject):
    """`start(client, job, on_done, prepare)`: sends `job`, polls it, and when it is done calls
    `on_done(results)` on the GUI thread (results: what `prepare(results)` made of them on the
    job's watch thread, when given); its return value is emitted by `finished`.

    Signals: progress(step, steps, text), finished(object), failed(str), cancelled(str),
    busy_changed(bool). Exactly one of finished / failed / cancelled ends every started job."""

    progress = pyqtSignal(int, int, str)
    finished = pyqtSignal(object)
    failed = pyqtSignal(str)
    cancelled = pyqtSignal(str)
    busy_changed = pyqtSignal(bool)

    def __init__(self, interval_ms=200, parent=None):
        QObject.__init__(self, parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._handle = None
        self._on_done = None
        self._cancel_requested = False
        self._in_tick = False

    @property
    def busy(self):
        return self._handle is not None

    @property
    def job_id(self):
        """The server's id of the job, once it has been sent."""
        return self._handle.id if self._handle is not None else None

    def start(self, client, job, on_done, prepare=None):
        """Starts sending the job and returns at once; a refusal by the server ends it with
        `failed`."""
        if self.busy:
            raise PaintbridgeError("A paintbridge job is already running; wait or cancel it.")
        self._handle = client.watch(job, prepare)
        self._on_done = on_done
        self._cancel_requested = False
        self._timer.start()
        self.busy_changed.emit(True)
        self.progress.emit(0, 0, "Sending")  # the timer's polls say more (and raise a refusal)

    def cancel(self, wait=0):
        """Asks for the job to be cancelled: an upload under way stops, and the server stops the
        job at its next step; it ends with `cancelled`. Returns at once, or with `wait` once
        the cancel has gone out (at most `wait` s: Krita is closing)."""
        if not self.busy:
            return
        if not self._cancel_requested:
            self._cancel_requested = True
            self.progress.emit(0, 0, "Cancelling\u2026")
        self._handle.cancel(wait)

    def _tick(self):
        if self._handle is None or self._in_tick:
            return
        self._in_tick = True
        try:
            self._poll()
        finally:
            self._in_tick = False

    def _poll(self):
        try:
            status = self._handle.poll()
        except Cancelled as exc:  # cancelled while it was being sent, or the cancel went unanswered
            self._end(self.cancelled, str(exc))
            return
        except PaintbridgeError as exc:
            if self._cancel_requested and self._handle.server_done:  # wanted no layer anyway
                self._end(self.cancelled, self._cancelled_when_done())
            else:
                self._end(self.failed, str(exc))
            return
        if not status.finished:
            # no answer to a poll: polled again, and hostkit gives up later
            text = status_text(status, self._handle.trouble)
            if self._cancel_requested:  # the server stops at its next step: say it is coming
                text = "Cancelling\u2026 (%s)" % (text[0].lower() + text[1:],)
            if status.state == SENDING and status.size:  # the bar shows the upload, then steps
                self.progress.emit(int(status.fraction * 100), 100, text)
            else:
                self.progress.emit(status.step, status.steps, text)
            return
        if self._cancel_requested and status.done:  # while its result came or was prepared
            self._end(self.cancelled, self._cancelled_when_done())
            return
        try:
            status.raise_for_state()
        except Cancelled as exc:
            self._end(self.cancelled, str(exc))
            return
        except PaintbridgeError as exc:
            self._end(self.failed, str(exc))
            return
        self._timer.stop()  # still busy while the result is placed: no second job can start
        try:
            value = self._on_done(status.results or [])
        except PaintbridgeError as exc:
            self._end(self.failed, str(exc))
            return
        except Exception as exc:  # a Krita or plug-in error: say it, do not leave a stuck job
            self._end(self.failed, str(not_used(exc, self._handle.id)))
            return
        self._end(self.finished, value)

    def _cancelled_when_done(self):
        return "Cancelled; no layer was added. %s" % (kept_in_history(self._handle.id),)

    def _stop(self):
        self._timer.stop()
        if self._handle is not None:
            self._handle.close()
        self._handle = None
        self._on_done = None

    def _end(self, signal, value):
        self._stop()
        self._emit_end(signal, value)

    def _emit_end(self, signal, value):
        self.busy_changed.emit(False)
        signal.emit(value)


class ServerStarter(QObject):
    """`start(config_dir, timeout)`: starts the local server from hostkit.json (hostkit's
    launch_server returns at once), then polls it from a QTimer until it answers.

    Signals: ready(Client), failed(str), busy_changed(bool). Exactly one of ready / failed ends
    every start that did not return a Client at once."""

    ready = pyqtSignal(object)
    failed = pyqtSignal(str)
    busy_changed = pyqtSignal(bool)

    def __init__(self, interval_ms=500, start_timeout_s=180, parent=None):
        QObject.__init__(self, parent)
        self.start_timeout_s = start_timeout_s
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._launch = None
        self._deadline = 0.0

    @property
    def busy(self):
        return self._launch is not None

    @property
    def launch(self):
        """hostkit's ServerLaunch of the start in progress, or None."""
        return self._launch

    def start(self, config_dir=None, timeout=10):
        """The Client at once when a server already answers (nothing is started); else starts
        one and returns None (the end comes as `ready` or `failed`). Raises PaintbridgeError
        when the server cannot be started (no hostkit.json, command not found)."""
        if self.busy:
            return None
        client = try_local_client(config_dir, timeout)
        if client is not None:
            return client
        self._launch = launch_server(config_dir, timeout)
        self._deadline = time.time() + self.start_timeout_s
        self._timer.start()
        self.busy_changed.emit(True)
        return None

    def _tick(self):
        launch = self._launch
        if launch is None:
            return
        try:
            client = launch.check()
        except PaintbridgeError as exc:
            self._end(self.failed, str(exc))
            return
        if client is not None:
            self._end(self.ready, client)
        elif time.time() > self._deadline:
            self._end(
                self.failed,
                "The paintbridge server did not answer within %d s; it may still be loading. "
                "Its log is %s." % (self.start_timeout_s, launch.log_path),
            )

    def _end(self, signal, value):
        self._timer.stop()
        self._launch = None
        self.busy_changed.emit(False)
        signal.emit(value)
