"""The kind of object a version was pushed as, and giving a stored version back as a kind.

A push takes a pandas DataFrame, a pandas Series or a ``pyarrow.Table``. The codec stores a
DataFrame (a Series as ``series.to_frame()``, a Table as its pandas conversion, see
:func:`to_encodable`), and the manifest's optional ``"pushed"`` key records what came in::

    "pushed": {"kind": "series", "name": <the Series' name, as JSON>}
    "pushed": {"kind": "arrow", "schema": <the Table's Arrow schema, IPC bytes in base64>}

A DataFrame gets no key, and a manifest without one (every version stored before the key
existed) is a DataFrame's, so a DataFrame's manifest and content hash are what they always were.
An append keeps the kind of the version it extends (:func:`inherit`).

``pull`` gives the pushed kind back by default (:func:`convert`), or converts on request:

- ``to="pandas"``: the pandas kind pushed, the Series for a Series, else the DataFrame
  (for a Table, the DataFrame it was stored as).
- ``to="arrow"``: a ``pyarrow.Table``. For a Table pushed, the identical Table
  (``table.equals(pushed)``, its schema metadata included). Otherwise
  ``pa.Table.from_pandas(frame)``: a RangeIndex is kept in the schema's pandas metadata, any
  other index as columns (``__index_level_0__`` for an unnamed one); a Series is the one-column
  frame ``series.to_frame()``, whose column is named ``str(name)``, or ``"0"`` with no name.

Arrow types a pushed Table may hold (:data:`ARROW_TYPES_ACCEPTED`), each coming back equal:
integers (held as pandas' nullable Int/UInt dtypes), floats without NaN values (pandas cannot
keep a NaN apart from a null), bool, string, large_string, string_view, binary, large_binary,
timestamp (each unit, with or without a time zone), duration, date32, time32 and time64 (held as
``datetime.time``, so up to microseconds), decimal128, and dictionary of strings (as categorical).
Anything else, or a value that would not come back equal, is refused before the push is queued,
naming the column and its type.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError
from .codec.values import _scalar_from_json, _scalar_to_json

__all__ = ["ARROW_TYPES_ACCEPTED", "KEY", "TO", "To", "check_to", "convert", "inherit", "record", "to_encodable"]

To = Literal["pandas", "arrow"]
TO: tuple[str, ...] = ("pandas", "arrow")
#: The manifest's key for the pushed kind.
KEY = "pushed"

ARROW_TYPES_ACCEPTED = (
    "int8..int64, uint8..uint64, float16/32/64 (without NaN values), bool, string, large_string, "
    "string_view, binary, large_binary, timestamp, duration, date32, time32, time64, decimal128, "
    "dictionary of strings"
)

_MASKED = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(), pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
}


def check_to(to: object) -> None:
    """Refuse a ``to`` that is not None or one of :data:`TO`.

    Raises:
        ValidationError: naming the argument and the accepted values.
    """
    if to is not None and (not isinstance(to, str) or to not in TO):
        raise ValidationError(
            f"to: {to!r} is not allowed; use one of {', '.join(map(repr, TO))}, or None for the kind that was pushed"
        )


def _accepted(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
    checks = (
        pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string,
        pa.types.is_large_string, pa.types.is_string_view, pa.types.is_binary, pa.types.is_large_binary,
        pa.types.is_timestamp, pa.types.is_duration, pa.types.is_date32, pa.types.is_time32,
        pa.types.is_time64, pa.types.is_decimal128,
    )
    return any(check(t) for check in checks)


def _arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """The DataFrame the codec stores for ``table``; refuses what would not come back equal."""
    names = table.column_names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValidationError(
            f"duplicate column names {', '.join(map(repr, repeated))} in the pyarrow Table; column names must be unique"
        )
    for field in table.schema:
        if not _accepted(field.type):
            raise ValidationError(
                f"column {field.name!r} has Arrow type {field.type}, which cannot be stored as a pyarrow Table; "
                f"accepted Arrow types: {ARROW_TYPES_ACCEPTED}"
            )
        if pa.types.is_floating(field.type) and pc.any(pc.is_nan(table.column(field.name))).as_py():
            raise ValidationError(
                f"column {field.name!r} (Arrow type {field.type}) holds NaN values, which pandas cannot keep apart "
                "from nulls; replace them with nulls (pyarrow.compute.if_else) or push table.to_pandas()"
            )
    # Without the pandas metadata a Table made from a DataFrame keeps its index columns as columns
    # and its own types, which the stored schema restores on the way back.
    try:
        frame = table.to_pandas(ignore_metadata=True, types_mapper=_MASKED.get)
        back = _pandas_to_arrow(frame, table.schema)
    except pa.ArrowException as exc:
        # Find the column it was, and say so; each converts alone as in the whole table.
        for field in table.schema:
            try:
                _pandas_to_arrow(table.select([field.name]).to_pandas(ignore_metadata=True, types_mapper=_MASKED.get), table.schema)
            except pa.ArrowException as column_exc:
                raise _would_change(field, f": {column_exc}") from column_exc
        raise ValidationError(f"the pyarrow Table cannot be converted to pandas: {exc}") from exc
    for field, pushed, pulled in zip(table.schema, table.columns, back.columns, strict=True):
        if not pulled.equals(pushed):
            raise _would_change(field, "")
    return frame


def _would_change(field: pa.Field, detail: str) -> ValidationError:
    return ValidationError(
        f"column {field.name!r} (Arrow type {field.type}) would not come back equal through pandas{detail} "
        f"(times finer than microseconds, for example); accepted Arrow types: {ARROW_TYPES_ACCEPTED}"
    )


def _pandas_to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` (stored from a Table) as a Table of ``schema``'s fields for its columns."""
    names = [str(label) for label in frame.columns]
    target = pa.schema([schema.field(name) for name in names], metadata=schema.metadata)
    return pa.Table.from_pandas(frame, preserve_index=False).cast(target)


def to_encodable(obj: Any) -> tuple[Any, dict | None]:
    """What the codec encodes for a pushed object, and its ``"pushed"`` record (None for a
    DataFrame).

    Raises:
        ValidationError: not a DataFrame, Series or Table; a Table with a column of a type that
            would not come back equal; or a Series name the manifest cannot hold.
    """
    if isinstance(obj, pd.Series):
        return obj, {"kind": "series", "name": _scalar_to_json(obj.name, "the name of the Series")}
    if isinstance(obj, pa.Table):
        schema = base64.b64encode(obj.schema.serialize().to_pybytes()).decode("ascii")
        return _arrow_to_pandas(obj), {"kind": "arrow", "schema": schema}
    if not isinstance(obj, pd.DataFrame):
        raise ValidationError(
            f"df: expected a pandas DataFrame or Series, or a pyarrow Table, got {type(obj).__name__}"
        )
    return obj, None


def record(manifest: dict, pushed: dict | None) -> None:
    """Record the pushed kind in ``manifest`` (nothing for a DataFrame)."""
    if pushed is not None:
        manifest[KEY] = pushed


def inherit(old: dict, new: dict) -> None:
    """Give an append's combined manifest ``new`` the kind of the version ``old`` it extends."""
    new.pop(KEY, None)
    record(new, old.get(KEY))


def convert(frame: pd.DataFrame, manifest: dict, to: To | None) -> pd.DataFrame | pd.Series | pa.Table:
    """A decoded frame (all or some of a version's columns) as the kind ``to``, or by default
    the kind recorded in ``manifest`` (see the module's docstring)."""
    pushed = manifest.get(KEY) or {"kind": "frame"}
    kind = pushed["kind"]
    if to is None:
        to = "arrow" if kind == "arrow" else "pandas"
    if kind == "series" and frame.shape[1] == 1:
        frame = frame.iloc[:, 0].rename(_scalar_from_json(pushed["name"]))
    if to == "pandas":
        return frame
    if kind == "arrow":
        return _pandas_to_arrow(frame, pa.ipc.read_schema(pa.py_buffer(base64.b64decode(pushed["schema"]))))
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    return pa.Table.from_pandas(frame)
