"""Push 1,000,000 rows × 8 columns into SQLite: dsnotebook against ADBC, to_sql and executemany.

    python benchmarks/bench_push.py [--rows N] [--repeats K]

Cases (each run of each case is a fresh subprocess writing a fresh database file):

  dsnotebook push                     hub.push(df, name) until task.wait() returns
  dsnotebook push, Arrow-backed       the same data as Arrow-backed pandas columns (pd.ArrowDtype,
                                      as dtype_backend="pyarrow" gives), pushed alike
  dsnotebook push, polars             the same data as a polars DataFrame, pushed alike
  ADBC ingest (pyarrow)               pa.Table.from_pandas(df), then adbc_ingest(mode="create") with
                                      ADBC's own SQLite driver, and the commit: the fastest generic
                                      DataFrame → SQLite path, and the yardstick of the speed target
  to_sql (sqlite3)                    df.to_sql over a plain sqlite3 connection
  to_sql (SQLAlchemy engine)          df.to_sql over a SQLAlchemy engine
  raw sqlite3 executemany             a hand-written loader: row tuples, one executemany, commit
  raw executemany, int64 timestamps   the same, binding timestamps as int64 nanoseconds, as
                                      dsnotebook stores them

Every case starts from the same DataFrame, so the conversions a baseline needs (an Arrow table,
row tuples) are timed too; connecting is not. None of the baselines keeps the row order in a key,
the dtypes or the index, which dsnotebook does, so they are floors, not equals.

Targets: dsnotebook ≤ 0.7x the ADBC ingest's time; under 0.6 s per million rows; peak RSS growth
during the push ≤ the frame's memory_usage(deep=True); the Arrow-backed frame and the polars frame
push at least as fast as the NumPy-backed one. (The Arrow-backed and polars frames are made from
the NumPy-backed one by pyarrow and polars, outside the timing: NaN becomes null there.)
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import NotAvailable, Place, Stopwatch, frame_mb, make_frame, print_table, print_targets, ratio, run_benchmark  # noqa: E402

OURS = "dsnotebook push"
ARROW_BACKED = "dsnotebook push, Arrow-backed"
POLARS = "dsnotebook push, polars"
ADBC = "ADBC ingest (pyarrow)"
CASES = [
    OURS,
    ARROW_BACKED,
    POLARS,
    ADBC,
    "to_sql (sqlite3)",
    "to_sql (SQLAlchemy engine)",
    "raw sqlite3 executemany",
    "raw executemany, int64 timestamps",
]


def _tuples(df, *, int_timestamps: bool = False):
    """What a careful hand-written loader binds: plain Python values, None for missing.

    Timestamps go in as ISO text, as ``to_sql`` stores them, or with ``int_timestamps`` as
    int64 nanoseconds, as dsnotebook stores them.
    """
    import numpy as np
    import pandas as pd

    cols = []
    for name in df.columns:
        s = df[name]
        if s.dtype.kind == "M" and int_timestamps:
            values = s.to_numpy().view("int64").tolist()
        elif s.dtype.kind == "M":
            values = s.dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist()
        elif isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == "str" or s.dtype == "Int64":
            values = s.astype(object).where(s.notna(), None).tolist()
        else:
            values = s.to_numpy(dtype=s.dtype if s.dtype != bool else np.int8).tolist()
        cols.append(values)
    return list(zip(*cols))


def _as_kind(df, case: str):
    """The frame to push in ``case``: ``df`` itself, or the same data Arrow-backed or in polars."""
    if case == ARROW_BACKED:
        import pandas as pd
        import pyarrow as pa

        return pa.Table.from_pandas(df, preserve_index=False).to_pandas(types_mapper=pd.ArrowDtype)
    if case == POLARS:
        try:
            import polars as pl
        except ImportError as exc:
            raise NotAvailable("polars is not installed (pip install 'dsnotebook[polars]')") from exc
        return pl.from_pandas(df)
    return df


def child(case: str, rows: int, place: Place) -> dict:
    df = make_frame(rows)
    path = place.workdir / f"push-{time.perf_counter_ns()}.db"
    if case in (OURS, ARROW_BACKED, POLARS):
        import dsnotebook as dsn

        frame = _as_kind(df, case)
        hub = dsn.connect(place.dsn_url(path.name))
        hub.wait_housekeeping()
        with Stopwatch() as sw:
            hub.push(frame, "bench").wait()
        hub.close()
        if case != OURS:
            return sw.result()
        return sw.result(bound_mb=frame_mb(df), bound_label="≤ the frame's memory_usage(deep=True)")
    if case == ADBC:
        import adbc_driver_sqlite.dbapi
        import pyarrow as pa

        con = adbc_driver_sqlite.dbapi.connect(str(path))
        with Stopwatch() as sw, con.cursor() as cur:
            cur.adbc_ingest("bench", pa.Table.from_pandas(df, preserve_index=False), mode="create")
            con.commit()
        con.close()
    elif case == "to_sql (SQLAlchemy engine)":
        import sqlalchemy

        engine = sqlalchemy.create_engine(f"sqlite:///{path}")
        with engine.connect():
            pass  # connect outside the timed region, as for the others
        with Stopwatch() as sw:
            df.to_sql("bench", engine, index=False)
        engine.dispose()
    elif case == "to_sql (sqlite3)":
        con = sqlite3.connect(path)
        with Stopwatch() as sw:
            df.to_sql("bench", con, index=False)
            con.commit()
        con.close()
    elif case.startswith("raw"):
        int_timestamps = "int64" in case
        con = sqlite3.connect(path)
        con.execute(
            "CREATE TABLE bench (i64 INTEGER, f64 REAL, f64_nan REAL, text TEXT, cat TEXT, flag INTEGER, "
            f"ts {'INTEGER' if int_timestamps else 'TEXT'}, int_na INTEGER)"
        )
        with Stopwatch() as sw:
            con.executemany("INSERT INTO bench VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _tuples(df, int_timestamps=int_timestamps))
            con.commit()
        con.close()
    else:
        raise SystemExit(f"unknown case {case!r}")
    return sw.result()


def main() -> None:
    results = run_benchmark(__file__, __doc__, CASES, child)
    rows = results.rows
    print_table(f"push {rows:,} rows × 8 columns to SQLite", results, OURS)
    ours = results.median(OURS)
    per_million = ours * 1e6 / rows if ours else None
    growth, bound = results.median(OURS, "rss_growth_mb"), results.median(OURS, "bound_mb")
    print_targets(
        [
            ("dsnotebook / ADBC ingest ≤ 0.7", ratio(ours, results.median(ADBC)), lambda v: v <= 0.7, "{:.2f}x"),
            ("under 0.6 s per million rows", per_million, lambda v: v < 0.6, "{:.3f} s per 1M rows"),
            ("peak RSS growth ≤ frame memory", ratio(growth, bound), lambda v: v <= 1, f"{growth or 0:.0f} MB = {{:.2f}}x the frame's {bound or 0:.0f} MB"),
            ("≥ 1.1x faster than to_sql over sqlite3", ratio(results.median("to_sql (sqlite3)"), ours), lambda v: v >= 1.1, "{:.2f}x"),
            ("≥ 2.5x faster than to_sql over SQLAlchemy", ratio(results.median("to_sql (SQLAlchemy engine)"), ours), lambda v: v >= 2.5, "{:.2f}x"),
            ("within 1.15x of raw executemany", ratio(ours, results.median("raw sqlite3 executemany")), lambda v: v <= 1.15, "{:.2f}x"),
            ("Arrow-backed frame ≤ NumPy-backed frame", ratio(results.median(ARROW_BACKED), ours), lambda v: v <= 1.0, "{:.2f}x"),
            ("polars frame ≤ NumPy-backed frame", ratio(results.median(POLARS), ours), lambda v: v <= 1.0, "{:.2f}x"),
        ]
    )


if __name__ == "__main__":
    main()
