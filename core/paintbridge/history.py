"""The history folder: one PNG per result, plus an append-only index of jobs.

Layout::

    <history dir>/
        20250101T120000-<job id>-1.png   the image, its parameters and seed in PNG text chunks
        index.jsonl                      one JSON line per finished job

Each PNG is written atomically and fsynced (pngmeta.save_png), the folder is fsynced once so
their names survive a crash, and only then is the job's index line appended (one write call,
fsynced): an indexed result is on disk. A process killed mid-write leaves at most a torn last
line, which `History.entries` skips (and the next append starts on a fresh line). When the index
line cannot be written, the PNGs stay and the job's error names them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from paintbridge import pngmeta
from paintbridge.engine.types import GenerationRequest, GenerationResult
from paintbridge.errors import PaintbridgeError

__all__ = ["INDEX_NAME", "History", "HistoryEntry"]

INDEX_NAME = "index.jsonl"
_O_BINARY = getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class HistoryEntry:
    """One finished job as the index records it."""

    time: str  # ISO 8601, local time with offset
    job: str
    task: str
    prompt: str
    files: tuple[str, ...]  # names inside the history folder
    seeds: tuple[int, ...]
    parameters: dict[str, Any]


class History:
    """Reads and appends the history folder; safe to share between threads of one process."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    @property
    def index_path(self) -> Path:
        return self.folder / INDEX_NAME

    def record(
        self, job_id: str, request: GenerationRequest, result: GenerationResult
    ) -> list[Path]:
        """Write the job's PNGs, then its index line; return the PNG paths.

        Raises PaintbridgeError (`history_not_writable`) when the folder cannot be written; its
        message names any PNG already written, which stays on disk.
        """
        now = datetime.now().astimezone()
        self._make_folder()
        stamp = now.strftime("%Y%m%dT%H%M%S")
        paths = [
            self.folder / f"{stamp}-{job_id}-{n}.png" for n in range(1, len(result.images) + 1)
        ]
        entry = {
            "time": now.isoformat(timespec="seconds"),
            "job": job_id,
            "task": request.task,
            "prompt": request.prompt,
            "files": [path.name for path in paths],
            "seeds": [generated.seed for generated in result.images],
            "parameters": result.parameters,
        }
        line = json.dumps(entry, ensure_ascii=False, default=str)  # before any file is written
        written: list[Path] = []
        for path, generated in zip(paths, result.images, strict=True):
            parameters = {**result.parameters, "seed": generated.seed}
            try:
                pngmeta.save_png(generated.image, path, parameters, sync_folder=False)
            except PaintbridgeError as exc:
                pngmeta.fsync_folder(self.folder)  # the PNGs before it stay, durably
                problem = f"cannot write the result to the history folder: {exc.message}"
                raise _unindexed(written, problem) from exc
            written.append(path)
        pngmeta.fsync_folder(self.folder)  # every PNG's name is durable before the index says so
        try:
            self._append(line)
        except PaintbridgeError as exc:
            raise _unindexed(written, exc.message) from exc
        return paths

    def check_writable(self) -> None:
        """Create the folder and prove a file can be written there (and the index appended to).

        Raises PaintbridgeError (`history_not_writable`) naming the folder.
        """
        self._make_folder()
        probe = self.folder / f".write-test-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
                probe.unlink()
            if self.index_path.exists():  # a read-only index would fail every job too
                os.close(os.open(self.index_path, os.O_WRONLY | os.O_APPEND | _O_BINARY))
        except OSError as exc:
            raise _not_writable(self.folder, exc) from exc

    def _make_folder(self) -> None:
        try:
            # private when we create it (0700): prompts and pictures are the user's alone, on a
            # machine other people log in to too; a folder the user made keeps its own mode
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            self.folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise _not_writable(self.folder, exc) from exc

    def _append(self, line: str) -> None:
        data = (line + "\n").encode("utf-8")
        with self._lock:
            try:
                fd = os.open(
                    self.index_path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _O_BINARY, 0o600
                )
            except OSError as exc:
                raise _not_writable(self.folder, exc) from exc
            try:
                size = os.fstat(fd).st_size
                if size and _last_byte(fd, size) != b"\n":
                    data = b"\n" + data  # a torn line from a killed process: start afresh
                if os.write(fd, data) != len(data):
                    raise OSError("short write (is the disk full?)")
                os.fsync(fd)
            except OSError as exc:
                raise _not_writable(self.folder, exc) from exc
            finally:
                os.close(fd)

    def entries(self) -> list[HistoryEntry]:
        """Every readable entry, oldest first; torn or foreign lines are skipped."""
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise PaintbridgeError(
                f"cannot read the history index {str(self.index_path)!r}: {exc.strerror or exc}",
                code="history_not_readable",
            ) from exc
        lines = raw.split(b"\n")
        if not raw.endswith(b"\n"):
            lines = lines[:-1]  # the last line was cut short
        found = []
        for line in lines:
            entry = _parse(line)
            if entry is not None:
                found.append(entry)
        return found

    def find(self, job_id: str) -> HistoryEntry:
        """The entry of `job_id`, or of the one job whose id starts with it (4+ characters)."""
        entries = self.entries()
        exact = [entry for entry in entries if entry.job == job_id]
        if exact:
            return exact[-1]
        matches = {e.job: e for e in entries if len(job_id) >= 4 and e.job.startswith(job_id)}
        if len(matches) == 1:
            return next(iter(matches.values()))
        if len(matches) > 1:
            raise PaintbridgeError(
                f"job id {job_id!r} is ambiguous ({len(matches)} jobs start with it): "
                "give more characters",
                code="invalid_request",
            )
        if len(job_id) < 4 and any(e.job.startswith(job_id) for e in entries):
            raise PaintbridgeError(
                f"job id {job_id!r} is too short: give at least 4 of its first characters",
                code="invalid_request",
            )
        raise JobNotFound(
            f"no job {job_id!r} in the history at {str(self.folder)!r}: "
            "`paintbridge history list` shows the jobs it holds"
        )

    def export(self, job_id: str, out_dir: Path) -> list[Path]:
        """Copy the job's PNGs into `out_dir` (created if needed); return the copies. A PNG gone
        from the folder does not keep the others from being copied: they are, and the error
        then names both."""
        entry = self.find(job_id)
        if out_dir.exists() and not out_dir.is_dir():
            raise PaintbridgeError(
                f"{str(out_dir)!r} is a file; --out takes a folder", code="output_not_writable"
            )
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PaintbridgeError(
                f"cannot create {str(out_dir)!r}: {exc.strerror or exc}",
                code="output_not_writable",
            ) from exc
        copies, gone = [], []
        for name in entry.files:
            source = self.folder / name
            try:
                present = source.is_file()
            except OSError:  # a name the file system refuses (too long...): not there either
                present = False
            if not present:
                gone.append(repr(str(source)))
                continue
            try:
                copies.append(Path(shutil.copy2(source, out_dir / name)))
            except shutil.SameFileError:  # --out is the history folder: it is there already
                copies.append(out_dir / name)
            except OSError as exc:
                raise PaintbridgeError(
                    f"cannot copy {name} to {str(out_dir)!r}: {exc.strerror or exc}",
                    code="output_not_writable",
                ) from exc
        if gone:
            message = (
                f"{', '.join(gone)} of job {entry.job} "
                f"{'is' if len(gone) == 1 else 'are'} gone from the history folder"
            )
            if copies:
                message += f"; its other images are in place: {', '.join(map(str, copies))}"
            raise PaintbridgeError(message, code="not_found")
        return copies


class JobNotFound(PaintbridgeError):
    """No job of that id in this history folder."""

    code = "not_found"


def _last_byte(fd: int, size: int) -> bytes:
    os.lseek(fd, size - 1, os.SEEK_SET)  # O_APPEND still writes at the end
    return os.read(fd, 1)


def _parse(line: bytes) -> HistoryEntry | None:
    try:
        raw = json.loads(line)
        if not isinstance(raw, dict):
            return None
        files = tuple(str(name) for name in raw["files"])
        if any(Path(name).name != name for name in files):
            return None  # only plain names inside the folder, never a path elsewhere
        parameters = raw.get("parameters")
        return HistoryEntry(
            time=str(raw["time"]),
            job=str(raw["job"]),
            task=str(raw.get("task", "")),
            prompt=str(raw.get("prompt", "")),
            files=files,
            seeds=tuple(int(seed) for seed in raw.get("seeds", ())),
            parameters=parameters if isinstance(parameters, dict) else {},
        )
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        return None  # [1e999] as a seed, arrays nested past the recursion limit...


def _unindexed(written: list[Path], problem: str) -> PaintbridgeError:
    """The job's error when recording failed after `written` PNGs were saved.

    They stay where they are: deleting the only copy of a picture to keep the index tidy would
    lose it for good, and each PNG carries its own parameters. The message names them, so the user
    can find what `paintbridge history` does not list.
    """
    if not written:
        return PaintbridgeError(problem, code="history_not_writable")
    names = ", ".join(repr(str(path)) for path in written)
    saved = "the image was" if len(written) == 1 else "the images were"
    return PaintbridgeError(
        f"{saved} written to {names} but could not be added to the history index: {problem}",
        code="history_not_writable",
    )


def _not_writable(folder: Path, exc: OSError) -> PaintbridgeError:
    reason = exc.strerror or str(exc)
    if isinstance(exc, (FileExistsError, NotADirectoryError)):  # "File exists" misleads here
        reason = "a part of that path is a file, not a folder"
    fix = "fix its permissions or choose" if isinstance(exc, PermissionError) else "choose"
    return PaintbridgeError(
        f"cannot write to the history folder {str(folder)!r}: {reason} "
        f"({fix} another folder with --history-dir)",
        code="history_not_writable",
    )
