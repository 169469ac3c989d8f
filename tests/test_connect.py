"""Connecting: no write lock for an up-to-date catalog, the housekeeping after it, long lock
waits in the log, ``create=False``, errors while opening, and the typed keyword arguments."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import inspect
import logging
import pydoc
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from hubtools import execute
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

import dsnotebook as dsn
from dsnotebook import aiohub
from dsnotebook.errors import ConfigError, UploadError, ValidationError
from dsnotebook.store.backends._pg_schemas import CATALOG_LOCK_KEY

FRAME = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
OPTIONS = ("url", "concurrency", "retry", "chunk_size", "lease", "keep_interrupted", "create", "schema", "file_mode")


@contextlib.contextmanager
def sqlite_write_lock(path: str) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock (``BEGIN IMMEDIATE``) until the block ends."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        yield con
        con.execute("ROLLBACK")
    finally:
        con.close()


@contextlib.contextmanager
def postgres_catalog_lock(db_url: str) -> Iterator[dict]:
    """Another connection holding the catalog's lock (the one that serialises creating and
    migrating the catalog) until the block ends, or for 20 s at most; ``["deadline"]`` says
    whether the 20 s ran out first."""
    held, release, outcome = threading.Event(), threading.Event(), {}

    async def hold() -> None:
        engine = create_async_engine(db_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CATALOG_LOCK_KEY})")
                held.set()
                outcome["deadline"] = not await asyncio.to_thread(release.wait, 20)
        finally:
            await engine.dispose()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert held.wait(30), "the lock holder did not start"
        yield outcome
    finally:
        release.set()
        holder.join(60)


class LogWatch(logging.Handler):
    """The dsnotebook logger's records from INFO up; ``wait_for(pattern)`` blocks until one matches."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.messages.append(record.getMessage())
            self._changed.notify_all()

    def matching(self, pattern: str) -> list[str]:
        with self._changed:
            return [m for m in self.messages if re.search(pattern, m)]

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        with self._changed:
            assert self._changed.wait_for(lambda: any(re.search(pattern, m) for m in self.messages), timeout), (
                f"no log line matched {pattern!r} in {timeout} s; got {self.messages}"
            )
        return self.matching(pattern)[0]


@pytest.fixture
def log_watch() -> Iterator[LogWatch]:
    logger = logging.getLogger("dsnotebook")
    watch, level = LogWatch(), logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


def ended_pid() -> int:
    """The pid of a process of this host that has ended and was reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def dead_upload(path: str, task_id: str, *, staged_rows: int = 0) -> None:
    """Record, straight in the SQLite file, a running upload of a process of this host that
    ended, with a staging table of ``staged_rows`` committed rows if that is not 0."""
    pid = ended_pid()
    stage = f"dsn_stage_{task_id}" if staged_rows else None
    con = sqlite3.connect(path)
    try:
        con.execute(
            "INSERT INTO dsn_tasks (id, name, dataset, status, if_exists, priority, rows_total, rows_done, attempts, "
            "deduplicated, queued_at, owner_host, owner_pid, staging_table) VALUES "
            "(?, 'push e', 'e', 'running', 'replace', 0, 10, ?, 1, 0, '2026-01-01 00:00:00.000000+00:00', ?, ?, ?)",
            (task_id, staged_rows, socket.gethostname(), pid, stage),
        )
        if stage:
            con.execute(f'CREATE TABLE "{stage}" (__dsn_row INTEGER PRIMARY KEY, a INTEGER)')
            con.executemany(f'INSERT INTO "{stage}" VALUES (?, ?)', [(i, i) for i in range(1, staged_rows + 1)])
        con.commit()
    finally:
        con.close()


def sqlite_file(db_url: str) -> str:
    return make_url(db_url).database


# -- point 9: connecting needs no write lock ------------------------------------------------------


def test_connecting_to_an_up_to_date_catalog_waits_for_no_write_lock(db_url, backend):
    """Another process holds the write lock (SQLite) or the catalog lock (PostgreSQL): connect
    returns while it still holds it, and reads work. Before, it waited for the lock, and on
    SQLite with ``?timeout=0.5`` it failed with "UploadError: opening … database is locked"."""
    with dsn.connect(db_url) as hub:
        version = hub.push(FRAME, "d").wait(timeout=60)
    if backend == "sqlite":
        with sqlite_write_lock(sqlite_file(db_url)), dsn.connect(db_url + "?timeout=0.5") as hub:
            pd.testing.assert_frame_equal(hub.pull("d"), FRAME)
            assert hub.datasets()["name"].tolist() == ["d"]
            assert hub.versions("d")["version"].tolist() == [version.version]
            assert hub.tasks()["status"].tolist() == ["succeeded"]
            assert hub.wait_housekeeping(timeout=60)
        return
    with postgres_catalog_lock(db_url) as lock, dsn.connect(db_url) as hub:
        held_throughout = "deadline" not in lock
        pd.testing.assert_frame_equal(hub.pull("d"), FRAME)
        assert hub.tasks()["status"].tolist() == ["succeeded"]
    assert held_throughout, "connect waited for the catalog lock"
    assert lock == {"deadline": False}


@pytest.mark.sqlite_only
def test_the_housekeeping_waits_for_the_write_lock_in_the_background_and_logs_the_wait(db_url, log_watch):
    """A dead process's upload needs marking while another connection holds the write lock.
    Connect returns at once; the housekeeping logs at INFO, after a second, who waits for which
    lock; once the lock is released (on that log line, not after a sleep) it marks the upload."""
    with dsn.connect(db_url) as hub:
        hub.push(FRAME, "d").wait(timeout=60)
    path = sqlite_file(db_url)
    dead_upload(path, "dead")
    with sqlite_write_lock(path):
        hub = dsn.connect(db_url)
        try:
            waiting = log_watch.wait_for(r"has waited .* so far for the write lock")
            assert waiting.startswith("marking the uploads of ended processes interrupted (process ")
            assert waiting.endswith(f"for the write lock of {Path(path).resolve()}, which another connection holds")
        except BaseException:
            hub.close()
            raise
    try:
        assert hub.wait_housekeeping(timeout=60)
        got = log_watch.wait_for(r"got the write lock")
        assert re.fullmatch(r"marking the uploads .* got the write lock of .* after \d+\.\d s", got), got
        assert float(got.rsplit(" ", 2)[1]) >= 1.0
        assert hub.tasks().set_index("id").loc["dead", "status"] == "interrupted"
    finally:
        hub.close()


@pytest.mark.sqlite_only
def test_tasks_waits_a_bounded_time_for_the_housekeeping(db_url, log_watch, monkeypatch):
    """``tasks()`` right after connect waits for the first housekeeping pass, but no longer than
    ``TASKS_WAIT_S``: past it, it lists what the database holds and says so at INFO."""
    monkeypatch.setattr(aiohub, "TASKS_WAIT_S", 0.2)
    with dsn.connect(db_url) as hub:
        hub.push(FRAME, "d").wait(timeout=60)
    path = sqlite_file(db_url)
    dead_upload(path, "dead")
    hub = None
    try:
        # The lock is taken before connecting, so the housekeeping cannot have run before it.
        with sqlite_write_lock(path):
            hub = dsn.connect(db_url)
            assert hub.tasks().set_index("id").loc["dead", "status"] == "running"
            log_watch.wait_for(r"^listing uploads before the housekeeping .* some may still show as running$", timeout=0)
        assert hub.wait_housekeeping(timeout=60)
        assert hub.tasks().set_index("id").loc["dead", "status"] == "interrupted"
    finally:
        if hub is not None:
            hub.close()


@pytest.mark.sqlite_only
def test_a_dead_upload_is_interrupted_when_tasks_is_listed_right_after_connect(db_url):
    with dsn.connect(db_url) as hub:
        hub.push(FRAME, "d").wait(timeout=60)
    dead_upload(sqlite_file(db_url), "dead")
    with dsn.connect(db_url) as hub:
        assert hub.tasks().set_index("id").loc["dead", "status"] == "interrupted"


@pytest.mark.sqlite_only
def test_cleanup_right_after_connect_drops_the_rows_a_dead_process_kept(db_url):
    """``cleanup()`` drops the rows of interrupted uploads; it first lets the housekeeping mark
    the dead process's upload, as connecting used to, so they are counted."""
    with dsn.connect(db_url) as hub:
        hub.push(FRAME, "d").wait(timeout=60)
    dead_upload(sqlite_file(db_url), "dead", staged_rows=3)
    with dsn.connect(db_url) as hub:
        assert hub.cleanup() == 1
        task = hub.tasks().set_index("id").loc["dead"]
        assert (task["status"], task["staging_table"]) == ("interrupted", None)


# -- errors while opening ---------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_sqlite_connections_are_pooled_and_reused_on_every_sqlalchemy(db_url):
    """SQLAlchemy 2.0 gives aiosqlite files a NullPool (a new connection and thread per use);
    the backend asks for the pool that 2.1 gives by default."""
    with dsn.connect(db_url) as hub:
        hub.datasets()
        hub.datasets()
        pool = hub._async.engine.pool
        assert isinstance(pool, AsyncAdaptedQueuePool)
        # The hub's own background work may hold a connection at this moment; together, the
        # connections kept are at least the one the reads used.
        assert pool.checkedin() + pool.checkedout() >= 1


class _OpenedConnections:
    """Every sqlite3 connection the driver opens, and whether it was closed; ``opening`` is set
    while the driver's thread is inside ``sqlite3.connect``, which waits for ``proceed``."""

    def __init__(self) -> None:
        self.opening = threading.Event()
        self.proceed = threading.Event()
        self.open: set[int] = set()
        self.opened = 0
        tracker = self

        class Tracked(sqlite3.Connection):
            def close(self) -> None:
                tracker.open.discard(id(self))
                super().close()

        self.factory = Tracked

    def connect(self, *args, **kwargs):
        self.opening.set()
        assert self.proceed.wait(30), "the test never let the connection open"
        con = _real_sqlite3_connect(*args, factory=self.factory, **kwargs)
        self.open.add(id(con))
        self.opened += 1
        return con


_real_sqlite3_connect = sqlite3.connect


@pytest.mark.sqlite_only
@pytest.mark.asyncio
async def test_a_connection_being_opened_for_a_cancelled_task_is_closed_not_left_to_the_collector(db_url, monkeypatch):
    """aiosqlite, cancelled while its thread opens the file, forgets the connection that thread
    then opens; the backend finishes the opening and closes it, and the pool holds nothing."""
    from dsnotebook.store.backends import backend_for

    engine = await backend_for(db_url).open_engine()
    try:
        await engine.dispose()  # an empty pool: the next checkout opens a connection
        opened = _OpenedConnections()
        monkeypatch.setattr(sqlite3, "connect", opened.connect)

        async def query() -> None:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")

        for _ in range(3):
            opened.opening.clear()
            opened.proceed.clear()
            task = asyncio.ensure_future(query())
            await asyncio.to_thread(opened.opening.wait, 30)
            task.cancel()  # while the driver's thread is inside sqlite3.connect
            opened.proceed.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert opened.open == set(), "a connection opened for a cancelled task was left open"
            assert engine.pool.checkedout() == 0
        assert opened.opened == 3
        # Uncancelled, a connection opens, serves and goes back to the pool, open.
        opened.proceed.set()
        await query()
        assert opened.opened == 4 and len(opened.open) == 1 and engine.pool.checkedin() == 1
    finally:
        monkeypatch.undo()
        await engine.dispose()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("what", ["not a database", "a directory", "locked while migrating"])
def test_an_error_while_opening_is_a_config_error(db_url, tmp_path, what):
    path = sqlite_file(db_url)
    if what == "not a database":
        Path(path).write_bytes(b"this is not a SQLite database\n" * 200)
        url = db_url
    elif what == "a directory":
        url = f"sqlite+aiosqlite:///{tmp_path}"
    else:
        with dsn.connect(db_url) as hub:
            hub.push(FRAME, "d").wait(timeout=60)
            # An older catalog is migrated at connect, which writes.
            execute(hub, "UPDATE dsn_meta SET value = '2' WHERE key = 'schema_version'")
        url = db_url + "?timeout=0.2"
    with contextlib.ExitStack() as stack:
        if what == "locked while migrating":
            stack.enter_context(sqlite_write_lock(path))
        with pytest.raises(ConfigError) as caught:
            dsn.connect(url, retry=dsn.RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01))
    assert not isinstance(caught.value, UploadError)
    assert url.split("?")[0] in str(caught.value)
    if what == "locked while migrating":
        assert re.fullmatch(r"opening \S+ failed: database is locked", str(caught.value)), str(caught.value)


# -- point 16: create=False -------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_create_false_refuses_a_missing_sqlite_file_and_creates_nothing(tmp_path):
    path = tmp_path / "moved" / "team.db"
    url = f"sqlite+aiosqlite:///{path}"
    message = rf"^the SQLite database '{re.escape(str(path))}' does not exist \(check the path\); pushing a dataset there creates it$"
    with pytest.raises(ConfigError, match=message):
        dsn.connect(url, create=False)
    with pytest.raises(ConfigError, match=message):
        dsn.Hub(url, create=False)

    async def open_async() -> None:
        async with dsn.AsyncHub(url, create=False):
            pass

    with pytest.raises(ConfigError, match=message):
        asyncio.run(open_async())
    assert not path.exists() and not path.parent.exists()
    # The default still creates it, and create=False then opens it.
    with dsn.connect(url) as hub:
        hub.push(FRAME, "d").wait(timeout=60)
    with dsn.connect(url, create=False) as hub:
        pd.testing.assert_frame_equal(hub.pull("d"), FRAME)


def _catalog_tables(db_url: str, backend: str) -> set[str]:
    async def names() -> set[str]:
        engine = create_async_engine(db_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                sql = (
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    if backend == "sqlite"
                    else "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
                return {name for (name,) in (await conn.exec_driver_sql(sql)).all() if name.startswith("dsn_")}
        finally:
            await engine.dispose()

    return asyncio.run(names())


def test_create_false_refuses_a_database_without_a_catalog_and_creates_no_tables(db_url, backend):
    """An existing database that nothing was pushed to (an empty SQLite file, or a PostgreSQL
    database) is refused rather than given the catalog's tables."""
    if backend == "sqlite":
        sqlite3.connect(sqlite_file(db_url)).close()
    with pytest.raises(ConfigError, match=r"holds no dsnotebook catalog \(no dsn_meta table\); the first push to it creates one$"):
        dsn.connect(db_url, create=False)
    assert _catalog_tables(db_url, backend) == set()
    with dsn.connect(db_url) as hub:
        hub.push(FRAME, "d").wait(timeout=60)
    with dsn.connect(db_url, create=False) as hub:
        assert hub.datasets()["name"].tolist() == ["d"]


@pytest.mark.parametrize("bad", ["no", 0, None])
def test_create_must_be_a_bool(tmp_path, bad):
    with pytest.raises(ValidationError, match=r"^create: expected True or False, got "):
        dsn.connect(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", create=bad)
    assert not (tmp_path / "x.db").exists()


# -- point 15: typed keyword arguments --------------------------------------------------------------


@pytest.mark.parametrize("func", [dsn.connect, dsn.Hub, dsn.AsyncHub], ids=["connect", "Hub", "AsyncHub"])
def test_the_options_are_spelt_out_with_types_and_docs(func):
    parameters = inspect.signature(func).parameters
    assert tuple(parameters) == OPTIONS
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters.values())
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for name, p in parameters.items() if name != "url")
    text = pydoc.render_doc(func, renderer=pydoc.plaintext)
    for name in OPTIONS[1:]:
        assert f"{name}: " in text, f"help() does not describe {name}"


@pytest.mark.parametrize(
    ("call", "wrong", "meant", "called"),
    [
        pytest.param(lambda url: dsn.connect(url, concurency=2), "concurency", "concurrency", "connect", id="connect"),
        pytest.param(lambda url: dsn.Hub(url, keep_interupted=0), "keep_interupted", "keep_interrupted", "Hub", id="Hub"),
        pytest.param(lambda url: dsn.AsyncHub(url, leas=5), "leas", "lease", "AsyncHub", id="AsyncHub"),
        pytest.param(lambda url: dsn.push(FRAME, "d", if_exist="append"), "if_exist", "if_exists", "push", id="push"),
        pytest.param(lambda url: dsn.pull("d", colums=["a"]), "colums", "columns", "pull", id="pull"),
        pytest.param(lambda url: dsn.tasks(datset="d"), "datset", "dataset", "dsnotebook.tasks", id="tasks"),
    ],
)
def test_a_misspelt_keyword_names_the_nearest_valid_one(tmp_path, call, wrong, meant, called):
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(TypeError) as caught:
        call(url)
    assert str(caught.value).startswith(f"{called}() got an unexpected keyword argument {wrong!r}; did you mean {meant!r}? Valid keyword arguments: ")
    # Refused before anything was opened or created.
    assert not (tmp_path / "x.db").exists()


def test_a_keyword_far_from_any_lists_the_valid_ones(tmp_path):
    with pytest.raises(TypeError, match=r"^connect\(\) got an unexpected keyword argument 'xyzzy'\. Valid keyword arguments: url, concurrency, retry, chunk_size, lease, keep_interrupted, create, schema, file_mode$"):
        dsn.connect(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", xyzzy=1)


def test_the_package_ships_py_typed():
    assert importlib.resources.files("dsnotebook").joinpath("py.typed").is_file()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["dsnotebook"]
