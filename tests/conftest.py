"""Shared fixtures: every test gets its own database and its own HOME.

Tests that take the ``db_url`` or ``hub`` fixture run twice: on a SQLite file under tmp_path, and
on PostgreSQL, where a server answers at ``DSNOTEBOOK_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test process (each pytest-xdist worker)
creates a database of its own on that server and drops it at the end, and each test starts with
an empty schema. Where no server
answers, the PostgreSQL cases skip with the reason; ``DSNOTEBOOK_REQUIRE_POSTGRES=1`` (set by CI)
turns that into a failure. ``@pytest.mark.sqlite_only`` keeps a test to SQLite, for what only
SQLite has (its file, pragmas and locks).

Nothing here ever touches the user's real home or default database.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import secrets
import threading
import time
import weakref

import pytest
from sqlalchemy import event
from sqlalchemy.pool import Pool
from testenv import BACKENDS, PG_SERVER

import dsnotebook as dsn
from dsnotebook import hub as hub_module
from dsnotebook._portal import get_portal
from dsnotebook.store.backends import _arrow_io
from dsnotebook.upload.handle import UploadTask
from dsnotebook.upload.service import DatasetUploadService


@pytest.fixture(autouse=True)
def _isolated_home(_no_leaks, tmp_path_factory, monkeypatch):
    """A private HOME and default URL, so nothing can reach ~/.dsnotebook."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DSNOTEBOOK_URL", f"sqlite+aiosqlite:///{home / 'default.db'}")
    yield home
    if hub_module._default is not None:
        hub_module._default.close(cancel=True)
        hub_module._default = None


def _describe(task: asyncio.Task) -> str:
    # The task's name, and where it waits: an unnamed helper task says nothing by its name alone.
    frames = task.get_stack(limit=None)
    where = f" at {frames[-1].f_code.co_qualname}:{frames[-1].f_lineno}" if frames else ""
    return f"{task.get_name()} ({getattr(task.get_coro(), '__qualname__', '?')}{where})"


def _portal_tasks(before: weakref.WeakSet[asyncio.Task] | None = None) -> weakref.WeakSet[asyncio.Task]:
    """The tasks on the portal loop, other than those in ``before``."""

    async def others():
        me = asyncio.current_task()
        return weakref.WeakSet(t for t in asyncio.all_tasks() if t is not me and (before is None or t not in before))

    return get_portal().run(others())


def _describe_all(tasks: weakref.WeakSet[asyncio.Task]) -> list[str]:
    async def described():
        return [_describe(t) for t in tasks]

    return get_portal().run(described())


def _worker_threads() -> set[threading.Thread]:
    # aiosqlite runs one thread per open connection; they must all be gone once a hub is closed.
    return {t for t in threading.enumerate() if t is not threading.main_thread() and t.name not in ("dsnotebook-portal", "tqdm_monitor")}


class _PoolErrors(logging.Handler):
    """Every ERROR the connection pools log: a connection whose reset (the rollback as it goes
    back) was cut short, or one left to the garbage collector."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_pool_errors = _PoolErrors()
logging.getLogger("sqlalchemy.pool").addHandler(_pool_errors)


class _UploadConnections:
    """Which connections each upload's work holds, so that once its ``wait()`` (or ``await``)
    returns, every one is known to be back in its pool, however the upload ended.

    The upload's work, its helper tasks included, runs in the context its task starts with:
    a context variable there names the upload, and the pools' checkout and checkin events
    keep the count. Its progress listeners run with the variable unset.
    """

    def __init__(self) -> None:
        self._upload: contextvars.ContextVar[str | None] = contextvars.ContextVar("upload under test", default=None)
        self._held: dict[int, str] = {}  # id(connection record) -> the upload that checked it out
        #: One line per upload whose wait() returned with connections still checked out.
        self.unreturned: list[str] = []
        event.listen(Pool, "checkout", self._checked_out)
        event.listen(Pool, "checkin", self._checked_in)
        run = DatasetUploadService._run

        @functools.wraps(run)
        async def named_run(service, session, handle, *args, **kwargs):
            self._upload.set(handle.id)
            return await run(service, session, handle, *args, **kwargs)

        outcome = UploadTask._outcome

        @functools.wraps(outcome)
        def checked_outcome(handle):
            held = sum(1 for upload in list(self._held.values()) if upload == handle.id)
            if held and handle.done():
                self.unreturned.append(
                    f"upload {handle.id} of {handle.dataset!r} ({handle.status}): {held} connection(s) "
                    "still checked out when its wait() returned"
                )
            return outcome(handle)

        emit = UploadTask._emit

        @functools.wraps(emit)
        def emit_outside(handle):
            # Progress listeners run on the upload's task, but what they start (a panel's
            # refresh, say) is theirs, not the upload's.
            token = self._upload.set(None)
            try:
                emit(handle)
            finally:
                self._upload.reset(token)

        DatasetUploadService._run = named_run
        UploadTask._outcome = checked_outcome
        UploadTask._emit = emit_outside

    def _checked_out(self, dbapi_connection, record, proxy) -> None:
        upload = self._upload.get()
        if upload is not None:
            self._held[id(record)] = upload

    def _checked_in(self, dbapi_connection, record) -> None:
        self._held.pop(id(record), None)


_upload_connections = _UploadConnections()


def _handoff_files() -> set[str]:
    # This process's hand-off files (Arrow data between the loop and the driver's connection).
    return set(os.listdir(_arrow_io.handoff_dir()))


@pytest.fixture(autouse=True)
def _no_leaks():
    """Fail a test that leaves tasks on the portal loop, driver threads or hand-off files behind,
    during which a connection pool logged an error, or in which an upload's wait() returned
    while a connection its work took was still checked out."""
    before = _worker_threads()
    # Only this test's tasks: one an earlier test left (and failed for) is not this test's.
    tasks_before = _portal_tasks()
    files_before = _handoff_files()
    pool_errors_before = len(_pool_errors.records)
    unreturned_before = len(_upload_connections.unreturned)
    yield
    pool_errors = _pool_errors.records[pool_errors_before:]
    if pool_errors:
        pytest.fail("the connection pool logged errors: " + "; ".join(r.getMessage() for r in pool_errors))
    unreturned = _upload_connections.unreturned[unreturned_before:]
    if unreturned:
        pytest.fail("; ".join(unreturned))
    deadline = time.monotonic() + 5
    while True:
        leaked_tasks = _portal_tasks(tasks_before)
        leaked_threads = {t for t in _worker_threads() - before if t.is_alive()}
        leaked_files = _handoff_files() - files_before
        if not leaked_tasks and not leaked_threads and not leaked_files:
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"leaked tasks {_describe_all(leaked_tasks)}, threads {sorted(t.name for t in leaked_threads)} "
                f"or hand-off files {sorted(leaked_files)}"
            )
        time.sleep(0.05)


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: the test is about SQLite itself; it does not run on PostgreSQL")
    config.addinivalue_line("markers", "postgresql_only: the test is about PostgreSQL itself (its native types)")


# The files that take longest, slowest first. pytest-xdist hands whole files to its workers in
# collection order: one of these left for the end would keep a worker busy long after the others
# have finished. (Measured with --durations=0; the rest keep their order.)
LONGEST_FIRST = (
    "tests/reliability/test_hostile_input.py",
    "tests/test_upload.py",
    "tests/test_exit_quiet.py",
    "tests/reliability/test_kill.py",
    "tests/reliability/test_load.py",
    "tests/reliability/test_cancel_every_await.py",
    "tests/reliability/test_close.py",
    "tests/test_pull_pieces.py",
    "tests/test_pandas_lines.py",
    "tests/test_hostile_manifests.py",
    "tests/widgets/test_panel.py",
    "tests/reliability/test_cancel_stages.py",
    "tests/test_lease.py",
    "tests/widgets/test_browser.py",
)


def pytest_collection_modifyitems(config, items):
    missing = [path for path in LONGEST_FIRST if not (config.rootpath / path).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py: LONGEST_FIRST names files that do not exist: {missing}")
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        only_postgresql = metafunc.definition.get_closest_marker("postgresql_only") is not None
        backends = [b for b in BACKENDS if (b == "sqlite" or not only_sqlite) and (b == "postgresql" or not only_postgresql)]
        if only_postgresql and not backends:
            reason = "DSNOTEBOOK_TEST_BACKENDS leaves PostgreSQL out"
            backends = [pytest.param("postgresql", marks=pytest.mark.skip(reason=reason))]
        metafunc.parametrize("backend", backends)


async def _pg_execute(database: str | None, *statements: str) -> None:
    import asyncpg

    dsn = PG_SERVER if database is None else PG_SERVER.rsplit("/", 1)[0] + "/" + database
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database():
    """A database of this test run's own on the PostgreSQL server, dropped at the end."""
    name = f"dsn_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_pg_execute(None, f'CREATE DATABASE "{name}"'))
    except (OSError, ImportError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - any failure means "no server here"
        reason = f"PostgreSQL does not answer at {PG_SERVER}: {type(exc).__name__}: {exc}"
        if os.environ.get("DSNOTEBOOK_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"DSNOTEBOOK_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    yield name
    asyncio.run(_pg_execute(None, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_url(backend, tmp_path, request) -> str:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
        return
    database = request.getfixturevalue("pg_database")
    server = PG_SERVER.split("://", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql+asyncpg://{server}/{database}"
    # The next test starts from an empty schema; a connection the test left open must not block that.
    asyncio.run(
        _pg_execute(
            database,
            "SET lock_timeout = '10s'",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            "DROP SCHEMA public CASCADE",
            "CREATE SCHEMA public",
        )
    )


@pytest.fixture
def hub(db_url):
    """A sync hub on a fresh SQLite file, closed (cancelling leftovers) after the test."""
    h = dsn.connect(db_url)
    yield h
    try:
        if not h.closed and not h.running():
            # Every upload and every read has closed its session: no connection is still checked out.
            checked_out = h._portal.run(_checked_out(h))
            assert checked_out == 0, f"{checked_out} database connection(s) left checked out"
    finally:
        # Closed whatever happened, so that one failure does not leave this hub's heartbeat on
        # the portal loop to fail every later test's leak check.
        h.close(cancel=True)


async def _checked_out(hub) -> int:
    # A just-finished task may still be returning its connection; give it a few turns of the loop.
    for _ in range(100):
        if hub._async.engine.pool.checkedout() == 0:
            return 0
        await asyncio.sleep(0.01)
    return hub._async.engine.pool.checkedout()
