"""``AsyncHub``: the async face of a hub, for async applications (a FastAPI service, say).

It does all the work on the loop that awaits it: it opens the engine, runs uploads as background
tasks with sessions of their own, and reads. The sync :class:`~dsnotebook.hub.Hub` owns one and
runs it on the library's portal loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import pyarrow as pa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from ._keywords import suggest_keywords
from ._listeners import report_failure
from .errors import ConfigError, DatasetError, DsnotebookError, HubClosed, UsageError, ValidationError
from .models import DatasetInfo, HubStatus
from .monitor import LoopLag, ProcessFigures, memory_limit_bytes
from .retry import RetryPolicy, with_retries
from .store.backends import Backend, backend_for
from .store.catalog import open_catalog
from .store.engine import WriteGate, mask_url, translate
from .store.kinds import To
from .store.repository import Repository
from .tasks import BackgroundTaskService
from .upload import DEFAULT_KEEP_INTERRUPTED_S, DatasetUploadService, IfExists, UploadTask
from .upload.leases import DEFAULT_LEASE_S, Leases
from .upload.validate import check_writable

if TYPE_CHECKING:
    import polars as pl

__all__ = ["AsyncHub"]

log = logging.getLogger("dsnotebook")
T = TypeVar("T")

#: How long :meth:`AsyncHub.tasks` (and so :meth:`Hub.tasks`) waits, right after the hub opened,
#: for its first housekeeping pass to mark the uploads of ended processes interrupted.
TASKS_WAIT_S = 5.0


class AsyncHub:
    """The async face: every method runs on the caller's event loop.

    Use as ``async with AsyncHub(url) as hub:`` or call :meth:`open` / :meth:`aclose` yourself.
    The arguments are checked here; the database is opened by :meth:`open` (or the first call).

    Args:
        url: a database URL (see :func:`~dsnotebook.store.backends.backend_for` for the supported
            forms); None means ``DSNOTEBOOK_URL`` or the per-user SQLite file.
        concurrency: uploads running at once (default: the backend's; 1 on SQLite, 4 on PostgreSQL).
        retry: retry policy for transient errors per chunk (default: :class:`RetryPolicy()`).
        chunk_size: default rows per staging chunk (50,000 unless a push says otherwise).
        lease: seconds after which an upload whose process stopped renewing its heartbeat is
            marked interrupted, when that process ran on another machine (on this machine, a
            process that no longer runs is recognised at once).
        keep_interrupted: seconds (or a ``timedelta``) to keep the staged rows of an interrupted
            upload, so that pushing the same content again resumes from them; 7 days by default.
            They go sooner once the dataset gets a newer version, or with :meth:`cleanup`.
        create: False refuses, with a ``ConfigError``, a SQLite file that does not exist (instead
            of creating a new, empty database) and a database without a dsnotebook catalog
            (instead of creating the catalog's tables), as on a PostgreSQL database nothing was
            pushed to yet. An older catalog is still migrated.
        schema: the PostgreSQL schema that holds this hub's catalog and data tables, such as
            ``"analytics_bi"`` (or ``?schema=analytics_bi`` in the URL; both given must agree):
            hubs on other schemas of the database never see its datasets. Opening creates it
            when ``create`` is True and the role may (CREATE on the database); a role that may
            only read there (USAGE and SELECT) can list and pull, and :attr:`writable` is then
            False. Default: the role's search path (usually ``public``). Refused for SQLite.
        file_mode: the permission bits of a SQLite database file this hub creates, such as
            ``0o640`` for a team directory whose group may read it (default: ``0o600``, its owner
            alone, unless ``DSNOTEBOOK_UMASK`` such as ``027`` says otherwise); a directory
            created on the way gets the same read bits plus search (``0o750``). SQLite's ``-wal``
            and ``-shm`` files follow the database file. An existing file keeps its bits, except
            in the default store ``~/.dsnotebook``, whose directory and files lose at connect any
            bits for other users beyond these (logged at INFO). Refused for PostgreSQL.

    Raises:
        ConfigError: the URL names an unsupported database or driver.
        ValidationError: an argument is out of range.
        TypeError: an unknown keyword argument (the nearest valid name is suggested).
    """

    @suggest_keywords
    def __init__(
        self,
        url: str | URL | None = None,
        *,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        chunk_size: int | None = None,
        lease: float = DEFAULT_LEASE_S,
        keep_interrupted: float | timedelta = DEFAULT_KEEP_INTERRUPTED_S,
        create: bool = True,
        schema: str | None = None,
        file_mode: int | None = None,
    ) -> None:
        self.backend: Backend = backend_for(url, schema=schema, file_mode=file_mode)
        self.url: URL = self.backend.url
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not lease > 0:
            raise ValidationError(f"lease: expected a positive number of seconds, got {lease!r}")
        self._lease = float(lease)
        if isinstance(keep_interrupted, timedelta):
            keep_interrupted = keep_interrupted.total_seconds()
        if isinstance(keep_interrupted, bool) or not isinstance(keep_interrupted, (int, float)) or not keep_interrupted >= 0:
            raise ValidationError(
                f"keep_interrupted: expected a number of seconds >= 0 or a timedelta, got {keep_interrupted!r}"
            )
        self._keep_interrupted = float(keep_interrupted)
        if not isinstance(create, bool):
            raise ValidationError(f"create: expected True or False, got {create!r}")
        self._create = create
        self._leases: Leases | None = None
        self._heartbeat: asyncio.Task | None = None
        # The loop's lateness, sampled while the hub is open; the process's own figures.
        self._lag = LoopLag()
        self._lag_task: asyncio.Task | None = None
        self._process: ProcessFigures | None = None
        if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1):
            raise ValidationError(f"concurrency: expected a positive int, got {concurrency!r}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValidationError(f"chunk_size: expected a positive int, got {chunk_size!r}")
        self._concurrency = concurrency or self.backend.capabilities.default_concurrency
        self._retry = retry
        self._chunk_size = chunk_size
        self._engine: AsyncEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._open_lock: asyncio.Lock | None = None
        self.task_service: BackgroundTaskService | None = None
        self._uploads: DatasetUploadService | None = None
        self._repo: Repository | None = None
        self._io: concurrent.futures.ThreadPoolExecutor | None = None
        # The reads, deletes and cleanups under way (see _guard): closing waits for them.
        self._operations: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._engine is not None else "not opened")
        return f"<AsyncHub {mask_url(self.url)} ({state})>"

    @property
    def engine(self) -> AsyncEngine:
        self._check_open()
        return self._engine

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def writable(self) -> bool:
        """Whether this hub may push, delete and clean up, as found when it opened: False for a
        read-only URL (those calls then raise ``UsageError``) and for a database role that may
        only read the schema (``ConfigError``, naming the rights it lacks and the GRANTs to ask
        for). A GRANT given later counts once the hub connects again."""
        return self.backend.writable

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> AsyncHub:
        """Connect, check the catalog (creating or migrating it where needed), and start the
        housekeeping in the background.

        Checking an up-to-date catalog only reads, so opening never waits for another process's
        write lock. The housekeeping (marking the uploads of ended processes interrupted,
        dropping expired kept rows) starts at once, takes the write lock only when it has
        something to write, and retries like an upload; :meth:`wait_housekeeping` waits for it,
        and :meth:`tasks` does for a few seconds.

        Raises:
            ConfigError: the database cannot be reached or used, or does not exist and
                ``create`` is False.
            VersionConflict: the catalog was written by a newer dsnotebook.
        """
        if self._closed:
            raise HubClosed(f"{self!r} is closed; connect again")
        if self._engine is not None:
            return self
        backend = self.backend
        engine = await backend.open_engine(create=self._create)
        retry = self._retry or RetryPolicy()
        # Driver calls that run off the event loop (bulk transfers) get threads of their own,
        # which close with the hub.
        io = concurrent.futures.ThreadPoolExecutor(backend.io_workers(), thread_name_prefix="dsnotebook-io")
        try:
            # Only a missing or older catalog is written, and another process's lock is then
            # waited out like an upload's.
            await with_retries(
                retry, lambda: open_catalog(engine, backend, create=self._create), label=f"opening {mask_url(self.url)}"
            )
            # Sessions that write start with BEGIN IMMEDIATE on SQLite (see store.backends.sqlite).
            write_sessions = async_sessionmaker(engine.execution_options(dsn_write=True), expire_on_commit=False)
            read_sessions = async_sessionmaker(engine, expire_on_commit=False)
            self.task_service = BackgroundTaskService(write_sessions, concurrency=self._concurrency)
            gate = WriteGate(exclusive=backend.capabilities.single_writer)
            self._repo = Repository(read_sessions, write_sessions, gate, backend=backend, io=io)
            kwargs: dict[str, Any] = {"gate": gate}
            if self._chunk_size is not None:
                kwargs["chunk_size"] = self._chunk_size
            if backend.has_after_chunk:
                kwargs["checkpoint"] = lambda: backend.after_chunk(engine)
            self._uploads = DatasetUploadService(
                task_service=self.task_service,
                write_sessions=write_sessions,
                read_sessions=read_sessions,
                backend=backend,
                io=io,
                retry=self._retry,
                keep_interrupted=self._keep_interrupted,
                **kwargs,
            )
            # The bulk driver loads once per process (a few tenths of a second), here rather than
            # in the middle of the first upload; in the I/O thread, so the loop stays free.
            try:
                await asyncio.get_running_loop().run_in_executor(io, backend.warm_up)
            except Exception:  # noqa: BLE001 - the first transfer then says what is missing
                log.debug("loading the bulk driver failed", exc_info=True)
            self._engine = engine
            self._io = io
            self._loop = asyncio.get_running_loop()
            self._leases = Leases(
                self._uploads, read_sessions, write_sessions, gate, lease=self._lease, retry=retry, writable=backend.writable
            )
            self._heartbeat = self._loop.create_task(self._leases.keep_alive(), name=f"dsnotebook heartbeat {id(self):x}")
            self._lag_task = self._loop.create_task(self._lag.run(), name=f"dsnotebook loop lag {id(self):x}")
            self._process = ProcessFigures()
        except BaseException as exc:
            self._engine = None
            self._io = None
            await engine.dispose()
            io.shutdown(wait=True)
            if isinstance(exc, DsnotebookError) or not isinstance(exc, Exception):
                raise
            raise translate(exc, what=f"opening {mask_url(self.url)}", error=ConfigError) from exc
        return self

    async def __aenter__(self) -> AsyncHub:
        return await self.open()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        # A cancelled caller cancels its uploads too; any other exit waits for them.
        await self.aclose(cancel=exc_type is not None and issubclass(exc_type, (asyncio.CancelledError, KeyboardInterrupt)))

    async def aclose(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Wait for running uploads (or cancel them with ``cancel=True``) and for reads under way,
        then release the engine; see :meth:`Hub.close`."""
        await self._shutdown(cancel=cancel, timeout=timeout, interrupted=False)

    async def _shutdown(self, *, cancel: bool, timeout: float | None, interrupted: bool) -> None:
        # ``interrupted``: the process is going away, not the user cancelling; such uploads are
        # recorded as interrupted, as they would be after a crash.
        if self._closed:
            return
        self._closed = True
        if self._engine is None:
            return
        if cancel and interrupted:
            for handle in self._uploads.handles():
                handle._interrupting = True
        await self.task_service.shutdown(cancel=cancel, timeout=timeout)
        await self._uploads.drain()
        for task in (self._heartbeat, self._lag_task):
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
        if self._operations:
            # A read under way (one a panel started as an upload ended, say) holds a connection:
            # released after the engine, it would go back to a pool nobody closes any more.
            await asyncio.wait(set(self._operations))
        await self._engine.dispose()
        if self._io is not None:
            # Every transfer ended with the upload or read that awaited it: this joins idle threads.
            self._io.shutdown(wait=True)

    def _check_open(self) -> None:
        if self._closed:
            raise HubClosed(f"{self!r} is closed; connect again")

    async def _ready(self) -> None:
        self._check_open()
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            # An engine's pooled connections belong to the loop that made them.
            raise UsageError(
                f"{self!r} was opened on another event loop; open one AsyncHub per loop "
                "(or use the sync Hub, which works from any thread)"
            )
        if self._engine is None:
            if self._open_lock is None:
                self._open_lock = asyncio.Lock()
            async with self._open_lock:
                await self.open()

    # -- datasets ----------------------------------------------------------------------------

    async def push(
        self,
        df: pd.DataFrame | pd.Series | pa.Table | pa.RecordBatchReader | pl.DataFrame | pl.LazyFrame | Any,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
        if_exists: IfExists = "replace",
        priority: int = 0,
        chunk_size: int | None = None,
        check_space: bool = True,
    ) -> UploadTask:
        """Validate ``df`` and start uploading it as dataset ``name`` in the background.

        Returns at once with the task's handle; ``await`` it for the published
        :class:`~dsnotebook.models.DatasetVersion`.

        Args:
            df: a DataFrame, a Series, a ``pyarrow.Table`` or a polars DataFrame (see
                :mod:`dsnotebook.store.kinds` for the Arrow and polars types accepted); ``pull``
                gives back the same kind. What is stored
                is the data as it was when ``push`` returned, whatever happens to it afterwards.
                Or a stream: a ``pyarrow.RecordBatchReader``, an object with the Arrow stream
                interface (``__arrow_c_stream__``) or a polars LazyFrame, checked on its schema
                here and read by the upload in slices, in bounded memory (see
                :mod:`dsnotebook.store.streams`); ``pull`` gives a Table, or a polars
                DataFrame for a LazyFrame.
            name: the dataset's name: any printable text up to 255 characters.
            description, tags: stored on the dataset (tags: a JSON-compatible dict).
            if_exists: ``"replace"`` (a new version holding just this frame), ``"append"`` (a
                new version of the previous rows plus these) or ``"fail"``.
            priority: higher starts first among queued uploads.
            chunk_size: rows per staging chunk.
            check_space: refuse the upload up front when the disk that holds the database has
                less free space than its estimated size plus a margin (SQLite; a server's disk
                cannot be seen, so no check is made on PostgreSQL). A stream's size is known once
                it has been read: the upload then fails, before writing a row, if it does not fit.

        Raises:
            ValidationError, VersionConflict, SchemaMismatch: before anything is scheduled.
            UsageError: the database is opened read-only.
            ConfigError: the database role may not write there (see :attr:`writable`); nothing
                is queued.
        """
        await self._ready()
        # Right after opening, the uploads of ended processes are marked first, so that this
        # push can resume from rows one of them kept. Recording the push needs the same write
        # lock as that pass, so waiting for it costs nothing when the lock is free.
        await self._leases.first_pass(TASKS_WAIT_S)
        return await self._uploads.submit(
            df,
            name,
            description=description,
            tags=tags,
            if_exists=if_exists,
            priority=priority,
            chunk_size=chunk_size,
            check_space=check_space,
        )

    async def pull(
        self,
        name: str,
        version: int | None = None,
        *,
        columns: Sequence | None = None,
        limit: int | None = None,
        to: To | None = None,
    ) -> pd.DataFrame | pd.Series | pa.Table | pl.DataFrame:
        """The stored version (latest by default) as the identical object pushed, or as the kind
        ``to``; see :meth:`Hub.pull`."""
        await self._ready()
        return await self._guard(self._repo.pull(name, version, columns=columns, limit=limit, to=to))

    async def iter_batches(
        self,
        name: str,
        version: int | None = None,
        *,
        columns: Sequence | None = None,
        batch_rows: int = 100_000,
        to: To | None = None,
    ) -> AsyncIterator[pd.DataFrame | pd.Series | pa.Table | pl.DataFrame]:
        """Stream a stored version in exact batches of at most ``batch_rows`` rows, of the kind
        pushed or the kind ``to``; see :meth:`Hub.iter_batches`."""
        await self._ready()
        batches = self._repo.iter_batches(name, version, columns=columns, batch_rows=batch_rows, to=to)
        try:
            while (batch := await self._guard(anext(batches, None))) is not None:
                yield batch
        finally:
            await batches.aclose()

    async def check(
        self,
        df: Any,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
        if_exists: IfExists = "replace",
        priority: int = 0,
        chunk_size: int | None = None,
        check_space: bool = True,
    ) -> None:
        """Run every check :meth:`push` runs, and write nothing; see :meth:`Hub.check`."""
        await self._ready()
        encoded = self._uploads.validate(
            df,
            name,
            description=description,
            tags=tags,
            if_exists=if_exists,
            priority=priority,
            chunk_size=chunk_size,
            check_space=check_space,
        )
        await self._guard(self._uploads.check_target(name, if_exists, encoded))

    async def versions(self, name: str) -> pd.DataFrame:
        await self._ready()
        return await self._guard(self._repo.versions(name))

    async def status(self) -> HubStatus:
        """What this hub's background work costs right now; see :meth:`Hub.status`."""
        await self._ready()
        counts = self._uploads.counts()
        live = self._uploads.handles()
        sizes, staging = await self._guard(self._repo.storage())
        lag_p50, lag_p99 = self._lag.percentiles()
        return HubStatus(
            taken_at=datetime.now(UTC),
            queued=counts["queued"],
            running=counts["running"],
            succeeded=counts["succeeded"],
            failed=counts["failed"],
            cancelled=counts["cancelled"],
            rows_per_s=float(sum(h.rows_per_s for h in live if h.status == "running")),
            queued_bytes=sum(max(0, h.bytes_total - h.bytes_written) for h in live),
            loop_lag_p50_s=lag_p50,
            loop_lag_p99_s=lag_p99,
            rss_bytes=self._process.rss_bytes(),
            cpu_percent=self._process.cpu_percent(),
            memory_limit_bytes=memory_limit_bytes(),
            database_bytes=sizes.database,
            tables_bytes=sizes.tables,
            staging_bytes=staging,
            free_disk_bytes=await self._guard(self._free_disk_bytes()),
        )

    async def _free_disk_bytes(self) -> int | None:
        return await asyncio.get_running_loop().run_in_executor(self._io, self.backend.free_disk_bytes)

    async def info(self, name: str) -> DatasetInfo:
        await self._ready()
        return await self._guard(self._repo.info(name))

    async def datasets(self) -> pd.DataFrame:
        await self._ready()
        return await self._guard(self._repo.datasets())

    async def tasks(self, *, dataset: str | None = None, status: str | None = None) -> pd.DataFrame:
        """Persisted uploads of every process using this database, newest first; see :meth:`Hub.tasks`.

        Right after the hub opened, this waits up to :data:`TASKS_WAIT_S` seconds for the first
        housekeeping pass, so that uploads whose process ended show as ``interrupted``. That pass
        is quick unless another process holds the database's write lock; past the wait, the
        uploads are listed as the database has them, and an INFO line says so.
        """
        await self._ready()
        if not await self._leases.first_pass(TASKS_WAIT_S):
            log.info(
                "listing uploads before the housekeeping after connecting could mark those of ended processes "
                "(it waits for the database's write lock): some may still show as running"
            )
        return await self._guard(self._repo.tasks(dataset=dataset, status=status))

    async def wait_housekeeping(self, timeout: float | None = None) -> bool:
        """Wait for the hub's first housekeeping pass since it opened: the uploads of ended
        processes marked ``interrupted``, and kept staging rows that expired dropped.

        Opening does not wait for it (it may need another process's write lock); a later pass
        runs four times per lease. Returns True once the pass has ended, False if ``timeout``
        seconds passed first.

        Raises:
            ConfigError, DatasetError: the pass failed (after retrying transient errors); the
                next one, a quarter of a lease later, tries again.
        """
        await self._ready()
        if not await self._leases.first_pass(timeout):
            return False
        error = self._leases.first_error
        if isinstance(error, DsnotebookError):
            raise error
        if error is not None:
            raise translate(error, what=f"the housekeeping of {mask_url(self.url)}", error=DatasetError) from error
        return True

    async def delete(self, name: str, version: int | None = None) -> list[int]:
        await self._ready()
        check_writable(self.backend, refused="deletes")
        return await self._guard(self._repo.delete(name, version))

    async def prune(self, name: str, *, keep: int) -> list[int]:
        await self._ready()
        check_writable(self.backend, refused="deletes")
        return await self._guard(self._repo.prune(name, keep=keep))

    async def cleanup(self) -> int:
        """Drop the staged rows kept for resuming interrupted uploads, now; see :meth:`Hub.cleanup`."""
        await self._ready()
        check_writable(self.backend, refused="cleanups")
        # The uploads of ended processes are marked first: their rows are kept rows too.
        await self._leases.first_pass()
        return await self._guard(self._uploads.expire_staging(everything=True))

    async def retry(self, task: UploadTask) -> UploadTask:
        """Start a failed, cancelled or interrupted upload again, with the same frame and options.

        Returns the new upload's handle; the old handle stays as it ended. The two are linked:
        ``new.retry_of`` is the old one's id, and ``old.retried_by`` the new handle.

        Raises:
            UsageError: the upload succeeded, is still running, or was started by another hub.
            ValidationError, VersionConflict, SchemaMismatch: as for :meth:`push`.
        """
        await self._ready()
        if not isinstance(task, UploadTask):
            raise ValidationError(f"task: expected an UploadTask handle, got {type(task).__name__}")
        if task._owner is not self._uploads:
            raise UsageError(f"the upload {task.id} of {task.dataset!r} was not started by {self!r}; retry it there")
        if not task.can_retry:
            raise UsageError(
                f"the upload of {task.dataset!r} is {task.status}; only a failed, cancelled or interrupted "
                "upload can be retried"
            )
        return await task._resubmit(retry_of=task)

    def running(self) -> list[UploadTask]:
        """Handles of this hub's uploads that have not ended, oldest first."""
        return [] if self._uploads is None else self._uploads.handles()

    def uploads(self) -> list[UploadTask]:
        """Handles of the most recent uploads this hub started in this process, newest first.

        Ended uploads stay listed (up to the last 100), so a panel can show how they ended;
        :meth:`tasks` lists the uploads of every process from the database.
        """
        return [] if self._uploads is None else self._uploads.history()

    def on_upload(self, listener: Callable[[UploadTask], None]) -> Callable[[], None]:
        """Call ``listener(handle)`` on the uploads' loop whenever this hub starts an upload.

        Returns a function that unsubscribes. The listener must be quick and must not block (a
        blocking ``handle.wait()`` there raises :class:`UsageError`). An exception in it does not
        affect the upload; it is logged at ERROR with the traceback on the
        ``dsnotebook.listeners`` logger, which shows on stderr even when logging is not configured.

        Raises:
            ValidationError: ``listener`` is not callable.
        """
        self._check_open()
        if self._uploads is None:
            raise UsageError(f"{self!r} is not open yet; await hub.open() first")
        if not callable(listener):
            raise ValidationError(f"listener: expected a callable taking the upload's handle, got {listener!r}")

        def call(handle: UploadTask) -> None:
            try:
                listener(handle)
            except Exception:  # noqa: BLE001 - a listener's bug must never break an upload; it is shown
                report_failure(
                    "the on_upload listener %r raised an error for the upload of %r (task %s); the upload goes on",
                    listener,
                    handle.dataset,
                    handle.id,
                )

        return self._uploads.on_submit(call)

    async def _guard(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await a read, delete or cleanup; a driver error becomes a ``DatasetError`` (or a
        ``ConfigError`` when the database cannot be used at all) that says what failed.

        Closing the hub waits for the operations under way here before it releases the engine;
        one that would start once closing has begun raises :class:`HubClosed` instead.
        """
        if self._closed:
            coro.close()
            self._check_open()
        # Counted before the first await: no close can slip in between.
        done = asyncio.get_running_loop().create_future()
        self._operations.add(done)
        try:
            return await coro
        except DsnotebookError:
            raise
        except Exception as exc:
            raise translate(exc, what=f"the database at {mask_url(self.url)}", error=DatasetError) from exc
        finally:
            self._operations.discard(done)
            done.set_result(None)
