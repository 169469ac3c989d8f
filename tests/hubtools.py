"""Helpers for tests that drive a real hub: hold its upload slot, make the database refuse writes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable


def sqlite_path(hub) -> str:
    return hub.url.database


def occupy_the_slot(hub) -> Callable[[], None]:
    """Start a task that holds the hub's only upload slot until the returned function is called."""

    async def start():
        event = asyncio.Event()

        async def hold(_session):
            await event.wait()

        task = hub.task_service.create_task_with_session(hold, task_name="hold the slot")
        while hub.task_service.record(task).started_at is None:
            await asyncio.sleep(0.001)
        return event, task

    event, task = hub._portal.run(start())

    def release():
        hub._portal.loop.call_soon_threadsafe(event.set)

    return release


def refuse_progress_beyond(hub, rows: int, message: str = "simulated storage failure") -> Callable[[], None]:
    """Make the database abort any upload once it reports ``rows`` rows done; returns the undo."""
    con = sqlite3.connect(sqlite_path(hub))
    con.execute(
        f"CREATE TRIGGER refuse_progress BEFORE UPDATE OF rows_done ON dsn_tasks WHEN NEW.rows_done >= {int(rows)} "
        f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
    )
    con.commit()
    con.close()

    def undo() -> None:
        con = sqlite3.connect(sqlite_path(hub))
        con.execute("DROP TRIGGER refuse_progress")
        con.commit()
        con.close()

    return undo


def wait_until(predicate: Callable[[], bool], timeout: float = 30, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
