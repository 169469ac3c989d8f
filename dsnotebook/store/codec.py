"""The dtype codec: pandas frames to typed SQL columns plus a JSON manifest, and back.

:func:`encode` turns a DataFrame (or a Series) into columns of four generic storage types
(:data:`SQL_TYPES`; for PostgreSQL also its native types, see below) and a JSON *manifest*.
:func:`decode` rebuilds the identical frame from the values a DB driver returns for those
columns plus the manifest; :func:`decode_arrow` does the same from Arrow columns (see "The
Arrow path" below). The stored values stay readable for SQL users; the manifest records what
SQL cannot: dtypes, units, time zones, categories, missing-value kinds, the index and the
original column labels.

How each dtype is stored
------------------------
=============================  =======================  ==========================================
pandas dtype                   SQL type                 stored value
=============================  =======================  ==========================================
int8..int64, uint8..uint64     INTEGER                  the integer (uint64 only up to 2**63-1)
bool                           INTEGER                  0 or 1
float16, float32, float64      REAL                     the float; NaN is NULL
Int*, UInt*, boolean           INTEGER                  the value; pd.NA is NULL
Float32, Float64               REAL                     the value; pd.NA and NaN are NULL
str, string (python/pyarrow)   TEXT                     the string; missing is NULL
category                       type of the categories   the category's own stored value
datetime64[unit] (+ tz)        INTEGER                  epoch (UTC) in the dtype's unit; NaT is NULL
timedelta64[unit]              INTEGER                  count of units; NaT is NULL
object: str / bytes            TEXT / BLOB              the value
object: decimal.Decimal        TEXT                     ``str(value)``, exact, never through float
object: JSON lists and dicts   TEXT                     compact JSON text
object: bool / int / float     INTEGER / REAL           one kind per column
=============================  =======================  ==========================================

With native types (``encode(..., native_types=True)``, PostgreSQL) a column takes the native type that holds
its values exactly: BOOLEAN for bools; NUMERIC for Decimals whose digits and exponent numeric
keeps (else TEXT); JSONB for JSON values jsonb gives back unchanged (else JSON, which keeps the
text); TIMESTAMP / TIMESTAMPTZ for datetimes at microsecond precision within years 1 to 9999
(else the INTEGER count); INTERVAL for timedeltas at microsecond precision. ``sql_columns`` in
the manifest records the choice, and :func:`decode` takes the values a driver returns for it.

String columns come back with the storage they were pushed with (``python`` or ``pyarrow``).
(pyarrow is required by the Arrow path; should it still be missing when a ``pyarrow`` column is
decoded, that column comes back with ``python`` storage and the same missing value: equal
values, another backing.)

The Arrow path
--------------
Bulk rows travel as Arrow, which drivers such as ADBC move without a Python object per value.
:meth:`EncodedFrame.to_arrow` gives rows ``[start, stop)`` as a record batch, one field per
SQL column, named as the column and typed by its storage type (:data:`ARROW_TYPES`):

=============================  ============================================================
storage type                   Arrow type (values)
=============================  ============================================================
INTEGER                        int64 (bools as 0/1, datetimes and timedeltas as counts)
REAL                           float64 (NaN stays a NaN value; SQLite stores it as NULL)
TEXT                           large_string
BLOB                           large_binary
BOOLEAN                        bool
NUMERIC, JSON, JSONB           large_string: the text; the database casts it
TIMESTAMP / TIMESTAMPTZ        timestamp[us] / timestamp[us, tz=UTC], from the Unix epoch
INTERVAL                       duration[us]
=============================  ============================================================

Missing values (``None`` in :meth:`EncodedFrame.rows`) are Arrow nulls, and every value equals
what :meth:`EncodedFrame.rows` gives. Each prepared array (a ``_Part``) carries an ``arrow``
producer next to its ``values``: NumPy and masked arrays hand over their buffers (the mask as
the validity bitmap), Arrow-backed strings their Arrow chunks, Python strings go through
pyarrow's C conversion, and categories take their categories' stored values by code; only
rare object kinds (Decimal, JSON) are converted from Python values.

:func:`decode_arrow` finds the table's columns by name, brings each to its storage type's
Arrow type (readers differ: ADBC's SQLite reader guesses types from the first rows, its
PostgreSQL reader gives INTERVAL as month_day_nano and numeric and json as extension types),
and rebuilds the arrays from the buffers: integers, floats and times through NumPy with the
null mask, Arrow-backed strings wrapped as they are, categories by a vectorised lookup of the
stored values among the stored categories. Its result is identical to :func:`decode`'s.

Missing values and marks
------------------------
SQL has a single NULL, while pandas has several missing markers (None, NaN, pd.NA, pd.NaT), and
SQLite stores a float NaN as NULL and -0.0 as 0. When a column's NULLs all stand for one marker,
the manifest records it (``"null"``). Otherwise the column gets a hidden companion INTEGER column
(``__dsn_missing_<i>``, or ``__dsn_index_<k>_missing`` for an index level) holding a mark for
every missing cell and every negative zero, and NULL elsewhere:
1 None, 2 NaN, 3 pd.NA, 4 pd.NaT, 5 negative zero (the value column holds 0.0).
Frames without mixed missing kinds and without -0.0 get no companion columns.

Manifest (format 1)
-------------------
A JSON object::

    {"format": 1,
     "columns": <index spec>,     # the column labels; values embedded in JSON
     "index": <index spec>,       # the row index; values in hidden SQL columns
     "data": [<array spec>, ...], # one per data column, in column order
     "sql_columns": [[name, sql_type], ...]}   # the table's columns, in table order

An *index spec* is ``{"kind": "range", "start", "stop", "step", "name"}`` (no stored values;
decoding uses the row count, so a partial read still gets the right labels), or
``{"kind": "index" | "multi", "names": [...], "levels": [<array spec>, ...]}``.

An *array spec* describes one pandas array: ``"kind"`` (numpy, float, masked, string,
category, datetime, timedelta, object, or labels for object-dtype column labels), ``"dtype"``
(``str(dtype)``), the kind's own fields (unit, tz, storage, categories, ...), and where the
values live: ``"sql"`` and optionally ``"marks_sql"`` (column names) for table data, or
``"values"`` and optionally ``"marks"`` (JSON lists) for values embedded in the manifest.
Floats that JSON cannot hold and bytes are tagged (``{"$float": "inf"}``, ``{"$bytes": b64}``);
names and object labels use a few more tags (``$tuple``, ``$decimal``, ``$timestamp``, and
``$numpy`` with the dtype of a NumPy scalar, ...).

SQL column names
----------------
Data columns are named ``str(label)`` without NUL characters, deduplicated case-insensitively
(``_2``, ``_3``, ...) and cut to 63 UTF-8 bytes without splitting a character. Names starting
with the reserved prefix ``__dsn_`` get one more leading underscore, so hidden columns can
never collide with data columns. PostgreSQL's system column names (``ctid``, ``xmin``, ``xmax``,
``cmin``, ``cmax``, ``tableoid``) get a suffix too (``ctid_2``), on every database alike.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import hashlib
import itertools
import json
import math
import sys
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dsnotebook.errors import DatasetError, ValidationError

__all__ = [
    "ARROW_TYPES",
    "HIDDEN_PREFIX",
    "MANIFEST_FORMAT",
    "NATIVE_TYPES",
    "ROW_ID",
    "SQL_TYPES",
    "TIME_TYPES",
    "EncodedFrame",
    "SqlColumn",
    "decode",
    "decode_arrow",
    "encode",
    "schema",
    "schema_diff",
    "select",
]

SQL_TYPES = ("INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN", "NUMERIC", "JSON", "JSONB", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL")
"""Storage types; the store maps them to each dialect's own types. SQLite uses the first four;
PostgreSQL also the native types of :data:`NATIVE_TYPES` where they hold the values exactly."""

NATIVE_TYPES = ("BOOLEAN", "NUMERIC", "JSON", "JSONB", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL")
#: Native types whose values the driver turns into Python datetime objects (see ``wire``).
TIME_TYPES = ("TIMESTAMP", "TIMESTAMPTZ", "INTERVAL")

MANIFEST_FORMAT = 1
HIDDEN_PREFIX = "__dsn_"
#: The row-number column :meth:`EncodedFrame.to_arrow` puts first with ``row_ids=True``.
ROW_ID = HIDDEN_PREFIX + "row"

ARROW_TYPES: dict[str, pa.DataType] = {
    "INTEGER": pa.int64(),
    "REAL": pa.float64(),
    # large_*: 64-bit offsets, so a chunk may hold more than 2 GiB of text; pandas' own
    # Arrow-backed strings are large_string too, which makes pushing them zero-copy.
    "TEXT": pa.large_string(),
    "BLOB": pa.large_binary(),
    "BOOLEAN": pa.bool_(),
    # PostgreSQL's numeric and json hold what Arrow has no exact type for: the text travels,
    # and the database casts it.
    "NUMERIC": pa.large_string(),
    "JSON": pa.large_string(),
    "JSONB": pa.large_string(),
    "TIMESTAMP": pa.timestamp("us"),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "INTERVAL": pa.duration("us"),
}
"""The Arrow type of each storage type: what :meth:`EncodedFrame.to_arrow` produces and what
:func:`decode_arrow` brings each column it reads to first. Read-only."""
MAX_NAME_BYTES = 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1)

_CHUNK = 65_536  # rows per step when hashing or validating, to keep memory flat
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_NAT = np.iinfo(np.int64).min
#: 2000-01-01 00:00 in microseconds since the Unix epoch: PostgreSQL's timestamps count from it.
PG_EPOCH_US = 946_684_800_000_000
# PostgreSQL's timestamps (and Python's datetime, which drivers return) hold years 1 to 9999.
_MIN_TIMESTAMP_US = -62_135_596_800_000_000  # 0001-01-01
_MAX_TIMESTAMP_US = 253_402_300_799_999_999  # 9999-12-31 23:59:59.999999
_US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
_UNITS_PER_US = {"ns": 1_000}

# Codes of the companion "marks" column.
_MARK_CODES = {"none": 1, "nan": 2, "na": 3, "nat": 4, "negzero": 5}
_MARKERS: dict[str, Any] = {"none": None, "nan": np.nan, "na": pd.NA, "nat": pd.NaT}
_MARKER_TYPES = {type(None): "none", type(pd.NA): "na", type(pd.NaT): "nat"}

# Object columns hold plain Python values of exactly these types, one kind per column.
_OBJECT_KINDS = {
    str: "str",
    bytes: "bytes",
    decimal.Decimal: "decimal",
    list: "json",
    dict: "json",
    bool: "bool",
    int: "int",
    float: "float",
}
_OBJECT_SQL_TYPES = {
    "str": "TEXT",
    "bytes": "BLOB",
    "decimal": "TEXT",
    "json": "TEXT",
    "bool": "INTEGER",
    "int": "INTEGER",
    "float": "REAL",
    # No values yet: SQLite gives a BLOB column no type affinity, so values of any kind appended
    # to it later are stored as they are.
    "none": "BLOB",
}
#: Object kinds pyarrow converts from the objects themselves (bool widens to INTEGER later).
_OBJECT_ARROW_TYPES = {
    "str": pa.large_string(),
    "bytes": pa.large_binary(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}
_OBJECT_ACCEPTS = (
    "an object column may hold str, bytes, decimal.Decimal, JSON lists/dicts, or plain "
    "Python bool, int or float values (one kind per column), with None, NaN, pd.NA or "
    "pd.NaT for missing values"
)
_SUPPORTED_DTYPES = (
    "NumPy bool/int/uint/float, datetime64 (naive or with a time zone), timedelta64, the "
    "nullable Int*/UInt*/Float*/boolean dtypes, str/string, category, and object"
)
_MASKED_ARRAYS = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)
_JSON_DUMPS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


@dataclass(frozen=True)
class SqlColumn:
    """One column of a version's SQL table.

    ``name`` is readable and derived from the column label (see the module docstring);
    hidden columns (index levels, missing-value marks) start with ``__dsn_``.
    ``sql_type`` is one of :data:`SQL_TYPES`.
    """

    name: str
    sql_type: str


@dataclass
class _Part:
    """One pandas array, prepared for storage.

    ``values(start, stop)`` returns the DB values of rows ``[start, stop)`` as Python
    objects, and ``arrow(start, stop)`` the same values as one Arrow array, made without a
    Python object per value (its type may be a narrower relative of the storage type, such
    as int8 or bool for INTEGER: :meth:`EncodedFrame.to_arrow` widens it). ``marks(start,
    stop)`` returns the companion column's codes as an int8 array, 0 where a row has no
    mark. ``feed`` adds the array's content to a hash. ``owner`` keeps the pandas object
    alive: with copy-on-write, a live reference makes later in-place edits of the user's
    frame copy instead of changing the data we still have to write.
    """

    spec: dict[str, Any]
    sql_type: str
    n: int
    values: Callable[[int, int], list]
    marks: Callable[[int, int], np.ndarray] | None
    feed: Callable[[Any], None] | None
    owner: Any = None
    wire: Callable[[int, int], list] | None = None
    arrow: Callable[[int, int], pa.Array] | None = None


def _arrow_of(part: _Part) -> Callable[[int, int], pa.Array]:
    """The part's Arrow producer, or one made from its Python values (for kinds too rare to
    vectorise). The values producer is taken now: a later change of ``part.values`` (as
    :func:`_store_text_with_nul_as_bytes` makes) must not change what this returns."""
    if part.arrow is not None:
        return part.arrow
    return _arrow_from_producer(part.values, ARROW_TYPES[part.sql_type])


def _arrow_from_producer(values: Callable[[int, int], list], arrow_type: pa.DataType) -> Callable[[int, int], pa.Array]:
    return lambda start, stop: _arrow_from_values(values(start, stop), arrow_type)


def _arrow_from_values(values: Sequence, arrow_type: pa.DataType) -> pa.Array:
    """An Arrow array of Python values (None is null); Python bools become 0 and 1 where
    the type is an integer (Arrow refuses to convert them directly)."""
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array(values).cast(arrow_type)


def _marks_arrow(codes: np.ndarray) -> pa.Array:
    """A marks column as Arrow int64: the code, or null where the row has none."""
    return pa.array(codes.astype(np.int64), mask=codes == 0)


def _chunked_slice(chunked: pa.ChunkedArray, start: int, stop: int) -> pa.Array:
    """Rows ``[start, stop)`` of a chunked array as one array, without copying when they lie
    in one chunk (the usual case: pandas keeps one chunk per column)."""
    part = chunked.slice(start, stop - start)
    if part.num_chunks == 1:
        return part.chunk(0)
    if part.num_chunks == 0:
        return pa.array([], type=chunked.type)
    return pa.concat_arrays(part.chunks)


@dataclass(frozen=True)
class _TableColumn:
    """One column of the SQL table being built, with its producers (see :class:`_Part`)."""

    name: str
    sql_type: str
    values: Callable[[int, int], list]
    wire: Callable[[int, int], list]
    arrow: Callable[[int, int], pa.Array]


class EncodedFrame:
    """A validated frame, ready to be written as rows of an SQL table.

    Rows come out in chunks, as Python tuples (:meth:`rows`, :meth:`iter_rows`) or as Arrow
    record batches (:meth:`to_arrow`), converted only when asked for.

    Attributes:
        columns: the table's columns, in table order.
        manifest: JSON-serialisable description that :func:`decode` and
            :func:`decode_arrow` need.
        nrows: number of rows.
    """

    def __init__(
        self,
        columns: list[SqlColumn],
        manifest: dict,
        nrows: int,
        producers: list[Callable[[int, int], list]],
        feeders: list[Callable[[Any], None]],
        owners: list[Any],
        wire_producers: list[Callable[[int, int], list]] | None = None,
        arrow_producers: list[Callable[[int, int], pa.Array]] | None = None,
    ) -> None:
        self.columns = columns
        self.manifest = manifest
        self.nrows = nrows
        self._producers = producers
        self._wire_producers = wire_producers or producers
        self._arrow_producers = arrow_producers or [
            _arrow_from_producer(produce, ARROW_TYPES[c.sql_type]) for produce, c in zip(producers, columns)
        ]
        self._feeders = feeders
        self._owners = owners
        self._hash: str | None = None

    def __repr__(self) -> str:
        return f"<EncodedFrame {self.nrows} rows x {len(self.columns)} SQL columns>"

    def rows(self, start: int, stop: int) -> list[tuple]:
        """Return the DB row tuples of rows ``[start, stop)``, matching :attr:`columns`.

        Values are plain ``int``, ``float``, ``str``, ``bytes`` or ``None``. Only the
        requested rows are converted, so writing in chunks keeps memory flat. Bounds are
        clipped to ``[0, nrows]``.
        """
        return list(self.iter_rows(start, stop))

    def iter_rows(self, start: int, stop: int, *, wire: bool = False, row_ids: bool = False) -> Iterator[tuple]:
        """Like :meth:`rows`, but each tuple is made only when the consumer takes it.

        The columns of the chunk are converted at once; a driver's ``executemany`` then
        builds and drops the tuples one by one, which is faster and holds less memory than
        a list of them.

        With ``wire``, columns of the :data:`TIME_TYPES` hold the tuples of asyncpg's
        ``tuple`` codec format instead of datetime objects: ``(microseconds since
        2000-01-01,)`` for TIMESTAMP and TIMESTAMPTZ, ``(0, 0, microseconds)`` for INTERVAL.
        Making a million datetime objects takes about a second; these take a few
        milliseconds. See :attr:`time_types`.

        With ``row_ids``, each tuple starts with its row's number, counted from 1.
        """
        start = max(0, start)
        stop = min(self.nrows, stop)
        if start >= stop:
            return iter(())
        producers = self._wire_producers if wire else self._producers
        columns = [produce(start, stop) for produce in producers]
        if row_ids:
            columns.insert(0, range(start + 1, stop + 1))
        return zip(*columns)

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of :meth:`to_arrow`'s batches (without the row numbers): one
        field per entry of :attr:`columns`, in that order, named by :attr:`SqlColumn.name`,
        of the storage type's Arrow type (:data:`ARROW_TYPES`)."""
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.sql_type]) for c in self.columns])

    def to_arrow(self, start: int, stop: int, *, row_ids: bool = False) -> pa.RecordBatch:
        """Return rows ``[start, stop)`` as an Arrow record batch of storage types.

        The batch holds the values :meth:`rows` gives, column for column, in the Arrow types
        of :data:`ARROW_TYPES`: None is null, a float NaN stays a NaN value (SQLite turns it
        into NULL itself), bools stored as INTEGER are 0 and 1, datetimes and timedeltas
        stored as INTEGER are their counts, TIMESTAMP and TIMESTAMPTZ hold microseconds
        since the Unix epoch, INTERVAL microseconds, and NUMERIC, JSON and JSONB their text.
        The common dtypes are converted without a Python object per value: NumPy and masked
        arrays hand over their buffers and masks, Arrow-backed strings their Arrow arrays,
        categories take their stored categories by code. Bounds are clipped to
        ``[0, nrows]``.

        Args:
            start: the first row, counted from 0.
            stop: the row after the last one.
            row_ids: put first an int64 column :data:`ROW_ID` holding the rows' numbers,
                counted from 1 (``start + 1`` to ``stop``).

        Returns:
            A record batch with the schema :meth:`arrow_schema` (after :data:`ROW_ID`).
        """
        start = max(0, start)
        stop = max(start, min(self.nrows, stop))
        schema = self.arrow_schema()
        if start == stop:
            arrays = [pa.array([], type=field.type) for field in schema]
        else:
            arrays = []
            for produce, field in zip(self._arrow_producers, schema):
                array = produce(start, stop)
                # Widening only (int8 or bool to int64, float32 to float64, string to
                # large_string); a safe cast refuses anything that would change a value.
                arrays.append(array if array.type == field.type else array.cast(field.type))
        if row_ids:
            schema = schema.insert(0, pa.field(ROW_ID, pa.int64()))
            arrays.insert(0, pa.array(np.arange(start + 1, stop + 1, dtype=np.int64)))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    @property
    def time_types(self) -> set[str]:
        """The :data:`TIME_TYPES` among the table's columns."""
        return {c.sql_type for c in self.columns if c.sql_type in TIME_TYPES}

    def content_hash(self) -> str:
        """Return a sha256 hex digest of the manifest and all values.

        Equal frames (same values, dtypes, labels and index) give equal digests. Numeric
        and datetime data are hashed straight from their NumPy buffers; other columns from
        their encoded values, chunk by chunk. The result is cached.
        """
        if self._hash is None:
            h = hashlib.sha256()
            h.update(json.dumps(self.manifest, sort_keys=True, separators=(",", ":")).encode())
            h.update(b"rows=%d" % self.nrows)
            for i, feed in enumerate(self._feeders):
                h.update(b"|part=%d|" % i)
                feed(h)
            self._hash = h.hexdigest()
        return self._hash


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


def _repr(value: Any) -> str:
    """``repr(value)``, also for an int with more digits than Python writes as text (see
    :func:`_long_int`) or a container holding one: an error message must still name it."""
    try:
        return repr(value)
    except ValueError:
        if type(value) is int:
            return f"<an int of about {_digits(value)} digits>"
        return f"<a {type(value).__name__} holding an int too long to show>"


def _short(value: Any, limit: int = 80) -> str:
    text = _repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Python refuses to write an int of more than ``sys.get_int_max_str_digits()`` digits as text
#: (4300 by default, never fewer than 640 unless unlimited); below this many bits every int fits.
_SAFE_INT_BITS = 2_000


def _long_int(value: int) -> bool:
    """Whether Python refuses to write this int as decimal text, so that neither JSON nor
    ``repr`` can hold it (see ``sys.set_int_max_str_digits``)."""
    if value.bit_length() < _SAFE_INT_BITS:
        return False
    try:
        str(value)
    except ValueError:
        return True
    return False


def _digits(value: int) -> int:
    return int(value.bit_length() * math.log10(2)) + 1


def _long_int_problem(value: int) -> str:
    return (
        f"an integer of about {_digits(value)} digits, more than the {sys.get_int_max_str_digits()} "
        "Python writes as text (sys.set_int_max_str_digits); store it as decimal.Decimal or str"
    )


def _chunks(n: int) -> range:
    return range(0, n, _CHUNK)


def _marks_to_list(codes: np.ndarray) -> list:
    out = codes.astype(object)
    out[codes == 0] = None
    return out.tolist()


def _feed_buffer(array: np.ndarray) -> Callable[[Any], None]:
    def feed(h: Any) -> None:
        h.update(np.ascontiguousarray(array))

    return feed


def _feed_floats(array: np.ndarray) -> Callable[[Any], None]:
    def feed(h: Any) -> None:
        nan = np.isnan(array)
        # NaN payloads can differ bit for bit between equal frames; hash one canonical NaN.
        h.update(np.ascontiguousarray(np.where(nan, np.nan, array) if nan.any() else array))

    return feed


def _feed_encoded(
    n: int, values: Callable[[int, int], list], marks: Callable[[int, int], np.ndarray] | None
) -> Callable[[Any], None]:
    def feed(h: Any) -> None:
        # repr of a list of str/bytes/int/float/None is unambiguous and computed in C.
        for start in _chunks(n):
            stop = min(n, start + _CHUNK)
            h.update(repr(values(start, stop)).encode("utf-8", "surrogatepass"))
            if marks is not None:
                h.update(repr(_marks_to_list(marks(start, stop))).encode())

    return feed


def _first_value(obj: pd.Series | pd.Index) -> Any:
    return obj.array[0] if len(obj) else None


def _where_column(label: Any) -> str:
    return f"column {label!r}"


# ---------------------------------------------------------------------------------------
# JSON forms of scalars (names, object labels) and of stored values
# ---------------------------------------------------------------------------------------


_LABELS_ACCEPTED = (
    "str, int, float, bool, None, bytes, Decimal, pd.Timestamp, pd.Timedelta, NumPy scalars "
    "of these kinds, or tuples of these"
)


def _scalar_to_json(value: Any, where: str) -> Any:
    """Encode a label or name for the manifest, keeping its exact type."""
    if isinstance(value, np.generic) and not isinstance(value, (np.datetime64, np.timedelta64)):
        # A NumPy scalar (np.int64(1) among object labels) comes back as the same NumPy type.
        plain = value.item()
        if type(plain) in (bool, int, float, str, bytes):
            return {"$numpy": value.dtype.str, "value": _scalar_to_json(plain, where)}
    kind = type(value)
    if kind is int and _long_int(value):
        raise ValidationError(f"{where} include {_long_int_problem(value)}")
    if kind is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # JSON can only escape it, and a pair of escaped surrogates reads back as the one
            # character they encode: "\ud800\udc00" would come back as "\U00010000".
            raise ValidationError(
                f"{where} include {_short(value)}, which is not valid Unicode text (it holds a lone "
                "surrogate); accepted: strings that encode to UTF-8"
            ) from None
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if kind is tuple:
        return {"$tuple": [_scalar_to_json(v, where) for v in value]}
    if kind is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if kind is decimal.Decimal:
        return {"$decimal": str(value)}
    if value is pd.NA:
        return {"$na": True}
    if value is pd.NaT:
        return {"$nat": True}
    if kind is pd.Timestamp:
        tz = _tz_to_json(value.tz, where) if value.tz is not None else None
        return {"$timestamp": int(value.asm8.view("i8")), "unit": value.unit, "tz": tz}
    if kind is pd.Timedelta:
        return {"$timedelta": int(value.asm8.view("i8")), "unit": value.unit}
    raise ValidationError(
        f"{where} include {_short(value)} of type {kind.__name__}, which cannot be stored; "
        f"accepted labels and names: {_LABELS_ACCEPTED}"
    )


def _scalar_from_json(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "$float" in value:
        return float(value["$float"])
    if "$numpy" in value:
        return np.dtype(value["$numpy"]).type(_scalar_from_json(value["value"]))
    if "$tuple" in value:
        return tuple(_scalar_from_json(v) for v in value["$tuple"])
    if "$bytes" in value:
        return base64.b64decode(value["$bytes"])
    if "$decimal" in value:
        return decimal.Decimal(value["$decimal"])
    if "$na" in value:
        return pd.NA
    if "$nat" in value:
        return pd.NaT
    if "$timestamp" in value:
        stamp = pd.Timestamp(np.datetime64(value["$timestamp"], value["unit"]))
        if value["tz"] is not None:
            stamp = stamp.tz_localize("UTC").tz_convert(_tz_from_json(value["tz"]))
        return stamp
    if "$timedelta" in value:
        return pd.Timedelta(np.timedelta64(value["$timedelta"], value["unit"]))
    raise DatasetError(f"the manifest holds an unknown tagged value {_short(value)}")


def _values_to_json(values: list) -> list:
    """JSON form of stored values (int, float, str, bytes, None, and bool from NumPy)."""
    out = []
    for v in values:
        if type(v) is float and not math.isfinite(v):
            out.append(None if v != v else {"$float": repr(v)})
        elif type(v) is bytes:
            out.append({"$bytes": base64.b64encode(v).decode("ascii")})
        else:
            out.append(v)
    return out


def _values_from_json(values: list) -> list:
    return [_scalar_from_json(v) if isinstance(v, dict) else v for v in values]


# ---------------------------------------------------------------------------------------
# Time zones
# ---------------------------------------------------------------------------------------


def _tz_to_json(tz: Any, where: str) -> dict:
    if isinstance(tz, zoneinfo.ZoneInfo) and tz.key:
        return {"zoneinfo": tz.key}
    if isinstance(tz, _dt.timezone):
        offset = tz.utcoffset(None)
        out: dict[str, Any] = {"offset_us": offset // _dt.timedelta(microseconds=1)}
        if tz.tzname(None) != _dt.timezone(offset).tzname(None):
            out["name"] = tz.tzname(None)
        return out
    if type(tz).__module__.split(".")[0] == "pytz" and getattr(tz, "zone", None):
        return {"pytz": tz.zone}
    raise ValidationError(
        f"{where} uses the time zone {tz!r}, which cannot be stored; accepted: zoneinfo "
        "zones (for example 'Europe/Paris'), fixed offsets (datetime.timezone) and pytz "
        "zones; convert with .dt.tz_convert('Europe/Paris')"
    )


def _tz_from_json(spec: dict) -> Any:
    if "zoneinfo" in spec:
        return zoneinfo.ZoneInfo(spec["zoneinfo"])
    if "offset_us" in spec:
        offset = _dt.timedelta(microseconds=spec["offset_us"])
        return _dt.timezone(offset, spec["name"]) if "name" in spec else _dt.timezone(offset)
    if "pytz" in spec:
        try:
            import pytz
        except ImportError:
            # The same zone from the standard library: equal times, another tz class.
            return zoneinfo.ZoneInfo(spec["pytz"])
        return pytz.timezone(spec["pytz"])
    raise DatasetError(f"the manifest holds an unknown time zone {spec!r}")


# ---------------------------------------------------------------------------------------
# Encoding one array
# ---------------------------------------------------------------------------------------


def _encode_array(obj: pd.Series | pd.Index, where: str) -> _Part:
    """Validate one pandas array and prepare it for storage; see the module docstring."""
    dtype = obj.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _encode_category(obj, where)
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        return _encode_datetime(obj, where)
    if isinstance(dtype, np.dtype) and dtype.kind == "m":
        return _encode_timedelta(obj)
    if isinstance(dtype, pd.StringDtype):
        return _encode_string(obj, where)
    if isinstance(obj.array, _MASKED_ARRAYS):
        return _encode_masked(obj, where)
    if isinstance(dtype, np.dtype):
        if dtype.kind in "biu":
            return _encode_numpy(obj, where)
        if dtype.kind == "f":
            return _encode_float(obj)
        if dtype.kind == "O":
            return _encode_object(obj, where)
        if dtype.kind == "c":
            raise ValidationError(
                f"{where} holds complex numbers (first value {_short(_first_value(obj))}); "
                "complex numbers are not supported: store the real and imaginary parts as "
                "two float columns (.real and .imag)"
            )
    raise ValidationError(
        f"{where} has dtype {dtype} (first value {_short(_first_value(obj))}), which "
        f"dsnotebook cannot store; supported dtypes: {_SUPPORTED_DTYPES}"
    )


def _encode_numpy(obj: pd.Series | pd.Index, where: str) -> _Part:
    a = obj.to_numpy()
    if a.dtype == np.uint64 and len(a) and a.max() > _INT64_MAX:
        i = int(np.argmax(a > _INT64_MAX))
        raise ValidationError(
            f"{where} holds the uint64 value {int(a[i])} at position {i}, above the largest "
            f"value SQL INTEGER holds ({_INT64_MAX}); accepted: uint64 values up to 2**63-1 "
            "(convert larger ones to float64 or str first)"
        )
    return _Part(
        spec={"kind": "numpy", "dtype": str(a.dtype)},
        sql_type="INTEGER",
        n=len(a),
        values=lambda start, stop: a[start:stop].tolist(),
        marks=None,
        feed=_feed_buffer(a),
        owner=obj,
        arrow=lambda start, stop: pa.array(a[start:stop]),
    )


def _float_marks(a: np.ndarray, start: int, stop: int) -> np.ndarray:
    sub = a[start:stop]
    codes = np.zeros(len(sub), dtype=np.int8)
    codes[np.isnan(sub)] = _MARK_CODES["nan"]
    codes[(sub == 0) & np.signbit(sub)] = _MARK_CODES["negzero"]
    return codes


def _encode_float(obj: pd.Series | pd.Index) -> _Part:
    a = obj.to_numpy()
    # SQLite stores -0.0 as 0; only columns that hold one get a marks column.
    negzero = bool(np.any((a == 0) & np.signbit(a)))
    return _Part(
        spec={"kind": "float", "dtype": str(a.dtype), "null": "nan"},
        sql_type="REAL",
        n=len(a),
        values=lambda start, stop: a[start:stop].tolist(),
        marks=(lambda start, stop: _float_marks(a, start, stop)) if negzero else None,
        feed=_feed_floats(a),
        owner=obj,
        # float16 has no exact Arrow cast on every version; NumPy widens it exactly.
        arrow=lambda start, stop: pa.array(a[start:stop].astype(np.float64, copy=False)),
    )


def _encode_masked(obj: pd.Series | pd.Index, where: str) -> _Part:
    arr = obj.array
    dtype = obj.dtype
    is_float = isinstance(arr, pd.arrays.FloatingArray)
    is_bool = isinstance(arr, pd.arrays.BooleanArray)
    mask = np.asarray(arr.isna(), dtype=bool)
    if is_float:
        data = arr.to_numpy(dtype=dtype.numpy_dtype, na_value=np.nan)
    elif is_bool:
        data = arr.to_numpy(dtype=bool, na_value=False)
    else:
        data = arr.to_numpy(dtype=dtype.numpy_dtype, na_value=0)
    if data.dtype == np.uint64 and len(data):
        over = (data > _INT64_MAX) & ~mask
        if over.any():
            i = int(np.argmax(over))
            raise ValidationError(
                f"{where} holds the UInt64 value {int(data[i])} at position {i}, above the "
                f"largest value SQL INTEGER holds ({_INT64_MAX}); accepted: values up to "
                "2**63-1 (convert larger ones to Float64 or string first)"
            )
    has_na = bool(mask.any())
    nan_cells = np.isnan(data) & ~mask if is_float else None
    negzero = (data == 0) & np.signbit(data) if is_float else None
    has_nan = bool(nan_cells.any()) if is_float else False
    has_negzero = bool(negzero.any()) if is_float else False

    def values(start: int, stop: int) -> list:
        out = data[start:stop].tolist()
        for j in np.flatnonzero(mask[start:stop]).tolist():
            out[j] = None
        return out

    def marks(start: int, stop: int) -> np.ndarray:
        codes = np.zeros(stop - start, dtype=np.int8)
        codes[mask[start:stop]] = _MARK_CODES["na"]
        codes[nan_cells[start:stop]] = _MARK_CODES["nan"]
        codes[negzero[start:stop]] = _MARK_CODES["negzero"]
        return codes

    def feed(h: Any) -> None:
        # Values under the mask are arbitrary; hash zeros there so equal frames agree.
        clean = data.copy()
        clean[mask] = 0
        if is_float:
            clean[np.isnan(clean)] = np.nan
        h.update(np.ascontiguousarray(clean))
        h.update(np.ascontiguousarray(mask))

    return _Part(
        spec={"kind": "masked", "dtype": str(dtype), "null": "nan" if has_nan and not has_na else "na"},
        sql_type="REAL" if is_float else "INTEGER",
        n=len(data),
        values=values,
        marks=marks if (has_na and has_nan) or has_negzero else None,
        feed=feed,
        owner=obj,
        # The mask becomes the validity bitmap; a NaN that is not masked stays a NaN value.
        arrow=lambda start, stop: pa.array(data[start:stop], mask=mask[start:stop]),
    )


def _check_utf8(chunk: list, where: str, offset: int, *, only_str: bool) -> None:
    """Raise if a string cannot be written as UTF-8 text (it holds a lone surrogate).

    ``chunk`` holds rows ``offset...``; unless ``only_str``, it may hold missing markers too.
    """
    try:
        "".join(chunk if only_str else [v for v in chunk if type(v) is str]).encode("utf-8")
    except UnicodeEncodeError:
        for j, s in enumerate(chunk):
            try:
                if type(s) is str:
                    s.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError(
                    f"{where} holds a string that is not valid Unicode text at position "
                    f"{offset + j}: {_short(s)}; accepted: strings that encode to UTF-8 "
                    "(no lone surrogates)"
                ) from None


def _string_na(dtype: pd.StringDtype) -> str:
    na_value = getattr(dtype, "na_value", pd.NA)
    return "nan" if isinstance(na_value, float) and math.isnan(na_value) else "na"


def _encode_string(obj: pd.Series | pd.Index, where: str) -> _Part:
    arr = obj.array
    dtype = obj.dtype
    storage = "pyarrow" if dtype.storage.startswith("pyarrow") else dtype.storage
    n = len(arr)
    if storage == "python":
        # Arrow storage is valid UTF-8 by construction; Python strings may hold surrogates.
        for start in _chunks(n):
            chunk = arr[start : start + _CHUNK].to_numpy(dtype=object, na_value="").tolist()
            _check_utf8(chunk, where, start, only_str=True)

    def values(start: int, stop: int) -> list:
        return arr[start:stop].to_numpy(dtype=object, na_value=None).tolist()

    if storage == "pyarrow":
        chunked = arr.__arrow_array__()

        def arrow(start: int, stop: int) -> pa.Array:
            return _chunked_slice(chunked, start, stop)
    else:

        def arrow(start: int, stop: int) -> pa.Array:
            # The array's own object ndarray (no copy); pyarrow reads it in C, and with
            # from_pandas both pd.NA and NaN (the two na_values) become null.
            objects = np.asarray(arr[start:stop], dtype=object)
            return pa.array(objects, type=pa.large_string(), from_pandas=True)

    return _Part(
        spec={"kind": "string", "dtype": str(dtype), "storage": storage, "na": _string_na(dtype)},
        sql_type="TEXT",
        n=n,
        values=values,
        marks=None,
        feed=_feed_strings(arr, storage, n, values),
        owner=obj,
        arrow=arrow,
    )


def _arrow_string_chunks(arr: Any) -> list | None:
    """(lengths in bytes with -1 for missing, the bytes) per chunk of an Arrow string array, or
    None where its layout is unusual (a missing value that still spans bytes)."""
    out = []
    for chunk in arr.__arrow_array__().chunks:
        chunk = chunk.cast(pa.large_string())
        _, offsets_buffer, data_buffer = chunk.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[chunk.offset : chunk.offset + len(chunk) + 1]
        lengths = np.diff(offsets)
        if chunk.null_count:
            null = chunk.is_null().to_numpy(zero_copy_only=False)
            if lengths[null].any():
                return None
            lengths[null] = -1
        data = memoryview(data_buffer)[offsets[0] : offsets[-1]] if len(offsets) and data_buffer is not None else b""
        out.append((lengths, data))
    return out


def _feed_strings(arr: Any, storage: str, n: int, values: Callable[[int, int], list]) -> Callable[[Any], None]:
    """Hash a string array as the lengths of its strings, then their text: the same for equal
    arrays however they are chunked, and a few times cheaper than hashing their repr."""

    def feed(h: Any) -> None:
        lengths_hash, text_hash = hashlib.sha256(), hashlib.sha256()
        chunks = _arrow_string_chunks(arr) if storage == "pyarrow" else None
        if chunks is not None:
            for lengths, data in chunks:
                lengths_hash.update(np.ascontiguousarray(lengths, dtype=np.int64))
                text_hash.update(data)
        else:
            for start in _chunks(n):
                chunk = values(start, min(n, start + _CHUNK))
                present = [v for v in chunk if v is not None]
                lengths = np.fromiter((-1 if v is None else len(v) for v in chunk), dtype=np.int64, count=len(chunk))
                lengths_hash.update(lengths)
                text_hash.update("".join(present).encode("utf-8", "surrogatepass"))
        h.update(lengths_hash.digest() + text_hash.digest())

    return feed


def _encode_datetimelike(obj: pd.Series | pd.Index, spec: dict) -> _Part:
    arr = obj.array
    i8 = arr.asi8
    nat = i8 == _NAT
    has_nat = bool(nat.any())

    def values(start: int, stop: int) -> list:
        out = i8[start:stop].tolist()
        if has_nat:
            for j in np.flatnonzero(nat[start:stop]).tolist():
                out[j] = None
        return out

    def arrow(start: int, stop: int) -> pa.Array:
        return pa.array(i8[start:stop], mask=nat[start:stop] if has_nat else None)

    spec["unit"] = arr.unit
    return _Part(
        spec=spec,
        sql_type="INTEGER",
        n=len(i8),
        values=values,
        marks=None,
        feed=_feed_buffer(i8),
        owner=obj,
        arrow=arrow,
    )


def _encode_datetime(obj: pd.Series | pd.Index, where: str) -> _Part:
    tz = getattr(obj.dtype, "tz", None)
    spec = {"kind": "datetime", "dtype": str(obj.dtype), "tz": None if tz is None else _tz_to_json(tz, where)}
    return _encode_datetimelike(obj, spec)


def _encode_timedelta(obj: pd.Series | pd.Index) -> _Part:
    return _encode_datetimelike(obj, {"kind": "timedelta", "dtype": str(obj.dtype)})


def _encode_category(obj: pd.Series | pd.Index, where: str) -> _Part:
    arr = obj.array
    codes = arr.codes
    categories = arr.categories
    cat_part = _encode_array(categories, f"the categories of {where}")
    # Each row stores its category's own value, readable in SQL; code -1 (missing) -> NULL.
    lookup = np.empty(len(categories) + 1, dtype=object)
    for i, v in enumerate(cat_part.values(0, len(categories))):
        lookup[i] = v
    lookup[-1] = None
    return _Part(
        spec={
            "kind": "category",
            "dtype": "category",
            "ordered": bool(arr.ordered),
            "categories": _embed(cat_part),
        },
        sql_type=cat_part.sql_type,
        n=len(codes),
        values=lambda start, stop: lookup[codes[start:stop]].tolist(),
        marks=None,
        feed=_feed_buffer(codes),
        owner=obj,
        arrow=_category_arrow(cat_part, codes),
    )


def _category_arrow(cat_part: _Part, codes: np.ndarray) -> Callable[[int, int], pa.Array]:
    """Rows of a categorical column as Arrow: the categories' stored values, made once, taken
    by code (code -1, a missing value, takes null)."""
    stored = _arrow_of(cat_part)(0, cat_part.n) if cat_part.n else pa.array([], type=ARROW_TYPES[cat_part.sql_type])
    stored = stored.cast(ARROW_TYPES[cat_part.sql_type])

    def arrow(start: int, stop: int) -> pa.Array:
        chunk = codes[start:stop]
        return stored.take(pa.array(chunk, mask=chunk < 0))

    return arrow


def _object_error(where: str, position: int, value: Any) -> ValidationError:
    kind = type(value)
    if isinstance(value, (complex, np.complexfloating)):
        problem = "complex numbers are not supported: store the real and imaginary parts as two float columns"
    elif isinstance(value, np.generic):
        problem = (
            f"NumPy scalars ({kind.__name__}) are not stored in object columns: convert the "
            "column to a NumPy/pandas dtype (for example .astype('int64')) or to plain Python values"
        )
    elif isinstance(value, (_dt.date, _dt.time, _dt.timedelta)):
        problem = (
            "dates and times in object columns are not supported: convert the column with "
            "pd.to_datetime or pd.to_timedelta"
        )
    elif isinstance(value, (tuple, set, frozenset)):
        problem = f"{kind.__name__} values are not supported (use lists for JSON data)"
    else:
        problem = f"arbitrary Python objects ({kind.__name__}) are not supported"
    return ValidationError(
        f"{where} holds {_short(value)} at position {position}; {problem}; {_OBJECT_ACCEPTS}"
    )


def _json_problem(value: Any) -> str | None:
    """Describe the first part of a JSON cell that would not come back identical."""
    kind = type(value)
    if kind is int and _long_int(value):
        return _long_int_problem(value)
    if value is None or kind is str or kind is int or kind is bool:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"the non-finite float {value!r}"
    if kind is list:
        for item in value:
            problem = _json_problem(item)
            if problem:
                return problem
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"the non-str key {_short(key)}"
            problem = _json_problem(item)
            if problem:
                return problem
        return None
    return f"{_short(value)} of type {kind.__name__}"


def _mixed_error(a: np.ndarray, where: str) -> ValidationError:
    def is_value(v: Any) -> bool:
        return not (type(v) in _MARKER_TYPES or (type(v) is float and v != v))

    first_i, first_v = next((i, v) for i, v in enumerate(a) if is_value(v))
    first_kind = _OBJECT_KINDS[type(first_v)]
    i, v = next((i, v) for i, v in enumerate(a) if is_value(v) and _OBJECT_KINDS[type(v)] != first_kind)
    return ValidationError(
        f"{where} mixes {first_kind} and {_OBJECT_KINDS[type(v)]} values: position {first_i} "
        f"holds {_short(first_v)} and position {i} holds {_short(v)}; {_OBJECT_ACCEPTS}; "
        "convert the column first (for example with .astype(str))"
    )


def _is_object_marker(value: Any, kind: str) -> bool:
    if kind == "float":
        return type(value) is not float or value != value
    return type(value) in _MARKER_TYPES or type(value) is float


def _marker_name(value: Any) -> str:
    return _MARKER_TYPES.get(type(value), "nan")


def _encode_object(obj: pd.Series | pd.Index, where: str) -> _Part:
    a = obj.to_numpy()
    n = len(a)
    types = set(map(type, a))
    markers = {_MARKER_TYPES[t] for t in types if t in _MARKER_TYPES}
    value_types = types - _MARKER_TYPES.keys()
    unknown = value_types - _OBJECT_KINDS.keys()
    if unknown:
        i = next(i for i, v in enumerate(a) if type(v) in unknown)
        raise _object_error(where, i, a[i])
    kinds = {_OBJECT_KINDS[t] for t in value_types}
    solid = kinds - {"float"}
    # A float next to another kind is fine only as NaN, the missing marker.
    if len(solid) > 1 or (solid and "float" in kinds and any(type(v) is float and v == v for v in a)):
        raise _mixed_error(a, where)
    # A column whose only floats are NaN holds no values at all: its kind stays open ("none"),
    # so that appending values of any one kind to it later matches its schema.
    has_number = "float" in kinds and any(type(v) is float and v == v for v in a)
    kind = solid.pop() if solid else ("float" if has_number else "none")
    negzero = False
    if float in types:
        if kind == "float":
            floats = np.array([v for v in a if type(v) is float], dtype=np.float64)
            if np.isnan(floats).any():
                markers.add("nan")
            negzero = bool(np.any((floats == 0) & np.signbit(floats)))
        else:
            markers.add("nan")

    if kind == "int":
        ints = [v for v in a if type(v) is int]
        if min(ints) < _INT64_MIN or max(ints) > _INT64_MAX:
            i, v = next(
                (i, v) for i, v in enumerate(a) if type(v) is int and not _INT64_MIN <= v <= _INT64_MAX
            )
            raise ValidationError(
                f"{where} holds the integer {_short(v)} at position {i}, outside the 64-bit range "
                "SQL INTEGER holds; accepted: integers from -2**63 to 2**63-1 (store larger ones "
                "as str or decimal.Decimal)"
            )
    elif kind == "str":
        for start in _chunks(n):
            _check_utf8(a[start : start + _CHUNK].tolist(), where, start, only_str=not markers)
    elif kind == "json":
        for i, v in enumerate(a):
            if type(v) is list or type(v) is dict:
                try:
                    problem = _json_problem(v)
                    if problem is None:
                        _JSON_DUMPS(v).encode("utf-8")
                except RecursionError:
                    problem = "lists or dicts nested too deeply"
                except UnicodeEncodeError as exc:
                    problem = f"a string that is not valid Unicode text ({exc.object[exc.start : exc.end]!r})"
                if problem is not None:
                    raise ValidationError(
                        f"{where} holds a JSON value at position {i} that cannot be stored "
                        f"exactly: it contains {problem}; JSON cells accept nested lists, dicts "
                        "with str keys, str, int, finite float, bool and None"
                    )

    needs_marks = len(markers) > 1 or negzero
    non_none_markers = bool(markers - {"none"})

    def values(start: int, stop: int) -> list:
        chunk = a[start:stop]
        if kind == "decimal":
            return [str(v) if type(v) is decimal.Decimal else None for v in chunk]
        if kind == "json":
            return [_JSON_DUMPS(v) if type(v) is list or type(v) is dict else None for v in chunk]
        if kind == "none":
            return [None] * len(chunk)
        if non_none_markers:
            # NaN, pd.NA and pd.NaT cannot be bound (or would mean something else): NULL.
            out = chunk.copy()
            out[pd.isna(chunk)] = None
            return out.tolist()
        return chunk.tolist()

    def marks(start: int, stop: int) -> np.ndarray:
        codes = np.zeros(stop - start, dtype=np.int8)
        for j, v in enumerate(a[start:stop]):
            if _is_object_marker(v, kind):
                codes[j] = _MARK_CODES[_marker_name(v)]
            elif kind == "float" and v == 0 and math.copysign(1.0, v) < 0:
                codes[j] = _MARK_CODES["negzero"]
        return codes

    natural = _OBJECT_ARROW_TYPES.get(kind)

    def arrow(start: int, stop: int) -> pa.Array:
        if natural is not None:
            # pyarrow reads the objects in C; from_pandas makes None, NaN, pd.NA and pd.NaT
            # null, as values() does (a float column's NaN included).
            return pa.array(a[start:stop], type=natural, from_pandas=True)
        if kind == "none":
            return pa.nulls(stop - start, type=ARROW_TYPES["BLOB"])
        # Decimal and JSON text; these producers stay with the text even where PostgreSQL's
        # native NUMERIC makes values() return the Decimals themselves.
        return pa.array(values(start, stop), type=pa.large_string())

    marks_fn = marks if needs_marks else None
    null = next(iter(markers)) if len(markers) == 1 else "none"
    return _Part(
        spec={"kind": "object", "dtype": "object", "object": kind, "null": null},
        sql_type=_OBJECT_SQL_TYPES[kind],
        n=n,
        values=values,
        marks=marks_fn,
        feed=_feed_encoded(n, values, marks_fn),
        owner=obj,
        arrow=arrow,
    )


def _embed(part: _Part) -> dict:
    """The part's spec with its values embedded as JSON (for small arrays: labels, categories)."""
    spec = dict(part.spec)
    spec["values"] = _values_to_json(part.values(0, part.n))
    if part.marks is not None:
        spec["marks"] = _marks_to_list(part.marks(0, part.n))
    return spec


# ---------------------------------------------------------------------------------------
# Indexes (the row index in SQL, the column labels in JSON)
# ---------------------------------------------------------------------------------------


def _encode_index(index: pd.Index, where: str, *, embed: bool) -> tuple[dict, list[_Part]]:
    """Describe an index; return its spec and, unless embedded, one part per level."""
    if type(index) is pd.RangeIndex:
        spec = {
            "kind": "range",
            "start": index.start,
            "stop": index.stop,
            "step": index.step,
            "name": _scalar_to_json(index.name, f"the name of {where}"),
        }
        return spec, []
    multi = isinstance(index, pd.MultiIndex)
    if multi:
        # get_level_values(k) looks k up among the names first; make names positional.
        positional = index.set_names(list(range(index.nlevels)))
        levels = [positional.get_level_values(k) for k in range(index.nlevels)]
    else:
        levels = [index]
    names = [_scalar_to_json(name, f"the names of {where}") for name in index.names]
    specs: list[dict] = []
    parts: list[_Part] = []
    for k, level in enumerate(levels):
        level_where = f"{where} (level {k}, name {index.names[k]!r})" if multi else where
        if embed and level.dtype == object:
            # Column labels of an object Index may legitimately mix kinds ('a', 1, None).
            values = [_scalar_to_json(v, level_where) for v in level]
            spec = {"kind": "labels", "dtype": "object", "values": values}
        else:
            part = _encode_array(level, level_where)
            spec = _embed(part) if embed else part.spec
            parts.append(part)
        freq = getattr(level, "freqstr", None) if not multi else None
        if freq is not None:
            spec["freq"] = freq
        specs.append(spec)
    return {"kind": "multi" if multi else "index", "names": names, "levels": specs}, parts


#: PostgreSQL's system columns: every table has them, so no column of its own may take these
#: names (quoted identifiers are case-sensitive, so "CTID" is free).
_PG_SYSTEM_COLUMNS = frozenset({"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})


def _sql_names(labels: Sequence) -> list[str]:
    """Readable, unique (case-insensitively) SQL names of at most 63 UTF-8 bytes, none of them
    a PostgreSQL system column's."""

    def cut(text: str, limit: int) -> str:
        return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")

    used: set[str] = set()
    names = []
    for i, label in enumerate(labels):
        base = str(label).replace("\x00", "")
        if base.lower().startswith(HIDDEN_PREFIX):
            base = "_" + base
        if not base:
            base = f"column_{i}"
        name = cut(base, MAX_NAME_BYTES)
        suffix_no = 2
        while name.lower() in used or name in _PG_SYSTEM_COLUMNS:
            suffix = f"_{suffix_no}"
            name = cut(base, MAX_NAME_BYTES - len(suffix)) + suffix
            suffix_no += 1
        used.add(name.lower())
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------
# encode
# ---------------------------------------------------------------------------------------


def _is_text_part(part: _Part) -> bool:
    spec = part.spec
    return part.sql_type == "TEXT" and (
        spec["kind"] in ("string", "category") or (spec["kind"] == "object" and spec.get("object") == "str")
    )


def _has_nul(part: _Part) -> bool:
    """Whether any string of a text part holds a NUL character; vectorised where pandas can."""
    arr = part.owner.array
    kind = part.spec["kind"]
    if kind == "category":
        return any(isinstance(c, str) and "\x00" in c for c in arr.categories)
    if kind == "string":
        return bool(pd.Series(arr, copy=False).str.contains("\x00", regex=False, na=False).any())
    return any(type(v) is str and "\x00" in v for v in arr)


def _store_text_with_nul_as_bytes(part: _Part) -> None:
    """Strings holding NUL characters, which PostgreSQL's text type cannot store, go in as their
    UTF-8 bytes (BLOB), losslessly; the manifest says so (``"text_as": "utf-8"``)."""
    if not _has_nul(part):
        return
    values = part.values
    text = _arrow_of(part)

    def as_bytes(start: int, stop: int) -> list:
        return [None if v is None else v.encode("utf-8") for v in values(start, stop)]

    def arrow(start: int, stop: int) -> pa.Array:
        # Arrow's text is UTF-8 already: the cast keeps the buffers and changes the type.
        return text(start, stop).cast(pa.large_string()).cast(pa.large_binary())

    part.values = as_bytes
    part.arrow = arrow
    part.sql_type = "BLOB"
    part.spec["text_as"] = "utf-8"


# ---------------------------------------------------------------------------------------
# PostgreSQL's native types
# ---------------------------------------------------------------------------------------


def _jsonb_exact(value: Any) -> bool:
    """Whether jsonb gives this JSON value back exactly.

    jsonb reorders object keys (shorter first, then bytewise), cannot hold NUL characters,
    and stores numbers as numeric, so a float written with a positive exponent (``1e+20``)
    comes back as an integer and ``-0.0`` as ``0.0``. Other values come back identical.
    """
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is dict:
            keys = [k.encode("utf-8") for k in v]
            if keys != sorted(keys, key=lambda k: (len(k), k)) or any(b"\x00" in k for k in keys):
                return False
            stack.extend(v.values())
        elif kind is list:
            stack.extend(v)
        elif kind is str:
            if "\x00" in v:
                return False
        elif kind is float:
            if "e+" in repr(v) or (v == 0 and math.copysign(1.0, v) < 0):
                return False
    return True


def _numeric_exact(value: decimal.Decimal) -> bool:
    """Whether PostgreSQL's numeric gives this Decimal back with the same digits and exponent.

    numeric keeps the digits after the point (its display scale) but has no negative exponent
    form, no negative zero, and no signalling NaN or infinities in older servers.
    """
    if not value.is_finite():
        return False
    sign, digits, exponent = value.as_tuple()
    if exponent > 0 or (sign and not any(digits)):
        return False
    return -exponent <= 16_383 and len(digits) + exponent <= 131_072


def _times_in_us(part: _Part) -> np.ndarray | None:
    """The part's datetime or timedelta values in microseconds (NaT as _NAT), or None when a
    value carries finer precision than a microsecond."""
    arr = part.owner.array
    i8 = arr.asi8
    unit = arr.unit
    nat = i8 == _NAT
    if unit == "ns":
        if np.any((i8 % 1_000 != 0) & ~nat):
            return None
        us = i8 // 1_000
    else:
        factor = _US_PER_UNIT[unit]
        limit = _INT64_MAX // factor
        if np.any((np.abs(i8) > limit) & ~nat):
            return None
        us = i8 * factor
    us[nat] = _NAT
    return us


def _native_time(part: _Part) -> None:
    """A datetime column at microsecond precision within years 1 to 9999 becomes TIMESTAMP
    (naive) or TIMESTAMPTZ (with a time zone); a timedelta at microsecond precision INTERVAL."""
    us = _times_in_us(part)
    if us is None:
        return
    nat = us == _NAT
    present = us[~nat]
    datetime_kind = part.spec["kind"] == "datetime"
    if datetime_kind and len(present) and (present.min() < _MIN_TIMESTAMP_US or present.max() > _MAX_TIMESTAMP_US):
        return
    has_nat = bool(nat.any())
    arr = part.owner.array
    if datetime_kind:
        aware = part.spec["tz"] is not None
        part.sql_type = "TIMESTAMPTZ" if aware else "TIMESTAMP"
        pg_us = us - PG_EPOCH_US
        python = arr.tz_convert("UTC") if aware else arr

        def values(start: int, stop: int) -> list:
            return python[start:stop].to_pydatetime().tolist() if not has_nat else [
                None if v is pd.NaT else v for v in python[start:stop].to_pydatetime().tolist()
            ]

        def wire(start: int, stop: int) -> list:
            out = list(zip(pg_us[start:stop].tolist()))
            if has_nat:
                for j in np.flatnonzero(nat[start:stop]).tolist():
                    out[j] = None
            return out
    else:
        part.sql_type = "INTERVAL"

        def values(start: int, stop: int) -> list:
            chunk = arr[start:stop]
            out = chunk.to_pytimedelta().tolist()
            if has_nat:
                for j in np.flatnonzero(nat[start:stop]).tolist():
                    out[j] = None
            return out

        def wire(start: int, stop: int) -> list:
            out = list(zip(itertools.repeat(0), itertools.repeat(0), us[start:stop].tolist()))
            if has_nat:
                for j in np.flatnonzero(nat[start:stop]).tolist():
                    out[j] = None
            return out

    arrow_type = ARROW_TYPES[part.sql_type]

    def arrow(start: int, stop: int) -> pa.Array:
        # Arrow counts timestamps from the Unix epoch (not PostgreSQL's 2000-01-01) and keeps
        # NaT as null; the buffer of microseconds is handed over as it is.
        return pa.array(us[start:stop], mask=nat[start:stop] if has_nat else None, type=arrow_type)

    part.values = values
    part.wire = wire
    part.arrow = arrow


def _go_native(part: _Part, where: str) -> None:
    """Store the part in PostgreSQL's native type where that type holds its values exactly.

    bool values become BOOLEAN; Decimal values NUMERIC (when every value keeps its digits and
    exponent, else TEXT); JSON values JSONB (when jsonb gives every value back exactly, else
    JSON, which keeps the text as written); datetimes TIMESTAMP or TIMESTAMPTZ and timedeltas
    INTERVAL at microsecond precision. Values that carry nanoseconds stay INTEGER counts.
    """
    spec = part.spec
    kind = spec["kind"]
    if kind in ("numpy", "masked") and spec["dtype"] in ("bool", "boolean"):
        part.sql_type = "BOOLEAN"
    elif kind == "object":
        obj = spec["object"]
        a = part.owner.to_numpy()
        if obj == "bool":
            part.sql_type = "BOOLEAN"
        elif obj == "decimal" and all(_numeric_exact(v) for v in a if type(v) is decimal.Decimal):
            part.sql_type = "NUMERIC"
            part.values = lambda start, stop: [v if type(v) is decimal.Decimal else None for v in a[start:stop]]
        elif obj == "json":
            exact = all(_jsonb_exact(v) for v in a if type(v) is list or type(v) is dict)
            part.sql_type = "JSONB" if exact else "JSON"
    elif kind in ("datetime", "timedelta"):
        _native_time(part)
    elif kind == "category":
        categories = part.owner.array.categories
        cat_part = _encode_array(categories, f"the categories of {where}")
        _go_native(cat_part, where)
        if cat_part.sql_type == part.sql_type:
            return
        codes = part.owner.array.codes

        def lookup_of(produce: Callable[[int, int], list]) -> np.ndarray:
            lookup = np.empty(len(categories) + 1, dtype=object)
            for i, v in enumerate(produce(0, len(categories))):
                lookup[i] = v
            lookup[-1] = None
            return lookup

        values = lookup_of(cat_part.values)
        part.sql_type = cat_part.sql_type
        part.values = lambda start, stop: values[codes[start:stop]].tolist()
        part.arrow = _category_arrow(cat_part, codes)
        if cat_part.wire is not None:
            wired = lookup_of(cat_part.wire)
            part.wire = lambda start, stop: wired[codes[start:stop]].tolist()


def _check_hashable(labels: pd.Index) -> None:
    """Refuse, naming it, a label pandas cannot hash (a list, a signalling NaN), before pandas
    itself fails on it with a TypeError."""
    if labels.dtype != object or isinstance(labels, pd.MultiIndex):
        return  # a MultiIndex hashed its labels when it was made
    for label in labels:
        try:
            hash(label)
        except TypeError:
            raise ValidationError(
                f"the column labels include {_short(label)} of type {type(label).__name__}, which "
                f"cannot be hashed, so no column can be looked up by it; accepted labels: {_LABELS_ACCEPTED}"
            ) from None


def _duplicate_labels(labels: pd.Index) -> list:
    """Every label pandas counts as equal to another, each shown once: True, 1 and 1.0 are one
    label to pandas, and all three are named."""
    try:
        if labels.is_unique:
            return []
        equal = labels.duplicated(keep=False)
    except OverflowError:
        # pandas first checks whether the labels are sorted, and comparing np.float64(1.0) with
        # 2**1100 overflows; Series.duplicated only hashes them.
        equal = pd.Series(labels.to_numpy(), dtype=object).duplicated(keep=False).to_numpy()
    return list({(type(d), _repr(d)): d for d in labels[equal].tolist()}.values())


def encode(obj: pd.DataFrame | pd.Series, *, native_types: bool = False) -> EncodedFrame:
    """Validate a frame and prepare it for storage as a typed SQL table.

    Args:
        obj: the DataFrame to store. A Series is stored as the one-column frame
            ``obj.to_frame()``: its column label is the Series' name, or ``0`` (with
            RangeIndex column labels) when the name is None, and it is pulled back as
            that DataFrame.

        native_types: store for a database with native types (PostgreSQL; see the backend's
            capabilities): besides the generic types INTEGER, REAL, TEXT and BLOB, use the
            native types where they hold the values exactly (see :func:`_go_native`), and store
            a text column holding NUL characters, which such text cannot hold, as its UTF-8
            bytes (BLOB), losslessly. Without, only the generic types.

    Returns:
        An :class:`EncodedFrame`: the table's columns, the manifest, and lazily
        converted row chunks (Python tuples, or Arrow record batches).

    Raises:
        ValidationError: the input is not a DataFrame or Series; it has no columns, or
            duplicate, unhashable or unstorable column labels or names; or a column holds
            something that cannot come back identical (complex numbers, arbitrary Python
            objects, mixed kinds in an object column, integers outside the 64-bit range,
            unsupported dtypes). The message names the column (or label) and the first
            offending value. All rows are checked before this returns.
    """
    if isinstance(obj, pd.Series):
        frame = obj.to_frame()
    elif isinstance(obj, pd.DataFrame):
        frame = obj
    else:
        raise ValidationError(
            f"expected a pandas DataFrame or Series, got {type(obj).__name__}; "
            "a pandas DataFrame or Series is accepted"
        )
    labels = frame.columns
    if len(labels) == 0:
        raise ValidationError(
            "the DataFrame has no columns; a DataFrame with at least one column is accepted"
        )
    _check_hashable(labels)
    duplicates = _duplicate_labels(labels)
    if duplicates:
        raise ValidationError(
            f"duplicate column labels {', '.join(_short(d) for d in duplicates)} "
            "(pandas counts these as equal); column labels must be unique (rename the columns first)"
        )
    columns_spec, _ = _encode_index(labels, "the column labels", embed=True)
    index_spec, index_parts = _encode_index(frame.index, "the index", embed=False)
    label_list = labels.tolist()
    data_parts = [_encode_array(frame.iloc[:, i], _where_column(label)) for i, label in enumerate(label_list)]
    if native_types:
        for k, part in enumerate(index_parts):
            _go_native(part, f"the index (level {k})")
        for label, part in zip(label_list, data_parts):
            _go_native(part, _where_column(label))
        for part in [*index_parts, *data_parts]:
            if _is_text_part(part):
                _store_text_with_nul_as_bytes(part)

    # Index levels first (a key for SQL users), data in column order, marks at the end.
    value_cols: list[_TableColumn] = []
    mark_cols: list[_TableColumn] = []
    named = [
        (f"{HIDDEN_PREFIX}index_{k}", f"{HIDDEN_PREFIX}index_{k}_missing", part)
        for k, part in enumerate(index_parts)
    ]
    named += [
        (name, f"{HIDDEN_PREFIX}missing_{i}", part)
        for i, (name, part) in enumerate(zip(_sql_names(label_list), data_parts))
    ]
    for name, marks_name, part in named:
        part.spec["sql"] = name
        value_cols.append(_TableColumn(name, part.sql_type, part.values, part.wire or part.values, _arrow_of(part)))
        if part.marks is not None:
            part.spec["marks_sql"] = marks_name

            def mark_values(start: int, stop: int, marks: Callable = part.marks) -> list:
                return _marks_to_list(marks(start, stop))

            def mark_arrow(start: int, stop: int, marks: Callable = part.marks) -> pa.Array:
                return _marks_arrow(marks(start, stop))

            mark_cols.append(_TableColumn(marks_name, "INTEGER", mark_values, mark_values, mark_arrow))
    table = value_cols + mark_cols
    manifest = {
        "format": MANIFEST_FORMAT,
        "columns": columns_spec,
        "index": index_spec,
        "data": [part.spec for part in data_parts],
        "sql_columns": [[c.name, c.sql_type] for c in table],
    }
    parts = index_parts + data_parts
    return EncodedFrame(
        columns=[SqlColumn(c.name, c.sql_type) for c in table],
        manifest=manifest,
        nrows=len(frame),
        producers=[c.values for c in table],
        feeders=[part.feed for part in parts if part.feed is not None],
        owners=[part.owner for part in parts],
        wire_producers=[c.wire for c in table],
        arrow_producers=[c.arrow for c in table],
    )


# ---------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------


def _ints(values: Sequence, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """int64 array of stored integers, and the NULL mask (None when there is no NULL)."""
    try:
        return np.array(values, dtype=np.int64), None
    except (TypeError, ValueError):
        pass
    objects = np.array(values, dtype=object)
    null = np.equal(objects, None)
    objects[null] = 0
    try:
        return objects.astype(np.int64), null
    except (TypeError, ValueError, OverflowError) as exc:
        raise DatasetError(f"{where}: stored values are not integers ({exc})") from exc


def _codes(marks: Sequence | None, n: int) -> np.ndarray:
    if marks is None:
        return np.zeros(n, dtype=np.int8)
    return np.nan_to_num(np.array(marks, dtype=np.float64), nan=0.0).astype(np.int8)


def _none_among(values: Sequence, positions: np.ndarray) -> np.ndarray:
    """Which of these (NULL-or-NaN) positions hold None rather than a float NaN."""
    return np.fromiter((values[i] is None for i in positions.tolist()), dtype=bool, count=len(positions))


def _string_dtype(spec: dict) -> pd.StringDtype:
    na_value = np.nan if spec["na"] == "nan" else pd.NA
    if spec["storage"] == "pyarrow":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            # Same na_value, Python storage: the values are identical, only the backing differs.
            return pd.StringDtype("python", na_value=na_value)
    return pd.StringDtype(spec["storage"], na_value=na_value)


_US = _dt.timedelta(microseconds=1)
_UNIX_EPOCH = _dt.datetime(1970, 1, 1)
_UNIX_EPOCH_UTC = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _native_time_ints(values: Sequence, sql_type: str, unit: str, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Stored TIMESTAMP(TZ) or INTERVAL values as counts of ``unit`` since the Unix epoch (or
    durations), and the NULL mask.

    Values come as the driver gives them: datetime or timedelta objects, or, from a read
    through asyncpg's tuple codecs (see :meth:`EncodedFrame.iter_rows`), the microseconds
    (since 2000-01-01 for timestamps).
    """
    first = next((v for v in values if v is not None), None)
    if isinstance(first, _dt.datetime):
        epoch = _UNIX_EPOCH_UTC if first.tzinfo is not None else _UNIX_EPOCH
        us_list = [0 if v is None else (v - epoch) // _US for v in values]
        offset = 0
    elif isinstance(first, _dt.timedelta):
        us_list = [0 if v is None else v // _US for v in values]
        offset = 0
    else:
        us_list = values
        offset = PG_EPOCH_US if sql_type != "INTERVAL" else 0
    us, null = _ints(us_list, where)
    if offset:
        us += offset
    if unit == "ns":
        out = us * 1_000
    else:
        out = us // _US_PER_UNIT[unit]
    if null is None and first is not None and any(v is None for v in values):
        null = np.equal(np.asarray(values, dtype=object), None)
    return out, null


def _decode_array(
    spec: dict, values: Sequence, marks: Sequence | None, n: int, where: str, sql_type: str | None = None
) -> Any:
    if spec.get("text_as") == "utf-8":
        values = [None if v is None else bytes(v).decode("utf-8") for v in values]
    kind = spec["kind"]
    if kind == "numpy":
        dtype = np.dtype(spec["dtype"])
        ints, null = _ints(values, where)
        if null is not None:
            raise DatasetError(f"{where}: NULL stored in a column of dtype {dtype}")
        return ints.astype(dtype)
    if kind == "float":
        floats = np.array(values, dtype=np.float64)
        if marks is not None:
            floats[_codes(marks, n) == _MARK_CODES["negzero"]] = -0.0
        return floats.astype(spec["dtype"])
    if kind == "masked":
        return _decode_masked(spec, values, marks, n, where)
    if kind == "string":
        objects = np.empty(n, dtype=object)
        objects[:] = values
        return pd.array(objects, dtype=_string_dtype(spec))
    if kind == "category":
        return _decode_category(spec, values, n, where, sql_type)
    if kind in ("datetime", "timedelta"):
        if sql_type in TIME_TYPES:
            ints, null = _native_time_ints(values, sql_type, spec["unit"], where)
        else:
            ints, null = _ints(values, where)
        if null is not None:
            ints[null] = _NAT
        letter = "M" if kind == "datetime" else "m"
        array = pd.array(ints.view(f"{letter}8[{spec['unit']}]"))
        if kind == "datetime" and spec["tz"] is not None:
            array = array.tz_localize("UTC").tz_convert(_tz_from_json(spec["tz"]))
        return array
    if kind == "object":
        return _decode_object(spec, values, marks, n)
    if kind == "labels":
        # Filled one by one: tuple labels must stay tuples, not become rows of a 2-D array.
        objects = np.empty(n, dtype=object)
        for i, v in enumerate(values):
            objects[i] = v
        return objects
    raise DatasetError(f"{where}: unknown kind {kind!r} in the manifest")


def _decode_masked(spec: dict, values: Sequence, marks: Sequence | None, n: int, where: str) -> Any:
    dtype = pd.api.types.pandas_dtype(spec["dtype"])
    if isinstance(dtype, pd.Float32Dtype | pd.Float64Dtype):
        floats = np.array(values, dtype=np.float64)
        if marks is not None:
            codes = _codes(marks, n)
            floats[codes == _MARK_CODES["negzero"]] = -0.0
            mask = codes == _MARK_CODES["na"]
        else:
            mask = np.zeros(n, dtype=bool)
            if spec["null"] == "na":
                # A driver may return a real NaN (PostgreSQL keeps them); only NULL is NA.
                nulls = np.flatnonzero(np.isnan(floats))
                mask[nulls[_none_among(values, nulls)]] = True
        return pd.arrays.FloatingArray(floats.astype(dtype.numpy_dtype), mask)
    ints, null = _ints(values, where)
    mask = np.zeros(n, dtype=bool) if null is None else null
    if isinstance(dtype, pd.BooleanDtype):
        return pd.arrays.BooleanArray(ints.astype(bool), mask)
    return pd.arrays.IntegerArray(ints.astype(dtype.numpy_dtype), mask)


def _decode_embedded(spec: dict, where: str) -> Any:
    values = _values_from_json(spec["values"])
    return _decode_array(spec, values, spec.get("marks"), len(values), where)


def _decode_category(spec: dict, values: Sequence, n: int, where: str, sql_type: str | None) -> pd.Categorical:
    cat_spec = spec["categories"]
    # The embedded categories hold the generic stored form; bring native values to it.
    if sql_type in TIME_TYPES:
        ints, null = _native_time_ints(values, sql_type, cat_spec["unit"], where)
        values = ints.astype(object)
        if null is not None:
            values[null] = None
    elif sql_type == "NUMERIC":
        values = [None if v is None else str(v) for v in values]
    array = _decode_embedded(cat_spec, where)
    categories = pd.Index(array, dtype=array.dtype)
    stored = _values_from_json(cat_spec["values"])
    lookup = {v: i for i, v in enumerate(stored)}
    codes = np.fromiter(map(lookup.get, values, itertools.repeat(-1)), dtype=np.int64, count=n)
    missing = np.flatnonzero(codes == -1)
    if len(missing):
        unknown = [values[i] for i in missing.tolist() if values[i] is not None]
        if unknown:
            raise DatasetError(
                f"{where}: stored value {_short(unknown[0])} is not one of the column's categories"
            )
    dtype = pd.CategoricalDtype(categories, ordered=spec["ordered"])
    return pd.Categorical.from_codes(codes, dtype=dtype)


def _decode_object(spec: dict, values: Sequence, marks: Sequence | None, n: int) -> np.ndarray:
    kind = spec["object"]
    out = np.empty(n, dtype=object)
    if kind == "json":
        # A driver that parses JSON returns lists and dicts: assigned at once, lists of equal
        # length would be taken for the rows of a 2-D array.
        for i, v in enumerate(values):
            out[i] = v
    else:
        out[:] = values
    null = pd.isna(out) if n else np.zeros(0, dtype=bool)
    present = ~null
    if kind == "bool":
        out[present] = out[present].astype(bool)
    elif kind == "decimal":
        out[present] = [decimal.Decimal(v) for v in out[present]]
    elif kind == "json":
        # JSON text, or (from a driver that parses json itself, as SQLAlchemy's asyncpg
        # connections do) the list or dict it holds.
        for i in np.flatnonzero(present).tolist():
            if type(out[i]) is str:
                out[i] = json.loads(out[i])
    if marks is not None:
        codes = _codes(marks, n)
        for name, code in _MARK_CODES.items():
            hit = codes == code
            if name == "negzero":
                out[hit] = -0.0
            elif hit.any():
                out[hit] = _MARKERS[name]
    elif null.any():
        out[null] = _MARKERS[spec["null"]]
    return out


def _level_index(array: Any, spec: dict, name: Any) -> pd.Index:
    if "freq" in spec:
        cls = pd.DatetimeIndex if spec["kind"] == "datetime" else pd.TimedeltaIndex
        return cls(array, freq=spec["freq"], name=name)
    return pd.Index(array, dtype=array.dtype, name=name)


def _decode_index(spec: dict, n: int, arrays: Callable[[int, dict], Any]) -> pd.Index:
    if spec["kind"] == "range":
        start, step = spec["start"], spec["step"]
        return pd.RangeIndex(start, start + n * step, step, name=_scalar_from_json(spec["name"]))
    names = [_scalar_from_json(name) for name in spec["names"]]
    levels = [_level_index(arrays(k, level), level, names[k]) for k, level in enumerate(spec["levels"])]
    if spec["kind"] == "multi":
        return pd.MultiIndex.from_arrays(levels, names=names)
    return levels[0]


def _decode_columns(manifest: dict) -> pd.Index:
    def arrays(k: int, level: dict) -> Any:
        return _decode_embedded(level, f"column labels level {k}")

    return _decode_index(manifest["columns"], len(manifest["data"]), arrays)


def _check_format(manifest: dict) -> None:
    version = manifest.get("format") if isinstance(manifest, dict) else None
    if version != MANIFEST_FORMAT:
        raise DatasetError(
            f"manifest format {version!r} is not understood by this dsnotebook (it reads format "
            f"{MANIFEST_FORMAT}); upgrade dsnotebook to read this dataset"
        )


def decode(manifest: dict, columns: Sequence[Sequence]) -> pd.DataFrame:
    """Rebuild the DataFrame from stored values and its manifest.

    Args:
        manifest: the manifest from :func:`encode` (or the reduced one from :func:`select`).
        columns: one sequence of values per entry of ``manifest["sql_columns"]``, in that
            order (the order of :attr:`EncodedFrame.columns`), as the DB driver returns
            them (int, float, str, bytes or None): lists, tuples or 1-D NumPy object
            arrays. A prefix of the rows (a ``LIMIT``) is fine: a RangeIndex is rebuilt
            from the row count. With no SQL columns at all (see :func:`select`), the row
            count is read from ``manifest["nrows"]``.

    Returns:
        The DataFrame, equal to the encoded one in values, dtypes, index and labels.

    Raises:
        ValidationError: the number or lengths of ``columns`` do not match the manifest.
        DatasetError: the manifest has an unknown format, or the stored values do not
            fit it.
    """
    _check_format(manifest)
    names = [name for name, _ in manifest["sql_columns"]]
    if len(columns) != len(names):
        raise ValidationError(
            f"decode() got {len(columns)} value columns; the manifest lists {len(names)}: {names}"
        )
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ValidationError(f"decode() got value columns of different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else int(manifest.get("nrows", 0))
    by_name = dict(zip(names, columns))
    types = dict((name, sql_type) for name, sql_type in manifest["sql_columns"])

    def array_of(spec: dict, where: str) -> Any:
        marks = by_name[spec["marks_sql"]] if "marks_sql" in spec else None
        return _decode_array(spec, by_name[spec["sql"]], marks, n, where, types[spec["sql"]])

    return _build_frame(manifest, n, array_of)


def _build_frame(manifest: dict, n: int, array_of: Callable[[dict, str], Any]) -> pd.DataFrame:
    """Assemble the frame of ``n`` rows: the index, one column per data spec, the labels.

    ``array_of(spec, where)`` decodes the stored array an index level's or a column's spec
    names; ``where`` names it for error messages.
    """

    def arrays(k: int, level: dict) -> Any:
        return array_of(level, f"index level {k}")

    index = _decode_index(manifest["index"], n, arrays)
    data = {}
    for i, spec in enumerate(manifest["data"]):
        array = array_of(spec, f"column {spec['sql']!r}")
        # An explicit dtype: the DataFrame constructor would turn object strings into str.
        data[i] = pd.Series(array, index=index, dtype=array.dtype, copy=False)
    frame = pd.DataFrame(data, copy=False) if data else pd.DataFrame(index=index)
    frame.columns = _decode_columns(manifest)
    return frame


# ---------------------------------------------------------------------------------------
# Decoding from Arrow
# ---------------------------------------------------------------------------------------


def decode_arrow(manifest: dict, table: pa.Table | pa.RecordBatch) -> pd.DataFrame:
    """Rebuild the DataFrame from stored values read as Arrow, and its manifest.

    The inverse of :meth:`EncodedFrame.to_arrow`, and of a database read of what it wrote:
    the result is identical to what :func:`decode` gives for the same values, and the
    common dtypes are rebuilt from the Arrow buffers without a Python object per value.

    Args:
        manifest: the manifest from :func:`encode` (or the reduced one from :func:`select`).
        table: the stored columns, found by name: one per entry of
            ``manifest["sql_columns"]``; other columns (such as :data:`ROW_ID`) are ignored.
            A prefix of the rows (a ``LIMIT``) is fine, as for :func:`decode`; with no SQL
            columns at all, the row count is read from ``manifest["nrows"]`` (else the
            table's). Readers differ in the types they give, so each column is first
            brought to its storage type's Arrow type (:data:`ARROW_TYPES`). Accepted:

            - INTEGER: any integer type, or bool; REAL: float or integer types.
            - TEXT: string, large_string or string_view; BLOB: binary types, or text.
            - BOOLEAN: bool, or integers (0 is False).
            - TIMESTAMP, TIMESTAMPTZ: timestamps of any unit and zone, or integers counting
              microseconds since the Unix epoch.
            - INTERVAL: durations of any unit, month_day_nano intervals without months (as
              ADBC's PostgreSQL reader gives them), or integers counting microseconds.
            - NUMERIC: text, or decimal128/256 (but a decimal type has one scale for the
              whole column, so ``1.0`` and ``1.00`` only come back apart from text).
            - JSON, JSONB: text.
            - Extension types over these (ADBC's PostgreSQL reader tags numeric and json
              this way), and dictionaries of them.
            - A column that is NULL throughout: any type, ``pa.null()`` included (ADBC's
              SQLite reader calls such a column int64).

    Returns:
        The DataFrame, equal to the encoded one in values, dtypes, index and labels.

    Raises:
        ValidationError: ``table`` is not a pyarrow Table or RecordBatch, or lacks (or
            repeats) a column the manifest lists.
        DatasetError: the manifest has an unknown format, a column's Arrow type cannot be
            read as its storage type, or the stored values do not fit the manifest.
    """
    _check_format(manifest)
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    elif not isinstance(table, pa.Table):
        raise ValidationError(
            f"decode_arrow() expects a pyarrow Table or RecordBatch, got {type(table).__name__}"
        )
    present = table.schema.names
    counts = {name: present.count(name) for name, _ in manifest["sql_columns"]}
    missing = [name for name, count in counts.items() if count == 0]
    if missing:
        raise ValidationError(
            f"decode_arrow() got a table without the column(s) {', '.join(map(repr, missing))}; "
            f"the manifest lists {list(counts)}, the table has {present}"
        )
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        raise ValidationError(
            f"decode_arrow() got a table with the column {repeated[0]!r} {counts[repeated[0]]} times; "
            "each stored column must appear once"
        )
    n = table.num_rows if counts else int(manifest.get("nrows", table.num_rows))
    types = {name: sql_type for name, sql_type in manifest["sql_columns"]}
    columns = {name: _storage_column(table.column(name), t, f"column {name!r}") for name, t in types.items()}

    def array_of(spec: dict, where: str) -> Any:
        marks = _numpy(columns[spec["marks_sql"]]).astype(np.int8) if "marks_sql" in spec else None
        return _decode_arrow_array(spec, columns[spec["sql"]], marks, n, where, types[spec["sql"]])

    return _build_frame(manifest, n, array_of)


#: The layout of Arrow's month_day_nano_interval values (PostgreSQL's INTERVAL in ADBC).
_MONTH_DAY_NANO = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanoseconds", "<i8")])
_US_PER_DAY = 86_400_000_000
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
_TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
_BINARY_TYPES = (
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_binary_view,
    pa.types.is_fixed_size_binary,
)
#: The Arrow type families :func:`decode_arrow` reads as each storage type (dictionaries of
#: them too). Integers stand for microseconds in the time types, and for 0 and 1 in BOOLEAN.
#: The families a driver may pick for one storage type, and no other: casts exist between
#: more types than these (text parses as numbers), but a value of another family in a column
#: means the table does not hold what the manifest says.
_READABLE_AS: dict[str, tuple[Callable[[pa.DataType], bool], ...]] = {
    "INTEGER": (pa.types.is_integer, pa.types.is_boolean),
    "REAL": (pa.types.is_floating, pa.types.is_integer),
    "TEXT": _TEXT_TYPES,
    "BLOB": _BINARY_TYPES + _TEXT_TYPES,
    "BOOLEAN": (pa.types.is_boolean, pa.types.is_integer),
    "NUMERIC": (pa.types.is_decimal, *_TEXT_TYPES),
    "JSON": _TEXT_TYPES,
    "JSONB": _TEXT_TYPES,
    "TIMESTAMP": (pa.types.is_timestamp, pa.types.is_integer),
    "TIMESTAMPTZ": (pa.types.is_timestamp, pa.types.is_integer),
    "INTERVAL": (pa.types.is_duration, pa.types.is_interval, pa.types.is_integer),
}


def _storage_column(column: pa.ChunkedArray, sql_type: str, where: str) -> pa.ChunkedArray:
    """The column in its storage type's Arrow type (:data:`ARROW_TYPES`), from whatever
    type the reader gave it (see :func:`decode_arrow`)."""
    target = ARROW_TYPES.get(sql_type)
    if target is None:
        raise DatasetError(f"{where}: unknown storage type {sql_type!r} in the manifest")
    if isinstance(column.type, pa.BaseExtensionType):
        # ADBC's PostgreSQL reader gives numeric as arrow.opaque and json/jsonb as arrow.json,
        # both over their text.
        column = pa.chunked_array([chunk.storage for chunk in column.chunks], type=column.type.storage_type)
    if column.null_count == len(column):
        # No value to convert, and the reader may only have guessed the type: ADBC's SQLite
        # reader calls a column that is NULL in its first batch int64, and some give pa.null().
        return column if column.type == target else pa.chunked_array([pa.nulls(len(column), target)], type=target)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)  # a reader may dictionary-encode repeats
    source = column.type
    if source == target:
        return column
    accepted = _READABLE_AS[sql_type]
    if not any(test(source) for test in accepted):
        raise DatasetError(
            f"{where}: stored values of Arrow type {source} cannot be read as {sql_type}; "
            f"accepted Arrow types: {', '.join(test.__name__.removeprefix('is_') for test in accepted)}"
        )
    try:
        if sql_type == "INTERVAL" and pa.types.is_interval(source):
            return pa.chunked_array([_interval_to_duration(chunk, where) for chunk in column.chunks], type=target)
        if sql_type in TIME_TYPES and pa.types.is_integer(source):
            # Microseconds since the Unix epoch (or microseconds), as to_arrow writes them.
            return column.cast(pa.int64()).cast(target)
        return column.cast(target)
    except _ARROW_ERRORS as exc:
        raise DatasetError(
            f"{where}: stored values of Arrow type {source} cannot be read as {sql_type} ({exc})"
        ) from exc


def _interval_to_duration(chunk: pa.Array, where: str) -> pa.Array:
    """month_day_nano intervals as a duration in microseconds. Arrow has no cast for them,
    so the fixed-width values are read straight from the buffer."""
    n = len(chunk)
    if n == 0:
        return pa.array([], type=ARROW_TYPES["INTERVAL"])
    raw = np.frombuffer(chunk.buffers()[1], dtype=_MONTH_DAY_NANO, count=chunk.offset + n)[chunk.offset :]
    valid = chunk.is_valid().to_numpy(zero_copy_only=False)
    if np.any((raw["months"] != 0) & valid):
        raise DatasetError(
            f"{where}: a stored INTERVAL counts months, which have no fixed length; a timedelta "
            "column holds days and smaller units only"
        )
    nanoseconds = raw["nanoseconds"]
    if np.any((nanoseconds % 1_000 != 0) & valid):
        raise DatasetError(f"{where}: a stored INTERVAL is finer than a microsecond")
    us = raw["days"].astype(np.int64) * _US_PER_DAY + nanoseconds // 1_000
    return pa.array(us, mask=~valid, type=ARROW_TYPES["INTERVAL"])


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    """The column's values as a writable NumPy array, nulls given a placeholder (0, False or
    NaN): callers take the null mask from Arrow itself (:func:`_null_mask`)."""
    if column.null_count:
        t = column.type
        fill = False if pa.types.is_boolean(t) else np.nan if pa.types.is_floating(t) else 0
        column = column.fill_null(fill)
    return np.require(column.to_numpy(), requirements="W")


def _null_mask(column: pa.ChunkedArray) -> np.ndarray:
    if not column.null_count:
        return np.zeros(len(column), dtype=bool)
    return np.require(column.is_null().to_numpy(), requirements="W")


def _time_counts(column: pa.ChunkedArray, sql_type: str, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Stored datetimes or timedeltas as counts of ``unit`` (since the Unix epoch), and the
    null mask; TIME_TYPES hold microseconds, INTEGER the counts themselves."""
    null = _null_mask(column)
    if sql_type not in TIME_TYPES:
        return _numpy(column), null
    us = _numpy(column.cast(pa.int64()))
    return (us * 1_000 if unit == "ns" else us // _US_PER_UNIT[unit]), null


def _decode_arrow_array(
    spec: dict, column: pa.ChunkedArray, marks: np.ndarray | None, n: int, where: str, sql_type: str
) -> Any:
    """Like :func:`_decode_array`, from a column in its storage type (:func:`_storage_column`)
    and the marks' codes (0 for no mark)."""
    if spec.get("text_as") == "utf-8":
        try:
            column = column.cast(pa.large_string())  # checks the UTF-8 as it goes
        except _ARROW_ERRORS as exc:
            raise DatasetError(f"{where}: stored text bytes are not UTF-8 ({exc})") from exc
        sql_type = "TEXT"
    kind = spec["kind"]
    if kind == "numpy":
        dtype = np.dtype(spec["dtype"])
        if column.null_count:
            raise DatasetError(f"{where}: NULL stored in a column of dtype {dtype}")
        return _numpy(column).astype(dtype)
    if kind == "float":
        floats = _numpy(column)
        if marks is not None:
            floats[marks == _MARK_CODES["negzero"]] = -0.0
        return floats.astype(spec["dtype"])
    if kind == "masked":
        return _decode_masked_arrow(spec, column, marks, n)
    if kind == "string":
        dtype = _string_dtype(spec)
        if dtype.storage == "pyarrow":
            return dtype.__from_arrow__(column)  # wraps the Arrow array as it is
        # Python storage holds one str object per value, and making them is most of the cost
        # (about 55 of 65 ms for a million); pd.array's check in C is then cheaper than
        # __from_arrow__'s chunk-wise copy (measured, pandas 3.1).
        return pd.array(column.to_numpy(), dtype=dtype)
    if kind == "category":
        return _decode_category_arrow(spec, column, where, sql_type)
    if kind in ("datetime", "timedelta"):
        unit = spec["unit"]
        ints, null = _time_counts(column, sql_type, unit)
        ints[null] = _NAT
        letter = "M" if kind == "datetime" else "m"
        array = pd.array(ints.view(f"{letter}8[{unit}]"))
        if kind == "datetime" and spec["tz"] is not None:
            array = array.tz_localize("UTC").tz_convert(_tz_from_json(spec["tz"]))
        return array
    # Object columns and anything rarer: Python values, as a DB driver returns them.
    if kind == "object" and spec["object"] in ("str", "bytes"):
        return _decode_object(spec, column.to_numpy(), marks, n)
    return _decode_array(spec, column.to_pylist(), marks, n, where, sql_type)


def _decode_masked_arrow(spec: dict, column: pa.ChunkedArray, marks: np.ndarray | None, n: int) -> Any:
    dtype = pd.api.types.pandas_dtype(spec["dtype"])
    if isinstance(dtype, pd.Float32Dtype | pd.Float64Dtype):
        floats = _numpy(column)
        if marks is not None:
            floats[marks == _MARK_CODES["negzero"]] = -0.0
            mask = marks == _MARK_CODES["na"]
        elif spec["null"] == "na":
            # Arrow tells NULL (pd.NA) from a NaN value (PostgreSQL keeps them).
            mask = _null_mask(column)
        else:
            mask = np.zeros(n, dtype=bool)
        return pd.arrays.FloatingArray(floats.astype(dtype.numpy_dtype), mask)
    values = _numpy(column)
    if isinstance(dtype, pd.BooleanDtype):
        return pd.arrays.BooleanArray(values.astype(bool), _null_mask(column))
    return pd.arrays.IntegerArray(values.astype(dtype.numpy_dtype), _null_mask(column))


def _decode_category_arrow(spec: dict, column: pa.ChunkedArray, where: str, sql_type: str) -> pd.Categorical:
    cat_spec = spec["categories"]
    if sql_type in TIME_TYPES:
        # The embedded categories hold the generic stored form: counts of their unit.
        ints, null = _time_counts(column, sql_type, cat_spec["unit"])
        column = pa.chunked_array([pa.array(ints, mask=null)])
    array = _decode_embedded(cat_spec, where)
    categories = pd.Index(array, dtype=array.dtype)
    stored = _arrow_from_values(_values_from_json(cat_spec["values"]), column.type)
    values = column
    if pa.types.is_floating(column.type):
        # -0.0 and 0.0 are one category to pandas (and SQLite keeps no -0.0), but two keys
        # to Arrow's hash lookup: adding 0.0 turns -0.0 into 0.0 on both sides.
        values, stored = pc.add(values, 0.0), pc.add(stored, 0.0)
    codes = pc.index_in(values, value_set=stored)
    unknown = pc.and_(pc.is_null(codes), pc.is_valid(values))
    if pc.any(unknown).as_py():
        first = values[pc.index(unknown, True).as_py()].as_py()
        raise DatasetError(f"{where}: stored value {_short(first)} is not one of the column's categories")
    dtype = pd.CategoricalDtype(categories, ordered=spec["ordered"])
    return pd.Categorical.from_codes(_numpy(codes.fill_null(-1)), dtype=dtype)


# ---------------------------------------------------------------------------------------
# Partial reads and schemas
# ---------------------------------------------------------------------------------------


def _describe_labels(labels: list, limit: int = 50) -> str:
    shown = ", ".join(_short(label, 40) for label in labels[:limit])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > limit else "")


def select(manifest: dict, labels: Sequence | None) -> tuple[list[str], dict]:
    """Plan a read of some columns.

    Args:
        manifest: a version's manifest.
        labels: the column labels to read, in the order wanted; None reads all columns.

    Returns:
        The SQL column names to select (index columns and hidden companions included),
        and a manifest that :func:`decode` accepts with exactly those columns, in that
        order. The decoded frame equals ``df[labels]``. An empty ``labels`` with a
        RangeIndex needs no SQL column at all: then give :func:`decode` the row count as
        ``manifest["nrows"]``.

    Raises:
        ValidationError: a label is unknown (the message lists the available labels), is
            repeated, or ``labels`` is a single string.
    """
    _check_format(manifest)
    if labels is None:
        return [name for name, _ in manifest["sql_columns"]], dict(manifest)
    if isinstance(labels, (str, bytes)):
        raise ValidationError(
            f"columns must be a list of column labels, got the single string {labels!r}; "
            f"pass [{labels!r}]"
        )
    labels = list(labels)
    available = _decode_columns(manifest)
    positions = []
    for label in labels:
        try:
            loc = available.get_loc(label)
        except (KeyError, TypeError, ValueError, pd.errors.InvalidIndexError):
            loc = None
        if not isinstance(loc, (int, np.integer)):
            raise ValidationError(
                f"unknown column {_short(label)}; available columns: {_describe_labels(available.tolist())}"
            )
        if int(loc) in positions:
            raise ValidationError(f"column {_short(label)} is requested twice; list each column once")
        positions.append(int(loc))
    data = [manifest["data"][p] for p in positions]
    columns_spec, _ = _encode_index(available[positions], "the column labels", embed=True)
    level_specs = [] if manifest["index"]["kind"] == "range" else manifest["index"]["levels"]
    specs = level_specs + data
    wanted = [spec["sql"] for spec in specs] + [spec["marks_sql"] for spec in specs if "marks_sql" in spec]
    types = dict((name, sql_type) for name, sql_type in manifest["sql_columns"])
    reduced = dict(manifest)
    reduced["columns"] = columns_spec
    reduced["data"] = data
    reduced["sql_columns"] = [[name, types[name]] for name in wanted]
    return wanted, reduced


def schema(manifest: dict) -> list[tuple[object, str]]:
    """Return ``(label, pandas dtype string)`` for each data column, in column order.

    For example ``[("amount", "Int64"), ("when", "datetime64[ns, Europe/Paris]")]``.
    """
    _check_format(manifest)
    labels = _decode_columns(manifest).tolist()
    return [(label, spec["dtype"]) for label, spec in zip(labels, manifest["data"])]


_STORAGE_KEYS = {"sql", "marks_sql", "null", "storage", "freq", "text_as"}


def _identity(spec: dict) -> str:
    """What must match for old and new values to decode alike (storage details excluded)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _STORAGE_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(spec), sort_keys=True)


def _describe_type(spec: dict) -> str:
    if spec["kind"] == "object":
        return f"object ({spec['object']} values)"
    if spec["kind"] == "category":
        categories = _decode_embedded(spec["categories"], "categories").tolist()
        shown = _describe_labels(categories, limit=10)
        return f"category ([{shown}], ordered={spec['ordered']})"
    return spec["dtype"]


def _describe_index(spec: dict) -> str:
    if spec["kind"] == "range":
        name = _scalar_from_json(spec["name"])
        return "RangeIndex" + ("" if name is None else f" (name {name!r})")
    names = [_scalar_from_json(name) for name in spec["names"]]
    levels = ", ".join(f"{name!r}: {_describe_type(level)}" for name, level in zip(names, spec["levels"]))
    return f"{'MultiIndex' if spec['kind'] == 'multi' else 'Index'}({levels})"


def _without_numpy_tags(value: Any) -> Any:
    """A name's JSON form with NumPy scalar tags dropped: np.int64(7) names what 7 names."""
    if isinstance(value, dict):
        if "$numpy" in value:
            return _without_numpy_tags(value["value"])
        return {k: _without_numpy_tags(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_numpy_tags(v) for v in value]
    return value


def _index_identity(spec: dict) -> str:
    if spec["kind"] == "range":
        return json.dumps(["range", _without_numpy_tags(spec["name"])])
    names = _without_numpy_tags(spec["names"])
    return json.dumps([spec["kind"], names, [_identity(level) for level in spec["levels"]]])


def _label_key(label: Any) -> tuple[str, str]:
    # Labels 1, 1.0 and True compare equal in Python but are different columns here; a NumPy
    # scalar is the same column as its Python value (np.int64(1) and 1).
    def plain(value: Any) -> Any:
        if type(value) is tuple:
            return tuple(plain(v) for v in value)
        if isinstance(value, np.generic) and not isinstance(value, (np.datetime64, np.timedelta64)):
            return value.item()
        return value

    label = plain(label)
    return type(label).__name__, _repr(label)


def _columns_by_label(manifest: dict) -> dict[tuple[str, str], tuple[Any, dict]]:
    labels = _decode_columns(manifest).tolist()
    return {_label_key(label): (label, spec) for label, spec in zip(labels, manifest["data"])}


def _compatible_objects(a: dict, b: dict) -> bool:
    """Object columns whose values are all missing take on the other side's kind of value."""
    return a["kind"] == b["kind"] == "object" and "none" in (a["object"], b["object"])


def merged_object_kind(a: dict, b: dict) -> str:
    """The value kind of two compatible object columns: the one that holds values, if any."""
    return b["object"] if a["object"] == "none" else a["object"]


def schema_diff(old_manifest: dict, new_manifest: dict) -> tuple[list, list, list]:
    """Compare two versions' schemas, for appends.

    Returns:
        ``(added, missing, retyped)``: labels only in the new manifest, labels only in the
        old one, and ``(label, old dtype, new dtype)`` for columns whose stored type
        differs (dtype, object value kind unless one side holds only missing values,
        categories and their order; not the string
        storage, missing-value kinds or SQL names). A different index (kind, names or
        level types) is reported as a retyped entry labelled ``"<index>"``.
    """
    _check_format(old_manifest)
    _check_format(new_manifest)
    old = _columns_by_label(old_manifest)
    new = _columns_by_label(new_manifest)
    added = [label for key, (label, _) in new.items() if key not in old]
    missing = [label for key, (label, _) in old.items() if key not in new]
    retyped = []
    for key, (label, old_spec) in old.items():
        if key in new:
            new_spec = new[key][1]
            if _identity(old_spec) != _identity(new_spec) and not _compatible_objects(old_spec, new_spec):
                retyped.append((label, _describe_type(old_spec), _describe_type(new_spec)))
    if _index_identity(old_manifest["index"]) != _index_identity(new_manifest["index"]):
        old_index, new_index = old_manifest["index"], new_manifest["index"]
        retyped.append(("<index>", _describe_index(old_index), _describe_index(new_index)))
    return added, missing, retyped
