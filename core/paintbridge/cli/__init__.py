"""The `paintbridge` command. Each sub-module registers its own subcommands.

Every subcommand handler returns an exit code. A PaintbridgeError, or an OSError about a path,
becomes a one-line message on stderr and exit code 2; a traceback is a bug.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence

from paintbridge import __version__
from paintbridge.errors import PaintbridgeError

# Sub-modules listed here each define `register(subparsers)`; a subcommand sets `func=handler`
# with `handler(args) -> int`. Imports happen inside handlers so `paintbridge --help` is fast.
SUBCOMMAND_MODULES = ("generate", "serve", "history", "plugins")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line that says where the usage is, not the
    whole usage first (its subcommands' parsers are made of this class too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="paintbridge",
        description="Local AI image generation for Blender, GIMP and Krita.",
    )
    parser.add_argument("--version", action="version", version=f"paintbridge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"paintbridge.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"paintbridge.cli.{name}":
                raise
            continue  # that part of the CLI is not built yet
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _never_fail_to_print()
    try:
        parser = build_parser()  # imports the subcommands: Ctrl-C may come here too
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2  # a usage error, as argparse's own
        return int(args.func(args) or 0)
    except PaintbridgeError as exc:
        print(f"paintbridge: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("paintbridge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`paintbridge models | head`): stop quietly, as other tools do;
        # stdout goes to devnull so the flush at exit does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        if exc.filename is None or exc.errno not in _PATH_ERRORS:
            raise
        # a path the file system refuses where paintbridge did not expect it (a name too long
        # to look up, a folder it may not read): what the system said, about which path
        where = f"{exc.filename!r}" + (f" -> {exc.filename2!r}" if exc.filename2 else "")
        print(
            f"paintbridge: error: {where}: {exc.strerror or os.strerror(exc.errno)}",
            file=sys.stderr,
        )
        return 2


# What the file system says about a path the user gave (or one made from it); any other
# OSError stays a traceback: it is a bug to fix, not a path to change.
_PATH_ERRORS = frozenset(
    getattr(errno, name)
    for name in (
        "ENAMETOOLONG", "ENOENT", "ENOTDIR", "EISDIR", "EACCES", "EPERM", "ELOOP", "EROFS",
        "ENOSPC", "EDQUOT", "EEXIST", "EINVAL",
    )
    if hasattr(errno, name)
)  # fmt: skip


def _never_fail_to_print() -> None:
    """Text the console cannot encode (an emoji prompt in `history > file` on Windows' cp1252)
    is printed as "?" instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


if __name__ == "__main__":
    sys.exit(main())
