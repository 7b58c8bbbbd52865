"""Where paintbridge keeps things. Every path can be moved with one environment variable,
so tests and portable installs never touch the user's real folders."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "paintbridge"


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else Path(default)


def config_dir() -> Path:
    """Holds server.json (the running server's URL and token) and settings."""
    return _dir("PAINTBRIDGE_CONFIG_DIR", platformdirs.user_config_dir(APP, appauthor=False))


def data_dir() -> Path:
    """Holds the history of finished results."""
    return _dir("PAINTBRIDGE_DATA_DIR", platformdirs.user_data_dir(APP, appauthor=False))


def cache_dir() -> Path:
    """Holds rebuildable things, such as the tiny test models."""
    return _dir("PAINTBRIDGE_CACHE_DIR", platformdirs.user_cache_dir(APP, appauthor=False))


def models_dir() -> Path:
    """The default folder for local models (diffusers folders and .safetensors files)."""
    return data_dir() / "models"


def history_dir() -> Path:
    return data_dir() / "history"


def server_file() -> Path:
    return config_dir() / "server.json"
