"""Shared pieces of the benchmarks: the frame, the scratch databases, the child-process runner,
the stopwatch with its memory reading, and the table and target printers.

How every comparison runs:

* Each measurement of each case runs in a fresh subprocess, because a process's peak RSS never
  goes down and because caches, pools and the allocator would otherwise carry over from one case
  to the next. The parent only orchestrates; it never imports dsnotebook.
* The cases are interleaved run by run (A B C, A B C, ...), so a drift in machine load hits them
  all alike, and the table gives the median of ``--repeats`` runs (3 by default).
* Only what the case is about is timed: building the frame and connecting happen before the
  stopwatch starts. Conversions a baseline needs (``pa.Table.from_pandas``, row tuples) are timed,
  since dsnotebook also starts from the DataFrame.
* "Peak RSS growth" is the kernel's high-water mark (VmHWM, reset just before the timed section
  through /proc/self/clear_refs) minus the RSS at that moment: the extra memory the case needed
  at its worst, background threads included.
* SQLite cases work in a temporary directory; PostgreSQL cases in a database of their own,
  ``dsn_bench_<pid>``, created on the server named by ``DSNOTEBOOK_BENCH_POSTGRES`` (default
  ``postgresql://postgres@127.0.0.1:5432/test``) and dropped when the benchmark ends.

The benchmarks use only dsnotebook's public API: ``dsnotebook.connect``, ``hub.push``,
``task.wait``, ``hub.pull``, ``hub.versions``, ``hub.iter_batches`` and ``hub.close``.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

ROWS = 1_000_000
REPEATS = 3
BACKENDS = ("sqlite", "postgresql")
PG_SERVER = os.environ.get("DSNOTEBOOK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


# --- the frame and memory readings ------------------------------------------------------------


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


def frame_mb(df: pd.DataFrame) -> float:
    """``df.memory_usage(deep=True).sum()`` in MB: the yardstick of the memory targets."""
    return float(df.memory_usage(deep=True).sum()) / 2**20


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


class Stopwatch:
    """``with Stopwatch() as sw: ...`` times the block and reads its peak RSS growth.

    Afterwards ``sw.seconds`` and ``sw.rss_growth_mb`` hold the figures; ``sw.result(...)`` turns
    them, with any extra fields, into the dict a child reports.
    """

    seconds: float
    rss_growth_mb: float

    def __enter__(self) -> Stopwatch:
        reset_peak_rss()
        self._rss_before, _ = rss_mb()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        _, peak = rss_mb()
        self.rss_growth_mb = peak - self._rss_before

    def result(self, **extra) -> dict:
        return {"seconds": self.seconds, "rss_growth_mb": self.rss_growth_mb, **extra}


# --- where a case writes: a temporary directory, and a scratch PostgreSQL database -----------------


def pg_url(database: str, driver: str = "") -> str:
    """The scratch server's URL for ``database``; ``driver`` is e.g. "+asyncpg" or "+psycopg"."""
    parts = urlsplit(PG_SERVER)
    scheme = parts.scheme.split("+")[0] + driver
    return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def pg_admin(sql: str, database: str | None = None) -> list[tuple]:
    """Run one statement outside a transaction (CREATE/DROP DATABASE, CHECKPOINT); return its rows."""
    import psycopg

    url = pg_url(database) if database else PG_SERVER
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def pg_quiesce(database: str) -> None:
    """Start a timed PostgreSQL run from a quiet server: no autovacuum worker still busy with an
    earlier run's table, and no dirty buffers left for a checkpoint to write mid-run."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        busy = pg_admin("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'", database)
        if not busy[0][0]:
            break
        time.sleep(0.2)
    pg_admin("CHECKPOINT", database)


@dataclass(frozen=True)
class Place:
    """Where a case works: ``workdir`` always (a temporary directory shared by the benchmark's
    children, for SQLite files and hand-over notes), plus the scratch ``database`` on PostgreSQL."""

    backend: str
    workdir: Path
    database: str | None = None

    def dsn_url(self, sqlite_file: str = "dsn.db") -> str:
        """dsnotebook's URL: the SQLite file ``sqlite_file`` in workdir, or the scratch database."""
        if self.backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.workdir / sqlite_file}"
        return pg_url(self.database, "+asyncpg")

    def quiesce(self) -> None:
        """On PostgreSQL, wait for a quiet server (see pg_quiesce); on SQLite, nothing to do."""
        if self.backend == "postgresql":
            pg_quiesce(self.database)

    def note(self, key: str, value=None):
        """Leave (with ``value``) or read (without) a small JSON note for the other children."""
        path = self.workdir / f"{key}.json"
        if value is None:
            return json.loads(path.read_text())
        path.write_text(json.dumps(value))
        return value


def create_place(backend: str, workdir: Path) -> Place:
    if backend == "sqlite":
        return Place(backend, workdir)
    database = f"dsn_bench_{os.getpid()}"
    pg_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    pg_admin(f"CREATE DATABASE {database}")
    atexit.register(_drop_database, database)
    return Place(backend, workdir, database)


def _drop_database(database: str) -> None:
    try:
        pg_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    except Exception as exc:  # noqa: BLE001 - report and go on: the benchmark's figures stand
        print(f"could not drop the scratch database {database}: {exc}", file=sys.stderr)


# --- the command line, the header and the child processes --------------------------------------


def _environment(backend: str) -> str:
    """One line naming what the figures were measured on, to quote with them."""
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    spec = importlib.util.find_spec("dsnotebook")  # finds the package without importing it
    package = Path(spec.origin).parent if spec and spec.origin else None
    rev = "not found"
    if package is not None:
        git = ["git", "-C", str(package.parent)]
        try:
            head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run([*git, "status", "--porcelain", "--", str(package)], capture_output=True, text=True).stdout.strip()
        except OSError:  # no git
            head = dirty = ""
        rev = f"{package}" + (f" at {head}{' + uncommitted changes' if dirty else ''}" if head else "")
    line = (
        f"# {time.strftime('%Y-%m-%d %H:%M:%S')}  {os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"Python {platform.python_version()}, pandas {pd.__version__}, pyarrow {version('pyarrow')}, "
        f"adbc-driver-{'sqlite' if backend == 'sqlite' else 'postgresql'} "
        f"{version('adbc-driver-sqlite' if backend == 'sqlite' else 'adbc-driver-postgresql')}; dsnotebook from {rev}"
    )
    if backend == "postgresql":
        try:
            line += f"; PostgreSQL {pg_admin('SHOW server_version')[0][0]}"
        except Exception as exc:  # noqa: BLE001 - the first CREATE DATABASE will say what is wrong
            line += f"; PostgreSQL unreachable ({exc})"
    return line


def print_header(backend: str) -> None:
    """The exact command line, then the environment: every output starts with both."""
    print(f"$ {shlex.join(sys.orig_argv)}")
    print(_environment(backend), flush=True)


def base_parser(doc: str, *, backends: tuple[str, ...]) -> argparse.ArgumentParser:
    """--rows, --repeats and (when a script runs on more than one) --backend."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows of the benchmark frame (default {ROWS:,})")
    parser.add_argument("--repeats", "--runs", type=int, default=REPEATS, help=f"runs of each case; medians are printed (default {REPEATS})")
    shown = f"database to run on (default {backends[0]})" if len(backends) > 1 else argparse.SUPPRESS
    parser.add_argument("--backend", choices=backends, default=backends[0], help=shown)
    parser.add_argument("--timeout", type=float, default=900, help="seconds one case's subprocess may take before it counts as failed (default 900)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    return parser


class NotAvailable(Exception):
    """Raised by a child whose case cannot run on this version of dsnotebook (a missing API)."""


def _run_child(script: str, method: str, args, place: Place) -> dict:
    """One case in a fresh interpreter; its last stdout line is the JSON it measured."""
    command = [sys.executable, script, "--child", method, "--rows", str(args.rows), "--workdir", str(place.workdir), "--backend", place.backend]
    if place.database:
        command += ["--database", place.database]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"error": out.stderr.strip() or f"exit status {out.returncode}, no output"}
    return json.loads(lines[-1])


@dataclass
class Results:
    """Every run of every case: ``runs[case]`` is a list of the children's dicts, each holding
    ``seconds`` and ``rss_growth_mb`` (and the case's own fields), or ``error``, or ``na``."""

    rows: int
    backend: str
    runs: dict[str, list[dict]]

    def ok(self, case: str) -> list[dict]:
        return [r for r in self.runs[case] if "error" not in r and "na" not in r]

    def median(self, case: str, key: str = "seconds") -> float | None:
        values = [r[key] for r in self.ok(case) if r.get(key) is not None]
        return statistics.median(values) if values else None

    def first(self, case: str, key: str, default=None):
        return next((r[key] for r in self.ok(case) if key in r), default)

    def status(self, case: str) -> str | None:
        """None when at least one run succeeded; else why not ("FAILED", or the n/a reason)."""
        if self.ok(case):
            return None
        na = next((r["na"] for r in self.runs[case] if "na" in r), None)
        return na or "FAILED"


def run_benchmark(script: str, doc: str, cases: list[str], child: Callable[[str, int, Place], dict], *, backends: tuple[str, ...] = ("sqlite",), prepare: Callable[[int, Place], None] | None = None) -> Results:
    """Parse the command line. In a child, measure one case, print its JSON and exit. Otherwise
    print the header, make the scratch place, run ``prepare`` and every case interleaved."""
    args = base_parser(doc, backends=backends).parse_args()
    backend = args.backend
    if args.child:
        place = Place(backend, Path(args.workdir), args.database)
        try:
            result = child(args.child, args.rows, place)
        except NotAvailable as exc:
            result = {"na": str(exc)}
        print(json.dumps(result))
        raise SystemExit(0)

    print_header(backend)
    if args.repeats < REPEATS:
        print(f"# fewer than {REPEATS} repeats: a smoke run, not figures to quote", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # unwind: drop the scratch database
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="dsn-bench-") as tmp:
        place = create_place(backend, Path(tmp))
        try:
            if prepare is not None:
                t0 = time.perf_counter()
                prepare(args.rows, place)
                print(f"prepared in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            for run in range(args.repeats):
                for case in cases:
                    result = _run_child(script, case, args, place)
                    runs[case].append(result)
                    shown = f"{result['seconds']:.3f} s" if "seconds" in result else result.get("na") or "FAILED"
                    print(f"run {run + 1}/{args.repeats} {case}: {shown}", file=sys.stderr, flush=True)
        finally:
            if place.database:
                _drop_database(place.database)
    return Results(args.rows, backend, runs)


def run_prepare_step(what: str, step: Callable[[], None]) -> None:
    """Run a preparation step; if it fails, print the traceback and stop the benchmark."""
    try:
        step()
    except Exception:  # noqa: BLE001 - the point is to report it
        print(f"\n{what} FAILED, so no case can run:\n{traceback.format_exc()}")
        raise SystemExit(1) from None


# --- printing ------------------------------------------------------------------------------------


def _fmt_rate(rows: int, seconds: float) -> str:
    rate = rows / seconds
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"


def print_table(title: str, results: Results, reference: str) -> None:
    """One row per case: median time, rows/s, time relative to ``reference``, median peak RSS
    growth, and, for cases that report a ``bound_mb``, the bound with PASS or MISS. Failed runs
    are counted in the table and their tracebacks printed under it."""
    repeats = max(len(r) for r in results.runs.values())
    ref = results.median(reference)
    print(f"\n{title}: median of {repeats} run{'s' if repeats != 1 else ''}, each case in its own subprocess, interleaved")
    print(f"{'case':<38} {'median s':>9} {'rows/s':>9} {'× ' + reference:>20} {'peak RSS +MB':>13} {'bound MB':>9}  memory")
    for case, runs in results.runs.items():
        status = results.status(case)
        if status:
            print(f"{case:<38} {status}")
            continue
        seconds = results.median(case)
        growth = results.median(case, "rss_growth_mb")
        bound = results.median(case, "bound_mb")
        ratio = f"{seconds / ref:.2f}x" if ref else "-"
        memory = "-" if bound is None else ("PASS" if growth <= bound else "MISS")
        bound_s = "-" if bound is None else f"{bound:.0f}"
        failed = len(runs) - len(results.ok(case))
        tail = f"  ({failed} of {len(runs)} runs FAILED)" if failed else ""
        print(f"{case:<38} {seconds:>9.3f} {_fmt_rate(results.rows, seconds):>9} {ratio:>20} {growth:>13.0f} {bound_s:>9}  {memory}{tail}")
    notes = [(case, r["bound_label"]) for case in results.runs if (r := next(iter(results.ok(case)), None)) and "bound_label" in r]
    for case, label in notes:
        print(f"  memory bound of {case}: {label}")
    print_failures(results)


def print_failures(results: Results) -> None:
    """Each distinct error of each case, with the end of its traceback."""
    errors: dict[str, list[str]] = {}
    for case, runs in results.runs.items():
        for r in runs:
            if "error" in r and r["error"] not in errors.setdefault(case, []):
                errors[case].append(r["error"])
    for case, messages in errors.items():
        for message in messages:
            lines = message.splitlines()
            shown = "\n".join(lines[-40:])
            print(f"\n{case} FAILED{' (last 40 lines)' if len(lines) > 40 else ''}:\n{shown}")


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either side has no figure (its case failed or is not available)."""
    return a / b if a is not None and b else None


def print_targets(targets: list[tuple[str, float | None, Callable[[float], bool], str]]) -> None:
    """Each target is (what is promised, the measured figure or None, the test the figure must
    pass, a format for the figure such as "{:.2f}x"). Prints MET, MISS or n/a per target."""
    print("\ntargets:")
    for label, value, test, fmt in targets:
        if value is None:
            print(f"  n/a   {label} (a case it needs did not run)")
        else:
            print(f"  {'MET ' if test(value) else 'MISS'}  {label}: {fmt.format(value)}")
