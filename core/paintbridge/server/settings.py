"""ServerSettings: everything `create_app` needs, injected (the CLI fills it from its flags)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from paintbridge.engine.types import EngineSettings, Limits
from paintbridge.server.guard import allowed_host_names, is_loopback, split_host

__all__ = ["ServerSettings", "body_limit_for"]

# JSON field names, the prompts and everything but the pixels fit in this with room to spare.
_BODY_OVERHEAD = 256 * 1024


def body_limit_for(limits: Limits) -> int:
    """The largest body a valid request can need: an rgba8 image and an a8 mask at the pixel
    limit, base64-encoded (4 bytes per 3), plus the rest of the JSON."""
    raw = limits.max_pixels * 4 + limits.max_pixels
    return (raw + 2) // 3 * 4 + _BODY_OVERHEAD + 2 * limits.max_prompt_chars * 6


@dataclass(frozen=True)
class ServerSettings:
    token: str
    host: str = "127.0.0.1"
    port: int = 7860  # the real port (the CLI resolves port 0 before building the settings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    history_dir: Path | None = None  # None: paintbridge.config.history_dir()
    queue_size: int = 16  # jobs waiting; one more is a 429
    allowed_hosts: tuple[str, ...] = ()  # extra names the Host header may carry
    max_body_bytes: int | None = None  # None: body_limit_for(engine.limits)
    discovery_file: Path | None = None  # server.json, written once serving; None: not written
    keep_seconds: float = 3600.0  # finished jobs answer this long...
    keep_count: int = 200  # ...and at most this many of them
    idle_seconds: float = 60.0  # memory a job freed is kept this long for the next job
    # --- AUTOMATIC1111 compatibility (server/a1111.py) ---
    a1111: bool = False  # also serve the /sdapi/v1 routes
    a1111_no_auth: bool = False  # /sdapi/ without a token: only bound to loopback, no extra hosts

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the server needs a non-empty token")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {self.queue_size}")
        for name in self.allowed_hosts:
            if not _is_host_name(name):
                raise ValueError(
                    "an allowed host (--allow-host) is a name alone, as a Host header carries "
                    f"it without its port, such as gpu.example.org: got {name!r}"
                )
        if self.a1111_no_auth:
            if not self.a1111:
                raise ValueError("a1111_no_auth needs a1111 (serve --a1111 --a1111-no-auth)")
            remote = [n for n in self.allowed_hosts if not is_loopback(n)]
            if not is_loopback(self.host) or remote:
                raise ValueError(
                    "the A1111 routes may go without a token only on a loopback-only server: "
                    f"bound to {self.host!r}"
                    + (f" and also answering to {', '.join(remote)}" if remote else "")
                    + "; bind to 127.0.0.1 with no --allow-host, or drop --a1111-no-auth and "
                    "give clients the token as the HTTP Basic password"
                )

    @property
    def body_limit(self) -> int:
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return body_limit_for(self.engine.limits)

    @property
    def host_names(self) -> frozenset[str]:
        return allowed_host_names(self.host, self.allowed_hosts)

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host in ("::", "[::]"):
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def _is_host_name(name: str) -> bool:
    """A name a Host header can carry, without its port: a DNS name, an IPv4 address, or an
    IPv6 address (bracketed or not); not a URL, not name:port."""
    try:
        ipaddress.IPv6Address(name.strip().removeprefix("[").removesuffix("]"))
        return True
    except ValueError:
        pass
    parts = split_host(name)
    return parts is not None and parts[1] is None and not any(c in name for c in "/ \t@")
