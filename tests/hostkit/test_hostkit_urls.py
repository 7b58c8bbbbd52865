"""hostkit's server URL check: a URL urllib cannot send to is a PaintbridgeError that says what
to type, raised where the Client is made (the adapters' settings path), never a ValueError and
never a misleading "Could not reach"."""

from __future__ import annotations

import pytest

from paintbridge.hostkit.client import Client, NotRunning, PaintbridgeError
from paintbridge.hostkit.transport import EXAMPLE_URL, UrllibTransport, check_url

BAD = [
    # (what the user typed, what is wrong, the example the message offers)
    ("gpu.example.org", "must start with http:// or https://", "http://gpu.example.org"),
    ("localhost:7860", "must start with http:// or https://", "http://localhost:7860"),
    ("127.0.0.1:7860/", "must start with http:// or https://", "http://127.0.0.1:7860"),
    ("http://[::1", "is not a valid URL (", EXAMPLE_URL),
    ("ftp://gpu.example.org", "must start with http:// or https://, not ftp://", EXAMPLE_URL),
    ("http://", "has no valid host name", EXAMPLE_URL),
    ("http://:7860", "has no valid host name", EXAMPLE_URL),
    ("http://gpu example.org", "has no valid host name", EXAMPLE_URL),
    ("http://127.0.0.1:99999", "has the port '99999'; a port is a number from 1 to 65535", ""),
    ("http://127.0.0.1:abc", "has the port 'abc'; a port is a number from 1 to 65535", ""),
    ("http://127.0.0.1:0", "has the port '0'; a port is a number from 1 to 65535", ""),
    ("http://[::1]:-1", "has the port '-1'; a port is a number from 1 to 65535", ""),
    ("http://127.0.0.1:7860/?x=1", "must not have a ?query or #fragment", EXAMPLE_URL),
    ("http://127.0.0.1:7860#top", "must not have a ?query or #fragment", EXAMPLE_URL),
    ("", "is empty", EXAMPLE_URL),
    ("   ", "is empty", EXAMPLE_URL),
]


@pytest.mark.parametrize(("url", "problem", "example"), BAD)
def test_a_bad_server_url_says_what_to_type(url: str, problem: str, example: str) -> None:
    with pytest.raises(PaintbridgeError) as info:
        Client(url, "token")
    error = info.value
    assert type(error) is PaintbridgeError and not isinstance(error, NotRunning)
    assert error.code == "invalid_url" and error.status is None
    shown = url.strip()
    assert error.message.startswith(f"The server URL '{shown}' {problem}"), error.message
    assert error.message.endswith(
        f": type it like {example or EXAMPLE_URL} in the plug-in settings."
    )


@pytest.mark.parametrize(("url", "problem", "example"), BAD)
def test_the_transport_checks_its_url_too(url: str, problem: str, example: str) -> None:
    with pytest.raises(PaintbridgeError, match="The server URL") as info:
        UrllibTransport(url, timeout=1)
    assert info.value.code == "invalid_url"


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("http://127.0.0.1:7860", "http://127.0.0.1:7860"),
        ("http://127.0.0.1:7860/", "http://127.0.0.1:7860"),
        ("  https://gpu.example.org \n", "https://gpu.example.org"),
        ("HTTPS://gpu.example.org:443", "HTTPS://gpu.example.org:443"),
        ("http://[::1]:7860", "http://[::1]:7860"),
        ("http://[::1]", "http://[::1]"),
        ("http://localhost:", "http://localhost:"),  # an empty port is the scheme's own
        ("http://user@gpu.example.org:8443", "http://user@gpu.example.org:8443"),
        ("https://gpu.example.org/paintbridge/", "https://gpu.example.org/paintbridge"),
    ],
)
def test_a_good_server_url_is_kept(url: str, kept: str) -> None:
    assert check_url(url) == kept
    assert Client(url, "token").url == kept
