"""The PaintbridgeError family: every error hostkit raises on purpose.

Standard library only, Python 2.7 and 3.8+. Each message says what to do about it.
"""

from __future__ import absolute_import, division, print_function


class PaintbridgeError(Exception):
    """Every error hostkit raises on purpose. `code` is a stable name, `status` the HTTP status."""

    default_code = "error"

    def __init__(self, message, code=None, status=None):
        Exception.__init__(self, message)
        self.message = message
        self.code = code or self.default_code
        self.status = status

    def __str__(self):
        message = self.message if self.message is not None else ""
        if str is bytes and not isinstance(message, bytes):  # Python 2 (GIMP 2.10): a unicode
            # message (a server's, from JSON) as UTF-8, so "%s" % exc does not raise
            # UnicodeEncodeError for a non-ASCII character
            return message.encode("utf-8")
        return message

    def __unicode__(self):  # Python 2 only: unicode(exc), u"%s" % exc
        message = self.message if self.message is not None else ""
        return message.decode("utf-8", "replace") if isinstance(message, bytes) else message


class NotRunning(PaintbridgeError):
    """No server answers at the URL (connection refused, unknown host, connection dropped)."""

    default_code = "not_running"


class Unauthorized(PaintbridgeError):
    """The server refused the token (HTTP 401)."""

    default_code = "unauthorized"


class RequestRejected(PaintbridgeError):
    """The server said the request was wrong (HTTP 4xx); the message is the server's."""

    default_code = "invalid_request"


class QueueFull(RequestRejected):
    """HTTP 429: the server's queue is full. `retry_after` is seconds (float) or None."""

    default_code = "queue_full"

    def __init__(self, message, code=None, status=429, retry_after=None):
        RequestRejected.__init__(self, message, code, status)
        self.retry_after = retry_after


class ServerFault(PaintbridgeError):
    """HTTP 5xx or an answer that is not the protocol: a bug in the server."""

    default_code = "server_error"


class Timeout(PaintbridgeError):
    """The server did not answer (or the job did not finish) in time."""

    default_code = "timeout"


class JobFailed(PaintbridgeError):
    """The job ended in state "failed"; the message is the server's."""

    default_code = "job_failed"


class Cancelled(PaintbridgeError):
    """The job was cancelled (by the user here, or on the server); no image was made."""

    default_code = "cancelled"


def not_running_message(url):
    """What to tell the user when nothing answers at `url`."""
    return (
        "Could not reach the paintbridge server at %s. Start it with `paintbridge serve`, "
        "or check the URL in the plug-in settings." % url
    )
