"""Running Krita from pytest: the bundle layout, kritarunner (offscreen) and the GUI under Xvfb."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
PLUGIN = REPO / "plugins" / "krita"
HOSTKIT = REPO / "core" / "paintbridge" / "hostkit"

KRITARUNNER = shutil.which("kritarunner")
KRITA = shutil.which("krita")


def has_pyqt5() -> bool:
    """Krita's Python is the system python3; the plug-in needs Debian's PyQt5 there."""
    python3 = shutil.which("python3", path="/usr/bin")
    if not python3:
        return False
    return (
        subprocess.run([python3, "-c", "import PyQt5.QtCore"], capture_output=True).returncode == 0
    )


def build_pykrita(dest: Path) -> Path:
    """The bundle as Krita loads it: dest/paintbridge_krita.desktop, dest/paintbridge_krita/
    with hostkit copied inside as paintbridge_krita/hostkit. Returns dest."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copy2(PLUGIN / "paintbridge_krita.desktop", dest)
    package = dest / "paintbridge_krita"
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(PLUGIN / "paintbridge_krita", package, ignore=ignore)
    shutil.copytree(HOSTKIT, package / "hostkit", ignore=ignore)
    return dest


def krita_env(home: Path, **extra: str) -> dict[str, str]:
    """A scratch HOME (profile, resource database) and no venv leaking into Krita's Python."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_RUNTIME_DIR=str(home / "runtime"),
    )
    (home / "runtime").mkdir(parents=True, exist_ok=True, mode=0o700)
    env.update(extra)
    return env


def run_kritarunner(
    module_dir: Path, module: str, args: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    env = dict(env, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(module_dir))
    return subprocess.run(
        [KRITARUNNER, "-s", module, "--", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
