"""Shared pieces of the benchmarks: the frame, the child-process runner and the table printer.

Each measurement runs in its own subprocess, because a process's peak RSS never goes down; the
methods are interleaved run by run, so drifting machine load hits them all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 1_000_000


def make_frame(rows: int = ROWS, seed: int = 42) -> pd.DataFrame:
    """1M × 8: int64, float64, float64 with 5% NaN, ~10-char str, 20-value category, bool,
    datetime64[ns] and Int64 with NA."""
    rng = np.random.default_rng(seed)
    nan_floats = rng.normal(size=rows)
    nan_floats[rng.random(rows) < 0.05] = np.nan
    words = np.array([f"item-{i:05d}" for i in range(50_000)])
    ints_na = pd.array(rng.integers(-1000, 1000, rows), dtype="Int64")
    ints_na[rng.random(rows) < 0.05] = pd.NA
    return pd.DataFrame(
        {
            "i64": rng.integers(-(2**40), 2**40, rows),
            "f64": rng.random(rows),
            "f64_nan": nan_floats,
            "text": pd.array(words[rng.integers(0, len(words), rows)], dtype="str"),
            "cat": pd.Categorical.from_codes(rng.integers(0, 20, rows), categories=[f"c{i:02d}" for i in range(20)]),
            "flag": rng.random(rows) < 0.5,
            "ts": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 10**17, rows), unit="ns"),
            "int_na": ints_na,
        }
    )


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so that a later reading covers only what follows."""
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
    except OSError:
        pass


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset), in MB."""
    fields = {}
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def run_child(script: str, method: str, workdir: Path, rows: int) -> dict:
    out = subprocess.run(
        [sys.executable, script, "--child", method, "--rows", str(rows), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if out.returncode != 0:
        raise SystemExit(f"{method} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_benchmark(script: str, doc: str, methods: list[str], child, prepare=None) -> tuple[dict[str, list[dict]], int]:
    """Parse the command line; in a child, measure one method; else run every method interleaved.

    Returns the results per method and the row count, or exits after a child's measurement.
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, Path(args.workdir))))
        raise SystemExit(0)
    results: dict[str, list[dict]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory(prefix="dsn-bench-") as tmp:
        if prepare is not None:
            prepare(args.rows, Path(tmp))
        for run in range(args.runs):
            for method in methods:
                results[method].append(run_child(script, method, Path(tmp), args.rows))
                print(f"run {run + 1}/{args.runs} {method}: {results[method][-1]['seconds']:.3f} s", file=sys.stderr)
    return results, args.rows


def print_table(title: str, results: dict[str, list[dict]], reference: str, frame_mb: float) -> dict[str, float]:
    """Print medians, ratios against ``reference`` and peak RSS growth; return the medians."""
    medians = {m: statistics.median(r["seconds"] for r in runs) for m, runs in results.items()}
    growth = {m: statistics.median(r["rss_growth_mb"] for r in runs) for m, runs in results.items()}
    runs = len(next(iter(results.values())))
    print(f"\n{title} — median of {runs} runs; frame memory_usage(deep=True) = {frame_mb:.0f} MB")
    print(f"{'method':<34} {'median s':>9} {'vs ' + reference:>16} {'peak RSS growth MB':>19}")
    for method, seconds in medians.items():
        ratio = seconds / medians[reference]
        print(f"{method:<34} {seconds:>9.3f} {ratio:>15.2f}x {growth[method]:>19.0f}")
    return medians
