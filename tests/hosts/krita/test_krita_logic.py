"""The Krita plug-in's logic inside real Krita (kritarunner, offscreen) against a real server.

One kritarunner run executes every scenario of logic_driver.py; each test below checks one
scenario's verdict from the result file (kritarunner always exits 0).
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from tests.hosts.conftest import require_host
from tests.hosts.krita.kritahost import (
    HERE,
    KRITARUNNER,
    build_pykrita,
    has_pyqt5,
    krita_env,
    read_json,
    run_kritarunner,
)

SCENARIOS = (
    "img2img_layer",
    "img2img_selection",
    "results_prepared_off_gui_thread",
    "img2img_lasso",
    "img2img_selection_off_layer",
    "img2img_filter_mask",
    "generate_big_canvas",
    "img2img_layer_kinds",
    "generate_on_mask",
    "place_checks_layer",
    "unexpected_error",
    "identity_img2img",
    "identity_fill",
    "identity_keeps_look",
    "identity_masked_layer",
    "identity_layer_profile",
    "identity_document_profile",
    "generate_document_profile",
    "fill_selection",
    "fill_corner",
    "generate",
    "busy_while_placing",
    "server_down",
    "no_server_file",
    "default_16bit",
    "identity_high_depth",
    "generate_high_depth",
    "fill_needs_selection",
    "bad_settings",
    "server_rejects",
    "cancel",
    "cancel_while_running",
    "closed_mid_job",
    "converted_mid_job",
    "profile_changed_mid_job",
    "model_changed_mid_job",
    "cropped_mid_job",
    "moved_mid_job",
    "other_document_mid_job",
    "start_server",
)

# What Start Server launches (hostkit.json): a stand-in that "loads" for a second, then
# announces itself in server.json like `paintbridge serve` and answers /v1/live, with the proof
# that it holds the token it announced (protocol.md).
SLOW_SERVER = """
import hashlib, hmac, json, os, time
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        answer = {"ok": True}
        if "challenge=" in self.path:
            url = "http://127.0.0.1:%d" % self.server.server_address[1]
            challenge = self.path.partition("challenge=")[2]
            message = ("paintbridge-live:" + url + "\\n" + challenge).encode()
            answer["proof"] = hmac.new(b"t", message, hashlib.sha256).hexdigest()
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

time.sleep(1.0)
server = HTTPServer(("127.0.0.1", 0), H)
config = os.environ["PAINTBRIDGE_CONFIG_DIR"]
info = {"url": "http://127.0.0.1:%d" % server.server_address[1], "token": "t", "pid": os.getpid()}
with open(os.path.join(config, "server.json.tmp"), "w") as f:
    json.dump(info, f)
os.replace(os.path.join(config, "server.json.tmp"), os.path.join(config, "server.json"))
server.serve_forever()
"""


def dead_url() -> str:
    """A loopback URL where nothing listens (a port just bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def logic_results(live_server, tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_host(bool(KRITARUNNER), "kritarunner not found (apt-get install krita)")
    require_host(has_pyqt5(), "PyQt5 missing in the system python3 (apt-get install python3-pyqt5)")
    root = tmp_path_factory.mktemp("krita-logic")
    bundle = build_pykrita(root / "pykrita")
    empty = root / "empty-config"
    empty.mkdir()
    launch = root / "launch-config"
    launch.mkdir()
    (root / "slow_server.py").write_text(SLOW_SERVER)
    command = [sys.executable, str(root / "slow_server.py")]
    (launch / "hostkit.json").write_text(json.dumps({"command": command}))
    out = root / "result.json"
    config = {
        "bundle": str(bundle),
        "config_dir": str(live_server.config_dir),
        "empty_config_dir": str(empty),
        "launch_config_dir": str(launch),
        "dead_url": dead_url(),
        "out": str(out),
        "scenarios": list(SCENARIOS),
    }
    (root / "config.json").write_text(json.dumps(config))
    env = krita_env(root / "home", PAINTBRIDGE_CONFIG_DIR=str(live_server.config_dir))
    proc = run_kritarunner(HERE, "logic_driver", [str(root / "config.json")], env, timeout=600)
    result = read_json(out)
    log = (proc.stdout + proc.stderr)[-6000:]
    assert result is not None, f"the driver wrote no result; kritarunner said:\n{log}"
    assert "error" not in result, result["error"]
    assert result.get("finished"), f"the driver stopped early:\n{json.dumps(result)}\n{log}"
    return result["scenarios"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(logic_results: dict, name: str) -> None:
    verdict = logic_results[name]
    assert verdict["ok"], (
        f"{name}: " + "; ".join(verdict["failures"]) + f"\ninfo: {json.dumps(verdict['info'])}"
    )


def test_bundle_layout(tmp_path: Path) -> None:
    """What the Krita bundle holds: the .desktop file, the package with hostkit inside."""
    bundle = build_pykrita(tmp_path)
    assert (bundle / "paintbridge_krita.desktop").is_file()
    assert (bundle / "paintbridge_krita" / "__init__.py").is_file()
    assert (bundle / "paintbridge_krita" / "hostkit" / "client.py").is_file()
