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
    h.close(cancel=True)
