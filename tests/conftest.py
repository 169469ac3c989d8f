"""Shared fixtures: every test gets its own SQLite file under tmp_path and its own HOME.

Nothing here ever touches the user's real home or default database.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

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


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def hub(db_url):
    """A sync hub on a fresh SQLite file, closed (cancelling leftovers) after the test."""
    h = dsn.connect(db_url)
    yield h
    if not h.closed and not h.running():
        # Every upload and every read has closed its session: no connection is still checked out.
        checked_out = h._portal.run(_checked_out(h))
        assert checked_out == 0, f"{checked_out} database connection(s) left checked out"
    h.close(cancel=True)


async def _checked_out(hub) -> int:
    # A just-finished task may still be returning its connection; give it a few turns of the loop.
    for _ in range(100):
        if hub._async.engine.pool.checkedout() == 0:
            return 0
        await asyncio.sleep(0.01)
    return hub._async.engine.pool.checkedout()
