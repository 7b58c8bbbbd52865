"""The local HTTP service (docs/protocol.md): `create_app(ServerSettings(...))`.

Its two names are imported on first use: `paintbridge history` reads the running server's
folder from `paintbridge.server.discovery` without loading FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ServerSettings", "create_app"]

_HOMES = {"create_app": "paintbridge.server.app", "ServerSettings": "paintbridge.server.settings"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
