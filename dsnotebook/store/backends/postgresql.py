"""PostgreSQL through asyncpg: the team backend.

What is special here:

- Native types where they hold the values exactly (BOOLEAN, NUMERIC, JSON/JSONB, TIMESTAMP(TZ),
  INTERVAL, DATE, TIME; see :mod:`dsnotebook.store.codec`), so SQL users get real types.
- Many writers: row locks (``SELECT … FOR UPDATE``) and an advisory lock for the catalog's
  creation serialise what must be, and uploads run four at a time by default.
- The staging table gets its row ids sent along with the rows, and the primary key is built
  once, when the version is sealed: keeping it up while rows stream in costs twice as much.
- A kept staging table is locked (``ACCESS EXCLUSIVE``) before a resume counts its rows, so that
  an upload only presumed dead cannot add a chunk between the count and the take-over.
- Rows are limited to one 8 kB page, long values moved out of line.
- ``connect(schema=…)`` (or ``?schema=`` in the URL) keeps the catalog and the data in that
  schema: every connection, asyncpg's and ADBC's, has it as its whole search path, so the
  unqualified names dsnotebook uses mean its tables and nothing else. Connecting creates the
  schema where ``create`` allows and the role may, and finds out whether the role may write
  there: one that may only read can list and pull, and its pushes are refused up front.

Bulk rows move through Arrow and ADBC (``adbc-driver-postgresql``), off the event loop, on a
connection of each upload's or read's own: a chunk is one binary COPY, committed before the
upload's session commits the chunk's progress, so the progress never claims rows that are not
there. Rows committed without their progress (a kill between the two commits) are still rows
``1..n`` of the staging table, which is all a resume counts. Frames with NUMERIC columns go
through asyncpg's COPY instead: ADBC writes decimals without their display scale (1.50 as 1.5),
and refuses numeric text. Reads of NUMERIC or JSON columns, whose values the codec rebuilds one
by one anyway, go through asyncpg's rows too.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
from sqlalchemy import BigInteger, Boolean, Column, Date, DateTime, Float, Insert, LargeBinary, MetaData, Numeric, Table, Text, Time
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.types import TypeEngine

from ...errors import ConfigError
from .. import codec
from ..codec import EncodedFrame, SqlColumn
from ..engine import mask_text, mask_url
from . import _arrow_io, _rows
from ._arrow_io.pg import quote_ident
from ._pg_schemas import CATALOG_LOCK_KEY, check_schema, pick_schema
from .base import ROW_ID, Backend, Capabilities, ChunkWriter, Rows, Sizes, check_engine, create_engine_for, off_loop

__all__ = ["PostgreSQLBackend", "time_codecs"]

_TYPES = {
    "INTEGER": BigInteger,
    "REAL": lambda: Float(precision=53),
    "TEXT": Text,
    "BLOB": LargeBinary,
    "BOOLEAN": Boolean,
    "NUMERIC": Numeric,
    "JSON": postgresql.JSON,
    "JSONB": postgresql.JSONB,
    "TIMESTAMP": DateTime,
    "TIMESTAMPTZ": lambda: DateTime(timezone=True),
    "INTERVAL": postgresql.INTERVAL,
    "DATE": Date,
    "TIME": Time,
}
# Bytes per value stored in the row itself; text, binary, numeric and JSON values may move out
# of line, leaving an 18-byte pointer.
_FIXED_WIDTHS = {"BOOLEAN": 1, "INTEGER": 8, "REAL": 8, "TIMESTAMP": 8, "TIMESTAMPTZ": 8, "INTERVAL": 16, "DATE": 4, "TIME": 8}
_DIGITS_PER_UNIT = {"s": 0, "ms": 3, "us": 6, "ns": 9}
# Storage types whose values ADBC's COPY writes and its reader gives back exactly as the codec's
# Arrow arrays hold them (see _arrow_io).
_ARROW_WRITES = frozenset(
    {"INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN", "JSON", "JSONB", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL", "DATE", "TIME"}
)
_ARROW_READS = frozenset({"INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL", "DATE", "TIME"})


class PostgreSQLBackend(Backend):
    name: ClassVar[str] = "postgresql"
    drivers: ClassVar[tuple[str, ...]] = ("asyncpg",)
    url_forms: ClassVar[tuple[str, ...]] = ("postgresql+asyncpg://user@host:5432/database",)
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_columns=1600,
        max_row_bytes=8160,
        default_concurrency=4,
        single_writer=False,
        native_types=True,
        schemas=True,
    )

    def __init__(self, url: URL, **options: Any) -> None:
        super().__init__(url, **options)
        self.schema = pick_schema(url, self.schema)
        if self.schema is not None:
            # The schema then shows wherever the URL does (the hub's repr, messages), and a hub
            # opened on hub.url finds the same datasets.
            self.url = url.update_query_dict({"schema": self.schema})
        try:
            self._uri = _arrow_io.pg_uri(self.url)
        except ValueError as exc:
            raise ConfigError(f"url: {mask_url(self.url)!r} cannot be used: {mask_text(str(exc))}") from None

    async def open_engine(self, *, create: bool = True) -> AsyncEngine:
        """The engine, once the schema is there (created where ``create`` allows and the role
        may) and usable; sets :attr:`write_refusal` when the role may not write there.

        Raises:
            ConfigError: the server cannot be reached; the schema does not exist and cannot be
                created; the role lacks USAGE on it; or no schema is given and none on the
                role's search path can be used.
        """
        engine = await check_engine(self._new_engine(), self.url)
        try:
            created, self.write_refusal = await check_schema(engine, self.schema, create=create)
        except BaseException:
            await engine.dispose()
            raise
        if created:
            # The dialect asked for the current schema on its first connection, before the
            # schema existed: a new engine asks again.
            await engine.dispose()
            engine = await check_engine(self._new_engine(), self.url)
        return engine

    def _new_engine(self) -> AsyncEngine:
        kwargs: dict[str, Any] = {}
        if self.schema is not None:
            # The schema alone: a table missing there must never be found in public instead.
            kwargs["connect_args"] = {"server_settings": {"search_path": quote_ident(self.schema)}}
        return create_engine_for(self.url, self.url.difference_update_query(["schema"]), **kwargs)

    async def sizes(self, conn: AsyncConnection, staging_tables: Sequence[str]) -> Sizes:
        """``pg_database_size``, and each table's ``pg_total_relation_size`` (its indexes and
        TOAST included). The server's free disk space cannot be seen from here."""
        ours = (
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname LIKE 'dsn\\_%'"
        )
        database = (await conn.exec_driver_sql("SELECT pg_database_size(current_database())")).scalar_one()
        sizes = {name: int(size) for name, size in (await conn.exec_driver_sql(ours)).all()}
        staging = {name: sizes[name] for name in staging_tables if name in sizes}
        return Sizes(database=int(database), tables=sum(sizes.values()), staging=staging)

    def warm_up(self) -> None:
        import adbc_driver_postgresql.dbapi  # noqa: F401 - loaded once, for the first transfer

    def io_workers(self) -> int:
        # Uploads run four at a time here, and reads beside them.
        return self.capabilities.default_concurrency + 1

    async def lock_catalog(self, conn: AsyncConnection) -> None:
        # Kernels connecting at once must not race to create the same tables.
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CATALOG_LOCK_KEY})")

    def insert_if_absent(self, table: Table, index_elements: Sequence[Any], **values: Any) -> Insert:
        return postgresql.insert(table).values(**values).on_conflict_do_nothing(index_elements=index_elements)

    def column_type(self, sql_type: str) -> TypeEngine:
        return _TYPES[sql_type]()

    def staging_table(self, name: str, columns: Sequence[SqlColumn]) -> Table:
        # The upload sends the row ids; the primary key comes when the version is sealed.
        row_id = Column(ROW_ID, BigInteger(), nullable=False, autoincrement=False)
        return Table(name, MetaData(), row_id, *(Column(c.name, self.column_type(c.sql_type)) for c in columns))

    def open_writer(self, stage: str, encoded: EncodedFrame, *, io: Any) -> ChunkWriter:
        if all(c.sql_type in _ARROW_WRITES for c in encoded.columns):
            return _ArrowWriter(stage, encoded, io, self._uri, self.schema)
        return _CopyWriter(stage, encoded)

    async def lock_staging(self, conn: AsyncConnection, table: str) -> None:
        q = conn.dialect.identifier_preparer.quote
        await conn.exec_driver_sql(f"LOCK TABLE {q(table)} IN ACCESS EXCLUSIVE MODE")

    async def seal(self, conn: AsyncConnection, stage: str, table_name: str) -> None:
        q = conn.dialect.identifier_preparer.quote
        await conn.exec_driver_sql(
            f"ALTER TABLE {q(stage)} ADD CONSTRAINT {q(table_name + '_pkey')} PRIMARY KEY ({q(ROW_ID)})"
        )

    def row_bytes(self, columns: Sequence[SqlColumn]) -> int:
        """The tuple header, the null bitmap, the row id, each fixed-width value (1 byte per
        boolean, 4 per date, 8 per number, timestamp or time, 16 per interval), and an 18-byte pointer per text,
        binary, numeric or JSON value moved out of line."""
        fixed = sum(_FIXED_WIDTHS.get(c.sql_type, 18) for c in columns)
        return 24 + (len(columns) + 1 + 7) // 8 + 8 + fixed

    def utf8_bytes(self, expression: str) -> str:
        return f"convert_to({expression}, 'UTF8')"

    def convert(self, expression: str, source: str, target: str, unit: str | None) -> str:
        """Timestamps become the count of ``unit`` since the Unix epoch and intervals the count of
        ``unit``, the codec's generic form; ``EXTRACT`` gives an exact numeric (PostgreSQL 14 and
        later)."""
        if source == target:
            return expression
        if (source, target) == ("INTEGER", "BOOLEAN"):
            return f"({expression} <> 0)"
        if target == "INTEGER" and source in ("TIMESTAMP", "TIMESTAMPTZ", "INTERVAL"):
            return f"(EXTRACT(EPOCH FROM {expression}) * 1{'0' * _DIGITS_PER_UNIT[unit]})::bigint"
        if target == "TEXT" and source in ("NUMERIC", "JSON", "JSONB"):
            return f"({expression})::text"
        if (source, target) == ("JSONB", "JSON"):
            return f"({expression})::json"
        return super().convert(expression, source, target, unit)

    def nan_to_null(self, expression: str) -> str:
        """Earlier releases stored a float NaN as a value here; PostgreSQL counts NaN equal to
        itself, so ``NULLIF`` finds it."""
        return f"NULLIF({expression}, 'NaN'::float8)"

    async def retype(self, conn: AsyncConnection, table: str, column: str, sql_type: str, using: str) -> None:
        q = conn.dialect.identifier_preparer.quote
        compiled = self.column_type(sql_type).compile(dialect=conn.dialect)
        await conn.exec_driver_sql(f"ALTER TABLE {q(table)} ALTER COLUMN {q(column)} TYPE {compiled} USING {using}")

    async def to_bytes(self, conn: AsyncConnection, table: str, column: str) -> None:
        q = conn.dialect.identifier_preparer.quote
        await conn.exec_driver_sql(
            f"ALTER TABLE {q(table)} ALTER COLUMN {q(column)} TYPE BYTEA USING {self.utf8_bytes(q(column))}"
        )

    async def read(self, session: AsyncSession, table: str, manifest: dict, rows: Rows, *, io: Any) -> pd.DataFrame:
        sql = rows.select(session, table, [name for name, _ in manifest["sql_columns"]])
        if not all(t in _ARROW_READS for _, t in manifest["sql_columns"]):
            return await self._read_rows(session, sql, manifest)
        return codec.decode_arrow(manifest, await off_loop(io, _fetch, self._uri, sql))

    async def _read_rows(self, session: AsyncSession, sql: str, manifest: dict) -> pd.DataFrame:
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        time_types = {t for _, t in manifest["sql_columns"] if t in codec.TIME_TYPES}
        # asyncpg returns Record objects, which unpack like tuples.
        async with time_codecs(raw, time_types):
            records = await raw.driver_connection.fetch(sql)
        return codec.decode(manifest, _rows.columns_of(records, len(manifest["sql_columns"])))


def _fetch(uri: str, sql: str) -> pa.Table:
    conn = _arrow_io.pg_connect(uri)
    try:
        table = _arrow_io.pg_fetch(conn, sql)
        conn.rollback()
    finally:
        conn.close()
    return table


class _ArrowWriter(ChunkWriter):
    """Each chunk: one binary COPY of its Arrow batch, with the row ids, on the upload's own ADBC
    connection, committed there before the upload commits the chunk's progress."""

    def __init__(self, stage: str, encoded: EncodedFrame, io: Any, uri: str, schema: str | None) -> None:
        self._stage = stage
        self._encoded = encoded
        self._io = io
        self._uri = uri
        self._schema = schema
        self._conn: Any = None
        self._cancel = threading.Event()
        # Chunks whose rows are committed: a retry of the progress commit must not send them again.
        self._written: set[tuple[int, int]] = set()

    async def write(self, session: AsyncSession, start: int, stop: int) -> None:
        if (start, stop) in self._written:
            return
        await off_loop(self._io, self._ingest, start, stop, on_cancel=self._stop)
        self._written.add((start, stop))

    def _ingest(self, start: int, stop: int) -> None:
        if self._conn is None:
            self._conn = _arrow_io.pg_connect(self._uri)
        _arrow_io.pg_ingest(
            self._conn, self._stage, self._encoded.to_arrow(start, stop, row_ids=True), schema=self._schema, cancel=self._cancel
        )

    def _stop(self) -> None:
        if self._conn is not None:
            _arrow_io.pg_cancel(self._conn, self._cancel)
        else:
            self._cancel.set()

    async def aclose(self) -> None:
        # No ingest runs any more (each write waited for its thread), and closing only sends a
        # goodbye: done here, it also works at interpreter exit, when the I/O thread takes no work.
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


class _CopyWriter(ChunkWriter):
    """PostgreSQL's binary COPY through the upload's own asyncpg connection, in its transaction,
    with the row ids sent along."""

    def __init__(self, stage: str, encoded: EncodedFrame) -> None:
        self._stage = stage
        self._encoded = encoded
        self._columns = [ROW_ID, *(c.name for c in encoded.columns)]

    async def write(self, session: AsyncSession, start: int, stop: int) -> None:
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        records = self._encoded.iter_rows(start, stop, wire=True, row_ids=True)
        async with time_codecs(raw, self._encoded.time_types):
            await raw.driver_connection.copy_records_to_table(self._stage, records=records, columns=self._columns)


# PostgreSQL's names of the time types whose values asyncpg otherwise turns into datetime objects.
_PG_TIME_TYPES = {"TIMESTAMP": "timestamp", "TIMESTAMPTZ": "timestamptz", "INTERVAL": "interval"}


def _first(value: tuple) -> int:
    return value[0]


def _interval_us(value: tuple) -> int:
    months, days, microseconds = value
    if months:
        raise ValueError(f"an interval of {months} months has no fixed length in microseconds")
    return days * 86_400_000_000 + microseconds


@asynccontextmanager
async def time_codecs(raw, sql_types: set[str]) -> AsyncIterator[None]:
    """Within the block, asyncpg passes TIMESTAMP, TIMESTAMPTZ and INTERVAL values as integers.

    ``raw`` is the pool connection of ``AsyncConnection.get_raw_connection()``. Writes take the
    tuples of asyncpg's ``tuple`` format (``(microseconds since 2000-01-01,)``, or ``(months, days,
    microseconds)`` for an interval); reads give the microseconds as one integer. A million
    datetime objects cost about a second to make and as much to take apart; these, milliseconds.

    Only the driver call inside the block may use the connection: the codecs are the
    connection's own, and SQLAlchemy's statements must never see them. They are put back however
    the block ends.
    """
    driver = raw.driver_connection
    names = [_PG_TIME_TYPES[t] for t in sorted(sql_types) if t in _PG_TIME_TYPES]
    changed: list[str] = []
    try:
        for name in names:
            decoder = _interval_us if name == "interval" else _first
            await driver.set_type_codec(name, schema="pg_catalog", encoder=tuple, decoder=decoder, format="tuple")
            changed.append(name)
        yield
    finally:
        # For built-in types asyncpg needs no query for this, so it also works on a connection
        # whose transaction has failed or whose statement was cancelled.
        for name in changed:
            await driver.reset_type_codec(name, schema="pg_catalog")
