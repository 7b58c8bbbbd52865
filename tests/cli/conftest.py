"""The `cli` fixture: run the `paintbridge` command in-process through `cli.main`."""

from __future__ import annotations

import os

import pytest
from cli_support import Outcome, RunCli

from paintbridge.cli import main


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """`cli("generate", "a cat", ...)` -> Outcome; argparse's SystemExit becomes the code."""

    def run(*args: str | os.PathLike[str]) -> Outcome:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors and --help
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run
