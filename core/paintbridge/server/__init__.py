"""The local HTTP service (docs/protocol.md): `create_app(ServerSettings(...))`."""

from paintbridge.server.app import create_app
from paintbridge.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
