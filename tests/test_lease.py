"""Uploads whose process is gone become ``interrupted``: at once on this host, after a lease elsewhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hubtools import execute, execute_on, kept_stages, occupy_the_slot, staging_tables, wait_until

import dsnotebook as dsn


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


@pytest.mark.parametrize("lease", [0, -1, True, "60"])
def test_a_bad_lease_is_refused(lease, tmp_path):
    with pytest.raises(dsn.ValidationError, match="lease: expected a positive number of seconds"):
        dsn.connect(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", lease=lease)
