"""The parser and :func:`main`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .. import __version__
from ..errors import DsnotebookError
from ..hub import Hub
from ..store.engine import DEFAULT_PATH, mask_text
from . import datasets, demo, push, status

__all__ = ["build_parser", "main"]

#: The commands that may create a new database; every other one refuses a SQLite file that is not there.
CREATING_COMMANDS = frozenset({"push", "demo"})
_URL_HELP = (
    f"database URL (default: $DSNOTEBOOK_URL, else {DEFAULT_PATH}). Leave the password out: other users "
    "of this machine can read a command line. Put the URL in DSNOTEBOOK_URL instead, or the password in "
    "~/.pgpass (or PGPASSFILE, PGPASSWORD), where PostgreSQL's tools find it too."
)
#: Printed once when a ``--url`` on the command line holds a password.
PASSWORD_WARNING = (
    "dsnotebook: warning: the password in --url can be read by other users of this machine (ps); "
    "put the URL in DSNOTEBOOK_URL or the password in ~/.pgpass (or PGPASSFILE / PGPASSWORD) instead"
)


class _CommandLineError(Exception):
    """A command line argparse refuses; :func:`main` prints it as one line and exits with 2."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


def _has_password(url: str) -> bool:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return mask_text(url) != url
    return bool(parsed.password) or bool(parsed.query.get("password"))


class _UrlOption(argparse.Action):
    """``--url``, before or after the command's name. A command line can be read by every user of
    the machine (``ps``), so a URL with a password in it is warned about on stderr, once however
    many ``--url`` hold one: ``warned`` is shared by the ``--url`` of every command."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, warned: set[str], **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self._warned = warned

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        if PASSWORD_WARNING not in self._warned and _has_password(values):
            self._warned.add(PASSWORD_WARNING)
            print(PASSWORD_WARNING, file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; here a bad command line is one error line like any
    # other, and main() returns its status instead of the parser ending the process.
    def error(self, message: str) -> NoReturn:
        raise _CommandLineError(message, self.prog)


def build_parser() -> argparse.ArgumentParser:
    """The ``dsnotebook`` argument parser, with every command."""
    parser = _Parser(
        prog="dsnotebook",
        description="Push DataFrames as named, versioned datasets, and pull them back identical.",
        epilog="Only push and demo create a database; the other commands refuse one that does not exist. "
        "Errors print one 'dsnotebook: error: ...' line and exit with status 2; Ctrl-C exits with 130.",
    )
    parser.add_argument("--version", action="version", version=f"dsnotebook {__version__}")
    warned: set[str] = set()
    parser.add_argument("--url", action=_UrlOption, warned=warned, help=_URL_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    push.add_commands(sub)
    datasets.add_commands(sub)
    status.add_commands(sub)
    demo.add_commands(sub)
    # Every command takes --url after its name too; given there, it wins over one given before.
    for command in sub.choices.values():
        command.add_argument("--url", action=_UrlOption, warned=warned, default=argparse.SUPPRESS, help=_URL_HELP)
    return parser


def _error(message: str) -> int:
    # One line, whatever the message holds; a URL in it (an argument argparse refuses) shows no password.
    print("dsnotebook: error: " + mask_text(" ".join(line.strip() for line in message.splitlines() if line.strip())), file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dsnotebook`` command on ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status: 0 on success, 2 on any error (a malformed command line, a bad
    argument value, or an error dsnotebook reports), 130 on Ctrl-C, and 1 when the reader of
    stdout went away (``dsnotebook tasks --all | head -3``). An error is one
    ``dsnotebook: error: ...`` line on stderr. Arguments are checked before the database is
    opened or anything is printed.
    """
    try:
        args = build_parser().parse_args(argv)
    except _CommandLineError as exc:
        return _error(f"{exc} (see '{exc.prog} --help')")
    except SystemExit as exc:  # --help and --version, which have printed what was asked
        return exc.code if isinstance(exc.code, int) else 0
    # Values argparse cannot check alone are checked before the database is opened or anything printed.
    try:
        prepare = getattr(args, "prepare", None)
        if prepare is not None:
            prepare(args)
        url = args.url
        if url is None and getattr(args, "demo", False) and not os.environ.get("DSNOTEBOOK_URL"):
            url = f"sqlite+aiosqlite:///{(DEFAULT_PATH.expanduser().parent / 'demo.db')}"
        with Hub(url, create=args.command in CREATING_COMMANDS) as hub:
            code = args.run(hub, args)
        sys.stdout.flush()  # here, so that a reader that went away is noticed below
        return code
    except DsnotebookError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print("dsnotebook: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`dsnotebook tasks --all | head -3`). Point stdout at devnull so
        # that the interpreter's final flush does not complain, as the Python docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
