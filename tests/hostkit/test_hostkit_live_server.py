"""hostkit against a real `paintbridge serve`: a large inpaint job sent as a body in pieces
arrives byte for byte, and its result comes back byte for byte."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paintbridge.hostkit import inpaint_job
from paintbridge.hostkit.client import Client, UrllibTransport
from paintbridge.hostkit.transport import PIECE, JsonBody, json_text

# tests/server/server_support.py starts and stops the real server; reuse it, do not copy it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from server_support import ServerProcess, assert_no_server_bugs  # noqa: E402

WIDTH, HEIGHT = 1536, 1024  # 6 MB of RGBA8, 8 MB of base64: 8 pieces and a part


class RecordingTransport:
    """hostkit's own transport, keeping what each request's body was."""

    def __init__(self, inner: UrllibTransport) -> None:
        self.inner = inner
        self.bodies: list[Any] = []

    def __call__(self, method: str, path: str, body: Any = None, headers: Any = None):
        self.bodies.append(body)
        return self.inner(method, path, body, headers)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("hostkit-server")).wait_ready()
    yield process
    process.stop()
    assert_no_server_bugs(process)


def test_a_large_inpaint_job_round_trips_byte_exact(server: ServerProcess) -> None:
    """test:identity gives the image back, and inpaint keeps every pixel where the blend mask is
    0 exactly: outside a small selection, the result's RGB must be the crop's, bit for bit."""
    rng = random.Random(7)
    rgba = bytearray(rng.randbytes(WIDTH * HEIGHT * 4))
    rgba[3::4] = b"\xff" * (WIDTH * HEIGHT)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[400:464, 900:1000] = 255
    job = inpaint_job(
        bytes(rgba), mask.tobytes(), WIDTH, HEIGHT, prompt="x", model="test:identity", steps=2
    )
    transport = RecordingTransport(UrllibTransport(server.url, 120))
    client = Client(server.url, server.token, timeout=120, transport=transport)

    (result,) = client.run(job, poll_interval=0.05, timeout=300)

    body = transport.bodies[0]
    assert isinstance(body, JsonBody) and len(body) > 8 * PIECE
    assert len(body) == len(json_text(job))
    assert (result.width, result.height) == (WIDTH, HEIGHT)
    sent = np.frombuffer(bytes(rgba), np.uint8).reshape(HEIGHT, WIDTH, 4)
    got = np.frombuffer(result.rgba, np.uint8).reshape(HEIGHT, WIDTH, 4)
    kept = got[..., 3] == 0
    assert kept.sum() > 0.9 * WIDTH * HEIGHT  # all but the selection and its feathered edge
    assert not kept[400:464, 900:1000].any()
    assert np.array_equal(got[kept][:, :3], sent[kept][:, :3])
