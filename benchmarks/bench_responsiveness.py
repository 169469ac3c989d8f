"""How responsive the notebook's thread stays while a 1,000,000-row push runs in the background.

    python benchmarks/bench_responsiveness.py [--rows N] [--url URL]

The main thread runs an asyncio loop, as a Jupyter kernel does, with a timer due every 10 ms;
each time it fires, its lateness (actual time minus due time) is recorded. The push runs on
dsnotebook's own background loop, as in a notebook, and competes for the GIL. Printed: p50, p99
and the maximum lateness during the push, and the same for an idle baseline of equal length.
Target: a p99 of 50 ms or less. Default database: a SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _common import make_frame  # noqa: E402

TICK = 0.010


async def _lateness_while(done) -> list[float]:
    """Fire every TICK until ``done()``; return each firing's lateness in ms."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    due = loop.time() + TICK
    while not done():
        await asyncio.sleep(max(0.0, due - loop.time()))
        now = loop.time()
        late.append((now - due) * 1000)
        due = max(due + TICK, now)  # a late tick does not make the next ones bunch up
    return late


def _summary(late: list[float]) -> str:
    a = np.asarray(late)
    return f"p50 {np.percentile(a, 50):6.2f} ms   p99 {np.percentile(a, 99):6.2f} ms   max {a.max():7.2f} ms   ({len(a)} ticks)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default=None, help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    import dsnotebook as dsn
    from dsnotebook.store.engine import mask_url

    df = make_frame(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        hub = dsn.connect(url)
        hub.push(df.head(1_000), "warm-up").wait()

        started = time.perf_counter()
        task = hub.push(df, f"responsiveness-{time.time_ns()}")
        busy = asyncio.run(_lateness_while(task.done))
        seconds = time.perf_counter() - started
        task.wait()
        hub.close()

    deadline = time.perf_counter() + seconds
    idle = asyncio.run(_lateness_while(lambda: time.perf_counter() >= deadline))
    p99 = float(np.percentile(busy, 99))
    print(f"main-thread lateness of a {TICK * 1000:.0f} ms timer, {args.rows:,} rows pushed to {mask_url(url) if args.url else 'SQLite'}")
    print(f"  during the push ({seconds:.2f} s): {_summary(busy)}")
    print(f"  idle, same length:      {_summary(idle)}")
    print(f"target p99 <= 50 ms: {'met' if p99 <= 50 else 'NOT met'} ({p99:.2f} ms)")


if __name__ == "__main__":
    main()
