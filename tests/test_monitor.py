"""What a hub's background work costs: ``hub.status()``, the task service's ``stats()``, what each
upload records, the free-space check before a push, and the one log record per finished upload."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from frametools import STR, assert_identical
from hubtools import execute, occupy_the_slot, refuse_progress_beyond, staging_tables, wait_until
from pusher import Pusher
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

import dsnotebook as dsn
from dsnotebook import _faults
from dsnotebook.errors import UploadCancelled, UploadError, UsageError, ValidationError
from dsnotebook.monitor import LoopLag, format_bytes, percentile
from dsnotebook.store.backends.sqlite import SQLiteBackend
from dsnotebook.tasks import BackgroundTaskService

PREVIOUS = pd.DataFrame({"a": [1, 2, 3]})


def frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(rows), "s": pd.array([f"v{i}" for i in range(rows)], dtype=STR)})


@pytest.fixture
def fault():
    """Arm a fault point in this process for the test; always disarmed afterwards."""
    yield _faults.arm
    _faults.arm(None)


def _counts(status) -> dict[str, int]:
    return {k: getattr(status, k) for k in ("queued", "running", "succeeded", "failed", "cancelled")}


# -- hub.status() ----------------------------------------------------------------------------


def test_status_counts_follow_a_queue_of_five_uploads(db_url, fault):
    with dsn.connect(db_url, concurrency=1) as hub:
        assert _counts(hub.status()) == dict(queued=0, running=0, succeeded=0, failed=0, cancelled=0)
        release = occupy_the_slot(hub)
        try:
            tasks = [hub.push(frame(5_000), f"d{i}", chunk_size=1_000) for i in range(5)]
            status = hub.status()
            assert _counts(status) == dict(queued=5, running=0, succeeded=0, failed=0, cancelled=0)
            # Everything is still to write.
            assert status.queued_bytes == sum(t.bytes_total for t in tasks) > 0
            fault("between_chunks@2:pause")
        finally:
            release()
        assert _faults.paused.wait(60), "the first upload never reached its second chunk"
        status = hub.status()
        assert _counts(status) == dict(queued=4, running=1, succeeded=0, failed=0, cancelled=0)
        assert tasks[0].status == "running" and status.rows_per_s > 0
        assert 0 < status.queued_bytes < sum(t.bytes_total for t in tasks)
        tasks[0].cancel()
        with pytest.raises(UploadCancelled):
            tasks[0].wait(timeout=60)
        fault(None)
        for task in tasks[1:]:
            task.wait(timeout=60)
        status = hub.status()
        assert _counts(status) == dict(queued=0, running=0, succeeded=4, failed=0, cancelled=1)
        assert status.queued_bytes == 0 and status.rows_per_s == 0.0


def test_status_figures_and_the_database_growing_after_a_push(db_url, backend):
    with dsn.connect(db_url) as hub:
        before = hub.status()
        hub.push(frame(200_000), "big").wait(timeout=120)
        after = hub.status()
    assert after.database_bytes > before.database_bytes
    assert after.taken_at > before.taken_at and after.taken_at.tzinfo is not None
    assert after.rss_bytes > 10 * 2**20 and after.memory_limit_bytes >= after.rss_bytes
    assert after.cpu_percent >= 0
    assert after.memory_state == "ok" and after.disk_state == "ok"
    if backend == "sqlite":
        assert after.tables_bytes is None
        assert after.free_disk_bytes is not None and after.free_disk_bytes > 0
    else:
        # The server's disk cannot be seen; our tables can, and they grew too.
        assert after.free_disk_bytes is None
        assert after.tables_bytes > before.tables_bytes > 0
        assert after.database_bytes >= after.tables_bytes
    values = json.loads(json.dumps(after.to_dict()))
    assert values["database_bytes"] == after.database_bytes
    assert values["taken_at"] == after.taken_at.isoformat()
    assert values["memory_state"] == "ok" and values["disk_state"] == "ok"
    assert set(values) >= {"queued", "running", "succeeded", "failed", "cancelled", "rows_per_s", "loop_lag_p99_s"}


def test_staging_bytes_appear_after_an_interrupted_upload_and_go_after_cleanup(db_url):
    child = Pusher(db_url, 100_000, 5, 10_000, fault="between_chunks@4:kill")
    assert child.end(timeout=120) == (-signal.SIGKILL, False), child.said
    with dsn.connect(db_url) as hub:
        interrupted = hub.tasks(status="interrupted")
        assert len(interrupted) == 1
        kept = hub.status().staging_bytes
        # Four chunks of 10,000 rows of five columns (a float and a timestamp among them).
        assert 40_000 * 20 < kept < 40_000 * 200
        assert interrupted.iloc[0]["bytes_written"] > 0
        assert hub.status().staging_bytes == kept  # measured once, then remembered
        assert hub.cleanup() == 1
        assert staging_tables(hub) == []
        assert hub.status().staging_bytes == 0


def test_loop_lag_is_measured_and_reported(hub):
    """Callbacks that hold the hub's loop for 0.3 s show in the 99th percentile, not the median."""

    async def block() -> None:
        time.sleep(0.3)

    wait_until(lambda: hub.status().loop_lag_p50_s is not None, what="the first lateness samples")
    for _ in range(3):
        hub.submit(block()).result(timeout=30)
        hub.submit(asyncio.sleep(0.15)).result(timeout=30)
    status = hub.status()
    assert status.loop_lag_p99_s >= 0.15
    assert status.loop_lag_p50_s < 0.15


def test_loop_lag_percentiles_forget_old_samples():
    lag = LoopLag(interval=0.01, window=60)
    now = time.monotonic()
    lag._samples.extend([(now - 120, 5.0), (now, 0.001), (now, 0.003)])
    assert lag.percentiles() == (pytest.approx(0.002), pytest.approx(0.00298))
    assert LoopLag().percentiles() == (None, None)


def test_percentiles_and_sizes_read_as_expected():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile(list(range(101)), 95) == 95
    assert [format_bytes(n) for n in (None, 0, 1023, 1536, 5 * 2**30)] == ["-", "0 bytes", "1023 bytes", "1.5 KB", "5.0 GB"]


def test_memory_and_disk_states_turn_at_their_thresholds(hub):
    status = hub.status()

    def with_(**changes):
        return type(status)(**{**status.__dict__, **changes})

    limit = 1000
    assert with_(rss_bytes=800, memory_limit_bytes=limit).memory_state == "ok"
    assert with_(rss_bytes=801, memory_limit_bytes=limit).memory_state == "warn"
    assert with_(rss_bytes=901, memory_limit_bytes=limit).memory_state == "critical"
    assert with_(free_disk_bytes=200, queued_bytes=100).disk_state == "ok"
    assert with_(free_disk_bytes=199, queued_bytes=100).disk_state == "warn"
    assert with_(free_disk_bytes=99, queued_bytes=100).disk_state == "critical"
    assert with_(free_disk_bytes=None, queued_bytes=100).disk_state == "ok"
    assert with_(free_disk_bytes=0, queued_bytes=0).disk_state == "ok"


# -- what each upload records ------------------------------------------------------------------


def test_each_upload_records_its_bytes_and_peak_rate(hub):
    hub.push(PREVIOUS, "d").wait(timeout=60)
    task = hub.push(frame(100_000), "d", chunk_size=5_000)
    task.wait(timeout=120)
    again = hub.push(frame(100_000), "d")  # identical content: nothing is written
    again.wait(timeout=60)
    rows = hub.tasks(dataset="d").set_index("id")
    assert rows.loc[task.id, "bytes_written"] == task.bytes_written == task.bytes_total > 100_000 * 8
    assert task.peak_rows_per_s > 0
    assert rows.loc[task.id, "peak_rows_per_s"] == pytest.approx(task.peak_rows_per_s)
    assert rows.loc[again.id, "bytes_written"] == 0


def test_one_structured_log_record_per_finished_upload(hub, caplog):
    with caplog.at_level(logging.INFO, logger="dsnotebook"):
        done = hub.push(frame(10_000), "d")
        version = done.wait(timeout=60)
        undo = refuse_progress_beyond(hub, 1_000)
        try:
            failed = hub.push(frame(10_000), "e", chunk_size=500)
            with pytest.raises(UploadError):
                failed.wait(timeout=60)
        finally:
            undo()
    records = {r.task_id: r for r in caplog.records if hasattr(r, "task_id") and hasattr(r, "rows_per_s")}
    assert set(records) == {done.id, failed.id}
    ok = records[done.id]
    assert ok.levelno == logging.INFO
    assert (ok.dataset, ok.status, ok.version, ok.rows, ok.attempts) == ("d", "succeeded", version.version, 10_000, 1)
    assert ok.bytes == done.bytes_total > 0 and ok.seconds > 0 and ok.rows_per_s > 0
    assert "succeeded" in ok.getMessage() and "10000 rows" in ok.getMessage()
    bad = records[failed.id]
    assert (bad.dataset, bad.status, bad.version) == ("e", "failed", None)


# -- the task service's statistics ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_task_service_stats_from_known_sleeps(tmp_path):
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'stats.db'}")
    try:
        service = BackgroundTaskService(async_sessionmaker(engine), concurrency=1)
        empty = service.stats()
        assert empty.counts["succeeded"] == 0 and empty.run_p50_s is None and empty.wait_mean_s is None

        async def sleep(_session, seconds: float) -> None:
            await asyncio.sleep(seconds)

        async def fail(_session) -> None:
            raise ValueError("known failure")

        naps = [0.05, 0.10, 0.15, 0.20]
        tasks = [service.create_task_with_session(sleep, nap, task_name=f"nap {nap}") for nap in naps]
        stats = service.stats()
        assert stats.counts["queued"] + stats.counts["running"] == 4
        await asyncio.gather(*tasks)
        with pytest.raises(ValueError):
            await service.create_task_with_session(fail, task_name="fails")
        stats = service.stats()
    finally:
        await engine.dispose()
    assert stats.counts == {"queued": 0, "running": 0, "succeeded": 4, "failed": 1, "cancelled": 0, "interrupted": 0}
    # Run times: each at least its sleep, and not much longer on a quiet or a loaded machine.
    tolerance = 0.5
    runs = sorted(naps) + [0.0]
    assert percentile(runs, 50) <= stats.run_p50_s <= percentile(runs, 50) + tolerance
    assert percentile(runs, 95) <= stats.run_p95_s <= percentile(runs, 95) + tolerance
    assert sum(runs) / 5 <= stats.run_mean_s <= sum(runs) / 5 + tolerance
    # One at a time: each nap waited for the ones before it; the failing task, started after
    # them, did not wait.
    waits = [0.0, 0.05, 0.15, 0.30, 0.0]
    assert percentile(waits, 50) <= stats.wait_p50_s <= percentile(waits, 50) + tolerance
    assert percentile(waits, 95) <= stats.wait_p95_s <= percentile(waits, 95) + tolerance
    assert json.loads(json.dumps(stats.to_dict()))["counts"]["failed"] == 1


# -- refusing before the disk fills ---------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A directory on an 8 MB filesystem: a tmpfs of its own where this process may mount one,
    else a directory whose free-space figure is 8 MB less what its files take."""
    mount = tmp_path / "small"
    mount.mkdir()
    size = 8 * 2**20
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode == 0
    if not mounted:
        monkeypatch.setattr(
            SQLiteBackend, "free_disk_bytes", lambda self: max(0, size - sum(p.stat().st_size for p in mount.iterdir()))
        )
    yield mount
    if mounted:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_push_that_would_not_fit_is_refused_up_front(small_disk):
    with dsn.connect(f"sqlite+aiosqlite:///{small_disk / 'hub.db'}") as hub:
        hub.push(PREVIOUS, "d").wait(timeout=60)
        free = hub.status().free_disk_bytes
        assert free is not None and free < 8 * 2**20
        # Four columns of 0s and 1s with their row ids: 40 bytes a row in Arrow, 9.6 MB in all,
        # beyond the disk; SQLite stores them in about a quarter of that.
        bits = np.arange(240_000) % 2
        big = pd.DataFrame({"a": bits, "b": 1 - bits, "c": bits, "d": bits})
        tasks_before = len(hub.tasks())
        with pytest.raises(ValidationError) as refused:
            hub.push(big, "d")
        message = str(refused.value)
        assert "not enough free disk space" in message and "check_space=False" in message
        # Both sizes, readable: what it needs (the rows, 9.2 MB, plus a margin) and what is free.
        assert re.search(r"needs about 10\.\d MB \(9\.2 MB of rows", message), message
        assert f"has {format_bytes(free)} free" in message
        # Nothing was written: no task, no staging table, the previous version as it was.
        assert len(hub.tasks()) == tasks_before
        assert staging_tables(hub) == []
        assert_identical(hub.pull("d"), PREVIOUS)
        with pytest.raises(ValidationError, match="not enough free disk space"):
            hub.check(big, "d")
        # Told not to check, the push goes through, and fits.
        version = hub.push(big, "d", check_space=False).wait(timeout=120)
        assert version.version == 2
        assert_identical(hub.pull("d"), big)
        with pytest.raises(ValidationError, match="check_space: expected True or False"):
            hub.push(PREVIOUS, "d", check_space="no")


@pytest.mark.postgresql_only
def test_postgresql_makes_no_space_check(db_url):
    with dsn.connect(db_url) as hub:
        assert hub.aio.backend.free_disk_bytes() is None
        hub.push(frame(1_000), "d").wait(timeout=60)


def test_a_read_only_hub_refuses_pushes_before_queueing(tmp_path):
    path = tmp_path / "hub.db"
    with dsn.connect(f"sqlite+aiosqlite:///{path}") as hub:
        hub.push(PREVIOUS, "d").wait(timeout=60)
    with dsn.connect(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true") as ro:
        with pytest.raises(UsageError, match=r"^this database is opened read-only \(mode=ro\); pushes are refused$"):
            ro.push(frame(10), "e")
        assert_identical(ro.pull("d"), PREVIOUS)
        assert len(ro.tasks()) == 1
        assert ro.status().queued == 0


def test_a_catalog_of_schema_version_2_is_migrated(db_url):
    with dsn.connect(db_url) as hub:
        hub.push(PREVIOUS, "old").wait(timeout=30)
        execute(
            hub,
            "ALTER TABLE dsn_tasks DROP COLUMN bytes_written",
            "ALTER TABLE dsn_tasks DROP COLUMN peak_rows_per_s",
            "UPDATE dsn_meta SET value = '2' WHERE key = 'schema_version'",
        )
    with dsn.connect(db_url) as hub:
        assert execute(hub, "SELECT value FROM dsn_meta WHERE key = 'schema_version'") == [("3",)]
        old = hub.tasks(dataset="old").iloc[0]
        assert pd.isna(old["bytes_written"]) and pd.isna(old["peak_rows_per_s"])
        task = hub.push(PREVIOUS, "new")
        task.wait(timeout=30)
        assert hub.tasks(dataset="new").iloc[0]["bytes_written"] == task.bytes_total > 0


def test_the_cpu_figure_is_a_lifetime_average_until_half_a_second_has_passed():
    from dsnotebook.monitor import ProcessFigures

    figures = ProcessFigures()
    first = figures.cpu_percent()
    assert 0 <= first < 100 * (os.cpu_count() or 1) * 1.5
    # Half a second of busy work on this thread: the figure counts at least what this thread used.
    started, cpu_then = time.monotonic(), time.thread_time()
    while time.monotonic() < started + ProcessFigures.MIN_SPAN + 0.1:
        pass
    busy = figures.cpu_percent()
    own = (time.thread_time() - cpu_then) / (time.monotonic() - started) * 100
    assert busy >= own * 0.9 > 0
