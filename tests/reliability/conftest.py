"""The reliability tests drive a real `paintbridge serve` subprocess; they share its helper."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/server/server_support.py starts and stops the real server; reuse it, do not copy it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
