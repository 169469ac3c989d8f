"""Push 1,000,000 rows × 8 columns into PostgreSQL: dsnotebook against to_sql and bare COPY.

    python benchmarks/bench_push_pg.py [--rows N] [--runs K]

Needs a PostgreSQL server at 127.0.0.1:5432 (user postgres, trust auth, database test); the
benchmark creates a database of its own, dsn_bench_<pid>, and drops it at the end. Every method
starts from the same DataFrame, so building the row values counts for the baselines too. Each
run of each method is a fresh subprocess writing a fresh table; connecting is not timed, and
each timed run starts once the server is quiet (no autovacuum at work, a checkpoint just done).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import make_frame, print_table, reset_peak_rss, rss_mb, run_benchmark  # noqa: E402

SERVER = "postgres@127.0.0.1:5432"
METHODS = [
    "dsnotebook push",
    "to_sql (psycopg)",
    "bare asyncpg COPY",
    "bare COPY, ordered",
]
# "bare COPY, ordered" is the same COPY plus what any table that gives its rows back in order
# needs: a row number column, and a primary key on it built once the rows are in (one
# transaction). It is the floor for dsnotebook's tables, which must pull back identical frames.


def _url(driver: str, database: str) -> str:
    return f"postgresql{driver}://{SERVER}/{database}"


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_url("", "test"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _quiesce() -> None:
    """Start every timed run from a quiet server: no autovacuum worker still busy with an
    earlier run's table, and no dirty buffers left for a checkpoint to write mid-run."""
    import asyncpg

    conn = await asyncpg.connect(_url("", "test"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
            if not busy:
                break
            await asyncio.sleep(0.2)
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def quiesce() -> None:
    asyncio.run(_quiesce())


def prepare(rows: int, workdir: Path) -> None:
    """Create this run's own database (via ``test``) and drop it whenever the benchmark exits."""
    database = f"dsn_bench_{os.getpid()}"
    asyncio.run(_admin(f"CREATE DATABASE {database}"))
    atexit.register(lambda: asyncio.run(_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
    (workdir / "database").write_text(database)


def _pg_type(s) -> str:
    """The storage type dsnotebook gives the column: boolean, bigint, double precision or text
    (datetime64[ns] with nanoseconds stays a bigint count)."""
    import pandas as pd

    dtype = s.dtype.categories.dtype if isinstance(s.dtype, pd.CategoricalDtype) else s.dtype
    if dtype.kind == "b" or str(dtype) == "boolean":
        return "boolean"
    if dtype.kind in "iuMm":
        return "bigint"
    if dtype.kind == "f":
        return "double precision"
    return "text"


def _columns(df) -> list[list]:
    """The cheapest honest conversion to what dsnotebook stores, one Python list per column.

    int64 → int, float → float (NaN stays NaN), str → str, category → its value, bool → bool,
    datetime64 → int epoch in the dtype's unit, Int64 → int; anything missing → None.
    """
    import numpy as np
    import pandas as pd

    cols = []
    for name in df.columns:
        s = df[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            lookup = np.empty(len(s.cat.categories) + 1, dtype=object)
            lookup[:-1] = s.cat.categories.to_numpy(dtype=object)
            lookup[-1] = None  # code -1
            values = lookup[s.cat.codes.to_numpy()].tolist()
        elif s.dtype.kind == "M":
            i8 = s.array.asi8
            values = i8.tolist()
            for j in np.flatnonzero(i8 == np.iinfo(np.int64).min).tolist():
                values[j] = None
        elif isinstance(s.array, pd.arrays.IntegerArray):
            values = s.array._data.tolist()
            for j in np.flatnonzero(s.array._mask).tolist():
                values[j] = None
        elif s.dtype.kind in "biuf":
            values = s.to_numpy().tolist()
        else:
            values = s.array.to_numpy(dtype=object, na_value=None).tolist()
        cols.append(values)
    return cols


def child(method: str, rows: int, workdir: Path) -> dict:
    import pandas as pd

    df = make_frame(rows)
    database = (workdir / "database").read_text()
    table = f"bench_{os.getpid()}"
    if method == "dsnotebook push":
        import dsnotebook as dsn

        hub = dsn.connect(_url("+asyncpg", database))
        quiesce()
        reset_peak_rss()
        before, _ = rss_mb()
        t0 = time.perf_counter()
        version = hub.push(df, table).wait()
        seconds = time.perf_counter() - t0
        _, peak = rss_mb()
        # A new name per run, so the push is never answered by deduplication; checked here too.
        assert not version.deduplicated and version.rows == rows, version
        pd.testing.assert_frame_equal(hub.pull(table), df, check_exact=True)
        hub.close()
    elif method == "to_sql (psycopg)":
        import sqlalchemy

        engine = sqlalchemy.create_engine(_url("+psycopg", database))
        with engine.connect():
            pass  # connect outside the timed region, as for the others
        quiesce()
        reset_peak_rss()
        before, _ = rss_mb()
        t0 = time.perf_counter()
        df.to_sql(table, engine, if_exists="replace", index=False)
        seconds = time.perf_counter() - t0
        _, peak = rss_mb()
        engine.dispose()
    elif method in ("bare asyncpg COPY", "bare COPY, ordered"):
        import asyncpg

        ordered = method == "bare COPY, ordered"

        async def copy() -> tuple[float, float]:
            conn = await asyncpg.connect(_url("", database))
            try:
                columns = ", ".join(f'"{name}" {_pg_type(df[name])}' for name in df.columns)
                if ordered:
                    columns = "row_id bigint NOT NULL, " + columns
                await conn.execute(f'CREATE TABLE "{table}" ({columns})')
                await _quiesce()
                reset_peak_rss()
                before, _ = rss_mb()
                t0 = time.perf_counter()
                if ordered:
                    async with conn.transaction():
                        records = zip(range(1, len(df) + 1), *_columns(df))
                        await conn.copy_records_to_table(table, records=records, columns=["row_id", *df.columns])
                        await conn.execute(f'ALTER TABLE "{table}" ADD PRIMARY KEY (row_id)')
                else:
                    await conn.copy_records_to_table(table, records=zip(*_columns(df)), columns=list(df.columns))
                return time.perf_counter() - t0, before
            finally:
                await conn.close()

        seconds, before = asyncio.run(copy())
        _, peak = rss_mb()
    else:
        raise SystemExit(f"unknown method {method!r}")
    return {"seconds": seconds, "rss_growth_mb": peak - before, "frame_mb": df.memory_usage(deep=True).sum() / 2**20}


def main() -> None:
    results, rows = run_benchmark(__file__, __doc__, METHODS, child, prepare=prepare)
    frame_mb = results[METHODS[0]][0]["frame_mb"]
    medians = print_table(f"push {rows:,} rows × 8 columns to PostgreSQL", results, "dsnotebook push", frame_mb)
    ours = medians["dsnotebook push"]
    faster = medians["to_sql (psycopg)"] / ours
    of_copy = ours / medians["bare asyncpg COPY"]
    floor = medians["bare COPY, ordered"] / medians["bare asyncpg COPY"]
    of_ordered = ours / medians["bare COPY, ordered"]
    print("\ntargets:")
    checks = [
        ("≥ 4x faster than to_sql over psycopg", faster >= 4, f"to_sql psycopg / ours = {faster:.2f}x"),
        ("within 1.3x of bare asyncpg COPY", of_copy <= 1.3, f"ours / bare COPY = {of_copy:.2f}x"),
    ]
    for label, met, detail in checks:
        print(f"  {'met    ' if met else 'NOT met'}  {label} ({detail})")
    print(f"\nan ordered table alone costs {floor:.2f}x the bare COPY; ours / bare COPY, ordered = {of_ordered:.2f}x")


if __name__ == "__main__":
    main()
