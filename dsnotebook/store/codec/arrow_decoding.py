"""Decoding from Arrow: :func:`decode_arrow` brings each stored column to its storage type's
Arrow type and rebuilds the arrays from the buffers; its result is identical to :func:`decode`'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dsnotebook.errors import DatasetError, ValidationError

from .decoding import (
    _build_frame,
    _check_format,
    _decode_array,
    _decode_embedded,
    _decode_object,
    _narrowed,
    _string_dtype,
    _times_from_counts,
)
from .values import (
    _MARK_CODES,
    _US_PER_UNIT,
    ARROW_TYPES,
    TIME_TYPES,
    _arrow_from_values,
    _short,
    _values_from_json,
)


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
            - DATE: date32 or date64; TIME: time32 or time64.
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
    # From here on each column is let go once it is decoded: where the caller kept no reference
    # to the table, its Arrow memory goes column by column instead of all at the end.
    del table

    def array_of(spec: dict, where: str) -> Any:
        marks = _numpy(columns.pop(spec["marks_sql"])).astype(np.int8) if "marks_sql" in spec else None
        return _decode_arrow_array(spec, columns.pop(spec["sql"]), marks, n, where, types[spec["sql"]])

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
    "DATE": (pa.types.is_date,),
    "TIME": (pa.types.is_time,),
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
        return _narrowed(floats, spec["dtype"], where)
    if kind == "masked":
        return _decode_masked_arrow(spec, column, marks, n, where)
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
        ints, null = _time_counts(column, sql_type, spec["unit"])
        return _times_from_counts(spec, ints, null)
    # Object columns and anything rarer: Python values, as a DB driver returns them.
    if kind == "object" and spec["object"] in ("str", "bytes"):
        return _decode_object(spec, column.to_numpy(), marks, n, where)
    return _decode_array(spec, column.to_pylist(), marks, n, where, sql_type)


def _decode_masked_arrow(spec: dict, column: pa.ChunkedArray, marks: np.ndarray | None, n: int, where: str) -> Any:
    dtype = pd.api.types.pandas_dtype(spec["dtype"])
    if isinstance(dtype, pd.Float32Dtype | pd.Float64Dtype):
        floats = _numpy(column)
        if marks is not None:
            floats[marks == _MARK_CODES["negzero"]] = -0.0
            mask = marks == _MARK_CODES["na"]
        elif spec["null"] == "na":
            # Arrow tells NULL (pd.NA) from a NaN value (which a table written by an earlier
            # release on PostgreSQL may hold).
            mask = _null_mask(column)
        else:
            mask = np.zeros(n, dtype=bool)
        return pd.arrays.FloatingArray(_narrowed(floats, dtype.numpy_dtype, where), mask)
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
    try:
        stored = _arrow_from_values(_values_from_json(cat_spec["values"]), column.type)
    except _ARROW_ERRORS as exc:
        raise DatasetError(f"{where}: the categories' stored values are not {column.type} values ({exc})") from exc
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
