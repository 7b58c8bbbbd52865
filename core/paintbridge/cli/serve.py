"""`paintbridge serve`: run the local HTTP service that the Blender, GIMP and Krita plug-ins use.

The socket is bound before anything else, so `--port 0` can pick a free port and server.json
names the real one. server.json is written once the service answers and removed on a clean
exit (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paintbridge.cli.common import add_engine_options, engine_settings, positive_int
from paintbridge.errors import InvalidRequest, PaintbridgeError

if TYPE_CHECKING:
    from paintbridge.server.settings import ServerSettings

DEFAULT_PORT = 7860


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the local service the editor plug-ins talk to",
        description=__doc__,
    )
    net = p.add_argument_group("network")
    net.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; anything else should sit "
        "behind a TLS reverse proxy)",
    )
    net.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free one"
    )
    net.add_argument(
        "--token",
        default=os.environ.get("PAINTBRIDGE_TOKEN"),
        help="bearer token clients must send (default: $PAINTBRIDGE_TOKEN, else a new random "
        "one each start, written to server.json)",
    )
    net.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the Host header may carry, e.g. the proxy's (repeatable)",
    )
    a1111 = p.add_argument_group("AUTOMATIC1111 compatibility")
    a1111.add_argument(
        "--a1111",
        action="store_true",
        help="also serve the AUTOMATIC1111 web UI API (/sdapi/v1/...) for plug-ins and scripts "
        "written for it; they authenticate with HTTP Basic: any user, the token as password",
    )
    a1111.add_argument(
        "--a1111-no-auth",
        action="store_true",
        help="let /sdapi/v1 routes go without the token (for A1111 clients that cannot send a "
        "password); refused unless bound to loopback without --allow-host; requests from web "
        "pages (with an Origin header) still need the token",
    )
    jobs = p.add_argument_group("jobs")
    jobs.add_argument("--queue-size", type=positive_int, default=16, help="jobs that may wait")
    jobs.add_argument("--history-dir", type=Path, help="where results are kept")
    jobs.add_argument("--preload", action="store_true", help="load the model before serving")
    jobs.add_argument(
        "--keep-memory-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="on a CPU, memory a job freed is kept for the next job (faster) until no job has "
        "come for S seconds (default 60; 0: given back after every job; inf: never)",
    )
    jobs.add_argument(
        "--max-body-mb",
        type=float,
        help="largest request body in MiB (default: what the largest allowed image needs)",
    )
    jobs.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    add_engine_options(p)
    p.set_defaults(func=handler)


def _check_default_model(args: argparse.Namespace, settings: ServerSettings) -> None:
    """A --model that cannot be used (a typo, a model neither cached nor downloadable) refuses
    to serve: every job naming no model would fail. The built-in default is only warned about:
    jobs may name other models, and a plug-in shows their failure better than a server that
    did not start."""
    from paintbridge.engine.models import check_model

    name = settings.engine.default_model
    try:
        check_model(name, settings.engine)
    except PaintbridgeError as exc:
        if args.model:
            raise InvalidRequest(f"--model {name!r} cannot be served: {exc.message}") from None
        print(
            f"paintbridge: warning: the default model {name!r} cannot be used ({exc.message}); "
            "jobs that name no model will fail. Pass --model to serve another.",
            file=sys.stderr,
        )


def build_settings(args: argparse.Namespace, port: int) -> ServerSettings:
    from paintbridge import config
    from paintbridge.server.settings import ServerSettings

    if args.token is not None and not args.token.strip():
        raise InvalidRequest("--token must not be empty: omit it to get a random token")
    token = args.token.strip() if args.token else secrets.token_urlsafe(32)
    if not (token.isascii() and token.isprintable()):
        # HTTP headers carry bytes: clients encode other characters differently (UTF-8 or
        # Latin-1), so such a token worked from one client and not from the next
        raise InvalidRequest(
            "--token (or $PAINTBRIDGE_TOKEN) must be printable ASCII: letters, digits and "
            "punctuation; omit it to get a random token"
        )
    engine = engine_settings(args)
    # Clients must not name files anywhere on this machine: only inside the models folders.
    engine = dataclasses.replace(
        engine,
        allow_any_path=False,
        default_model=args.model or engine.default_model,
    )
    max_body = None
    if args.max_body_mb is not None:
        if not (math.isfinite(args.max_body_mb) and args.max_body_mb > 0):
            raise InvalidRequest(
                f"--max-body-mb must be a finite number of MiB above 0, got {args.max_body_mb}"
            )
        max_body = int(args.max_body_mb * 1024 * 1024)
    if args.a1111_no_auth and not args.a1111:
        raise InvalidRequest("--a1111-no-auth needs --a1111")
    if not args.keep_memory_seconds >= 0:  # also refuses nan
        raise InvalidRequest(
            f"--keep-memory-seconds must be 0 or more, got {args.keep_memory_seconds}"
        )
    try:
        return ServerSettings(
            token=token,
            host=args.host,
            port=port,
            engine=engine,
            # absolute: server.json names it for `paintbridge history` run from anywhere
            history_dir=Path(
                os.path.abspath((args.history_dir or config.history_dir()).expanduser())
            ),
            queue_size=args.queue_size,
            allowed_hosts=tuple(args.allow_host),
            max_body_bytes=max_body,
            discovery_file=config.server_file(),
            a1111=args.a1111,
            a1111_no_auth=args.a1111_no_auth,
            idle_seconds=args.keep_memory_seconds,
        )
    except ValueError as exc:  # settings that contradict each other (--a1111-no-auth...)
        raise InvalidRequest(str(exc)) from exc


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    if not 0 <= port <= 65535:
        raise InvalidRequest(f"--port must be in [0, 65535], got {port}")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidRequest(f"--host {host!r} is not an address of this machine: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":  # on Windows this would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = " (is another server running? try --port 0)" if port else ""
        raise PaintbridgeError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}", code="cannot_bind"
        ) from exc
    sock.set_inheritable(True)
    return sock


def handler(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from paintbridge.history import History
    from paintbridge.server import create_app
    from paintbridge.server import discovery as disc
    from paintbridge.server.guard import is_loopback

    if args.token is not None and not args.token.strip():
        raise InvalidRequest("--token must not be empty: omit it to get a random token")
    sock = bind(args.host, args.port)
    try:
        settings = build_settings(args, sock.getsockname()[1])
        _check_default_model(args, settings)
        from paintbridge.engine import Engine

        # Made here, not in the app's startup: a device or option the engine refuses (--device
        # cuda without CUDA) is then a one-line error before "serving on", not a traceback;
        # and before the history folder is made, so a refusal leaves none behind.
        engine = Engine(settings.engine)
        # Else every job would run to its end and then fail to keep its image.
        History(settings.history_dir).check_writable()
        if settings.discovery_file is not None:
            disc.check_writable(settings.discovery_file)
        if not is_loopback(settings.host):
            print(
                f"paintbridge: warning: listening on {settings.host}, reachable from other "
                "machines, in plain HTTP: the token and images travel unencrypted. Put the "
                "server behind a TLS reverse proxy (see the README) and pass the proxy's name "
                "with --allow-host.",
                file=sys.stderr,
            )
        previous = disc.read(settings.discovery_file) if settings.discovery_file else None
        if previous and disc.pid_alive(previous.get("pid")) and previous.get("pid") != os.getpid():
            print(
                f"paintbridge: note: another server (pid {previous.get('pid')}, "
                f"{previous.get('url')}) was registered; server.json names this one until it "
                "stops",
                file=sys.stderr,
            )
        if args.preload:
            print(f"paintbridge: loading {settings.engine.default_model}...", file=sys.stderr)
            engine.load()
        app = create_app(settings, engine=engine)
        logging.basicConfig(
            level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
        )
        config = uvicorn.Config(
            app,
            log_level=args.log_level,
            access_log=args.log_level == "debug",
            timeout_graceful_shutdown=10,
        )
        server = _server(config, app)
        # the terminal closed: stop as for SIGTERM (uvicorn's), which hands server.json back;
        # SIGHUP's default ended the process on the spot. Ignored (nohup) stays ignored.
        if getattr(signal, "SIGHUP", None) and signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
            signal.signal(signal.SIGHUP, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
        print(
            f"paintbridge: serving on {settings.url} (history: {settings.history_dir}; "
            f"discovery: {settings.discovery_file})",
            file=sys.stderr,
            flush=True,
        )
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        print("paintbridge: error: the server did not start (see the log above)", file=sys.stderr)
        return 2
    return 0


def _server(config: Any, app: Any) -> Any:
    """uvicorn's Server for `app`, whose stop (a signal) also stops the job queue at once:
    uvicorn waits for open requests before the app's shutdown, and an A1111 request waits for
    its job, so it held the stop for the 10 s grace and then got a bare 500. Now its job is
    cancelled and it answers 503 shutting_down, and no queued job starts meanwhile."""
    import threading

    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            runtime = getattr(app.state, "runtime", None)
            if runtime is not None:  # a thread: the signal may come while this one holds a lock
                threading.Thread(target=runtime.jobs.stop, daemon=True).start()

    return Server(config)
