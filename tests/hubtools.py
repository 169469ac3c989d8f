"""Helpers for tests that drive a real hub: hold its upload slot, make the database refuse writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterator

import sqlalchemy as sa


def sqlite_path(hub) -> str:
    return hub.url.database


def occupy_the_slot(hub) -> Callable[[], None]:
    """Start tasks that hold all of the hub's upload slots until the returned function is called.

    Uploads pushed meanwhile stay queued, whatever the backend's concurrency.
    """

    async def start():
        event = asyncio.Event()

        async def hold(_session):
            await event.wait()

        holders = [
            hub.task_service.create_task_with_session(hold, task_name=f"hold slot {i}")
            for i in range(hub._async._concurrency)
        ]
        while any(hub.task_service.record(task).started_at is None for task in holders):
            await asyncio.sleep(0.001)
        return event

    event = hub._portal.run(start())

    def release():
        hub._portal.loop.call_soon_threadsafe(event.set)

    return release


def execute(hub, *statements: str) -> list:
    """Run SQL statements on the hub's own database, in one transaction; returns the last one's rows."""

    async def run() -> list:
        async with hub._async.engine.begin() as conn:
            result = None
            for statement in statements:
                result = await conn.exec_driver_sql(statement)
            return result.all() if result is not None and result.returns_rows else []

    return hub._portal.run(run())


def execute_on(url: str, *statements: str) -> None:
    """Run SQL statements on the database at ``url`` without opening a hub (which would act on it)."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    async def run() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.exec_driver_sql(statement)
        finally:
            await engine.dispose()

    asyncio.run(run())


def staging_tables(hub) -> list[str]:
    """The staging tables left in the hub's database."""

    async def run() -> list[str]:
        async with hub._async.engine.connect() as conn:
            names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        return [n for n in names if n.startswith("dsn_stage_")]

    return hub._portal.run(run())


def table_and_view_names(hub) -> set[str]:
    """Every table and view in the hub's database."""

    async def run() -> set[str]:
        async with hub._async.engine.connect() as conn:
            return await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()) | set(sa.inspect(sync).get_view_names()))

    return hub._portal.run(run())


def refuse_progress_beyond(hub, rows: int, message: str = "simulated storage failure") -> Callable[[], None]:
    """Make the database abort any upload once it reports ``rows`` rows done; returns the undo."""
    if hub.url.get_backend_name() == "sqlite":
        execute(
            hub,
            f"CREATE TRIGGER refuse_progress BEFORE UPDATE OF rows_done ON dsn_tasks WHEN NEW.rows_done >= {int(rows)} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
        )
        return lambda: execute(hub, "DROP TRIGGER refuse_progress")
    execute(
        hub,
        "CREATE FUNCTION refuse_progress() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.rows_done >= {int(rows)} THEN RAISE EXCEPTION '{message}'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse_progress BEFORE UPDATE OF rows_done ON dsn_tasks FOR EACH ROW EXECUTE FUNCTION refuse_progress()",
    )
    return lambda: execute(hub, "DROP TRIGGER refuse_progress ON dsn_tasks", "DROP FUNCTION refuse_progress()")


def wait_until(predicate: Callable[[], bool], timeout: float = 120, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def kept_stages(hub) -> dict[str, int]:
    """The staging tables kept for resuming interrupted uploads, with the rows each task committed."""
    frame = hub.tasks(status="interrupted")
    return {r.staging_table: int(r.rows_done) for r in frame.itertuples() if isinstance(r.staging_table, str)}


def record_written_rows(hub, table: str) -> Callable[[], list[int]]:
    """Log, by a trigger in the database itself, the row id of every row written to ``table``
    (the trigger follows the table through renames); returns a function that reads the log.

    This counts what reaches the database, independently of the engine's own progress numbers.
    """
    row_id = '"__dsn_row"'
    if hub.url.get_backend_name() == "sqlite":
        execute(
            hub,
            "CREATE TABLE written_rows (id INTEGER)",
            f'CREATE TRIGGER log_written AFTER INSERT ON "{table}" BEGIN INSERT INTO written_rows VALUES (NEW.{row_id}); END',
        )
    else:
        execute(
            hub,
            "CREATE TABLE written_rows (id BIGINT)",
            "CREATE FUNCTION log_written() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"INSERT INTO written_rows SELECT {row_id} FROM inserted; RETURN NULL; END $$",
            f'CREATE TRIGGER log_written AFTER INSERT ON "{table}" REFERENCING NEW TABLE AS inserted '
            "FOR EACH STATEMENT EXECUTE FUNCTION log_written()",
        )
    return lambda: sorted(r[0] for r in execute(hub, "SELECT id FROM written_rows"))


def file_mode(path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def usual_umask() -> Iterator[None]:
    """The usual umask (new files 0644, directories 0755) while the block runs, whatever the test
    runner's is."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)
