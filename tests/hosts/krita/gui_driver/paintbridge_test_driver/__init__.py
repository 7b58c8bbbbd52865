"""TEST ONLY: drives the installed Paintbridge plug-in through the Krita GUI (under Xvfb).

Reads $PAINTBRIDGE_KRITA_TEST_CONFIG (JSON: out, helpers, scenarios, killable: {url, token,
pid}). Once the main window exists it runs each scenario in turn on its own document: the menu
entries, the docker's buttons (QAbstractButton.click() on the real widgets), Cancel, the menu
action, undo, and a server killed mid-job. The verdicts go to `out` as
{"scenarios": {name: {"ok", "failures", "info"}}, "done": bool}; then Krita quits.

The scenarios are generators that `yield Wait(...)` instead of running a nested event loop:
Krita 5.2 holds back its synchronized signals (a new layer's shape, the active layer) while a
nested event loop runs, so a wait must return to Krita's own loop, as a user's clicks do.
"""

import json
import os
import signal
import sys
import time
import traceback

from krita import Krita, Selection
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import (
    QAbstractButton,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QSpinBox,
)

SAFETY_MS = 360000
SUBMENU = ("Tools", "Scripts", "Paintbridge")
STEP_S = 0.05  # test:identity sleeps this long per step

_state = {"scenarios": {}, "done": False}


def _config():
    with open(os.environ["PAINTBRIDGE_KRITA_TEST_CONFIG"]) as handle:
        return json.load(handle)


def _write():
    out = _config()["out"]
    with open(out + ".tmp", "w") as handle:
        json.dump(_state, handle, indent=1, default=str)
    os.replace(out + ".tmp", out)


class Wait:
    """Yielded by a scenario: it resumes with True once condition() holds, or with False after
    timeout_s. Wait(None, s) lets Krita run for s seconds."""

    def __init__(self, condition, timeout_s):
        self.condition = condition or (lambda: False)
        self.deadline = time.time() + timeout_s


class Pump:
    """Steps a generator of Waits from Krita's top-level event loop (a single-shot timer every
    step_ms); calls on_end when the generator is exhausted."""

    def __init__(self, steps, on_end, step_ms=50):
        self.steps = steps
        self.on_end = on_end
        self.step_ms = step_ms
        self.wait = None

    def start(self):
        self._resume(None)

    def _tick(self):
        try:
            met = self.wait.condition()
        except Exception as exc:  # raised where the scenario waits, so that it reports it
            return self._resume(error=exc)
        if met:
            self._resume(True)
        elif time.time() > self.wait.deadline:
            self._resume(False)
        else:
            QTimer.singleShot(self.step_ms, self._tick)

    def _resume(self, value=None, error=None):
        try:
            self.wait = self.steps.throw(error) if error else self.steps.send(value)
        except StopIteration:
            self.on_end()
            return
        QTimer.singleShot(self.step_ms, self._tick)


def menu_entries(menu, path=()):
    """(menu path, action text, objectName) for every leaf action under a QMenu/QMenuBar."""
    out = []
    for action in menu.actions():
        text = action.text().replace("&", "")
        if action.menu() is not None:
            out.extend(menu_entries(action.menu(), path + (text,)))
        else:
            out.append((path, text, action.objectName()))
    return out


class Scenario:
    def __init__(self):
        self.failures = []
        self.info = {}

    def check(self, condition, what):
        if not condition:
            self.failures.append(what)
        return condition


class Docker:
    """The Paintbridge docker, reached through its widgets as a user would."""

    def __init__(self, dock):
        self.dock = dock
        self.buttons = {b.text(): b for b in dock.findChildren(QAbstractButton) if b.text()}
        self.prompt = dock.findChild(QPlainTextEdit)
        self.model = dock.findChild(QComboBox)
        self.strength = dock.findChild(QDoubleSpinBox, "paintbridge_strength")
        self.seed = dock.findChild(QDoubleSpinBox, "paintbridge_seed")
        spins = {s.specialValueText(): s for s in dock.findChildren(QSpinBox)}
        self.steps = spins["model default"]
        self.progress = dock.findChild(QProgressBar)
        self.status = [label for label in dock.findChildren(QLabel) if label.wordWrap()][0]
        self.server_url = dock.findChild(QLineEdit, "paintbridge_server_url")
        self.server_token = dock.findChild(QLineEdit, "paintbridge_server_token")

    def use_server(self, url, token):
        self.server_url.setText(url)
        self.server_token.setText(token)

    def fill(self, prompt, model, steps, strength=0.75, seed=5):
        self.prompt.setPlainText(prompt)
        self.model.setCurrentText(model)
        self.steps.setValue(steps)
        self.strength.setValue(strength)
        self.seed.setValue(seed)

    def click(self, text):
        self.buttons[text].click()


class Driver:
    def __init__(self, config):
        self.config = config
        self.app = Krita.instance()
        self.window = self.app.activeWindow()
        sys.path.insert(0, config["helpers"])
        from paintbridge_krita import extension

        self.extension = extension
        self.ctrl = extension.controller()
        self.jobs_ended = 0
        runner = self.ctrl.runner
        for ended in (runner.finished, runner.failed, runner.cancelled):
            ended.connect(self._count_job_end)  # after the controller's own slots

    def _count_job_end(self, *_value):
        self.jobs_ended += 1

    # helpers -----------------------------------------------------------------------------

    def document(self, w, h, pixels=None, profile=""):
        from pixelcheck import pattern_bgra

        doc = self.app.createDocument(w, h, "paintbridge-gui-test", "RGBA", "U8", profile, 72.0)
        source = doc.createNode("source", "paintlayer")
        doc.rootNode().addChildNode(source, None)
        source.setPixelData(pixels or pattern_bgra(w, h), 0, 0, w, h)
        doc.refreshProjection()
        doc.waitForDone()
        self.window.addView(doc)
        # The layers are made before the view: a layer added to a shown document is followed by
        # Krita's own choice of active layer some event-loop turns later. setActiveNode works
        # once the window's view manager has switched to the new view; each scenario checks
        # that its new layer lands directly above "source".
        yield Wait(lambda: self.window.activeView().document() == doc, 10)
        yield Wait(lambda: doc.setActiveNode(source) and False, 1.0)
        return doc, source

    def select(self, doc, x, y, w, h):
        selection = Selection()
        selection.select(x, y, w, h, 255)
        doc.setSelection(selection)
        return bytes(doc.selection().pixelData(0, 0, doc.width(), doc.height()))

    def close(self, doc):
        doc.setModified(False)
        doc.close()

    def docker(self, s):
        docks = [d for d in self.app.dockers() if d.objectName() == "paintbridge_docker"]
        if not s.check(len(docks) == 1, f"no Paintbridge docker: {self.app.dockers()}"):
            raise RuntimeError("no docker")
        docks[0].setVisible(True)
        return Docker(docks[0])

    def names(self, doc):
        return [n.name() for n in doc.rootNode().childNodes()]

    def projection(self, doc):
        doc.refreshProjection()
        doc.waitForDone()
        return bytes(doc.pixelData(0, 0, doc.width(), doc.height()))

    def job_end(self, timeout_s):
        """A Wait for the next end of a job (its finished, failed or cancelled signal). Not for
        `busy` turning false: that comes before the result is placed, and placing it may run
        Krita's event loop, where the scenario would resume too early (seen on Krita 5.2)."""
        count = self.jobs_ended
        return Wait(lambda: self.jobs_ended > count, timeout_s)

    def click_and_wait(self, s, docker, text, timeout_s=120):
        end = self.job_end(timeout_s)
        docker.click(text)
        started = s.check(self.ctrl.busy, f"{text} did not start a job: {self.ctrl.last_error}")
        if started:
            s.check((yield end), "the job did not end")
        return started

    def new_layer(self, s, doc, names_before):
        """The one new node, checked to sit directly above the source layer."""
        names = self.names(doc)
        s.info["layers"] = names
        new = [n for n in doc.rootNode().childNodes() if n.name() not in names_before]
        if not s.check(len(new) == 1, f"not one new layer: {names}"):
            return None
        s.check(
            names.index(new[0].name()) == names.index("source") + 1,
            f"not above the source: {names}",
        )
        return new[0]

    def bounds(self, node):
        b = node.bounds()
        return [b.x(), b.y(), b.width(), b.height()]

    def wait_running(self, docker, timeout_s=120):
        """Until the server reports a step of the job (the docker says "Step n of N"; its
        progress bar also moves while the job is being sent)."""
        return Wait(lambda: self.ctrl.busy and docker.status.text().startswith("Step "), timeout_s)

    def error_box(self):
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QMessageBox) and widget.objectName() == "paintbridge_error":
                if widget.isVisible():
                    return widget
        return None

    # scenarios ---------------------------------------------------------------------------

    def scenario_menu(self, s):
        """Every Paintbridge action is in Tools > Scripts > Paintbridge, and nowhere else."""
        entries = menu_entries(self.window.qwindow().menuBar())
        ours = [(list(path), text, name) for path, text, name in entries if "paintbridge" in name]
        s.info["entries"] = ours
        wanted = [name for name, _text, _task in self.extension.ACTIONS]
        wanted += [self.extension.CANCEL_ACTION[0], self.extension.START_SERVER_ACTION[0]]
        for name in wanted:
            paths = [tuple(path) for path, _text, found in ours if found == name]
            s.check(paths == [SUBMENU], f"{name} is in {paths}, not in {SUBMENU}")
        s.check(len(ours) == len(wanted), f"unexpected entries: {ours}")

    def scenario_docker_img2img(self, s):
        """Image to Image from the docker with test:identity: a new layer at the layer's offset
        and size holding the source's pixels (partly transparent ones included)."""
        from pixelcheck import compare_identity, pattern_alpha_bgra

        w, h, rect = 128, 96, (24, 16, 64, 64)
        doc, source = yield from self.document(w, h, pattern_alpha_bgra(w, h, rect))
        before = bytes(source.pixelData(0, 0, w, h))
        names = self.names(doc)
        docker = self.docker(s)
        docker.fill("a quiet lake", "test:identity", steps=2, strength=1.0)
        if (yield from self.click_and_wait(s, docker, "Image to Image")):
            s.check(self.ctrl.last_error is None, f"error: {self.ctrl.last_error}")
            s.info["status"] = docker.status.text()
            s.check(docker.status.text().startswith("Done"), f"status {docker.status.text()!r}")
            layer = self.new_layer(s, doc, names)
            if layer is not None:
                s.info["bounds"] = self.bounds(layer)
                s.check(s.info["bounds"] == list(rect), f"bounds {s.info['bounds']}")
                s.check(layer.name().startswith("Img2Img: a quiet lake"), layer.name())
                diff = compare_identity(
                    bytes(source.pixelData(*rect)), bytes(layer.pixelData(*rect))
                )
                s.info["differences"] = diff
                s.check(not (diff["alpha"] or diff["opaque"] or diff["partial"]), "pixels differ")
            s.check(bytes(source.pixelData(0, 0, w, h)) == before, "the source layer changed")
        self.close(doc)

    def scenario_docker_img2img_text(self, s):
        """Image to Image from the docker on a text (vector) layer, whose pixelData Krita gives
        empty: what the text looks like is sent; a new layer of its size, directly above it."""
        w, h = 128, 96
        doc, source = yield from self.document(w, h)
        text = doc.createVectorLayer("text")
        doc.rootNode().addChildNode(text, source)
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" width="128pt" height="96pt" '
            'viewBox="0 0 128 96"><text x="16" y="60" style="font-size:40px;fill:#2040c0">'
            "Hi</text></svg>"
        )
        s.info["shapes"] = [shape.type() for shape in text.addShapesFromSvg(svg)]
        yield Wait(lambda: doc.setActiveNode(text) and False, 1.0)
        doc.refreshProjection()
        doc.waitForDone()
        s.info["text_bounds"] = self.bounds(text)
        s.info["active"] = doc.activeNode().name()
        s.check(s.info["text_bounds"][2] > 0, "the text layer shows nothing")
        names = self.names(doc)
        docker = self.docker(s)
        docker.fill("a neon sign", "", steps=2, strength=0.5)
        if (yield from self.click_and_wait(s, docker, "Image to Image")):
            s.check(self.ctrl.last_error is None, f"error: {self.ctrl.last_error}")
            s.info["status"] = docker.status.text()
            s.check(docker.status.text().startswith("Done"), f"status {docker.status.text()!r}")
            names_now = self.names(doc)
            s.info["layers"] = names_now
            new = [n for n in doc.rootNode().childNodes() if n.name() not in names]
            if s.check(len(new) == 1, f"not one new layer: {names_now}"):
                s.check(
                    names_now.index(new[0].name()) == names_now.index("text") + 1,
                    f"not above the text layer: {names_now}",
                )
                s.info["bounds"] = self.bounds(new[0])
                s.check(s.info["bounds"] == s.info["text_bounds"], f"bounds {s.info['bounds']}")
        else:
            s.info["status"] = docker.status.text()
        self.close(doc)

    def scenario_docker_fill(self, s):
        """Fill Selection from the docker (test:tiny): the new layer covers the selection at
        its offset; every pixel outside it is unchanged, pixels inside changed."""
        w, h, sel = 128, 96, (40, 30, 40, 30)
        doc, source = yield from self.document(w, h)
        mask = self.select(doc, *sel)
        before_source = bytes(source.pixelData(0, 0, w, h))
        before = self.projection(doc)
        names = self.names(doc)
        docker = self.docker(s)
        docker.fill("a brick wall", "", steps=4)
        if (yield from self.click_and_wait(s, docker, "Fill Selection")):
            s.check(self.ctrl.last_error is None, f"error: {self.ctrl.last_error}")
            layer = self.new_layer(s, doc, names)
            if layer is not None:
                s.info["bounds"] = self.bounds(layer)
                s.check(s.info["bounds"] == list(sel), f"bounds {s.info['bounds']}")
                s.check(layer.name().startswith("Fill: a brick wall"), layer.name())
            after = self.projection(doc)
            outside = inside = inside_changed = 0
            for i in range(w * h):
                changed = after[i * 4 : i * 4 + 4] != before[i * 4 : i * 4 + 4]
                if mask[i] == 0:
                    outside += changed
                else:
                    inside += 1
                    inside_changed += changed
            s.info.update(outside_changed=outside, inside=inside, inside_changed=inside_changed)
            s.check(outside == 0, f"{outside} pixels outside the selection changed")
            s.check(inside_changed > inside // 2, f"only {inside_changed} of {inside} changed")
            s.check(bytes(source.pixelData(0, 0, w, h)) == before_source, "the source changed")
        self.close(doc)

    def scenario_docker_generate(self, s):
        """Generate from the docker with a selection: a new layer of the selection's box."""
        w, h, sel = 128, 96, (16, 8, 64, 48)
        doc, source = yield from self.document(w, h)
        self.select(doc, *sel)
        names = self.names(doc)
        docker = self.docker(s)
        docker.fill("a red kite", "", steps=2)
        if (yield from self.click_and_wait(s, docker, "Generate")):
            s.check(self.ctrl.last_error is None, f"error: {self.ctrl.last_error}")
            layer = self.new_layer(s, doc, names)
            if layer is not None:
                s.info["bounds"] = self.bounds(layer)
                s.check(s.info["bounds"] == list(sel), f"bounds {s.info['bounds']}")
        self.close(doc)

    def scenario_docker_cancel(self, s):
        """Cancel in the docker stops a long job (test:identity, 150 steps of 50 ms) on the
        server within a few steps; no layer is added."""
        doc, source = yield from self.document(64, 64)
        names = self.names(doc)
        docker = self.docker(s)
        docker.fill("a long job", "test:identity", steps=150, strength=1.0)
        docker.click("Image to Image")
        if not s.check(self.ctrl.busy, f"did not start: {self.ctrl.last_error}"):
            return self.close(doc)
        s.check((yield self.wait_running(docker)), "the job never ran")
        job_id = self.ctrl.runner.job_id
        s.check(docker.buttons["Cancel"].isEnabled(), "Cancel is disabled while the job runs")
        step = docker.progress.value()
        began = time.time()
        end = self.job_end(30)
        docker.click("Cancel")
        s.check((yield end), "the job did not end")
        took = time.time() - began
        state = self.ctrl.client().status(job_id).get("state")
        s.info.update(step_at_cancel=step, cancel_s=round(took, 2), server_state=state)
        s.info["status"] = docker.status.text()
        s.check(state == "cancelled", f"the server says {state!r}")
        s.check(took < (150 - step) * STEP_S / 2, f"cancelling took {took:.1f} s")
        s.check("cancel" in docker.status.text().lower(), f"status {docker.status.text()!r}")
        s.check(self.ctrl.last_error is None, f"error: {self.ctrl.last_error}")
        s.check(self.names(doc) == names, f"layers now {self.names(doc)}")
        s.check(not docker.buttons["Cancel"].isEnabled(), "Cancel still enabled")
        self.close(doc)

    def scenario_menu_fill_corner(self, s):
        """Tools > Scripts > Paintbridge > Fill Selection on a selection past the canvas's
        bottom-right corner: pixels outside the selection unchanged, inside changed."""
        w, h = 128, 96
        doc, source = yield from self.document(w, h)
        mask = self.select(doc, 100, 70, 60, 60)
        before = self.projection(doc)
        names = self.names(doc)
        self.ctrl.params.update(prompt="a stone wall", model="", steps=4, seed=11)
        end = self.job_end(120)
        self.app.action("paintbridge_fill_selection").trigger()
        if s.check(self.ctrl.busy, f"the action started no job: {self.ctrl.last_error}"):
            s.check((yield end), "the job did not end")
            s.check(self.ctrl.last_error is None, f"error: {self.ctrl.last_error}")
            self.new_layer(s, doc, names)
            after = self.projection(doc)
            outside = sum(
                after[i * 4 : i * 4 + 4] != before[i * 4 : i * 4 + 4]
                for i in range(w * h)
                if mask[i] == 0
            )
            s.info["outside_changed"] = outside
            s.check(outside == 0, f"{outside} pixels outside the selection changed")
            s.check(after != before, "nothing changed")
        self.close(doc)

    def scenario_menu_uses_docker_fields(self, s):
        """What is typed in the docker, without clicking its buttons, is what the menu actions
        (and shortcuts) use, and what Krita saves on quit: they ran with the settings of the
        last click (an empty prompt after a start). A seed above 2**31 fits (a QSpinBox cut
        3088924361, a seed the server hands out, to 308892436)."""
        from PyQt5.QtTest import QTest

        doc, source = yield from self.document(64, 64)
        names = self.names(doc)
        docker = self.docker(s)
        docker.prompt.setPlainText("typed, never clicked")
        docker.model.setCurrentText("test:identity")
        docker.steps.setValue(2)
        docker.seed.clear()
        QTest.keyClicks(docker.seed, "3088924361")
        s.info["seed_text"] = docker.seed.text()
        s.check(int(docker.seed.value()) == 3088924361, f"seed box {docker.seed.text()!r}")
        end = self.job_end(120)
        self.app.action("paintbridge_generate").trigger()
        if s.check(self.ctrl.busy, f"the action started no job: {self.ctrl.last_error}"):
            s.check((yield end), "the job did not end")
            s.check(self.ctrl.last_error is None, f"error: {self.ctrl.last_error}")
            layer = self.new_layer(s, doc, names)
            if layer is not None:
                s.info["name"] = layer.name()
                s.check("typed, never clicked" in layer.name(), layer.name())
                s.check("(seed 3088924361)" in layer.name(), layer.name())
        self.close(doc)

    def scenario_undo(self, s):
        """Edit > Undo right after a result: does one undo step remove the new layer?"""
        doc, source = yield from self.document(64, 64)
        names = self.names(doc)
        docker = self.docker(s)
        docker.fill("undo me", "test:identity", steps=1, strength=1.0)
        started = yield from self.click_and_wait(s, docker, "Image to Image")
        if started and self.new_layer(s, doc, names):
            after = self.names(doc)
            self.app.action("edit_undo").trigger()
            yield Wait(None, 0.5)
            s.info["after_one_undo"] = self.names(doc)
            s.check(self.names(doc) == names, f"one undo left {self.names(doc)}")
            self.app.action("edit_redo").trigger()
            yield Wait(None, 0.5)
            s.info["after_redo"] = self.names(doc)
            s.check(self.names(doc) == after, f"redo gave {self.names(doc)}")
        self.close(doc)

    def scenario_undo_other_profile(self, s):
        """Image to Image in an image whose profile is not sRGB (its pixels are converted for the
        model and back, in scratch documents): the image stays the active one, no scratch
        document is left open, and one Edit > Undo still removes the new layer."""
        profile = "ClayRGB-elle-V2-g22.icc"
        documents = len(self.app.documents())
        doc, source = yield from self.document(64, 64, profile=profile)
        s.check(doc.colorProfile() == profile, f"the image is {doc.colorProfile()}")
        names = self.names(doc)
        docker = self.docker(s)
        docker.fill("undo me", "test:identity", steps=1, strength=1.0)
        started = yield from self.click_and_wait(s, docker, "Image to Image")
        if started and self.new_layer(s, doc, names):
            s.info["documents"] = [d.name() for d in self.app.documents()]
            s.check(len(self.app.documents()) == documents + 1, "a scratch document is open")
            s.check(self.app.activeDocument() == doc, "the image is no longer the active one")
            self.app.action("edit_undo").trigger()
            yield Wait(None, 0.5)
            s.info["after_one_undo"] = self.names(doc)
            s.check(self.names(doc) == names, f"one undo left {self.names(doc)}")
        self.close(doc)

    def scenario_server_killed(self, s):
        """The server dies mid-job (SIGKILL): the docker and a message box say what happened
        and what to do; no layer is added and the source layer is untouched."""
        killable = self.config["killable"]
        w = h = 64
        doc, source = yield from self.document(w, h)
        before = bytes(source.pixelData(0, 0, w, h))
        names = self.names(doc)
        docker = self.docker(s)
        docker.use_server(killable["url"], killable["token"])  # typed in, as a user would
        try:
            docker.fill("a doomed job", "test:identity", steps=150, strength=1.0)
            docker.click("Image to Image")
            if not s.check(self.ctrl.busy, f"did not start: {self.ctrl.last_error}"):
                return
            s.check((yield self.wait_running(docker)), "the job never ran")
            end = self.job_end(30)
            os.kill(killable["pid"], signal.SIGKILL)
            s.check((yield end), "the job did not end")
            s.check((yield Wait(lambda: self.error_box() is not None, 10)), "no message box")
            box = self.error_box()
            status = docker.status.text()
            s.info.update(status=status, box=box.text() if box else None)
            s.check(status.startswith("Error: "), f"the docker shows {status!r}")
            for text in (status, box.text() if box else ""):
                s.check("stopped before the job finished" in text, f"{text!r} says not why")
                s.check("paintbridge serve" in text, f"{text!r} does not say what to do")
            s.check(self.names(doc) == names, f"layers now {self.names(doc)}")
            s.check(bytes(source.pixelData(0, 0, w, h)) == before, "the source layer changed")
            s.check(docker.buttons["Image to Image"].isEnabled(), "the buttons stay disabled")
            if box is not None:
                box.close()
        finally:
            docker.use_server("", "")
            self.ctrl.params.update(server_url="", server_token="")
            self.close(doc)

    def scenario_two_windows(self, s):
        """Window > New Window: a docker in each, one set of settings. What is typed in one
        shows in the other, so an edit there no longer puts its old values back (and into
        kritarc at quit)."""
        from PyQt5.QtWidgets import QDockWidget

        first = self.docker(s)
        window = self.app.openWindow()
        window.qwindow().show()

        def docks():
            found = window.qwindow().findChildren(QDockWidget)
            return [d for d in found if d.objectName() == "paintbridge_docker"]

        if not s.check((yield Wait(docks, 30)), "the new window has no Paintbridge docker"):
            return
        second = Docker(docks()[0])
        try:
            first.fill("from window 1", "test:identity", steps=9, strength=0.4, seed=111)
            first.server_url.setText("http://127.0.0.1:9")
            shown = [second.prompt.toPlainText(), second.model.currentText(), second.steps.value()]
            s.info["second_shows"] = shown
            s.check(shown == ["from window 1", "test:identity", 9], f"window 2 shows {shown}")
            s.check(second.server_url.text() == "http://127.0.0.1:9", second.server_url.text())
            second.prompt.setPlainText("typed in window 2")
            params = self.ctrl.params
            kept = [params.prompt, params.model, params.steps, params.strength, params.seed]
            s.info["params"] = kept
            s.check(kept == ["typed in window 2", "test:identity", 9, 0.4, 111], f"now {kept}")
            s.check(first.prompt.toPlainText() == "typed in window 2", "window 1 kept its prompt")
        finally:
            first.use_server("", "")
            first.fill("", "", steps=0)
            window.close()

    def scenario_docker_server_url(self, s):
        """A server URL typed without http:// is a message that says what to type, the
        settings keep what was typed, and nothing is added."""
        w = h = 32
        doc, source = yield from self.document(w, h)
        names = self.names(doc)
        docker = self.docker(s)
        docker.use_server("localhost:7860", "secret")
        try:
            docker.fill("a boat", "", steps=1)
            docker.click("Generate")
            status = docker.status.text()
            s.info["status"] = status
            s.check(not self.ctrl.busy, "a job started")
            s.check("must start with http:// or https://" in status, f"status {status!r}")
            saved = self.app.readSetting("paintbridge", "server_url", "")
            s.check(saved == "localhost:7860", f"kritarc has server_url {saved!r}")
            s.check(self.ctrl.params.server_token == "secret", "the token was not read")
            s.check(docker.server_token.echoMode() == QLineEdit.Password, "the token shows")
            s.check(self.names(doc) == names, f"layers now {self.names(doc)}")
            box = self.error_box()
            if box is not None:
                box.close()
        finally:
            docker.use_server("", "")
            self.ctrl.params.update(server_url="", server_token="")
            self.extension.save_settings(self.ctrl.params)
            self.close(doc)

    def run(self):
        """A generator for Pump: every scenario in turn, each verdict written as it ends."""
        for name in self.config["scenarios"]:
            s = Scenario()
            try:
                steps = getattr(self, "scenario_" + name)(s)
                if steps is not None:  # a scenario that never waits is a plain method
                    yield from steps
            except Exception:
                s.failures.append(traceback.format_exc())
            _state["scenarios"][name] = {
                "ok": not s.failures,
                "failures": s.failures,
                "info": s.info,
            }
            _write()


def _quit(done):
    _state["done"] = done
    try:
        _write()
    finally:
        Krita.instance().action("file_quit").trigger()


def _start():
    try:
        driver = Driver(_config())
    except Exception:
        _state["error"] = traceback.format_exc()
        return _quit(True)
    _state["pump"] = Pump(driver.run(), lambda: _quit(True))  # kept alive until the end
    _state["pump"].start()


def _safety():
    if not _state["done"]:
        _state["error"] = f"timed out after {SAFETY_MS // 1000} s"
        _quit(False)


def _on_window():
    QTimer.singleShot(1500, _start)


Krita.instance().notifier().windowCreated.connect(_on_window)
QTimer.singleShot(SAFETY_MS, _safety)
