"""A history folder the CLI cannot use: a hostile index still lists and exports, and `serve`
refuses at start a folder it could not write (instead of losing every job's image)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import uvicorn
from cli_support import RunCli
from PIL import Image

from paintbridge import config
from paintbridge.engine.types import GeneratedImage, GenerationRequest, GenerationResult
from paintbridge.history import History
from paintbridge.server import discovery


def test_history_lists_and_exports_past_lines_that_break_the_parser(
    tmp_path: Path, cli: RunCli
) -> None:
    folder = tmp_path / "h"
    request = GenerationRequest(task="txt2img", prompt="a cat")
    result = GenerationResult([GeneratedImage(Image.new("RGBA", (8, 8)), 7)], {})
    History(folder).record("goodjob1", request, result)
    with open(folder / "index.jsonl", "a") as index:
        index.write(json.dumps({"time": "t", "job": "inf", "files": [], "seeds": [1e999]}) + "\n")
        index.write("[" * 100000 + "]" * 100000 + "\n")
        index.write(json.dumps({"time": "t", "job": "longname", "files": ["a" * 300]}) + "\n")
    listed = cli("history", "--history-dir", folder)
    assert listed.code == 0 and "goodjob1" in listed.out, listed.err
    exported = cli(
        "history", "export", "goodjob1", "--out", tmp_path / "o", "--history-dir", folder
    )
    assert exported.code == 0 and "goodjob1-1.png" in exported.out, exported.err
    gone = cli("history", "export", "longname", "--out", tmp_path / "o", "--history-dir", folder)
    assert gone.code == 2 and "is gone from the history folder" in gone.err


def test_serve_refuses_a_history_folder_it_cannot_write(
    tmp_path: Path, cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def serve(*args: object, **kwargs: object) -> None:
        pytest.fail("served with a history folder it cannot write")

    monkeypatch.setattr(uvicorn.Server, "run", serve)
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = cli("serve", "--port", "0", "--model", "test:tiny", "--history-dir", blocker / "hist")
    assert done.code == 2
    assert str(blocker / "hist") in done.err and "--history-dir" in done.err
    assert "is a file, not a folder" in done.err and "serving on" not in done.err
    assert len(done.err.strip().splitlines()) == 1


def test_history_looks_in_the_running_servers_folder(
    tmp_path: Path, cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plug-ins' recovery command (`paintbridge history export JOB --out DIR`) works for a
    server started with --history-dir: server.json names its folder while it runs."""
    folder = tmp_path / "elsewhere"
    request = GenerationRequest(task="txt2img", prompt="a cat")
    result = GenerationResult([GeneratedImage(Image.new("RGBA", (8, 8)), 7)], {})
    History(folder).record("servedjob", request, result)
    server_file = config.server_file()
    discovery.write(server_file, url="http://127.0.0.1:1", token="t", version="0", history=folder)
    exported = cli("history", "export", "servedjob", "--out", tmp_path / "o")
    assert exported.code == 0 and "servedjob-1.png" in exported.out, exported.err
    assert cli("history", "path").out.strip() == str(folder)
    # once that server is gone (its pid no longer runs), the default folder again
    info = json.loads(server_file.read_text())
    server_file.write_text(json.dumps({**info, "pid": 2**22 + 12345}))
    assert cli("history", "path").out.strip() == str(config.history_dir())
    missing = cli("history", "export", "servedjob", "--out", tmp_path / "o")
    assert missing.code == 2 and "add the same --history-dir" in missing.err
    # the hint is for the default folder only: with --history-dir the user chose it
    chosen = cli("history", "export", "nojob", "--out", tmp_path / "o", "--history-dir", folder)
    assert chosen.code == 2 and "no job 'nojob'" in chosen.err and "same" not in chosen.err
    # a relative folder (an older server's) says nothing about where to look from here
    server_file.write_text(json.dumps({**info, "history": "elsewhere"}))
    assert cli("history", "path").out.strip() == str(config.history_dir())


def test_serve_names_its_history_folder_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paintbridge.cli import build_parser
    from paintbridge.cli.serve import build_settings

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["serve", "--history-dir", "hist"])
    assert build_settings(args, 7860).history_dir == tmp_path / "hist"
