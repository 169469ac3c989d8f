"""A full disk, a read-only database, and a database deleted or moved while a hub is open: each
gives a clear error, never a hang, a driver traceback or a silently recreated empty database."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from frametools import STR, assert_identical
from hubtools import staging_tables
from sqlalchemy import event

import dsnotebook as dsn
from dsnotebook.errors import ConfigError, DsnotebookError, UploadError

pytestmark = pytest.mark.sqlite_only

PREVIOUS = pd.DataFrame({"x": np.arange(1_000, dtype="int64"), "s": pd.array([f"r{i}" for i in range(1_000)], dtype=STR)})


def big(rows: int = 200_000) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(rows, dtype="int64"), "s": pd.array([f"row number {i}" for i in range(rows)], dtype=STR)})


def _limit_growth(hub, extra_pages: int | None):
    """From now on, every connection of the hub may grow the file by ``extra_pages`` pages at
    most (None: no limit), as a disk with that much room left would."""
    engine = hub._async.engine

    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages + extra_pages if extra_pages is not None else 1_073_741_823}")
        cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)
    hub._portal.run(engine.dispose())  # pooled connections reconnect, and get the limit
    return lambda: event.remove(engine.sync_engine, "connect", on_connect)


def test_a_full_disk_fails_the_upload_clearly_and_loses_nothing(hub, backend):
    hub.push(PREVIOUS, "d").wait(timeout=60)
    remove = _limit_growth(hub, extra_pages=100)  # about 400 kB left
    try:
        task = hub.push(big(), "d", chunk_size=20_000)
        with pytest.raises(UploadError, match="failed: the disk or the database is full; free some space") as caught:
            task.wait(timeout=120)
        assert task.status == "failed" and "full" in str(task.error)
        assert "Traceback" not in str(caught.value)
        # The staging rows are gone, the previous version reads back whole, and the catalog says why.
        assert staging_tables(hub) == []
        assert_identical(hub.pull("d"), PREVIOUS)
        row = hub.tasks(dataset="d").iloc[0]
        assert row["status"] == "failed" and "full" in row["error"]
    finally:
        remove()
    # Space freed: the same hub works again.
    _limit_growth(hub, extra_pages=None)()
    version = hub.push(big(), "d", chunk_size=20_000).wait(timeout=120)
    assert version.version == 2
    assert_identical(hub.pull("d"), big())


def test_a_read_only_database_reads_and_refuses_writes_clearly(db_url, tmp_path, backend):
    with dsn.connect(db_url) as hub:
        hub.push(PREVIOUS, "d").wait(timeout=60)
    path = db_url.split("///", 1)[1]
    read_only = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    before = os.stat(path).st_mtime_ns
    with dsn.connect(read_only) as hub:
        assert_identical(hub.pull("d"), PREVIOUS)
        assert hub.datasets()["name"].tolist() == ["d"]
        with pytest.raises(DsnotebookError, match="read-only") as caught:
            hub.push(PREVIOUS.head(3), "other").wait(timeout=60)
        assert "Traceback" not in str(caught.value)
        with pytest.raises(DsnotebookError, match="read-only"):
            hub.delete("d")
    assert os.stat(path).st_mtime_ns == before
    with dsn.connect(db_url) as hub:
        assert hub.datasets()["name"].tolist() == ["d"]
        assert_identical(hub.pull("d"), PREVIOUS)


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_a_database_gone_while_the_hub_is_open_is_never_recreated_empty(db_url, tmp_path, backend, how):
    path = db_url.split("///", 1)[1]
    hub = dsn.connect(db_url)
    try:
        hub.push(PREVIOUS, "d").wait(timeout=60)
        hub._portal.run(hub._async.engine.dispose())  # no connection keeps the old file open
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                if how == "deleted":
                    os.remove(path + suffix)
                else:
                    os.rename(path + suffix, str(tmp_path / f"moved.db{suffix}"))
        for attempt in (lambda: hub.pull("d"), lambda: hub.push(PREVIOUS, "e").wait(timeout=30), hub.datasets):
            with pytest.raises(ConfigError, match="moved, deleted, or opened read-only"):
                attempt()
        assert not os.path.exists(path), "the database was recreated empty"
    finally:
        hub.close()
    if how == "moved":
        with dsn.connect(f"sqlite+aiosqlite:///{tmp_path / 'moved.db'}") as moved:
            assert_identical(moved.pull("d"), PREVIOUS)
