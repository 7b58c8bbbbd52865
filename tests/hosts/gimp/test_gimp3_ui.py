"""The GIMP 3 plug-in with a display (Xvfb): its widgets with real GTK in GIMP 3's Python, and
GIMP 3's own GUI driven by driver_gimp3_gui.py with the keyboard pressed by xdotool, for what
batch mode cannot show (one undo step; the dialog's values remembered)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
from tests.hosts.conftest import require_host
from tests.hosts.gimp.gimphost import HERE, Workspace, find_gimp3
from tests.hosts.xvfb import XVFB, xvfb

IMAGE_WINDOW = " – GIMP$"  # GIMP's image windows: "[Untitled]-1.0 (...) 64x64 – GIMP"
FILL_DIALOG = "^Paintbridge: Fill Selection$"

pytestmark = [pytest.mark.host]


@pytest.fixture
def xvfb_display():
    require_host(XVFB is not None, "Xvfb not installed (apt: xvfb)")
    with xvfb() as display:
        yield display


def test_progress_window_cancel_and_no_selection_question(xvfb_display):
    gimp, why = find_gimp3()
    require_host(gimp is not None, why)
    work = Workspace(gimp)
    try:
        bundle = work.install_bundle()
        shutil.copy(HERE / "ui_smoke.py", work.path / "ui_smoke.py")
        result = work.path / "ui.json"
        command = ["env", "-i", f"DISPLAY={xvfb_display}", "PATH=/usr/bin:/bin", "HOME=/tmp"]
        command += ["python3", work.gimp.inside(work.path / "ui_smoke.py")]
        command += [work.gimp.inside(bundle), work.gimp.inside(result)]
        if gimp.chroot is not None:
            command = ["chroot", str(gimp.chroot), *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0 and result.is_file(), done.stdout + done.stderr
        facts = json.loads(result.read_text())
    finally:
        work.remove()
    assert facts["bar"] == [0.5, "step 1 of 2"]
    assert facts["cancel_before_click"] is False
    assert facts["cancel_after_click"] is True
    assert facts["window_closed"]
    assert facts["gimp_calls"][0] == ["init", "Paintbridge: Fill Selection"]
    assert ["update", 0.5] in facts["gimp_calls"] and facts["gimp_calls"][-1] == ["end"]
    assert facts["ask_yes"] is True and facts["ask_no"] is False


def xdotool(display: str, *args: str, timeout: float = 60) -> str:
    """xdotool's output ("" when it failed or ran past `timeout`)."""
    try:
        done = subprocess.run(
            ["xdotool", *args],
            env=dict(os.environ, DISPLAY=display),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout.strip()


def press(display: str, window_name: str, key: str) -> str:
    """Focuses the newest visible window whose name matches (waiting for it) and presses key;
    the window's id, or "" if none came."""
    found = xdotool(display, "search", "--sync", "--onlyvisible", "--name", window_name)
    if not found:
        return ""
    window = found.split()[-1]
    xdotool(display, "windowfocus", "--sync", window)
    time.sleep(0.3)
    xdotool(display, "key", "--clearmodifiers", key)
    return window


ACTIONS = {"undo": (IMAGE_WINDOW, "ctrl+z"), "accept": (FILL_DIALOG, "Return")}


@pytest.fixture(scope="module")
def gimp_gui_run(live_server):
    """driver_gimp3_gui.py in GIMP 3's GUI on Xvfb, its key requests answered with xdotool."""
    gimp, why = find_gimp3()
    require_host(gimp is not None, why)
    require_host(shutil.which("xdotool") is not None, "xdotool not installed (apt: xdotool)")
    require_host(XVFB is not None, "Xvfb not installed (apt: xvfb)")
    with xvfb() as display:
        yield from run_gui(gimp, display, live_server)


def run_gui(gimp, display: str, live_server):
    work = Workspace(gimp)
    request = work.path / "request.json"
    answered: list = []
    try:
        work.install_bundle()
        config = {"url": live_server.url, "token": live_server.token}
        config["request"] = gimp.inside(request)
        process = work.start_gui_batch(HERE / "driver_gimp3_gui.py", config, display)
        deadline = time.monotonic() + 400
        try:
            while process.poll() is None and time.monotonic() < deadline:
                if request.is_file():
                    asked = json.loads(request.read_text())
                    if asked["n"] > len(answered):
                        window_name, key = ACTIONS[asked["action"]]
                        answered.append([asked["action"], press(display, window_name, key)])
                        if not answered[-1][1]:
                            break  # no window to press keys in: the driver would wait forever
                time.sleep(0.2)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        log = (work.path / "gimp.log").read_text(errors="replace")
        result = work.path / "result.json"
        assert result.is_file(), f"GIMP wrote no result (exit {process.returncode}):\n{log}"
        facts = json.loads(result.read_text())
        assert facts.get("finished"), f"the driver stopped early ({answered}):\n{log}"
        facts["gimp_log"] = log
        yield facts, answered
    finally:
        work.remove()


@pytest.mark.slow
def test_fill_selection_is_one_undo_step_in_the_gui(gimp_gui_run):
    """After Fill Selection, ONE Ctrl+Z in GIMP's image window brings the image back exactly:
    one layer, the original pixels, and the selection (the step before) still there."""
    facts, answered = gimp_gui_run
    undo = facts["one_undo_step"]
    assert undo["ok"], undo.get("error")
    assert undo["status"] == "success", undo["error"]
    assert len(undo["added"]) == 1 and undo["layers_after_fill"] == 2
    assert undo["changed_by_fill"]  # test:tiny paints something else: the undo has work to do
    assert answered[0][0] == "undo" and answered[0][1], answered  # the key was pressed
    assert undo["undone"] and undo["layers_after_undo"] == 1
    assert undo["pixels_restored"]
    assert undo["selection_kept"]


@pytest.mark.slow
def test_dialog_values_are_remembered(gimp_gui_run):
    """Values accepted in the dialog (INTERACTIVE) come back WITH-LAST-VALS with nothing set:
    from the image's own record on the same image, from the saved last values on another, even
    after a script ran the procedure (NONINTERACTIVE runs are never remembered: libgimp saves
    last values only after a successful INTERACTIVE run, see _gimp_procedure_config_end_run)."""
    facts, answered = gimp_gui_run
    runs = facts["remembered"]
    assert runs["ok"], runs.get("error")
    assert answered[1][0] == "accept" and answered[1][1], answered  # the dialog was accepted
    name = re.escape("Paintbridge fill: a remembered tower (seed 4321)")
    for run in ("interactive", "same_image", "other_image"):
        status, error, added = runs[run]
        assert status == "success", (run, error)
        assert len(added) == 1 and re.fullmatch(name + r"( #\d+)?", added[0]), (run, added)
    assert runs["script"][0] == "success" and "a script" in runs["script"][2][0]
    # the token (a remote server's) is in none of what GIMP saves: the image's parasites go
    # into the .xcf files it writes, the settings files are readable by others
    assert runs["parasites"], runs  # GIMP did save the run's arguments with the image
    assert runs["token_in_image"] == [] and runs["token_in_settings_files"] == [], runs


@pytest.mark.slow
def test_dialog_values_are_kept_when_the_run_fails(gimp_gui_run):
    """Accepted in the dialog, then failed: no layer, the message in GIMP's messages, and the
    values recorded for the next run all the same (libgimp records them only after a SUCCESS,
    so the plug-in shows the message itself and ends the interactive run as one)."""
    facts, answered = gimp_gui_run
    failed = facts["remembered_after_failure"]
    assert failed["ok"], failed.get("error")
    assert answered[2][0] == "accept" and answered[2][1], answered
    assert failed["added"] == [] and failed["parasites_before"] == []
    assert "Paintbridge: Select a layer first" in facts["gimp_log"]
    assert any("a remembered tower" in text for text in failed["image_record"]), failed
