"""PostgreSQL's bulk path: ADBC's binary COPY in, and Arrow out.

ADBC transfer primitives: Arrow record batches in and out of SQLite and PostgreSQL.

Everything here is synchronous. Callers run these functions in a worker thread
(``loop.run_in_executor``); ADBC releases the GIL while it works. Nothing here touches asyncio,
SQLAlchemy sessions or the catalog.

PostgreSQL
----------
:func:`pg_ingest` appends with ADBC's binary COPY. The COPY writer picks the wire encoding from the
Arrow type, not from the column, and the server checks little more than the byte count, so a
wrong Arrow type is silently misread when its size matches: float64 into BIGINT or int64 into
DOUBLE PRECISION reinterpret the bits, int64 into TIMESTAMP is read as microseconds since
2000-01-01 (and int64 extremes as -infinity/infinity), and BYTEA takes any type as raw bytes.
So :func:`pg_ingest` reads the table's column types first and refuses, with
:class:`CopyTypeError`, any Arrow type not in :data:`PG_COPY_TYPES`:

=============================  ==============================================================
column type                    Arrow types that COPY writes exactly
=============================  ==============================================================
BIGINT                         int64
DOUBLE PRECISION               float64 (NaN stays NaN, -0.0 stays -0.0)
TEXT, VARCHAR                  string, large_string, string_view, dictionary<string>
                               (NUL characters are refused by the server)
BYTEA                          binary, large_binary, binary_view, fixed_size_binary
BOOLEAN                        bool
NUMERIC                        int8..int64 only. Not from strings: ADBC refuses ("COPY Writer
                               from Arrow type 'string' to PostgreSQL numeric is not
                               implemented"). Not from decimal128/256 either: ADBC drops the
                               display scale's trailing zeros (1.50 is stored as 1.5, 100.00 as
                               100), so str(Decimal) would not round-trip. Frames with such
                               columns take the asyncpg path.
JSON                           string, large_string (the text is kept as is), arrow.json
JSONB                          arrow.json only (a plain string fails: "unsupported jsonb version
                               number"). String columns are wrapped in ``pa.json_()`` here, which
                               costs nothing.
TIMESTAMP                      timestamp[s|ms|us] without a time zone; year 1 to 9999 exact
TIMESTAMPTZ                    timestamp[s|ms|us, <any tz>] (the values are UTC instants)
INTERVAL                       duration[s|ms|us], sent as month_day_nano_interval with whole
                               days apart as asyncpg does (3 days is stored as '3 days', not
                               ADBC's own '72:00:00'); month_day_nano_interval (nanoseconds are
                               truncated to microseconds)
DATE                           date32 (years 1 to 9999, all that datetime.date holds)
TIME                           time64[us]
any column                     null (all values NULL)
=============================  ==============================================================

Nanosecond timestamps and durations are refused (ADBC truncates them toward zero).

:func:`pg_ingest` writes the values it is given: a NaN in a float64 array is stored as NaN. The
codec's batches (:meth:`dsnotebook.store.codec.EncodedFrame.to_arrow`) carry a float NaN as
null, so dsnotebook's tables hold NULL for it, as on SQLite.

:func:`pg_fetch` gives back what ADBC reads, unchanged: BIGINT int64, DOUBLE PRECISION double,
TEXT/VARCHAR string, BYTEA binary, BOOLEAN bool, NUMERIC ``arrow.opaque`` extension over string
(the exact text, e.g. '12.3400'), JSON and JSONB ``arrow.json`` extension over string,
TIMESTAMP timestamp[us], TIMESTAMPTZ timestamp[us, tz=UTC], INTERVAL month_day_nano_interval,
DATE date32, TIME time64[us], INTEGER int32, SMALLINT int16, REAL float. Every field carries ``POSTGRESQL:type``
metadata. ±infinity timestamps come back as wrapped int64 garbage.

Locks, cancel, vanished tables (measured on PostgreSQL 15):

* An ingest on its own connection waits, without failing, while another connection holds
  ``LOCK TABLE t IN ACCESS EXCLUSIVE MODE`` (``wait_event`` Lock/relation, on the COPY).
* ``conn.adbc_cancel()`` from another thread (libpq ``PQcancel``) ends a lock wait at once with
  ``adbc_driver_manager.OperationalError`` ("canceling statement due to user request", sqlstate
  57014). During the data stream the server stops, but the client keeps sending every remaining
  batch before it notices, so :func:`pg_ingest` also stops pulling batches when its ``cancel``
  event is set. Use :func:`pg_cancel` for both. Either way :class:`IngestCancelled` is raised,
  the transaction is rolled back and the connection stays usable.
* A table renamed or dropped while the ingest waits for its lock raises ADBC's
  ``ProgrammingError`` ("relation "public.t" does not exist", sqlstate 42P01), which
  :func:`pg_ingest` raises as :class:`TableMissingError`, as it does for a table missing from the
  start (found by its column lookup, before any COPY).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "PG_COPY_TYPES",
    "CopyTypeError",
    "IngestCancelled",
    "TableMissingError",
    "pg_cancel",
    "pg_connect",
    "pg_fetch",
    "pg_fetch_batches",
    "pg_ingest",
    "pg_uri",
    "quote_ident",
    "search_path_option",
]


class CopyTypeError(TypeError):
    """An Arrow field's type cannot be written by binary COPY into its PostgreSQL column exactly.

    Attributes:
        column: the column's name.
        arrow_type: the field's Arrow type.
        pg_type: the column's PostgreSQL type (``format_type``), or None when the table has no
            such column.
    """

    def __init__(self, message: str, column: str, arrow_type: pa.DataType, pg_type: str | None) -> None:
        super().__init__(message)
        self.column = column
        self.arrow_type = arrow_type
        self.pg_type = pg_type


class TableMissingError(LookupError):
    """The target table does not exist (never did, or was renamed or dropped meanwhile)."""


class IngestCancelled(Exception):
    """:func:`pg_ingest` stopped because its ``cancel`` event was set; nothing was committed."""


# URL query parameters that asyncpg's connect() and libpq both understand, by their libpq name.
_PG_SAME_PARAMS = ("password", "passfile", "service", "target_session_attrs", "krbsrvname", "gsslib", "sslmode")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TRUE = ("1", "true", "yes", "on")


def _one(value: str | tuple[str, ...], key: str) -> str:
    if isinstance(value, tuple):
        if len(value) != 1:
            raise ValueError(f"the URL gives {key!r} more than once")
        return value[0]
    return value


def _split_host(item: str) -> tuple[str, str | None]:
    if item.startswith("/"):  # a Unix socket directory
        return item, None
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") and rest[1:] else None
    if item.count(":") == 1:
        host, port = item.split(":")
        return host, port or None
    return item, None


def pg_uri(url: URL) -> str:
    """The libpq connection URI for an SQLAlchemy PostgreSQL URL.

    The ``+driver`` is dropped. User, password, host(s), port(s) and database are kept, each
    percent-encoded. Query parameters that both asyncpg and libpq know are translated: ``ssl``
    becomes ``sslmode``, ``timeout`` (seconds) ``connect_timeout`` (whole seconds, rounded up),
    ``direct_tls=true`` ``sslnegotiation=direct``, ``host`` (SQLAlchemy's multi-host form,
    ``host=h1:5432&host=h2:5433``, or a socket directory) and ``password``, ``passfile``, ``service``,
    ``target_session_attrs``, ``krbsrvname``, ``gsslib`` and ``sslmode`` are kept. dsnotebook's
    own ``schema`` becomes ``options=-csearch_path=<the quoted schema>``, so that unqualified
    names mean that schema's tables, as on the asyncpg connections (see
    :func:`search_path_option`). The others (``command_timeout``,
    ``prepared_statement_cache_size``, ``servicefile``, ...) are dropped.

    Args:
        url: an SQLAlchemy URL such as ``postgresql+asyncpg://u:p@host:5432/db?ssl=require``.

    Returns:
        A ``postgresql://`` URI for ADBC (libpq).

    Raises:
        ValueError: the URL is not PostgreSQL's, or ``ssl`` is not one of libpq's sslmodes.
    """
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {url.render_as_string(hide_password=True)}")
    params: dict[str, str] = {}
    hosts: list[str] = []
    ports: list[str] = []
    for key, value in url.query.items():
        if key == "host":
            for item in value if isinstance(value, tuple) else (value,):
                host, port = _split_host(item)
                hosts.append(host)
                ports.append(port or "")
        elif key == "ssl":
            mode = _one(value, key).lower().replace("_", "-")
            if mode not in _SSL_MODES:
                raise ValueError(f"ssl={_one(value, key)!r} is not one of {', '.join(_SSL_MODES)}")
            params["sslmode"] = mode
        elif key == "timeout":
            params["connect_timeout"] = str(max(1, math.ceil(float(_one(value, key)))))
        elif key == "direct_tls":
            if _one(value, key).lower() in _TRUE:
                params["sslnegotiation"] = "direct"
        elif key == "port" and url.port is None:
            params["port"] = _one(value, key)
        elif key == "schema":
            params["options"] = search_path_option(_one(value, key))
        elif key in _PG_SAME_PARAMS:
            params[key] = _one(value, key)

    netloc = ""
    if url.username is not None:
        netloc = quote(url.username, safe="")
        if url.password is not None:
            netloc += ":" + quote(str(url.password), safe="")
        netloc += "@"
    if url.host:
        netloc += f"[{url.host}]" if ":" in url.host else quote(url.host, safe="")
        if url.port is not None:
            netloc += f":{url.port}"
    if hosts:
        params["host"] = ",".join(hosts)
        if any(ports):
            default = str(url.port or 5432)
            params["port"] = ",".join(p or default for p in ports)
    uri = f"postgresql://{netloc}/{quote(url.database or '', safe='')}"
    if params:
        uri += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return uri


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier in double quotes, any double quote doubled."""
    return '"' + name.replace('"', '""') + '"'


def search_path_option(schema: str) -> str:
    """The libpq ``options`` value that makes ``schema`` the connection's whole search path.

    libpq splits ``options`` at ASCII whitespace and takes a backslash as an escape, so both
    are escaped; the server then reads the quoted identifier as it reads ``SET search_path``.
    """
    value = quote_ident(schema).replace("\\", "\\\\")
    return "-csearch_path=" + "".join("\\" + ch if ch in " \t\n\r\f\v" else ch for ch in value)


def pg_connect(uri: str) -> Any:
    """An ADBC DB-API connection to PostgreSQL, with autocommit off.

    Args:
        uri: a libpq URI, e.g. from :func:`pg_uri`.

    Returns:
        An ``adbc_driver_manager.dbapi.Connection``; close it when done.

    Raises:
        adbc_driver_manager.Error: the server refused or could not be reached.
    """
    import adbc_driver_postgresql.dbapi as adbc_pg

    return adbc_pg.connect(uri, autocommit=False)


def _accepts(pg: str, t: pa.DataType) -> bool:
    if pa.types.is_null(t):
        return True
    if isinstance(t, pa.BaseExtensionType):
        return t.extension_name == "arrow.json" and pg in ("text", "varchar", "json", "jsonb")
    if pg == "int8":
        return t == pa.int64()
    if pg == "float8":
        return t == pa.float64()
    if pa.types.is_dictionary(t):
        return pg in ("text", "varchar") and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type))
    if pg in ("text", "varchar", "json"):
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if pg == "jsonb":  # wrapped in pa.json_() on the way
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if pg == "bytea":
        return (
            pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t)
        )
    if pg == "bool":
        return pa.types.is_boolean(t)
    if pg == "numeric":
        return pa.types.is_signed_integer(t)
    if pg == "timestamp":
        return pa.types.is_timestamp(t) and t.tz is None and t.unit != "ns"
    if pg == "timestamptz":
        return pa.types.is_timestamp(t) and t.tz is not None and t.unit != "ns"
    if pg == "interval":
        return (pa.types.is_duration(t) and t.unit != "ns") or t == pa.month_day_nano_interval()
    if pg == "date":
        return t == pa.date32()
    if pg == "time":
        return t == pa.time64("us")
    return False


#: The PostgreSQL types :func:`pg_ingest` writes with binary COPY (``pg_type.typname``).
PG_COPY_TYPES = frozenset(
    {"int8", "float8", "text", "varchar", "bytea", "bool", "numeric", "json", "jsonb", "timestamp", "timestamptz", "interval", "date", "time"}
)

_COLUMN_TYPES_SQL = (
    "SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod) "
    "FROM pg_catalog.pg_attribute a "
    "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
    "WHERE n.nspname = coalesce($1::text, current_schema()) AND c.relname = $2::text "
    "AND a.attnum > 0 AND NOT a.attisdropped"
)


def _pg_columns(conn: Any, table: str, schema: str | None) -> dict[str, tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute(_COLUMN_TYPES_SQL, parameters=(schema, table))
        return {name: (typname, shown) for name, typname, shown in cur.fetchall()}


_Convert = Callable[[pa.Array], pa.Array]
_COPY_BATCH_ROWS = 16_384
_US_PER_DAY = 86_400_000_000
_MDN = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanos", "<i8")])


def _duration_to_interval(arr: pa.Array) -> pa.Array:
    # Whole days apart from the time of day, as asyncpg encodes a timedelta, so that SQL users
    # see '3 days' whichever path wrote the rows. Floor division keeps the time part positive.
    us = arr.cast(pa.duration("us")).cast(pa.int64())
    values = pc.fill_null(us, 0).to_numpy(zero_copy_only=False)
    out = np.zeros(len(values), dtype=_MDN)
    days, rest = np.divmod(values, _US_PER_DAY)
    if len(values) and (days.max() > np.iinfo(np.int32).max or days.min() < np.iinfo(np.int32).min):
        raise ValueError("a duration has more days than a PostgreSQL interval holds")
    out["days"] = days
    out["nanos"] = rest * 1000
    validity = None
    if arr.null_count:
        validity = pa.py_buffer(np.packbits(pc.is_valid(arr).to_numpy(zero_copy_only=False), bitorder="little"))
    return pa.Array.from_buffers(pa.month_day_nano_interval(), len(values), [validity, pa.py_buffer(out)], arr.null_count)


def _plan(arrow_schema: pa.Schema, columns: dict[str, tuple[str, str]]) -> tuple[pa.Schema, list[_Convert | None]]:
    """The schema to send and a converter per field, checked against the table's columns."""
    fields: list[pa.Field] = []
    converters: list[_Convert | None] = []
    for field in arrow_schema:
        if field.name not in columns:
            raise CopyTypeError(f"the table has no column {field.name!r}", field.name, field.type, None)
        typname, shown = columns[field.name]
        t = field.type
        convert: _Convert | None = None
        if typname not in PG_COPY_TYPES or not _accepts(typname, t):
            hint = " (the display scale's trailing zeros would be lost)" if pa.types.is_decimal(t) else ""
            raise CopyTypeError(
                f"column {field.name!r} ({shown}) cannot be written exactly by binary COPY from Arrow {t}{hint}",
                field.name,
                t,
                shown,
            )
        if typname == "jsonb" and not isinstance(t, pa.BaseExtensionType) and not pa.types.is_null(t):
            json_type = pa.json_(t)
            field = field.with_type(json_type)
            convert = lambda col, json_type=json_type: pa.ExtensionArray.from_storage(json_type, col)
        elif typname == "interval" and pa.types.is_duration(t):
            field = field.with_type(pa.month_day_nano_interval())
            convert = _duration_to_interval
        fields.append(field)
        converters.append(convert)
    return pa.schema(fields), converters


def _as_batches(
    data: Iterable[pa.RecordBatch] | pa.RecordBatchReader | pa.Table,
) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    if isinstance(data, pa.Table):
        return data.schema, iter(data.to_batches())
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, iter(data)
    if isinstance(data, pa.RecordBatch):
        return data.schema, iter([data])
    it = iter(data)
    first = next(it, None)
    if first is None:
        return None, iter(())
    return first.schema, itertools.chain([first], it)


def _batches_to_send(
    it: Iterator[pa.RecordBatch],
    source: pa.Schema,
    target: pa.Schema,
    converters: list[_Convert | None],
    cancel: threading.Event | None,
    failure: list[BaseException],
) -> Iterator[pa.RecordBatch]:
    # ADBC pulls these from its COPY loop; raising here ends the COPY at once (a server-side
    # cancel alone lets the client send every remaining batch first). ADBC reports the error as
    # its own OperationalError, so the original goes into ``failure`` for pg_ingest to raise.
    # Big batches are cut: ADBC encodes a whole batch before it sends any of it, so smaller
    # pieces let the server work while the next one is encoded (1M x 8: 1.45 s in one batch,
    # 0.67 s in 16k-row pieces).
    try:
        for batch in it:
            if not batch.schema.equals(source):
                raise ValueError(f"a batch's schema differs from the first one's:\n{batch.schema}\nvs\n{source}")
            for start in range(0, batch.num_rows, _COPY_BATCH_ROWS):
                if cancel is not None and cancel.is_set():
                    raise IngestCancelled("ingest cancelled")
                piece = batch.slice(start, _COPY_BATCH_ROWS)
                if any(converters):
                    arrays = [
                        col if convert is None else convert(col) for col, convert in zip(piece.columns, converters, strict=True)
                    ]
                    piece = pa.RecordBatch.from_arrays(arrays, schema=target)
                yield piece
    except BaseException as exc:
        failure.append(exc)
        raise


def pg_ingest(
    conn: Any,
    table: str,
    batches: Iterable[pa.RecordBatch] | pa.RecordBatchReader | pa.Table,
    *,
    schema: str | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Append rows into an existing table with binary COPY, and commit.

    The table's column types are read first and every field is checked against
    :data:`PG_COPY_TYPES` (see the module docstring): a wrong type would be silently misread.
    Fields are matched to columns by exact name; columns without a field get their defaults.
    Batches are sent in pieces of at most 16,384 rows. On any error the transaction is rolled
    back.

    Args:
        conn: a connection from :func:`pg_connect`, with no transaction open.
        table: the table's name (unquoted; ADBC quotes it).
        batches: the rows; every batch must have the first one's schema.
        schema: the table's schema; None for ``current_schema()`` (ADBC does not follow the
            search path further).
        cancel: when set (see :func:`pg_cancel`), no further batch is sent.

    Returns:
        The number of rows written (0 for no batches).

    Raises:
        CopyTypeError: a field has no column, or a type COPY cannot write exactly into it.
        TableMissingError: the table does not exist, or was renamed or dropped meanwhile.
        IngestCancelled: ``cancel`` was set before the rows were committed.
        ValueError: batches with differing schemas.
        adbc_driver_manager.Error: anything else the server or driver refused.
    """
    import adbc_driver_manager

    source, it = _as_batches(batches)
    if source is None:
        return 0
    failure: list[BaseException] = []
    try:
        if cancel is not None and cancel.is_set():
            raise IngestCancelled("ingest cancelled")
        columns = _pg_columns(conn, table, schema)
        if not columns:
            raise TableMissingError(f"table {table!r} does not exist" + (f" in schema {schema!r}" if schema else ""))
        target, converters = _plan(source, columns)
        reader = pa.RecordBatchReader.from_batches(target, _batches_to_send(it, source, target, converters, cancel, failure))
        with conn.cursor() as cur:
            rows = cur.adbc_ingest(table, reader, mode="append", db_schema_name=schema)
        if cancel is not None and cancel.is_set():
            raise IngestCancelled("ingest cancelled")
        conn.commit()
        return int(rows)
    except BaseException as exc:
        with contextlib.suppress(adbc_driver_manager.Error):
            conn.rollback()
        if isinstance(exc, adbc_driver_manager.Error):
            if failure and not isinstance(failure[0], IngestCancelled):
                raise failure[0] from exc
            if cancel is not None and cancel.is_set():
                raise IngestCancelled("ingest cancelled") from exc
            if getattr(exc, "sqlstate", None) == "42P01" or "does not exist" in str(exc).split("\n", 1)[0]:
                raise TableMissingError(f"table {table!r} does not exist (renamed or dropped?): {exc}") from exc
        raise


def pg_cancel(conn: Any, cancel: threading.Event) -> None:
    """Stop a running :func:`pg_ingest` on ``conn`` from another thread.

    Sets ``cancel`` (no further batch is sent) and asks the server to cancel the running
    statement (which ends a wait for a lock). Safe to call when nothing runs; but a cancel
    request that reaches the server late may cancel the connection's next statement, so close
    the connection afterwards rather than reuse it.
    """
    import adbc_driver_manager

    cancel.set()
    with contextlib.suppress(adbc_driver_manager.Error):
        conn.adbc_cancel()


def pg_fetch(conn: Any, sql: str) -> pa.Table:
    """Run ``sql`` and return all rows as one Arrow table, with ADBC's types (module docstring).

    The query runs in the connection's transaction (autocommit is off): commit or roll back after.

    Raises:
        adbc_driver_manager.Error: the server refused the query.
    """
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def pg_fetch_batches(conn: Any, sql: str) -> Iterator[pa.RecordBatch]:
    """Run ``sql`` and yield its rows as record batches, with ADBC's types (module docstring).

    The cursor stays open until the iterator ends or is closed; the query runs in the
    connection's transaction (autocommit is off): commit or roll back after.

    Raises:
        adbc_driver_manager.Error: the server refused the query.
    """
    with conn.cursor() as cur:
        cur.execute(sql)
        reader = cur.fetch_record_batch()
        yield from reader
