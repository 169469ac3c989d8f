"""Pull 1,000,000 rows × 8 columns back from SQLite: dsnotebook against pd.read_sql.

    python benchmarks/bench_pull.py [--rows N] [--runs K]

The same frame is stored once by ``hub.push`` and once by ``df.to_sql``; each run of each
method is a fresh subprocess. ``pd.read_sql`` returns the dtypes SQLite gives it; dsnotebook
restores the exact frame, which the child checks.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import make_frame, print_table, reset_peak_rss, rss_mb, run_benchmark  # noqa: E402

METHODS = ["dsnotebook pull", "pd.read_sql (sqlite3)"]


def prepare(rows: int, workdir: Path) -> None:
    import dsnotebook as dsn

    df = make_frame(rows)
    with dsn.connect(f"sqlite+aiosqlite:///{workdir / 'ours.db'}") as hub:
        hub.push(df, "bench").wait()
    con = sqlite3.connect(workdir / "theirs.db")
    df.to_sql("bench", con, index=False)
    con.commit()
    con.close()


def child(method: str, rows: int, workdir: Path) -> dict:
    import pandas as pd

    if method == "dsnotebook pull":
        import dsnotebook as dsn

        hub = dsn.connect(f"sqlite+aiosqlite:///{workdir / 'ours.db'}")
        reset_peak_rss()
        before, _ = rss_mb()
        t0 = time.perf_counter()
        df = hub.pull("bench")
        seconds = time.perf_counter() - t0
        _, peak = rss_mb()
        hub.close()
        expected = make_frame(rows)
        pd.testing.assert_frame_equal(df, expected, check_exact=True)
        exact = True
    else:
        con = sqlite3.connect(workdir / "theirs.db")
        reset_peak_rss()
        before, _ = rss_mb()
        t0 = time.perf_counter()
        df = pd.read_sql("SELECT * FROM bench", con)
        seconds = time.perf_counter() - t0
        _, peak = rss_mb()
        con.close()
        exact = bool((df.dtypes.astype(str) == make_frame(rows).dtypes.astype(str)).all())
    return {"seconds": seconds, "rss_growth_mb": peak - before, "frame_mb": df.memory_usage(deep=True).sum() / 2**20, "exact": exact}


def main() -> None:
    results, rows = run_benchmark(__file__, __doc__, METHODS, child, prepare=prepare)
    medians = print_table(f"pull {rows:,} rows × 8 columns from SQLite", results, "dsnotebook pull", results[METHODS[0]][0]["frame_mb"])
    for method in METHODS:
        print(f"  {method}: dtypes exact = {results[method][0]['exact']}")
    ratio = medians["pd.read_sql (sqlite3)"] / medians["dsnotebook pull"]
    print(f"\ntarget: pull no slower than pd.read_sql: {'met' if ratio >= 1 else 'MISSED'} (read_sql / ours = {ratio:.2f}x)")


if __name__ == "__main__":
    main()
