"""The guard's body buffer, driven as plain ASGI: how much a declared Content-Length makes it
hold before the bytes arrive, for a client with the token and for one that needs none."""

from __future__ import annotations

import asyncio
import tracemalloc

from paintbridge.server.guard import Guard

TOKEN = "secret-token"
DECLARED = 64 * 1024 * 1024


def _peak_while_waiting_for_the_body(headers: dict[str, str], path: str) -> tuple[int, int]:
    """Send the headers of a DECLARED-byte POST and one byte of its body, then hang up. Returns
    the traced allocation peak while the guard waited, and the status it answered (0: none)."""
    statuses: list[int] = []

    async def app(scope, receive, send) -> None:  # never reached: the client leaves first
        raise AssertionError("the guard passed on a body that never arrived")

    guard = Guard(
        app,
        token=TOKEN,
        host_names=frozenset({"127.0.0.1"}),
        max_body=DECLARED * 2,
        basic_prefixes=("/sdapi/",),
        open_prefixes=("/sdapi/",),
    )
    messages = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive():
        return messages.pop(0)

    async def send(message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    raw = {"host": "127.0.0.1", "content-length": str(DECLARED), **headers}
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in raw.items()],
    }
    tracemalloc.start()
    try:
        asyncio.run(guard(scope, receive, send))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, statuses[0] if statuses else 0


def test_a_tokenless_client_cannot_make_the_guard_hold_what_it_only_declares() -> None:
    peak, status = _peak_while_waiting_for_the_body({}, "/sdapi/v1/txt2img")
    assert status == 0  # let through (the opt-out), then it hung up
    assert peak < DECLARED // 8


def test_a_web_page_gets_no_opt_out() -> None:
    peak, status = _peak_while_waiting_for_the_body(
        {"origin": "http://example.com"}, "/sdapi/v1/txt2img"
    )
    assert status == 401
    assert peak < DECLARED // 8


def test_a_client_with_the_token_gets_a_buffer_of_the_declared_size() -> None:
    # The sizing that saves a growth copy of a large job's body; it also shows the peak above
    # measures the buffer.
    peak, status = _peak_while_waiting_for_the_body(
        {"authorization": f"Bearer {TOKEN}"}, "/v1/jobs"
    )
    assert status == 0
    assert peak >= DECLARED
