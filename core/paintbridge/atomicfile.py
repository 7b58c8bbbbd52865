"""Write a file so that readers see the old content or the new, never a torn one."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_O_BINARY = getattr(os, "O_BINARY", 0)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Write `data` to a new temp file beside `path` (created with `mode`, umask applied),
    fsync it, then rename it over `path`. Raises OSError; no temp file is left behind."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
