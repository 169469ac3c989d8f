"""The dataset commands: ls, versions, show, pull, tasks, rm and cleanup (push is in :mod:`.push`).

Each command checks its arguments in a ``prepare`` step, which :func:`~dsnotebook.cli.app.main`
runs before the database is opened, and gathers everything it shows before it prints a line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..errors import ValidationError
from ..hub import Hub
from .arguments import whole_number
from .formatting import local_time, print_frame, print_json

__all__ = ["add_commands"]

#: The formats ``pull`` writes from a pandas frame; Parquet is written from the Arrow table (see :func:`_parquet`).
_WRITERS = {
    ".csv": ("CSV", lambda df, p: df.to_csv(p, index=not _default_index(df))),
    ".feather": ("Feather", lambda df, p: df.reset_index(drop=_default_index(df)).to_feather(p)),
}
_SUFFIXES = sorted([*_WRITERS, ".parquet"])
#: The widest an upload's error gets in the ``tasks`` table; ``tasks --json`` has all of it.
ERROR_WIDTH = 60


def as_frame(pulled: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """A pulled pandas object as a DataFrame: a Series as its one-column frame."""
    return pulled.to_frame() if isinstance(pulled, pd.Series) else pulled


def _default_index(df: pd.DataFrame) -> bool:
    return isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1 and df.index.name is None


def cmd_ls(hub: Hub, args: argparse.Namespace) -> int:
    df = hub.datasets()
    if args.json:
        print_json(df)
    else:
        print_frame(df[["name", "latest_version", "versions", "rows", "columns", "updated_at", "description"]], empty="no datasets")
    return 0


def cmd_versions(hub: Hub, args: argparse.Namespace) -> int:
    df = hub.versions(args.name)
    if args.json:
        print_json(df)
    else:
        # A hash prefix and the task id's first 8 characters tell them apart; --json has them whole.
        print_frame(df.assign(content_hash=df["content_hash"].str[:12], task_id=df["task_id"].str[:8]), empty="no versions")
    return 0


def cmd_show(hub: Hub, args: argparse.Namespace) -> int:
    info = hub.info(args.name)
    rows = as_frame(hub.pull(args.name, limit=args.rows, to="pandas"))
    latest = info.latest
    print(f"{info.name!r} version {latest.version} of {info.versions}: {latest.rows:,} rows × {latest.columns} columns")
    if info.description:
        print(f"description: {info.description}")
    print(f"created {local_time(latest.created_at, zone=True)} by {latest.created_by}; table {latest.table_name}, view {info.view_name}")
    print("\nschema:")
    print_frame(pd.DataFrame(info.schema, columns=["column", "dtype"]).astype({"column": str, "dtype": str}), empty="(no columns)")
    print(f"\nfirst {args.rows} rows:")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(rows.to_string())
    return 0


def _prepare_pull(args: argparse.Namespace) -> None:
    path = Path(args.output)
    suffixes = ", ".join(_SUFFIXES)
    if path.is_dir():
        raise ValidationError(f"-o {path}: is a directory; give a file path ending in {suffixes}")
    if path.suffix.lower() not in _SUFFIXES:
        raise ValidationError(f"-o {path}: unknown file type {path.suffix.lower()!r}; use one of {suffixes}")
    if not path.parent.is_dir():
        raise ValidationError(f"-o {path}: the directory {str(path.parent)!r} does not exist")
    # Opening the file is the one check that holds for every user and file system; a file that
    # was not there is removed again, so a failed pull leaves nothing behind.
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise ValidationError(f"-o {path}: cannot write there: {exc.strerror or exc}") from exc
    if not existed:
        path.unlink()
    args.output = path


def _arrow_as_stored(table: pa.Table) -> pa.Table:
    """A pushed Table with the pandas metadata of the frame it is stored as (each column
    Arrow-backed, a RangeIndex), so that ``pd.read_parquet`` gives that frame, as it did when
    ``pull`` wrote Parquet from pandas. The metadata comes from the empty frame: no data is
    converted."""
    empty = table.slice(0, 0).to_pandas(ignore_metadata=True, types_mapper=pd.ArrowDtype)
    return table.replace_schema_metadata(pa.Table.from_pandas(empty, preserve_index=False).schema.metadata)


def _parquet(hub: Hub, name: str, version: int | None) -> tuple[pa.Table, int]:
    """The version as the Arrow table to write to Parquet, and its number of columns, the
    index not counted. ``pd.read_parquet`` gives the pulled pandas frame back, index included."""
    if version is None:  # pinned, so that both reads see the same version
        version = hub.info(name).latest.version
    pushed_a_table = isinstance(hub.pull(name, version, limit=0), pa.Table)
    table = hub.pull(name, version, to="arrow")
    if pushed_a_table:
        table = _arrow_as_stored(table)
    metadata = table.schema.pandas_metadata or {}
    index_columns = [c for c in metadata.get("index_columns", []) if isinstance(c, str)]
    return table, table.num_columns - len(index_columns)


def cmd_pull(hub: Hub, args: argparse.Namespace) -> int:
    path = args.output
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table, columns = _parquet(hub, args.name, args.version)
        kind, rows = "Parquet", table.num_rows

        def write() -> None:
            pq.write_table(table, path)
    else:
        df = as_frame(hub.pull(args.name, args.version, to="pandas"))
        (kind, write_frame), rows, columns = _WRITERS[suffix], len(df), df.shape[1]

        def write() -> None:
            write_frame(df, path)
    existed = path.exists()
    try:
        write()
    except (OSError, ValueError, TypeError, NotImplementedError, pa.ArrowException) as exc:
        # A full disk, or a frame the format cannot hold: one line naming the file, and a file
        # this command created is not left half written.
        if not existed:
            path.unlink(missing_ok=True)
        raise ValidationError(f"-o {path}: cannot write {args.name!r} as {kind}: {type(exc).__name__}: {exc}") from exc
    print(f"wrote {rows:,} rows × {columns} columns to {path}")
    return 0


def cmd_tasks(hub: Hub, args: argparse.Namespace) -> int:
    df = hub.tasks()
    if not args.all:
        df = df.head(args.limit)
    if args.json:
        print_json(df)
        return 0
    print_frame(
        df[["id", "dataset", "status", "rows_done", "rows_total", "attempts", "version", "queued_at", "error"]].assign(
            id=df["id"].str[:8]
        ),
        empty="no tasks",
        widths={"error": ERROR_WIDTH},
    )
    return 0


def _stdin_is_a_terminal() -> bool:
    return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()


def _prepare_rm(args: argparse.Namespace) -> None:
    if not args.yes and not _stdin_is_a_terminal():
        raise ValidationError(
            "rm: standard input is not a terminal, so the removal cannot be confirmed; pass --yes to remove without asking"
        )


def _confirm(question: str) -> bool:
    """Ask ``question`` on stderr and read the answer from stdin; only y or yes confirms."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        print(file=sys.stderr)  # end the prompt's line after Ctrl-D
    return answer.strip().lower() in ("y", "yes")


def _versions(numbers: list[int]) -> str:
    """``'2 versions: 1, 2'``"""
    return f"{len(numbers)} version{'s' if len(numbers) != 1 else ''}: {', '.join(map(str, numbers))}"


def cmd_rm(hub: Hub, args: argparse.Namespace) -> int:
    stored = hub.versions(args.name)["version"].tolist()
    if args.version is None:
        question = f"remove dataset {args.name!r} and its {_versions(stored)}?"
    elif args.version in stored:
        last = " (its only version, so the dataset goes too)" if len(stored) == 1 else ""
        question = f"remove version {args.version} of {args.name!r}{last}?"
    else:
        question = None  # nothing to ask: the delete refuses, naming the versions there are
    if question is not None and not args.yes and not _confirm(question):
        print("nothing removed")
        return 0
    removed = hub.delete(args.name, args.version)
    what = f"version {args.version} of {args.name!r}" if args.version is not None else f"dataset {args.name!r}"
    print(f"removed {what} ({_versions(removed)})")
    return 0


def cmd_cleanup(hub: Hub, args: argparse.Namespace) -> int:
    dropped = hub.cleanup()
    print(f"dropped {dropped} staging table{'s' if dropped != 1 else ''} kept for resuming interrupted uploads")
    return 0


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON array, an object per row with every column; times in ISO-8601 with their UTC offset",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the dataset commands to ``sub``."""
    version = whole_number(minimum=1, what="a version number")

    p = sub.add_parser("ls", help="list datasets")
    _json_option(p)
    p.set_defaults(run=cmd_ls)

    p = sub.add_parser("versions", help="list the versions of a dataset")
    p.add_argument("name")
    _json_option(p)
    p.set_defaults(run=cmd_versions)

    p = sub.add_parser("show", help="schema and first rows of a dataset")
    p.add_argument("name")
    p.add_argument("--rows", type=whole_number(minimum=0, what="a number of rows"), default=5, help="rows to show (default: 5)")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("pull", help="write a dataset to a CSV, Parquet or Feather file")
    p.add_argument("name")
    p.add_argument("-o", "--output", required=True, help="the file to write; its suffix (.csv, .parquet, .feather) picks the format")
    p.add_argument("--version", type=version, help="this version instead of the latest")
    p.set_defaults(run=cmd_pull, prepare=_prepare_pull)

    p = sub.add_parser("tasks", help="list uploads, newest first")
    p.add_argument("--all", action="store_true", help="all of them, not just the newest 20")
    p.add_argument("--limit", type=whole_number(minimum=1, what="a number of uploads"), default=20, help=argparse.SUPPRESS)
    _json_option(p)
    p.set_defaults(run=cmd_tasks)

    p = sub.add_parser(
        "rm",
        help="remove a dataset, or one version of it, after asking",
        description="Remove a dataset, or one version of it. Asks first; without a terminal to ask on, "
        "refuses unless --yes is given.",
    )
    p.add_argument("name")
    p.add_argument("--version", type=version, help="only this version")
    p.add_argument("-y", "--yes", action="store_true", help="remove without asking")
    p.set_defaults(run=cmd_rm, prepare=_prepare_rm)

    p = sub.add_parser("cleanup", help="drop the staged rows kept for resuming interrupted uploads")
    p.set_defaults(run=cmd_cleanup)
