"""keep_freed_memory: large blocks freed by a worker thread are reused, not faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paintbridge.engine import allocator

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
