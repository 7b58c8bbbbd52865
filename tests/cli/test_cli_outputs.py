"""Where `generate | img2img | inpaint` write, what they refuse to write over, and what they
print on a stderr that is no terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import RunCli, run_subprocess

from paintbridge.cli import common

GENERATE = ("generate", "x", "--model", "test:tiny", "--steps", "2", "--width", "64",
            "--height", "64", "--seed", "1")  # fmt: skip


def test_an_existing_file_is_not_overwritten_without_overwrite(cli: RunCli, tmp_path: Path) -> None:
    """--count 2 -o b.png writes b-1.png: a file of the user's by that name is refused before
    the model loads, and replaced only with --overwrite."""
    theirs = tmp_path / "b-1.png"
    theirs.write_bytes(b"the user's own file")
    result = cli(*GENERATE, "--count", "2", "-o", tmp_path / "b.png")
    assert result.code == 2
    assert f"{str(theirs)!r} already exists: pass --overwrite" in result.err, result.err
    assert "loading" not in result.err  # refused before any waiting
    assert theirs.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-1.png"]

    again = cli(*GENERATE, "--count", "2", "-o", tmp_path / "b.png", "--overwrite")
    assert again.code == 0, again.err
    assert theirs.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-1.png", "b-2.png"]


def test_a_single_existing_output_is_refused_too(cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    result = cli(*GENERATE, "-o", out)
    assert result.code == 2
    assert "already exists" in result.err
    assert out.read_bytes() == b"keep me"


def test_a_folder_as_output_says_to_name_a_file(cli: RunCli, tmp_path: Path) -> None:
    result = cli(*GENERATE, "-o", tmp_path)
    assert result.code == 2
    assert f"{str(tmp_path)!r} is a folder: name the file to write, such as" in result.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.jpg", "out.webp", "out"])
def test_an_output_other_than_png_is_refused_with_the_reason(
    cli: RunCli, tmp_path: Path, name: str
) -> None:
    result = cli(*GENERATE, "-o", tmp_path / name)
    assert result.code == 2
    assert "must name a .png file (paintbridge writes PNG" in result.err, result.err
    assert list(tmp_path.iterdir()) == []


def test_without_a_terminal_progress_is_plain_lines(tmp_path: Path) -> None:
    """stderr to a file or pipe: no bars redrawn with carriage returns (ours or the loaders')."""
    out = tmp_path / "out.png"
    result = run_subprocess(*GENERATE, "-o", out)
    assert result.code == 0, result.err
    assert "\r" not in result.err, result.err
    assert "Loading pipeline components" not in result.err, result.err
    assert "txt2img: step 1/2\n" in result.err, result.err
    assert "txt2img: step 2/2\n" in result.err, result.err


def test_plain_progress_lines_are_few(monkeypatch, capsys) -> None:
    """The first step, then at most one line every LINE_INTERVAL seconds, then the last."""
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(common.time, "monotonic", lambda: next(clock))
    progress = common.Progress("txt2img", tty=False)
    for step in range(1, 13):  # one step a second
        progress(step, 12)
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"txt2img: step {n}/12" for n in (1, 6, 11, 12)]


def test_no_command_is_a_usage_error(cli: RunCli) -> None:
    result = cli()
    assert result.code == 2
    assert "usage: paintbridge" in result.err
    assert result.out == ""
