"""The ``push`` command: read a data file and upload it as a dataset, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DatasetNotFound, SchemaMismatch, UploadError
from ..hub import Hub
from ..upload import IF_EXISTS
from . import files
from .datasets import as_frame
from .progress import follow

__all__ = ["add_commands"]

CLI_HINT = "Use --if-exists replace to publish a new schema"


def _stored_dtypes(hub: Hub, name: str) -> tuple[dict, str] | None:
    """The dtype of each column of the latest version of ``name``, and how to name that version;
    None if there is no such dataset."""
    try:
        info = hub.info(name)
    except DatasetNotFound:
        return None
    version = info.latest.version
    # An empty read gives the exact dtypes, with a category's categories (the schema names only "category").
    empty = as_frame(hub.pull(name, version=version, limit=0, to="pandas"))
    return dict(zip(empty.columns, empty.dtypes)), f"{name!r} version {version}"


def _in_cli_terms(exc: SchemaMismatch | UploadError) -> SchemaMismatch | UploadError:
    """The same error, with a schema mismatch's hint in command-line syntax."""
    mismatch = exc if isinstance(exc, SchemaMismatch) else exc.__cause__
    if not isinstance(mismatch, SchemaMismatch) or not mismatch.hint or mismatch.hint not in str(exc):
        return exc
    return SchemaMismatch(
        str(exc).replace(mismatch.hint, CLI_HINT), added=mismatch.added, missing=mismatch.missing, retyped=mismatch.retyped
    )


def prepare(args: argparse.Namespace) -> None:
    """Check the file and the reading options before the database is opened."""
    args.read_options = files.read_options(
        sep=args.sep, encoding=args.encoding, no_header=args.no_header, dtype=args.dtype, parse_dates=args.parse_dates
    )
    files.check_file(Path(args.file), args.read_options)


def cmd_push(hub: Hub, args: argparse.Namespace) -> int:
    path = Path(args.file)
    name = args.name if args.name is not None else files.default_name(path)
    stored = _stored_dtypes(hub, name) if args.if_exists == "append" else None
    schema, stored_as = stored if stored is not None else (None, "")
    frame = files.read(path, args.read_options, schema=schema, stored_as=stored_as, note=lambda line: print(line, file=sys.stderr))
    try:
        task = hub.push(frame, name, if_exists=args.if_exists, description=args.description)
        follow([task], out=sys.stderr)
        version = task.wait()
    except (SchemaMismatch, UploadError) as exc:
        cli = _in_cli_terms(exc)
        if cli is exc:
            raise
        raise cli from exc
    note = " (identical to the latest version; nothing new published)" if version.deduplicated else ""
    print(f"{version.name!r} version {version.version}: {version.rows:,} rows × {version.columns} columns{note}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``push`` command to ``sub``."""
    formats = ", ".join(files.FORMATS)
    p = sub.add_parser(
        "push",
        help="upload a CSV, TSV, JSON, Excel, Parquet or Feather file as a dataset",
        description=(
            f"Upload a data file as a dataset. The format comes from the file name ({formats}); CSV, TSV "
            "and JSON files may be compressed (.gz, .zst). An append reads the file with the dtypes of "
            "the latest version, casting only where every value is kept exactly."
        ),
    )
    p.add_argument("file")
    p.add_argument("--name", help="dataset name (default: the file name without its suffixes: sales.csv.gz gives sales)")
    p.add_argument("--if-exists", choices=IF_EXISTS, default="replace")
    p.add_argument("--description")
    text = p.add_argument_group("reading the file")
    text.add_argument(
        "--sep", help="CSV column separator, one character ('\\t' for a tab; default: detected among , ; tab and |, "
        "and reported when it is not a comma)"
    )
    text.add_argument("--encoding", help="text encoding of a CSV, TSV or JSON file (default: utf-8), such as latin-1 or cp1252")
    text.add_argument("--no-header", action="store_true", help="the first row is data; columns are numbered from 0")
    text.add_argument(
        "--dtype", nargs="+", action="extend", default=[], metavar="COL=TYPE",
        help="read COL as the pandas dtype TYPE, such as str, Int64, float64 or datetime64[us, UTC]; "
        "a value that would change is refused (give the file name first, or repeat the option)",
    )
    text.add_argument(
        "--parse-dates", nargs="+", action="extend", default=[], metavar="COL",
        help="parse these columns as dates and times (give the file name first, or repeat the option)",
    )
    p.set_defaults(run=cmd_push, prepare=prepare)
