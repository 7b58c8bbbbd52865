"""The plug-in's one controller: turns an action (img2img, fill, generate) on a document into a
plan, a job and new layers, and reports progress and errors. No widgets: the docker and the
actions call it, tests call it with an explicit document and layer."""

import traceback

from PyQt5.QtCore import QObject, pyqtSignal

from .hostkit.client import Client, PaintbridgeError, kept_in_history
from .logic import (
    PLANNERS,
    PlaceError,
    PlanError,
    check_unchanged,
    document_is_open,
    moved_by,
    place_results,
    prepare_results,
)
from .params import Params, SettingsError
from .runner import JobRunner, ServerStarter

REQUEST_TIMEOUT = 10  # seconds per request: the GUI waits at most this long on one poll


class Controller(QObject):
    """Signals: message(level, text) with level "info", "warning" (a result was added, but see
    the text) or "error"; progress(step, steps, text);
    busy_changed(bool); done(list of new nodes); starting_changed(bool) while the local server
    starts. `last_error` keeps the latest error text."""

    message = pyqtSignal(str, str)
    progress = pyqtSignal(int, int, str)
    busy_changed = pyqtSignal(bool)
    done = pyqtSignal(object)
    starting_changed = pyqtSignal(bool)
    params_changed = pyqtSignal(object)  # the docker that changed `params` (one per window)

    def __init__(self, params=None, config_dir=None, parent=None, interval_ms=200):
        QObject.__init__(self, parent)
        self.params = params or Params()
        self.config_dir = config_dir  # None: hostkit's default folder
        self.runner = JobRunner(interval_ms, self)
        self.runner.progress.connect(self.progress)
        self.runner.busy_changed.connect(self.busy_changed)
        self.runner.finished.connect(self._finished)
        self.runner.failed.connect(self._failed)
        self.runner.cancelled.connect(self._cancelled)
        self.starter = ServerStarter(parent=self)
        self.starter.busy_changed.connect(self.starting_changed)
        self.starter.ready.connect(self._server_ready)
        self.starter.failed.connect(self._failed)
        self.last_error = None
        self.last_nodes = None
        self._note = None  # a warning about the result being placed, said after "Done"

    @property
    def busy(self):
        return self.runner.busy

    @property
    def starting(self):
        """True while the local server is being started."""
        return self.starter.busy

    def client(self):
        """The server to use: the URL in the settings, else the local one from server.json."""
        if self.params.server_url:
            return Client(self.params.server_url, self.params.server_token, REQUEST_TIMEOUT)
        return Client.discover(self.config_dir, autostart=False, timeout=REQUEST_TIMEOUT)

    def start_server(self):
        """Starts the local server (as `paintbridge plugins install` set it up) without freezing
        Krita: returns at once, and `message` says when it answers or why it did not start.
        Returns True when a server answers or is starting."""
        self.last_error = None
        if self.params.server_url:
            return self._error(
                "The plug-in uses the server at %s (set in the settings), so there is no local "
                "server to start. Clear the server URL to use a local one." % self.params.server_url
            )
        if self.starting:
            self.message.emit("info", "The paintbridge server is already starting\u2026")
            return True
        try:
            client = self.starter.start(self.config_dir, REQUEST_TIMEOUT)
        except PaintbridgeError as exc:
            return self._error(str(exc))
        except Exception as exc:
            return self._unexpected("start the server", exc)
        if client is not None:
            self.message.emit("info", "The paintbridge server is running at %s." % client.url)
        else:
            self.message.emit(
                "info", "Starting the paintbridge server\u2026 (the first start can take a minute)"
            )
        return True

    def run(self, task, document=None, node=None):
        """Starts `task` ("img2img", "inpaint", "txt2img") on `document`/`node` (default: the
        active ones). Returns True when a job was submitted; errors go to `message`."""
        self.last_error = None
        if self.busy:
            return self._error("A paintbridge job is already running; wait or cancel it.")
        if self.starting:
            return self._error(
                "The paintbridge server is still starting; try again when it says it is running."
            )
        if document is None:
            from krita import Krita

            document = Krita.instance().activeDocument()
            node = document.activeNode() if document is not None else None
        try:
            plan = PLANNERS[task](document, node, self.params)
            self.runner.start(
                self.client(),
                plan.job,
                lambda ready: self._place(plan, ready),
                lambda results: prepare_results(plan, results),  # on the job's thread
            )
        except (PlanError, SettingsError, PaintbridgeError) as exc:
            return self._error(str(exc))
        except Exception as exc:  # a Krita or plug-in bug: a message, not a bare traceback
            return self._unexpected("start the job", exc)
        self.message.emit("info", "Sending to the server; the result will be a new layer.")
        return True

    def cancel(self, wait=0):
        """Cancels the running job; `wait`: see JobRunner.cancel."""
        self.runner.cancel(wait)

    def _place(self, plan, ready):
        job_id = self.runner.job_id
        self._note = None
        if not document_is_open(plan.document):
            raise PaintbridgeError(
                "The document was closed before the result came, so nothing was added. "
                + kept_in_history(job_id or "JOB_ID")
            )
        if not ready:
            raise PaintbridgeError("The server finished the job but sent no image.")
        try:
            note = check_unchanged(plan)
            offset = moved_by(plan)
            nodes = place_results(plan, ready, offset or (0, 0))
            if offset is not None:
                moved = "The layer %r was moved while the job ran; the result moved with it." % (
                    plan.anchor.name()
                )
                note = " ".join(filter(None, (note, moved)))
        except PlaceError as exc:
            raise PlaceError("%s %s" % (exc, kept_in_history(job_id or "JOB_ID"))) from None
        self._note = note
        from krita import Krita

        active = Krita.instance().activeDocument()
        if active is not None and active == plan.document:
            plan.document.setActiveNode(nodes[-1])
        return nodes

    def _finished(self, nodes):
        self.last_nodes = nodes
        self.message.emit("info", "Done: added the layer %r." % nodes[-1].name())
        note, self._note = self._note, None
        if note:
            self.message.emit("warning", note)
        self.done.emit(nodes)

    def _failed(self, text):
        self._error(text)

    def _server_ready(self, client):
        self.message.emit("info", "The paintbridge server is running at %s." % client.url)

    def _cancelled(self, text):
        self.message.emit("info", text)

    def _unexpected(self, what, exc):
        """An error no check foresaw: a message to the user, the traceback to stderr."""
        traceback.print_exc()
        return self._error(
            "Paintbridge could not %s (%s: %s). Nothing was changed. This is a bug in "
            "paintbridge; please report it with this message." % (what, type(exc).__name__, exc)
        )

    def _error(self, text):
        self.last_error = text
        self.message.emit("error", text)
        return False
