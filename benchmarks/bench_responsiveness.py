"""How responsive the notebook's thread stays while a 1,000,000-row push runs in the background.

    python benchmarks/bench_responsiveness.py [--backend sqlite|postgresql] [--rows N] [--repeats K]

The main thread runs an asyncio loop, as a Jupyter kernel does, with a timer due every 10 ms;
each time it fires, its lateness (actual time minus due time) is recorded. ``hub.push(df, name)``
is called from a callback on that loop, as a notebook cell would call it, so whatever push() does
before returning counts as lateness too; the upload then runs on dsnotebook's own background loop
and competes with the notebook thread for the GIL. Recording starts with the push() call and
stops when ``task.wait()`` returns (in a helper thread that does nothing else).

Cases, interleaved and each in its own subprocess:

  dsnotebook push    the timer's lateness from the push() call until the upload has finished
  idle               the same timer with nothing else running, for as long as the preceding
                     push took: the machine's own timer jitter, for comparison

Printed: medians over the runs of p50, p99 and the maximum lateness, and how long push() kept
the notebook thread before returning. On SQLite the database is a fresh file per run; on
PostgreSQL a scratch database (see _common.py). Target: p99 ≤ 20 ms during the push.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _common import BACKENDS, Place, make_frame, print_failures, print_targets, run_benchmark  # noqa: E402

TICK = 0.010
PUSH = "dsnotebook push"
IDLE = "idle"
CASES = [PUSH, IDLE]


async def _lateness_while(running, recording=lambda: True) -> list[float]:
    """Fire every TICK while ``running()``; return the lateness, in ms, of each firing that
    happened while ``recording()``."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    due = loop.time() + TICK
    while running():
        await asyncio.sleep(max(0.0, due - loop.time()))
        now = loop.time()
        if recording():
            late.append((now - due) * 1000)
        due = max(due + TICK, now)  # a late tick does not make the next ones bunch up
    return late


async def _during_push(hub, df, name: str) -> tuple[list[float], float, float]:
    """(lateness per tick, seconds from push() to the end of the upload, seconds push() took)."""
    loop = asyncio.get_running_loop()
    started, finished = threading.Event(), threading.Event()
    outcome: dict = {}

    def start() -> None:  # runs on the notebook thread's loop, as a cell would
        started.set()
        t0 = time.perf_counter()
        task = hub.push(df, name)
        outcome["call_s"] = time.perf_counter() - t0

        def wait() -> None:
            try:
                task.wait()
            except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
                outcome["error"] = exc
            finally:
                outcome["seconds"] = time.perf_counter() - t0
                finished.set()

        threading.Thread(target=wait, daemon=True).start()

    loop.call_later(5 * TICK, start)
    late = await _lateness_while(lambda: not finished.is_set(), started.is_set)
    if "error" in outcome:
        raise outcome["error"]
    return late, outcome["seconds"], outcome["call_s"]


def _stats(late: list[float]) -> dict:
    a = np.asarray(late)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max()), "ticks": len(a)}


def child(case: str, rows: int, place: Place) -> dict:
    if case == PUSH:
        import dsnotebook as dsn

        df = make_frame(rows)
        hub = dsn.connect(place.dsn_url(f"responsiveness-{os.getpid()}.db"))
        hub.push(df.head(1_000), f"warm-up-{os.getpid()}").wait()
        place.quiesce()
        late, seconds, call_s = asyncio.run(_during_push(hub, df, f"responsiveness-{os.getpid()}"))
        hub.close()
        place.note("push_seconds", seconds)
        return {"seconds": seconds, "call_ms": call_s * 1000, **_stats(late)}
    if case == IDLE:
        try:
            seconds = place.note("push_seconds")
        except FileNotFoundError:  # the push failed: idle for a fixed time instead
            seconds = 2.0
        deadline = time.perf_counter() + seconds
        late = asyncio.run(_lateness_while(lambda: time.perf_counter() < deadline))
        return {"seconds": seconds, **_stats(late)}
    raise SystemExit(f"unknown case {case!r}")


def main() -> None:
    results = run_benchmark(__file__, __doc__, CASES, child, backends=BACKENDS)
    backend = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[results.backend]
    repeats = max(len(r) for r in results.runs.values())
    print(f"\nlateness of a {TICK * 1000:.0f} ms timer on the notebook thread, {results.rows:,} rows pushed to {backend}: median of {repeats} run{'s' if repeats != 1 else ''}")
    print(f"{'case':<18} {'seconds':>8} {'ticks':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'push() returned after':>22}")
    for case in CASES:
        if status := results.status(case):
            print(f"{case:<18} {status}")
            continue
        m = {key: results.median(case, key) for key in ("seconds", "ticks", "p50", "p99", "max", "call_ms")}
        call = "-" if m["call_ms"] is None else f"{m['call_ms']:.1f} ms"
        print(f"{case:<18} {m['seconds']:>8.2f} {m['ticks']:>6.0f} {m['p50']:>8.2f} {m['p99']:>8.2f} {m['max']:>8.2f} {call:>22}")
    if results.ok(PUSH):
        each = ", ".join(f"{r['p99']:.2f}" for r in results.ok(PUSH))
        print(f"  p99 of each push run: {each} ms")
    print_failures(results)
    print_targets([("p99 lateness during the push ≤ 20 ms", results.median(PUSH, "p99"), lambda v: v <= 20, "{:.2f} ms")])


if __name__ == "__main__":
    main()
