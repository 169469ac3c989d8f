"""Uploads whose process is gone become ``interrupted``: at once on this host, after a lease elsewhere."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psutil
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from hubtools import execute, execute_on, kept_stages, occupy_the_slot, staging_tables, wait_until

import dsnotebook as dsn
from dsnotebook.upload.service import owner


def _running_row(hub, task_id: str, host: str, heartbeat: datetime) -> None:
    stamp = heartbeat.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    execute(
        hub,
        "INSERT INTO dsn_tasks (id, name, dataset, status, if_exists, priority, rows_total, rows_done, attempts, "
        "deduplicated, queued_at, owner_host, owner_pid, heartbeat_at) VALUES "
        f"('{task_id}', 'push x', 'x', 'running', 'replace', 0, 10, 5, 1, {'false' if hub.url.get_backend_name() == 'postgresql' else '0'}, "
        f"'{stamp}', '{host}', 1, '{stamp}')",
    )


def _statuses(hub) -> dict[str, str]:
    return dict(zip(hub.tasks()["id"], hub.tasks()["status"]))


def test_another_machines_upload_is_interrupted_only_once_its_lease_expired(db_url):
    now = datetime.now(UTC)
    with dsn.connect(db_url) as hub:
        _running_row(hub, "stale", "another-machine", now - timedelta(seconds=120))
        _running_row(hub, "fresh", "another-machine", now)
    with dsn.connect(db_url, lease=60) as hub:
        # The machine with a fresh heartbeat may well be alive: it is left alone.
        assert _statuses(hub) == {"stale": "interrupted", "fresh": "running"}
    with dsn.connect(db_url, lease=0.4) as hub:
        # A live hub keeps sweeping: once the fresh heartbeat is older than the lease, it is marked too.
        wait_until(lambda: _statuses(hub)["fresh"] == "interrupted", timeout=10, what="the lease to expire")


def test_a_queued_upload_renews_its_heartbeat(db_url):
    with dsn.connect(db_url, lease=0.4) as hub:
        release = occupy_the_slot(hub)
        try:
            task = hub.push(pd.DataFrame({"a": [1, 2, 3]}), "waiting")

            def beat() -> str:
                return str(execute(hub, f"SELECT heartbeat_at FROM dsn_tasks WHERE id = '{task.id}'")[0][0])

            first = beat()
            wait_until(lambda: beat() != first, timeout=10, what="a heartbeat")
            assert task.status == "queued"
            # Another hub with the same short lease does not take it for dead.
            with dsn.connect(db_url, lease=0.4) as other:
                time.sleep(0.6)
                assert _statuses(other)[task.id] == "queued"
        finally:
            release()
        task.wait(timeout=30)


def test_a_catalog_of_schema_version_1_is_migrated(db_url):
    with dsn.connect(db_url) as hub:
        hub.push(pd.DataFrame({"a": [1]}), "old").wait(timeout=30)
        execute(hub, "ALTER TABLE dsn_tasks DROP COLUMN heartbeat_at", "UPDATE dsn_meta SET value = '1' WHERE key = 'schema_version'")
    with dsn.connect(db_url) as hub:
        assert execute(hub, "SELECT value FROM dsn_meta WHERE key = 'schema_version'") == [("3",)]
        hub.push(pd.DataFrame({"a": [2]}), "new").wait(timeout=30)
        assert sorted(hub.datasets()["name"]) == ["new", "old"]


KILLED_PUSH = textwrap.dedent(
    """
    import sys, time, numpy as np, pandas as pd, dsnotebook as dsn
    hub = dsn.connect(sys.argv[1])
    task = hub.push(pd.DataFrame({"a": np.arange(2_000_000), "b": np.arange(2_000_000) * 0.5}), "d", chunk_size=2_000)
    while task.rows_done < 20_000:
        time.sleep(0.005)
    print(task.id, flush=True)
    time.sleep(60)
    """
)


def test_a_push_killed_mid_upload_leaves_the_dataset_unchanged(db_url):
    previous = pd.DataFrame({"a": np.arange(5), "b": np.arange(5) * 0.5})
    with dsn.connect(db_url) as hub:
        hub.push(previous, "d").wait(timeout=30)
    child = subprocess.Popen([sys.executable, "-c", KILLED_PUSH, db_url], stdout=subprocess.PIPE, text=True)
    try:
        task_id = child.stdout.readline().strip()
        assert task_id, "the pushing process did not start its upload"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    # As if the killed kernel had run on another machine, whose processes cannot be checked from here.
    execute_on(db_url, f"UPDATE dsn_tasks SET owner_host = 'another-machine' WHERE id = '{task_id}'")
    with dsn.connect(db_url, lease=2) as hub:
        # Readers see the previous version only: no partial version, whatever the task's state.
        assert hub.versions("d")["version"].tolist() == [1]
        pd.testing.assert_frame_equal(hub.pull("d"), previous)
        assert _statuses(hub)[task_id] == "running"  # its heartbeat is younger than the lease
        wait_until(lambda: _statuses(hub)[task_id] == "interrupted", timeout=15, what="the lease to expire")
        # Its committed rows, if any, are kept for a resume, and are the only staging rows left.
        assert staging_tables(hub) == list(kept_stages(hub))
        assert hub.versions("d")["version"].tolist() == [1]


def test_a_killed_process_not_reaped_yet_counts_as_ended(db_url):
    """After kill -9, the process stays a zombie until its parent reaps it, and a signal 0
    still reaches a zombie. The next connect must see that the upload's process has ended."""
    child = subprocess.Popen([sys.executable, "-c", KILLED_PUSH, db_url], stdout=subprocess.PIPE, text=True)
    try:
        task_id = child.stdout.readline().strip()
        assert task_id, "the pushing process did not start its upload"
        os.kill(child.pid, signal.SIGKILL)
        # Not reaped: nothing waits on the Popen object until the end of the test.
        wait_until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, what="the killed child to be a zombie")
        with dsn.connect(db_url) as hub:
            assert _statuses(hub)[task_id] == "interrupted"
        assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def test_a_process_that_got_the_pid_of_an_ended_owner_is_not_taken_for_it(db_url):
    """Pids are reused. A live process with the owner's pid that started after the upload was
    queued is another process, so the upload is interrupted; the upload of a process that
    started before it queued the upload stays running."""
    host, _ = owner()
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        started = datetime.fromtimestamp(psutil.Process(live.pid).create_time(), UTC)
        with dsn.connect(db_url) as hub:
            _running_row(hub, "reused", host, started - timedelta(hours=1))
            _running_row(hub, "owned", host, datetime.now(UTC))
            execute(hub, f"UPDATE dsn_tasks SET owner_pid = {live.pid} WHERE id IN ('reused', 'owned')")
        with dsn.connect(db_url) as hub:
            assert _statuses(hub) == {"reused": "interrupted", "owned": "running"}
    finally:
        live.stdin.close()
        live.wait(timeout=30)


@pytest.mark.parametrize("lease", [0, -1, True, "60"])
def test_a_bad_lease_is_refused(lease, tmp_path):
    with pytest.raises(dsn.ValidationError, match="lease: expected a positive number of seconds"):
        dsn.connect(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", lease=lease)


@pytest.mark.postgresql_only
def test_a_publish_the_database_commits_after_its_process_died_stands(db_url):
    """A process killed just after it sent its publish's commit is gone, while the server may
    apply that commit a moment later. The next hub's housekeeping waits for it rather than
    reading the staging table as the commit renames it, and leaves the upload succeeded."""
    host, _ = owner()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    with dsn.connect(db_url) as hub:
        _running_row(hub, "late", host, datetime.now(UTC))
        execute(
            hub,
            f"UPDATE dsn_tasks SET owner_pid = {ended.pid}, staging_table = 'dsn_stage_late' WHERE id = 'late'",
            "CREATE TABLE dsn_stage_late (__dsn_row BIGINT PRIMARY KEY, a BIGINT)",
            "INSERT INTO dsn_stage_late VALUES (1, 1), (2, 2)",
        )
    held, release = threading.Event(), threading.Event()

    async def publish_held_open() -> None:
        engine = create_async_engine(db_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("UPDATE dsn_tasks SET status = 'succeeded', staging_table = NULL WHERE id = 'late'")
                await conn.exec_driver_sql("ALTER TABLE dsn_stage_late RENAME TO dsn_published_late")
                held.set()
                await asyncio.to_thread(release.wait, 60)
                await conn.commit()
        finally:
            await engine.dispose()

    async def lock_waiters() -> int:
        engine = create_async_engine(db_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                return (await conn.exec_driver_sql(sql)).scalar()
        finally:
            await engine.dispose()

    publisher = threading.Thread(target=asyncio.run, args=(publish_held_open(),))
    publisher.start()
    outcome: dict[str, object] = {}

    def connect() -> None:
        try:
            with dsn.connect(db_url) as hub:
                assert hub.wait_housekeeping(timeout=60)
                outcome["statuses"] = _statuses(hub)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    connecting = threading.Thread(target=connect)
    try:
        assert held.wait(60)
        connecting.start()
        wait_until(lambda: asyncio.run(lock_waiters()) > 0, what="the connect to wait for the publish's locks")
    finally:
        release.set()
        publisher.join(60)
        if connecting.is_alive():
            connecting.join(60)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["statuses"]["late"] == "succeeded"
