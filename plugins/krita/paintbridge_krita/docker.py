"""The Paintbridge docker: the settings, the three buttons, progress and Cancel."""

from krita import DockWidget
from PyQt5.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .extension import controller, save_settings
from .hostkit.client import PaintbridgeError
from .params import MAX_SEED

DOCKER_ID = "paintbridge_docker"


class PaintbridgeDocker(DockWidget):
    def __init__(self):
        DockWidget.__init__(self)
        self.setWindowTitle("Paintbridge")
        self.ctrl = controller()
        params = self.ctrl.params
        body = QWidget(self)
        layout = QVBoxLayout(body)

        self.prompt = QPlainTextEdit(params.prompt)
        self.prompt.setPlaceholderText("Prompt: what to paint")
        self.prompt.setMaximumHeight(80)
        self.negative = QLineEdit(params.negative_prompt)
        self.negative.setPlaceholderText("Negative prompt")
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItem(params.model)
        self.model.setCurrentText(params.model)
        self.model.lineEdit().setPlaceholderText("server default")
        refresh = QPushButton("\u21bb")
        refresh.setToolTip("Ask the server for its models")
        refresh.clicked.connect(self.refresh_models)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(refresh)
        self.strength = QDoubleSpinBox()
        self.strength.setObjectName("paintbridge_strength")
        self.strength.setRange(0.01, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(params.strength)
        self.steps = QSpinBox()
        self.steps.setRange(0, 150)
        self.steps.setSpecialValueText("model default")
        self.steps.setValue(params.steps)
        # a QSpinBox stops at 2**31 - 1; the server's seeds go up to 2**32 - 1
        self.seed = QDoubleSpinBox()
        self.seed.setObjectName("paintbridge_seed")
        self.seed.setDecimals(0)
        self.seed.setRange(-1, MAX_SEED)
        self.seed.setSpecialValueText("random")
        self.seed.setValue(params.seed)
        self.server_url = QLineEdit(params.server_url)
        self.server_url.setObjectName("paintbridge_server_url")
        self.server_url.setPlaceholderText("this computer's (leave empty)")
        self.server_url.setToolTip(
            "A paintbridge server on another machine, such as https://gpu.example.org; empty: "
            "the local server that `paintbridge serve` announces"
        )
        self.server_token = QLineEdit(params.server_token)
        self.server_token.setObjectName("paintbridge_server_token")
        self.server_token.setEchoMode(QLineEdit.Password)
        self.server_token.setPlaceholderText("only for a server URL")
        self.server_token.setToolTip("The token the remote server was started with")

        form = QFormLayout()
        form.addRow(self.prompt)
        form.addRow(self.negative)
        form.addRow("Model", model_row)
        form.addRow("Strength", self.strength)
        form.addRow("Steps", self.steps)
        form.addRow("Seed", self.seed)
        form.addRow("Server", self.server_url)
        form.addRow("Token", self.server_token)
        layout.addLayout(form)

        buttons = QHBoxLayout()
        self.buttons = []
        for text, task, tip in (
            ("Image to Image", "img2img", "The active layer, or the selection's box in it"),
            ("Fill Selection", "inpaint", "Repaint the selection (partly selected = partly)"),
            ("Generate", "txt2img", "A new image at the canvas size or the selection's box"),
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _checked=False, task=task: self.start(task))
            buttons.addWidget(button)
            self.buttons.append(button)
        layout.addLayout(buttons)

        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.cancel.clicked.connect(self.ctrl.cancel)
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel)
        layout.addLayout(progress_row)
        server_row = QHBoxLayout()
        server_row.addStretch(1)
        self.start_server = QPushButton("Start Server")
        self.start_server.setToolTip(
            "Start the local paintbridge server (as `paintbridge plugins install` set it up)"
        )
        self.start_server.clicked.connect(self.ctrl.start_server)
        server_row.addWidget(self.start_server)
        layout.addLayout(server_row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.setWidget(body)

        # the menu actions and shortcuts run with ctrl.params, and Krita saves them on quit:
        # they follow every edit, not only the docker's buttons
        for changed in (
            self.prompt.textChanged,
            self.negative.textChanged,
            self.model.currentTextChanged,
            self.strength.valueChanged,
            self.steps.valueChanged,
            self.seed.valueChanged,
            self.server_url.textChanged,
            self.server_token.textChanged,
        ):
            changed.connect(self.sync_settings)
        self.ctrl.params_changed.connect(self.show_settings)
        self.ctrl.progress.connect(self.on_progress)
        self.ctrl.busy_changed.connect(self.on_busy)
        self.ctrl.message.connect(self.on_message)
        self.ctrl.starting_changed.connect(self.on_starting)
        self.on_busy(self.ctrl.busy)
        self.on_starting(self.ctrl.starting)

    def canvasChanged(self, canvas):
        pass

    def sync_settings(self, *_changed):
        """The fields into the controller's settings, which the dockers of Krita's other
        windows then show (show_settings): else an edit there would put their old values back."""
        self.ctrl.params.update(
            prompt=self.prompt.toPlainText().strip(),
            negative_prompt=self.negative.text().strip(),
            model=self.model.currentText().strip(),
            strength=round(self.strength.value(), 3),
            steps=self.steps.value(),
            seed=int(self.seed.value()),
            server_url=self.server_url.text().strip(),
            server_token=self.server_token.text().strip(),
        )
        self.ctrl.params_changed.emit(self)

    def show_settings(self, origin):
        """The controller's settings into the fields, after another window's docker changed
        them (signals blocked meanwhile: this is no edit of its own). A field that already
        holds its value, blanks aside, is left alone, its cursor too."""
        if origin is self:
            return
        params = self.ctrl.params
        lines = (
            (self.negative, params.negative_prompt),
            (self.server_url, params.server_url),
            (self.server_token, params.server_token),
        )
        widgets = [self.prompt, self.model, self.strength, self.steps, self.seed]
        widgets += [line for line, _ in lines]
        blocked = [widget.blockSignals(True) for widget in widgets]
        try:
            if self.prompt.toPlainText().strip() != params.prompt:
                self.prompt.setPlainText(params.prompt)
            for line, text in lines:
                if line.text().strip() != text:
                    line.setText(text)
            self.model.setCurrentText(params.model)
            self.strength.setValue(params.strength)
            self.steps.setValue(params.steps)
            self.seed.setValue(params.seed)
        finally:
            for widget, was in zip(widgets, blocked):
                widget.blockSignals(was)

    def read_settings(self):
        self.sync_settings()
        save_settings(self.ctrl.params)

    def start(self, task):
        self.read_settings()
        self.ctrl.run(task)

    def refresh_models(self):
        self.read_settings()  # the server typed in last
        try:
            answer = self.ctrl.client().models()
            names = [item.get("name", "") for item in answer.get("models") or []]
        except PaintbridgeError as exc:
            self.on_message("error", str(exc))
            return
        except Exception as exc:  # an answer not shaped as expected: a message, no traceback
            self.on_message(
                "error", "Could not list the models (%s: %s)." % (type(exc).__name__, exc)
            )
            return
        current = self.model.currentText()
        self.model.clear()
        self.model.addItem("")
        for name in names:
            self.model.addItem(name)
        self.model.setCurrentText(current)

    def on_progress(self, step, steps, text):
        self.progress.setRange(0, max(steps, 1) if steps else 0)  # 0..0 = busy indicator
        self.progress.setValue(step)
        self.status.setText(text)

    def on_busy(self, busy):
        for button in self.buttons:
            button.setEnabled(not busy)
        self.cancel.setEnabled(busy)
        if not busy:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def on_starting(self, starting):
        self.start_server.setEnabled(not starting)
        self.start_server.setText("Starting\u2026" if starting else "Start Server")

    def on_message(self, level, text):
        prefix = {"error": "Error: ", "warning": "Warning: "}.get(level, "")
        self.status.setText(prefix + text)
