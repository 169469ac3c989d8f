"""Eight OS processes append to the same dataset at once, on SQLite and on PostgreSQL.

Each process is this file run as a script (see the bottom): it connects, builds its own frame,
says it is ready, waits for the go signal on its stdin, pushes with ``if_exists="append"``, waits
for the upload and prints what it saw as one JSON line. The test then checks that the uploads
really overlapped in time, that every process got its own version number with no gap, and that
each version holds exactly the frames published before it, in publish order.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

import dsnotebook as dsn

WRITERS = 8
ROWS = 20_000
DATASET = "shared log"
#: How long a worker may take from the go signal to its published version, and the whole run.
UPLOAD_TIMEOUT_S = 90
RUN_TIMEOUT_S = 120


def writer_frame(writer: int, rows: int = ROWS) -> pd.DataFrame:
    """The frame that writer ``writer`` pushes: distinct per writer, the same in every process."""
    seq = np.arange(rows, dtype="int64")
    return pd.DataFrame(
        {
            "writer": np.full(rows, writer, dtype="int64"),
            "seq": seq,
            "x": np.random.default_rng(writer).random(rows),
            "s": [f"w{writer}-{k}" for k in range(rows)],
        }
    )


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_index_type=True, check_column_type=True)


def _start_writers(db_url: str, workdir: Path) -> list[tuple[subprocess.Popen, Path, Path]]:
    env = dict(os.environ)  # HOME and DSNOTEBOOK_URL are already the test's private ones
    # The workers import the same dsnotebook as this test run.
    project = str(Path(dsn.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (project, env.get("PYTHONPATH")) if p)
    writers = []
    for writer in range(WRITERS):
        out, err = workdir / f"writer-{writer}.out", workdir / f"writer-{writer}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-W", "error", __file__, db_url, DATASET, str(writer), str(workdir)],
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=stderr,
                cwd=workdir,
                env=env,
            )
        writers.append((proc, out, err))
    return writers


def _output(proc: subprocess.Popen, out: Path, err: Path) -> str:
    return f"writer pid {proc.pid} exit {proc.returncode}\n--- stdout\n{out.read_text()}\n--- stderr\n{err.read_text()}"


def _wait_until_ready(writers, workdir: Path) -> None:
    deadline = time.monotonic() + 60
    while not all((workdir / f"ready-{writer}").exists() for writer in range(WRITERS)):
        for proc, out, err in writers:
            assert proc.poll() is None, "a writer ended before the go signal:\n" + _output(proc, out, err)
        assert time.monotonic() < deadline, "the writers were not all ready within 60 s"
        time.sleep(0.01)


def _format(reports: list[dict]) -> str:
    t0 = min(r["start"] for r in reports)
    return "\n".join(
        f"writer {r['writer']}: version {r['version']}, push at +{r['start'] - t0:.3f} s, "
        f"done at +{r['end'] - t0:.3f} s, {r['retries']} retried step(s)"
        for r in sorted(reports, key=lambda r: r["start"])
    )


def run_writers(db_url: str, workdir: Path) -> list[dict]:
    """Start the writers, let them push at once, and return their reports; no process outlives this."""
    began = time.monotonic()
    writers = _start_writers(db_url, workdir)
    try:
        _wait_until_ready(writers, workdir)
        print(f"all {WRITERS} writers ready after {time.monotonic() - began:.1f} s")
        for proc, _, _ in writers:
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        for proc, _, _ in writers:
            proc.stdin.close()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        reports = []
        for proc, out, err in writers:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a writer did not finish within {RUN_TIMEOUT_S} s:\n" + _output(proc, out, err)) from None
            assert proc.returncode == 0, "a writer failed:\n" + _output(proc, out, err)
            lines = out.read_text().splitlines()
            assert lines, "a writer reported nothing:\n" + _output(proc, out, err)
            # Retried steps are logged as warnings on stderr; the test only counts them.
            retries = err.read_text().count("transient error")
            reports.append(json.loads(lines[-1]) | {"pid": proc.pid, "retries": retries})
        return reports
    finally:
        for proc, _, _ in writers:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass


def test_eight_processes_appending_at_once_get_consecutive_versions(db_url, backend, tmp_path):
    workdir = tmp_path / "writers"
    workdir.mkdir()
    began = time.monotonic()
    reports = run_writers(db_url, workdir)
    took = time.monotonic() - began
    intervals = _format(reports)
    print(f"{backend}: {WRITERS} writers done in {took:.1f} s\n{intervals}")

    # The uploads ran at the same time: every push began before any of them had finished.
    starts, ends = [r["start"] for r in reports], [r["end"] for r in reports]
    assert max(starts) < min(ends), f"the uploads did not overlap:\n{intervals}"

    # Each process got its own version: together exactly 1..8.
    assert sorted(r["version"] for r in reports) == list(range(1, WRITERS + 1)), intervals
    assert sorted(r["rows"] for r in reports) == [ROWS * k for k in range(1, WRITERS + 1)], intervals
    by_version = sorted(reports, key=lambda r: r["version"])
    for r in by_version:
        assert r["rows"] == ROWS * r["version"], f"version {r['version']} reported {r['rows']} rows"

    hub = dsn.connect(db_url)
    try:
        history = hub.versions(DATASET)
        assert history["version"].tolist() == list(range(1, WRITERS + 1))
        assert history["rows"].tolist() == [ROWS * k for k in range(1, WRITERS + 1)]
        assert history["latest"].tolist() == [False] * (WRITERS - 1) + [True]
        assert history["task_id"].tolist() == [r["task_id"] for r in by_version]
        assert history["content_hash"].is_unique

        # Every version holds the frames of the writers that published before it, in that order.
        frames = [writer_frame(r["writer"]) for r in by_version]
        latest = hub.pull(DATASET)
        assert len(latest) == WRITERS * ROWS
        assert_same(latest, pd.concat(frames, ignore_index=True))
        for k in range(1, WRITERS):
            assert_same(hub.pull(DATASET, version=k), pd.concat(frames[:k], ignore_index=True))

        # No upload is left queued or running; each is recorded as its own process's.
        tasks = hub.tasks(dataset=DATASET)
        assert len(tasks) == WRITERS
        assert tasks["status"].tolist() == ["succeeded"] * WRITERS, tasks.to_string()
        assert tasks["error"].isna().all(), tasks["error"].tolist()
        assert not tasks["deduplicated"].any()
        assert (tasks["rows_done"] == ROWS).all() and (tasks["rows_total"] == ROWS).all()
        assert tasks["finished_at"].notna().all()
        assert sorted(tasks["version"].tolist()) == list(range(1, WRITERS + 1))
        assert set(tasks["owner_pid"]) == {r["pid"] for r in reports}
        assert {(t.id, t.version) for t in tasks.itertuples()} == {(r["task_id"], r["version"]) for r in reports}
        print(f"attempts per upload: {sorted(tasks['attempts'].tolist())}; checks took {time.monotonic() - began - took:.1f} s")
    finally:
        hub.close()


# -- the writer process ----------------------------------------------------------------------------


def _writer_main(url: str, name: str, writer: int, workdir: Path) -> None:
    # dsnotebook logs each retried step as a warning; the test counts them on stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s: %(message)s")
    # The default retry policy: on SQLite the writers queue on its single write lock, and one that
    # waits longer than the busy timeout (5 s) retries the step it was on.
    hub = dsn.connect(url)
    try:
        df = writer_frame(writer)
        (workdir / f"ready-{writer}").touch()
        if sys.stdin.readline() != "go\n":
            raise SystemExit("no go signal: the test gave up")
        start = time.time()
        task = hub.push(df, name, if_exists="append")
        version = task.wait(timeout=UPLOAD_TIMEOUT_S)
        end = time.time()
    finally:
        hub.close(cancel=True)
    print(
        json.dumps(
            {
                "writer": writer,
                "start": start,
                "end": end,
                "version": version.version,
                "rows": version.rows,
                "task_id": task.id,
                "attempts": task.attempts,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    _writer_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))


def test_connections_creating_a_new_file_at_once_all_get_it(tmp_path):
    """Eight connections switch a new file to WAL at the same moment, 200 times over. SQLite
    refuses all but one of two such switches at once ("database is locked", without waiting):
    each must try again rather than fail the connect (before the fix, about 2 % of rounds did)."""
    from dsnotebook.store.backends.sqlite import _create_file

    failures: list[BaseException] = []
    for round_ in range(200):
        path = tmp_path / f"new-{round_}.db"
        start = threading.Barrier(8)

        def create(path=path, start=start) -> None:
            start.wait()
            try:
                _create_file(path)
            except BaseException as exc:  # noqa: BLE001 - collected and reported below
                failures.append(exc)

        threads = [threading.Thread(target=create) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        check = sqlite3.connect(path)
        try:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            check.close()
    assert failures == []
