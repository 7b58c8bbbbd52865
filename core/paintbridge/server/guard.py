"""The gate in front of every route: Host check (421), bearer token (401), body size (413).

A pure ASGI middleware, so a request is refused before its body is read: an unauthenticated
client cannot make the server buffer anything, and an authenticated one at most `max_body`
bytes (counted as they arrive, whatever Content-Length claims). Requests that need no token
(the loopback-only AUTOMATIC1111 opt-out, never for a request a web page made) are buffered
as their bytes arrive, never sized in advance by the Content-Length they declare. It never
adds CORS headers: a web page in the user's browser must not be able to read anything from
this server.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import ipaddress
import json
import logging
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LOOPBACK_NAMES", "Guard", "allowed_host_names", "is_loopback", "split_host"]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
log = logging.getLogger("paintbridge.server")
OPEN_ROUTES = frozenset({("GET", "/v1/live"), ("HEAD", "/v1/live")})  # HEAD: uptime monitors


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without brackets)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bracketed(host: str) -> str:
    """IPv6 literals appear in Host headers and URLs in brackets."""
    host = host.lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_host_names(bound_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a Host header may carry: the bound address (unless a wildcard), the loopback
    names (only this machine can use those) and the configured extra names."""
    names = set(LOOPBACK_NAMES)
    if bound_host not in ("", "0.0.0.0", "::", "[::]"):
        names.add(_bracketed(bound_host))
    names.update(_bracketed(name.strip()) for name in extra if name.strip())
    return frozenset(names)


def split_host(value: str) -> tuple[str, str | None] | None:
    """`name[:port]` -> (lowercased name, port or None); None when it is malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if not rest:
            return name, None
        if not rest.startswith(":"):
            return None
        port: str | None = rest[1:]
    elif ":" in value:
        name, port = value.rsplit(":", 1)
    else:
        name, port = value, None
    if not name or (port is not None and not (port.isdigit() and len(port) <= 5)):
        return None
    return name, port


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, raw, body


class Guard:
    """Host check, then token check, then a bounded body read; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        host_names: frozenset[str],
        max_body: int,
        basic_prefixes: tuple[str, ...] = (),
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        """`basic_prefixes`: paths under them also take HTTP Basic, any user, the token as
        password (AUTOMATIC1111 clients). `open_prefixes`: paths under them need no token unless
        the request comes from a web page (Origin, Referer, Sec-Fetch-Site); only for a
        loopback-only server (ServerSettings)."""
        if not token:
            raise ValueError("the server needs a non-empty token")
        self.app = app
        self._token = token.encode()
        self._host_names = host_names
        self._max_body = max_body
        self._basic_prefixes = basic_prefixes
        self._open_prefixes = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        tokenless = self._needs_no_token(scope, headers)
        refusal = self._check_host(headers)
        if refusal is None and not tokenless:
            refusal = self._check_token(headers, scope.get("path", ""))
        if refusal is None:
            length = headers.get("content-length")
            if length is not None and not length.strip().isdigit():
                refusal = _error(400, "invalid_request", "Content-Length is not a number")
            elif length is not None and int(length) > self._max_body:
                refusal = self._too_large()
        if refusal is not None:
            await _send(send, *refusal)
            return
        # An inpaint of a 4096 px crop is a 107 MB body, so it is held once: not as chunks joined
        # at the end (the join holds it twice), nor as a bytearray (pydantic copies one before
        # parsing; bytes it reads in place). BytesIO builds a bytes object and getvalue() hands
        # that very object over (CPython); sized by Content-Length first, so no growth copies it,
        # but only for a client that sent the token: sizing writes zeros through the whole buffer.
        body = io.BytesIO()
        expected = int(length) if length is not None and not tokenless else 0
        if expected > 0:
            body.seek(expected - 1)
            body.write(b"\0")
            body.seek(0)
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                await _send(send, *self._too_large())
                return
            body.write(chunk)
            if not message.get("more_body", False):
                break
        body.truncate(size)  # a body shorter than its Content-Length
        replay = _replay(body.getvalue(), receive)
        # The app's parse then holds the only reference, so a job's body is freed once parsed,
        # before its images are decoded.
        del body
        await self._shielded(scope, replay, send)

    async def _shielded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; an exception it lets out is a bug: log it, answer 500, keep serving."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send(
                    send,
                    *_error(
                        500,
                        "internal_error",
                        "internal server error; this is a bug in paintbridge: please report "
                        "it with the server's log",
                    ),
                )

    def _check_host(self, headers: Headers):
        value = headers.get("host")
        parsed = split_host(value) if value is not None else None
        if parsed is None or parsed[0] not in self._host_names:
            shown = "none" if value is None else repr(value[:100])
            return _error(
                421,
                "misdirected",
                f"this server does not answer to the Host {shown}; it answers to "
                f"{', '.join(sorted(self._host_names))} (add a name with `serve --allow-host`)",
            )
        return None

    def _needs_no_token(self, scope: Scope, headers: Headers) -> bool:
        path = scope.get("path", "")
        if (scope.get("method"), path) in OPEN_ROUTES:
            return True
        # The AUTOMATIC1111 routes' loopback-only opt-out (server/a1111.py); never for a web page
        return path.startswith(self._open_prefixes) and not (_from_a_web_page(headers))

    def _check_token(self, headers: Headers, path: str):
        scheme, _, given = headers.get("authorization", "").partition(" ")
        # --- AUTOMATIC1111 routes: HTTP Basic auth too
        if path.startswith(self._basic_prefixes):
            if scheme.lower() == "basic" and self._basic_password_ok(given):
                return None
            if scheme.lower() != "bearer":
                return _error(
                    401,
                    "unauthorized",
                    f"{'no password was sent' if not given else 'the password is wrong'}: use "
                    "HTTP Basic auth with any user name and the server's token (from server.json "
                    "or `paintbridge serve --token`) as the password",
                    {"WWW-Authenticate": 'Basic realm="paintbridge"'},
                )
        # --- end of the AUTOMATIC1111 part
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token):
            return None
        reason = "no token was sent" if not given else "the token is wrong"
        return _error(
            401,
            "unauthorized",
            f"{reason}: send `Authorization: Bearer <token>` with the token from server.json "
            "(or the one given to `paintbridge serve --token`)",
            {"WWW-Authenticate": "Bearer"},
        )

    def _basic_password_ok(self, given: str) -> bool:
        try:
            decoded = base64.b64decode(given.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        _, colon, password = decoded.partition(b":")
        return bool(colon) and hmac.compare_digest(password, self._token)

    def _too_large(self):
        return _error(
            413,
            "too_large",
            f"the request body is over the server's limit of {self._max_body} bytes: "
            "send a smaller image or crop",
            {"Connection": "close"},
        )


def _from_a_web_page(headers: Headers) -> bool:
    """Whether a browser sent the request on behalf of a page: it has an Origin (every
    cross-origin POST), a Referer, or a Sec-Fetch-Site other than `none` (a request the user
    made by typing the URL); browsers set these and a page's script cannot remove them.
    Clients that are not browsers send none of them."""
    site = headers.get("sec-fetch-site")
    return "origin" in headers or "referer" in headers or (site is not None and site != "none")


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read (in one message), then the real
    channel. It keeps no reference to the body once handed over."""
    pending = [body]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed
