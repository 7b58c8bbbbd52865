"""What another user of the same machine can read: nothing of the server's secrets, and (from
a history folder paintbridge created) none of the user's prompts and pictures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from paintbridge.engine.types import GeneratedImage, GenerationRequest, GenerationResult
from paintbridge.history import History

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def record(history: History) -> list[Path]:
    image = GeneratedImage(Image.new("RGBA", (4, 4)), 7)
    result = GenerationResult([image], {"task": "txt2img", "prompt": "private", "steps": 1})
    return history.record("job1", GenerationRequest(task="txt2img", prompt="private"), result)


def test_a_new_history_folder_and_its_index_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which would leave them readable by everyone
    try:
        history = History(tmp_path / "deep" / "history")
        (png,) = record(history)
    finally:
        os.umask(old)
    assert stat.S_IMODE(history.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(history.index_path.stat().st_mode) == 0o600
    assert png.parent == history.folder  # the PNGs sit behind the 0700 folder


def test_a_folder_the_user_made_keeps_its_mode(tmp_path: Path) -> None:
    folder = tmp_path / "shared-history"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    record(History(folder))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
