"""`paintbridge history [list|export|path]`: the results every server job left on disk."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paintbridge.cli.common import positive_int
from paintbridge.errors import PaintbridgeError

DEFAULT_LIMIT = 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "history",
        help="list or export past results (`history` alone lists the latest)",
        description="Every image the server made is kept in the history folder with its "
        "parameters. `history` lists the latest jobs.",
    )
    p.add_argument("--history-dir", type=Path, help="default: paintbridge's history folder")
    p.add_argument(
        "--limit", type=positive_int, default=DEFAULT_LIMIT, help="jobs to list (newest)"
    )
    p.set_defaults(func=list_handler)
    sub = p.add_subparsers(dest="history_command", metavar="ACTION")

    q = sub.add_parser("list", help="the latest jobs: time, job id, task, prompt, files")
    q.add_argument("--limit", type=positive_int, default=argparse.SUPPRESS, help="jobs to list")
    q.add_argument("--history-dir", type=Path, default=argparse.SUPPRESS)
    q.set_defaults(func=list_handler)

    q = sub.add_parser("export", help="copy one job's PNGs into a folder")
    q.add_argument("job", metavar="JOB_ID", help="the job id (or its first characters)")
    q.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to copy them")
    q.add_argument("--history-dir", type=Path, default=argparse.SUPPRESS)
    q.set_defaults(func=export_handler)

    q = sub.add_parser("path", help="print the history folder")
    q.add_argument("--history-dir", type=Path, default=argparse.SUPPRESS)
    q.set_defaults(func=path_handler)


def _history(args: argparse.Namespace):  # -> History; imported late to keep --help fast
    """--history-dir, else the running server's (server.json), else the default folder."""
    from paintbridge import config
    from paintbridge.history import History
    from paintbridge.server.discovery import running_history

    if args.history_dir is not None and not args.history_dir.is_dir():
        raise PaintbridgeError(
            f"--history-dir {str(args.history_dir)!r} is not a folder: give the folder the "
            "server was started with (`paintbridge history path` prints the default)",
            code="invalid_request",
        )
    folder = args.history_dir or running_history(config.server_file()) or config.history_dir()
    return History(folder)


def _searched_default(args: argparse.Namespace, history) -> bool:
    from paintbridge import config

    return args.history_dir is None and history.folder == config.history_dir()


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def list_handler(args: argparse.Namespace) -> int:
    history = _history(args)
    entries = history.entries()[-args.limit :]
    if not entries:
        print(f"no results yet in {history.folder}", file=sys.stderr)
        return 0
    for entry in entries:
        files = ", ".join(entry.files) if entry.files else "(no files)"
        print(f"{entry.time}  {entry.job}  {entry.task:<7}  {_one_line(entry.prompt, 60)!r}")
        print(f"    {files}")
    return 0


def export_handler(args: argparse.Namespace) -> int:
    from paintbridge.history import JobNotFound

    history = _history(args)
    try:
        copies = history.export(args.job, args.out)
    except JobNotFound as exc:
        if not _searched_default(args, history):
            raise
        raise JobNotFound(
            f"{exc.message} (a server started with --history-dir DIR keeps its results in DIR: "
            "add the same --history-dir)"
        ) from None
    for path in copies:
        print(path)
    return 0


def path_handler(args: argparse.Namespace) -> int:
    print(_history(args).folder)
    return 0
