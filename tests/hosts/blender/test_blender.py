"""The Blender add-on inside real Blender 4.5 and 5.0 (the `bpy` modules that
tests/hosts/blender/install.sh puts in <repo>/.hosts/), against a real `paintbridge serve` with
the tiny model (and test:identity, which gives images back, for pixel round trips and faults).

Each test runs one check of inhost.py in a fresh Blender process and reads the result file it
writes. The add-on is laid out as a bundle: plugins/blender/ with hostkit inside it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.hosts.conftest import REPO, LiveServer, require_host, start_server, stop_server

from paintbridge.hostkit import client as hk

pytestmark = [pytest.mark.host]

# The Blender versions tests/hosts/blender/install.sh installs, each in its own venv
BLENDERS = {"4.5": "blender-venv", "5.0": "blender50-venv"}
INHOST = Path(__file__).with_name("inhost.py")
MODULE = "paintbridge_blender"  # the bundle's folder (core/paintbridge/bundles.py)


@pytest.fixture(scope="session", params=list(BLENDERS), ids=lambda v: f"blender{v}")
def blender(request: pytest.FixtureRequest) -> Path:
    python = REPO / ".hosts" / BLENDERS[request.param] / "bin" / "python"
    require_host(
        python.is_file(),
        f"Blender {request.param} (bpy) is not installed: run tests/hosts/blender/install.sh "
        f"({python})",
    )
    return python


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
    extra_env: dict[str, str | None] | None = None,
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
    env.update(extra_env or {})  # None: unset
    env = {key: value for key, value in env.items() if value is not None}
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


@pytest.mark.parametrize(
    "name",
    [
        "registered",
        "pixel_conversion",
        "panels",
        "texture_poll",
        "texture_grease_pencil",
        "working_spaces",
    ],
)
def test_without_server(name, blender, addon_dir, tmp_path):
    run_check(name, blender, addon_dir, tmp_path / "no-server", tmp_path)


@pytest.mark.parametrize(
    "name",
    [
        "generate",
        "img2img",
        "inpaint",
        "inpaint_data_and_seamless",
        "inpaint_float_source",
        "texture",
        "texture_shaders",
        "modal",
        "identity_roundtrip",
        "float_alpha",
        "seeds",
        "texture_linked",
        "render_result",
        "render_of_view_layers",
        "start_server_url",
        "texture_target_renamed",
        "texture_target_changes",
        "no_repeat",
        "connected_detail",
    ],
)
def test_with_server(name, blender, addon_dir, live_server: LiveServer, tmp_path):
    run_check(name, blender, addon_dir, live_server.config_dir, tmp_path)


@pytest.mark.parametrize("live", [False, True], ids=["no-server", "server"])
def test_start_server_modal(live, blender, addon_dir, tmp_path, request):
    if live:
        config_dir = request.getfixturevalue("live_server").config_dir
    else:
        config_dir = tmp_path / "empty-config"
        config_dir.mkdir()
    data = run_check("start_server_modal", blender, addon_dir, config_dir, tmp_path)
    assert data["live"] is live


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


@pytest.mark.parametrize("where", ["dest", "default"])
def test_installed_by_cli(where, blender, addon_dir, tmp_path):
    """`paintbridge plugins install --blender` as a user runs it, into --dest or into the folder
    Blender itself looks in (its version folder under XDG_CONFIG_HOME), then enabled there."""
    xdg = tmp_path / "xdg"
    if where == "dest":
        repository = tmp_path / "extensions" / "user_default"  # run_check's user extensions
        args, blender_env = ["--dest", str(repository)], {}
    else:
        version = {venv: v for v, venv in BLENDERS.items()}[blender.parents[1].name]
        (xdg / "blender" / version).mkdir(parents=True)  # as Blender's first start leaves it
        repository = xdg / "blender" / version / "extensions" / "user_default"
        args, blender_env = [], {"XDG_CONFIG_HOME": str(xdg), "BLENDER_USER_EXTENSIONS": None}
    config = tmp_path / "paintbridge-config"
    done = subprocess.run(
        [sys.executable, "-m", "paintbridge", "plugins", "install", "--blender", *args],
        env=dict(
            os.environ,
            PAINTBRIDGE_CONFIG_DIR=str(config),
            HOME=str(tmp_path / "home"),
            XDG_CONFIG_HOME=str(xdg),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (repository / MODULE / "blender_manifest.toml").is_file(), done.stdout
    assert json.loads((config / "hostkit.json").read_text())["command"]  # how to start serve
    data = run_check(
        "registered",
        blender,
        addon_dir,
        config,
        tmp_path,
        ("installed-extension", repository),
        extra_env=blender_env,
    )
    assert data["module"] == f"bl_ext.user_default.{MODULE}"
    assert Path(data["path"]).is_relative_to(repository / MODULE), data["path"]


def wait_for_model(server: LiveServer, model: str, blender_check: Future) -> None:
    """Returns once the server has loaded `model` (a job asking for it runs), or once the check
    in Blender has ended (its result tells what went wrong)."""
    client = hk.Client(server.url, server.token, timeout=10)
    while not blender_check.done() and client.health().get("model") != model:
        time.sleep(0.05)


@pytest.mark.parametrize(
    "path, stop",
    [("sync", signal.SIGKILL), ("modal", signal.SIGTERM)],
    ids=["sync-SIGKILL", "modal-SIGTERM"],
)
def test_server_stopped_mid_job(path, stop, blender, addon_dir, tmp_path):
    """The server stops 1 s into a 10 s job: the operator ends with a clear error (not a result),
    no new datablock, the source image untouched."""
    server = start_server(tmp_path)
    try:
        with ThreadPoolExecutor(1) as pool:
            done = pool.submit(
                run_check,
                "server_stopped",
                blender,
                addon_dir,
                server.config_dir,
                tmp_path,
                extra_env={"PB_PATH": path},
            )
            wait_for_model(server, "test:identity", done)
            assert not done.done(), done.result()
            time.sleep(1.0)
            server.process.send_signal(stop)
            server.process.wait(timeout=60)
            done.result(timeout=300)  # raises what failed inside Blender
    finally:
        stop_server(server)
