"""hostkit runs on Python 2.7 (GIMP 2.10) and 3.8 (the oldest host Python): run a smoke script
under each interpreter found on this machine (skipped where none is), including a real HTTP
round trip against a server in this test process; and it imports nothing else from paintbridge."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from paintbridge.hostkit.discovery import live_proof

HOSTKIT = Path(__file__).resolve().parents[2] / "core" / "paintbridge" / "hostkit"

SMOKE = r"""
from __future__ import print_function
import hashlib
import sys
sys.path.insert(0, sys.argv[1])
import hostkit as h

box = h.context_box(h.Box(10, 10, 5, 5), h.Box(0, 0, 100, 100))
assert box == h.Box(0, 0, 64, 64), box
mask = bytearray(20 * 10)
mask[3 * 20 + 4] = 255
assert h.selection_bounds(bytes(mask), 20, 10) == h.Box(4, 3, 1, 1)
rgba = bytes(bytearray(range(7 * 3 * 4)))
assert h.decode_png(h.encode_png(rgba, 7, 3, "RGBA")) == (7, 3, "RGBA", rgba)
assert h.flip_rows(h.flip_rows(rgba, 7, 3), 7, 3) == rgba
assert h.bgra_to_rgba(h.bgra_to_rgba(rgba)) == rgba
assert h.payload_to_rgba(h.image_payload(rgba, 7, 3, "png")) == (7, 3, rgba)
plan = h.plan_fill_selection(bytes(mask), 20, 10, h.Box(0, 0, 20, 10))
assert plan.box == h.Box(0, 0, 16, 8) or plan.box.contains(plan.selection), plan
job = h.inpaint_job(rgba, b"\xff" * 21, 7, 3, prompt="x")
client = h.Client(sys.argv[2], "tok", timeout=5)
assert client.live() == {"ok": True}
try:
    client.health()
except h.RequestRejected as exc:
    assert exc.message == "nope" and exc.status == 400, exc
else:
    raise AssertionError("no error")
results = client.run(job, poll_interval=0.01)
assert results[0].rgba == bytes(bytearray(range(16))), results
# sent and followed by a JobWatch's thread (GIMP's way: the caller looks every 50 ms)
texts = []
watched = client.watch(job).follow(lambda status, text: texts.append(text), lambda: False)
assert [r.rgba for r in watched] == [results[0].rgba] and texts, (watched, texts)
# with a prepare on the watch's thread; what it raises says where the result is kept, even
# with a message outside ASCII (str() of it fails on Python 2)
prepared = client.watch(job, lambda results: [len(r.rgba) for r in results]).follow()
assert prepared == [16], prepared
def unusable(results):
    raise ValueError(u"le calque est ferm\xe9")
try:
    client.watch(job, unusable).follow()
except h.PaintbridgeError as exc:
    assert "could not use its result" in exc.message and "history export" in exc.message, exc
else:
    raise AssertionError("no error")
# a result that cannot be placed says where it is kept, whatever its message's characters
placed = h.client.with_history(h.ServerFault(u"la taille \xe9tait 8x8"), u"abc")
assert isinstance(placed, h.ServerFault) and u"\xe9tait 8x8. " in placed.message, placed.message
assert u"history export abc" in placed.message, placed.message
# a job with long base64 strings goes as a body in pieces (Python 2: through a file for httplib)
big = bytes(bytearray(i * 7 % 256 for i in range(600 * 500 * 4)))
job = h.inpaint_job(big, big[: 600 * 500], 600, 500, prompt="x")
answer = client.request("POST", "/v1/jobs", job)
assert answer["length"] == answer["received"] > 1400000, answer
assert answer["image_sha256"] == hashlib.sha256(big).hexdigest(), answer
assert answer["mask_sha256"] == hashlib.sha256(big[: 600 * 500]).hexdigest(), answer
# the same with its pixels made as the body is written (a Later: Blender's and Krita's way)
job = h.inpaint_job(h.Later(lambda: big), h.Later(lambda: big[: 600 * 500]), 600, 500, prompt="x")
answer = client.request("POST", "/v1/jobs", job)
assert answer["image_sha256"] == hashlib.sha256(big).hexdigest(), answer
assert answer["mask_sha256"] == hashlib.sha256(big[: 600 * 500]).hexdigest(), answer
# the local server found through server.json (JSON text is `unicode` on Python 2: it was
# never taken for a URL there), and a remote server's token kept and read back
import json, os, tempfile
folder = tempfile.mkdtemp()
with open(os.path.join(folder, "server.json"), "w") as handle:
    handle.write(json.dumps({"url": sys.argv[2], "token": "tok"}))
found = h.try_local_client(folder, 5)
assert found is not None and found.url == sys.argv[2], found
with open(os.path.join(folder, "server.json"), "w") as handle:
    handle.write(json.dumps({"url": sys.argv[2], "token": "not its token"}))
assert h.try_local_client(folder, 5) is None
from hostkit.discovery import remember_token, remembered_token
remember_token(sys.argv[2], "s3cret", folder)
assert remembered_token(sys.argv[2], folder) == "s3cret"
print("ok", sys.version_info[:2])
"""


def _interpreters() -> list[str]:
    found = []
    candidates = ["python2.7", "python3.8"]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for name, prefix in (("python2.7", "2.7"), ("python3.8", "3.8")):
        for version in sorted(pyenv.glob(prefix + "*")) if pyenv.is_dir() else []:
            candidates.append(str(version / "bin" / name))
    for candidate in candidates:
        path = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if not path:
            continue
        probe = subprocess.run([path, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        if probe.returncode == 0 and not any(probe.stdout == f[1] for f in found):
            found.append((path, probe.stdout))
    return [path for path, _ in found]


class _Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v1/live":
            self._send(200, {"ok": True})
        elif self.path.startswith("/v1/live?challenge="):  # the server's proof of the token "tok"
            url = f"http://127.0.0.1:{self.server.server_address[1]}"
            proof = live_proof("tok", url, self.path.partition("=")[2])
            self._send(200, {"ok": True, "proof": proof})
        elif self.path == "/v1/health":
            self._send(400, {"error": {"code": "invalid_request", "message": "nope"}})
        elif self.path == "/v1/jobs/j/results/0?format=rgba8":
            data = bytes(range(16))
            self.send_response(200)
            for name, value in (("X-Width", 2), ("X-Height", 2), ("X-Seed", 1)):
                self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/v1/jobs/j?image_format=none":
            self._send(200, {"id": "j", "state": "done", "results": [{"image": None, "seed": 1}]})
        else:
            self._send(404, {"error": {"code": "not_found", "message": self.path}})

    def do_POST(self) -> None:
        """A job's answer also says what arrived: body size and the images' SHA-256."""
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        answer = {"id": "j", "state": "queued", "position": 0, "length": length}
        answer["received"] = len(body)
        job = json.loads(body)
        for name in ("image", "mask"):
            data = base64.b64decode(job[name]["data"]) if name in job else b""
            answer[name + "_sha256"] = hashlib.sha256(data).hexdigest()
        self._send(202, answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


INTERPRETERS = _interpreters()


@pytest.mark.parametrize("python", INTERPRETERS or [None])
def test_hostkit_runs_on_old_pythons(python: str | None, server_url: str, tmp_path: Path) -> None:
    if python is None:
        pytest.skip("no Python 2.7 or 3.8 on this machine (vermin still checks the syntax)")
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.pop("http_proxy", None)
    out = subprocess.run(
        [python, str(script), str(HOSTKIT.parent), server_url],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok" in out.stdout


def test_hostkit_imports_only_the_standard_library() -> None:
    allowed = {
        "__future__", "base64", "binascii", "collections", "json", "os", "socket", "struct",
        "subprocess", "sys", "time", "zlib", "http", "urllib", "urllib2", "urlparse", "httplib",
        "posixpath", "ntpath", "random", "itertools", "threading", "atexit", "hashlib", "hmac",
    }  # fmt: skip
    for path in HOSTKIT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue  # relative: inside hostkit
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_hostkit_source_is_ascii() -> None:
    """Python 2.7 refuses a non-ASCII source file without a coding line."""
    for path in HOSTKIT.glob("*.py"):
        path.read_bytes().decode("ascii")
