"""Orchestration: :class:`DatasetUploadService` validates a push, records it as queued, and runs
it as a task of the hub's :class:`~dsnotebook.tasks.BackgroundTaskService`, with a session of its
own: chunk by chunk into the staging table (each chunk committed with the task's progress), then
the publish in one transaction. A failure or cancel drops the staging rows and records how the
upload ended; an interrupted upload (its process went away) keeps its committed rows, so that
pushing the same content again resumes from them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .. import _compat as compat
from .. import _faults
from ..errors import DsnotebookError, UploadError, VersionConflict
from ..models import DatasetVersion
from ..progress import Listeners
from ..retry import RetryPolicy, with_retries
from ..store import codec
from ..store.backends import Backend
from ..store.backends.base import await_thread
from ..store.catalog import datasets, stage_table_name, tasks, utcnow
from ..store.engine import WriteGate, translate, write_transaction
from ..store.repository import drop_table, find_dataset, find_version, to_version
from ..store.streams import StreamedFrame
from ..tasks import BackgroundTaskService, finish_through_cancel, release_cancelled_frames, rollback_keeping_a_cancel, run_to_completion
from .handle import UploadTask
from .publish import dataset_changes, publish, record_success
from .staging import DEFAULT_KEEP_INTERRUPTED_S, Checkpoints, Staging
from .validate import IfExists, Request, check_append, check_free_space, check_writable, encode_for, validate_name, validate_options

__all__ = ["DEFAULT_CHUNK_SIZE", "DatasetUploadService", "owner"]

log = logging.getLogger("dsnotebook")
T = TypeVar("T")

#: Rows per staging chunk: large enough to amortise a commit, small enough to keep memory flat
#: and the event loop responsive.
DEFAULT_CHUNK_SIZE = 50_000
#: Recording the end of an upload gets this many times the retry policy's attempts.
END_RECORD_RETRIES = 4
#: How many of its most recent uploads a hub remembers for ``Hub.uploads()`` and the panel.
HISTORY_LENGTH = 100


def owner() -> tuple[str, int]:
    """This process as recorded on its tasks: (host, pid)."""
    return socket.gethostname(), os.getpid()


class DatasetUploadService:
    """Validates pushes and runs them as background tasks with sessions of their own."""

    def __init__(
        self,
        *,
        task_service: BackgroundTaskService,
        write_sessions: async_sessionmaker,
        backend: Backend,
        retry: RetryPolicy | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        checkpoint: Callable[[], Awaitable[None]] | None = None,
        gate: WriteGate | None = None,
        keep_interrupted: float = DEFAULT_KEEP_INTERRUPTED_S,
        io: Any = None,
        read_sessions: async_sessionmaker | None = None,
    ) -> None:
        self._service = task_service
        self._backend = backend
        # Whether the codec stores native types here (a test writes what older releases wrote).
        self._native_types = backend.capabilities.native_types
        self._io = io
        self._gate = gate or WriteGate(exclusive=False)
        self._checkpoint = checkpoint
        self._write = write_sessions
        self._read = read_sessions or write_sessions
        self._retry = retry or RetryPolicy()
        self.staging = Staging(
            backend=backend, write_sessions=write_sessions, gate=self._gate, retry=self._retry, keep_interrupted=keep_interrupted
        )
        self._chunk_size = chunk_size
        self._handles: dict[str, UploadTask] = {}
        self._history: deque[UploadTask] = deque(maxlen=HISTORY_LENGTH)
        self._submit_listeners: Listeners[Callable[[UploadTask], None]] = Listeners()
        self._recording: set[asyncio.Task] = set()
        self._ended_counts: dict[str, int] = {"succeeded": 0, "failed": 0, "cancelled": 0, "interrupted": 0}

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
        check_space: bool = True,
        retry_of: UploadTask | None = None,
    ) -> UploadTask:
        """Validate everything, record the task as queued, and schedule the upload.

        ``retry_of``: the ended upload this one starts again; the two handles are linked
        (:attr:`UploadTask.retry_of`, :attr:`UploadTask.retried_by`) before anyone hears of it.

        Raises:
            ValidationError: bad frame, name or option; nothing was written.
            VersionConflict: ``if_exists="fail"`` and the dataset exists.
            SchemaMismatch: ``if_exists="append"`` with a schema other than the latest version's.
        """
        # Copy-on-write makes this snapshot free until the caller mutates the frame.
        snapshot = compat.snapshot(obj) if isinstance(obj, (pd.DataFrame, pd.Series)) else obj
        encoded = self.validate(
            snapshot,
            name,
            description=description,
            tags=tags,
            if_exists=if_exists,
            priority=priority,
            chunk_size=chunk_size,
            check_space=check_space,
        )
        request = Request(
            name=name,
            description=description,
            tags=None if tags is None else dict(tags),
            if_exists=if_exists,
            chunk_size=chunk_size or self._chunk_size,
            check_space=check_space,
        )
        task_id = uuid.uuid4().hex
        host, pid = owner()

        async def record_queued() -> None:
            async with write_transaction(self._write, self._gate) as session:
                await _check_target(session, name, if_exists, encoded, self._backend)
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
        handle = UploadTask(
            task_id=task_id,
            dataset=name,
            rows_total=encoded.nrows,
            loop=asyncio.get_running_loop(),
            bytes_total=encoded.estimated_nbytes(),
        )
        self._handles[task_id] = handle
        task = self._service.create_task_with_session(
            self._run, handle, encoded, request, task_name=f"push {name!r} [{task_id[:8]}]", priority=priority
        )
        handle._task = task
        handle._owner = self
        if retry_of is not None:
            handle.retry_of = retry_of.id
            retry_of._set(retried_by=handle)
        # A stream is read once, by this upload: there is nothing to push again.
        handle._resubmit = None if isinstance(encoded, StreamedFrame) else functools.partial(
            self.submit,
            snapshot,
            name,
            description=description,
            tags=request.tags,
            if_exists=if_exists,
            priority=priority,
            chunk_size=chunk_size,
            check_space=check_space,
        )
        task.add_done_callback(functools.partial(self._ended, handle))
        self._history.append(handle)
        for listener in self._submit_listeners.snapshot():
            try:
                listener(handle)
            except Exception:  # noqa: BLE001 - a display problem must never break an upload
                log.exception("upload listener failed for task %s", task_id)
        return handle

    def validate(
        self,
        obj: Any,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
        if_exists: IfExists = "replace",
        priority: int = 0,
        chunk_size: int | None = None,
        check_space: bool = True,
    ) -> codec.EncodedFrame:
        """The checks of :meth:`submit` that need no database: the name, the options, the frame
        against this database's storage and limits, and (``check_space``) the free disk space
        where it can be seen. Safe on any thread.

        Returns the encoded frame.

        Raises:
            UsageError: the database is opened read-only.
            ValidationError: naming the argument, column or value, and what would be accepted.
        """
        check_writable(self._backend)
        validate_name(name)
        validate_options(
            description=description, tags=tags, if_exists=if_exists, priority=priority, chunk_size=chunk_size, check_space=check_space
        )
        encoded = encode_for(obj, self._backend, native_types=self._native_types)
        if check_space:
            check_free_space(name, encoded, self._backend)
        return encoded

    async def check_target(self, name: str, if_exists: IfExists, encoded: codec.EncodedFrame) -> None:
        """The checks of :meth:`submit` against the dataset as it stands (``"fail"`` on an
        existing dataset, an append's schema), in a read session of its own.

        Raises:
            VersionConflict, SchemaMismatch: as :meth:`submit` would.
        """
        if if_exists != "replace":
            async with self._read() as session:
                await _check_target(session, name, if_exists, encoded, self._backend)

    def counts(self) -> dict[str, int]:
        """This service's uploads by status: the live ones, and those that ended since it started."""
        live = [handle.status for handle in self._handles.values()]
        return {**self._ended_counts, "queued": live.count("queued"), "running": live.count("running")}

    def _ended(self, handle: UploadTask, task: asyncio.Task) -> None:
        self._handles.pop(handle.id, None)
        try:
            self._count_and_report(handle)
        except Exception:  # noqa: BLE001 - reporting must never break the end of an upload
            log.exception("reporting the end of upload %s failed", handle.id)
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

    def _count_and_report(self, handle: UploadTask) -> None:
        # A queued upload cancelled before it ran still says "queued" here; it ended cancelled.
        status = handle.status if handle.status != "queued" else ("interrupted" if handle._interrupting else "cancelled")
        self._ended_counts[status] = self._ended_counts.get(status, 0) + 1
        seconds = handle.elapsed
        rows = handle.rows_done
        version = handle.version.version if status == "succeeded" and handle.version is not None else None
        metrics = {
            "task_id": handle.id,
            "dataset": handle.dataset,
            "status": status,
            "version": version,
            "rows": rows,
            "bytes": handle.bytes_written,
            "seconds": round(seconds, 6),
            "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
            "peak_rows_per_s": handle._final_peak(),
            "attempts": handle.attempts,
        }
        log.info(
            "upload %s of %r %s: version %s, %d rows, %d bytes in %.2f s (%s rows/s), %d attempt(s)",
            handle.id,
            handle.dataset,
            status,
            version,
            rows,
            metrics["bytes"],
            seconds,
            metrics["rows_per_s"],
            handle.attempts,
            extra=metrics,
        )

    async def drain(self) -> None:
        """Wait until the ends of cancelled uploads are recorded; a hub calls this before closing."""
        while self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)

    # -- the task ---------------------------------------------------------------------------

    async def _run(self, session: AsyncSession, handle: UploadTask, encoded: codec.EncodedFrame, req: Request) -> DatasetVersion:
        stage = stage_table_name(handle.id)
        staged = False
        version: DatasetVersion | None = None
        streamed = isinstance(encoded, StreamedFrame)
        try:
            handle._set(status="running", attempts=1)
            if streamed:
                await self._read_stream(handle, encoded, req)
            content_hash = encoded.content_hash()
            # The frame's hash is recorded at once: it is what a later push of the same content
            # looks for to resume this one's staged rows, should this one be interrupted.
            await self._retrying(
                handle,
                session,
                lambda: self._update_task(
                    session,
                    handle,
                    status="running",
                    started_at=handle.started_at,
                    attempts=1,
                    content_hash=content_hash,
                    rows_total=encoded.nrows,
                ),
            )
            existing = await self._retrying(handle, session, lambda: self._dedupe(session, req, encoded, content_hash))
            if existing is not None:
                handle._set(rows_done=encoded.nrows, bytes_total=0)
                await self._retrying(handle, session, lambda: record_success(session, handle, existing))
                return self._succeed(handle, existing)

            staged = True
            done = await self._retrying(handle, session, lambda: self.staging.resume(session, handle.id, req.name, content_hash, stage))
            if done is None:
                done = 0
                await self._retrying(handle, session, lambda: self.staging.create(session, stage, encoded))
            else:
                handle._set(rows_done=done)
            writer = self._backend.open_writer(stage, encoded, io=self._io)
            checkpoints = Checkpoints(self._checkpoint)
            handle._rate_sample(done)
            try:
                for start in range(done, encoded.nrows, req.chunk_size):
                    stop = min(start + req.chunk_size, encoded.nrows)
                    await writer.prepare(start, stop)
                    write = functools.partial(self._write_chunk, session, handle, writer, start, stop)
                    await self._retrying(handle, session, write)
                    handle._set(rows_done=stop)
                    checkpoints.start()
                    await _faults.reached("between_chunks")
            finally:
                # Both, whatever happens: a second cancel arriving while the writer closes is
                # raised after its close, and must not leave the checkpoint in flight (with its
                # connection checked out) once the upload has ended.
                try:
                    await run_to_completion(writer.aclose())
                finally:
                    await checkpoints.close()
            version = await self._retrying(
                handle, session, lambda: publish(session, self._backend, handle, req, encoded, content_hash, stage), settle=True
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
        finally:
            if streamed:
                encoded.close()

    async def _read_stream(self, handle: UploadTask, encoded: StreamedFrame, req: Request) -> None:
        """Read a pushed stream to its end into its spool file, in a thread of its own, while the
        handle's total counts the rows read; then check the disk has room for them.

        A cancel stops the reading at the next slice, and is raised once the thread has ended.
        """
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def on_rows(rows: int) -> None:
            loop.call_soon_threadsafe(lambda: handle._set(rows_total=rows))

        done: concurrent.futures.Future = concurrent.futures.Future()

        def read() -> None:
            try:
                encoded.spool(on_rows, stop.is_set)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                done.set_exception(exc)
            else:
                done.set_result(None)

        # A thread of its own, which ends with the reading: a stream can take long, and the
        # hub's I/O threads stay free for other uploads meanwhile.
        threading.Thread(target=read, name=f"dsnotebook-stream-{handle.id[:8]}", daemon=True).start()
        await await_thread(asyncio.wrap_future(done), on_cancel=stop.set)
        handle._set(rows_total=encoded.nrows, bytes_total=encoded.estimated_nbytes())
        if req.check_space:
            check_free_space(req.name, encoded, self._backend)

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
                        _, handle._cancel_came_late = await finish_through_cancel(session.commit())
                    else:
                        # Cut short, the commit would leave its connection half returned to the pool.
                        await run_to_completion(session.commit())
                    return result
                except BaseException as exc:
                    # Free a cancelled statement's cursor before the gate opens: until then it keeps
                    # SQLite's write lock, and the next writer would wait on it.
                    release_cancelled_frames(exc)
                    await rollback_keeping_a_cancel(session, exc)
                    raise

        def count_retry(_exc: BaseException, _failures: int, _delay: float) -> None:
            handle._set(attempts=handle.attempts + 1)

        return await with_retries(self._retry, attempt, label=f"upload {handle.id}", on_retry=count_retry)

    async def expire_staging(self, *, everything: bool = False) -> int:
        """Drop kept staging rows that can no longer be resumed; see :meth:`Staging.expire`."""
        return await self.staging.expire(everything=everything)

    async def _write_chunk(self, session: AsyncSession, handle: UploadTask, writer, start: int, stop: int) -> None:
        """One chunk: its rows, then the task's progress, which the caller commits.

        The writer commits the rows first where it moves them on a connection of its own (see
        :class:`~dsnotebook.store.backends.ChunkWriter`): the progress never counts rows that are
        not there, and a resume counts the staged rows themselves.
        """
        await writer.write(session, start, stop)
        await self._update_task(
            session,
            handle,
            rows_done=stop,
            attempts=handle.attempts,
            heartbeat_at=utcnow(),
            bytes_written=handle.bytes_at(stop),
            peak_rows_per_s=handle._rate_sample(stop),
        )
        await _faults.reached("staging")

    async def _update_task(self, session: AsyncSession, handle: UploadTask, **values: Any) -> None:
        await session.execute(tasks.update().where(tasks.c.id == handle.id).values(**values))

    async def _dedupe(self, session: AsyncSession, req: Request, encoded, content_hash: str) -> DatasetVersion | None:
        """The latest version if this push would publish identical content, else None."""
        dataset = await find_dataset(session, req.name)
        if dataset is None or dataset.latest_version is None:
            return None
        if req.if_exists == "fail":
            raise VersionConflict(
                f"dataset {req.name!r} already exists (latest version {dataset.latest_version}) and if_exists='fail'"
            )
        # An append reads the latest version's manifest: it is checked; a replace only compares hashes.
        latest = await find_version(session, dataset, reader=self._backend if req.if_exists == "append" else None)
        if req.if_exists == "append":
            check_append(req.name, latest.manifest, encoded.manifest)
            if encoded.nrows > 0:
                return None
        elif latest.content_hash != content_hash:
            return None
        # Nothing new to publish, but a new description or tags still apply to the dataset.
        changes = dataset_changes(req, dataset)
        if changes:
            await session.execute(datasets.update().where(datasets.c.id == dataset.id).values(**changes))
        return to_version(latest, dataset.name, deduplicated=True)

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
        # Another cancel may arrive meanwhile (a second click, the hub closing): the rollback and
        # the cleanup still run to their end, and the upload ends as decided. Raised here, that
        # cancel would skip the cleanup, leaving the staging rows and a task row saying "running".
        me = asyncio.current_task()
        cancels = me.cancelling()
        try:
            await finish_through_cancel(session.rollback())
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - the connection may be gone; the cleanup below still runs
            log.debug("rollback after upload %s ended failed", handle.id, exc_info=True)
        await finish_through_cancel(self._cleanup(handle, stage, status, error))
        for _ in range(me.cancelling() - cancels):
            me.uncancel()

    async def _cleanup(self, handle: UploadTask, stage: str | None, status: str, error: BaseException | None) -> None:
        async def record() -> None:
            async with write_transaction(self._write, self._gate) as cleanup:
                # The rows committed, as the catalog has them (the handle's count may lag one chunk
                # behind when a cancel lands); for rows kept for a resume, as the staging table has
                # them, since a chunk's rows are committed before its progress.
                committed = None
                if status == "interrupted" and stage is not None:
                    committed = await self.staging.staged_rows(cleanup, stage)
                if committed is None:
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
                        **({"rows_done": committed} if keep else {"staging_table": None}),
                        error=None if error is None else str(error),
                        attempts=handle.attempts,
                        finished_at=handle.finished_at,
                        **({} if committed is None else {"bytes_written": handle.bytes_at(committed)}),
                        peak_rows_per_s=handle._final_peak(),
                    )
                )
                if committed is not None:
                    handle.rows_done = committed

        try:
            # A locked database must not leave the row saying "running" while this process lives:
            # the end is worth more attempts than any one step of the work.
            policy = dataclasses.replace(self._retry, attempts=self._retry.attempts * END_RECORD_RETRIES)
            await with_retries(policy, record, label=f"recording the end of upload {handle.id}")
        except Exception:  # noqa: BLE001 - reported through the handle and the log, never hides the cause
            log.exception("could not record the end of upload %s (%s)", handle.id, status)


def _failure_message(name: str, exc: BaseException) -> str:
    """``"the upload of 'x' failed: <why>"``, with a driver error put in users' words once."""
    upload = f"the upload of {name!r}"
    if not isinstance(exc, DsnotebookError):
        translated = translate(exc, what=upload)
        if isinstance(translated, UploadError):
            return str(translated)  # it already names the upload
        exc = translate(exc, what="the database")
    return f"{upload} failed: {exc}"




async def _check_target(session: AsyncSession, name: str, if_exists: str, encoded: codec.EncodedFrame, backend: Backend) -> None:
    """Refuse a push the dataset as it stands would refuse: ``"fail"`` on an existing one, or an
    append whose schema differs from the latest version's."""
    if if_exists == "replace":
        return
    dataset = await find_dataset(session, name)
    if dataset is None or dataset.latest_version is None:
        return
    if if_exists == "fail":
        raise VersionConflict(
            f"dataset {name!r} already exists (latest version {dataset.latest_version}) and "
            "if_exists='fail'; use if_exists='replace' or 'append'"
        )
    latest = await find_version(session, dataset, reader=backend)
    check_append(name, latest.manifest, encoded.manifest)
