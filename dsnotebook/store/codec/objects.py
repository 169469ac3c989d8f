"""Object columns: plain Python values of one kind per column (str, bytes, Decimal, JSON lists
and dicts, bool, int, float, datetime.date or datetime.time) and missing markers, checked and
prepared for storage."""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dsnotebook.errors import ValidationError

from .dates import DATE_KINDS, check_times, iso_text
from .encoded import _feed_encoded, _Part
from .values import (
    _CHUNK,
    _INT64_MAX,
    _INT64_MIN,
    _MARK_CODES,
    _MARKER_TYPES,
    ARROW_TYPES,
    _check_utf8,
    _chunks,
    _long_int,
    _long_int_problem,
    _short,
)

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
    **DATE_KINDS,
}
_OBJECT_SQL_TYPES = {
    "str": "TEXT",
    "bytes": "BLOB",
    "decimal": "TEXT",
    "json": "TEXT",
    "bool": "INTEGER",
    "int": "INTEGER",
    "float": "REAL",
    # ISO text: it sorts and compares as the dates and times do (PostgreSQL: see .native).
    "date": "TEXT",
    "time": "TEXT",
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
    "an object column may hold str, bytes, decimal.Decimal, JSON lists/dicts, plain "
    "Python bool, int or float values, datetime.date or naive datetime.time values (one kind "
    "per column), with None, NaN, pd.NA or pd.NaT for missing values"
)
_JSON_DUMPS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _object_error(where: str, position: int, value: Any) -> ValidationError:
    kind = type(value)
    if isinstance(value, (complex, np.complexfloating)):
        problem = "complex numbers are not supported: store the real and imaginary parts as two float columns"
    elif isinstance(value, np.generic):
        problem = (
            f"NumPy scalars ({kind.__name__}) are not stored in object columns: convert the "
            "column to a NumPy/pandas dtype (for example .astype('int64')) or to plain Python values"
        )
    elif isinstance(value, _dt.datetime):
        problem = (
            "datetimes in object columns are not supported: convert the column with "
            "pd.to_datetime (datetime.date and datetime.time values are stored as they are)"
        )
    elif isinstance(value, _dt.timedelta):
        problem = "timedeltas in object columns are not supported: convert the column with pd.to_timedelta"
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
    elif kind == "time":
        check_times(a, where)
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
        if kind in ("date", "time"):
            return iso_text(chunk, kind)
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
        # Decimal, JSON, date and time text. With PostgreSQL's NUMERIC this producer stays
        # with the text while values() gives the Decimals; its DATE and TIME replace both
        # (see .native).
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
