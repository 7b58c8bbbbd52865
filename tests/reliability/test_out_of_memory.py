"""Out of memory, injected into a real server: that job fails saying so and what to do, the
memory it held is given back, and the next job runs.

The server runs in this process (real engine, real tiny model, uvicorn on a loopback port) so
the fault can be planted: the UNet's forward first fills a 256 MiB ballast, as a large
activation would, then asks torch's CPU allocator for 32 TiB, which fails for real
(`DefaultCPUAllocator: can't allocate memory`). Capping the address space instead (RLIMIT_AS)
aborts the whole process inside a native extension (SECURITY.md, gaps).
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import uvicorn
from diffusers import UNet2DConditionModel

import paintbridge.engine.engine as engine_module
from paintbridge.engine.types import EngineSettings
from paintbridge.hostkit import PaintbridgeError
from paintbridge.hostkit.client import Client
from paintbridge.server import ServerSettings, create_app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc"),
]

TOKEN = "oom-token-0123456789"
BALLAST_BYTES = 256 * 1024 * 1024
IMPOSSIBLE_BYTES = 2**45  # 32 TiB: more than any machine running this test can give


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def txt2img(seed: int) -> dict[str, object]:
    return {"task": "txt2img", "prompt": "oom", "width": 64, "height": 64, "steps": 2, "seed": seed}


class OutOfMemoryFault:
    """Armed, the next UNet forward holds a ballast and then fails a real allocation."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.ballast: weakref.ref[torch.Tensor] | None = None
        self.rss_holding_ballast = 0

    def wrap(self, forward: Any) -> Any:
        def forward_or_fail(module: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.armed.is_set():
                return forward(module, *args, **kwargs)
            self.armed.clear()
            ballast = torch.ones(BALLAST_BYTES // 4)  # touched: resident, not just reserved
            self.ballast = weakref.ref(ballast)
            self.rss_holding_ballast = rss()
            torch.empty(IMPOSSIBLE_BYTES, dtype=torch.uint8)  # raises RuntimeError
            raise AssertionError("the impossible allocation succeeded")

        return forward_or_fail


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch) -> OutOfMemoryFault:
    fault = OutOfMemoryFault()
    monkeypatch.setattr(UNet2DConditionModel, "forward", fault.wrap(UNet2DConditionModel.forward))
    return fault


@pytest.fixture
def freed(monkeypatch: pytest.MonkeyPatch, fault: OutOfMemoryFault) -> list[bool]:
    """One entry per free_memory call after the fault: was the ballast gone when it returned?
    (It empties the device's cache last, which can only give back tensors nothing holds.)"""
    calls: list[bool] = []
    real = engine_module.free_memory

    def spy(device: str) -> None:
        real(device)
        if fault.ballast is not None:
            calls.append(fault.ballast() is None)

    monkeypatch.setattr(engine_module, "free_memory", spy)
    return calls


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Client]:
    """A real server in this process, on a loopback port of its own."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    settings = ServerSettings(
        token=TOKEN,
        port=port,
        engine=EngineSettings(default_model="test:tiny", model_dirs=(tmp_path / "models",)),
        history_dir=tmp_path / "history",
    )
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    client = Client(settings.url, TOKEN, timeout=60)
    try:
        for _ in range(600):
            if uv.started:
                break
            thread.join(0.1)
        assert uv.started, "the in-process server did not start"
        yield client
    finally:
        uv.should_exit = True
        thread.join(60)
        sock.close()


def test_out_of_memory_fails_that_job_frees_its_memory_and_the_next_job_runs(
    server: Client, fault: OutOfMemoryFault, freed: list[bool], tmp_path: Path
) -> None:
    assert [r.seed for r in server.run(txt2img(1), poll_interval=0.05)] == [1]  # loaded
    fault.armed.set()
    with pytest.raises(PaintbridgeError) as failed:
        server.run(txt2img(2), poll_interval=0.05)
    after_failure = rss()

    error = failed.value
    assert error.code == "generation_failed"
    assert "out of memory on cpu generating 64x64" in error.message
    assert "close other programs" in error.message and "low_memory" in error.message
    assert fault.rss_holding_ballast, "the fault did not fire"
    assert freed and all(freed), "free_memory ran while the failed step's tensors were alive"
    assert after_failure < fault.rss_holding_ballast - BALLAST_BYTES * 3 // 4, (
        f"RSS {after_failure >> 20} MiB after the failure, "
        f"{fault.rss_holding_ballast >> 20} MiB while failing: the memory was not given back"
    )

    after = server.run(txt2img(3), poll_interval=0.05)
    assert [r.seed for r in after] == [3] and after[0].width == 64
    names = sorted(p.name for p in (tmp_path / "history").glob("*.png"))
    assert len(names) == 2, names  # the two jobs that succeeded, nothing of the failed one
