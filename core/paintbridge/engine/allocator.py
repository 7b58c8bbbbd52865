"""Keep freed tensor memory for reuse within a generation (Linux with glibc).

By default glibc gives every allocation above its mmap threshold (32 MB at most) its own
mapping, returned to the kernel on free, and a thread other than the main one gets an arena
whose heaps are at most 64 MB. A generation's large activations (the VAE's reach hundreds of MB)
then arrive as fresh pages, zeroed by the kernel on first touch, again on every step.
`keep_freed_memory` keeps them in one heap instead. The heap's free pages then stay for the
next generation too; `give_back_freed_memory` returns them, which the engine does on `unload` and
the server's job queue once it has been idle for a while (after every job instead, each job
faulted its pages in afresh: a 512 px float32 job took 32.4 s instead of 28.4 s, 0.5 M faults).
Measured on 2 cores (SD 1.5 architecture, 512 px, 2-step txt2img jobs in a worker thread as the
server runs them; glibc's defaults -> these settings): bfloat16 7.4 -> 6.7 s, float32 27.8 ->
25.7 s; the service path 1.080 -> 0.988 of plain diffusers in-process. The price: the heap also
holds blocks freed between steps that a fresh mapping would have given back, so the process's
peak is higher, 3.36 -> 3.79 GB in bfloat16 and 5.89 -> 6.96 GB in float32. Only setting one
arena (so the worker thread shares the main thread's heap) gave 1.063: the reuse is the gain.
Engine skips this under low_memory="on".
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Larger than any single tensor a generation makes; newer glibc may refuse it (then its own
# largest, 32 MB, still keeps most activations).
MMAP_THRESHOLD = 1 << 30
MMAP_THRESHOLD_FALLBACK = 32 << 20
NEVER_TRIM = (1 << 31) - 1


def keep_freed_memory() -> bool:
    """Process-wide: one malloc arena, large blocks from the heap, no trimming on free.
    Returns whether glibc took the settings (False elsewhere: nothing changes there).

    A thread that has already allocated keeps its own arena, so make the Engine before the
    thread that generates starts (the server and the CLI do): an Engine made inside that thread
    gained nothing (7.4 s and 0.77 M page faults for the job above, as with glibc's defaults)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    one_arena = mallopt(M_ARENA_MAX, 1) == 1
    in_heap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if not in_heap:
        in_heap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_FALLBACK) == 1
    kept = mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
    return one_arena and in_heap and kept


def give_back_freed_memory() -> None:
    """Return the heap's free pages to the system (Linux with glibc; elsewhere nothing)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
