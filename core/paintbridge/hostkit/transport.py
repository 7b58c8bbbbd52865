"""The one way hostkit sends HTTP: UrllibTransport (urllib, proxies bypassed for loopback).

Standard library only, Python 2.7 and 3.8+. A Client takes any callable with the same shape,
so tests can swap it for a scripted one.
"""

from __future__ import absolute_import, division, print_function

import socket

from .errors import NotRunning, Timeout, not_running_message

try:  # Python 3
    from http.client import HTTPException  # novermin
    from urllib.error import HTTPError, URLError  # novermin
    from urllib.parse import quote, urlsplit  # novermin
    from urllib.request import ProxyHandler, Request, build_opener  # novermin
except ImportError:  # Python 2.7 (GIMP 2.10)
    from urllib import quote  # novermin

    from httplib import HTTPException  # novermin
    from urllib2 import HTTPError, ProxyHandler, Request, URLError, build_opener  # novermin
    from urlparse import urlsplit  # novermin

__all__ = ["UrllibTransport", "is_loopback", "quote", "urlsplit"]


def is_loopback(host):
    """True for a host name that is this computer (localhost, ::1, 127.x.x.x)."""
    host = (host or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


class UrllibTransport(object):
    """Sends one request with urllib: `transport(method, path, body, headers)` ->
    (status, headers with lower-case names, body bytes). HTTP error statuses are returned, not
    raised; network failures raise NotRunning or Timeout. Proxies are bypassed for loopback."""

    def __init__(self, base_url, timeout=30):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        host = urlsplit(self.base_url).hostname
        self._opener = build_opener(ProxyHandler({})) if is_loopback(host) else build_opener()

    def __call__(self, method, path, body=None, headers=None):
        request = Request(self.base_url + path, data=body, headers=dict(headers or {}))
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
            raise NotRunning(  # noqa: B904
                not_running_message(self.base_url) + " (%s)" % (exc.reason,), status=None
            )
        except socket.timeout:
            raise self._timeout()  # noqa: B904
        except (HTTPException, socket.error) as exc:
            raise NotRunning(  # noqa: B904
                not_running_message(self.base_url) + " (the connection failed: %s)" % (exc,)
            )

    def _timeout(self):
        return Timeout(
            "The paintbridge server at %s did not answer within %s s. It may be busy loading a "
            "model; try again, or raise the timeout in the plug-in settings."
            % (self.base_url, self.timeout)
        )


def _lower(headers):
    try:
        items = headers.items()
    except AttributeError:
        return {}
    return dict((str(k).lower(), v) for k, v in items)
