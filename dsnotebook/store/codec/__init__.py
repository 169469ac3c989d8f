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
object: datetime.date          TEXT                     ISO text, ``2024-03-31``
object: datetime.time          TEXT                     ISO text, ``10:00:00`` or ``10:00:00.250000``
=============================  =======================  ==========================================

Arrow-backed columns (``pd.ArrowDtype``) are stored as the pandas array that holds the same values
(see :mod:`.arrow_dtypes`), and so take that array's storage above, native types included:

=============================  ===============================================================
Arrow type                     stored as
=============================  ===============================================================
int8..int64, uint8..uint64     Int8..UInt64 (uint64 only up to 2**63-1)
float32, float64, bool         Float32, Float64, boolean: a null is NA, a NaN value stays NaN
string, large_string           string (pyarrow storage)
binary, large_binary           object: bytes
timestamp[unit, tz]            datetime64[unit] (with the time zone); each unit s, ms, us, ns
duration[unit], time64[ns]     timedelta64[unit] (time64[ns]: nanoseconds since midnight)
date32, date64                 object: datetime.date (date64 only whole days)
time32[s|ms], time64[us]       object: datetime.time
decimal128, decimal256         object: decimal.Decimal, scale kept
dictionary<values=T>           category, its categories the Arrow-backed T
list*, struct                  object: JSON lists and dicts (of numbers, bools, strings, null);
                               list* is list, large_list or fixed_size_list
=============================  ===============================================================

The array spec of such a column gets an ``"arrow"`` entry: the pandas dtype (``int64[pyarrow]``,
which :func:`schema` shows), the Arrow type as text, and the Arrow type serialised as a one-field
Arrow IPC schema (base64), from which decoding rebuilds it exactly. Other Arrow types are refused,
naming the column and the type.

Dates and times are stored as ISO text (``date.isoformat()``, ``time.isoformat()``), which sorts
and compares in SQL as the values do. ``datetime.datetime`` values (a subclass of date) are not
dates here: an object column of them is refused, as are times with a time zone (``tzinfo``) and
times with ``fold=1``, which would not come back identical.

With native types (``encode(..., native_types=True)``, PostgreSQL) a column takes the native type that holds
its values exactly: BOOLEAN for bools; NUMERIC for Decimals whose digits and exponent numeric
keeps (else TEXT); JSONB for JSON values jsonb gives back unchanged (else JSON, which keeps the
text); TIMESTAMP / TIMESTAMPTZ for datetimes at microsecond precision within years 1 to 9999
(else the INTEGER count); INTERVAL for timedeltas at microsecond precision; DATE and TIME for
``datetime.date`` and ``datetime.time`` objects (all of them fit; categories of them keep their
ISO text). ``sql_columns`` in the manifest records the choice, and :func:`decode` takes the
values a driver returns for it.

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
REAL                           float64 (NaN is null, as the table stores it)
TEXT                           large_string
BLOB                           large_binary
BOOLEAN                        bool
NUMERIC, JSON, JSONB           large_string: the text; the database casts it
TIMESTAMP / TIMESTAMPTZ        timestamp[us] / timestamp[us, tz=UTC], from the Unix epoch
INTERVAL                       duration[us]
DATE                           date32
TIME                           time64[us]
=============================  ============================================================

Missing values (``None`` in :meth:`EncodedFrame.rows`, a float NaN included) are Arrow nulls,
and every value equals what :meth:`EncodedFrame.rows` gives. Each prepared array (a ``_Part``)
carries an ``arrow`` producer next to its ``values``: NumPy and masked arrays hand over their
buffers (the mask, or a float's NaN, as the validity bitmap), Arrow-backed strings their Arrow
chunks, Python strings go through pyarrow's C conversion, and categories take their categories'
stored values by code; only rarer object kinds (Decimal, JSON, dates and times) are converted
from Python values.

:func:`decode_arrow` finds the table's columns by name, brings each to its storage type's
Arrow type (readers differ: ADBC's SQLite reader guesses types from the first rows, its
PostgreSQL reader gives INTERVAL as month_day_nano and numeric and json as extension types),
and rebuilds the arrays from the buffers: integers, floats and times through NumPy with the
null mask, Arrow-backed strings wrapped as they are, categories by a vectorised lookup of the
stored values among the stored categories. Its result is identical to :func:`decode`'s.

Missing values and marks
------------------------
SQL has a single NULL, while pandas has several missing markers (None, NaN, pd.NA, pd.NaT). A
float NaN is stored as NULL on every database, as ``DataFrame.to_sql`` writes it, so that SQL's
aggregates skip it (``avg`` over a NaN value would be NaN); and SQLite stores -0.0 as 0. (Tables
written by earlier releases on PostgreSQL may hold NaN values: decoding reads them back as NaN,
and an append copies them as NULL.) When a column's NULLs all stand for one marker, the manifest
records it (``"null"``). Otherwise the column gets a hidden companion INTEGER column
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

The package
-----------
:mod:`.values` holds the shared vocabulary (storage types, mark codes, limits, the JSON forms
of labels and time zones); :mod:`.jsontext` reads the catalog's JSON text within limits
(:func:`load_json`); :mod:`.dates` the checks and ISO text of date and time objects;
:mod:`.encoded` the encoded form (:class:`SqlColumn`, ``_Part``, :class:`EncodedFrame`);
:mod:`.arrow_dtypes` converts Arrow-backed arrays to and from the arrays the codec stores;
:mod:`.objects`, :mod:`.arrays` and :mod:`.native` prepare one array (object columns, every
other dtype, PostgreSQL's native types); :mod:`.encoding` has
:func:`encode`, :mod:`.decoding` :func:`decode`, :mod:`.arrow_decoding` :func:`decode_arrow`,
:mod:`.schemas` :func:`select`, :func:`schema` and :func:`schema_diff`; :mod:`.manifest_values`,
:mod:`.manifest_arrays` and :mod:`.manifest` check a manifest read from the catalog
(:func:`check_manifest`) or about to be written (:func:`check_new_manifest`). Each module
imports only from those named before it.

A manifest read from the catalog is checked before any of these functions sees it: they trust
the manifests they are given.
"""

from __future__ import annotations

from .arrow_decoding import decode_arrow
from .decoding import decode
from .encoded import EncodedFrame, SqlColumn
from .encoding import MAX_NAME_BYTES as MAX_NAME_BYTES
from .encoding import _sql_names as _sql_names
from .encoding import encode
from .jsontext import MAX_JSON_CHARS, MAX_JSON_DEPTH, UnreadableJSON, load_json
from .manifest import (
    MAX_EMBEDDED_VALUES,
    MAX_TABLE_COLUMNS,
    check_manifest,
    check_new_manifest,
)
from .schemas import _label_key as _label_key
from .schemas import merged_object_kind as merged_object_kind
from .schemas import schema, schema_diff, select
from .values import _MARK_CODES as _MARK_CODES
from .values import (
    ARROW_TYPES,
    HIDDEN_PREFIX,
    MANIFEST_FORMAT,
    NATIVE_TYPES,
    ROW_ID,
    SQL_TYPES,
    TIME_TYPES,
)
from .values import PG_EPOCH_US as PG_EPOCH_US

__all__ = [
    "ARROW_TYPES",
    "HIDDEN_PREFIX",
    "MANIFEST_FORMAT",
    "MAX_EMBEDDED_VALUES",
    "MAX_JSON_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_TABLE_COLUMNS",
    "NATIVE_TYPES",
    "ROW_ID",
    "SQL_TYPES",
    "TIME_TYPES",
    "EncodedFrame",
    "SqlColumn",
    "UnreadableJSON",
    "check_manifest",
    "check_new_manifest",
    "decode",
    "decode_arrow",
    "encode",
    "load_json",
    "schema",
    "schema_diff",
    "select",
]
