"""The real menu action in the Krita GUI under Xvfb, against a real server.

A test-only plug-in (gui_driver/) triggers Tools > Scripts > Paintbridge > Fill Selection on a
selection at the canvas corner and writes its verdict to a result file.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from tests.hosts.conftest import require_host
from tests.hosts.krita.kritahost import (
    HERE,
    KRITA,
    PLUGIN,
    XVFB_RUN,
    build_pykrita,
    has_pyqt5,
    krita_env,
    read_json,
)


def test_fill_selection_menu_action(live_server, tmp_path_factory: pytest.TempPathFactory) -> None:
    require_host(bool(KRITA), "krita not found (apt-get install krita)")
    require_host(bool(XVFB_RUN), "xvfb-run not found (apt-get install xvfb xauth)")
    require_host(has_pyqt5(), "PyQt5 missing in the system python3 (apt-get install python3-pyqt5)")
    root = tmp_path_factory.mktemp("krita-gui")
    home = root / "home"
    share = home / ".local" / "share" / "krita"
    pykrita = build_pykrita(share / "pykrita")
    shutil.copy2(HERE / "gui_driver" / "paintbridge_test_driver.desktop", pykrita)
    shutil.copytree(
        HERE / "gui_driver" / "paintbridge_test_driver",
        pykrita / "paintbridge_test_driver",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (share / "actions").mkdir(parents=True, exist_ok=True)
    shutil.copy2(PLUGIN / "paintbridge_krita.action", share / "actions")
    (home / ".config").mkdir(parents=True, exist_ok=True)
    (home / ".config" / "kritarc").write_text(
        "[python]\nenable_paintbridge_krita=true\nenable_paintbridge_test_driver=true\n"
    )
    out = root / "result.json"
    config = root / "config.json"
    config.write_text(json.dumps({"out": str(out), "prompt": "a stone wall"}))
    env = krita_env(
        home,
        PAINTBRIDGE_CONFIG_DIR=str(live_server.config_dir),
        PAINTBRIDGE_KRITA_TEST_CONFIG=str(config),
    )
    env.pop("QT_QPA_PLATFORM", None)  # the GUI needs the X server Xvfb gives it
    try:
        proc = subprocess.run(
            [XVFB_RUN, "-a", "-s", "-screen 0 1280x1024x24", KRITA, "--nosplash"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        log = (proc.stdout + proc.stderr)[-6000:]
    except subprocess.TimeoutExpired as exc:
        log = f"krita did not exit in {exc.timeout} s"
    result = read_json(out)
    assert result is not None, f"the driver wrote no result; krita said:\n{log}"
    assert result.get("done"), f"the driver did not finish: {result}\n{log}"
    assert not result["failures"], json.dumps(result, indent=1)
