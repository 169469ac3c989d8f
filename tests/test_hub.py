"""Connecting, the two faces (Hub and AsyncHub), module-level helpers and shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import numpy as np
import pandas as pd
import pytest
from hubtools import execute

import dsnotebook as dsn
from dsnotebook.errors import ConfigError, DatasetError, DatasetNotFound, HubClosed, ValidationError


def frame(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(n), "b": [f"v{i}" for i in range(n)]})


def assert_same(a, b) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_index_type=True, check_column_type=True)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        pytest.param("not a url", "is not a database URL", id="malformed"),
        pytest.param("", "empty", id="empty"),
        pytest.param("nosuchdb+nodriver://u:hunter2@host/db", "does not support", id="unknown-database"),
        pytest.param("mysql+aiomysql://u:hunter2@host/db", "does not support", id="unsupported-database"),
        pytest.param("postgresql+psycopg://u:hunter2@host/db", "does not support", id="unsupported-driver"),
        pytest.param("sqlite+aiosqlite://", "in-memory", id="memory"),
        pytest.param("postgresql+asyncpg://u:hunter2@127.0.0.1:9/db", "", id="unreachable"),
        pytest.param("postgresql+asyncpg://u:hunter2@127.0.0.1:9/db?ssl=bogus", "ssl='bogus' is not one of", id="bad-ssl-mode"),
        pytest.param("postgresql+asyncpg://u:hunter2@127.0.0.1:9/db?timeout=soon", "cannot be used", id="bad-timeout"),
    ],
)
def test_bad_urls_raise_config_error_with_the_password_masked(url, fragment, caplog):
    caplog.set_level(logging.DEBUG, logger="dsnotebook")
    with pytest.raises(ConfigError) as err:
        dsn.connect(url)
    assert fragment in str(err.value)
    assert "hunter2" not in str(err.value) and "hunter2" not in caplog.text


def test_repr_shows_where_the_hub_points_without_the_password(db_url):
    assert "hunter2" not in repr(dsn.AsyncHub("postgresql+asyncpg://u:hunter2@db.example/x"))
    assert "***" in repr(dsn.AsyncHub("postgresql+asyncpg://u:hunter2@db.example/x"))
    with dsn.connect(db_url) as hub:
        assert hub.url.database in repr(hub) and "open" in repr(hub)
    assert "closed" in repr(hub)


def test_closing_waits_for_a_read_under_way_and_closes_its_connection(db_url, monkeypatch):
    """A read that holds a connection while the hub closes (a panel's refresh as an upload ends,
    say) finishes first; its connection is then closed with the others, not handed back to a
    pool nobody closes any more. A read that would start after the close began is refused, the
    next batch of an ``iter_batches`` loop among them."""
    hub = dsn.connect(db_url)
    hub.push(pd.DataFrame({"a": [1, 2]}), "d").wait(timeout=60)
    repo = hub.aio._repo
    holding, release = threading.Event(), threading.Event()
    listed = repo.datasets

    async def held_datasets():
        async with repo._read() as session:
            await session.connection()
            holding.set()
            while not release.is_set():
                await asyncio.sleep(0.01)
            return await listed()

    monkeypatch.setattr(repo, "datasets", held_datasets)
    batches = hub.iter_batches("d", batch_rows=1)
    assert next(batches)["a"].tolist() == [1]
    read = hub.submit(hub.aio.datasets())
    assert holding.wait(60)
    pool = hub.aio.engine.pool
    assert pool.checkedout() == 1
    closer = threading.Thread(target=hub.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive(), "close() returned while a read still held a connection"
    release.set()
    assert read.result(timeout=60)["name"].tolist() == ["d"]
    closer.join(60)
    assert not closer.is_alive()
    assert (pool.checkedout(), pool.checkedin()) == (0, 0)
    with pytest.raises(HubClosed):
        hub.submit(hub.aio.versions("d")).result(timeout=60)
    with pytest.raises(HubClosed):  # the next batch of a loop begun before the close
        next(batches)


def test_plain_sqlite_urls_get_the_async_driver(tmp_path):
    with dsn.connect(f"sqlite:///{tmp_path / 'plain.db'}") as hub:
        assert hub.url.drivername == "sqlite+aiosqlite"


def test_default_database_is_a_per_user_file(monkeypatch, _isolated_home):
    monkeypatch.delenv("DSNOTEBOOK_URL")
    with dsn.connect() as hub:
        assert hub.url.database == str(_isolated_home / ".dsnotebook" / "datasets.db")
    assert (_isolated_home / ".dsnotebook" / "datasets.db").exists()


def test_dsnotebook_url_overrides_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("DSNOTEBOOK_URL", f"sqlite+aiosqlite:///{tmp_path / 'env.db'}")
    with dsn.connect() as hub:
        assert hub.url.database == str(tmp_path / "env.db")


@pytest.mark.sqlite_only
def test_sqlite_runs_in_wal_with_busy_timeout_and_foreign_keys(hub):
    async def pragmas():
        async with hub._async.engine.connect() as conn:
            return [
                (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar() for p in ("journal_mode", "busy_timeout", "foreign_keys")
            ]

    assert hub._portal.run(pragmas()) == ["wal", 5000, 1]


@pytest.mark.sqlite_only
def test_a_database_deleted_underneath_is_not_recreated_empty(db_url):
    path = db_url.split("///", 1)[1]
    with dsn.connect(db_url) as hub:
        hub.push(frame(), "d").wait(timeout=30)
        hub._portal.run(hub._async.engine.dispose())
        os.remove(path)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        with pytest.raises(ConfigError, match="moved, deleted"):
            hub.pull("d")
    assert not os.path.exists(path)


def test_module_level_helpers_use_a_default_hub():
    dsn.push(frame(), "m").wait(timeout=30)
    assert_same(dsn.pull("m"), frame())
    assert dsn.datasets()["name"].tolist() == ["m"]
    assert dsn.tasks()["status"].tolist() == ["succeeded"]
    from dsnotebook.tasks import BackgroundTaskService  # the module is still the module

    assert dsn.BackgroundTaskService is BackgroundTaskService


@pytest.mark.asyncio
async def test_async_hub_runs_on_the_callers_loop(db_url):
    async with dsn.AsyncHub(db_url) as hub:
        task = await hub.push(frame(100), "a", chunk_size=10)
        assert task.task.get_loop() is asyncio.get_running_loop()
        version = await task
        assert version.rows == 100 and task.status == "succeeded"
        assert_same(await hub.pull("a"), frame(100))
        assert (await hub.datasets())["name"].tolist() == ["a"]
        assert (await hub.versions("a"))["version"].tolist() == [1]
        assert (await hub.info("a")).latest == version
        assert len(await hub.tasks()) == 1
        assert hub.task_service is not None and hub.task_service.running() == []
        with pytest.raises(DatasetNotFound):
            await hub.pull("b")
    with pytest.raises(HubClosed):
        await hub.pull("a")


@pytest.mark.asyncio
async def test_async_hub_opens_lazily(db_url):
    hub = dsn.AsyncHub(db_url)
    try:
        await (await hub.push(frame(), "lazy"))
        assert len(await hub.pull("lazy")) == 10
    finally:
        await hub.aclose()


def test_hub_options_are_validated(db_url):
    with pytest.raises(ValidationError, match="concurrency"):
        dsn.connect(db_url, concurrency=0)
    with pytest.raises(ValidationError, match="chunk_size"):
        dsn.connect(db_url, chunk_size=-1)


def test_concurrency_is_configurable(db_url, backend):
    with dsn.connect(db_url, concurrency=3) as hub:
        assert hub.task_service.concurrency == 3
    with dsn.connect(db_url) as hub:
        # SQLite has a single writer; PostgreSQL runs several uploads at once.
        assert hub.task_service.concurrency == {"sqlite": 1, "postgresql": 4}[backend]


def test_an_async_hub_belongs_to_the_loop_that_opened_it(db_url):
    hub = dsn.AsyncHub(db_url)
    home = asyncio.new_event_loop()
    try:
        home.run_until_complete(hub.open())
        with pytest.raises(dsn.UsageError, match="another event loop"):
            asyncio.run(hub.datasets())
        assert home.run_until_complete(hub.datasets()).empty
    finally:
        home.run_until_complete(hub.aclose())
        home.close()


def test_a_read_that_fails_is_a_dataset_error_naming_the_cause(hub):
    """A read that fails past the driver (here a manifest damaged behind the catalog's back) is a
    DatasetError that names the dataset, the version and the cause, not an upload's error."""
    hub.push(frame(), "d").wait(timeout=30)
    execute(hub, "UPDATE dsn_versions SET manifest = '{\"format\": 1}'")
    with pytest.raises(DatasetError, match=r"dataset 'd' version 1 cannot be read: .* at sql_columns: missing") as err:
        hub.pull("d")
    assert not isinstance(err.value, dsn.UploadError)


@pytest.mark.sqlite_only
def test_a_data_table_dropped_behind_the_catalogs_back_is_a_dataset_error(hub):
    hub.push(frame(), "d").wait(timeout=30)
    execute(hub, f'DROP TABLE "{hub.info("d").latest.table_name}"')
    with pytest.raises(DatasetError, match="no such table: dsn_data_") as err:
        hub.pull("d")
    assert not isinstance(err.value, ConfigError)
    assert hub.datasets()["name"].tolist() == ["d"]  # the catalog itself is fine
