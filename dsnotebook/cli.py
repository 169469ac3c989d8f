"""The ``dsnotebook`` command: push files, list and pull datasets, and run a demo.

Every command takes ``--url`` (default: ``DSNOTEBOOK_URL``, else ``~/.dsnotebook/datasets.db``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .errors import DsnotebookError, ValidationError
from .hub import Hub
from .store.engine import DEFAULT_PATH
from .upload import IF_EXISTS, UploadTask

__all__ = ["main"]

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


def follow(tasks: Sequence[UploadTask], *, out=None) -> None:
    """Show a tqdm bar per upload until every one has ended."""
    bars = [
        tqdm(total=t.rows_total, desc=t.dataset, unit="rows", unit_scale=t.rows_total >= 100_000, position=i, leave=True, file=out, dynamic_ncols=True)
        for i, t in enumerate(tasks)
    ]
    try:
        while True:
            for task, bar in zip(tasks, bars, strict=True):
                bar.update(task.rows_done - bar.n)
                bar.set_postfix_str(task.status, refresh=False)
            if all(t.done() for t in tasks):
                break
            time.sleep(0.1)
    finally:
        for task, bar in zip(tasks, bars, strict=True):
            bar.update(task.rows_done - bar.n)
            bar.set_postfix_str(task.status)
            bar.close()


def _print_frame(df: pd.DataFrame, *, empty: str) -> None:
    if df.empty:
        print(empty)
    else:
        with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 40):
            print(df.to_string(index=False))


def cmd_push(hub: Hub, args) -> int:
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


def cmd_ls(hub: Hub, args) -> int:
    df = hub.datasets()
    _print_frame(df[["name", "latest_version", "versions", "rows", "columns", "updated_at", "description"]], empty="no datasets")
    return 0


def cmd_versions(hub: Hub, args) -> int:
    _print_frame(hub.versions(args.name), empty="no versions")
    return 0


def cmd_show(hub: Hub, args) -> int:
    info = hub.info(args.name)
    latest = info.latest
    print(f"{info.name!r} version {latest.version} of {info.versions}: {latest.rows:,} rows × {latest.columns} columns")
    if info.description:
        print(f"description: {info.description}")
    print(f"created {latest.created_at:%Y-%m-%d %H:%M:%S %Z} by {latest.created_by}; table {latest.table_name}, view {info.view_name}")
    print("\nschema:")
    _print_frame(pd.DataFrame(info.schema, columns=["column", "dtype"]).astype({"column": str}), empty="(no columns)")
    print(f"\nfirst {args.rows} rows:")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(hub.pull(args.name, limit=args.rows).to_string())
    return 0


def cmd_pull(hub: Hub, args) -> int:
    path = Path(args.output)
    _check_format(path, _WRITERS)
    df = hub.pull(args.name, args.version)
    _WRITERS[path.suffix.lower()](df, path)
    print(f"wrote {len(df):,} rows × {df.shape[1]} columns to {path}")
    return 0


def cmd_tasks(hub: Hub, args) -> int:
    df = hub.tasks()
    if not args.all:
        df = df.head(args.limit)
    _print_frame(
        df[["id", "dataset", "status", "rows_done", "rows_total", "attempts", "version", "queued_at", "error"]].assign(
            id=df["id"].str[:8]
        ),
        empty="no tasks",
    )
    return 0


def cmd_rm(hub: Hub, args) -> int:
    removed = hub.delete(args.name, args.version)
    what = f"version {args.version} of {args.name!r}" if args.version else f"dataset {args.name!r}"
    print(f"removed {what} ({len(removed)} version{'s' if len(removed) != 1 else ''}: {', '.join(map(str, removed))})")
    return 0


def cmd_cleanup(hub: Hub, args) -> int:
    dropped = hub.cleanup()
    print(f"dropped {dropped} staging table{'s' if dropped != 1 else ''} kept for resuming interrupted uploads")
    return 0


def demo_frames(rows: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A few generated frames covering the dtypes ``to_sql`` loses."""
    rng = np.random.default_rng(seed)
    n = rows
    sales = pd.DataFrame(
        {
            "order_id": np.arange(n, dtype="int64"),
            "amount": rng.normal(100, 25, n).round(2),
            "quantity": pd.array(rng.integers(1, 10, n), dtype="Int64"),
            "region": pd.Categorical(rng.choice(["north", "south", "east", "west"], n), categories=["north", "south", "east", "west", "central"]),
            "ordered_at": pd.date_range("2026-03-28", periods=n, freq="37s", tz="Europe/Paris"),
            "paid": rng.random(n) > 0.1,
        }
    )
    sales.loc[sales.index % 17 == 0, "quantity"] = pd.NA
    sensors = pd.DataFrame(
        {
            "reading": rng.random(n).astype("float32"),
            "delay": pd.to_timedelta(rng.integers(0, 10**9, n), unit="ns"),
            "label": pd.array([f"s{i % 97}" if i % 13 else None for i in range(n)], dtype="string"),
        },
        index=pd.Index(pd.date_range("2026-01-01", periods=n, freq="1ms"), name="at"),
    )
    users = pd.DataFrame(
        {"user": [f"user{i}" for i in range(min(n, 1000))], "score": pd.array([i % 7 or None for i in range(min(n, 1000))], dtype="Int32")}
    )
    return {"demo/sales": sales, "demo/sensors": sensors, "demo/users": users}


def cmd_demo(hub: Hub, args) -> int:
    frames = demo_frames(args.rows)
    print(f"pushing {len(frames)} datasets to {hub.url.render_as_string(hide_password=True)}")
    started = time.perf_counter()
    handles = [hub.push(df, name, priority=i, description="generated by 'dsnotebook demo'") for i, (name, df) in enumerate(frames.items())]
    follow(handles, out=sys.stderr)
    results = []
    for (name, df), handle in zip(frames.items(), handles, strict=True):
        version = handle.wait()
        back = hub.pull(name, version.version)
        pd.testing.assert_frame_equal(back, df, check_exact=True, check_index_type=True, check_column_type=True)
        results.append(
            {
                "dataset": name,
                "version": version.version,
                "rows": version.rows,
                "columns": version.columns,
                "rows/s": f"{handle.rows_per_s:,.0f}",
                "identical after pull": "yes",
                "dtypes": ", ".join(sorted({str(t) for t in df.dtypes})),
            }
        )
    print(f"\nall {len(results)} uploads succeeded and pulled back identical in {time.perf_counter() - started:.1f} s\n")
    _print_frame(pd.DataFrame(results), empty="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsnotebook",
        description="Push DataFrames as named, versioned datasets, and pull them back identical.",
    )
    parser.add_argument("--url", help=f"database URL (default: $DSNOTEBOOK_URL, else {DEFAULT_PATH})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("push", help="upload a CSV, Parquet or Feather file as a dataset")
    p.add_argument("file")
    p.add_argument("--name", required=True, help="dataset name")
    p.add_argument("--if-exists", choices=IF_EXISTS, default="replace")
    p.add_argument("--description")
    p.set_defaults(run=cmd_push)

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

    p = sub.add_parser("demo", help="push generated frames concurrently, pull them back and verify them")
    p.add_argument("--rows", type=int, default=200_000)
    p.set_defaults(run=cmd_demo, demo=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = args.url
    if url is None and getattr(args, "demo", False):
        if not os.environ.get("DSNOTEBOOK_URL"):
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
