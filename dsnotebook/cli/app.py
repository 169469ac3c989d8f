"""The parser and :func:`main`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import DsnotebookError, ValidationError
from ..hub import Hub
from ..store.engine import DEFAULT_PATH
from . import datasets, demo, push, status

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``dsnotebook`` argument parser, with every command."""
    parser = argparse.ArgumentParser(
        prog="dsnotebook",
        description="Push DataFrames as named, versioned datasets, and pull them back identical.",
    )
    parser.add_argument("--url", help=f"database URL (default: $DSNOTEBOOK_URL, else {DEFAULT_PATH})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    push.add_commands(sub)
    datasets.add_commands(sub)
    status.add_commands(sub)
    demo.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dsnotebook`` command on ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status: 0 on success, 1 when dsnotebook reports an error, 2 for a bad
    argument value, 130 on Ctrl-C. argparse itself exits with 2 on a malformed command line.
    """
    args = build_parser().parse_args(argv)
    # Values argparse cannot check alone are checked before the database is opened or anything printed.
    prepare = getattr(args, "prepare", None)
    if prepare is not None:
        try:
            prepare(args)
        except ValidationError as exc:
            print(f"dsnotebook: error: {exc}", file=sys.stderr)
            return 2
    url = args.url
    if url is None and getattr(args, "demo", False) and not os.environ.get("DSNOTEBOOK_URL"):
        url = f"sqlite+aiosqlite:///{(DEFAULT_PATH.expanduser().parent / 'demo.db')}"
    try:
        with Hub(url) as hub:
            return args.run(hub, args)
    except DsnotebookError as exc:
        print(f"dsnotebook: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dsnotebook: interrupted", file=sys.stderr)
        return 130
