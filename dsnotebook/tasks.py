"""Background tasks that each own their database session.

:class:`BackgroundTaskService` runs ``func(session, *args, **kwargs)`` as an :class:`asyncio.Task`
and gives every run a session of its own::

    service = BackgroundTaskService(async_sessionmaker(engine), concurrency=4)
    task = service.create_task_with_session(upload_job, frame, task_name="sales", priority=1)
    result = await task

Why this exists: scheduling a task inside ``async with sessionmaker() as db:`` and handing it
``db`` lets the task outlive the session. When the block exits, the session is closed under the
task's feet: ``IllegalStateChangeError``, "session is provisioning a new connection", or, worst of
all, the task's open transaction is rolled back with no error anywhere. Here the session is opened
*inside* the task, after it has a slot, and is committed, rolled back and closed there.

What the service guarantees for each task:

- **A fresh session per attempt**, from the ``session_factory`` it was given. On success the
  session is committed; on any error, cancellation included, it is rolled back; it is always
  closed. The commit, rollback and close run to completion even if the task is cancelled while
  they are under way, so no connection is left checked out of the pool; a cancel that arrives
  during the commit is raised once the commit has ended (the work is committed then).
- **A strong reference until the task ends.** asyncio itself keeps only weak references to
  tasks, so a task whose handle the caller dropped could be garbage-collected mid-flight. The
  service's registry holds each task until its done callback removes it.
- **A concurrency limit with priorities.** Higher ``priority`` starts first and equal priorities
  start in creation order. A task cancelled while it waits never takes or leaks a slot.
- **Opt-in retries** (:class:`~dsnotebook.retry.RetryPolicy`) for transient errors
  (:func:`~dsnotebook.retry.is_transient`, both also importable from here), each attempt with a
  fresh session, waiting a jittered exponential backoff between attempts.
- **Logging.** A failure is logged with the task's name on the ``dsnotebook`` logger and
  re-raised to whoever awaits the task. ``CancelledError`` is never swallowed and is logged at
  debug level only.
- **Timing.** Queued, started and finished times and the attempt count live on the task's
  :class:`TaskRecord`.

The service is not thread-safe: call it on the thread that runs its event loop (the sync ``Hub``
does so through its portal loop).
"""

from __future__ import annotations

import asyncio
import heapq
import statistics
from array import array
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from dsnotebook.errors import HubClosed, UsageError, ValidationError
from dsnotebook.models import TaskStats
from dsnotebook.monitor import percentile
from dsnotebook.retry import _MAX_CHAIN, RetryPolicy, is_transient, with_retries

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "BackgroundTaskService",
    "RetryPolicy",
    "TaskRecord",
    "TaskStatus",
    "finish_through_cancel",
    "is_transient",
    "logger",
    "rollback_keeping_a_cancel",
    "run_to_completion",
    "with_retries",
]

T = TypeVar("T")

#: The library's logger. Its ``NullHandler`` is installed by the package, not here.
logger = logging.getLogger("dsnotebook")

class TaskStatus(str, Enum):
    """Where a task is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Set by layers that persist tasks, for tasks a dead process left behind. This service never
    #: sets it: its tasks live and die with the event loop.
    INTERRUPTED = "interrupted"


ACTIVE_STATUSES: frozenset[TaskStatus] = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING})
TERMINAL_STATUSES: frozenset[TaskStatus] = frozenset(TaskStatus) - ACTIVE_STATUSES


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(eq=False)
class TaskRecord:
    """The registry's entry for one task. The service updates it; treat it as read-only.

    Take it with :meth:`BackgroundTaskService.record` while the task is live. The object keeps
    being updated until the task ends, so holding on to it is the way to read the final times.

    :ivar name: the task's unique name (also the :class:`asyncio.Task`'s name).
    :ivar priority: higher starts first.
    :ivar task: the task itself.
    :ivar status: a :class:`TaskStatus`.
    :ivar attempts: attempts started so far (0 while queued).
    :ivar queued_at: when the task was created (UTC).
    :ivar started_at: when it got a slot and first ran (UTC), or None.
    :ivar finished_at: when it ended (UTC), or None.
    :ivar error: the error it failed with, or None (also None when cancelled).
    """

    name: str
    priority: int
    task: asyncio.Task[Any]
    status: TaskStatus
    attempts: int
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: BaseException | None

    @property
    def done(self) -> bool:
        """True once the task has reached a terminal status."""
        return self.status in TERMINAL_STATUSES


class _PrioritySlots:
    """A semaphore whose waiters are served by priority, then first come, first served.

    A released slot is handed directly to the next waiter, which keeps the order strict: a task
    that shows up later cannot slip in before a waiter resumes. A granted waiter is popped from
    the heap before its future is resolved, so the heap holds only waiters without a slot (and,
    briefly, cancelled ones whose owners have not resumed yet).
    """

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._in_use = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []

    @property
    def limit(self) -> int | None:
        return self._limit

    @limit.setter
    def limit(self, value: int | None) -> None:
        self._limit = value
        # Raising the limit must start waiters now, not at the next release.
        self._grant()

    def _has_room(self) -> bool:
        return self._limit is None or self._in_use < self._limit

    def _grant(self) -> None:
        while self._waiters and self._has_room():
            _, _, future = heapq.heappop(self._waiters)
            if future.done():
                # Cancelled a moment ago; its owner has not resumed yet to remove it.
                continue
            self._in_use += 1
            future.set_result(None)

    async def acquire(self, priority: int, seq: int) -> None:
        if not self._waiters and self._has_room():
            self._in_use += 1
            return
        entry = (-priority, seq, asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, entry)
        try:
            await entry[2]
        except asyncio.CancelledError:
            if entry[2].done() and not entry[2].cancelled():
                # The slot was granted just before the cancel arrived: pass it on, or it leaks.
                self.release()
            else:
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass  # already popped by _grant
                else:
                    heapq.heapify(self._waiters)
            raise

    def release(self) -> None:
        self._in_use -= 1
        self._grant()


def release_cancelled_frames(exc: BaseException) -> None:
    """Clear the local variables held by the tracebacks of a cancellation.

    A cancel that lands mid-query makes SQLAlchemy invalidate the connection while the driver
    cursor is still open. SQLite then defers the real close, and the rollback that releases its
    write lock, until that cursor is freed, and the frames of the cancellation's traceback hold
    it. Measured with aiosqlite: the lock outlived the task for as long as anyone kept the
    exception, and every other writer got "database is locked". Clearing the frames' locals
    frees the cursor at once; the tracebacks keep their file and line information.

    Also applies when ``func`` turned the ``CancelledError`` into an error of its own, since
    the cancellation then lives on as that error's cause or context. Other errors keep their
    locals, for post-mortem debugging.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < _MAX_CHAIN and all(current is not e for e in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, asyncio.CancelledError) for e in chain):
        for e in chain:
            traceback.clear_frames(e.__traceback__)


async def finish_through_cancel(coro: Awaitable[T]) -> tuple[T, bool]:
    """Await ``coro`` to its end even if the caller is cancelled meanwhile.

    Returns ``(result, cancelled)``: ``coro``'s result, and whether a cancel arrived while it
    ran; the caller decides what a cancel means once the work is done (see
    :func:`run_to_completion`, and the publish, whose commit must not be cut short either).

    Raises:
        CancelledError: ``coro`` itself was cancelled, or failed after a cancel arrived (the
            cancel wins; ``coro``'s error stays attached as its context).
        Exception: ``coro``'s own error, when no cancel arrived.
    """
    work = asyncio.ensure_future(coro)
    cancelled: asyncio.CancelledError | None = None
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError as exc:
            if work.cancelled():
                raise
            # The caller was cancelled; ``work`` may even have finished just now: go on to its end.
            cancelled = exc
        except BaseException:  # noqa: BLE001 - work's own error, raised below
            break
    if work.cancelled():
        raise asyncio.CancelledError()
    error = work.exception()
    if error is not None:
        if cancelled is not None:
            raise cancelled from error
        raise error
    return work.result(), cancelled is not None


async def run_to_completion(coro: Awaitable[Any]) -> None:
    """Await ``coro`` to its end even if the caller is cancelled meanwhile, then re-raise.

    Session cleanup must not be abandoned halfway: a rollback or close cut short leaves the
    connection checked out, or returns it to a pool that may already be disposed of.
    A cancel that arrives meanwhile is raised once ``coro`` has finished; so is ``coro``'s
    own error.
    """
    _, cancelled = await finish_through_cancel(coro)
    if cancelled:
        raise asyncio.CancelledError()


async def rollback_keeping_a_cancel(session: AsyncSession, error: BaseException) -> None:
    """Roll ``session`` back, to its end, after ``error`` ended its work.

    After a cancel, a rollback that fails (the cancelled statement may have left the connection
    unusable) is logged and the cancel goes on: raised instead, the rollback's error would
    replace it, and a retry loop that took that error for a lost connection would carry on
    with work its caller had cancelled. After any other error, the rollback's own error is
    raised, as before.
    """
    try:
        await run_to_completion(session.rollback())
    except Exception:
        if not isinstance(error, asyncio.CancelledError):
            raise
        logger.debug("the rollback after a cancel failed; the cancel goes on", exc_info=True)


class BackgroundTaskService:
    """Run coroutines as tasks that each open, commit and close their own session.

    :param session_factory: makes a new :class:`AsyncSession`, typically the application's
        :class:`~sqlalchemy.ext.asyncio.async_sessionmaker`. Called once per attempt, inside the
        task.
    :param concurrency: how many tasks may run at once; None (the default) for no limit.
    :param logger: where failures are logged; defaults to the ``dsnotebook`` logger.
    :raises ValidationError: if ``concurrency`` is not None or an int >= 1.
    """

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession],
        *,
        concurrency: int | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not callable(session_factory):
            raise ValidationError(f"session_factory must be callable, got {session_factory!r}")
        self._session_factory = session_factory
        self._slots = _PrioritySlots(_check_concurrency(concurrency))
        self._logger = logger if logger is not None else logging.getLogger("dsnotebook")
        # Insertion order is creation order, which running() and records() promise.
        self._live: dict[str, TaskRecord] = {}
        # Over the service's lifetime: how many tasks ended with each status, and the queue wait
        # and run time (seconds) of each that got to run.
        self._ended: dict[TaskStatus, int] = dict.fromkeys(TERMINAL_STATUSES, 0)
        self._waits: array[float] = array("d")
        self._runs: array[float] = array("d")
        self._created = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def concurrency(self) -> int | None:
        """How many tasks may run at once (None for no limit).

        Settable at any time. Raising it starts waiting tasks at once; lowering it lets running
        tasks finish and holds new starts until fewer than the new limit run.

        :raises ValidationError: when set to anything but None or an int >= 1.
        """
        return self._slots.limit

    @concurrency.setter
    def concurrency(self, value: int | None) -> None:
        self._slots.limit = _check_concurrency(value)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` has been called; new tasks are then refused."""
        return self._closed

    def create_task_with_session(
        self,
        func: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        task_name: str | None = None,
        priority: int = 0,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> asyncio.Task[T]:
        """Schedule ``func(session, *args, **kwargs)`` with a session of its own.

        The task waits for a slot, then for each attempt opens a fresh session, awaits ``func``,
        commits on success, rolls back on error and always closes the session. ``task_name``,
        ``priority`` and ``retry`` are this method's own options and are never passed to
        ``func``.

        A failure is logged (with the task's name) and re-raised to whoever awaits the task.
        Because it has been logged, asyncio's "exception was never retrieved" report is
        suppressed for tasks nobody awaits; the error stays on :attr:`TaskRecord.error` too.

        :param func: an async function taking the session first.
        :param args: positional arguments for ``func`` after the session.
        :param task_name: a name unique among live tasks; defaults to
            ``f"{func.__qualname__}-{n}"`` with ``n`` counting this service's tasks.
        :param priority: higher starts first when tasks wait for a slot; equal priorities start
            in creation order. It does not preempt: a task that finds a free slot starts at once.
        :param retry: re-run ``func`` after errors ``retry.retry_on`` accepts; None (the
            default) runs it once. The slot is held while waiting between attempts.
        :param kwargs: keyword arguments for ``func``.
        :returns: the task; awaiting it gives ``func``'s result or raises its error.
        :raises UsageError: if no event loop is running in this thread, or if this service
            still has live tasks on another loop.
        :raises HubClosed: after :meth:`shutdown`.
        :raises ValidationError: for a bad argument, or a ``task_name`` a live task already uses.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise UsageError(
                "create_task_with_session() needs a running event loop: call it from async code "
                "(inside a coroutine or a callback on the loop), not from plain synchronous code"
            ) from None
        if self._closed:
            raise HubClosed("this BackgroundTaskService has been shut down and accepts no new tasks")
        if self._loop is not loop:
            # The slot futures belong to one loop. Moving to a new loop is fine once the old
            # one has nothing left running here (e.g. successive asyncio.run() calls).
            if self._live:
                raise UsageError(
                    "this BackgroundTaskService has live tasks on another event loop; "
                    "use one service per loop"
                )
            self._loop = loop
        if not callable(func):
            raise ValidationError(f"func must be an async callable, got {func!r}")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ValidationError(f"priority must be an int, got {priority!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValidationError(f"retry must be a RetryPolicy or None, got {retry!r}")

        self._created += 1
        seq = self._created
        name = self._claim_name(func, task_name)

        # Build the coroutine only once every check has passed: an abandoned coroutine object
        # would trigger "coroutine was never awaited".
        holder: list[TaskRecord] = []
        task = loop.create_task(self._run(holder, seq, func, args, kwargs, retry), name=name)
        record = TaskRecord(
            name=name,
            priority=priority,
            task=task,
            status=TaskStatus.QUEUED,
            attempts=0,
            queued_at=_utcnow(),
            started_at=None,
            finished_at=None,
            error=None,
        )
        # The task cannot have run yet (it was only scheduled), so filling the holder here is
        # in time for its first step.
        holder.append(record)
        self._live[name] = record
        task.add_done_callback(partial(self._forget, record))
        return task

    def record(self, task_or_name: asyncio.Task[Any] | str) -> TaskRecord | None:
        """Look up a live task's record.

        :param task_or_name: the task, or its name.
        :returns: the record, or None if no live task matches (finished tasks are not kept).
        """
        if isinstance(task_or_name, str):
            return self._live.get(task_or_name)
        record = self._live.get(task_or_name.get_name())
        return record if record is not None and record.task is task_or_name else None

    def running(self) -> list[str]:
        """Names of the live (queued or running) tasks, in creation order."""
        return list(self._live)

    def records(self) -> list[TaskRecord]:
        """Records of the live (queued or running) tasks, in creation order."""
        return list(self._live.values())

    def stats(self) -> TaskStats:
        """Counts by status (the live tasks' and those that ended), and the mean, median and 95th
        percentile of the queue wait and the run time of the tasks that ended, over the service's
        lifetime."""
        counts = {status.value: 0 for status in TaskStatus}
        for status, n in self._ended.items():
            counts[status.value] += n
        for record in self._live.values():
            counts[record.status.value] += 1
        waits, runs = list(self._waits), list(self._runs)
        return TaskStats(
            counts=counts,
            wait_mean_s=statistics.fmean(waits) if waits else None,
            wait_p50_s=percentile(waits, 50),
            wait_p95_s=percentile(waits, 95),
            run_mean_s=statistics.fmean(runs) if runs else None,
            run_p50_s=percentile(runs, 50),
            run_p95_s=percentile(runs, 95),
        )

    async def shutdown(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Refuse new tasks, then wait for the live ones to end.

        The tasks' own errors are never raised here; they were logged and stay with the tasks.

        :param cancel: cancel the live tasks first instead of letting them finish.
        :param timeout: the most seconds to wait, so that an exit stays bounded. The tasks still
            live then are cancelled (again) and logged, and shutdown returns without waiting
            for them: their rollback and close finish on the loop shortly after. None waits as
            long as it takes.
        :raises ValidationError: if ``timeout`` is negative or not a number.
        """
        if timeout is not None and (
            not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout >= 0
        ):
            raise ValidationError(f"timeout must be None or a number >= 0, got {timeout!r}")
        self._closed = True
        # A task of this service that shuts the service down must not wait for itself.
        current = asyncio.current_task()
        tasks = [record.task for record in self._live.values() if record.task is not current]
        if not tasks:
            return
        if cancel:
            for task in tasks:
                # A second cancel would interrupt the cleanup of the first: SQLAlchemy then stops
                # the driver connection's thread while its graceful close still waits for it.
                if not task.cancelling():
                    task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            self._logger.warning(
                "Shutdown timed out after %ss; cancelling %s",
                timeout,
                ", ".join(sorted(task.get_name() for task in pending)),
            )
            for task in pending:
                task.cancel()

    def _claim_name(self, func: Callable[..., Any], task_name: str | None) -> str:
        if task_name is not None:
            if not isinstance(task_name, str) or not task_name:
                raise ValidationError(f"task_name must be a non-empty str, got {task_name!r}")
            if task_name in self._live:
                raise ValidationError(
                    f"task_name {task_name!r} is already used by a live task; "
                    "pick another name or wait for that task to end"
                )
            return task_name
        base = getattr(func, "__qualname__", None) or type(func).__qualname__
        # An explicit name may look like a default one; skip numbers that are taken.
        while (name := f"{base}-{self._created}") in self._live:
            self._created += 1
        return name

    async def _run(
        self,
        holder: list[TaskRecord],
        seq: int,
        func: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None,
    ) -> T:
        record = holder[0]
        try:
            await self._slots.acquire(record.priority, seq)
        except asyncio.CancelledError:
            self._finish(record, TaskStatus.CANCELLED)
            self._logger.debug("Task %r cancelled while queued", record.name)
            raise
        try:
            record.status = TaskStatus.RUNNING
            record.started_at = _utcnow()
            result = await self._attempts(record, func, args, kwargs, retry)
        except asyncio.CancelledError:
            self._finish(record, TaskStatus.CANCELLED)
            self._logger.debug("Task %r cancelled while running", record.name)
            raise
        except BaseException as exc:
            self._finish(record, TaskStatus.FAILED, exc)
            self._logger.error(
                "Task %r failed after %d attempt(s): %s",
                record.name,
                record.attempts,
                exc,
                exc_info=exc,
                extra={"task_name": record.name},
            )
            raise
        else:
            self._finish(record, TaskStatus.SUCCEEDED)
            return result
        finally:
            self._slots.release()

    async def _attempts(
        self,
        record: TaskRecord,
        func: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None,
    ) -> T:
        def attempt() -> Awaitable[T]:
            record.attempts += 1
            return self._attempt(func, args, kwargs)

        def log_retry(exc: BaseException, failures: int, delay: float) -> None:
            self._logger.warning(
                "Task %r attempt %d/%d failed with a retryable error, retrying in %.3fs: %s",
                record.name,
                record.attempts,
                retry.attempts,
                delay,
                exc,
                extra={"task_name": record.name},
            )

        return await with_retries(retry, attempt, on_retry=log_retry)

    async def _attempt(
        self, func: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        session = self._session_factory()
        failed = True
        try:
            awaitable = func(session, *args, **kwargs)
            if not inspect.isawaitable(awaitable):
                raise TypeError(
                    f"{func!r} returned {type(awaitable).__name__}, not an awaitable: "
                    "create_task_with_session() needs an async function"
                )
            result = await awaitable
            # Cut short, the commit would leave its connection half returned to the pool.
            await run_to_completion(session.commit())
            failed = False
            return result
        except BaseException as exc:
            release_cancelled_frames(exc)
            raise
        finally:
            await run_to_completion(self._close_session(session, rollback=failed))

    async def _close_session(self, session: AsyncSession, *, rollback: bool) -> None:
        # Cleanup errors are logged, not raised: on the error path they would hide the task's
        # real error, and on the success path the work is already committed.
        if rollback:
            try:
                await session.rollback()
            except Exception:
                self._logger.warning("Rollback failed while cleaning up a task session", exc_info=True)
        try:
            await session.close()
        except Exception:
            self._logger.warning("Closing a task session failed", exc_info=True)

    def _finish(self, record: TaskRecord, status: TaskStatus, error: BaseException | None = None) -> None:
        record.status = status
        record.error = error
        record.finished_at = _utcnow()

    def _forget(self, record: TaskRecord, task: asyncio.Task[Any]) -> None:
        if record.status in ACTIVE_STATUSES:
            # Cancelled before its first step: the coroutine never ran to record anything.
            self._finish(record, TaskStatus.CANCELLED)
        self._ended[record.status] += 1
        if record.started_at is not None and record.finished_at is not None:
            self._waits.append((record.started_at - record.queued_at).total_seconds())
            self._runs.append((record.finished_at - record.started_at).total_seconds())
        if self._live.get(record.name) is record:
            del self._live[record.name]
        if not task.cancelled():
            # Mark the error as retrieved: it has been logged already, and the registry is the
            # only owner of tasks nobody awaits.
            task.exception()


def _check_concurrency(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(f"concurrency must be None or an int >= 1, got {value!r}")
    return value
