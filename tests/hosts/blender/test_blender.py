"""The Blender add-on inside real Blender (the `bpy` module that tests/hosts/blender/install.sh
puts in <repo>/.hosts/blender-venv), against a real `paintbridge serve` with the tiny model.

Each test runs one check of inhost.py in a fresh Blender process and reads the result file it
writes. The add-on is laid out as a bundle: plugins/blender/ with hostkit inside it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.hosts.conftest import REPO, LiveServer, require_host

pytestmark = [pytest.mark.host]

# PAINTBRIDGE_BLENDER_PYTHON: another bpy venv's python (e.g. Blender 5.0, see install.sh)
BLENDER_PYTHON = Path(
    os.environ.get("PAINTBRIDGE_BLENDER_PYTHON")
    or REPO / ".hosts" / "blender-venv" / "bin" / "python"
)
INHOST = Path(__file__).with_name("inhost.py")
MODULE = "paintbridge_blender"  # the bundle's folder (core/paintbridge/bundles.py)


@pytest.fixture(scope="session")
def blender() -> Path:
    require_host(
        BLENDER_PYTHON.is_file(),
        f"Blender (bpy) is not installed: run tests/hosts/blender/install.sh ({BLENDER_PYTHON})",
    )
    return BLENDER_PYTHON


@pytest.fixture(scope="session")
def addon_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the add-on package as the bundle lays it out: <MODULE>/ with hostkit/."""
    root = tmp_path_factory.mktemp("blender-addons")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "plugins" / "blender", root / MODULE, ignore=ignore)
    hostkit = REPO / "core" / "paintbridge" / "hostkit"
    shutil.copytree(hostkit, root / MODULE / "hostkit", ignore=ignore)
    return root


def dead_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="session")
def bundle_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip a user installs, from `paintbridge plugins build`."""
    out = tmp_path_factory.mktemp("bundles")
    subprocess.run(
        [sys.executable, "-m", "paintbridge", "plugins", "build", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out / f"{MODULE}.zip"


def run_check(
    name: str,
    blender: Path,
    addon_dir: Path,
    config_dir: Path,
    tmp_path: Path,
    install: tuple[str, Path] | None = None,
    timeout=300,
) -> dict:
    result_path = tmp_path / f"{name}.json"
    env = dict(
        os.environ,
        PAINTBRIDGE_CONFIG_DIR=str(config_dir),
        PB_TMP=str(tmp_path),
        PB_DEAD_URL=dead_url(),
        BLENDER_USER_SCRIPTS=str(tmp_path / "scripts"),
        BLENDER_USER_CONFIG=str(tmp_path / "config"),
        BLENDER_USER_DATAFILES=str(tmp_path / "datafiles"),
        BLENDER_USER_EXTENSIONS=str(tmp_path / "extensions"),
    )
    args = [str(blender), str(INHOST), name, str(result_path), str(addon_dir), MODULE]
    if install:
        args += [install[0], str(install[1])]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if not result_path.is_file():
        pytest.fail(
            f"Blender wrote no result (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    result = json.loads(result_path.read_text())
    assert result["ok"], f"{name} failed inside Blender:\n{result['error']}\n{proc.stderr[-2000:]}"
    return result["data"]


@pytest.mark.parametrize("name", ["registered", "pixel_conversion"])
def test_without_server(name, blender, addon_dir, tmp_path):
    run_check(name, blender, addon_dir, tmp_path / "no-server", tmp_path)


@pytest.mark.parametrize("name", ["generate", "img2img", "inpaint", "texture", "modal"])
def test_with_server(name, blender, addon_dir, live_server: LiveServer, tmp_path):
    run_check(name, blender, addon_dir, live_server.config_dir, tmp_path)


def test_server_down(blender, addon_dir, tmp_path):
    empty = tmp_path / "empty-config"
    empty.mkdir()
    data = run_check("server_down", blender, addon_dir, empty, tmp_path)
    assert "paintbridge serve" in data["message"]


@pytest.mark.parametrize("install", ["legacy-zip", "extension-zip"])
def test_installed_from_built_zip(
    install, blender, addon_dir, bundle_zip, live_server: LiveServer, tmp_path
):
    data = run_check(
        "generate", blender, addon_dir, live_server.config_dir, tmp_path, (install, bundle_zip)
    )
    assert data["module"].endswith(MODULE)
    assert str(tmp_path) in data["path"], data["path"]  # the installed copy, not the checkout
