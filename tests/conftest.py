"""Every test runs with its own config, data and cache folders: nothing touches the user's.

The tiny test models are cached under .pytest_cache (they are rebuilt deterministically when
their definition changes), so a second run does not rebuild them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PAINTBRIDGE_CACHE_DIR", str(REPO / ".pytest_cache" / "paintbridge-cache"))


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAINTBRIDGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PAINTBRIDGE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path
