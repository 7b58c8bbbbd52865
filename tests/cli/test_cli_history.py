"""`paintbridge history` prints any prompt, whatever the console's encoding."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cli_support import PAINTBRIDGE, subprocess_env
from PIL import Image

from paintbridge.engine.types import GeneratedImage, GenerationRequest, GenerationResult
from paintbridge.history import History


def test_history_redirected_in_a_legacy_encoding_prints_what_it_can(tmp_path: Path) -> None:
    """Windows' cp1252 has no emoji: `history > file` there printed a traceback and no list."""
    request = GenerationRequest(task="txt2img", prompt="a cat \U0001f431 on a mat")
    result = GenerationResult([GeneratedImage(Image.new("RGBA", (8, 8)), 7)], {})
    History(tmp_path / "history").record("0123abcd", request, result)
    env = {**subprocess_env(), "PYTHONIOENCODING": "cp1252"}
    done = subprocess.run(
        [str(PAINTBRIDGE), "history", "--history-dir", str(tmp_path / "history")],
        capture_output=True,
        env=env,
        timeout=120,
    )
    err = done.stderr.decode("cp1252", errors="replace")
    assert done.returncode == 0, err
    assert "Traceback" not in err
    out = done.stdout.decode("cp1252")
    assert "0123abcd" in out and "'a cat ? on a mat'" in out
