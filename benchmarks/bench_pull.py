"""Pull 1,000,000 rows × 8 columns back from SQLite or PostgreSQL: dsnotebook against
pd.read_sql and ADBC, on the very same table.

    python benchmarks/bench_pull.py [--backend sqlite|postgresql] [--rows N] [--repeats K]

The frame is pushed once with dsnotebook (not timed); every case then reads that version's data
table, whose name comes from ``hub.versions(name)`` (or, failing that, the ``dsn_latest_*``
view). Each run of each case is a fresh subprocess. Cases:

  dsnotebook pull                     hub.pull(name); the child then checks, untimed, that the
                                      result equals the pushed frame exactly
                                      (pd.testing.assert_frame_equal, check_exact=True)
  dsnotebook iter_batches             for batch in hub.iter_batches(name, batch_rows=100_000),
                                      each batch dropped once seen: the streaming read, whose
                                      memory should stay near one batch ("n/a" when the installed
                                      dsnotebook has no iter_batches yet); the child then checks,
                                      untimed, that pd.concat of the batches equals the frame
  pd.read_sql                         SELECT * of the table over sqlite3 (SQLite) or over a
                                      SQLAlchemy postgresql+psycopg connection (PostgreSQL):
                                      what pandas users do today
  ADBC fetch → to_pandas              the same SELECT through ADBC's own driver,
                                      cursor.fetch_arrow_table().to_pandas(): the columnar floor

The baselines read the table as SQL sees it (dsnotebook's row-number column included, no dtype
restored, no category, no Int64); the table lists how many of the frame's dtypes each got back.
On PostgreSQL the table is vacuumed and analysed once before the runs, so no reader pays for
setting hint bits, and every timed run starts once the server is quiet.

Targets: pd.read_sql / dsnotebook ≥ 3x; peak RSS growth of a pull ≤ 2x the result's
memory_usage(deep=True); iter_batches' peak growth ≤ 2x its largest batch's.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import BACKENDS, NotAvailable, Place, Stopwatch, frame_mb, make_frame, pg_admin, pg_url, print_table, print_targets, ratio, run_benchmark, run_prepare_step  # noqa: E402

DATASET = "bench"
SQLITE_FILE = "pull.db"
BATCH_ROWS = 100_000
OURS = "dsnotebook pull"
BATCHES = f"dsnotebook iter_batches ({BATCH_ROWS // 1000}k rows)"
READ_SQL = "pd.read_sql"
ADBC = "ADBC fetch → to_pandas"
CASES = [OURS, BATCHES, READ_SQL, ADBC]


def _latest_table(hub, place: Place) -> str:
    """The latest version's data table, from ``hub.versions``, else the dataset's latest view."""
    versions = hub.versions(DATASET)
    if "table_name" in versions.columns:
        return str(versions.sort_values("version")["table_name"].iloc[-1])
    pattern = f"dsn_latest_{DATASET}%"
    if place.backend == "sqlite":
        import sqlite3

        with sqlite3.connect(place.workdir / SQLITE_FILE) as con:
            found = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'view' AND name LIKE ?", (pattern,))]
    else:
        found = [r[0] for r in pg_admin(f"SELECT table_name FROM information_schema.views WHERE table_name LIKE '{pattern}'", place.database)]
    if len(found) != 1:
        raise RuntimeError(f"cannot tell the dataset's table: hub.versions has no table_name and the views are {found}")
    return found[0]


def prepare(rows: int, place: Place) -> None:
    """Push the frame once with dsnotebook and note the table every case reads."""

    def push() -> None:
        import dsnotebook as dsn

        hub = dsn.connect(place.dsn_url(SQLITE_FILE))
        try:
            hub.push(make_frame(rows), DATASET).wait()
            table = _latest_table(hub, place)
        finally:
            hub.close()
        place.note("table", table)
        if place.backend == "postgresql":
            pg_admin(f'VACUUM (ANALYZE) "{table}"', place.database)

    run_prepare_step("pushing the frame with dsnotebook", push)


def _dtypes_kept(df, expected) -> str:
    """How many of the frame's columns came back with their dtype, e.g. "3 of 8"."""
    kept = sum(1 for name, dtype in expected.dtypes.items() if name in df.columns and df[name].dtype == dtype)
    return f"{kept} of {len(expected.columns)}"


def _sql_baseline(case: str, place: Place, sql: str):
    """Connect (untimed) and return a function that runs ``sql`` and gives a DataFrame."""
    import pandas as pd

    if case == READ_SQL and place.backend == "sqlite":
        import sqlite3

        con = sqlite3.connect(place.workdir / SQLITE_FILE)
        return lambda: pd.read_sql(sql, con)
    if case == READ_SQL:
        import sqlalchemy

        con = sqlalchemy.create_engine(pg_url(place.database, "+psycopg")).connect()
        return lambda: pd.read_sql(sqlalchemy.text(sql), con)
    if place.backend == "sqlite":
        import adbc_driver_sqlite.dbapi as adbc
    else:
        import adbc_driver_postgresql.dbapi as adbc
    con = adbc.connect(str(place.workdir / SQLITE_FILE) if place.backend == "sqlite" else pg_url(place.database))

    def fetch():
        with con.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table().to_pandas()

    return fetch


def child(case: str, rows: int, place: Place) -> dict:
    import pandas as pd

    if case in (OURS, BATCHES):
        import dsnotebook as dsn

        hub = dsn.connect(place.dsn_url(SQLITE_FILE))
        if case == BATCHES and not hasattr(hub, "iter_batches"):
            hub.close()
            raise NotAvailable("n/a (not available)")
        place.quiesce()
        if case == OURS:
            with Stopwatch() as sw:
                df = hub.pull(DATASET)
            result = sw.result(bound_mb=2 * frame_mb(df), bound_label="≤ 2x the result's memory_usage(deep=True)")
        else:
            seen, largest_mb = 0, 0.0
            with Stopwatch() as sw:
                for batch in hub.iter_batches(DATASET, batch_rows=BATCH_ROWS):
                    seen += len(batch)
                    largest_mb = max(largest_mb, frame_mb(batch))
                    del batch  # a consumer that is done with a batch lets it go
            result = sw.result(bound_mb=2 * largest_mb, bound_label="≤ 2x its largest batch's memory_usage(deep=True)", rows_seen=seen)
            # Untimed: read it all again, to check the batches add up to the pushed frame, index
            # included (a RangeIndex continues from batch to batch).
            df = pd.concat(list(hub.iter_batches(DATASET, batch_rows=BATCH_ROWS)))
        hub.close()
        expected = make_frame(rows)
        try:
            pd.testing.assert_frame_equal(df, expected, check_exact=True)
            result["exact"] = "yes"
        except AssertionError as exc:
            result["exact"] = f"NO: {' '.join(str(exc).split())[:400]}"
        result["dtypes_kept"] = _dtypes_kept(df, expected)
        return result

    table = place.note("table")
    read = _sql_baseline(case, place, f'SELECT * FROM "{table}"')
    place.quiesce()
    with Stopwatch() as sw:
        df = read()
    return sw.result(dtypes_kept=_dtypes_kept(df, make_frame(rows)), result_mb=frame_mb(df))


def main() -> None:
    results = run_benchmark(__file__, __doc__, CASES, child, backends=BACKENDS, prepare=prepare)
    backend = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[results.backend]
    print_table(f"pull {results.rows:,} rows × 8 columns from {backend}", results, OURS)
    via = "sqlite3" if results.backend == "sqlite" else "a SQLAlchemy postgresql+psycopg connection"
    print(f"  {READ_SQL} runs over {via}; ADBC uses adbc-driver-{results.backend}")
    for case in CASES:
        if results.status(case) is None:
            exact = results.first(case, "exact")
            print(f"  {case}: dtypes kept {results.first(case, 'dtypes_kept')}" + (f"; equals the pushed frame exactly: {exact}" if exact else ""))

    ours = results.median(OURS)
    growth, bound = results.median(OURS, "rss_growth_mb"), results.median(OURS, "bound_mb")
    b_growth, b_bound = results.median(BATCHES, "rss_growth_mb"), results.median(BATCHES, "bound_mb")
    exact = results.first(OURS, "exact")
    print_targets(
        [
            ("pd.read_sql / dsnotebook ≥ 3x", ratio(results.median(READ_SQL), ours), lambda v: v >= 3, "{:.2f}x"),
            ("pull returns the pushed frame exactly", None if exact is None else float(exact == "yes"), bool, exact or ""),
            ("pull's peak RSS growth ≤ 2x the result", ratio(growth, bound), lambda v: v <= 1, f"{growth or 0:.0f} MB vs bound {bound or 0:.0f} MB ({{:.2f}} of the bound)"),
            (
                "iter_batches' peak RSS growth ≤ 2x one batch",
                ratio(b_growth, b_bound),
                lambda v: v <= 1,
                f"{b_growth or 0:.0f} MB vs bound {b_bound or 0:.0f} MB ({{:.2f}} of the bound; the full pull grew {growth or 0:.0f} MB)",
            ),
        ]
    )
    print(f"\n(ADBC fetch / dsnotebook = {ratio(results.median(ADBC), ours) or float('nan'):.2f}x)")


if __name__ == "__main__":
    main()
