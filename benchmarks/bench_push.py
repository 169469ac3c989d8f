"""Push 1,000,000 rows × 8 columns into SQLite: dsnotebook against to_sql and raw executemany.

    python benchmarks/bench_push.py [--rows N] [--runs K]

Every method starts from the same DataFrame, so building the row tuples counts for the
baselines too. Each run of each method is a fresh subprocess writing a fresh database file.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import make_frame, print_table, reset_peak_rss, rss_mb, run_benchmark  # noqa: E402

METHODS = [
    "dsnotebook push",
    "to_sql (SQLAlchemy engine)",
    "to_sql (sqlite3)",
    "raw sqlite3 executemany",
    "raw executemany, int64 timestamps",
]


def _tuples(df, *, int_timestamps: bool = False):
    """What a careful hand-written loader binds: plain Python values, None for missing.

    Timestamps go in as ISO text, as ``to_sql`` stores them, or with ``int_timestamps`` as
    int64 nanoseconds, as dsnotebook stores them.
    """
    import numpy as np

    cols = []
    for name in df.columns:
        s = df[name]
        if s.dtype.kind == "M" and int_timestamps:
            values = s.to_numpy().view("int64").tolist()
        elif s.dtype.kind == "M":
            values = s.dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist()
        elif isinstance(s.dtype, type(df["cat"].dtype)) or s.dtype == "str":
            values = s.astype(object).where(s.notna(), None).tolist()
        elif s.dtype == "Int64":
            values = s.astype(object).where(s.notna(), None).tolist()
        else:
            values = s.to_numpy(dtype=s.dtype if s.dtype != bool else np.int8).tolist()
        cols.append(values)
    return list(zip(*cols))


def child(method: str, rows: int, workdir: Path) -> dict:
    df = make_frame(rows)
    path = workdir / f"{method.split()[0]}-{time.perf_counter_ns()}.db"
    if method == "dsnotebook push":
        import dsnotebook as dsn

        hub = dsn.connect(f"sqlite+aiosqlite:///{path}")
        reset_peak_rss()
        before, _ = rss_mb()
        t0 = time.perf_counter()
        hub.push(df, "bench").wait()
        seconds = time.perf_counter() - t0
        hub.close()
    elif method == "to_sql (SQLAlchemy engine)":
        import sqlalchemy

        engine = sqlalchemy.create_engine(f"sqlite:///{path}")
        reset_peak_rss()
        before, _ = rss_mb()
        t0 = time.perf_counter()
        df.to_sql("bench", engine, index=False)
        seconds = time.perf_counter() - t0
        engine.dispose()
    elif method == "to_sql (sqlite3)":
        con = sqlite3.connect(path)
        reset_peak_rss()
        before, _ = rss_mb()
        t0 = time.perf_counter()
        df.to_sql("bench", con, index=False)
        con.commit()
        seconds = time.perf_counter() - t0
        con.close()
    elif method.startswith("raw"):
        int_timestamps = "int64" in method
        con = sqlite3.connect(path)
        con.execute(
            "CREATE TABLE bench (i64 INTEGER, f64 REAL, f64_nan REAL, text TEXT, cat TEXT, flag INTEGER, "
            f"ts {'INTEGER' if int_timestamps else 'TEXT'}, int_na INTEGER)"
        )
        reset_peak_rss()
        before, _ = rss_mb()
        t0 = time.perf_counter()
        con.executemany("INSERT INTO bench VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _tuples(df, int_timestamps=int_timestamps))
        con.commit()
        seconds = time.perf_counter() - t0
        con.close()
    else:
        raise SystemExit(f"unknown method {method!r}")
    _, peak = rss_mb()
    return {"seconds": seconds, "rss_growth_mb": peak - before, "frame_mb": df.memory_usage(deep=True).sum() / 2**20}


def main() -> None:
    results, rows = run_benchmark(__file__, __doc__, METHODS, child)
    frame_mb = results[METHODS[0]][0]["frame_mb"]
    medians = print_table(f"push {rows:,} rows × 8 columns to SQLite", results, "dsnotebook push", frame_mb)
    ours = medians["dsnotebook push"]
    growth = sorted(r["rss_growth_mb"] for r in results["dsnotebook push"])[len(results["dsnotebook push"]) // 2]
    print("\ntargets:")
    checks = [
        ("≥ 2.5x faster than to_sql over SQLAlchemy", medians["to_sql (SQLAlchemy engine)"] / ours, 2.5, "x faster"),
        ("≥ 1.1x faster than to_sql over sqlite3", medians["to_sql (sqlite3)"] / ours, 1.1, "x faster"),
        ("within 1.15x of raw executemany", medians["raw sqlite3 executemany"] * 1.15 / ours, 1.0, ""),
        ("peak RSS growth ≤ frame memory", frame_mb / max(growth, 1e-9), 1.0, ""),
    ]
    for label, value, threshold, _unit in checks:
        print(f"  {'met ' if value >= threshold else 'MISSED'}  {label}")
    print(
        f"  (to_sql SQLAlchemy / ours = {medians['to_sql (SQLAlchemy engine)'] / ours:.2f}x, "
        f"to_sql sqlite3 / ours = {medians['to_sql (sqlite3)'] / ours:.2f}x, "
        f"ours / raw executemany = {ours / medians['raw sqlite3 executemany']:.2f}x, "
        f"ours / raw executemany with int64 timestamps = {ours / medians['raw executemany, int64 timestamps']:.2f}x, "
        f"our peak growth {growth:.0f} MB vs frame {frame_mb:.0f} MB)"
    )


if __name__ == "__main__":
    main()
