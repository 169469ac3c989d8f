"""Push 1,000,000 rows × 8 columns into PostgreSQL: dsnotebook against ADBC, to_sql and bare COPY.

    python benchmarks/bench_push_pg.py [--rows N] [--repeats K]

Needs a PostgreSQL server (default postgresql://postgres@127.0.0.1:5432/test, trust auth; set
DSNOTEBOOK_BENCH_POSTGRES to change it); the benchmark creates a database of its own,
dsn_bench_<pid>, and drops it at the end. Each run of each case is a fresh subprocess writing a
fresh table; connecting is not timed, and each timed run starts once the server is quiet (no
autovacuum at work, a checkpoint just done). Cases:

  dsnotebook push                     hub.push(df, name) until task.wait() returns (a new name
                                      each run, so deduplication never answers); the child then
                                      pulls it back, untimed, and checks it equals the frame
  ADBC ingest (pyarrow)               pa.Table.from_pandas(df), adbc_ingest(mode="create") with
                                      ADBC's own PostgreSQL driver (binary COPY), commit
  ADBC ingest + primary key           the ordered floor: the same with a bigint row-number column
                                      added to the Arrow table, then ALTER TABLE ... ADD PRIMARY
                                      KEY on it, all in one transaction. It is the least any table
                                      that gives its rows back in order needs, so it is the
                                      yardstick of the speed target
  to_sql (psycopg)                    df.to_sql over a SQLAlchemy postgresql+psycopg engine
  bare asyncpg COPY                   copy_records_to_table from per-column Python lists, into a
                                      table typed as dsnotebook types it
  bare COPY, ordered                  the same plus a row number and a primary key built after
                                      the COPY, in one transaction

Every case starts from the same DataFrame, so building the values a baseline sends (an Arrow
table, Python lists) is timed too. Note that ADBC stores the datetime64[ns] column as a
timestamp (microseconds), where dsnotebook and the COPY cases store an exact bigint.

Targets: dsnotebook ≤ 1.1x the ADBC + primary key floor; ≥ 4x faster than to_sql; within
1.3x of the bare asyncpg COPY; peak RSS growth during the push ≤ the frame's
memory_usage(deep=True).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import Place, Stopwatch, frame_mb, make_frame, pg_admin, pg_url, print_table, print_targets, ratio, run_benchmark  # noqa: E402

OURS = "dsnotebook push"
ADBC = "ADBC ingest (pyarrow)"
ADBC_PK = "ADBC ingest + primary key"
TO_SQL = "to_sql (psycopg)"
COPY = "bare asyncpg COPY"
COPY_ORDERED = "bare COPY, ordered"
CASES = [OURS, ADBC, ADBC_PK, TO_SQL, COPY, COPY_ORDERED]


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


def _adbc_ingest(df, place: Place, table: str, *, ordered: bool) -> Stopwatch:
    import adbc_driver_postgresql.dbapi
    import numpy as np
    import pyarrow as pa

    con = adbc_driver_postgresql.dbapi.connect(pg_url(place.database))
    place.quiesce()
    with Stopwatch() as sw:
        arrow = pa.Table.from_pandas(df, preserve_index=False)
        if ordered:
            arrow = arrow.add_column(0, "row_id", pa.array(np.arange(1, len(df) + 1, dtype=np.int64)))
        with con.cursor() as cur:  # one transaction: the DB-API connection does not autocommit
            cur.adbc_ingest(table, arrow, mode="create")
            if ordered:
                cur.execute(f'ALTER TABLE "{table}" ADD PRIMARY KEY (row_id)')
        con.commit()
    con.close()
    return sw


def _asyncpg_copy(df, place: Place, table: str, *, ordered: bool) -> Stopwatch:
    import asyncpg

    async def copy() -> Stopwatch:
        conn = await asyncpg.connect(pg_url(place.database))
        try:
            columns = ", ".join(f'"{name}" {_pg_type(df[name])}' for name in df.columns)
            if ordered:
                columns = "row_id bigint NOT NULL, " + columns
            await conn.execute(f'CREATE TABLE "{table}" ({columns})')
            place.quiesce()
            with Stopwatch() as sw:
                if ordered:
                    async with conn.transaction():
                        records = zip(range(1, len(df) + 1), *_columns(df))
                        await conn.copy_records_to_table(table, records=records, columns=["row_id", *df.columns])
                        await conn.execute(f'ALTER TABLE "{table}" ADD PRIMARY KEY (row_id)')
                else:
                    await conn.copy_records_to_table(table, records=zip(*_columns(df)), columns=list(df.columns))
            return sw
        finally:
            await conn.close()

    return asyncio.run(copy())


def child(case: str, rows: int, place: Place) -> dict:
    import pandas as pd

    df = make_frame(rows)
    table = f"bench_{os.getpid()}"
    if case == OURS:
        import dsnotebook as dsn

        hub = dsn.connect(place.dsn_url())
        place.quiesce()
        with Stopwatch() as sw:
            hub.push(df, table).wait()
        try:  # untimed: the version must come back as pushed
            pd.testing.assert_frame_equal(hub.pull(table), df, check_exact=True)
            exact = "yes"
        except AssertionError as exc:
            exact = f"NO: {' '.join(str(exc).split())[:400]}"
        hub.close()
        return sw.result(bound_mb=frame_mb(df), bound_label="≤ the frame's memory_usage(deep=True)", exact=exact)
    if case in (ADBC, ADBC_PK):
        sw = _adbc_ingest(df, place, table, ordered=case == ADBC_PK)
    elif case in (COPY, COPY_ORDERED):
        sw = _asyncpg_copy(df, place, table, ordered=case == COPY_ORDERED)
    elif case == TO_SQL:
        import sqlalchemy

        engine = sqlalchemy.create_engine(pg_url(place.database, "+psycopg"))
        with engine.connect():
            pass  # connect outside the timed region, as for the others
        place.quiesce()
        with Stopwatch() as sw:
            df.to_sql(table, engine, index=False)
        engine.dispose()
    else:
        raise SystemExit(f"unknown case {case!r}")
    pg_admin(f'DROP TABLE "{table}"', place.database)  # untimed; keeps the scratch database small
    return sw.result()


def main() -> None:
    results = run_benchmark(__file__, __doc__, CASES, child, backends=("postgresql",))
    print_table(f"push {results.rows:,} rows × 8 columns to PostgreSQL", results, OURS)
    exact = results.first(OURS, "exact")
    if exact:
        print(f"  dsnotebook push: pulled back, equals the pushed frame exactly: {exact}")
    ours = results.median(OURS)
    growth, bound = results.median(OURS, "rss_growth_mb"), results.median(OURS, "bound_mb")
    print_targets(
        [
            ("dsnotebook / (ADBC ingest + primary key) ≤ 1.1", ratio(ours, results.median(ADBC_PK)), lambda v: v <= 1.1, "{:.2f}x"),
            ("≥ 4x faster than to_sql over psycopg", ratio(results.median(TO_SQL), ours), lambda v: v >= 4, "{:.2f}x"),
            ("within 1.3x of bare asyncpg COPY", ratio(ours, results.median(COPY)), lambda v: v <= 1.3, "{:.2f}x"),
            ("peak RSS growth ≤ frame memory", ratio(growth, bound), lambda v: v <= 1, f"{growth or 0:.0f} MB = {{:.2f}}x the frame's {bound or 0:.0f} MB"),
        ]
    )

    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    print(
        f"\nan ordered table costs {show(ratio(results.median(ADBC_PK), results.median(ADBC)))} the plain ADBC ingest "
        f"and {show(ratio(results.median(COPY_ORDERED), results.median(COPY)))} the plain COPY; "
        f"dsnotebook / ADBC ingest = {show(ratio(ours, results.median(ADBC)))}, "
        f"dsnotebook / bare COPY, ordered = {show(ratio(ours, results.median(COPY_ORDERED)))}"
    )


if __name__ == "__main__":
    main()
