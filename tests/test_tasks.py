"""Tests for dsnotebook.tasks: the background task service and its retry policy.

Every test runs against a real SQLite file through sqlite+aiosqlite, with real sessions. The
autouse ``guard`` fixture fails a test that leaves tasks behind or connections checked out, and
disposes of the engines the test made.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testenv import examples
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from dsnotebook.errors import HubClosed, UsageError, ValidationError
from dsnotebook.store.engine import WriteGate, write_transaction
from dsnotebook.tasks import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    BackgroundTaskService,
    RetryPolicy,
    TaskRecord,
    TaskStatus,
    is_transient,
)

INSERT = text("INSERT INTO items (task, i) VALUES (:task, :i)")


# -------------------- fixtures


@dataclass
class Guard:
    engines: list[AsyncEngine] = field(default_factory=list)


@pytest_asyncio.fixture(autouse=True)
async def guard() -> Any:
    """Fail the test if it leaked tasks or checked-out connections; dispose of its engines."""
    g = Guard()
    yield g
    problems: list[str] = []
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current]
    if leaked:
        problems.append(f"leaked tasks: {sorted(t.get_name() for t in leaked)}")
        for t in leaked:
            t.cancel()
        await asyncio.wait(leaked, timeout=5)
    for engine in g.engines:
        if engine.pool.checkedout():
            problems.append(f"{engine.pool.checkedout()} connection(s) still checked out of {engine.url}")
        await engine.dispose()
    if problems:
        pytest.fail("; ".join(problems))


@dataclass
class Db:
    path: Path
    engine: AsyncEngine
    maker: async_sessionmaker[AsyncSession]

    def count(self, task: str | None = None) -> int:
        """Count committed rows through a brand-new sqlite3 connection."""
        conn = sqlite3.connect(self.path)
        try:
            if task is None:
                return conn.execute("SELECT count(*) FROM items").fetchone()[0]
            return conn.execute("SELECT count(*) FROM items WHERE task = ?", (task,)).fetchone()[0]
        finally:
            conn.close()


@pytest_asyncio.fixture
async def make_db(guard: Guard, tmp_path: Path) -> Callable[..., Awaitable[Db]]:
    """Build a SQLite database file with an ``items`` table, and an engine the guard disposes of."""

    async def make(name: str = "tasks.db", **engine_kwargs: Any) -> Db:
        path = tmp_path / name
        # A counting pool on every SQLAlchemy: 2.0 gives aiosqlite files a NullPool by default.
        engine_kwargs.setdefault("poolclass", AsyncAdaptedQueuePool)
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}", **engine_kwargs)
        guard.engines.append(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS items ("
                    " task TEXT NOT NULL, i INTEGER NOT NULL, UNIQUE (task, i))"
                )
            )
        return Db(path, engine, async_sessionmaker(engine, expire_on_commit=False))

    return make


@pytest_asyncio.fixture
async def db(make_db: Callable[..., Awaitable[Db]]) -> Db:
    return await make_db()


# -------------------- helpers


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, polling the loop; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.002)


async def insert_rows(session: AsyncSession, task: str, n: int = 1, gate: asyncio.Event | None = None) -> int:
    if gate is not None:
        await gate.wait()
    await session.execute(INSERT, [{"task": task, "i": i} for i in range(n)])
    return n


def statuses(service: BackgroundTaskService) -> list[TaskStatus]:
    return [r.status for r in service.records()]


class TrackingSession(AsyncSession):
    """A real AsyncSession that remembers which of commit/rollback/close were called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    async def commit(self) -> None:
        self.calls.append("commit")
        await super().commit()

    async def rollback(self) -> None:
        self.calls.append("rollback")
        await super().rollback()

    async def close(self) -> None:
        self.calls.append("close")
        await super().close()


def tracking_factory(db: Db) -> tuple[Callable[[], TrackingSession], list[TrackingSession]]:
    maker = async_sessionmaker(db.engine, class_=TrackingSession, expire_on_commit=False)
    made: list[TrackingSession] = []

    def factory() -> TrackingSession:
        session = maker()
        made.append(session)
        return session

    return factory, made


# -------------------- tasks outliving the caller's session


@pytest.mark.asyncio
async def test_tasks_outlive_the_callers_session_block(db: Db) -> None:
    """The seed's scenario done right: the caller's block exits while 50 tasks are mid-flight."""
    n_tasks, n_rows = 50, 20
    service = BackgroundTaskService(db.maker)
    gate = asyncio.Event()
    arrived = 0
    all_arrived = asyncio.Event()

    async def upload(session: AsyncSession, key: str) -> int:
        nonlocal arrived
        arrived += 1
        if arrived == n_tasks:
            all_arrived.set()
        await gate.wait()
        await session.execute(INSERT, [{"task": key, "i": i} for i in range(n_rows)])
        return n_rows

    async with db.maker() as caller_db:
        await caller_db.execute(text("SELECT 1"))
        tasks = [
            service.create_task_with_session(upload, f"k{k}", task_name=f"seed-{k}") for k in range(n_tasks)
        ]
        # Every task is inside its own session, awaiting the gate, when the block exits.
        await all_arrived.wait()
    assert not any(t.done() for t in tasks)
    assert set(statuses(service)) == {TaskStatus.RUNNING}

    gate.set()
    results = await asyncio.gather(*tasks)
    assert results == [n_rows] * n_tasks
    assert db.count() == n_tasks * n_rows
    assert db.engine.pool.checkedout() == 0
    assert service.running() == []


@pytest.mark.asyncio
async def test_control_tasks_sharing_the_callers_session_lose_work(db: Db) -> None:
    """The seed's original pattern, kept as a control: it must error or lose rows.

    If the service ever shared the caller's session again, the seed test above would behave
    like this one.
    """
    n_tasks, n_rows = 50, 20
    gate = asyncio.Event()
    inserted = asyncio.Event()

    async def broken_upload(shared: AsyncSession, key: str) -> None:
        await shared.execute(INSERT, [{"task": key, "i": i} for i in range(n_rows)])
        inserted.set()
        await gate.wait()
        await shared.commit()

    async with db.maker() as caller_db:
        tasks = [asyncio.create_task(broken_upload(caller_db, f"k{k}")) for k in range(n_tasks)]
        await inserted.wait()
    assert not any(t.done() for t in tasks)

    gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    await caller_db.close()  # the shared session may have been reopened by the late tasks
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert errors or db.count() < n_tasks * n_rows


# -------------------- dropped handles


@dataclass
class Holder:
    event: asyncio.Event


@pytest.mark.asyncio
async def test_task_whose_handle_was_dropped_still_completes(db: Db) -> None:
    service = BackgroundTaskService(db.maker)
    waiting = asyncio.Event()

    async def job(session: AsyncSession, holder: Holder) -> None:
        waiting.set()
        await holder.event.wait()
        await session.execute(INSERT, {"task": "orphan", "i": 0})

    holder = Holder(asyncio.Event())
    holder_ref = weakref.ref(holder)
    task = service.create_task_with_session(job, holder, task_name="orphan")
    task_ref = weakref.ref(task)
    del task, holder  # from here on only the service's registry holds the task
    await waiting.wait()

    gc.collect()
    assert task_ref() is not None, "the task was garbage-collected mid-flight"
    assert service.running() == ["orphan"]

    live_holder = holder_ref()
    assert live_holder is not None
    live_holder.event.set()
    del live_holder
    await eventually(lambda: not service.running())
    assert db.count("orphan") == 1
    assert service.records() == []


@pytest.mark.asyncio
async def test_control_unreferenced_plain_task_is_garbage_collected() -> None:
    """Control for the test above: without a strong reference, asyncio loses the task."""
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context["message"]))
    try:
        effects: list[int] = []

        async def job(holder: Holder) -> None:
            await holder.event.wait()
            effects.append(1)

        holder = Holder(asyncio.Event())
        holder_ref = weakref.ref(holder)
        task_ref = weakref.ref(asyncio.create_task(job(holder)))
        del holder
        await asyncio.sleep(0)  # let the task start and block on the event
        gc.collect()
        assert task_ref() is None and holder_ref() is None
        assert effects == []
        assert any("destroyed but it is pending" in r for r in reports)
    finally:
        loop.set_exception_handler(previous)


# -------------------- commit / rollback / close


@pytest.mark.asyncio
async def test_success_commits_and_closes(db: Db) -> None:
    factory, made = tracking_factory(db)
    service = BackgroundTaskService(factory)
    task = service.create_task_with_session(insert_rows, "ok", 3, task_name="ok")
    record = service.record(task)
    assert record is not None and record.status is TaskStatus.QUEUED
    assert await task == 3

    assert db.count("ok") == 3
    assert [s.calls for s in made] == [["commit", "close"]]
    assert record.status is TaskStatus.SUCCEEDED and record.done
    assert record.attempts == 1 and record.error is None
    assert record.queued_at.tzinfo is timezone.utc
    assert record.started_at is not None and record.finished_at is not None
    assert record.queued_at <= record.started_at <= record.finished_at
    assert service.record(task) is None  # finished tasks leave the registry


async def _fail_in_func(session: AsyncSession) -> None:
    await session.execute(INSERT, {"task": "bad", "i": 0})
    raise ValueError("boom in func")


async def _fail_in_driver(session: AsyncSession) -> None:
    await session.execute(INSERT, {"task": "bad", "i": 0})
    await session.execute(INSERT, {"task": "bad", "i": 0})  # violates UNIQUE (task, i)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("func", "error_type"),
    [(_fail_in_func, ValueError), (_fail_in_driver, IntegrityError)],
    ids=["error-in-func", "driver-error"],
)
async def test_error_rolls_back_logs_and_reraises(
    db: Db, caplog: pytest.LogCaptureFixture, func: Any, error_type: type[Exception]
) -> None:
    factory, made = tracking_factory(db)
    service = BackgroundTaskService(factory)
    with caplog.at_level(logging.DEBUG, logger="dsnotebook"):
        task = service.create_task_with_session(func, task_name="doomed-task")
        record = service.record(task)
        with pytest.raises(error_type) as raised:
            await task

    assert db.count("bad") == 0
    assert [s.calls for s in made] == [["rollback", "close"]]
    assert record is not None and record.status is TaskStatus.FAILED
    assert record.error is raised.value
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "dsnotebook"
    assert "doomed-task" in errors[0].getMessage()
    assert errors[0].exc_info is not None and errors[0].exc_info[1] is raised.value


class CountingHandler(logging.Handler):
    """Keeps messages only: a stored record's exc_info would keep the failed task alive."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.levelno, record.getMessage()))


@pytest.mark.asyncio
async def test_failure_of_an_unawaited_task_is_reported_once(db: Db) -> None:
    """Logged by the service; asyncio's "exception was never retrieved" does not repeat it."""
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context["message"]))
    own_logger = logging.getLogger("test_tasks.own")
    own_logger.propagate = False
    handler = CountingHandler()
    own_logger.addHandler(handler)
    try:
        service = BackgroundTaskService(db.maker, logger=own_logger)
        task_ref = weakref.ref(service.create_task_with_session(_fail_in_func, task_name="fire-and-forget"))
        await eventually(lambda: not service.running())
        gc.collect()
        assert task_ref() is None  # collected, so asyncio would have complained by now
    finally:
        loop.set_exception_handler(previous)
        own_logger.removeHandler(handler)
    assert reports == []
    assert [(level, "fire-and-forget" in message) for level, message in handler.messages] == [(logging.ERROR, True)]


@pytest.mark.asyncio
async def test_commit_failure_is_rolled_back(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    """An error raised by commit itself (deferred constraint) is rolled back and re-raised."""
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        await conn.execute(
            text(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL "
                "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )

    async def orphan_child(session: AsyncSession) -> None:
        # Outside a transaction still (the driver begins one before the first DML), so it applies.
        await session.execute(text("PRAGMA foreign_keys = ON"))
        await session.execute(INSERT, {"task": "fk", "i": 0})
        await session.execute(text("INSERT INTO child (id, parent_id) VALUES (1, 42)"))

    factory, made = tracking_factory(db)
    service = BackgroundTaskService(factory)
    with caplog.at_level(logging.ERROR, logger="dsnotebook"):
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            await service.create_task_with_session(orphan_child, task_name="fk-task")
    assert made[0].calls == ["commit", "rollback", "close"]
    assert db.count("fk") == 0
    assert any("fk-task" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_non_async_func_fails_clearly(db: Db) -> None:
    service = BackgroundTaskService(db.maker)

    def not_async(session: AsyncSession) -> int:
        return 1

    with pytest.raises(TypeError, match="async function"):
        await service.create_task_with_session(not_async, task_name="sync")


# -------------------- cancellation


SLOW_QUERY = text(
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1500000) "
    "SELECT count(*) FROM c"
)


def assert_not_locked(path: Path) -> None:
    """Fail if some connection still holds SQLite's write lock on ``path``."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["awaiting-event", "mid-query"])
async def test_cancel_running_task_rolls_back_and_returns_connection(db: Db, where: str) -> None:
    factory, made = tracking_factory(db)
    service = BackgroundTaskService(factory, concurrency=1)
    in_flight = asyncio.Event()
    never = asyncio.Event()

    async def job(session: AsyncSession) -> None:
        await session.execute(INSERT, {"task": "cancelled", "i": 0})
        in_flight.set()
        if where == "mid-query":
            await session.execute(SLOW_QUERY)
        else:
            await never.wait()

    task = service.create_task_with_session(job, task_name="victim")
    record = service.record(task)
    await in_flight.wait()
    await asyncio.sleep(0.02)
    assert db.engine.pool.checkedout() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # Checked while the CancelledError is still held (by pytest.raises): holding it must not
    # keep the cancelled transaction's write lock alive.
    assert_not_locked(db.path)
    assert db.engine.pool.checkedout() == 0
    assert made[0].calls == ["rollback", "close"]
    assert db.count("cancelled") == 0
    assert record is not None and record.status is TaskStatus.CANCELLED and record.error is None
    # The slot came back: the next task runs.
    assert await service.create_task_with_session(insert_rows, "after", task_name="after") == 1


@pytest.mark.asyncio
async def test_cancel_turned_into_an_error_by_func_releases_the_lock_too(db: Db) -> None:
    """An upload job may translate its cancellation into an error of its own."""
    service = BackgroundTaskService(db.maker)
    in_flight = asyncio.Event()

    class JobCancelled(Exception):
        pass

    async def job(session: AsyncSession) -> None:
        await session.execute(INSERT, {"task": "translated", "i": 0})
        in_flight.set()
        try:
            await session.execute(SLOW_QUERY)
        except asyncio.CancelledError as exc:
            raise JobCancelled("stopped by the user") from exc

    task = service.create_task_with_session(job, task_name="translated")
    await in_flight.wait()
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(JobCancelled):
        await task
    assert_not_locked(db.path)
    assert db.engine.pool.checkedout() == 0
    assert db.count("translated") == 0


class SlowCloseSession(TrackingSession):
    """Takes a moment to close, so that a second cancel can land in the middle of it."""

    async def close(self) -> None:
        self.calls.append("close")
        await asyncio.sleep(0.02)
        await AsyncSession.close(self)
        self.calls.append("closed")


@pytest.mark.asyncio
async def test_cancelling_again_during_cleanup_does_not_cut_it_short(db: Db) -> None:
    maker = async_sessionmaker(db.engine, class_=SlowCloseSession)
    made: list[SlowCloseSession] = []

    def factory() -> SlowCloseSession:
        made.append(maker())
        return made[-1]

    service = BackgroundTaskService(factory)
    in_flight = asyncio.Event()

    async def job(session: AsyncSession) -> None:
        await session.execute(INSERT, {"task": "cancelled", "i": 0})
        in_flight.set()
        await asyncio.Event().wait()

    task = service.create_task_with_session(job, task_name="victim")
    await in_flight.wait()
    task.cancel()
    await eventually(lambda: made[0].calls == ["rollback", "close"])  # the task rolls back, starts closing...
    task.cancel()  # ...and is cancelled again while the close is under way
    await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert made[0].calls == ["rollback", "close", "closed"]
    assert db.engine.pool.checkedout() == 0
    assert db.count() == 0


@pytest.mark.asyncio
async def test_cancel_while_the_commit_hands_the_connection_back(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    """The pool resets a connection with a rollback as the commit hands it back. A cancel that
    lands in that rollback waits for it: the work is committed, the cancel is raised after it,
    and the connection is back in the pool, not half returned."""
    service = BackgroundTaskService(db.maker)
    task: asyncio.Task | None = None
    committed = asyncio.Event()

    def on_reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        # A reset with a rollback of its own comes only after the commit, as the session closes.
        if task is not None and not state.transaction_was_reset and not committed.is_set():
            committed.set()
            task.cancel()

    async def job(session: AsyncSession) -> None:
        await session.execute(INSERT, {"task": "late", "i": 0})

    event.listen(db.engine.pool, "reset", on_reset)
    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            task = service.create_task_with_session(job, task_name="late")
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        event.remove(db.engine.pool, "reset", on_reset)
    assert committed.is_set(), "the commit never handed its connection back"
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy.pool")] == []
    assert db.engine.pool.checkedout() == 0
    assert db.count("late") == 1


@pytest.mark.asyncio
async def test_a_write_transaction_cancelled_as_it_hands_the_connection_back(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    """The hub's own write transactions (heartbeats, the ends of uploads) follow the same rule."""
    cancelled = False

    def on_reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        nonlocal cancelled
        if not state.transaction_was_reset and not cancelled:
            cancelled = True
            writer.cancel()

    async def write() -> None:
        async with write_transaction(db.maker, WriteGate(exclusive=True)) as session:
            await session.execute(INSERT, {"task": "beat", "i": 0})

    event.listen(db.engine.pool, "reset", on_reset)
    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            writer = asyncio.ensure_future(write())
            with pytest.raises(asyncio.CancelledError):
                await writer
    finally:
        event.remove(db.engine.pool, "reset", on_reset)
    assert cancelled, "the commit never handed its connection back"
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy.pool")] == []
    assert db.engine.pool.checkedout() == 0
    assert db.count("beat") == 1


@pytest.mark.asyncio
async def test_cancel_is_not_logged_as_error(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    service = BackgroundTaskService(db.maker)
    with caplog.at_level(logging.DEBUG, logger="dsnotebook"):
        task = service.create_task_with_session(insert_rows, "x", 1, asyncio.Event(), task_name="quiet")
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.asyncio
async def test_cancel_queued_task_takes_no_slot_and_next_waiter_runs(db: Db) -> None:
    service = BackgroundTaskService(db.maker, concurrency=1)
    gate = asyncio.Event()
    first = service.create_task_with_session(insert_rows, "first", 1, gate, task_name="first")
    await eventually(lambda: statuses(service) == [TaskStatus.RUNNING])
    second = service.create_task_with_session(insert_rows, "second", task_name="second")
    third = service.create_task_with_session(insert_rows, "third", task_name="third")
    await asyncio.sleep(0.01)
    second_record = service.record(second)

    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert second_record is not None
    assert second_record.status is TaskStatus.CANCELLED
    assert second_record.started_at is None and second_record.attempts == 0
    # Cancelling a waiter released nothing: the first task still holds the only slot.
    await asyncio.sleep(0.01)
    assert statuses(service) == [TaskStatus.RUNNING, TaskStatus.QUEUED]

    gate.set()
    assert await first == 1 and await third == 1
    assert (db.count("first"), db.count("second"), db.count("third")) == (1, 0, 1)


@pytest.mark.asyncio
async def test_cancel_right_after_a_slot_was_granted_passes_it_on(db: Db) -> None:
    """A waiter cancelled between being granted a slot and resuming must hand the slot on."""
    service = BackgroundTaskService(db.maker, concurrency=1)
    gate = asyncio.Event()
    holder = service.create_task_with_session(insert_rows, "holder", 1, gate, task_name="holder")
    await eventually(lambda: statuses(service) == [TaskStatus.RUNNING])
    granted = service.create_task_with_session(insert_rows, "granted", task_name="granted", priority=1)
    waiting = service.create_task_with_session(insert_rows, "waiting", 1, gate, task_name="waiting")
    await asyncio.sleep(0.01)

    service.concurrency = 2  # grants the one free slot to "granted" (higher priority)...
    granted.cancel()  # ...which is cancelled before it can resume
    with pytest.raises(asyncio.CancelledError):
        await granted
    await eventually(lambda: statuses(service) == [TaskStatus.RUNNING, TaskStatus.RUNNING])
    gate.set()
    assert await holder == 1 and await waiting == 1
    assert db.count("granted") == 0


@pytest.mark.asyncio
async def test_cancel_before_first_step(db: Db) -> None:
    service = BackgroundTaskService(db.maker)
    task = service.create_task_with_session(insert_rows, "never", task_name="never")
    record = service.record(task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert record is not None and record.status is TaskStatus.CANCELLED
    assert record.finished_at is not None and record.started_at is None
    assert service.running() == []
    assert db.count() == 0


# -------------------- slots


@pytest.mark.asyncio
async def test_waiting_tasks_start_by_priority_then_fifo(db: Db) -> None:
    service = BackgroundTaskService(db.maker, concurrency=1)
    gate = asyncio.Event()
    started: list[str] = []

    async def job(session: AsyncSession, name: str) -> None:
        started.append(name)
        if name == "blocker":
            await gate.wait()
        await session.execute(INSERT, {"task": name, "i": 0})

    blocker = service.create_task_with_session(job, "blocker", task_name="blocker", priority=-100)
    await eventually(lambda: started == ["blocker"])
    priorities = [0, 5, 1, 5, 3, 0, 5, -2, 3]
    tasks = [
        service.create_task_with_session(job, f"p{p}-{i}", task_name=f"p{p}-{i}", priority=p)
        for i, p in enumerate(priorities)
    ]
    await asyncio.sleep(0.01)
    assert statuses(service).count(TaskStatus.QUEUED) == len(priorities)

    gate.set()
    await asyncio.gather(blocker, *tasks)
    expected = [f"p{p}-{i}" for i, p in sorted(enumerate(priorities), key=lambda ip: (-ip[1], ip[0]))]
    assert started == ["blocker", *expected]


@pytest.mark.asyncio
async def test_concurrency_limit_is_respected_and_can_be_raised(db: Db) -> None:
    service = BackgroundTaskService(db.maker, concurrency=2)
    gate = asyncio.Event()
    running = peak = 0

    async def job(session: AsyncSession, key: str) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await gate.wait()
            await session.execute(INSERT, {"task": key, "i": 0})
        finally:
            running -= 1

    tasks = [service.create_task_with_session(job, f"c{i}", task_name=f"c{i}") for i in range(6)]
    await eventually(lambda: running == 2)
    await asyncio.sleep(0.02)
    assert running == 2
    assert statuses(service) == [TaskStatus.RUNNING] * 2 + [TaskStatus.QUEUED] * 4

    service.concurrency = 4
    assert service.concurrency == 4
    await eventually(lambda: running == 4)
    await asyncio.sleep(0.02)
    assert running == 4 and peak == 4

    gate.set()
    await asyncio.gather(*tasks)
    assert peak == 4
    assert db.count() == 6


@pytest.mark.asyncio
async def test_lowering_concurrency_holds_new_starts(db: Db) -> None:
    service = BackgroundTaskService(db.maker, concurrency=3)
    gates = {f"l{i}": asyncio.Event() for i in range(5)}
    tasks = {
        key: service.create_task_with_session(insert_rows, key, 1, gate, task_name=key) for key, gate in gates.items()
    }
    await eventually(lambda: statuses(service).count(TaskStatus.RUNNING) == 3)
    service.concurrency = 1
    for key in ("l0", "l1"):
        gates[key].set()
        await tasks[key]
    # Two finished, but one is still running, which is the new limit: nothing new starts.
    await asyncio.sleep(0.02)
    assert statuses(service) == [TaskStatus.RUNNING, TaskStatus.QUEUED, TaskStatus.QUEUED]
    for gate in gates.values():
        gate.set()
    await asyncio.gather(*tasks.values())
    assert db.count() == 5


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"], ids=["zero", "negative", "float", "bool", "str"])
def test_bad_concurrency_is_rejected(bad: Any) -> None:
    factory = async_sessionmaker()
    with pytest.raises(ValidationError, match="concurrency"):
        BackgroundTaskService(factory, concurrency=bad)
    service = BackgroundTaskService(factory, concurrency=None)
    with pytest.raises(ValidationError, match="concurrency"):
        service.concurrency = bad
    assert service.concurrency is None


# -------------------- retries


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


@pytest.mark.asyncio
async def test_retry_gets_past_a_real_database_lock(make_db: Callable[..., Awaitable[Db]]) -> None:
    db = await make_db(connect_args={"timeout": 0.05})
    factory, made = tracking_factory(db)
    service = BackgroundTaskService(factory)
    blocker = _hold_write_lock(db.path)
    loop = asyncio.get_running_loop()
    loop.call_later(0.25, blocker.commit)
    try:
        policy = RetryPolicy(attempts=30, base_delay=0.02, max_delay=0.1)
        task = service.create_task_with_session(insert_rows, "locked", task_name="locked", retry=policy)
        record = service.record(task)
        assert await task == 1
    finally:
        blocker.close()
    assert record is not None and record.attempts > 1
    assert record.status is TaskStatus.SUCCEEDED
    assert len(made) == record.attempts  # a fresh session for every attempt
    assert all(s.calls[-1] == "close" for s in made)
    assert db.count("locked") == 1


@pytest.mark.asyncio
async def test_without_retry_a_database_lock_fails(make_db: Callable[..., Awaitable[Db]]) -> None:
    db = await make_db(connect_args={"timeout": 0.05})
    service = BackgroundTaskService(db.maker)
    blocker = _hold_write_lock(db.path)
    try:
        task = service.create_task_with_session(insert_rows, "locked", task_name="locked")
        record = service.record(task)
        with pytest.raises(OperationalError, match="database is locked") as raised:
            await task
    finally:
        blocker.close()
    assert is_transient(raised.value)
    assert record is not None and record.attempts == 1 and record.status is TaskStatus.FAILED


@pytest.mark.asyncio
async def test_non_transient_error_is_not_retried(db: Db) -> None:
    service = BackgroundTaskService(db.maker)
    calls = 0

    async def job(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        raise KeyError("not transient")

    task = service.create_task_with_session(job, task_name="once", retry=RetryPolicy(base_delay=0.001))
    record = service.record(task)
    with pytest.raises(KeyError):
        await task
    assert calls == 1 and record is not None and record.attempts == 1


@pytest.mark.asyncio
async def test_failed_attempts_are_rolled_back_before_the_retry(db: Db) -> None:
    service = BackgroundTaskService(db.maker)
    policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002, retry_on=lambda e: isinstance(e, ValueError))
    sessions: list[AsyncSession] = []

    async def flaky(session: AsyncSession) -> str:
        sessions.append(session)
        await session.execute(INSERT, {"task": "flaky", "i": len(sessions)})
        if len(sessions) < 3:
            raise ValueError("try again")
        return "done"

    assert await service.create_task_with_session(flaky, task_name="flaky", retry=policy) == "done"
    assert len(set(map(id, sessions))) == 3
    assert db.count("flaky") == 1


@pytest.mark.asyncio
async def test_retries_stop_at_the_attempt_limit(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    service = BackgroundTaskService(db.maker)
    policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002, retry_on=lambda e: True)

    async def always_fails(session: AsyncSession) -> None:
        raise RuntimeError("still broken")

    with caplog.at_level(logging.WARNING, logger="dsnotebook"):
        task = service.create_task_with_session(always_fails, task_name="stubborn", retry=policy)
        record = service.record(task)
        with pytest.raises(RuntimeError):
            await task
    assert record is not None and record.attempts == 3
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING, logging.ERROR]


def _sqlalchemy_wrap(orig: BaseException, **kwargs: Any) -> DBAPIError:
    return DBAPIError.instance("SELECT 1", {}, orig, sqlite3.Error, **kwargs)


def _caused_by(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def _asyncpg_error(name: str) -> BaseException:
    exceptions = pytest.importorskip("asyncpg.exceptions")
    return getattr(exceptions, name)("connection lost")


@pytest.mark.parametrize(
    ("make_exc", "expected"),
    [
        (lambda: sqlite3.OperationalError("database is locked"), True),
        (lambda: sqlite3.OperationalError("database table is locked"), True),
        (lambda: _sqlalchemy_wrap(sqlite3.OperationalError("database is locked")), True),
        (lambda: _caused_by(RuntimeError("upload failed"), sqlite3.OperationalError("database is busy")), True),
        (lambda: DisconnectionError("gone"), True),
        (lambda: _sqlalchemy_wrap(sqlite3.DatabaseError("server closed"), connection_invalidated=True), True),
        (lambda: ConnectionResetError(), True),
        (lambda: BrokenPipeError(), True),
        (lambda: ConnectionAbortedError(), True),
        (lambda: _asyncpg_error("ConnectionDoesNotExistError"), True),
        (lambda: _caused_by(RuntimeError("x"), _asyncpg_error("ConnectionFailureError")), True),
        (lambda: sqlite3.OperationalError("no such table: items"), False),
        (lambda: _sqlalchemy_wrap(sqlite3.IntegrityError("UNIQUE constraint failed")), False),
        (
            lambda: DBAPIError.instance(
                "SELECT 'database is locked'", {}, sqlite3.IntegrityError("UNIQUE"), sqlite3.Error
            ),
            False,
        ),
        (lambda: ValueError("database is locked"), False),
        (lambda: asyncio.CancelledError(), False),
        (lambda: KeyError("x"), False),
    ],
    ids=[
        "sqlite-locked",
        "sqlite-table-locked",
        "sqlalchemy-wrapped-locked",
        "locked-in-cause-chain",
        "disconnection",
        "connection-invalidated",
        "connection-reset",
        "broken-pipe",
        "connection-aborted",
        "asyncpg-connection-gone",
        "asyncpg-in-cause-chain",
        "sqlite-other-operational",
        "integrity",
        "lock-phrase-only-in-sql-text",
        "lock-message-on-non-db-error",
        "cancelled",
        "unrelated",
    ],
)
def test_is_transient(make_exc: Callable[[], BaseException], expected: bool) -> None:
    assert is_transient(make_exc()) is expected


def test_is_transient_ignores_implicit_context_and_survives_cycles() -> None:
    try:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError:
            raise ValueError("a different failure while handling it")  # noqa: B904
    except ValueError as exc:
        assert not is_transient(exc)
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert not is_transient(a)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.floats(min_value=0, max_value=10, allow_nan=False),
    extra=st.floats(min_value=0, max_value=100, allow_nan=False),
    attempt=st.integers(min_value=1, max_value=10_000),
)
def test_retry_delay_stays_within_bounds(base: float, extra: float, attempt: int) -> None:
    policy = RetryPolicy(base_delay=base, max_delay=base + extra)
    assert 0 <= policy.delay(attempt) <= policy.max_delay


def test_retry_delay_grows_until_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=1.0)
    for _ in range(50):
        delays = [policy.delay(n) for n in range(1, 12)]
        # Equal jitter: each delay lies in [cap/2, cap] and the cap doubles, so delays never shrink
        # while below the cap...
        assert delays[:7] == sorted(delays[:7])
        assert 0.005 <= delays[0] <= 0.01
        # ...and once capped they stay within [max_delay/2, max_delay].
        assert all(0.5 <= d <= 1.0 for d in delays[7:])


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"base_delay": -0.1}, "base_delay"),
        ({"base_delay": float("nan")}, "base_delay"),
        ({"max_delay": float("inf")}, "max_delay"),
        ({"base_delay": 3.0, "max_delay": 1.0}, "max_delay"),
        ({"retry_on": "yes"}, "retry_on"),
    ],
    ids=["zero-attempts", "float-attempts", "bool-attempts", "negative-base", "nan-base", "inf-max", "max-below-base", "retry-on-not-callable"],
)
def test_retry_policy_rejects_bad_arguments(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValidationError, match=argument):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize("attempt", [0, -1, 1.0], ids=["zero", "negative", "float"])
def test_retry_delay_rejects_bad_attempt(attempt: Any) -> None:
    with pytest.raises(ValidationError, match="attempt"):
        RetryPolicy().delay(attempt)


def test_retry_policy_never_retries_cancellation() -> None:
    policy = RetryPolicy(retry_on=lambda e: True)
    assert policy.retryable(RuntimeError(), 1)
    assert not policy.retryable(asyncio.CancelledError(), 1)
    assert not policy.retryable(RuntimeError(), policy.attempts)


# -------------------- registry and shutdown


@pytest.mark.asyncio
async def test_running_and_records_list_live_tasks_in_creation_order(db: Db) -> None:
    service = BackgroundTaskService(db.maker, concurrency=1)
    gate = asyncio.Event()
    names = ["zeta", "alpha", "mid"]
    tasks = [service.create_task_with_session(insert_rows, n, 1, gate, task_name=n) for n in names]
    await eventually(lambda: TaskStatus.RUNNING in statuses(service))
    assert service.running() == names
    records = service.records()
    assert [r.name for r in records] == names
    assert all(isinstance(r, TaskRecord) for r in records)
    assert [r.task for r in records] == tasks
    assert service.record("alpha") is records[1]
    assert service.record(tasks[2]) is records[2]
    assert {r.status for r in records} <= ACTIVE_STATUSES
    gate.set()
    await asyncio.gather(*tasks)
    assert service.running() == [] and service.records() == []
    assert {r.status for r in records} == {TaskStatus.SUCCEEDED}
    assert TaskStatus.SUCCEEDED in TERMINAL_STATUSES and not TERMINAL_STATUSES & ACTIVE_STATUSES


@pytest.mark.asyncio
async def test_shutdown_waits_for_tasks_and_then_refuses_new_ones(db: Db) -> None:
    service = BackgroundTaskService(db.maker, concurrency=2)
    gate = asyncio.Event()
    good = [service.create_task_with_session(insert_rows, f"s{i}", 1, gate, task_name=f"s{i}") for i in range(3)]

    async def bad(session: AsyncSession) -> None:
        await gate.wait()
        raise RuntimeError("failure stays with the task")

    failing = service.create_task_with_session(bad, task_name="bad")
    stopper = asyncio.create_task(service.shutdown())
    await asyncio.sleep(0.02)
    assert not stopper.done() and service.closed
    with pytest.raises(HubClosed):
        service.create_task_with_session(insert_rows, "late", task_name="late")

    gate.set()
    await stopper  # does not raise the failing task's error
    assert all(t.done() for t in [*good, failing])
    assert db.count() == 3
    assert isinstance(failing.exception(), RuntimeError)
    await service.shutdown()  # idempotent


@pytest.mark.asyncio
async def test_shutdown_cancel_cancels_live_tasks(db: Db) -> None:
    service = BackgroundTaskService(db.maker, concurrency=1)
    never = asyncio.Event()
    tasks = [service.create_task_with_session(insert_rows, f"x{i}", 1, never, task_name=f"x{i}") for i in range(3)]
    records = service.records()
    await eventually(lambda: TaskStatus.RUNNING in statuses(service))
    await service.shutdown(cancel=True)
    assert all(t.cancelled() for t in tasks)
    assert [r.status for r in records] == [TaskStatus.CANCELLED] * 3
    assert service.running() == []
    with pytest.raises(HubClosed):
        service.create_task_with_session(insert_rows, "late")


@pytest.mark.asyncio
async def test_shutdown_timeout_cancels_stragglers(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    service = BackgroundTaskService(db.maker)
    in_flight = asyncio.Event()

    async def slow(session: AsyncSession) -> None:
        await session.execute(INSERT, {"task": "slow", "i": 0})
        in_flight.set()
        await asyncio.Event().wait()

    task = service.create_task_with_session(slow, task_name="slow")
    await in_flight.wait()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="dsnotebook"):
        await service.shutdown(timeout=0.05)
    assert loop.time() - started < 1.0  # bounded: it does not wait for the cancelled task
    assert any("slow" in r.getMessage() for r in caplog.records)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db.engine.pool.checkedout() == 0 and db.count("slow") == 0
    with pytest.raises(ValidationError, match="timeout"):
        await service.shutdown(timeout=-1)


# -------------------- usage


def test_create_without_running_loop_is_a_usage_error() -> None:
    service = BackgroundTaskService(async_sessionmaker())
    with pytest.raises(UsageError, match="running event loop"):
        service.create_task_with_session(insert_rows, "x")
    assert service.running() == []


@pytest.mark.asyncio
async def test_reserved_keywords_are_not_passed_to_func(db: Db) -> None:
    service = BackgroundTaskService(db.maker)
    seen: dict[str, Any] = {}

    async def job(session: AsyncSession, *args: Any, **kwargs: Any) -> None:
        seen["session"] = session
        seen["args"] = args
        seen["kwargs"] = kwargs

    await service.create_task_with_session(
        job, 1, 2, task_name="kw", priority=3, retry=RetryPolicy(), name="kept", chunk_size=10
    )
    assert isinstance(seen["session"], AsyncSession)
    assert seen["args"] == (1, 2)
    assert seen["kwargs"] == {"name": "kept", "chunk_size": 10}


@pytest.mark.asyncio
async def test_task_names(db: Db) -> None:
    service = BackgroundTaskService(db.maker)
    gate = asyncio.Event()
    first = service.create_task_with_session(insert_rows, "a", 1, gate)
    assert first.get_name() == "insert_rows-1"
    # An explicit name that looks like the next default one pushes the default along.
    taken = service.create_task_with_session(insert_rows, "b", 1, gate, task_name="insert_rows-3")
    third = service.create_task_with_session(insert_rows, "c", 1, gate)
    assert third.get_name() not in {"insert_rows-1", "insert_rows-3"}
    with pytest.raises(ValidationError, match="already used"):
        service.create_task_with_session(insert_rows, "d", task_name="insert_rows-3")
    for bad in ("", 5):
        with pytest.raises(ValidationError, match="task_name"):
            service.create_task_with_session(insert_rows, "d", task_name=bad)
    with pytest.raises(ValidationError, match="priority"):
        service.create_task_with_session(insert_rows, "d", priority=1.5)
    with pytest.raises(ValidationError, match="retry"):
        service.create_task_with_session(insert_rows, "d", retry=3)
    gate.set()
    await asyncio.gather(first, taken, third)
    # Once a task has ended, its name is free again.
    assert await service.create_task_with_session(insert_rows, "e", task_name="insert_rows-3") == 1


@pytest.mark.asyncio
async def test_run_to_completion_finishes_the_cleanup_and_keeps_the_cancel() -> None:
    from dsnotebook.tasks import run_to_completion

    steps: list[str] = []
    release = asyncio.Event()

    async def cleanup(fail: bool) -> None:
        steps.append("started")
        await release.wait()
        steps.append("finished")
        if fail:
            raise RuntimeError("cleanup failed")

    for fail in (False, True):
        steps.clear()
        release.clear()
        outer = asyncio.ensure_future(run_to_completion(cleanup(fail)))
        await asyncio.sleep(0)
        outer.cancel()
        await asyncio.sleep(0)
        assert not outer.done()  # still waiting for the cleanup
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert steps == ["started", "finished"]
