"""keep_freed_memory: large blocks freed by a worker thread are reused, not faulted in again;
give_back_freed_memory returns them: the engine keeps them between generations and gives them
back when it unloads (the server's queue does once idle: tests/test_jobs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from paintbridge.engine import Engine, EngineSettings, GenerationRequest, allocator
from paintbridge.engine import device as device_module
from paintbridge.engine import engine as engine_module
from paintbridge.errors import InvalidRequest

# In a fresh process: a worker thread allocates and frees a 64 MB block five times (as a
# generation's activations come and go) and prints the page faults of the last four rounds.
ROUNDS = """
import resource, sys, threading
if sys.argv[1] == "keep":
    from paintbridge.engine.allocator import keep_freed_memory
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def work():
    for i in range(5):
        if i == 1:
            start = faults()
        block = bytearray(64 << 20)  # zero-filled: every page is touched
        del block
    print(faults() - start)
thread = threading.Thread(target=work)
thread.start()
thread.join()
"""


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    pages = (64 << 20) // 4096
    assert _faults("default") > 3 * pages  # each round maps and faults in fresh pages
    assert _faults("keep") < pages // 4


def test_elsewhere_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False


@pytest.mark.skipif(
    allocator._malloc_trim() is None, reason="malloc_trim is glibc's (Linux); elsewhere a no-op"
)
def test_give_back_returns_the_heaps_free_pages() -> None:
    def anon_mib() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no RssAnon in /proc/self/status")

    # 64 KiB blocks: under glibc's mmap threshold, so they live in the heap; the pin allocated
    # after them keeps free() from trimming the heap's top by itself, as a job's leftovers do
    blocks = [bytearray(64 * 1024) for _ in range(4096)]  # 256 MiB, every page touched
    for block in blocks:
        block[::4096] = b"\1" * len(block[::4096])
    pin = bytearray(64 * 1024)
    del blocks, block
    kept = anon_mib()
    allocator.give_back_freed_memory()
    released = anon_mib()
    assert kept - released > 192, (kept, released)
    assert len(pin) == 64 * 1024


def test_the_engine_keeps_freed_memory_between_generations_and_gives_it_back_on_unload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = Engine(EngineSettings(device="cpu", default_model="test:tiny"))
    calls: list[int] = []
    monkeypatch.setattr(device_module, "give_back_freed_memory", lambda: calls.append(1))
    engine.generate(GenerationRequest(task="txt2img", prompt="a door", steps=1, seed=1))
    with pytest.raises(InvalidRequest):
        engine.generate(GenerationRequest(task="txt2img", prompt="a door", steps=0))
    assert calls == []  # the next generation reuses it
    engine.unload()
    assert calls == [1]


def test_low_memory_on_keeps_glibcs_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(engine_module, "keep_freed_memory", lambda: calls.append(1) or True)
    lean = Engine(EngineSettings(device="cpu", low_memory="on"))
    assert calls == [] and not lean._keeps_freed_memory
    assert Engine(EngineSettings(device="cpu"))._keeps_freed_memory
    assert calls == [1]
