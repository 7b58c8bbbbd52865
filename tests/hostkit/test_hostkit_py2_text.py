"""hostkit's errors print under Python 2.7 (GIMP 2.10) with a non-ASCII message (a server's
message from JSON is unicode there): `"%s" % exc` must not raise UnicodeEncodeError; its own
non-ASCII text (status_text's ellipsis) is text there too. Runs
under each Python 2.7 found (skipped where none is), and the same checks here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from paintbridge.hostkit import PaintbridgeError, RequestRejected

HOSTKIT_PARENT = Path(__file__).resolve().parents[2] / "core" / "paintbridge"

SCRIPT = r"""
from __future__ import print_function
import sys
sys.path.insert(0, sys.argv[1])
import hostkit as h

exc = h.RequestRejected(u"`model` 'mod\xe8le' is not installed", code="model_not_found")
expected = u"Paintbridge: `model` 'mod\xe8le' is not installed".encode("utf-8")
assert "Paintbridge: %s" % (exc,) == expected
assert u"%s" % (exc,) == u"`model` 'mod\xe8le' is not installed"
assert str(h.PaintbridgeError("plain")) == "plain"
assert u"%s" % (h.PaintbridgeError(u"caf\xe9".encode("utf-8")),) == u"caf\xe9"
from hostkit.client import JobStatus, status_text
trouble = status_text(JobStatus({"state": "running"}), h.Timeout("late"))
assert trouble == u"No answer from the server; trying again\u2026", repr(trouble)
print("ok")
"""


def _python27() -> list[str]:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    versions = sorted(pyenv.glob("2.7*")) if pyenv.is_dir() else []
    found = [str(v / "bin" / "python2.7") for v in versions if (v / "bin" / "python2.7").is_file()]
    which = shutil.which("python2.7")
    return found or ([which] if which else [])


@pytest.mark.parametrize("python", _python27() or [None])
def test_non_ascii_error_message_prints_on_python_2(python: str | None) -> None:
    if python is None:
        pytest.skip("no Python 2.7 on this machine")
    run = subprocess.run(
        [python, "-c", SCRIPT, str(HOSTKIT_PARENT)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_error_message_is_str_on_python_3() -> None:
    exc = RequestRejected("`model` 'mod\xe8le' is not installed")
    assert "%s" % (exc,) == str(exc) == "`model` 'mod\xe8le' is not installed"  # noqa: UP031
    assert str(PaintbridgeError(None)) == ""  # type: ignore[arg-type]
