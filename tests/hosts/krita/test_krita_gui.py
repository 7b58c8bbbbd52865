"""The plug-in in the Krita GUI under Xvfb, installed by `paintbridge plugins install`, against
real servers.

A test-only plug-in (gui_driver/) runs the scenarios in one Krita session: the menu entries, the
docker's buttons, Cancel, the menu action, undo, and a private server killed mid-job; each test
below checks one scenario's verdict from its result file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.hosts.conftest import require_host, start_server, stop_server
from tests.hosts.krita.kritahost import HERE, KRITA, has_pyqt5, krita_env, read_json
from tests.hosts.xvfb import XVFB, xvfb

SCENARIOS = (
    "menu",
    "docker_img2img",
    "docker_img2img_text",
    "docker_fill",
    "docker_generate",
    "docker_cancel",
    "menu_fill_corner",
    "menu_uses_docker_fields",
    "undo",
    "undo_other_profile",
    "server_killed",
    "docker_server_url",
    "two_windows",
)
DRIVER = "paintbridge_test_driver"


def install_with_cli(home: Path, root: Path) -> tuple[Path, str]:
    """`paintbridge plugins install --krita --dest <pykrita>` as a user would run it (HOME and
    the paintbridge config folder are scratch ones), then the plug-ins enabled in kritarc the
    way Krita's Python Plugin Manager writes it. Returns (pykrita, the CLI's output)."""
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        PAINTBRIDGE_CONFIG_DIR=str(root / "cli-config"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "paintbridge", "plugins", "install", "--krita", "--dest", pykrita],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.copy2(HERE / "gui_driver" / f"{DRIVER}.desktop", pykrita)
    shutil.copytree(
        HERE / "gui_driver" / DRIVER,
        pykrita / DRIVER,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (home / ".config" / "kritarc").write_text(
        f"[python]\nenable_paintbridge_krita=true\nenable_{DRIVER}=true\n"
    )
    return pykrita, proc.stdout


@pytest.fixture(scope="module")
def gui_run(live_server, tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_host(bool(KRITA), "krita not found (apt-get install krita)")
    require_host(XVFB is not None, "Xvfb not installed (apt-get install xvfb)")
    require_host(has_pyqt5(), "PyQt5 missing in the system python3 (apt-get install python3-pyqt5)")
    root = tmp_path_factory.mktemp("krita-gui")
    home = root / "home"
    (home / ".config").mkdir(parents=True)
    pykrita, cli_output = install_with_cli(home, root)
    (root / "killable").mkdir()
    killable = start_server(root / "killable")  # the server_killed scenario SIGKILLs it
    try:
        out = root / "result.json"
        config = root / "config.json"
        config.write_text(
            json.dumps(
                {
                    "out": str(out),
                    "helpers": str(HERE),
                    "scenarios": list(SCENARIOS),
                    "killable": {
                        "url": killable.url,
                        "token": killable.token,
                        "pid": killable.process.pid,
                    },
                }
            )
        )
        env = krita_env(
            home,
            PAINTBRIDGE_CONFIG_DIR=str(live_server.config_dir),
            PAINTBRIDGE_KRITA_TEST_CONFIG=str(config),
        )
        env.pop("QT_QPA_PLATFORM", None)  # the GUI needs the X server Xvfb gives it
        with xvfb() as display:
            try:
                proc = subprocess.run(
                    [KRITA, "--nosplash"],
                    env=dict(env, DISPLAY=display),
                    capture_output=True,
                    text=True,
                    timeout=480,
                )
                log = (proc.stdout + proc.stderr)[-6000:]
            except subprocess.TimeoutExpired as exc:
                log = f"krita did not exit in {exc.timeout} s"
    finally:
        stop_server(killable)
    result = read_json(out)
    assert result is not None, f"the driver wrote no result; krita said:\n{log}"
    assert "error" not in result, result["error"] + "\n" + log
    assert result.get("done"), f"the driver did not finish: {json.dumps(result)}\n{log}"
    return {"scenarios": result["scenarios"], "pykrita": pykrita, "cli_output": cli_output}


def test_installed_by_the_cli(gui_run: dict) -> None:
    """The CLI put the plug-in, its hostkit and the .action file where Krita looks."""
    pykrita = gui_run["pykrita"]
    assert (pykrita / "paintbridge_krita.desktop").is_file()
    assert (pykrita / "paintbridge_krita" / "hostkit" / "client.py").is_file()
    assert (pykrita.parent / "actions" / "paintbridge_krita.action").is_file()
    assert str(pykrita) in gui_run["cli_output"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(gui_run: dict, name: str) -> None:
    verdict = gui_run["scenarios"][name]
    assert verdict["ok"], (
        f"{name}: " + "; ".join(verdict["failures"]) + f"\ninfo: {json.dumps(verdict['info'])}"
    )
