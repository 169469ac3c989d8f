"""DatasetUploadService: validate, then schedule; stage in chunks; publish atomically.

A push is validated and encoded completely on the caller's side, before anything is scheduled or
written, so bad input fails at once with a clear error. The upload itself runs as a task of the
hub's :class:`~dsnotebook.tasks.BackgroundTaskService`, with a session of its own:

1. rows go into a staging table in chunks, each chunk committed with the task's progress, so
   that progress is durable and a transient lock only costs one chunk's retry;
2. the version row, the dataset's latest pointer and its SQL view are written in one
   transaction, so readers never see a partial version;
3. a failure or cancel drops the staging table; the previous version is never touched.

An upload that was *interrupted* (its process died, or the interpreter exited while it ran) keeps
its committed staging rows, so that pushing the same content to the same dataset again resumes
from them (recognised by the frame's content hash) instead of starting over. Kept rows go once
the dataset gets a newer version, after ``keep_interrupted`` seconds (7 days by default), or at
once with ``hub.cleanup()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import getpass
import hashlib
import json
import logging
import os
import socket
import time
import unicodedata
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import pandas as pd
from sqlalchemy import BigInteger, Boolean, Column, DateTime, Float, Integer, LargeBinary, MetaData, Numeric, Table, Text, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import _faults
from .errors import (
    DsnotebookError,
    SchemaMismatch,
    UploadCancelled,
    UploadError,
    UsageError,
    ValidationError,
    VersionConflict,
    WaitTimeout,
)
from .models import DatasetVersion
from .progress import Listeners, Progress, ProgressListener, format_status
from .store import codec
from .store.append import plan_append, utf8_bytes
from .store.catalog import STAGE_PREFIX, datasets, stage_table_name, tasks, utcnow, version_table_name, versions, view_name
from .store.engine import WriteGate, time_codecs, translate, write_transaction
from .store.repository import ROW_ID, drop_table, find_dataset, find_version, point_latest, quote, to_version
from .tasks import TERMINAL_STATUSES, BackgroundTaskService, RetryPolicy, release_cancelled_frames, run_to_completion

__all__ = ["IF_EXISTS", "DatasetUploadService", "UploadTask", "owner", "validate_name", "validate_options"]

log = logging.getLogger("dsnotebook")
T = TypeVar("T")

IfExists = Literal["replace", "append", "fail"]
IF_EXISTS: tuple[str, ...] = ("replace", "append", "fail")

#: Rows per staging chunk: large enough to amortise a commit, small enough to keep memory flat
#: and the event loop responsive (about 30 ms of driver work per chunk at this size).
DEFAULT_CHUNK_SIZE = 50_000
MAX_NAME_LENGTH = 255
#: How many of its most recent uploads a hub remembers for ``Hub.uploads()`` and the panel.
HISTORY_LENGTH = 100
#: How long the committed staging rows of an interrupted upload are kept for a resume, in seconds.
DEFAULT_KEEP_INTERRUPTED_S = 7 * 24 * 3600.0
#: Statuses from which an upload can be started again with the same frame and options.
RETRYABLE_STATUSES = frozenset({"failed", "cancelled", "interrupted"})

_SQL_TYPES = {
    "INTEGER": lambda: BigInteger(),
    "REAL": lambda: Float(precision=53),
    "TEXT": lambda: Text(),
    "BLOB": lambda: LargeBinary(),
    # PostgreSQL's native types (see codec.NATIVE_TYPES); SQLite tables never use them.
    "BOOLEAN": lambda: Boolean(),
    "NUMERIC": lambda: Numeric(),
    "JSON": lambda: postgresql.JSON(),
    "JSONB": lambda: postgresql.JSONB(),
    "TIMESTAMP": lambda: DateTime(),
    "TIMESTAMPTZ": lambda: DateTime(timezone=True),
    "INTERVAL": lambda: postgresql.INTERVAL(),
}


async def with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    label: str,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Await ``attempt()``; on an error the policy calls transient, wait with jittered backoff and retry."""
    failures = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            failures += 1
            if not policy.retryable(exc, failures):
                raise
            if on_retry is not None:
                on_retry()
            log.warning("%s: transient error, retry %d of %d: %s", label, failures, policy.attempts - 1, exc)
            await asyncio.sleep(policy.delay(failures))


def owner() -> tuple[str, int]:
    """This process as recorded on its tasks: (host, pid)."""
    return socket.gethostname(), os.getpid()


def created_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def validate_name(name: object) -> str:
    """Check a dataset name; names are data, so anything printable up to 255 characters goes.

    Raises:
        ValidationError: not a str, empty or whitespace-only, too long, with control characters,
            or with a lone surrogate (not valid Unicode text).
    """
    if not isinstance(name, str):
        raise ValidationError(f"name: expected a str, got {type(name).__name__} {name!r}")
    if not name.strip():
        raise ValidationError(f"name: {name!r} is empty or whitespace only; give a non-empty dataset name")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"name: {len(name)} characters is too long; at most {MAX_NAME_LENGTH} are accepted")
    # Control characters and line breaks make names that print badly and are easy to mistype;
    # format characters (such as the joiner inside emoji sequences) are fine. A lone surrogate
    # (from a bad decode) is not text at all: no database driver can send it.
    bad = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        what = "the lone surrogate" if unicodedata.category(bad) == "Cs" else "the control character"
        raise ValidationError(f"name: {name!r} contains {what} {bad!r} (U+{ord(bad):04X}); use printable characters only")
    return name


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass(frozen=True)
class _Request:
    name: str
    description: str | None
    tags: dict | None
    if_exists: str
    chunk_size: int


def validate_options(*, description=None, tags=None, if_exists="replace", priority=0, chunk_size=None) -> None:
    """Check ``push``'s keyword options.

    Raises:
        ValidationError: naming the option and what would be accepted.
    """
    if if_exists not in IF_EXISTS:
        raise ValidationError(f"if_exists: {if_exists!r} is not allowed; use one of {', '.join(map(repr, IF_EXISTS))}")
    if description is not None and not isinstance(description, str):
        raise ValidationError(f"description: expected a str or None, got {type(description).__name__}")
    if description is not None and "\x00" in description:
        # PostgreSQL's text cannot hold it, and a description should read the same everywhere.
        raise ValidationError("description: contains a NUL character ('\\x00'); remove it")
    if description is not None and _has_surrogate(description):
        raise ValidationError("description: contains a lone surrogate, which is not valid Unicode text; use UTF-8 text")
    if tags is not None:
        if not isinstance(tags, Mapping) or not all(isinstance(k, str) for k in tags):
            raise ValidationError(f"tags: expected a dict with str keys, got {tags!r}")
        try:
            text = json.dumps(dict(tags), allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"tags: values must be JSON-compatible (str, numbers, bools, lists, dicts): {exc}") from exc
        # JSON can only escape a surrogate, and an escaped pair reads back as the one character it encodes.
        if _has_surrogate(text):
            raise ValidationError(
                f"tags: {tags!r} holds a lone surrogate in a key or value, which is not valid Unicode text; use UTF-8 text"
            )
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError(f"priority: expected an int (higher runs first), got {priority!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValidationError(f"chunk_size: expected a positive int or None for the default, got {chunk_size!r}")


class UploadTask:
    """The handle of one upload: live numbers, ``wait()``, ``await``, ``cancel()``.

    Its attributes are updated on the loop that runs the upload and can be read from any thread.
    """

    def __init__(self, *, task_id: str, dataset: str, rows_total: int, loop: asyncio.AbstractEventLoop) -> None:
        self.id = task_id
        self.dataset = dataset
        self.rows_total = rows_total
        self.rows_done = 0
        self.status = "queued"
        self.attempts = 0
        self.error: BaseException | None = None
        self.version: DatasetVersion | None = None
        self.queued_at: datetime = utcnow()
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self._t0: float | None = None
        self._t1: float | None = None
        self._loop = loop
        self._task: asyncio.Task | None = None
        self._listeners: Listeners[ProgressListener] = Listeners()
        self._interrupting = False
        # A cancel that arrived while the publish was committing, which went through.
        self._cancel_came_late = False
        # Starts the same upload again; kept (with the frame) only while a retry makes sense.
        self._resubmit: Callable[[], Awaitable[UploadTask]] | None = None
        self._owner: DatasetUploadService | None = None
        self._recording: asyncio.Task | None = None

    # -- numbers -----------------------------------------------------------------------------

    @property
    def progress(self) -> float:
        """Fraction of rows written, in [0, 1]."""
        return self.snapshot().fraction

    @property
    def elapsed(self) -> float:
        """Seconds since the upload started running (0 while queued), frozen when it ends."""
        if self._t0 is None:
            return 0.0
        return (self._t1 if self._t1 is not None else time.monotonic()) - self._t0

    @property
    def rows_per_s(self) -> float:
        return self.snapshot().rows_per_s

    @property
    def deduplicated(self) -> bool:
        return bool(self.version is not None and self.version.deduplicated)

    @property
    def task(self) -> asyncio.Task | None:
        """The underlying :class:`asyncio.Task` (on the loop that runs the upload)."""
        return self._task

    def done(self) -> bool:
        """Whether the upload has ended (succeeded, failed, cancelled or interrupted)."""
        return self.status in TERMINAL_STATUSES

    @property
    def can_retry(self) -> bool:
        """Whether ``hub.retry(task)`` can start this upload again: it failed, was cancelled or interrupted.

        Until then the handle keeps the frame it was given (a shallow, copy-on-write snapshot);
        a successful upload lets go of it.
        """
        return self.status in RETRYABLE_STATUSES and self._resubmit is not None

    def snapshot(self) -> Progress:
        """The current state as an immutable :class:`~dsnotebook.progress.Progress`."""
        return Progress(
            task_id=self.id,
            dataset=self.dataset,
            status=self.status,
            rows_done=self.rows_done,
            rows_total=self.rows_total,
            elapsed=self.elapsed,
            version=None if self.version is None else self.version.version,
            deduplicated=self.deduplicated,
            error=None if self.error is None else str(self.error),
            attempts=self.attempts,
        )

    def subscribe(self, listener: ProgressListener) -> Callable[[], None]:
        """Call ``listener(progress)`` on every change; returns a function that unsubscribes.

        Listeners run on the upload's loop thread and must be quick; an exception in one is
        logged and does not affect the upload.
        """
        return self._listeners.add(listener)

    def _emit(self) -> None:
        listeners = self._listeners.snapshot()
        if not listeners:
            return
        snap = self.snapshot()
        for listener in listeners:
            try:
                listener(snap)
            except Exception:  # noqa: BLE001 - a display problem must never break an upload
                log.exception("progress listener of task %s failed", self.id)

    def _set(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        if changes.get("status") == "running" and self._t0 is None:
            self._t0 = time.monotonic()
            self.started_at = utcnow()
        if self.done() and self._t1 is None:
            self._t1 = time.monotonic()
            self.finished_at = utcnow()
        self._emit()

    # -- waiting -----------------------------------------------------------------------------

    def _outcome(self) -> DatasetVersion:
        task = self._task
        if task is None or not task.done():
            raise UsageError("the upload has not finished yet")
        if task.cancelled() and self.status == "succeeded" and self.version is not None:
            return self.version  # cancelled after the upload had published and said so
        if task.cancelled():
            how = "interrupted by shutdown" if self.status == "interrupted" else "cancelled"
            raise UploadCancelled(
                f"the upload of {self.dataset!r} was {how}; nothing was published",
                task_id=self.id,
                dataset=self.dataset,
            )
        exc = task.exception()
        if exc is not None:
            raise exc
        return task.result()

    async def _settle(self) -> None:
        # asyncio.wait never cancels the task it waits for, so an interrupted waiter leaves the upload alone.
        await asyncio.wait({self._task})
        if self._recording is not None:
            # Cancelled while queued: its end is being written to the catalog; wait for that too.
            await asyncio.wait({self._recording})

    def _on_own_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def wait(self, timeout: float | None = None) -> DatasetVersion:
        """Block until the upload ends and return the published version.

        Raises:
            UploadError: the upload failed (the cause is chained).
            UploadCancelled: the upload was cancelled or interrupted.
            WaitTimeout: ``timeout`` seconds passed; the upload keeps running.
            UsageError: called on the thread that runs the upload's loop, where it would deadlock.
        """
        if self._task is not None and self._task.done() and (self._recording is None or self._recording.done()):
            return self._outcome()
        if self._on_own_loop_thread():
            raise UsageError(
                "wait() was called on the event loop that runs this upload, where it would deadlock; "
                "use 'await task' instead"
            )
        future = asyncio.run_coroutine_threadsafe(self._settle(), self._loop)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise WaitTimeout(
                f"the upload of {self.dataset!r} did not finish within {timeout} s; it keeps running "
                f"({format_status(self.snapshot())})"
            ) from None
        return self._outcome()

    async def _await(self) -> DatasetVersion:
        if asyncio.get_running_loop() is self._loop:
            await self._settle()
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._settle(), self._loop))
        return self._outcome()

    def __await__(self):
        return self._await().__await__()

    def cancel(self) -> bool:
        """Ask the upload to stop. Returns False if it had already ended.

        Nothing is published and waiting afterwards raises :class:`UploadCancelled`, except when
        the cancel arrives while the publish is committing: the commit then finishes, and the
        upload ends ``succeeded`` with its version, as the database says.
        """
        if self.done() or self._task is None:
            return False
        if self._on_own_loop_thread():
            self._cancel_once()
        else:
            self._loop.call_soon_threadsafe(self._cancel_once)
        return True

    def _cancel_once(self) -> None:
        # A repeated cancel (a double click) must not interrupt the cleanup of the first one.
        if not self._task.cancelling():
            self._task.cancel()

    def __repr__(self) -> str:
        return f"<UploadTask {format_status(self.snapshot())}>"

    def _ipython_display_(self) -> None:
        # The one place the engine reaches for the widgets: lazily, and only when IPython asks.
        try:
            from .widgets.progress import display_task
        except ImportError:
            print(repr(self))
            return
        display_task(self)


class DatasetUploadService:
    """Validates pushes and runs them as background tasks with sessions of their own."""

    def __init__(
        self,
        *,
        task_service: BackgroundTaskService,
        write_sessions: async_sessionmaker,
        retry: RetryPolicy | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        checkpoint: Callable[[], Awaitable[None]] | None = None,
        max_columns: int | None = None,
        max_row_bytes: int | None = None,
        dialect: str = "sqlite",
        gate: WriteGate | None = None,
        keep_interrupted: float = DEFAULT_KEEP_INTERRUPTED_S,
    ) -> None:
        self._service = task_service
        self._keep_interrupted = keep_interrupted
        self._gate = gate or WriteGate(exclusive=False)
        self._max_columns = max_columns
        self._max_row_bytes = max_row_bytes
        self._dialect = dialect
        self._checkpoint = checkpoint
        self._write = write_sessions
        self._retry = retry or RetryPolicy()
        self._chunk_size = chunk_size
        self._handles: dict[str, UploadTask] = {}
        self._history: deque[UploadTask] = deque(maxlen=HISTORY_LENGTH)
        self._submit_listeners: Listeners[Callable[[UploadTask], None]] = Listeners()
        self._recording: set[asyncio.Task] = set()

    def handles(self) -> list[UploadTask]:
        """Handles of the uploads started by this service that have not ended, oldest first."""
        return list(self._handles.values())

    def history(self) -> list[UploadTask]:
        """The most recent uploads started by this service (ended or not), newest first."""
        return list(reversed(self._history))

    def on_submit(self, listener: Callable[[UploadTask], None]) -> Callable[[], None]:
        """Call ``listener(handle)`` whenever an upload is started; returns a function that unsubscribes.

        The listener runs on the loop that runs the uploads and must be quick; an exception in it
        is logged and does not affect the upload.
        """
        return self._submit_listeners.add(listener)

    async def submit(
        self,
        obj: pd.DataFrame | pd.Series,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
        if_exists: IfExists = "replace",
        priority: int = 0,
        chunk_size: int | None = None,
    ) -> UploadTask:
        """Validate everything, record the task as queued, and schedule the upload.

        Raises:
            ValidationError: bad frame, name or option; nothing was written.
            VersionConflict: ``if_exists="fail"`` and the dataset exists.
            SchemaMismatch: ``if_exists="append"`` with a schema other than the latest version's.
        """
        validate_name(name)
        validate_options(description=description, tags=tags, if_exists=if_exists, priority=priority, chunk_size=chunk_size)
        # pandas' copy-on-write makes this snapshot free until the caller mutates the frame.
        snapshot = obj.copy(deep=False) if isinstance(obj, (pd.DataFrame, pd.Series)) else obj
        encoded = codec.encode(snapshot, dialect=self._dialect)
        if self._max_columns is not None and len(encoded.columns) + 1 > self._max_columns:
            raise ValidationError(
                f"the frame needs {len(encoded.columns)} SQL columns (its columns, index levels and "
                f"missing-value marks), but this database allows at most {self._max_columns - 1} per "
                "table; split the frame into several datasets"
            )
        if self._max_row_bytes is not None:
            width = _row_bytes(encoded.columns)
            if width > self._max_row_bytes:
                raise ValidationError(
                    f"a row of this frame needs about {width:,} bytes in the database (8 per number or "
                    f"date column, 1 per boolean, 18 per text column), but this database stores at most "
                    f"{self._max_row_bytes:,} per row; split the frame into several datasets"
                )
        request = _Request(
            name=name,
            description=description,
            tags=None if tags is None else dict(tags),
            if_exists=if_exists,
            chunk_size=chunk_size or self._chunk_size,
        )
        task_id = uuid.uuid4().hex
        host, pid = owner()

        async def record_queued() -> None:
            async with write_transaction(self._write, self._gate) as session:
                dataset = await find_dataset(session, name)
                if dataset is not None and dataset.latest_version is not None:
                    if if_exists == "fail":
                        raise VersionConflict(
                            f"dataset {name!r} already exists (latest version {dataset.latest_version}) and "
                            "if_exists='fail'; use if_exists='replace' or 'append'"
                        )
                    if if_exists == "append":
                        latest = await find_version(session, dataset)
                        _check_append(name, latest.manifest, encoded.manifest)
                await session.execute(
                    tasks.insert().values(
                        id=task_id,
                        name=f"push {name}",
                        dataset=name,
                        status="queued",
                        if_exists=if_exists,
                        priority=priority,
                        rows_total=encoded.nrows,
                        rows_done=0,
                        attempts=0,
                        queued_at=utcnow(),
                        heartbeat_at=utcnow(),
                        owner_host=host,
                        owner_pid=pid,
                        staging_table=stage_table_name(task_id),
                    )
                )

        try:
            await with_retries(self._retry, record_queued, label=f"queueing {name!r}")
        except DsnotebookError:
            raise
        except Exception as exc:
            raise translate(exc, what=f"queueing the upload of {name!r}") from exc
        await _faults.reached("queued")
        handle = UploadTask(task_id=task_id, dataset=name, rows_total=encoded.nrows, loop=asyncio.get_running_loop())
        self._handles[task_id] = handle
        task = self._service.create_task_with_session(
            self._run, handle, encoded, request, task_name=f"push {name!r} [{task_id[:8]}]", priority=priority
        )
        handle._task = task
        handle._owner = self
        handle._resubmit = functools.partial(
            self.submit,
            snapshot,
            name,
            description=description,
            tags=request.tags,
            if_exists=if_exists,
            priority=priority,
            chunk_size=chunk_size,
        )
        task.add_done_callback(functools.partial(self._ended, handle))
        self._history.append(handle)
        for listener in self._submit_listeners.snapshot():
            try:
                listener(handle)
            except Exception:  # noqa: BLE001 - a display problem must never break an upload
                log.exception("upload listener failed for task %s", task_id)
        return handle

    def _ended(self, handle: UploadTask, task: asyncio.Task) -> None:
        self._handles.pop(handle.id, None)
        if handle.status == "queued":
            # It ended before it started (cancelled while waiting for a slot), so the upload
            # itself never ran to record its end.
            if task.cancelled():
                status, error = ("interrupted" if handle._interrupting else "cancelled"), None
            else:
                status, error = "failed", task.exception()
            handle.error = error
            handle._set(status=status)
            recording = asyncio.get_running_loop().create_task(
                self._cleanup(handle, None, status, error), name=f"record the end of upload {handle.id}"
            )
            handle._recording = recording  # wait() and await return once the catalog says so
            self._recording.add(recording)  # strongly held until done; drain() waits for it
            recording.add_done_callback(self._recording.discard)

    async def drain(self) -> None:
        """Wait until the ends of cancelled uploads are recorded; a hub calls this before closing."""
        while self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)

    # -- the task ---------------------------------------------------------------------------

    async def _run(self, session: AsyncSession, handle: UploadTask, encoded: codec.EncodedFrame, req: _Request) -> DatasetVersion:
        stage = stage_table_name(handle.id)
        staged = False
        version: DatasetVersion | None = None
        try:
            handle._set(status="running", attempts=1)
            content_hash = encoded.content_hash()
            # The frame's hash is recorded at once: it is what a later push of the same content
            # looks for to resume this one's staged rows, should this one be interrupted.
            await self._retrying(
                handle,
                session,
                lambda: self._update_task(
                    session, handle, status="running", started_at=handle.started_at, attempts=1, content_hash=content_hash
                ),
            )
            existing = await self._retrying(handle, session, lambda: self._dedupe(session, req, encoded, content_hash))
            if existing is not None:
                handle._set(rows_done=encoded.nrows)
                await self._retrying(handle, session, lambda: self._record_success(session, handle, existing))
                return self._succeed(handle, existing)

            staged = True
            done = await self._retrying(handle, session, lambda: self._resume(session, handle, req, content_hash, stage))
            if done is None:
                done = 0
                await self._retrying(handle, session, lambda: self._create_stage(session, stage, encoded))
            else:
                handle._set(rows_done=done)
            insert_sql = _insert_sql(session, stage, encoded)
            checkpoints = _Checkpoints(self._checkpoint)
            try:
                for start in range(done, encoded.nrows, req.chunk_size):
                    stop = min(start + req.chunk_size, encoded.nrows)
                    write = functools.partial(self._write_chunk, session, handle, stage, insert_sql, encoded, start, stop)
                    await self._retrying(handle, session, write)
                    handle._set(rows_done=stop)
                    checkpoints.start()
                    await _faults.reached("between_chunks")
            finally:
                await checkpoints.close()
            version = await self._retrying(
                handle, session, lambda: self._publish(session, handle, req, encoded, content_hash, stage), settle=True
            )
            staged = False
            if handle._cancel_came_late:
                return self._stands(handle, version)
            await _faults.reached("published")
            return self._succeed(handle, version)
        except asyncio.CancelledError as exc:
            if version is not None:
                return self._stands(handle, version)
            # The cancelled statement's cursor, held by the traceback, keeps SQLite's write lock
            # until it is freed; the cleanup below needs that lock.
            release_cancelled_frames(exc)
            # The process going away interrupts the upload, and its committed rows stay for a resume.
            status = "interrupted" if handle._interrupting else "cancelled"
            await self._abandon(session, handle, stage if staged else None, status=status, error=None)
            raise
        except Exception as exc:
            failure = UploadError(_failure_message(req.name, exc), task_id=handle.id, dataset=req.name)
            failure.__cause__ = exc
            await self._abandon(session, handle, stage if staged else None, status="failed", error=failure)
            raise failure from exc

    async def _retrying(
        self, handle: UploadTask, session: AsyncSession, step: Callable[[], Awaitable[T]], *, settle: bool = False
    ) -> T:
        """Run one transactional step of the task's session; retry transient errors.

        ``settle``: a cancel that arrives while the step commits waits for the commit. If the
        commit succeeds, the step's result is returned and ``handle._cancel_came_late`` is set;
        if it fails, the cancel is raised. Without it, a cancel could land after the database
        had committed, and the upload would report a version it did publish as not published.
        """

        async def attempt() -> T:
            async with self._gate:
                try:
                    result = await step()
                    if settle:
                        handle._cancel_came_late = await _commit_through_cancel(session)
                    else:
                        await session.commit()
                    return result
                except BaseException as exc:
                    # Free a cancelled statement's cursor before the gate opens: until then it keeps
                    # SQLite's write lock, and the next writer would wait on it.
                    release_cancelled_frames(exc)
                    await run_to_completion(session.rollback())
                    raise

        def count_retry() -> None:
            handle._set(attempts=handle.attempts + 1)

        return await with_retries(self._retry, attempt, label=f"upload {handle.id}", on_retry=count_retry)

    async def _update_task(self, session: AsyncSession, handle: UploadTask, **values: Any) -> None:
        await session.execute(tasks.update().where(tasks.c.id == handle.id).values(**values))

    async def _dedupe(self, session: AsyncSession, req: _Request, encoded, content_hash: str) -> DatasetVersion | None:
        """The latest version if this push would publish identical content, else None."""
        dataset = await find_dataset(session, req.name)
        if dataset is None or dataset.latest_version is None:
            return None
        if req.if_exists == "fail":
            raise VersionConflict(
                f"dataset {req.name!r} already exists (latest version {dataset.latest_version}) and if_exists='fail'"
            )
        latest = await find_version(session, dataset)
        if req.if_exists == "append":
            _check_append(req.name, latest.manifest, encoded.manifest)
            if encoded.nrows > 0:
                return None
        elif latest.content_hash != content_hash:
            return None
        # Nothing new to publish, but a new description or tags still apply to the dataset.
        changes = _dataset_changes(req, dataset)
        if changes:
            await session.execute(datasets.update().where(datasets.c.id == dataset.id).values(**changes))
        return to_version(latest, dataset.name, deduplicated=True)

    async def _resume(self, session: AsyncSession, handle: UploadTask, req: _Request, content_hash: str, stage: str) -> int | None:
        """Take over the staged rows of an interrupted upload of the same content, if any.

        Returns how many rows are already staged (they become this upload's staging table), or
        None to start from an empty one. The take-over is one transaction: two uploads of the
        same content never both get the rows.
        """
        conn = await session.connection()
        candidates = (
            await session.execute(
                select(tasks.c.id, tasks.c.staging_table, tasks.c.error)
                .where(
                    tasks.c.dataset == req.name,
                    tasks.c.status == "interrupted",
                    tasks.c.content_hash == content_hash,
                    tasks.c.staging_table.is_not(None),
                    tasks.c.rows_done > 0,
                    tasks.c.id != handle.id,
                )
                .order_by(tasks.c.rows_done.desc())
            )
        ).all()
        for old in candidates:
            if not await conn.run_sync(lambda sync, name=old.staging_table: sa_inspect(sync).has_table(name)):
                await session.execute(tasks.update().where(tasks.c.id == old.id).values(staging_table=None))
                continue
            table = quote(conn, old.staging_table)
            row_id = quote(conn, ROW_ID)
            if conn.dialect.name != "sqlite":
                # Taken before counting: an upload only presumed dead (its heartbeat late) might
                # still commit a chunk, which would then be counted and written twice. (On SQLite
                # this transaction already holds the one write lock.)
                await conn.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            count, last = (await conn.exec_driver_sql(f"SELECT COUNT(*), COALESCE(MAX({row_id}), 0) FROM {table}")).one()
            if count != last:  # rows 1..n, as every upload writes them; anything else is not ours to trust
                continue
            claimed = await session.execute(
                tasks.update()
                .where(tasks.c.id == old.id, tasks.c.staging_table == old.staging_table)
                .values(
                    staging_table=None,
                    error=f"{old.error or 'interrupted'}; its {count:,} staged rows were resumed by upload {handle.id}",
                )
            )
            if claimed.rowcount != 1:
                continue
            await drop_table(conn, stage)
            await conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {quote(conn, stage)}")
            await self._update_task(session, handle, rows_done=count)
            log.info("upload %s resumes upload %s of %r from row %d", handle.id, old.id, req.name, count)
            return int(count)
        return None

    async def expire_staging(self, *, everything: bool = False) -> int:
        """Drop the kept staging rows of interrupted uploads that can no longer be resumed.

        They expire once their dataset has a version newer than the upload, or ``keep_interrupted``
        seconds after the upload was interrupted. ``everything`` drops all of them now, and
        also any staging table no queued or running upload owns. Returns how many tables went.
        """

        async def expire() -> int:
            async with write_transaction(self._write, self._gate) as session:
                conn = await session.connection()
                ended_at = func.coalesce(tasks.c.finished_at, tasks.c.heartbeat_at, tasks.c.queued_at)
                kept = (
                    await session.execute(
                        select(tasks.c.id, tasks.c.dataset, tasks.c.staging_table, tasks.c.queued_at, ended_at.label("ended_at"))
                        .where(tasks.c.status == "interrupted", tasks.c.staging_table.is_not(None))
                    )
                ).all()
                newest: dict[str, datetime] = {}
                if kept:
                    query = (
                        select(datasets.c.name, func.max(versions.c.created_at))
                        .join(versions, versions.c.dataset_id == datasets.c.id)
                        .group_by(datasets.c.name)
                    )
                    newest = dict((await session.execute(query)).all())
                horizon = utcnow() - timedelta(seconds=self._keep_interrupted)

                def expired(r) -> bool:
                    newer = newest.get(r.dataset)  # catalog times come back aware (UTCDateTime)
                    return everything or r.ended_at <= horizon or (newer is not None and newer > r.queued_at)

                doomed = [r for r in kept if expired(r)]
                await _let_go(session, doomed)
                dropped = len(doomed)
                if everything:
                    owned = {
                        stage_table_name(task_id)
                        for (task_id,) in (
                            await session.execute(select(tasks.c.id).where(tasks.c.status.in_(("queued", "running"))))
                        ).all()
                    }
                    names = await conn.run_sync(lambda sync: sa_inspect(sync).get_table_names())
                    for name in names:
                        if name.startswith(STAGE_PREFIX) and name not in owned:
                            await drop_table(conn, name)
                            dropped += 1
                return dropped

        dropped = await with_retries(self._retry, expire, label="dropping expired staging rows")
        if dropped:
            log.info("dropped the staging rows of %d interrupted upload(s)", dropped)
        return dropped

    async def _create_stage(self, session: AsyncSession, stage: str, encoded) -> None:
        conn = await session.connection()
        await drop_table(conn, stage)
        table = _table(stage, encoded.columns, conn.dialect.name)
        await conn.run_sync(lambda sync: table.create(sync))

    async def _write_chunk(
        self, session: AsyncSession, handle: UploadTask, stage: str, insert_sql: str, encoded, start: int, stop: int
    ) -> None:
        conn = await session.connection()
        # Through SQLAlchemy first: this starts the transaction (BEGIN IMMEDIATE on SQLite).
        await self._update_task(session, handle, rows_done=stop, attempts=handle.attempts, heartbeat_at=utcnow())
        # The driver connection of this same session (and so this same transaction) takes the
        # rows as they are made, one tuple at a time, never a separate connection.
        if conn.dialect.name == "sqlite":
            # About a tenth faster than a list through SQLAlchemy, and lighter.
            raw = await conn.get_raw_connection()
            await raw.driver_connection.executemany(insert_sql, encoded.iter_rows(start, stop))
        elif conn.dialect.driver == "asyncpg":
            # PostgreSQL's binary COPY, with the row ids sent along: the primary key is built once
            # the rows are in (see _publish), which costs a fraction of keeping it up row by row.
            raw = await conn.get_raw_connection()
            records = encoded.iter_rows(start, stop, wire=True, row_ids=True)
            columns = [ROW_ID, *(c.name for c in encoded.columns)]
            async with time_codecs(raw, encoded.time_types):
                await raw.driver_connection.copy_records_to_table(stage, records=records, columns=columns)
        elif conn.dialect.name == "postgresql":
            await conn.exec_driver_sql(insert_sql, list(encoded.iter_rows(start, stop, row_ids=True)))
        else:
            await conn.exec_driver_sql(insert_sql, encoded.rows(start, stop))
        await _faults.reached("staging")

    async def _publish(self, session: AsyncSession, handle: UploadTask, req: _Request, encoded, content_hash: str, stage: str) -> DatasetVersion:
        """Turn the staging table into the next version, all in one transaction."""
        now = utcnow()
        conn = await session.connection()
        # Publishers of one dataset take turns on its catalog row, so version numbers are
        # allocated without a read-then-write race, also across processes and machines.
        dataset = await find_dataset(session, req.name, for_update=True)
        manifest = encoded.manifest
        rows = encoded.nrows
        if dataset is None:
            # Another publisher may be creating the same dataset right now: the insert gives way.
            insert = _dialect_insert(conn.dialect.name)(datasets).values(
                name=req.name,
                description=req.description or "",
                tags=req.tags or {},
                created_at=now,
                updated_at=now,
                next_version=1,
                view_name="",
            )
            await session.execute(insert.on_conflict_do_nothing(index_elements=[datasets.c.name]))
            dataset = await find_dataset(session, req.name, for_update=True)
            if not dataset.view_name:
                await session.execute(
                    datasets.update().where(datasets.c.id == dataset.id).values(view_name=view_name(dataset.id, req.name))
                )
                dataset = await find_dataset(session, req.name, for_update=True)
        if dataset.latest_version is not None:
            if req.if_exists == "fail":
                raise VersionConflict(f"dataset {req.name!r} was created by another upload meanwhile and if_exists='fail'")
            if req.if_exists == "append":
                # Checked again here: another push may have published since this one was queued.
                latest = await find_version(session, dataset)
                _check_append(req.name, latest.manifest, manifest)
                plan = plan_append(latest.manifest, manifest, lambda ident: quote(conn, ident), conn.dialect.name)
                target = quote(conn, stage)
                if conn.dialect.name != "sqlite":
                    # SQLite stores any value in a BLOB column; elsewhere the all-NULL column
                    # takes the type of the values it receives, and a native type a general one.
                    for column, sql_type, using in plan.retype:
                        compiled = _SQL_TYPES[sql_type]().compile(dialect=conn.dialect)
                        await conn.exec_driver_sql(
                            f"ALTER TABLE {target} ALTER COLUMN {quote(conn, column)} TYPE {compiled} USING {using}"
                        )
                for column in plan.to_bytes:
                    bytes_expr = utf8_bytes(quote(conn, column), conn.dialect.name)
                    if conn.dialect.name == "postgresql":
                        await conn.exec_driver_sql(
                            f"ALTER TABLE {target} ALTER COLUMN {quote(conn, column)} TYPE BYTEA USING {bytes_expr}"
                        )
                    else:  # SQLite keeps a BLOB as it is in any column
                        await conn.exec_driver_sql(f"UPDATE {target} SET {quote(conn, column)} = {bytes_expr}")
                for marks, value, code in plan.add_marks:
                    await conn.exec_driver_sql(f"ALTER TABLE {target} ADD COLUMN {quote(conn, marks)} BIGINT")
                    await conn.exec_driver_sql(
                        f"UPDATE {target} SET {quote(conn, marks)} = {int(code)} WHERE {quote(conn, value)} IS NULL"
                    )
                row_id = quote(conn, ROW_ID)
                prev = quote(conn, latest.table_name)
                names = ", ".join(quote(conn, column) for column, _ in plan.select_old)
                exprs = ", ".join(expr for _, expr in plan.select_old)
                # Previous rows get row ids up to 0, so they sort before the staged rows (1..n).
                await conn.exec_driver_sql(
                    f"INSERT INTO {target} ({row_id}, {names}) "
                    f"SELECT {row_id} - (SELECT COALESCE(MAX({row_id}), 0) FROM {prev}), {exprs} FROM {prev}"
                )
                manifest = plan.manifest
                rows = latest.rows + encoded.nrows
                content_hash = hashlib.sha256(f"{latest.content_hash}+{content_hash}".encode()).hexdigest()
        number = dataset.next_version
        table_name = version_table_name(dataset.id, number)
        if conn.dialect.name != "sqlite":
            # Built once over all rows: keeping it up while the rows stream in costs twice as much.
            await conn.exec_driver_sql(
                f"ALTER TABLE {quote(conn, stage)} ADD CONSTRAINT {quote(conn, table_name + '_pkey')} "
                f"PRIMARY KEY ({quote(conn, ROW_ID)})"
            )
        await conn.exec_driver_sql(f"ALTER TABLE {quote(conn, stage)} RENAME TO {quote(conn, table_name)}")
        by = created_by()
        await session.execute(
            versions.insert().values(
                dataset_id=dataset.id,
                version=number,
                table_name=table_name,
                rows=rows,
                columns=len(codec.schema(manifest)),
                manifest=manifest,
                content_hash=content_hash,
                created_at=now,
                created_by=by,
                task_id=handle.id,
            )
        )
        changes = {"latest_version": number, "next_version": number + 1, "updated_at": now, **_dataset_changes(req)}
        await session.execute(datasets.update().where(datasets.c.id == dataset.id).values(**changes))
        await point_latest(session, dataset, table_name)
        # Staged rows kept for a resume would now publish over a newer version: they go.
        kept = (
            await session.execute(
                select(tasks.c.id, tasks.c.staging_table).where(
                    tasks.c.dataset == req.name, tasks.c.status == "interrupted", tasks.c.staging_table.is_not(None)
                )
            )
        ).all()
        await _let_go(session, kept)
        version = DatasetVersion(
            name=req.name,
            version=number,
            rows=rows,
            columns=len(codec.schema(manifest)),
            created_at=now,
            content_hash=content_hash,
            table_name=table_name,
            task_id=handle.id,
            created_by=by,
        )
        version = await self._record_success(session, handle, version)
        await _faults.reached("publishing")
        return version

    async def _record_success(self, session: AsyncSession, handle: UploadTask, version: DatasetVersion) -> DatasetVersion:
        """Write the task's success; part of the publish transaction, so both land or neither."""
        await self._update_task(
            session,
            handle,
            status="succeeded",
            version=version.version,
            deduplicated=version.deduplicated,
            content_hash=version.content_hash,
            staging_table=None,
            rows_done=handle.rows_done,
            attempts=handle.attempts,
            finished_at=utcnow(),
        )
        return version

    def _stands(self, handle: UploadTask, version: DatasetVersion) -> DatasetVersion:
        """A cancel came once the publish had committed: the version is there, and the upload
        says so rather than claim that nothing was published."""
        asyncio.current_task().uncancel()
        log.info("upload %s: a cancel arrived after its publish committed; version %d stands", handle.id, version.version)
        return self._succeed(handle, version)

    def _succeed(self, handle: UploadTask, version: DatasetVersion) -> DatasetVersion:
        handle.version = version
        handle._resubmit = None
        handle._set(status="succeeded")
        return version

    async def _abandon(self, session: AsyncSession, handle: UploadTask, stage: str | None, *, status: str, error: BaseException | None) -> None:
        """Record the end of a failed, cancelled or interrupted upload and drop its staging rows
        (an interrupted upload keeps those it committed, for a resume).

        Runs in a fresh session of this task: the task's main session may be mid-statement. Any
        error here is logged, never raised over the original one.
        """
        handle.error = error
        handle._set(status=status)
        try:
            await run_to_completion(session.rollback())
        except Exception:  # noqa: BLE001 - the connection may be gone; the cleanup below still runs
            log.debug("rollback after upload %s ended failed", handle.id, exc_info=True)
        await run_to_completion(self._cleanup(handle, stage, status, error))

    async def _cleanup(self, handle: UploadTask, stage: str | None, status: str, error: BaseException | None) -> None:
        async def record() -> None:
            async with write_transaction(self._write, self._gate) as cleanup:
                # The rows committed, as the catalog has them: each chunk's count is committed with
                # its rows, while the handle's may lag one chunk behind when a cancel lands.
                committed = (await cleanup.execute(select(tasks.c.rows_done).where(tasks.c.id == handle.id))).scalar()
                # Only an interrupted upload keeps its staging table, and only with committed rows.
                keep = status == "interrupted" and stage is not None and bool(committed)
                if stage is not None and not keep:
                    await drop_table(cleanup, stage)
                # A cancel that lands while the publish commits must not overwrite its success.
                await cleanup.execute(
                    tasks.update()
                    .where(tasks.c.id == handle.id, tasks.c.status != "succeeded")
                    .values(
                        status=status,
                        **({} if keep else {"staging_table": None}),
                        error=None if error is None else str(error),
                        attempts=handle.attempts,
                        finished_at=handle.finished_at,
                    )
                )
                if committed is not None:
                    handle.rows_done = committed

        try:
            # A locked database must not leave the row saying "running" while this process lives.
            await with_retries(self._retry, record, label=f"recording the end of upload {handle.id}")
        except Exception:  # noqa: BLE001 - reported through the handle and the log, never hides the cause
            log.exception("could not record the end of upload %s (%s)", handle.id, status)


async def _commit_through_cancel(session: AsyncSession) -> bool:
    """Commit, finishing the commit even if a cancel arrives meanwhile; return whether one did.

    Raises the commit's error, or, when a cancel arrived and the commit failed, the cancel.
    """
    commit = asyncio.ensure_future(session.commit())
    cancelled: asyncio.CancelledError | None = None
    while not commit.done():
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError as exc:
            if commit.done() and commit.cancelled():
                raise
            cancelled = exc
        except Exception:
            break
    if cancelled is not None and commit.exception() is not None:
        raise cancelled from commit.exception()
    commit.result()
    return cancelled is not None


class _Checkpoints:
    """SQLite WAL checkpoints that run beside the staging writes, one at a time.

    Copying the write-ahead log into the database file is about a sixth of an upload's cost.
    Started after each chunk on another connection, whose thread does the copying without the
    GIL, it overlaps the next chunk's encoding instead of stalling a commit.
    """

    def __init__(self, checkpoint: Callable[[], Awaitable[None]] | None) -> None:
        self._checkpoint = checkpoint
        self._running: asyncio.Task | None = None

    def start(self) -> None:
        if self._checkpoint is None or (self._running is not None and not self._running.done()):
            return
        self._running = asyncio.ensure_future(self._checkpoint())

    async def close(self) -> None:
        """Wait for the checkpoint in flight, even when cancelled: cut short, it would leave its
        connection half-reset. Its failure only delays the copying, so it is logged."""
        if self._running is None:
            return
        try:
            await run_to_completion(self._running)
        except Exception:  # noqa: BLE001 - a missed checkpoint is retried by SQLite itself
            log.debug("a WAL checkpoint during an upload failed", exc_info=True)


_FIXED_WIDTHS = {"BOOLEAN": 1, "INTEGER": 8, "REAL": 8, "TIMESTAMP": 8, "TIMESTAMPTZ": 8, "INTERVAL": 16}


async def _let_go(session: AsyncSession, kept) -> None:
    """Drop the staging tables kept for these interrupted uploads (rows with ``id`` and
    ``staging_table``), and record that they are gone."""
    for r in kept:
        await drop_table(session, r.staging_table)
        await session.execute(tasks.update().where(tasks.c.id == r.id).values(staging_table=None))


def _row_bytes(columns) -> int:
    """A lower bound of a PostgreSQL row's size: the tuple header, the null bitmap, the row id,
    each fixed-width value (1 byte per boolean, 8 per number or timestamp, 16 per interval), and
    an 18-byte pointer per text, binary, numeric or JSON value moved out of line."""
    fixed = sum(_FIXED_WIDTHS.get(c.sql_type, 18) for c in columns)
    return 24 + (len(columns) + 1 + 7) // 8 + 8 + fixed


def _dialect_insert(dialect: str):
    """``insert`` with ``on_conflict_do_nothing`` for the databases dsnotebook supports."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _failure_message(name: str, exc: BaseException) -> str:
    """``"the upload of 'x' failed: <why>"``, with a driver error put in users' words once."""
    upload = f"the upload of {name!r}"
    if not isinstance(exc, DsnotebookError):
        translated = translate(exc, what=upload)
        if isinstance(translated, UploadError):
            return str(translated)  # it already names the upload
        exc = translate(exc, what="the database")
    return f"{upload} failed: {exc}"


def _dataset_changes(req: _Request, dataset=None) -> dict[str, Any]:
    """The description and tags a push sets (only those given, and only if they differ)."""
    changes: dict[str, Any] = {}
    if req.description is not None and (dataset is None or dataset.description != req.description):
        changes["description"] = req.description
    if req.tags is not None and (dataset is None or dataset.tags != req.tags):
        changes["tags"] = req.tags
    return changes


def _check_append(name: str, old_manifest: dict, new_manifest: dict) -> None:
    added, missing, retyped = codec.schema_diff(old_manifest, new_manifest)
    if not (added or missing or retyped):
        return
    parts = []
    if added:
        parts.append("added " + ", ".join(repr(a) for a in added))
    if missing:
        parts.append("missing " + ", ".join(repr(m) for m in missing))
    if retyped:
        parts.append("retyped " + ", ".join(f"{label!r} ({old} -> {new})" for label, old, new in retyped))
    raise SchemaMismatch(
        f"cannot append to {name!r}: the frame's schema differs from the latest version: {'; '.join(parts)}. "
        "Use if_exists='replace' to publish a new schema",
        added=added,
        missing=missing,
        retyped=retyped,
    )


def _table(name: str, columns, dialect: str) -> Table:
    """The staging table. On SQLite the row id is the rowid itself; elsewhere the upload sends
    the row ids and the publish adds the primary key (see :func:`add_primary_key`)."""
    if dialect == "sqlite":
        row_id = Column(ROW_ID, Integer(), primary_key=True, autoincrement=True)
    else:
        row_id = Column(ROW_ID, BigInteger(), nullable=False, autoincrement=False)
    return Table(name, MetaData(), row_id, *(Column(c.name, _SQL_TYPES[c.sql_type]()) for c in columns))


def _insert_sql(session: AsyncSession, table: str, encoded) -> str:
    dialect = session.bind.dialect
    q = dialect.identifier_preparer.quote
    names = [q(c.name) for c in encoded.columns]
    if dialect.name != "sqlite":  # the row ids are sent along; see _table
        names.insert(0, q(ROW_ID))
    n = len(names)
    style = dialect.paramstyle
    if style == "qmark":
        marks = ["?"] * n
    elif style == "format":
        marks = ["%s"] * n
    elif style == "numeric_dollar":
        marks = [f"${i}" for i in range(1, n + 1)]
    elif style == "numeric":
        marks = [f":{i}" for i in range(1, n + 1)]
    else:
        raise UsageError(f"the driver's parameter style {style!r} is not supported")
    return f"INSERT INTO {q(table)} ({', '.join(names)}) VALUES ({', '.join(marks)})"
