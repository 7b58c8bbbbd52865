"""The GIMP 3 plug-in's interactive widgets with real GTK on Xvfb, in GIMP 3's Python.

Not a run of the dialog inside GIMP (that needs GIMP's GUI and a user); this builds the
progress window and the no-selection question and clicks them, so their GTK code is run."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from tests.hosts.conftest import require_host
from tests.hosts.gimp.gimphost import HERE, Workspace, find_gimp3

pytestmark = [pytest.mark.host]


@pytest.fixture
def xvfb_display():
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb not installed (apt-get install xvfb)")
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        number = xvfb.stdout.readline().decode().strip()
        assert number, "Xvfb printed no display number"
        yield f":{number}"  # an abstract socket: reachable from inside the chroot too
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
        xvfb.stdout.close()


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
