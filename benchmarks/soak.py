"""Soak one hub with mixed work and cancels, and watch its resources stay flat.

    python benchmarks/soak.py [--seconds N] [--backend sqlite|postgresql] [--every S] [--seed K]
                              [--concurrency C]

For N seconds (default 600), the main thread does what a heavy notebook user would, chosen at
random with a fixed seed: pushes of new versions (300,000 rows in chunks of 10,000), appends,
pulls, and pushes cancelled after a random 0-50 ms, all on one hub with ``concurrency=C``
(default 2). Every upload is waited for; a cancelled one may still succeed if the cancel came
after its publish.

At the start (once the hub's first housekeeping pass is over) and every S seconds (default 60)
it prints a checkpoint:

- the process's RSS, the memory Arrow's pool holds for live data, open file descriptors and
  threads;
- the connections the hub's pool has checked out after the last ``wait()``. The heartbeat takes
  one for a moment four times per lease, so a checkpoint that finds one reads again for up to a
  second and shows what stays checked out: 0 is expected, and a leaked connection stays;
- how many lines were written to stderr so far;
- how many of the hub's recent uploads (it remembers the last 100) can be retried. A cancelled
  upload keeps its frame for a retry, so RSS grows until that history is full.

stderr is redirected to a file for the run (file descriptor 2, so C-level writes count too);
those lines are printed at the end. Target: every column flat after warm-up, and 0 stderr lines.

On SQLite the database is a fresh file; on PostgreSQL a scratch database (see _common.py).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))

from _common import create_place  # noqa: E402

import dsnotebook as dsn  # noqa: E402

ROWS = 300_000
CHUNK = 10_000
NAMES = 4


def _frame(rng: np.random.Generator, rows: int = ROWS) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(rows), "x": rng.random(rows)})


class _Stderr:
    """File descriptor 2 redirected to a temporary file until :meth:`restore`."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)

    def lines(self) -> int:
        sys.stderr.flush()
        self.file.seek(0)
        return self.file.read().count(b"\n")

    def restore(self) -> str:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self.file.seek(0)
        return self.file.read().decode(errors="replace")


def _checked_out(hub: dsn.Hub) -> int:
    """The connections that stay checked out for a second (the heartbeat's come back sooner)."""
    pool = hub._async.engine.pool
    deadline = time.monotonic() + 1.0
    while pool.checkedout() and time.monotonic() < deadline:
        time.sleep(0.01)
    return pool.checkedout()


def _checkpoint(hub: dsn.Hub, started: float, counts: dict[str, int], stderr: _Stderr) -> dict:
    me = psutil.Process()
    return {
        "t (s)": round(time.monotonic() - started),
        "RSS (MB)": round(me.memory_info().rss / 2**20, 1),
        # What Arrow's memory pool has handed out and not yet been given back: live data, where
        # RSS also counts what the allocators keep for reuse.
        "Arrow live (MB)": round(pa.total_allocated_bytes() / 2**20, 1),
        "open fds": me.num_fds(),
        "threads": threading.active_count(),
        "OS threads": me.num_threads(),
        "pool checked out": _checked_out(hub),
        # Each keeps its frame for a retry, in the hub's history of its last uploads.
        "retryable kept": sum(1 for task in hub.uploads() if task.can_retry),
        "stderr lines": stderr.lines(),
        **counts,
    }


def _one_step(hub: dsn.Hub, rng: np.random.Generator, chooser: random.Random, counts: dict[str, int]) -> None:
    name = f"soak{chooser.randrange(NAMES)}"
    what = chooser.choices(["push", "append", "pull", "cancel"], weights=[2, 2, 2, 4])[0]
    if what == "pull":
        if name in set(hub.datasets()["name"]):
            hub.pull(name)
            counts["pulls"] += 1
        return
    if what == "append":
        task = hub.push(_frame(rng, ROWS // 10), name, if_exists="append", chunk_size=CHUNK)
    else:
        task = hub.push(_frame(rng), name, chunk_size=CHUNK)
    if what == "cancel":
        time.sleep(chooser.uniform(0, 0.05))
        task.cancel()
    try:
        task.wait(timeout=300)
        counts["succeeded"] += 1
    except dsn.UploadCancelled:
        counts["cancelled"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--every", type=float, default=60)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        place = create_place(args.backend, Path(workdir))
        rng = np.random.default_rng(args.seed)
        chooser = random.Random(args.seed)
        counts = {"succeeded": 0, "cancelled": 0, "pulls": 0}
        rows = []
        stderr = _Stderr()
        try:
            hub = dsn.connect(place.dsn_url(), concurrency=args.concurrency)
            try:
                hub.wait_housekeeping(timeout=60)
                started = time.monotonic()
                next_checkpoint = started
                while True:
                    now = time.monotonic()
                    if now >= next_checkpoint:
                        rows.append(_checkpoint(hub, started, counts, stderr))
                        next_checkpoint += args.every
                    if now - started >= args.seconds:
                        break
                    _one_step(hub, rng, chooser, counts)
            finally:
                hub.close()
        finally:
            written = stderr.restore()
    print(f"soak: {args.backend}, {args.seconds:.0f} s, concurrency {args.concurrency}, seed {args.seed}")
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"stderr: {written.count(chr(10))} lines")
    if written:
        print(written)


if __name__ == "__main__":
    main()
