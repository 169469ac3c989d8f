"""The backend seam: what every database module provides, and the record of its limits.

Everything that differs between databases lives behind :class:`Backend`: how an engine is
opened, the catalog lock, the storage types, the staging table, the chunk writer, locking and
sealing a version table, append conversions, and the reader. The rest of dsnotebook asks the
backend and never which database it is talking to. A new database is one new module with a
subclass of :class:`Backend`, registered in :mod:`dsnotebook.store.backends`, plus a run of the
contract test (``tests/test_backends.py``).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
from sqlalchemy import Insert, Table
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.types import TypeEngine

from ...errors import ConfigError
from ...tasks import finish_through_cancel
from ..codec import ROW_ID, EncodedFrame, SqlColumn, load_json
from ..engine import driver_message, mask_text, mask_url

__all__ = ["ROW_ID", "Backend", "Capabilities", "ChunkWriter", "Rows", "Sizes", "await_thread", "check_engine", "create_engine_for", "off_loop", "settled"]


@dataclass(frozen=True)
class Sizes:
    """What a database's storage holds, in bytes; see :meth:`Backend.sizes`."""

    database: int | None
    tables: int | None
    staging: dict[str, int]


@dataclass(frozen=True)
class Capabilities:
    """What a database allows and how dsnotebook should drive it.

    Attributes:
        max_columns: columns per table, the row id included.
        max_row_bytes: bytes a row may take (None: no limit that matters before ``max_columns``).
        default_concurrency: uploads that run at once unless ``connect(concurrency=…)`` says.
        single_writer: the database has one write lock; the writers of a hub then take turns
            through a fair :class:`~dsnotebook.store.engine.WriteGate` instead of racing for it.
        native_types: the codec stores native types where they hold the values exactly, not only
            the four generic ones (see :func:`dsnotebook.store.codec.encode`).
        file_modes: the database is a file that a hub may create, whose permission bits
            ``connect(file_mode=…)`` sets; where False, ``file_mode`` is refused.
        schemas: the database has schemas, and ``connect(schema=…)`` (or ``?schema=`` in the
            URL) picks the one that holds the catalog and the data; where False, it is refused.
    """

    max_columns: int
    max_row_bytes: int | None
    default_concurrency: int
    single_writer: bool
    native_types: bool
    file_modes: bool = False
    schemas: bool = False


class ChunkWriter(abc.ABC):
    """Writes the rows of one upload into its staging table, chunk by chunk.

    One writer serves one upload and one staging table. For each chunk the upload calls
    :meth:`prepare` outside any transaction (work that needs no database lock, such as
    converting the rows), then, inside one attempt of its write step, :meth:`write` followed by
    the task's progress, which the upload's session commits. A writer that moves the rows on a
    connection of its own commits them there, before the progress: the progress then never
    counts rows that are not there, and a resume counts the staged rows themselves. A failed
    step is tried again, so :meth:`write` must not write a chunk twice. :meth:`aclose` lets go of
    whatever the writer holds, also after a cancel.
    """

    async def prepare(self, start: int, stop: int) -> None:  # noqa: B027 - most writers have nothing to prepare
        """Get rows ``[start, stop)`` ready, without a transaction."""

    @abc.abstractmethod
    async def write(self, session: AsyncSession, start: int, stop: int) -> None:
        """Write rows ``[start, stop)`` of the frame (row ids ``start + 1 .. stop``), in the
        upload's session (committed with the progress) or committed on the writer's own
        connection; a chunk already committed there is not written again."""

    async def aclose(self) -> None:  # noqa: B027 - most writers hold nothing between chunks
        """Release the writer's resources."""


class Backend(abc.ABC):
    """One database: its limits, its SQL and its bulk paths.

    Args:
        url: the (async) SQLAlchemy URL, already checked by :meth:`check_url`.
    """

    #: The SQLAlchemy backend name this module serves (``URL.get_backend_name()``).
    name: ClassVar[str]
    #: Async drivers it works with; the first is used when a URL names none or a sync one.
    drivers: ClassVar[tuple[str, ...]]
    #: URL forms shown to users in errors and docs.
    url_forms: ClassVar[tuple[str, ...]]
    capabilities: ClassVar[Capabilities]

    def __init__(self, url: URL, *, schema: str | None = None, file_mode: int | None = None) -> None:
        self.url = url
        #: ``connect(schema=…)``: the database schema that holds the catalog and the data
        #: (PostgreSQL); None: the URL's ``?schema=``, else the database's default.
        self.schema = schema
        #: ``connect(file_mode=…)``: the permission bits of a database file this hub creates
        #: (SQLite); None: private (``0o600``) unless ``DSNOTEBOOK_UMASK`` says otherwise.
        self.file_mode = file_mode
        #: Why this hub's database role may not write here, found by :meth:`open_engine` (None:
        #: it may); see :attr:`writable`.
        self.write_refusal: str | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {mask_url(self.url)}>"

    # -- connecting --------------------------------------------------------------------------

    @classmethod
    def check_url(cls, url: URL) -> URL:
        """Return the URL to use (e.g. with the async driver filled in), or raise ConfigError."""
        return url

    @property
    def read_only(self) -> bool:
        """Whether the URL asks for a read-only database."""
        return False

    @property
    def writable(self) -> bool:
        """Whether pushes, deletes and cleanups may write here: the URL does not ask for a
        read-only database, and the database role may write (as far as :meth:`open_engine`
        found out)."""
        return not self.read_only and self.write_refusal is None

    @abc.abstractmethod
    async def open_engine(self, *, create: bool = True) -> AsyncEngine:
        """An engine for the URL on the running loop, with the backend's connection settings,
        checked by a first query. A database with roles also finds out here whether the
        connecting role may write the catalog and create tables, and sets
        :attr:`write_refusal` when it may not.

        Raises:
            ConfigError: the database cannot be reached or opened.
        """

    async def after_chunk(self, engine: AsyncEngine) -> None:
        """Housekeeping that may run beside the next chunk (SQLite's WAL checkpoint)."""

    @property
    def has_after_chunk(self) -> bool:
        return type(self).after_chunk is not Backend.after_chunk

    def io_workers(self) -> int:
        """Threads the hub keeps for driver calls made off the event loop (ADBC)."""
        return 1

    def warm_up(self) -> None:  # noqa: B027 - a backend without bulk drivers has nothing to load
        """Load what the bulk path needs (driver modules take a few tenths of a second to
        import); called in the hub's I/O thread while it opens, so that the first upload or read
        does not pay for it."""

    # -- the catalog -------------------------------------------------------------------------

    async def lock_catalog(self, conn: AsyncConnection) -> None:  # noqa: B027 - a single writer needs none
        """Serialise the creation and migration of the catalog across processes."""

    @abc.abstractmethod
    def insert_if_absent(self, table: Table, index_elements: Sequence[Any], **values: Any) -> Insert:
        """An INSERT of ``values`` into ``table`` that does nothing when the key already exists."""

    # -- storage -----------------------------------------------------------------------------

    @abc.abstractmethod
    def column_type(self, sql_type: str) -> TypeEngine:
        """The SQLAlchemy type that stores the codec's storage type ``sql_type``."""

    @abc.abstractmethod
    def staging_table(self, name: str, columns: Sequence[SqlColumn]) -> Table:
        """The staging table of an upload: the row id, then the frame's SQL columns."""

    @abc.abstractmethod
    def open_writer(self, stage: str, encoded: EncodedFrame, *, io: Any) -> ChunkWriter:
        """A writer of ``encoded``'s rows into the staging table ``stage``; ``io`` is the hub's
        executor for driver calls made off the event loop."""

    async def lock_staging(self, conn: AsyncConnection, table: str) -> None:  # noqa: B027 - one writer: the transaction holds the lock
        """Keep other writers out of a kept staging table until the transaction ends."""

    async def seal(self, conn: AsyncConnection, stage: str, table_name: str) -> None:  # noqa: B027
        """Make a fully staged table a version's table, before it is renamed to ``table_name``
        (PostgreSQL builds the row id's primary key here, once)."""

    def row_bytes(self, columns: Sequence[SqlColumn]) -> int:
        """A lower bound of the bytes a row of these columns takes (checked against
        ``capabilities.max_row_bytes``)."""
        return 0

    # -- monitoring --------------------------------------------------------------------------

    @abc.abstractmethod
    async def sizes(self, conn: AsyncConnection, staging_tables: Sequence[str]) -> Sizes:
        """The database's size, that of dsnotebook's tables where the database tells it, and the
        bytes each of ``staging_tables`` takes (one that cannot be measured is left out)."""

    def free_disk_bytes(self) -> int | None:
        """Free space on the filesystem that holds the database, where this process can see it."""
        return None

    # -- appending ---------------------------------------------------------------------------

    @abc.abstractmethod
    def utf8_bytes(self, expression: str) -> str:
        """SQL for the UTF-8 bytes of a text expression."""

    def convert(self, expression: str, source: str, target: str, unit: str | None) -> str:
        """SQL turning values of storage type ``source`` into ``target``'s form (see
        :func:`dsnotebook.store.append.plan_append`); only databases with native types need it."""
        raise ValueError(f"no conversion from {source} to {target}")

    def nan_to_null(self, expression: str) -> str:
        """SQL for a REAL expression with NaN turned into NULL, as the codec stores a NaN (see
        :func:`dsnotebook.store.append.plan_append`); a database that stores NaN as NULL by
        itself, as SQLite does, gives the expression back unchanged."""
        return expression

    async def retype(self, conn: AsyncConnection, table: str, column: str, sql_type: str, using: str) -> None:  # noqa: B027
        """Change a staged column's type (a database without column types has nothing to do)."""

    @abc.abstractmethod
    async def to_bytes(self, conn: AsyncConnection, table: str, column: str) -> None:
        """Turn a staged text column into the UTF-8 bytes of its values."""

    # -- reading -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def read(self, session: AsyncSession, table: str, manifest: dict, rows: Rows, *, io: Any) -> pd.DataFrame:
        """Read ``rows`` of ``table`` in order, the columns ``manifest["sql_columns"]`` lists,
        and rebuild them as the frame the manifest describes.

        ``session`` is the caller's read session. A backend that reads on a connection of its own
        may see a later snapshot than the catalog row the caller read; that is harmless, since a
        version's table never changes, and a table dropped meanwhile fails the read clearly.
        """


@dataclass(frozen=True)
class Rows:
    """Which rows of a stored table a read takes, in row-id order.

    Attributes:
        after: only rows whose row id is greater (None: from the first).
        upto: only rows whose row id is at most this (None: to the last).
        limit: at most this many rows, the first ones (None: all).
    """

    after: int | None = None
    upto: int | None = None
    limit: int | None = None

    def where(self, row_id: str) -> str:
        """The SQL condition on the quoted row-id column (``""`` for every row)."""
        parts = []
        if self.after is not None:
            parts.append(f"{row_id} > {int(self.after)}")
        if self.upto is not None:
            parts.append(f"{row_id} <= {int(self.upto)}")
        return f" WHERE {' AND '.join(parts)}" if parts else ""

    def select(
        self, conn: AsyncConnection | AsyncSession, table: str, columns: Sequence[str], *, aliases: Sequence[str] | None = None
    ) -> str:
        """The SELECT of ``columns`` of ``table`` for these rows, in row-id order (with
        ``aliases``, each column is named by its alias in the result)."""
        q = (conn.bind.dialect if isinstance(conn, AsyncSession) else conn.dialect).identifier_preparer.quote
        row_id = q(ROW_ID)
        shown = [q(c) for c in columns] if aliases is None else [f"{q(c)} AS {q(a)}" for c, a in zip(columns, aliases, strict=True)]
        sql = f"SELECT {', '.join(shown)} FROM {q(table)}{self.where(row_id)} ORDER BY {row_id}"
        return sql if self.limit is None else f"{sql} LIMIT {int(self.limit)}"


def create_engine_for(url: URL, connect_url: URL, **kwargs: Any) -> AsyncEngine:
    """``create_async_engine(connect_url, **kwargs)``; errors name ``url``, its password masked.

    JSON values are read by :func:`~dsnotebook.store.codec.load_json`, which never raises: text
    it does not read (too long, nested too deep, not JSON) comes as a marker that the catalog's
    readers refuse by name.

    Raises:
        ConfigError: the driver is not installed or the URL cannot be used.
    """
    try:
        return create_async_engine(connect_url, json_deserializer=load_json, **kwargs)
    except (NoSuchModuleError, ImportError, ArgumentError) as exc:
        raise ConfigError(
            f"url: the driver {url.drivername!r} of {mask_url(url)!r} is not available ({exc}); "
            "install it, e.g. pip install 'dsnotebook[postgres]' for asyncpg"
        ) from exc
    except SQLAlchemyError as exc:
        raise ConfigError(f"url: {mask_url(url)!r} cannot be used: {exc}") from exc


async def check_engine(engine: AsyncEngine, url: URL) -> AsyncEngine:
    """Run a first query and return the engine; a database that does not answer is disposed of.

    Raises:
        ConfigError: the database cannot be reached or opened.
    """
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except (DBAPIError, OSError) as exc:
        await engine.dispose()
        raise ConfigError(f"cannot connect to {mask_url(url)}: {driver_message(exc)}") from exc
    except ValueError as exc:
        # The driver refused a setting before connecting: a malformed line of a password file,
        # a port or a timeout that is not a number.
        await engine.dispose()
        raise ConfigError(f"cannot connect to {mask_url(url)}: {mask_text(driver_message(exc))}") from exc
    return engine


async def off_loop(io: Any, func: Callable[..., Any], *args: Any, on_cancel: Callable[[], None] | None = None) -> Any:
    """Run ``func(*args)`` in the hub's I/O thread; see :func:`await_thread`."""
    return await await_thread(asyncio.get_running_loop().run_in_executor(io, func, *args), on_cancel=on_cancel)


async def await_thread(work: asyncio.Future, *, on_cancel: Callable[[], None] | None = None) -> Any:
    """Await a thread's work. A cancel calls ``on_cancel`` (to stop the driver call early), waits
    for the thread to end (it cannot be stopped, and what it uses must not be released under
    it), then is raised."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if on_cancel is not None and not work.done():
            on_cancel()
        await finish_through_cancel(settled(work))
        raise


async def settled(work: asyncio.Future) -> None:
    """Wait for ``work`` to end, whatever its outcome (reported elsewhere)."""
    try:
        await work
    except Exception:  # noqa: BLE001 - whoever awaits the work itself sees its error
        pass
