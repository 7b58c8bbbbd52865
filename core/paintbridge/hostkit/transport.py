"""The one way hostkit sends HTTP: UrllibTransport (urllib, proxies bypassed for loopback),
`check_url`, which accepts a server URL or says what to type instead, and `json_body`, which
makes a request body of a JSON payload without copying its image data.

Standard library only, Python 2.7 and 3.8+. A Client takes any callable with the same shape,
so tests can swap it for a scripted one.
"""

from __future__ import absolute_import, division, print_function

import base64
import json
import socket
import sys
import threading

from .errors import NotRunning, PaintbridgeError, Timeout, not_running_message

try:  # Python 3
    from http.client import HTTPException  # novermin
    from urllib.error import HTTPError, URLError  # novermin
    from urllib.parse import quote, urlsplit  # novermin
    from urllib.request import (  # novermin
        HTTPRedirectHandler,
        ProxyHandler,
        Request,
        build_opener,
    )
except ImportError:  # Python 2.7 (GIMP 2.10)
    from urllib import quote  # novermin

    from httplib import HTTPException  # novermin
    from urllib2 import (  # novermin
        HTTPError,
        HTTPRedirectHandler,
        ProxyHandler,
        Request,
        URLError,
        build_opener,
    )
    from urlparse import urlsplit  # novermin

__all__ = [
    "Base64",
    "JsonBody",
    "Later",
    "UrllibTransport",
    "check_url",
    "is_loopback",
    "json_body",
    "quote",
    "urlsplit",
]

# A job's image travels as a base64 string of 85 MB for a 4096 x 4096 crop. Strings this long are
# sent straight from the payload, PIECE characters at a time, instead of being copied into one
# JSON text and then into its bytes (two more copies of the whole job while it is in memory).
LONG_STRING = 1 << 16
PIECE = 1 << 20
_TEXT = type(b"".decode("ascii"))  # str on Python 3, unicode on Python 2
# The characters JSON escapes in a string (ensure_ascii also escapes all non-ASCII ones).
_ESCAPED = bytes(bytearray(range(32))) + b'"\\\x7f'


def is_loopback(host):
    """True for a host name that is this computer (localhost, ::1, 127.x.x.x)."""
    host = (host or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


EXAMPLE_URL = "http://127.0.0.1:7860"
# ECONNREFUSED on Linux, macOS and Windows, for Python 2's socket.error (Python 3 has its own type)
_REFUSED_ERRNOS = (111, 61, 10061)


def check_url(url):
    """`url` without spaces around it or a trailing slash, once it is a server URL urllib can
    send to: http:// or https://, a host, a port from 1 to 65535 if any, no ?query or #fragment.
    Raises PaintbridgeError (code "invalid_url") whose message says what to type instead."""
    text = (url or "").strip()
    if not text:
        raise _invalid_url(text, "is empty")
    if "://" not in text:
        example = "http://" + text.rstrip("/")
        raise _invalid_url(text, "must start with http:// or https://", example)
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise _invalid_url(text, "is not a valid URL (%s)" % (exc,))  # noqa: B904
    if parts.scheme.lower() not in ("http", "https"):
        raise _invalid_url(text, "must start with http:// or https://, not %s://" % parts.scheme)
    host = parts.hostname or ""
    if not host or any(char.isspace() for char in host):
        raise _invalid_url(text, "has no valid host name")
    port = _port_text(parts.netloc)
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise _invalid_url(text, "has the port '%s'; a port is a number from 1 to 65535" % port)
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise _invalid_url(text, "must not have a ?query or #fragment")
    return text.rstrip("/")


def _port_text(netloc):
    """The port of `netloc` as written ("" when none): user@host:port, [v6 address]:port."""
    host_port = netloc.rpartition("@")[2]
    if host_port.startswith("["):
        host_port = host_port.partition("]")[2]
    return host_port.partition(":")[2]


def _invalid_url(url, problem, example=EXAMPLE_URL):
    return PaintbridgeError(
        "The server URL '%s' %s: type it like %s in the plug-in settings."
        % (url, problem, example),
        code="invalid_url",
    )


def _refused(reason):
    """True when `reason` (a URLError's) says nothing listens at the address: the server is not
    running there, as opposed to an answer that was dropped or late."""
    if sys.version_info[0] >= 3:
        return isinstance(reason, ConnectionRefusedError)  # novermin
    return isinstance(reason, socket.error) and getattr(reason, "errno", None) in _REFUSED_ERRNOS


class Base64(object):
    """Bytes that a JSON payload carries as a base64 string, encoded only while the body is
    sent (json_body), PIECE characters at a time: building a job costs the editor's GUI thread
    no encoding, and a 4096 x 4096 crop's 85 MB string never exists. str() is the string."""

    __slots__ = ("data",)

    def __init__(self, data):
        # bytes, so that len() and slices count bytes (not a memoryview's items) and the data
        # cannot change while another thread sends it
        self.data = data if isinstance(data, bytes) else memoryview(data).tobytes()

    def __len__(self):
        return (len(self.data) + 2) // 3 * 4

    def pieces(self):
        """The base64 text as ASCII bytes, in pieces of at most PIECE characters."""
        step = PIECE // 4 * 3  # whole 3-byte groups: the pieces join into the one encoding
        for start in range(0, len(self.data), step):
            yield base64.b64encode(self.data[start : start + step])

    def __str__(self):
        return base64.b64encode(self.data).decode("ascii")

    def __repr__(self):
        return "Base64(%d bytes)" % len(self.data)


class Later(object):
    """A value of a JSON payload made by `make()` when the payload is first written (json_body,
    json_text), then kept: a plug-in reads its layer on the GUI thread, and the conversion of
    those pixels to the wire's bytes runs on the thread that sends the job (a JobWatch's), not
    on the GUI's. `get()` is the value (made once, whichever thread asks first)."""

    __slots__ = ("_make", "_value", "_error", "_lock")

    def __init__(self, make):
        self._make = make
        self._value = None
        self._error = None
        self._lock = threading.Lock()

    def get(self):
        """The value; what make() raised, again, when it failed (make runs once: it lets go of
        what it held, the pixels as read, whether it worked or not)."""
        with self._lock:
            if self._make is not None:
                make, self._make = self._make, None
                try:
                    self._value = make()
                except Exception as exc:
                    self._error = exc
                    raise
            if self._error is not None:
                raise self._error
            return self._value

    def __repr__(self):
        return "Later(%s)" % ("made" if self._make is None else "to make")


def _as_text(value):
    if isinstance(value, Base64):
        return str(value)
    if isinstance(value, Later):
        return value.get()
    raise TypeError("%s is not JSON serializable" % type(value).__name__)


def json_text(payload):
    """`payload` as JSON text (json.dumps, with each Base64 as its string)."""
    return json.dumps(payload, default=_as_text)


def json_body(payload):
    """`payload` as a JSON request body: bytes, or a JsonBody when it holds long strings or
    Base64 data."""
    long_strings = []
    skeleton = json.dumps(_lift_long_strings(payload, long_strings))
    spans = []
    for index, text in enumerate(long_strings):
        quoted = json.dumps(_marker(index))
        start = skeleton.find(quoted)
        if skeleton.find(quoted, start + 1) != -1:  # a string of the payload equals a marker
            return json_text(payload).encode("utf-8")
        spans.append((start, start + len(quoted), text))
    if not spans:
        return skeleton.encode("utf-8")
    parts, done = [], 0
    for start, end, text in sorted(spans, key=lambda span: span[0]):
        # the skeleton's quotes around the marker stay; the long string goes between them
        parts += [skeleton[done : start + 1].encode("utf-8"), text]
        done = end - 1
    parts.append(skeleton[done:].encode("utf-8"))
    return JsonBody(parts)


def _marker(index):
    # json.dumps writes "\x00" as \u0000: no string of a real job looks like this
    return "\x00hostkit-long-string-%d\x00" % index


def _lift_long_strings(value, found):
    """A copy of `value` where each Base64 and each long string JSON writes as it is (base64
    text) is replaced by a marker; they are appended to `found`, marker i for found[i]. Each
    Later is made here."""
    if isinstance(value, Later):
        value = value.get()
    if isinstance(value, Base64):
        found.append(value)
        return _marker(len(found) - 1)
    if isinstance(value, dict):
        return {key: _lift_long_strings(item, found) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lift_long_strings(item, found) for item in value]
    if isinstance(value, _TEXT) and len(value) >= LONG_STRING and _written_as_is(value):
        found.append(value)
        return _marker(len(found) - 1)
    return value


def _written_as_is(text):
    """True when JSON writes `text` unchanged between its quotes: ASCII, nothing to escape."""
    for start in range(0, len(text), PIECE):
        try:
            piece = text[start : start + PIECE].encode("ascii")
        except UnicodeEncodeError:
            return False
        if len(piece.translate(None, _ESCAPED)) != len(piece):
            return False
    return True


class JsonBody(object):
    """A JSON request body kept in parts, never joined: bytes, long ASCII strings of the
    payload itself and its Base64 data, encoded PIECE characters at a time only while the body
    is sent.

    len(body) is its size in bytes (for Content-Length), iterating gives its bytes in pieces
    (what http.client sends on Python 3), and bytes(body) or body.tobytes() joins them, for a
    transport that needs the whole body at once."""

    def __init__(self, parts):
        self.parts = [part for part in parts if part]
        self.size = sum(len(part) for part in self.parts)  # ASCII: one byte per character

    def __len__(self):
        return self.size

    def __iter__(self):
        for part in self.parts:
            if isinstance(part, bytes):
                yield part
            elif isinstance(part, Base64):
                for piece in part.pieces():
                    yield piece
            else:
                for start in range(0, len(part), PIECE):
                    yield part[start : start + PIECE].encode("ascii")

    def tobytes(self):
        return b"".join(self)

    __bytes__ = tobytes

    def __repr__(self):
        return "JsonBody(%d bytes)" % self.size


class _Reader(object):
    """A JsonBody as a file for Python 2's httplib, which sends a str or a file, nothing else."""

    def __init__(self, body):
        self._pieces = iter(body)
        self._piece, self._offset = b"", 0

    def read(self, size):
        if self._offset >= len(self._piece):
            self._piece, self._offset = next(self._pieces, b""), 0
        chunk = self._piece[self._offset : self._offset + size]
        self._offset += len(chunk)
        return chunk


class _NoRedirect(HTTPRedirectHandler):
    """A 3xx comes back as the answer: urllib would follow it with the same headers, the token
    among them, to wherever it points (another port, another host)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class UrllibTransport(object):
    """Sends one request with urllib: `transport(method, path, body, headers)` ->
    (status, headers with lower-case names, body bytes). HTTP error statuses are returned, not
    raised; network failures raise NotRunning or Timeout. A NotRunning whose `refused` is true
    means nothing listens at the address (the server is not running), rather than an answer that
    was dropped on the way. Proxies are bypassed for loopback; redirects are not followed (a 3xx
    is returned). `base_url` goes through check_url.
    """

    def __init__(self, base_url, timeout=30):
        self.base_url = check_url(base_url)
        self.timeout = timeout
        host = urlsplit(self.base_url).hostname
        handlers = [ProxyHandler({})] if is_loopback(host) else []
        self._opener = build_opener(_NoRedirect(), *handlers)

    def __call__(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if isinstance(body, JsonBody):
            headers["Content-Length"] = str(len(body))
            if sys.version_info[0] < 3:
                body = _Reader(body)
        try:
            request = Request(self.base_url + path, data=body, headers=headers)
        except ValueError as exc:
            raise _invalid_url(self.base_url + path, "cannot be sent (%s)" % (exc,))  # noqa: B904
        request.get_method = lambda: method
        try:
            response = self._opener.open(request, timeout=self.timeout)
            try:
                return response.getcode(), _lower(response.info()), response.read()
            finally:
                response.close()
        except HTTPError as exc:
            try:
                data = exc.read()
            except Exception:
                data = b""
            return exc.code, _lower(exc.info()), data
        except URLError as exc:
            if isinstance(exc.reason, socket.timeout):
                raise self._timeout()  # noqa: B904
            error = NotRunning(not_running_message(self.base_url) + " (%s)" % (exc.reason,))
            error.refused = _refused(exc.reason)
            raise error  # noqa: B904
        except socket.timeout:
            raise self._timeout()  # noqa: B904
        except (HTTPException, socket.error) as exc:
            error = NotRunning(
                not_running_message(self.base_url) + " (the connection failed: %s)" % (exc,)
            )
            error.refused = _refused(exc)
            raise error  # noqa: B904

    def _timeout(self):
        return Timeout(
            "The paintbridge server at %s did not answer within %s s. It may be busy loading a "
            "model, or the connection dropped; try again." % (self.base_url, self.timeout)
        )


def _lower(headers):
    try:
        items = headers.items()
    except AttributeError:
        return {}
    return dict((str(k).lower(), v) for k, v in items)
