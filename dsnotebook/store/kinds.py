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

A pushed Table is stored as ``table.to_pandas(types_mapper=pd.ArrowDtype)``: every column as
an Arrow-backed pandas column, which the codec stores exactly (see
:mod:`dsnotebook.store.codec.arrow_dtypes` for the Arrow types it takes), so the Table comes
back equal. A column of another Arrow type is refused before the push is queued, by the codec,
naming the column and its type.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from ..errors import ValidationError
from .codec.values import _scalar_from_json, _scalar_to_json

__all__ = ["KEY", "TO", "To", "check_to", "convert", "inherit", "record", "to_encodable"]

To = Literal["pandas", "arrow"]
TO: tuple[str, ...] = ("pandas", "arrow")
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
