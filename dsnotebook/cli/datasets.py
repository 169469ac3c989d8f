"""The dataset commands: ls, versions, show, pull, tasks, rm and cleanup (push is in :mod:`.push`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ..errors import ValidationError
from ..hub import Hub
from .formatting import print_frame

__all__ = ["add_commands"]

_READERS = {
    ".csv": ("CSV", lambda p: pd.read_csv(p)),
    ".parquet": ("Parquet", lambda p: pd.read_parquet(p)),
    ".feather": ("Feather", lambda p: pd.read_feather(p)),
}
_WRITERS = {
    ".csv": lambda df, p: df.to_csv(p, index=not _default_index(df)),
    ".parquet": lambda df, p: df.to_parquet(p),
    ".feather": lambda df, p: df.reset_index(drop=_default_index(df)).to_feather(p),
}
_NEEDS_ARROW = {".parquet", ".feather"}


def _default_index(df: pd.DataFrame) -> bool:
    return isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1 and df.index.name is None


def _check_format(path: Path, table: dict) -> None:
    suffix = path.suffix.lower()
    if suffix not in table:
        raise ValidationError(f"{path.name}: unknown file type {suffix!r}; use one of {', '.join(sorted(table))}")
    if suffix in _NEEDS_ARROW:
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ValidationError(
                f"{path.name}: reading and writing {suffix} files needs pyarrow; pip install 'dsnotebook[arrow]'"
            ) from exc


def cmd_ls(hub: Hub, args: argparse.Namespace) -> int:
    df = hub.datasets()
    print_frame(df[["name", "latest_version", "versions", "rows", "columns", "updated_at", "description"]], empty="no datasets")
    return 0


def cmd_versions(hub: Hub, args: argparse.Namespace) -> int:
    print_frame(hub.versions(args.name), empty="no versions")
    return 0


def cmd_show(hub: Hub, args: argparse.Namespace) -> int:
    info = hub.info(args.name)
    latest = info.latest
    print(f"{info.name!r} version {latest.version} of {info.versions}: {latest.rows:,} rows × {latest.columns} columns")
    if info.description:
        print(f"description: {info.description}")
    print(f"created {latest.created_at:%Y-%m-%d %H:%M:%S %Z} by {latest.created_by}; table {latest.table_name}, view {info.view_name}")
    print("\nschema:")
    print_frame(pd.DataFrame(info.schema, columns=["column", "dtype"]).astype({"column": str}), empty="(no columns)")
    print(f"\nfirst {args.rows} rows:")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(hub.pull(args.name, limit=args.rows).to_string())
    return 0


def cmd_pull(hub: Hub, args: argparse.Namespace) -> int:
    path = Path(args.output)
    _check_format(path, _WRITERS)
    df = hub.pull(args.name, args.version)
    _WRITERS[path.suffix.lower()](df, path)
    print(f"wrote {len(df):,} rows × {df.shape[1]} columns to {path}")
    return 0


def cmd_tasks(hub: Hub, args: argparse.Namespace) -> int:
    df = hub.tasks()
    if not args.all:
        df = df.head(args.limit)
    print_frame(
        df[["id", "dataset", "status", "rows_done", "rows_total", "attempts", "version", "queued_at", "error"]].assign(
            id=df["id"].str[:8]
        ),
        empty="no tasks",
    )
    return 0


def cmd_rm(hub: Hub, args: argparse.Namespace) -> int:
    removed = hub.delete(args.name, args.version)
    what = f"version {args.version} of {args.name!r}" if args.version else f"dataset {args.name!r}"
    print(f"removed {what} ({len(removed)} version{'s' if len(removed) != 1 else ''}: {', '.join(map(str, removed))})")
    return 0


def cmd_cleanup(hub: Hub, args: argparse.Namespace) -> int:
    dropped = hub.cleanup()
    print(f"dropped {dropped} staging table{'s' if dropped != 1 else ''} kept for resuming interrupted uploads")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the dataset commands to ``sub``."""
    sub.add_parser("ls", help="list datasets").set_defaults(run=cmd_ls)

    p = sub.add_parser("versions", help="list the versions of a dataset")
    p.add_argument("name")
    p.set_defaults(run=cmd_versions)

    p = sub.add_parser("show", help="schema and first rows of a dataset")
    p.add_argument("name")
    p.add_argument("--rows", type=int, default=5)
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("pull", help="write a dataset to a CSV, Parquet or Feather file")
    p.add_argument("name")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--version", type=int)
    p.set_defaults(run=cmd_pull)

    p = sub.add_parser("tasks", help="list uploads, newest first")
    p.add_argument("--all", action="store_true", help="all of them, not just the newest 20")
    p.add_argument("--limit", type=int, default=20, help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_tasks)

    p = sub.add_parser("rm", help="remove a dataset, or one version of it")
    p.add_argument("name")
    p.add_argument("--version", type=int)
    p.set_defaults(run=cmd_rm)

    p = sub.add_parser("cleanup", help="drop the staged rows kept for resuming interrupted uploads")
    p.set_defaults(run=cmd_cleanup)
