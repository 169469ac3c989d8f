"""The ``push`` command: read a data file and upload it as a dataset, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ValidationError
from ..hub import Hub
from ..upload import IF_EXISTS
from .datasets import _READERS, _check_format
from .progress import follow

__all__ = ["add_commands"]


def cmd_push(hub: Hub, args: argparse.Namespace) -> int:
    path = Path(args.file)
    _check_format(path, _READERS)
    kind, read = _READERS[path.suffix.lower()]
    try:
        frame = read(path)
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot read it as {kind}: {exc}") from exc
    task = hub.push(frame, args.name, if_exists=args.if_exists, description=args.description)
    follow([task], out=sys.stderr)
    version = task.wait()
    note = " (identical to the latest version; nothing new published)" if version.deduplicated else ""
    print(f"{version.name!r} version {version.version}: {version.rows:,} rows × {version.columns} columns{note}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``push`` command to ``sub``."""
    p = sub.add_parser("push", help="upload a CSV, Parquet or Feather file as a dataset")
    p.add_argument("file")
    p.add_argument("--name", required=True, help="dataset name")
    p.add_argument("--if-exists", choices=IF_EXISTS, default="replace")
    p.add_argument("--description")
    p.set_defaults(run=cmd_push)
