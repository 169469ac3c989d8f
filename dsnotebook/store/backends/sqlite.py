"""SQLite through aiosqlite: the embedded default.

What is special here:

- One write lock per database file. Writers of a hub take turns through a fair gate
  (``single_writer``), write transactions start with ``BEGIN IMMEDIATE`` (a deferred transaction
  that upgrades to a write gets SQLITE_BUSY at once in WAL mode, and the busy timeout does not
  help), and uploads run one at a time by default.
- After the file is first created, connections open it with ``mode=rw`` (or ``mode=ro`` when the
  URL asks), so a database deleted or moved underneath raises an error instead of being silently
  recreated empty.
- A file it creates is its owner's alone (``0o600``, in a ``0o700`` directory where it makes
  one) unless ``connect(file_mode=…)`` or ``DSNOTEBOOK_UMASK`` asks for sharing; SQLite gives the
  ``-wal`` and ``-shm`` files the same bits. The default store is tightened at connect; other
  existing files keep their bits (see :mod:`._file_modes`).
- Columns have no fixed types: storage types map to INTEGER, REAL, TEXT and BLOB affinities, a
  BLOB column holds any value, and the row id is the rowid itself.
- After each staged chunk, a passive WAL checkpoint runs on another connection, beside the next
  chunk.

Bulk rows move through Arrow and ADBC, but never with ADBC opening the hub's database file:
``adbc-driver-sqlite`` links its own copy of SQLite, and two copies in one process that open the
same file break SQLite's POSIX locks (committed rows can silently vanish). So the two copies meet
only in private hand-off files (see :mod:`._arrow_io`), each opened by one copy at a time:

- a push: ADBC writes a chunk into a new hand-off file, off the event loop; a connection of the
  upload's own ``ATTACH``es it, copies the rows into the staging table with ``INSERT … SELECT``
  and commits, then the upload's session commits the chunk's progress. Rows are committed before
  the progress that counts them, so the progress never claims rows that are not there, and a
  resume counts the staged rows themselves (as on PostgreSQL);
- a pull: a connection of the read's own copies the selected rows into a new hand-off file
  (``CREATE TABLE … AS SELECT``) and detaches it; then ADBC reads it into Arrow, off the loop.

Each of these steps (attach, copy, commit, detach) runs to its end even when the upload or read
is cancelled meanwhile, so that no connection goes back to the pool with a file attached or a
statement cut short; the cancel is raised once the step is done. Columns whose values the
hand-off cannot carry exactly (a column holding values of several SQLite storage classes) are
read through the driver's rows instead.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote as url_quote

import aiosqlite
import pandas as pd
import pyarrow as pa
from sqlalchemy import BigInteger, Column, Float, Insert, Integer, LargeBinary, MetaData, Table, Text, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.types import TypeEngine

from ... import monitor
from ...errors import ConfigError
from ...tasks import finish_through_cancel
from .. import codec
from ..codec import EncodedFrame, SqlColumn
from ..engine import lock_wait_logged, mask_url
from . import _arrow_io, _rows
from ._file_modes import PRIVATE, FileModes, create_directories, create_file, file_modes, tighten_default_store
from .base import (
    ROW_ID,
    Backend,
    Capabilities,
    ChunkWriter,
    Rows,
    Sizes,
    await_thread,
    check_engine,
    create_engine_for,
    settled,
)

__all__ = ["SQLiteBackend"]

log = logging.getLogger("dsnotebook")
T = TypeVar("T")

#: The schema name a connection attaches a hand-off file under.
HANDOFF = "dsn_handoff"
#: Rows per part of a pull: ADBC reads one part's hand-off file while the next one is filled.
PULL_PART_ROWS = 200_000
# Each storage type as the hand-off carries it.
_HANDOFF_TYPES = {"INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string(), "BLOB": pa.binary()}

#: How long a SQLite connection waits for a lock before it reports "database is locked".
SQLITE_BUSY_TIMEOUT_S = 5.0

_TYPES = {
    "INTEGER": BigInteger,
    "REAL": lambda: Float(precision=53),
    "TEXT": Text,
    "BLOB": LargeBinary,
}


class SQLiteBackend(Backend):
    name: ClassVar[str] = "sqlite"
    drivers: ClassVar[tuple[str, ...]] = ("aiosqlite",)
    url_forms: ClassVar[tuple[str, ...]] = ("sqlite+aiosqlite:///path/to/file.db",)
    capabilities: ClassVar[Capabilities] = Capabilities(
        # SQLite's default build (SQLITE_MAX_COLUMN); rows have no size limit that matters first.
        max_columns=2000,
        max_row_bytes=None,
        default_concurrency=1,
        single_writer=True,
        native_types=False,
        file_modes=True,
    )

    def __init__(self, url: URL, **options: Any) -> None:
        super().__init__(url, **options)
        #: The bits of the database file and the directories this hub creates.
        self.modes: FileModes = file_modes(self.file_mode)

    @classmethod
    def check_url(cls, url: URL) -> URL:
        if url.database in (None, "", ":memory:") or "mode=memory" in (url.database or ""):
            raise ConfigError(
                f"url: {mask_url(url)!r} is an in-memory SQLite database, which every connection "
                "sees empty; give a file path such as 'sqlite+aiosqlite:///data.db'"
            )
        return url

    @property
    def path(self) -> Path:
        """The database file."""
        path = self.url.database or ""
        if path.startswith("file:"):
            path = path[5:].split("?", 1)[0]
        return Path(path).expanduser().resolve()

    async def sizes(self, conn: AsyncConnection, staging_tables: Sequence[str]) -> Sizes:
        """The file and its write-ahead log; a staging table's pages, from the ``dbstat`` table
        (left out where SQLite was built without it)."""
        database = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                database += path.stat().st_size
            except FileNotFoundError:
                pass
        staging: dict[str, int] = {}
        if staging_tables:
            marks = ", ".join("?" for _ in staging_tables)
            sql = f"SELECT name, SUM(pgsize) FROM dbstat WHERE name IN ({marks}) GROUP BY name"
            try:
                rows = (await conn.exec_driver_sql(sql, tuple(staging_tables))).all()
            except DBAPIError:
                log.debug("this SQLite has no dbstat table; staging sizes are not measured", exc_info=True)
            else:
                staging = {name: int(size) for name, size in rows}
        return Sizes(database=database, tables=None, staging=staging)

    def free_disk_bytes(self) -> int | None:
        return monitor.free_disk_bytes(self.path)

    def warm_up(self) -> None:
        import adbc_driver_sqlite.dbapi  # noqa: F401 - loaded once, for the first transfer

    def io_workers(self) -> int:
        # One for an upload's next chunk, one for a read beside it.
        return 2

    @property
    def read_only(self) -> bool:
        """A URL opened with ``?mode=ro`` (as in ``sqlite+aiosqlite:///file:data.db?mode=ro&uri=true``)."""
        mode = self.url.query.get("mode")
        return (mode if isinstance(mode, str) or mode is None else mode[-1]) == "ro"

    async def open_engine(self, *, create: bool = True) -> AsyncEngine:
        busy_timeout = _busy_timeout(self.url)
        path = self.path
        tighten_default_store(path, self.modes)
        if not path.exists():
            if not create or self.read_only:
                raise ConfigError(
                    f"the SQLite database {str(path)!r} does not exist (check the path); "
                    + ("a read-only URL never creates it" if self.read_only else "pushing a dataset there creates it")
                )
            _create_file(path, busy_timeout, self.modes)
        mode = "ro" if self.read_only else "rw"
        file_uri = f"file:{url_quote(str(path))}"
        connect_url = self.url.set(database=file_uri, query={"mode": mode, "uri": "true"})
        # A pool of reused connections, as SQLAlchemy 2.1 gives aiosqlite file databases by
        # default; 2.0 defaults to NullPool, which opens a connection (and its thread) per checkout.
        engine = create_engine_for(
            self.url,
            connect_url,
            poolclass=AsyncAdaptedQueuePool,
            async_creator=functools.partial(_open_connection, f"{file_uri}?mode={mode}", busy_timeout),
        )
        _install_hooks(engine, busy_timeout, path)
        return await check_engine(engine, self.url)

    async def after_chunk(self, engine: AsyncEngine) -> None:
        """Copy committed WAL frames into the database file without blocking readers or the writer.

        Copying the write-ahead log is about a sixth of an upload's cost; started after a chunk
        on another connection, whose thread does the copying without the GIL, it overlaps the
        next chunk's encoding instead of stalling a commit.
        """
        async with engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def insert_if_absent(self, table: Table, index_elements: Sequence[Any], **values: Any) -> Insert:
        return sqlite_insert(table).values(**values).on_conflict_do_nothing(index_elements=index_elements)

    def column_type(self, sql_type: str) -> TypeEngine:
        return _TYPES[sql_type]()

    def staging_table(self, name: str, columns: Sequence[SqlColumn]) -> Table:
        # The row id is the rowid itself: rows 1..n in insert order, at no cost.
        row_id = Column(ROW_ID, Integer(), primary_key=True, autoincrement=True)
        return Table(name, MetaData(), row_id, *(Column(c.name, self.column_type(c.sql_type)) for c in columns))

    def open_writer(self, stage: str, encoded: EncodedFrame, *, io: Any) -> ChunkWriter:
        return _HandoffWriter(stage, encoded, io)

    def utf8_bytes(self, expression: str) -> str:
        return f"CAST({expression} AS BLOB)"

    async def to_bytes(self, conn: AsyncConnection, table: str, column: str) -> None:
        # A BLOB value fits any SQLite column, so only the values change.
        q = conn.dialect.identifier_preparer.quote
        await conn.exec_driver_sql(f"UPDATE {q(table)} SET {q(column)} = {self.utf8_bytes(q(column))}")

    async def read(self, session: AsyncSession, table: str, manifest: dict, rows: Rows, *, io: Any) -> pd.DataFrame:
        names = [name for name, _ in manifest["sql_columns"]]
        schema = pa.schema([pa.field(name, _HANDOFF_TYPES[sql_type]) for name, sql_type in manifest["sql_columns"]])
        # The hand-off table's columns go by position (c0, c1, ...): CREATE TABLE … AS names a
        # column after its expression, and one named like a keyword ("False") loses its name.
        aliases = [f"c{i}" for i in range(len(names))]
        select = f"SELECT {', '.join(aliases)} FROM r"
        paths: list[str] = []
        reading: collections.deque[asyncio.Future] = collections.deque()
        parts: list[pa.Table] = []
        try:
            # Part by part: while ADBC reads earlier parts' hand-off files (two at a time, one per
            # I/O thread), the connection fills the next one.
            for part in await self._parts(session, table, rows):
                path = _arrow_io.new_handoff_path("pull")
                paths.append(path)
                await self._copy_out(session, path, part.select(session, table, names, aliases=aliases))
                reading.append(
                    asyncio.get_running_loop().run_in_executor(
                        io, functools.partial(_arrow_io.read_handoff_table, path, select, schema, batch_rows=PULL_PART_ROWS)
                    )
                )
                while len(reading) >= self.io_workers():
                    parts.append(await await_thread(reading.popleft()))
            while reading:
                parts.append(await await_thread(reading.popleft()))
        except _arrow_io.HandoffTypeError as exc:
            # A column holds values of several storage classes: its rows come through the driver.
            log.debug("reading through the driver's rows instead of the hand-off: %s", exc)
            return await self._read_rows(session, rows.select(session, table, names), manifest)
        finally:
            for future in reading:
                await finish_through_cancel(settled(future))
            for path in paths:
                _arrow_io.remove_handoff(path)
        return codec.decode_arrow(manifest, _concat_away(parts))

    async def _parts(self, session: AsyncSession, table: str, rows: Rows) -> list[Rows]:
        """``rows`` in parts of about :data:`PULL_PART_ROWS` (row ids are contiguous in a
        version's table); a limited read is one part."""
        if rows.limit is not None:
            return [rows]
        conn = await session.connection()
        row_id = _quote(ROW_ID)
        sql = f"SELECT MIN({row_id}), MAX({row_id}) FROM {_quote(table)}{rows.where(row_id)}"
        low, high = (await conn.exec_driver_sql(sql)).one()
        if low is None:
            return [rows]
        edges = list(range(low - 1, high, PULL_PART_ROWS)) + [high]
        return [Rows(after=a, upto=b) for a, b in zip(edges, edges[1:])]

    async def _copy_out(self, session: AsyncSession, path: str, sql: str) -> None:
        """Copy the rows of ``sql`` into the hand-off file's table ``r``, on a connection of this
        read's own that then lets go of the file."""

        async def copy_out(driver: Any) -> None:
            # A private scratch file needs no rollback journal.
            await driver.execute(f"PRAGMA {HANDOFF}.journal_mode = OFF")
            await driver.execute(f"CREATE TABLE {HANDOFF}.r AS {sql}")

        conn = await _connect(session)
        try:
            await _through(_attached(conn, path, copy_out))
        finally:
            await _through(conn.close())

    async def _read_rows(self, session: AsyncSession, sql: str, manifest: dict) -> pd.DataFrame:
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        cursor = await raw.driver_connection.execute(sql)
        try:
            rows = await cursor.fetchall()
        finally:
            await cursor.close()
        return codec.decode(manifest, _rows.columns_of(rows, len(manifest["sql_columns"])))


class _HandoffWriter(ChunkWriter):
    """Each chunk: ADBC writes it into a private hand-off file off the event loop, and a
    connection of the upload's own copies it into the staging table and commits, before the
    upload's session commits the chunk's progress.

    The two overlap: while the connection's thread copies chunk *k*, ADBC already writes chunk
    *k + 1*'s file in the hub's I/O thread (both release the GIL), so a push takes about as long
    as the slower of the two rather than their sum.
    """

    def __init__(self, stage: str, encoded: EncodedFrame, io: Any) -> None:
        self._encoded = encoded
        self._io = io
        names = ", ".join(_quote(name) for name in [ROW_ID, *(c.name for c in encoded.columns)])
        # By position: the hand-off table has the batch's columns in the same order.
        self._copy = f"INSERT INTO main.{_quote(stage)} ({names}) SELECT * FROM {HANDOFF}.chunk"
        # Hand-off files by chunk, and the preparation of each, done or in flight.
        self._files: dict[tuple[int, int], str] = {}
        self._filling: dict[tuple[int, int], asyncio.Future] = {}
        # The upload's own connection for the copies, and the chunks it has committed.
        self._conn: AsyncConnection | None = None
        self._written: set[tuple[int, int]] = set()

    async def prepare(self, start: int, stop: int) -> None:
        self._forget_written(keep=(start, stop))
        await self._fill((start, stop))
        # The next chunk, most likely of the same size, gets ready while this one is copied.
        following = (stop, min(stop + (stop - start), self._encoded.nrows))
        if following[0] < following[1] and following not in self._filling:
            self._filling[following] = self._start_fill(following)

    def _start_fill(self, rows: tuple[int, int]) -> asyncio.Future:
        path = _arrow_io.new_handoff_path("push")
        self._files[rows] = path
        return asyncio.get_running_loop().run_in_executor(self._io, self._fill_file, path, *rows)

    async def _fill(self, rows: tuple[int, int]) -> None:
        if rows not in self._filling:
            self._filling[rows] = self._start_fill(rows)
        await await_thread(self._filling[rows])

    def _fill_file(self, path: str, start: int, stop: int) -> None:
        # The Arrow conversion runs in this thread too: the event loop stays free meanwhile.
        _arrow_io.write_handoff(path, "chunk", self._encoded.to_arrow(start, stop, row_ids=True))

    async def write(self, session: AsyncSession, start: int, stop: int) -> None:
        if (start, stop) in self._written:
            return  # committed already; a retry of the progress commit must not copy it again
        await self._fill((start, stop))
        if self._conn is None:
            self._conn = await _connect(session)
        await _through(_attached(self._conn, self._files[start, stop], self._copy_in))
        self._written.add((start, stop))

    async def _copy_in(self, driver: Any) -> None:
        with lock_wait_logged("the write lock of the database"):
            await driver.execute("BEGIN IMMEDIATE")
        try:
            await driver.execute(self._copy)
            await driver.execute("COMMIT")
        except BaseException:
            if driver.in_transaction:
                await driver.execute("ROLLBACK")
            raise

    def _forget_written(self, keep: tuple[int, int] | None = None) -> None:
        # A chunk's file is detached once its transaction ended and the connection went back to
        # the pool; by the next chunk (or the end) it can go. Files still being written stay.
        for rows in [r for r, future in self._filling.items() if r != keep and future.done()]:
            future = self._filling.pop(rows)
            if not future.cancelled():
                future.exception()  # a failure is reported by the chunk that waited for it
            _arrow_io.remove_handoff(self._files.pop(rows))

    async def aclose(self) -> None:
        # A file still being written is waited for (its thread cannot be stopped), then removed.
        for future in list(self._filling.values()):
            await finish_through_cancel(settled(future))
        self._forget_written()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await _through(conn.close())


def _concat_away(parts: list[pa.Table]) -> pa.Table:
    """The parts as one table, which then holds their only references (so that decoding can let
    go of each column as soon as it is done)."""
    table = pa.concat_tables(parts)
    parts.clear()
    return table


async def _attached(conn: AsyncConnection, path: str, work: Callable[[Any], Awaitable[None]]) -> None:
    """Attach a hand-off file to ``conn`` as :data:`HANDOFF`, run ``work(driver connection)``
    outside SQLAlchemy's transactions, and detach the file, whatever happened."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    await driver.execute(f"ATTACH DATABASE ? AS {HANDOFF}", (path,))
    try:
        await work(driver)
    finally:
        await driver.execute(f"DETACH DATABASE {HANDOFF}")


async def _through(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even when cancelled meanwhile, then raise the cancel: a statement
    cut short would leave its connection mid-transaction, or with a file attached."""
    result, cancelled = await finish_through_cancel(work)
    if cancelled:
        raise asyncio.CancelledError()
    return result


async def _connect(session: AsyncSession) -> AsyncConnection:
    """A connection of its own from ``session``'s engine. A cancel that arrives while the pool
    hands it over waits for the connection, closes it, and is then raised: dropped unclosed, the
    connection would stay checked out until the garbage collector found it."""
    conn, cancelled = await finish_through_cancel(session.bind.connect())
    if cancelled:
        await finish_through_cancel(conn.close())
        raise asyncio.CancelledError()
    return conn


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _busy_timeout(url: URL) -> float:
    """Seconds a connection waits for another writer's lock: the URL's ``?timeout=``, as with
    Python's ``sqlite3.connect``, or :data:`SQLITE_BUSY_TIMEOUT_S`."""
    raw = url.query.get("timeout")
    if raw is None:
        return SQLITE_BUSY_TIMEOUT_S
    try:
        value = float(raw if isinstance(raw, str) else raw[-1])
    except ValueError:
        value = -1.0
    if not 0 <= value < 86_400:
        raise ConfigError(f"url: timeout={raw!r} is not a number of seconds; use for example ?timeout=5")
    return value


def _create_file(path: Path, busy_timeout: float = 5.0, modes: FileModes = PRIVATE) -> None:
    """Create the database file with WAL journaling; WAL is persistent, so this runs once.

    The file, and any missing directory on its way, start with the bits of ``modes``: SQLite
    would create it as the process umask says (world-readable, most often), and gives its
    ``-wal`` and ``-shm`` files the database file's bits.

    Processes that connect to a new file at once all get here. Switching to WAL takes an
    exclusive lock, and SQLite answers "database is locked" at once, without waiting, to all but
    one of two connections that both hold a shared lock and want it. So the switch is tried again
    (by then the file may be in WAL already) until ``busy_timeout`` seconds have passed.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.005
    try:
        create_directories(path.parent, modes.directory)
        create_file(path, modes.file)
        while True:
            con = sqlite3.connect(path, timeout=busy_timeout)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
            finally:
                con.close()
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot create the SQLite database at {str(path)!r}: {exc}") from exc


class _Connection(aiosqlite.Connection):
    """aiosqlite's connection, which can be stopped more than once.

    SQLAlchemy ends an invalidated connection (a statement cut short by a cancel) with a graceful
    ``close()``; a second cancel arriving meanwhile makes it ``stop()`` the connection as well.
    aiosqlite's thread ends at the first stop, and its ``close()`` then stops again and waits,
    for ever, for the thread to answer. A stopped connection is closed by its own thread: a
    later stop or close has nothing left to wait for.
    """

    def stop(self) -> asyncio.Future | None:
        if not self._running:
            return None
        return super().stop()

    async def close(self) -> None:
        if not self._running:
            return
        await super().close()


async def _open_connection(database: str, busy_timeout: float) -> _Connection:
    """Open an aiosqlite connection to its end, even if the task that asked is cancelled meanwhile.

    aiosqlite opens the file on its own thread; cancelled while it does, it forgets the sqlite3
    connection the thread goes on to open, which stays open until the garbage collector finds it.
    Here the opening finishes, and a connection opened for a cancelled task is closed at once.
    """

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, uri=True, timeout=busy_timeout, check_same_thread=False)

    opening = _Connection(connector, 64)
    # As SQLAlchemy's own connect does: the driver's thread must not keep the interpreter alive.
    opening._thread.daemon = True
    connection, cancelled = await finish_through_cancel(opening)
    if cancelled:
        await finish_through_cancel(connection.close())
        raise asyncio.CancelledError()
    return connection


def _install_hooks(engine: AsyncEngine, busy_timeout: float, path: Path) -> None:
    """Pragmas per connection, and explicit transaction control.

    The driver's own implicit transactions are switched off so that SQLAlchemy's ``begin``
    event can start them. Connections whose execution options carry ``dsn_write=True`` start
    with ``BEGIN IMMEDIATE``; a wait for its lock longer than a second is logged at INFO.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        try:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()
        except BaseException:
            # A file that is not a database fails here. SQLAlchemy 2.0 does not close a connection
            # whose connect event failed, and aiosqlite's thread would outlive the error.
            dbapi_connection.close()
            raise

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:
        if conn.get_execution_options().get("dsn_write"):
            with lock_wait_logged(f"the write lock of {path}"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
