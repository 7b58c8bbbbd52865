"""The Krita extension: actions under Tools > Scripts > Paintbridge, error boxes, and the one
controller shared by the actions and every window's docker."""

from functools import partial

from krita import Extension, Krita
from PyQt5.QtWidgets import QMenu, QMessageBox

from .controller import Controller

ACTIONS = (
    ("paintbridge_img2img", "Paintbridge: Image to Image", "img2img"),
    ("paintbridge_fill_selection", "Paintbridge: Fill Selection", "inpaint"),
    ("paintbridge_generate", "Paintbridge: Generate", "txt2img"),
)
CANCEL_ACTION = ("paintbridge_cancel", "Paintbridge: Cancel")
START_SERVER_ACTION = ("paintbridge_start_server", "Paintbridge: Start Server")
# Krita files an action under the menu whose objectName matches each step of its menu location,
# stopping at the last step it finds: the submenu is an action of our own (objectName
# SUBMENU[0]) holding a QMenu, created before the actions that go into it.
PARENT_MENU = "tools/scripts"
SUBMENU = ("paintbridge_menu", "Paintbridge")
MENU = PARENT_MENU + "/" + SUBMENU[0]
SETTINGS_GROUP = "paintbridge"
SAVED = ("negative_prompt", "model", "strength", "steps", "seed", "server_url", "server_token")

_controller = None


def controller():
    """The plug-in's Controller (created on first use, on the GUI thread)."""
    global _controller
    if _controller is None:
        _controller = Controller()
        load_settings(_controller.params)
    return _controller


def load_settings(params):
    app = Krita.instance()
    for key in SAVED:
        raw = app.readSetting(SETTINGS_GROUP, key, "")
        if raw == "":
            continue
        default = getattr(params, key)
        try:
            value = type(default)(raw)
        except (TypeError, ValueError):
            continue
        setattr(params, key, value)


def save_settings(params):
    app = Krita.instance()
    for key in SAVED:
        app.writeSetting(SETTINGS_GROUP, key, str(getattr(params, key)))


class PaintbridgeExtension(Extension):
    def __init__(self, parent):
        Extension.__init__(self, parent)
        self._box = None

    def setup(self):
        ctrl = controller()
        ctrl.message.connect(self._on_message)
        notifier = Krita.instance().notifier()
        notifier.applicationClosing.connect(self._on_closing)

    def createActions(self, window):
        submenu = window.createAction(SUBMENU[0], SUBMENU[1], PARENT_MENU)
        submenu.setMenu(QMenu(SUBMENU[1], window.qwindow()))
        for name, text, task in ACTIONS:
            action = window.createAction(name, text, MENU)
            action.triggered.connect(partial(self.trigger, task))
        action = window.createAction(CANCEL_ACTION[0], CANCEL_ACTION[1], MENU)
        action.triggered.connect(lambda: controller().cancel())
        action = window.createAction(START_SERVER_ACTION[0], START_SERVER_ACTION[1], MENU)
        action.triggered.connect(lambda: controller().start_server())

    def trigger(self, task, *_checked):
        controller().run(task)

    def _on_closing(self):
        ctrl = controller()
        save_settings(ctrl.params)
        ctrl.cancel(wait=3)  # do not leave the server working for a closed Krita

    def _on_message(self, level, text):
        if level not in ("error", "warning"):
            return
        window = Krita.instance().activeWindow()
        parent = window.qwindow() if window is not None else None
        # not exec_(): a nested event loop would run the poll timer inside the box
        self._box = QMessageBox(QMessageBox.Warning, "Paintbridge", text, QMessageBox.Ok, parent)
        self._box.setObjectName("paintbridge_error")
        self._box.open()
