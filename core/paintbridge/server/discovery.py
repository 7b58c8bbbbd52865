"""server.json: how hostkit on this machine finds the running server (URL + token).

Written with mode 0600 from the first byte (os.open with 0o600, then an atomic replace), so
the token is never readable by other users, not even for a moment; removed on a clean exit,
but only while it still describes this process (a newer server may have replaced it), and
handed back to the server it replaced when that one still runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from paintbridge.atomicfile import write_atomic
from paintbridge.errors import PaintbridgeError

__all__ = [
    "check_writable",
    "pid_alive",
    "read",
    "remove_if_ours",
    "running_history",
    "write",
]


def write(
    path: Path, *, url: str, token: str, version: str, history: Path | None = None
) -> dict[str, Any]:
    """Write the discovery file for this process; returns what was written. `history`: the
    folder its results are kept in (`paintbridge history` looks there while it runs)."""
    info: dict[str, Any] = {"url": url, "token": token, "pid": os.getpid(), "version": version}
    if history is not None:
        info["history"] = str(history)
    _write_info(path, info)
    return info


def check_writable(path: Path) -> None:
    """Raise PaintbridgeError (config_not_writable) unless the discovery file can be written:
    checked before serving, since the file is written in the app's startup, where a failure
    was "serving on" and then a traceback."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".paintbridge-probe-", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _not_writable(path, exc) from exc


def _write_info(path: Path, info: dict[str, Any]) -> None:
    data = (json.dumps(info, indent=2) + "\n").encode()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, data, mode=0o600)
    except OSError as exc:
        raise _not_writable(path, exc) from exc


def _not_writable(path: Path, exc: OSError) -> PaintbridgeError:
    return PaintbridgeError(
        f"cannot write {str(path)!r}: {exc.strerror or exc} "
        "(set PAINTBRIDGE_CONFIG_DIR to a writable folder)",
        code="config_not_writable",
    )


def read(path: Path) -> dict[str, Any] | None:
    """The discovery file's content, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def remove_if_ours(path: Path, token: str, replaced: dict[str, Any] | None = None) -> bool:
    """If the file names this process and token: hand it back to `replaced` (what it held
    before this server wrote it) when that server still runs, else delete it. True when the
    file was this server's."""
    info = read(path)
    if info is None or info.get("pid") != os.getpid() or info.get("token") != token:
        return False
    if replaced and replaced.get("pid") != os.getpid() and pid_alive(replaced.get("pid")):
        with contextlib.suppress(PaintbridgeError):  # no worse than removing it
            _write_info(path, replaced)
            return True
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True


def running_history(path: Path) -> Path | None:
    """The history folder of the server the discovery file names, while it runs, else None."""
    info = read(path)
    if info is None or not pid_alive(info.get("pid")) or not isinstance(info.get("history"), str):
        return None
    folder = Path(info["history"])
    return folder if folder.is_absolute() else None  # relative to where? not to here


def pid_alive(pid: object) -> bool:
    """Whether process `pid` exists (POSIX; on Windows os.kill would end it, so: unknown)."""
    if not isinstance(pid, int) or pid <= 0 or os.name == "nt":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True
