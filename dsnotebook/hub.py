"""``Hub``, the sync face of a hub, and ``connect()`` with the module-level helpers.

:class:`~dsnotebook.aiohub.AsyncHub` does all the work on the loop that awaits it. :class:`Hub`
owns an ``AsyncHub`` that lives on the library's portal loop and forwards every call there, so
the upload logic is written once.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import pyarrow as pa
from sqlalchemy.engine import URL

from ._keywords import suggest_keywords
from ._portal import get_portal
from .aiohub import AsyncHub
from .models import DatasetInfo, HubStatus
from .retry import RetryPolicy
from .store.engine import mask_url
from .store.kinds import To
from .tasks import BackgroundTaskService
from .upload import DEFAULT_KEEP_INTERRUPTED_S, IfExists, UploadTask
from .upload.leases import DEFAULT_LEASE_S

if TYPE_CHECKING:
    import polars as pl

__all__ = ["AsyncHub", "Hub", "connect", "datasets", "default_hub", "pull", "push", "tasks_frame"]

log = logging.getLogger("dsnotebook")
T = TypeVar("T")

#: At interpreter exit, how long running uploads get to stop before the process goes on exiting.
EXIT_GRACE_S = 3.0


class Hub:
    """The sync face, for notebooks, scripts and the CLI; :func:`connect` makes one.

    All work runs on the library's portal loop, never on the caller's (a Jupyter kernel's loop
    stays free). Results are those of :class:`AsyncHub`. The database is opened here.

    Args:
        url: a database URL, ``sqlite+aiosqlite:///path/to/file.db`` or
            ``postgresql+asyncpg://user@host:5432/database``; None means ``DSNOTEBOOK_URL`` or
            the per-user SQLite file ``~/.dsnotebook/datasets.db``.
        concurrency: uploads running at once (default: 1 on SQLite, 4 on PostgreSQL).
        retry: retry policy for transient errors such as ``database is locked`` (default:
            :class:`RetryPolicy()`, 5 attempts).
        chunk_size: default rows per staging chunk (50,000 unless a push says otherwise).
        lease: seconds after which an upload of another machine whose heartbeat stopped is
            marked interrupted (60 s; on this machine, a process that no longer runs is
            recognised at once).
        keep_interrupted: seconds (or a ``timedelta``) to keep the staged rows of an interrupted
            upload for a resume; 7 days by default, 0 keeps nothing.
        create: False refuses, with a ``ConfigError``, a SQLite file that does not exist (instead
            of creating a new, empty database) and a database without a dsnotebook catalog
            (instead of creating the catalog's tables). An older catalog is still migrated.
        schema: the PostgreSQL schema that holds the catalog and the data tables, such as
            ``"analytics_bi"`` (or ``?schema=analytics_bi`` in the URL; both given must agree):
            hubs on other schemas of the database never see these datasets. Connecting creates
            it when ``create`` is True and the role may (CREATE on the database). A role that
            may only read there (USAGE on the schema, SELECT on its tables) can list, pull and
            show; its pushes and deletes raise ``ConfigError`` naming the rights it lacks, and
            ``hub.writable`` is False. Default: the role's search path (usually ``public``).
            Refused for SQLite.
        file_mode: the permission bits of a SQLite database file this hub creates, such as
            ``0o640`` for a team directory whose group may read it (default: ``0o600``, its owner
            alone, unless ``DSNOTEBOOK_UMASK`` such as ``027`` says otherwise); a directory
            created on the way gets the same read bits plus search (``0o750``). SQLite's ``-wal``
            and ``-shm`` files follow the database file. An existing file keeps its bits, except
            in the default store ``~/.dsnotebook``, whose directory and files lose at connect any
            bits for other users beyond these (logged at INFO). Refused for PostgreSQL.

    Raises:
        ConfigError: the database cannot be reached or used, or does not exist and ``create``
            is False.
        ValidationError: an argument is out of range.
        VersionConflict: the catalog was written by a newer dsnotebook.
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
        self._portal = get_portal()
        self._async = AsyncHub(
            url,
            concurrency=concurrency,
            retry=retry,
            chunk_size=chunk_size,
            lease=lease,
            keep_interrupted=keep_interrupted,
            create=create,
            schema=schema,
            file_mode=file_mode,
        )
        self._run(self._async.open())
        _OPEN_HUBS.add(self)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._portal.run(coro)

    @property
    def url(self) -> URL:
        return self._async.url

    @property
    def task_service(self) -> BackgroundTaskService:
        return self._async.task_service

    @property
    def closed(self) -> bool:
        return self._async.closed

    @property
    def writable(self) -> bool:
        """Whether this hub may push, delete and clean up; see :attr:`AsyncHub.writable`."""
        return self._async.writable

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Hub {mask_url(self.url)} ({state})>"

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Ctrl-C stops the uploads too; any other exit waits for them.
        self.close(cancel=exc_type is not None and issubclass(exc_type, KeyboardInterrupt))

    def close(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Wait for running uploads (``cancel=True`` cancels them) and for reads under way (a
        ``pull`` submitted from another thread, say), then release the engine. A read that would
        start after this, such as the next batch of an ``iter_batches`` loop, raises
        :class:`~dsnotebook.errors.HubClosed`."""
        if self.closed:
            return
        self._run(self._async.aclose(cancel=cancel, timeout=timeout))
        _OPEN_HUBS.discard(self)

    def push(
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
        """Validate ``df`` and upload it as dataset ``name`` in the background; see :meth:`AsyncHub.push`.

        Returns the task's handle at once: ``task.wait()`` or ``await task`` gives the version.
        """
        return self._run(
            self._async.push(
                df,
                name,
                description=description,
                tags=tags,
                if_exists=if_exists,
                priority=priority,
                chunk_size=chunk_size,
                check_space=check_space,
            )
        )

    def pull(
        self,
        name: str,
        version: int | None = None,
        *,
        columns: Sequence | None = None,
        limit: int | None = None,
        to: To | None = None,
    ) -> pd.DataFrame | pd.Series | pa.Table | pl.DataFrame:
        """Rebuild a stored version (latest by default) as the identical object that was pushed.

        Args:
            columns: only these column labels (the index always comes along).
            limit: only the first ``limit`` rows.
            to: None (default) gives back the kind pushed: a DataFrame, the Series (name and
                index included), the pyarrow Table or the polars DataFrame. ``"pandas"`` gives
                the pandas kind (the Series for a Series, else a DataFrame); ``"arrow"`` a
                ``pyarrow.Table``, made by ``pa.Table.from_pandas`` (a non-default index becomes
                columns, a Series the one-column table named ``str(name)``), or the pushed Table
                itself (for a polars frame, its ``to_arrow()``); ``"polars"`` a polars DataFrame,
                ``polars.from_arrow`` of that Table, or one that ``.equals()`` the pushed polars
                frame. Versions stored before kinds were recorded are DataFrames. See
                :mod:`dsnotebook.store.kinds`.

        Raises:
            DatasetNotFound: unknown name or version (close names are suggested).
            ValidationError: unknown column labels, a bad ``limit`` or ``to`` (naming the
                accepted values).
            UsageError: a polars DataFrame is wanted (``to="polars"``, or pushed) and polars is
                not installed (``pip install "dsnotebook[polars]"``).
            DatasetError: the version's manifest in the catalog is malformed or exceeds the
                limits a read holds it to (the message names the dataset, the version and the
                fault), or its table cannot be read.
        """
        return self._run(self._async.pull(name, version, columns=columns, limit=limit, to=to))

    def iter_batches(
        self,
        name: str,
        version: int | None = None,
        *,
        columns: Sequence | None = None,
        batch_rows: int = 100_000,
        to: To | None = None,
    ) -> Iterator[pd.DataFrame | pd.Series | pa.Table | pl.DataFrame]:
        """Stream a stored version (latest by default) in order, in exact batches of at most
        ``batch_rows`` rows, for datasets larger than memory.

        Each batch is of the kind pushed, or of the kind ``to`` (see :meth:`pull`). Memory
        stays bounded by one batch. Concatenated, the batches equal
        ``pull(name, version, columns=columns, to=to)``; a RangeIndex continues from batch to batch.

        Raises:
            DatasetNotFound: unknown name or version.
            ValidationError: unknown column labels, ``batch_rows`` not a positive int, or a bad ``to``.
            UsageError: a polars DataFrame is wanted and polars is not installed.
            DatasetError: the version's manifest is malformed or too large (see :meth:`pull`).
        """
        batches = self._async.iter_batches(name, version, columns=columns, batch_rows=batch_rows, to=to)
        try:
            while True:
                try:
                    batch = self._run(anext(batches))
                except StopAsyncIteration:
                    return
                yield batch
        finally:
            self._run(batches.aclose())

    def check(
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
        """Run every check :meth:`push` runs before it schedules anything, and write nothing.

        The frame is validated and encoded for this database (its column and row-width limits
        included), and ``if_exists="fail"`` or ``"append"`` is checked against the dataset as it
        stands. A form can call this to refuse a frame before anyone clicks Upload. With the
        default ``if_exists="replace"`` it needs no database and runs on the calling thread.

        Raises:
            ValidationError, VersionConflict, SchemaMismatch: what :meth:`push` would raise.
        """
        self._async._check_open()
        # The frame's checks run here, on the caller's thread; only the dataset's go to the loop.
        encoded = self._async._uploads.validate(
            df,
            name,
            description=description,
            tags=tags,
            if_exists=if_exists,
            priority=priority,
            chunk_size=chunk_size,
            check_space=check_space,
        )
        if if_exists != "replace":
            self._run(self._async._guard(self._async._uploads.check_target(name, if_exists, encoded)))

    def status(self) -> HubStatus:
        """What this hub's background work costs right now, cheap enough to call every second.

        Its uploads by status, their rows per second and the bytes they still have to write;
        how late the library's event loop runs; this process's memory and CPU against its memory
        limit; the database's size, the bytes kept for resumable uploads, and the free disk
        where the database lives (SQLite). ``memory_state`` and ``disk_state`` say when a figure
        nears its limit; ``to_dict()`` gives plain JSON-able values.
        """
        return self._run(self._async.status())

    def monitor(self):
        """A strip of this hub's figures (:meth:`status`) that refreshes itself while displayed;
        the panel shows the same strip above its tabs.

        Raises:
            ImportError: ipywidgets is not installed.
        """
        from .widgets import StatusStrip

        return StatusStrip(self)

    @property
    def aio(self) -> AsyncHub:
        """The :class:`AsyncHub` this hub forwards to; its coroutines run on the hub's loop only
        (hand them to :meth:`submit`)."""
        return self._async

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the hub's loop without blocking; returns a Future of its result.

        For code that must not wait, such as a widget loading a preview: pass a coroutine of
        :attr:`aio`, e.g. ``hub.submit(hub.aio.pull("sales", limit=10))``. Cancelling the
        Future cancels the coroutine.
        """
        return self._portal.submit(coro)

    def versions(self, name: str) -> pd.DataFrame:
        """One row per version: version, rows, columns, created_at, created_by, content_hash, table_name, task_id, latest."""
        return self._run(self._async.versions(name))

    def info(self, name: str) -> DatasetInfo:
        """Description, tags, latest version and schema of ``name``."""
        return self._run(self._async.info(name))

    def datasets(self) -> pd.DataFrame:
        """One row per dataset: name, latest_version, rows, columns, updated_at, description, versions, tags, created_at."""
        return self._run(self._async.datasets())

    def tasks(self, *, dataset: str | None = None, status: str | None = None) -> pd.DataFrame:
        """Persisted uploads of every process using this database, newest first.

        Right after connecting, this waits up to :data:`~dsnotebook.aiohub.TASKS_WAIT_S`
        seconds for the hub's first housekeeping pass (see :meth:`wait_housekeeping`), so that
        uploads whose process ended show as ``interrupted``.
        """
        return self._run(self._async.tasks(dataset=dataset, status=status))

    def wait_housekeeping(self, timeout: float | None = None) -> bool:
        """Wait for the hub's first housekeeping pass since it connected: the uploads of ended
        processes marked ``interrupted``, and kept staging rows that expired dropped.

        Connecting does not wait for it, since it may need another process's write lock; it
        runs again four times per lease while the hub is open. Returns True once the pass has
        ended, False if ``timeout`` seconds passed first.

        Raises:
            ConfigError, DatasetError: the pass failed (after retrying transient errors).
        """
        return self._run(self._async.wait_housekeeping(timeout))

    def delete(self, name: str, version: int | None = None) -> list[int]:
        """Remove one version, or the whole dataset with ``version=None``; returns the removed versions."""
        return self._run(self._async.delete(name, version))

    def prune(self, name: str, *, keep: int) -> list[int]:
        """Keep only the newest ``keep`` versions; returns the removed versions."""
        return self._run(self._async.prune(name, keep=keep))

    def cleanup(self) -> int:
        """Drop, now, the staged rows kept for resuming interrupted uploads; returns how many tables went.

        An interrupted upload (its process died, or the interpreter exited while it ran) keeps the
        rows it had committed: pushing the same content to the same dataset again resumes from
        them. They are dropped anyway once the dataset gets a newer version or after
        ``keep_interrupted`` (7 days by default); this drops them at once, along with any staging
        table that no queued or running upload owns. Running uploads are not touched.
        """
        return self._run(self._async.cleanup())

    def retry(self, task: UploadTask) -> UploadTask:
        """Start a failed, cancelled or interrupted upload again with the same frame and options.

        Returns the new upload's handle, linked to the old one: ``new.retry_of`` is the old one's
        id and ``old.retried_by`` the new handle. Raises :class:`UsageError` for an upload that
        succeeded or still runs.
        """
        return self._run(self._async.retry(task))

    def running(self) -> list[UploadTask]:
        """Handles of this hub's uploads that have not ended, oldest first."""
        return self._async.running()

    def uploads(self) -> list[UploadTask]:
        """Handles of the most recent uploads this hub started in this process (up to 100), newest first."""
        return self._async.uploads()

    def on_upload(self, listener: Callable[[UploadTask], None]) -> Callable[[], None]:
        """Call ``listener(handle)`` whenever this hub starts an upload; returns a function that unsubscribes.

        The listener runs on the library's portal thread and must be quick: blocking calls there
        (``handle.wait()``, another hub's methods) raise :class:`UsageError` rather than deadlock.
        An exception in it does not affect the upload; it is logged at ERROR with its traceback,
        which shows on stderr even when logging is not configured (see :meth:`AsyncHub.on_upload`).
        """
        return self._async.on_upload(listener)

    def panel(self, namespace: Mapping[str, Any] | None = None):
        """The interactive :class:`~dsnotebook.widgets.UploadPanel` on this hub.

        Args:
            namespace: where to look for DataFrames to upload; by default the notebook's
                variables (IPython's ``user_ns``).

        Raises:
            ImportError: ipywidgets is not installed.
        """
        from .widgets import UploadPanel

        return UploadPanel(self, namespace=namespace)


#: Hubs open in this process, held strongly until closed: an open hub's uploads, heartbeat and
#: connections live on the portal loop whether or not any variable still refers to the hub
#: (``print(dsn.connect())``), and the exit hook must reach every one of them.
_OPEN_HUBS: set[Hub] = set()


def _close_hubs_at_exit() -> None:
    """Cancel what still runs, within a bounded time; those uploads are marked interrupted."""
    for hub in list(_OPEN_HUBS):
        try:
            hub._portal.submit(hub._async._shutdown(cancel=True, timeout=EXIT_GRACE_S, interrupted=True)).result(EXIT_GRACE_S + 1)
        except Exception:  # noqa: BLE001 - at exit, one stuck hub must not keep the others open
            log.debug("closing %r at exit failed", hub, exc_info=True)


get_portal().on_exit(_close_hubs_at_exit)


@suggest_keywords
def connect(
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
) -> Hub:
    """Open a :class:`Hub` on ``url``.

    Connecting reads the catalog and needs no write lock, unless it creates the catalog (a new
    database) or migrates an older one. The housekeeping (marking the uploads of processes that
    ended as ``interrupted``, dropping expired kept rows) then runs in the background;
    ``hub.tasks()`` waits a few seconds for it, and ``hub.wait_housekeeping()`` until it is done.

    Args:
        url: a database URL, ``sqlite+aiosqlite:///path/to/file.db`` or
            ``postgresql+asyncpg://user@host:5432/database``; None means ``DSNOTEBOOK_URL`` or
            the per-user SQLite file ``~/.dsnotebook/datasets.db``. On SQLite, ``?timeout=5``
            sets how many seconds a write waits for another writer's lock.
        concurrency: uploads running at once (default: 1 on SQLite, 4 on PostgreSQL).
        retry: retry policy for transient errors such as ``database is locked`` (default:
            :class:`RetryPolicy()`, 5 attempts).
        chunk_size: default rows per staging chunk (50,000 unless a push says otherwise).
        lease: seconds after which an upload of another machine whose heartbeat stopped is
            marked interrupted (60 s; on this machine, a process that no longer runs is
            recognised at once).
        keep_interrupted: seconds (or a ``timedelta``) to keep the staged rows of an interrupted
            upload for a resume; 7 days by default, 0 keeps nothing.
        create: False refuses, with a ``ConfigError``, a SQLite file that does not exist (instead
            of creating a new, empty database) and a database without a dsnotebook catalog
            (instead of creating the catalog's tables), as read-only tools want. An older
            catalog is still migrated.
        schema: the PostgreSQL schema that holds the catalog and the data tables, such as
            ``"analytics_bi"`` (or ``?schema=analytics_bi`` in the URL; both given must agree):
            hubs on other schemas of the database never see these datasets. Connecting creates
            it when ``create`` is True and the role may (CREATE on the database). A role that
            may only read there (USAGE on the schema, SELECT on its tables) can list, pull and
            show; its pushes and deletes raise ``ConfigError`` naming the rights it lacks, and
            ``hub.writable`` is False. Default: the role's search path (usually ``public``).
            Refused for SQLite.
        file_mode: the permission bits of a SQLite database file this hub creates, such as
            ``0o640`` for a team directory whose group may read it (default: ``0o600``, its owner
            alone, unless ``DSNOTEBOOK_UMASK`` such as ``027`` says otherwise); a directory
            created on the way gets the same read bits plus search (``0o750``). SQLite's ``-wal``
            and ``-shm`` files follow the database file. An existing file keeps its bits, except
            in the default store ``~/.dsnotebook``, whose directory and files lose at connect any
            bits for other users beyond these (logged at INFO). Refused for PostgreSQL.

    Raises:
        ConfigError: the database cannot be reached or used, or does not exist and ``create``
            is False.
        ValidationError: an argument is out of range.
        VersionConflict: the catalog was written by a newer dsnotebook.
        TypeError: an unknown keyword argument (the nearest valid name is suggested).
    """
    return Hub(
        url,
        concurrency=concurrency,
        retry=retry,
        chunk_size=chunk_size,
        lease=lease,
        keep_interrupted=keep_interrupted,
        create=create,
        schema=schema,
        file_mode=file_mode,
    )


_default: Hub | None = None


def default_hub() -> Hub:
    """The hub the module-level helpers use, connected on first use."""
    global _default
    if _default is None or _default.closed:
        _default = Hub()
    return _default


@suggest_keywords
def push(
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
    """``default_hub().push(df, name, ...)``: upload ``df`` as dataset ``name`` in the
    background; see :meth:`Hub.push` and :meth:`AsyncHub.push` for the options."""
    return default_hub().push(
        df,
        name,
        description=description,
        tags=tags,
        if_exists=if_exists,
        priority=priority,
        chunk_size=chunk_size,
        check_space=check_space,
    )


@suggest_keywords
def pull(
    name: str,
    version: int | None = None,
    *,
    columns: Sequence | None = None,
    limit: int | None = None,
    to: To | None = None,
) -> pd.DataFrame | pd.Series | pa.Table | pl.DataFrame:
    """``default_hub().pull(name, version, ...)``: a stored version (latest by default) as the
    identical object pushed, or as the kind ``to``; see :meth:`Hub.pull`."""
    return default_hub().pull(name, version, columns=columns, limit=limit, to=to)


def datasets() -> pd.DataFrame:
    """``default_hub().datasets()``."""
    return default_hub().datasets()


@suggest_keywords
def tasks_frame(*, dataset: str | None = None, status: str | None = None) -> pd.DataFrame:
    """``default_hub().tasks(dataset=..., status=...)``; exported as ``dsnotebook.tasks``, which
    is also the task-service module."""
    return default_hub().tasks(dataset=dataset, status=status)
