"""Eight OS processes append to the same dataset at once, on SQLite and on PostgreSQL.

Each process is forked from a server that has dsnotebook imported (see ``tests/forks.py``): it
connects, builds its own frame, says it is ready, waits for the go signal, pushes with
``if_exists="append"``, waits for the upload and reports what it saw through a pipe. The test
then checks that the uploads really overlapped in time, that every process got its own version
number with no gap, and that each version holds exactly the frames published before it, in
publish order.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import traceback
import warnings

import numpy as np
import pandas as pd
from forks import FORKS, adopt_environment

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


class _Writer:
    """One writer process, forked (see ``tests/forks.py``); it talks to the test through a pipe."""

    def __init__(self, db_url: str, writer: int) -> None:
        # HOME and DSNOTEBOOK_URL are already the test's private ones.
        self.messages, theirs = FORKS.Pipe()
        self.process = FORKS.Process(
            target=_writer_main, args=(theirs, dict(os.environ), db_url, DATASET, writer), name=f"writer {writer}", daemon=True
        )
        self.process.start()
        theirs.close()

    def receive(self, deadline: float, waiting_for: str):
        """The writer's next message; fails the test if it reported an error, ended, or said
        nothing before ``deadline``."""
        if not self.messages.poll(max(0.1, deadline - time.monotonic())):
            raise AssertionError(f"writer pid {self.process.pid} sent no {waiting_for} in time")
        try:
            kind, body = self.messages.recv()
        except EOFError:
            self.process.join(10)
            raise AssertionError(f"writer pid {self.process.pid} ended (exit {self.process.exitcode}) before its {waiting_for}") from None
        assert kind != "error", f"writer pid {self.process.pid} failed:\n{body}"
        return body

    def end(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        self.messages.close()


def run_writers(db_url: str) -> list[dict]:
    """Start the writers, let them push at once, and return their reports; no process outlives this."""
    began = time.monotonic()
    writers = [_Writer(db_url, writer) for writer in range(WRITERS)]
    try:
        deadline = time.monotonic() + 60
        for w in writers:
            assert w.receive(deadline, "ready signal") == "ready"
        print(f"all {WRITERS} writers ready after {time.monotonic() - began:.1f} s")
        for w in writers:
            w.messages.send("go")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        reports = []
        for w in writers:
            reports.append(w.receive(deadline, "report") | {"pid": w.process.pid})
            w.process.join(max(0.1, deadline - time.monotonic()))
            assert w.process.exitcode == 0, f"writer pid {w.process.pid} ended with exit {w.process.exitcode}"
        return reports
    finally:
        for w in writers:
            w.end()


def _format(reports: list[dict]) -> str:
    t0 = min(r["start"] for r in reports)
    return "\n".join(
        f"writer {r['writer']}: version {r['version']}, push at +{r['start'] - t0:.3f} s, "
        f"done at +{r['end'] - t0:.3f} s, {r['retries']} retried step(s)"
        for r in sorted(reports, key=lambda r: r["start"])
    )


def test_eight_processes_appending_at_once_get_consecutive_versions(db_url, backend):
    began = time.monotonic()
    reports = run_writers(db_url)
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


class _Retries(logging.Handler):
    """Counts the retried steps dsnotebook logs (as warnings)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "transient error" in record.getMessage()


def _writer_main(conn, env: dict[str, str], url: str, name: str, writer: int) -> None:
    """A writer process: connect, build the frame, say "ready", push at "go", send the report."""
    try:
        adopt_environment(env)
        warnings.simplefilter("error")
        # The default retry policy: on SQLite the writers queue on its single write lock, and one
        # that waits longer than the busy timeout (5 s) retries the step it was on.
        retries = _Retries()
        logging.getLogger("dsnotebook").addHandler(retries)
        hub = dsn.connect(url)
        try:
            df = writer_frame(writer)
            conn.send(("ready", "ready"))
            if conn.recv() != "go":
                raise SystemExit("no go signal: the test gave up")
            start = time.time()
            task = hub.push(df, name, if_exists="append")
            version = task.wait(timeout=UPLOAD_TIMEOUT_S)
            end = time.time()
        finally:
            hub.close(cancel=True)
        report = {
            "writer": writer,
            "start": start,
            "end": end,
            "version": version.version,
            "rows": version.rows,
            "task_id": task.id,
            "attempts": task.attempts,
            "retries": retries.count,
        }
        conn.send(("report", report))
    except BaseException:  # noqa: BLE001 - reported to the test, which fails with it
        conn.send(("error", traceback.format_exc()))
        raise


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
