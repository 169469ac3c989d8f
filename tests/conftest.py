"""Shared fixtures: every test gets its own database and its own HOME.

Tests that take the ``db_url`` or ``hub`` fixture run twice: on a SQLite file under tmp_path, and
on PostgreSQL, where a server answers at ``DSNOTEBOOK_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test run creates a database of its own on
that server and drops it at the end, and each test starts with an empty schema. Where no server
answers, the PostgreSQL cases skip with the reason; ``DSNOTEBOOK_REQUIRE_POSTGRES=1`` (set by CI)
turns that into a failure. ``@pytest.mark.sqlite_only`` keeps a test to SQLite, for what only
SQLite has (its file, pragmas and locks).

Nothing here ever touches the user's real home or default database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time

import pytest
from testenv import BACKENDS, PG_SERVER

import dsnotebook as dsn
from dsnotebook import hub as hub_module
from dsnotebook._portal import get_portal


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


def _portal_tasks() -> list[str]:
    async def others():
        me = asyncio.current_task()
        return [t.get_name() for t in asyncio.all_tasks() if t is not me]

    return get_portal().run(others())


def _worker_threads() -> set[threading.Thread]:
    # aiosqlite runs one thread per open connection; they must all be gone once a hub is closed.
    return {t for t in threading.enumerate() if t is not threading.main_thread() and t.name not in ("dsnotebook-portal", "tqdm_monitor")}


@pytest.fixture(autouse=True)
def _no_leaks():
    """Fail a test that leaves tasks on the portal loop or driver threads behind."""
    before = _worker_threads()
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked_tasks = _portal_tasks()
        leaked_threads = {t for t in _worker_threads() - before if t.is_alive()}
        if not leaked_tasks and not leaked_threads:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"leaked tasks {leaked_tasks} or threads {sorted(t.name for t in leaked_threads)}")
        time.sleep(0.05)




def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: the test is about SQLite itself; it does not run on PostgreSQL")
    config.addinivalue_line("markers", "postgresql_only: the test is about PostgreSQL itself (its native types)")


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
