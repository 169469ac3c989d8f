"""The kind of object a version was pushed as, and giving a stored version back as a kind.

A push takes a pandas DataFrame, a pandas Series, a ``pyarrow.Table`` or a polars DataFrame.
The codec stores a DataFrame (a Series as ``series.to_frame()``, a Table or a polars frame as
its Arrow-backed pandas conversion, see :func:`to_encodable`), and the manifest's optional
``"pushed"`` key records what came in::

    "pushed": {"kind": "series", "name": <the Series' name, as JSON>}
    "pushed": {"kind": "arrow", "schema": <the Table's Arrow schema, IPC bytes in base64>}
    "pushed": {"kind": "polars", "schema": <the frame's Arrow schema, as for "arrow">}

(:func:`arrow_record` builds the last two; a stream records ``"arrow"``, or ``"polars"`` for a
polars LazyFrame, see :mod:`dsnotebook.store.streams`.) A DataFrame gets no key, and a manifest without one
(every version stored before the key existed) is a DataFrame's, so a DataFrame's manifest and
content hash are what they always were. An append keeps the kind of the version it extends
(:func:`inherit`).

``pull`` gives the pushed kind back by default (:func:`convert`), or converts on request:

- ``to="pandas"``: the pandas kind pushed, the Series for a Series, else the DataFrame
  (for a Table or a polars frame, the Arrow-backed DataFrame it was stored as).
- ``to="arrow"``: a ``pyarrow.Table``. For a Table pushed, the identical Table
  (``table.equals(pushed)``, its schema metadata included); for a polars frame, the Table
  ``frame.to_arrow()`` gave. Otherwise ``pa.Table.from_pandas(frame)``: a RangeIndex is kept
  in the schema's pandas metadata, any other index as columns (``__index_level_0__`` for an
  unnamed one); a Series is the one-column frame ``series.to_frame()``, whose column is named
  ``str(name)``, or ``"0"`` with no name.
- ``to="polars"``: a polars DataFrame, ``polars.from_arrow`` of what ``to="arrow"`` gives (so a
  pandas index that is not a RangeIndex comes as columns). For a polars frame pushed, a frame
  that ``.equals()`` it, with the same schema (Categorical, Enum, Datetime with its time zone,
  Decimal with its precision and scale, List, Array, Struct). It needs polars
  (``pip install "dsnotebook[polars]"``); without it the request is refused with that hint.

A pushed Table is stored as ``table.to_pandas(types_mapper=pd.ArrowDtype)``: every column as
an Arrow-backed pandas column, which the codec stores exactly (see
:mod:`dsnotebook.store.codec.arrow_dtypes` for the Arrow types it takes), so the Table comes
back equal. A column of another Arrow type is refused before the push is queued, by the codec,
naming the column and its type. A polars frame goes the same way through
``frame.to_arrow(compat_level=CompatLevel.oldest())`` (``large_string`` rather than
``string_view``); its dtypes without such an Arrow type (Object, Null, Int128, UInt128,
Float16) are refused before the push is queued, naming the column and the polars dtype.

Appends across kinds
--------------------
An append is matched on Arrow types (:func:`dsnotebook.store.codec.schema_diff`): a polars
``Int64``, an ``int64[pyarrow]``, a pandas ``Int64`` and a NumPy ``int64`` column are one type;
so are ``float64``, ``Float64`` and ``double[pyarrow]``; ``bool``, ``boolean`` and
``bool[pyarrow]``; ``str``, ``string``, object columns of strings, ``string[pyarrow]`` and
``large_string[pyarrow]``; ``datetime64[ns, tz]`` and ``timestamp[ns, tz][pyarrow]`` (the same
unit and time zone); ``timedelta64[us]`` and ``duration[us][pyarrow]``. Other differences
(``int32`` against ``int64``, another unit or time zone, categories) are refused with
:class:`~dsnotebook.errors.SchemaMismatch` naming the column.

The version keeps the kind of its first push, and each column keeps the first push's dtype
wherever the appended values fit it exactly: a NumPy ``int64`` or ``bool`` column stays NumPy
when the appended column holds no missing value, a NumPy ``float64`` one when its missing values
are all NaN; a nullable or Arrow-backed column, a string or datetime column always does. Where
they do not fit (a null appended to NumPy ``int64``), the column takes the appended dtype
(``int64[pyarrow]`` from polars, ``Int64`` from pandas) and the earlier values come back in it.
Each value comes back as it was: a NaN appended from NumPy to an Arrow-backed float column stays
NaN, apart from the nulls.
"""

from __future__ import annotations

import base64
import sys
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa

from ..errors import UsageError, ValidationError
from .codec.arrow_dtypes import storable
from .codec.values import _scalar_from_json, _scalar_to_json

if TYPE_CHECKING:
    import polars as pl

__all__ = ["KEY", "TO", "To", "arrow_record", "check_to", "convert", "inherit", "record", "to_encodable"]

To = Literal["pandas", "arrow", "polars"]
TO: tuple[str, ...] = ("pandas", "arrow", "polars")
#: The manifest's key for the pushed kind.
KEY = "pushed"


def check_to(to: object) -> None:
    """Refuse a ``to`` that is not None or one of :data:`TO`.

    Raises:
        ValidationError: naming the argument and the accepted values.
    """
    if to is not None and (not isinstance(to, str) or to not in TO):
        raise ValidationError(
            f"to: {to!r} is not allowed; use one of {', '.join(map(repr, TO))}, or None for the kind that was pushed"
        )


def _arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """The DataFrame the codec stores for ``table``: each column Arrow-backed, so that it comes
    back as it was. The codec refuses the Arrow types it cannot store, naming the column."""
    names = table.column_names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValidationError(
            f"duplicate column names {', '.join(map(repr, repeated))} in the pyarrow Table; column names must be unique"
        )
    # Without the pandas metadata, a Table made from a DataFrame keeps its index columns as columns.
    return table.to_pandas(ignore_metadata=True, types_mapper=pd.ArrowDtype)


def _pandas_to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` (stored from a Table or a polars frame) as a Table of ``schema``'s fields for its columns."""
    names = [str(label) for label in frame.columns]
    target = pa.schema([schema.field(name) for name in names], metadata=schema.metadata)
    return pa.Table.from_pandas(frame, preserve_index=False).cast(target)


def arrow_record(kind: str, schema: pa.Schema) -> dict:
    """The ``"pushed"`` record of a version pushed as ``kind`` (``"arrow"`` or ``"polars"``)
    whose Arrow schema, as stored, is ``schema``.

    Raises:
        ValidationError: ``kind`` is neither ``"arrow"`` nor ``"polars"``.
    """
    if kind not in ("arrow", "polars"):
        raise ValidationError(f"kind: {kind!r} has no Arrow schema record; use 'arrow' or 'polars'")
    return {"kind": kind, "schema": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")}


def _recorded_schema(pushed: dict) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(pushed["schema"])))


#: The polars dtypes a pushed polars frame may hold, for the refusal of the others.
POLARS_ACCEPTED = (
    "Int8..Int64, UInt8..UInt64 (values up to 2**63-1), Float32, Float64, Boolean, String, Binary, "
    "Categorical, Enum, Date, Time, Datetime (any unit, naive or with a time zone), Duration, "
    "Decimal, and List, Array or Struct of integers, floats, booleans and strings"
)
# No Arrow type the codec takes: Object has none at all (polars exports its pointers), and
# pyarrow cannot import the 128-bit integers.
_POLARS_REFUSED = ("Object", "Int128", "UInt128")


def _is_polars_frame(obj: object) -> bool:
    # A polars frame exists only once polars was imported: no import just to check.
    polars = sys.modules.get("polars")
    return polars is not None and isinstance(obj, polars.DataFrame)


def _polars_to_arrow(frame: pl.DataFrame) -> pa.Table:
    """``frame`` as Arrow, in the types the codec takes (``large_string``, not views).

    Raises:
        ValidationError: a column of a polars dtype without such a type, naming it.
    """
    import polars as pl

    def refuse(name: str, dtype: object, arrow_type: object = None) -> ValidationError:
        arrow = "" if arrow_type is None else f" (Arrow type {arrow_type})"
        return ValidationError(
            f"column {name!r} of the polars DataFrame has dtype {dtype}{arrow}, which dsnotebook "
            f"cannot store; accepted polars dtypes: {POLARS_ACCEPTED}"
        )

    for name, dtype in frame.schema.items():
        if _holds_refused(dtype):
            raise refuse(name, dtype)
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    for field, dtype in zip(table.schema, frame.schema.values(), strict=True):
        if not storable(field.type):
            raise refuse(field.name, dtype, field.type)
    return table


def _holds_refused(dtype: Any) -> bool:
    """Whether a polars dtype is, or nests, one with no Arrow type the codec takes."""
    if type(dtype).__name__ in _POLARS_REFUSED:
        return True
    inner = getattr(dtype, "inner", None)
    if inner is not None and _holds_refused(inner):
        return True
    return any(_holds_refused(field.dtype) for field in getattr(dtype, "fields", None) or ())


def _polars() -> Any:
    """The polars module, for a conversion ``to="polars"``.

    Raises:
        UsageError: polars is not installed, saying how to install it.
    """
    try:
        import polars
    except ImportError as exc:
        raise UsageError(
            'to="polars" needs the polars package, which is not installed; install it with: '
            'pip install "dsnotebook[polars]"; or pull with to="pandas" or to="arrow"'
        ) from exc
    return polars


def to_encodable(obj: Any) -> tuple[Any, dict | None]:
    """What the codec encodes for a pushed object, and its ``"pushed"`` record (None for a
    DataFrame).

    Raises:
        ValidationError: not a DataFrame, Series, Table or polars DataFrame; a Table or polars
            frame with a column of a type that would not come back equal; or a Series name the
            manifest cannot hold.
    """
    if isinstance(obj, pd.Series):
        return obj, {"kind": "series", "name": _scalar_to_json(obj.name, "the name of the Series")}
    if isinstance(obj, pa.RecordBatch):
        obj = pa.Table.from_batches([obj])  # held in memory, as a Table is: pulled back as one
    if isinstance(obj, pa.Table):
        return _arrow_to_pandas(obj), arrow_record("arrow", obj.schema)
    if _is_polars_frame(obj):
        table = _polars_to_arrow(obj)
        return _arrow_to_pandas(table), arrow_record("polars", table.schema)
    if not isinstance(obj, pd.DataFrame):
        raise ValidationError(
            "df: expected a pandas DataFrame or Series, a pyarrow Table or RecordBatchReader, a "
            "polars DataFrame or LazyFrame, or an object with the Arrow stream interface "
            f"(__arrow_c_stream__), got {type(obj).__name__}"
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


def convert(frame: pd.DataFrame, manifest: dict, to: To | None) -> pd.DataFrame | pd.Series | pa.Table | pl.DataFrame:
    """A decoded frame (all or some of a version's columns) as the kind ``to``, or by default
    the kind recorded in ``manifest`` (see the module's docstring).

    Raises:
        UsageError: ``to="polars"`` (asked for, or the kind pushed) and polars is not installed.
    """
    pushed = manifest.get(KEY) or {"kind": "frame"}
    kind = pushed["kind"]
    if to is None:
        to = kind if kind in ("arrow", "polars") else "pandas"
    polars = _polars() if to == "polars" else None  # before any work, so the hint comes first
    if kind == "series" and frame.shape[1] == 1:
        frame = frame.iloc[:, 0].rename(_scalar_from_json(pushed["name"]))
    if to == "pandas":
        return frame
    if kind in ("arrow", "polars"):
        table = _pandas_to_arrow(frame, _recorded_schema(pushed))
    else:
        table = pa.Table.from_pandas(frame.to_frame() if isinstance(frame, pd.Series) else frame)
    if polars is None:
        return table
    return polars.from_arrow(table)
