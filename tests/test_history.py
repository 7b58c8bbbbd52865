"""The history folder: PNGs with their parameters, an index robust to a torn last line, the
`paintbridge history` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from paintbridge import pngmeta
from paintbridge.cli import main
from paintbridge.engine.types import GeneratedImage, GenerationRequest, GenerationResult
from paintbridge.errors import PaintbridgeError
from paintbridge.history import INDEX_NAME, History, JobNotFound


def result(*seeds: int, prompt: str = "a cat") -> GenerationResult:
    images = [GeneratedImage(Image.new("RGBA", (8, 6), (s % 256, 0, 0, 255)), s) for s in seeds]
    return GenerationResult(images, {"task": "txt2img", "prompt": prompt, "steps": 2})


def record(history: History, job_id: str, *seeds: int, prompt: str = "a cat") -> list[Path]:
    request = GenerationRequest(task="txt2img", prompt=prompt)
    return history.record(job_id, request, result(*seeds, prompt=prompt))


def test_record_writes_pngs_with_parameters_and_an_index_line(tmp_path: Path) -> None:
    history = History(tmp_path / "h")
    paths = record(history, "job1", 11, 12)
    assert [p.name.split("-", 1)[1] for p in paths] == ["job1-1.png", "job1-2.png"]
    assert all(len(p.name.split("-")[0]) == len("20250101T120000") for p in paths)
    assert [pngmeta.read_parameters(p)["seed"] for p in paths] == [11, 12]
    assert pngmeta.read_parameters(paths[0])["prompt"] == "a cat"
    (entry,) = history.entries()
    assert entry.job == "job1" and entry.task == "txt2img" and entry.seeds == (11, 12)
    assert entry.files == tuple(p.name for p in paths)


def test_every_png_and_its_name_are_on_disk_before_the_index_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The durability order a crash relies on: each PNG's data fsynced, then renamed into
    place, the folder fsynced (the names), and only then the index line written and fsynced."""
    events: list[str] = []
    real_fsync, real_replace, real_write = os.fsync, os.replace, os.write

    def name_of(fd: int) -> str:
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if name == "h":
            return "folder"
        return name[1:].rsplit(".", 2)[0] if name.endswith(".tmp") else name  # .NAME.hex.tmp

    def fsync(fd: int) -> None:
        events.append(f"fsync {name_of(fd)}")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(f"rename {Path(dst).name.split('-', 1)[1]}")
        real_replace(src, dst)

    def write(fd: int, data: bytes) -> int:
        events.append(f"write {name_of(fd)}")
        return real_write(fd, data)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("names open files through /proc")
    history = History(tmp_path / "h")
    history.folder.mkdir()
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "write", write)
    paths = record(history, "job1", 1, 2)
    monkeypatch.undo()
    png1, png2 = (path.name for path in paths)
    assert events == [
        f"fsync {png1}", "rename job1-1.png", f"fsync {png2}", "rename job1-2.png",
        "fsync folder", f"write {INDEX_NAME}", f"fsync {INDEX_NAME}",
    ]  # fmt: skip


def test_a_torn_last_line_is_skipped_and_the_next_append_is_whole(tmp_path: Path) -> None:
    history = History(tmp_path)
    record(history, "first", 1)
    with open(tmp_path / INDEX_NAME, "ab") as index:
        index.write(b'{"time": "2025", "job": "torn", "fil')  # killed mid-write
    assert [e.job for e in history.entries()] == ["first"]
    record(history, "second", 2)
    assert [e.job for e in history.entries()] == ["first", "second"]


def test_foreign_or_hostile_lines_are_skipped(tmp_path: Path) -> None:
    history = History(tmp_path)
    lines = [
        "not json",
        "[1, 2]",
        json.dumps({"time": "t", "job": "evil", "files": ["../../etc/passwd"]}),
        json.dumps({"time": "t", "job": "ok", "files": ["a.png"], "seeds": [1]}),
    ]
    (tmp_path / INDEX_NAME).write_text("\n".join(lines) + "\n")
    assert [e.job for e in history.entries()] == ["ok"]


def test_lines_that_break_the_parser_itself_are_skipped(tmp_path: Path) -> None:
    """A seed of 1e999 (int() overflows) or arrays nested past the recursion limit once made
    every `history` list and export fail, so no job could be recovered."""
    history = History(tmp_path / "h")
    record(history, "goodjob1", 1)
    with open(history.index_path, "a") as index:
        index.write(json.dumps({"time": "t", "job": "inf", "files": [], "seeds": [1e999]}) + "\n")
        index.write("[" * 100000 + "]" * 100000 + "\n")
        index.write('{"time": "t", "job": "deep", "files": [], "p": ' + "[" * 100000 + "\n")
    record(history, "goodjob2", 2)
    assert [e.job for e in history.entries()] == ["goodjob1", "goodjob2"]
    assert [c.name for c in history.export("goodjob1", tmp_path / "out")] == list(
        history.find("goodjob1").files
    )


def test_a_file_name_the_file_system_refuses_is_not_found_on_export(tmp_path: Path) -> None:
    history = History(tmp_path)
    entry = {"time": "t", "job": "longname", "files": ["a" * 300 + ".png"], "seeds": [1]}
    history.index_path.write_text(json.dumps(entry) + "\n")
    with pytest.raises(PaintbridgeError, match="is gone from the history folder") as error:
        history.export("longname", tmp_path / "out")
    assert error.value.code == "not_found"


def test_export_copies_every_image_still_there_when_one_is_gone(tmp_path: Path) -> None:
    """The command a plug-in names to recover a result: a lost PNG must not cost the others."""
    history = History(tmp_path / "h")
    first, second, third = record(history, "three", 1, 2, 3)
    second.unlink()
    out = tmp_path / "out"
    with pytest.raises(PaintbridgeError, match="is gone from the history folder") as error:
        history.export("three", out)
    assert error.value.code == "not_found" and second.name in str(error.value)
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, third.name])
    assert f"its other images are in place: {out / first.name}, {out / third.name}" in str(
        error.value
    )


def test_export_into_the_history_folder_or_onto_a_file(tmp_path: Path) -> None:
    history = History(tmp_path / "h")
    (png,) = record(history, "one", 1)
    assert history.export("one", history.folder) == [png]  # there already: nothing to copy
    with pytest.raises(PaintbridgeError, match="is a file; --out takes a folder"):
        history.export("one", png)


def test_check_writable_creates_the_folder_and_leaves_nothing(tmp_path: Path) -> None:
    history = History(tmp_path / "a" / "h")
    history.check_writable()
    assert history.folder.is_dir() and list(history.folder.iterdir()) == []


def test_check_writable_refuses_a_folder_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PaintbridgeError) as error:
        History(blocker / "h").check_writable()
    assert error.value.code == "history_not_writable"
    assert str(blocker / "h") in error.value.message and "--history-dir" in error.value.message


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="POSIX modes, not as root")
@pytest.mark.parametrize("read_only", ["folder", "index"])
def test_check_writable_refuses_a_read_only_folder_or_index(tmp_path: Path, read_only: str) -> None:
    history = History(tmp_path / "h")
    record(history, "job1", 1)
    (history.folder if read_only == "folder" else history.index_path).chmod(0o500)
    try:
        with pytest.raises(PaintbridgeError, match="permissions") as error:
            history.check_writable()
    finally:
        history.folder.chmod(0o700)
    assert error.value.code == "history_not_writable"


def test_check_writable_refuses_a_folder_that_denies_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same refusal as above, also when the tests run as root (who may write anywhere)."""
    history = History(tmp_path / "h")
    history.folder.mkdir()
    real_open = os.open

    def deny(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(path).parent == history.folder and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(PaintbridgeError, match="Permission denied .fix its permissions") as error:
        history.check_writable()
    assert error.value.code == "history_not_writable"


def test_an_index_line_that_cannot_be_written_names_the_pngs_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job fails, but its pictures are not lost: they stay, and the message says where."""
    history = History(tmp_path / "h")

    def disk_full(line: str) -> None:
        raise PaintbridgeError("cannot write: disk full", code="history_not_writable")

    monkeypatch.setattr(history, "_append", disk_full)
    with pytest.raises(PaintbridgeError, match="could not be added to the history index") as error:
        record(history, "job1", 1, 2)
    pngs = sorted(history.folder.glob("*.png"))
    assert [p.name.split("-", 1)[1] for p in pngs] == ["job1-1.png", "job1-2.png"]
    assert all(repr(str(p)) in error.value.message for p in pngs)
    assert error.value.code == "history_not_writable" and "disk full" in error.value.message
    assert history.entries() == []


def test_a_second_png_that_cannot_be_written_names_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = History(tmp_path / "h")
    real_save = pngmeta.save_png

    def save_once(image: Image.Image, path: Path, *args: object, **kwargs: object) -> Path:
        if path.name.endswith("-2.png"):
            raise PaintbridgeError("cannot write: disk full", code="output_not_writable")
        return real_save(image, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pngmeta, "save_png", save_once)
    with pytest.raises(PaintbridgeError, match="^the image was written to ") as error:
        record(history, "job1", 1, 2)
    (png,) = history.folder.glob("*.png")
    assert png.name.endswith("-job1-1.png") and repr(str(png)) in error.value.message
    assert error.value.code == "history_not_writable" and history.entries() == []


def test_an_empty_or_missing_history(tmp_path: Path) -> None:
    assert History(tmp_path / "none").entries() == []


def test_find_by_prefix_and_export(tmp_path: Path) -> None:
    history = History(tmp_path / "h")
    record(history, "abcdef01", 1, 2)
    record(history, "abcdef02", 3)
    assert history.find("abcdef02").seeds == (3,)
    with pytest.raises(PaintbridgeError, match="ambiguous"):
        history.find("abcdef")
    with pytest.raises(PaintbridgeError, match="no job"):
        history.find("zzzz")
    with pytest.raises(PaintbridgeError, match="too short: give at least 4") as short:
        history.find("abc")  # a prefix of two jobs, but too short to be taken for either
    assert not isinstance(short.value, JobNotFound)  # no "add --history-dir" hint then
    with pytest.raises(JobNotFound, match="no job 'zz'"):
        history.find("zz")
    copies = history.export("abcdef01", tmp_path / "out")
    assert [c.parent for c in copies] == [tmp_path / "out"] * 2
    assert all(c.read_bytes() == (history.folder / c.name).read_bytes() for c in copies)


def test_an_unwritable_history_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PaintbridgeError, match="history folder") as error:
        record(History(blocker / "h"), "job", 1)
    assert error.value.code == "history_not_writable"


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_sigkill_during_appends_leaves_a_readable_index(tmp_path: Path) -> None:
    """A process appending in a loop is killed at a random moment; every whole line reads."""
    script = textwrap.dedent(
        f"""
        import sys
        from paintbridge.history import History
        history = History(__import__("pathlib").Path({str(tmp_path)!r}))
        print("ready", flush=True)
        n = 0
        while True:
            line = '{{"time": "t", "job": "j%d", "files": [], "pad": "%s"}}'
            history._append(line % (n, "x" * 5000))
            n += 1
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    while not (tmp_path / INDEX_NAME).exists() or (tmp_path / INDEX_NAME).stat().st_size < 50000:
        time.sleep(0.001)
    process.kill()
    process.wait()
    process.stdout.close()
    jobs = [e.job for e in History(tmp_path).entries()]
    assert jobs == [f"j{n}" for n in range(len(jobs))] and len(jobs) >= 9


def test_history_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "h"
    history = History(folder)
    for n in range(3):
        record(history, f"job{n}xyz", n, prompt=f"prompt number {n}")
    assert main(["history", "--history-dir", str(folder), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "job0xyz" not in out and "job1xyz" in out and "prompt number 2" in out
    assert main(["history", "list", "--history-dir", str(folder), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "job2xyz" in out and "job1xyz" not in out and "job2xyz-1.png" in out
    assert main(["history", "export", "job1", "--out", str(tmp_path / "o"),
                 "--history-dir", str(folder)]) == 0  # fmt: skip
    assert [p.name for p in (tmp_path / "o").iterdir()][0].endswith("-job1xyz-1.png")
    assert main(["history", "export", "nope", "--out", str(tmp_path / "o"),
                 "--history-dir", str(folder)]) == 2  # fmt: skip
    assert "no job 'nope'" in capsys.readouterr().err


def test_history_path_uses_the_data_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(
        Path(os.environ["PAINTBRIDGE_DATA_DIR"]) / "history"
    )
