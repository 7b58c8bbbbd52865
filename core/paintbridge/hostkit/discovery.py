"""Finding and starting the local paintbridge server.

`paintbridge serve` announces itself in server.json ({"url", "token", ...}) in the config
folder; `paintbridge plugins install` writes hostkit.json ({"command": [...]}) there so a
plug-in can start the server itself. Two styles:

- blocking: `discover()` (behind `Client.discover`) returns a live Client, starting the server
  and waiting for it if need be (GIMP, Blender's background mode);
- non-blocking, for a GUI timer: `try_local_client()` (one short request) and `launch_server()`,
  which starts the process and returns a ServerLaunch at once; call its `check()` from a timer.

A server named in server.json is used only once it proves it holds the token written there
(`live_proof`), without the token being sent: after a crash the file stays, and another program
that took its port must not receive the token and the user's pictures.

Standard library only, Python 2.7 and 3.8+.
"""

from __future__ import absolute_import, division, print_function

import binascii
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

from .errors import NotRunning, PaintbridgeError, Timeout, not_running_message

APP = "paintbridge"
DEFAULT_URL = "http://127.0.0.1:7860"

# The servers this process started: kept so they are never garbage-collected while running
# (which would warn), and so a host (or a test) can stop them.
STARTED = []

# Variables a host sets for its own Python that would break the server's Python.
_HOST_ONLY_VARS = (
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "PYTHONNOUSERSITE",
)

_NO_LAUNCHER = (
    "Run `paintbridge plugins install` once so the plug-in can start the server by itself"
)


# --- paths -----------------------------------------------------------------------------------


def user_config_dir(platform=None, environ=None, home=None):
    """paintbridge's config folder, as paintbridge itself computes it.

    $PAINTBRIDGE_CONFIG_DIR if set; else platformdirs' user_config_dir("paintbridge"):
    Linux $XDG_CONFIG_HOME/paintbridge (default ~/.config/paintbridge), macOS
    ~/Library/Application Support/paintbridge, Windows %LOCALAPPDATA%\\paintbridge."""
    platform = sys.platform if platform is None else platform
    environ = os.environ if environ is None else environ
    windows = platform.startswith("win")
    join = _ntjoin if windows else _posixjoin
    if home is None:
        home = os.path.expanduser("~")
    override = environ.get("PAINTBRIDGE_CONFIG_DIR")
    if override:
        return _expand(override, home)
    if windows:
        base = environ.get("LOCALAPPDATA") or join(home, "AppData", "Local")
    elif platform == "darwin":
        base = join(home, "Library", "Application Support")
    else:
        base = (environ.get("XDG_CONFIG_HOME") or "").strip() or join(home, ".config")
        base = _expand(base, home)
    return join(base, APP)


def _expand(path, home):
    if path == "~" or path.startswith("~/") or path.startswith("~\\"):
        return home + path[1:]
    return path


def _posixjoin(*parts):
    import posixpath

    return posixpath.join(*parts)


def _ntjoin(*parts):
    import ntpath

    return ntpath.join(*parts)


# JSON text is `unicode` on Python 2 (GIMP 2.10), not `str` (spelled so that no formatter
# drops a u"" prefix, which made this `str` twice)
_TEXT = (str, type(b"".decode("ascii")))


def _read_json(path):
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (IOError, OSError, ValueError):
        return None


# --- the server proves it holds the token ----------------------------------------------------


def live_proof(token, url, challenge):
    """What the server at `url` (as server.json names it) holding `token` answers to
    GET /v1/live?challenge=`challenge`: the hex HMAC-SHA256 of "paintbridge-live:" + url + "\n" +
    challenge, keyed with the token. Only the holder of the token can make it, it does not give
    the token away, and another server with the same token (a fixed one) makes another proof,
    so a program on a stale port cannot pass that server's proof off as its own."""
    message = ("paintbridge-live:" + url + "\n" + challenge).encode("utf-8")
    return hmac.new(token.encode("utf-8"), message, hashlib.sha256).hexdigest()


def new_challenge():
    return binascii.hexlify(os.urandom(16)).decode("ascii")


def proves_token(answer, token, url, challenge):
    """True when `answer` (a /v1/live answer) proves that the server at `url` holds `token`."""
    proof = answer.get("proof") if isinstance(answer, dict) else None
    if not isinstance(proof, _TEXT):
        return False
    try:
        given = proof.encode("ascii")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given, live_proof(token, url, challenge).encode("ascii"))


def not_the_server_message(url, path):
    return (
        "Something at %s answers like a paintbridge server but cannot prove it holds the token "
        "in %s, so nothing was sent to it. It may be a paintbridge server older than this "
        "plug-in (stop it, then start the server again), or another program that took the port "
        "of a server that stopped (start the server again, with another --port while that one "
        "is taken)." % (url, path)
    )


# --- tokens of remote servers ----------------------------------------------------------------

TOKENS_FILE = "remote-tokens.json"  # {server URL: token}, readable by this user only


def remembered_token(url, config_dir=None):
    """The token last used with the remote server at `url` (see remember_token), or None."""
    data = _read_json(os.path.join(config_dir or user_config_dir(), TOKENS_FILE))
    token = data.get(url) if isinstance(data, dict) else None
    return token if isinstance(token, _TEXT) and token else None


def remember_token(url, token, config_dir=None):
    """Keeps `token` for `url` in the paintbridge config folder, in a file only this user can
    read: for a host that saves a plug-in's settings where others read them (GIMP 3 stores a
    procedure's arguments inside the .xcf files it saves). A failure is ignored: remembering is
    a convenience; the token still works for this run."""
    folder = config_dir or user_config_dir()
    path = os.path.join(folder, TOKENS_FILE)
    data = _read_json(path)
    data = data if isinstance(data, dict) else {}
    if data.get(url) == token:
        return
    data[url] = token
    temporary = path + ".tmp"
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o700)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(handle, json.dumps(data, indent=2).encode("utf-8"))
        finally:
            os.close(handle)
        if os.name == "nt" and os.path.exists(path):
            os.remove(path)  # os.rename does not replace on Windows (os.replace: Python 3 only)
        os.rename(temporary, path)
    except (IOError, OSError):
        pass


# --- the server named in server.json ---------------------------------------------------------


def _client_from_server_file(config_dir, timeout, client_class=None):
    if client_class is None:
        from .client import Client as client_class  # here: client.py imports this module

    path = os.path.join(config_dir, "server.json")
    info = _read_json(path)
    if not isinstance(info, dict) or not isinstance(info.get("url"), _TEXT):
        return None
    token = info.get("token") if isinstance(info.get("token"), _TEXT) else None
    try:
        return client_class(info["url"], token, timeout=timeout, token_source=path)
    except PaintbridgeError:  # not a URL: a damaged file announces no server
        return None


def try_local_client(config_dir=None, timeout=5):
    """The Client for the server named in server.json if it answers /v1/live and proves it
    holds the token there (Client.is_ours), else None.

    One short request (at most `timeout` s; a refused connection returns at once), never
    raises: safe to call from a GUI timer. The Client keeps `timeout` for later requests."""
    config_dir = config_dir or user_config_dir()
    client = _client_from_server_file(config_dir, timeout)
    if client is not None and client.is_ours():
        return client
    return None


# --- starting the server ---------------------------------------------------------------------


def _launcher_command(config_dir):
    launcher = _read_json(os.path.join(config_dir, "hostkit.json"))
    command = launcher.get("command") if isinstance(launcher, dict) else None
    return command or None


def _server_environment(config_dir):
    env = dict(os.environ)
    for name in _HOST_ONLY_VARS:
        env.pop(name, None)
    if env.get("APPIMAGE") or env.get("APPDIR"):
        env.pop("LD_LIBRARY_PATH", None)  # an AppImage's libraries are for the host only
    env["PAINTBRIDGE_CONFIG_DIR"] = config_dir
    return env


def spawn_detached(command, log_path, env=None):
    """Starts `command` (a list) in the background so it outlives the host; output to log_path
    (created private, 0600: its lines name jobs and files)."""
    log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    devnull = open(os.devnull, "rb")
    kwargs = {"stdin": devnull, "stdout": log, "stderr": subprocess.STDOUT, "env": env}
    if sys.platform.startswith("win"):
        # CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
        kwargs["creationflags"] = 0x00000200 | 0x08000000
        # before 3.7, Windows refuses close_fds together with redirected stdin/stdout/stderr
        # (GIMP 2.10's Python 2.7); the redirection matters more
        kwargs["close_fds"] = sys.version_info >= (3, 7)
    else:
        # its own session: closing the host (or its terminal) does not stop the server
        kwargs["close_fds"] = True
        if sys.version_info[0] >= 3:
            kwargs["start_new_session"] = True
        else:
            kwargs["preexec_fn"] = os.setsid
    try:
        return subprocess.Popen([str(part) for part in command], **kwargs)
    finally:
        log.close()
        devnull.close()


def command_url(command):
    """The loopback URL the `paintbridge serve` of `command` listens on (its --port, else
    7860), or None when it asks for a free port (--port 0), the port cannot be read, or it is
    no `serve` command."""
    if "serve" not in [str(part) for part in command]:
        return None
    port = None
    for index, part in enumerate(command):
        part = str(part)
        if part == "--port" and index + 1 < len(command):
            port = str(command[index + 1])
        elif part.startswith("--port="):
            port = part[len("--port=") :]
    if port is None:
        return DEFAULT_URL
    if not port.isdigit() or int(port) == 0:
        return None
    return "http://127.0.0.1:%d" % int(port)


def port_holder(url, timeout=1.0):
    """Who answers at `url`: "paintbridge" (its /v1/live), "waiting" (a connection that gets
    no answer yet: a server still starting, whose socket already listens), "other" (an answer
    that is not paintbridge's: another program has the port) or None (nothing listens)."""
    from .client import Client  # here: client.py imports this module

    try:
        return "paintbridge" if Client(url, None, timeout=timeout).live().get("ok") else "other"
    except Timeout:
        return "waiting"
    except NotRunning as exc:
        return None if getattr(exc, "refused", False) else "waiting"
    except (PaintbridgeError, AttributeError):
        return "other"


class ServerLaunch(object):
    """A server that launch_server started: `process` (its Popen), `log_path`, `config_dir`.

    `check()` is one short request (two when the process has exited): poll it from a GUI timer
    until it returns a Client. A start that finds its port taken is not a failure: when another
    paintbridge server has it (perhaps still starting, from another editor), that one announces
    itself in server.json; when another program has it (AUTOMATIC1111 and Gradio also default
    to 7860), the server is started again on a free port."""

    def __init__(self, process, config_dir, log_path, timeout=30, command=None, env=None):
        self.process = process
        self.config_dir = config_dir
        self.log_path = log_path
        self.timeout = timeout
        self.command = list(command or [])
        self.env = env
        self.started_at = time.time()
        self.note = ""  # what became of a taken port, for the error if the start fails

    def check(self):
        """The Client once the server answers, None while it is still starting; raises
        NotRunning when the process has stopped and no server came up in its place."""
        client = _client_from_server_file(self.config_dir, self.timeout)
        if client is not None and client.is_ours():
            return client
        code = self.process.poll()
        if code is None:
            return None
        if client is not None and client.is_live():  # on the port: what cannot prove the token
            raise NotRunning(not_the_server_message(client.url, client.token_source))
        url = command_url(self.command) if self.command else None
        holder = port_holder(url) if url else None
        if holder in ("paintbridge", "waiting"):
            self.note = " Another server holds %s; it was awaited." % url
            return None
        if holder == "other" and not self.note:
            self.note = " Another program holds %s; a free port was tried." % url
            self.command = self.command + ["--port", "0"]
            try:
                self.process = spawn_detached(self.command, self.log_path, self.env)
            except (OSError, ValueError) as exc:
                raise NotRunning("Could not start the paintbridge server again: %s" % (exc,))  # noqa: B904
            STARTED.append(self.process)
            return None
        raise NotRunning(
            "The paintbridge server stopped while starting (exit code %s).%s Its log is %s."
            % (code, self.note, self.log_path)
        )

    def wait(self, start_timeout=120, interval=0.25):
        """Blocks until check() gives a Client; raises Timeout after `start_timeout` s."""
        deadline = self.started_at + start_timeout
        while time.time() < deadline:
            client = self.check()
            if client is not None:
                return client
            time.sleep(interval)
        raise Timeout(
            "The paintbridge server did not start within %s s; it may still be loading. Its log "
            "is %s." % (start_timeout, self.log_path)
        )

    def __repr__(self):
        return "ServerLaunch(pid=%r, log=%r)" % (self.process.pid, self.log_path)


def launch_server(config_dir=None, timeout=30):
    """Starts the server command in hostkit.json in the background and returns a ServerLaunch
    at once (it does not wait for the server to answer). Output goes to server.log in the
    config folder. Raises NotRunning when no command is configured or it cannot be started.
    `timeout` is the per-request timeout of the Client that `check()` returns."""
    config_dir = config_dir or user_config_dir()
    command = _launcher_command(config_dir)
    if not command:
        raise NotRunning(
            "No way to start the paintbridge server is set up. %s, or start it yourself with "
            "`paintbridge serve`." % _NO_LAUNCHER
        )
    if not os.path.isdir(config_dir):
        os.makedirs(config_dir, 0o700)  # private, as paintbridge makes it
    log_path = os.path.join(config_dir, "server.log")
    env = _server_environment(config_dir)
    try:
        process = spawn_detached(command, log_path, env)
    except (OSError, ValueError) as exc:
        raise NotRunning(  # noqa: B904
            "Could not start the paintbridge server with %s: %s. Run `paintbridge plugins "
            "install` again, or start it yourself with `paintbridge serve`." % (command, exc)
        )
    STARTED.append(process)
    return ServerLaunch(process, config_dir, log_path, timeout, command, env)


def discover(config_dir=None, autostart=True, start_timeout=120, timeout=30, client_class=None):
    """What `Client.discover` does (see there): blocks until the local server answers."""
    config_dir = config_dir or user_config_dir()
    client = _client_from_server_file(config_dir, timeout, client_class)
    if client is not None and client.is_ours():
        return client
    url = client.url if client is not None else DEFAULT_URL
    if client is not None and client.is_live():  # not ours: a server started now gets no port
        again = _client_from_server_file(config_dir, timeout, client_class)
        if again is not None and again.is_ours():  # the file was rewritten meanwhile (a restart)
            return again
        raise NotRunning(not_the_server_message(url, client.token_source))
    if not autostart:
        raise NotRunning(not_running_message(url))
    if not _launcher_command(config_dir):
        raise NotRunning(not_running_message(url) + " (%s.)" % _NO_LAUNCHER)
    return launch_server(config_dir, timeout).wait(start_timeout)
