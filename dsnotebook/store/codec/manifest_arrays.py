"""The checks of a manifest's array specs, for :mod:`.manifest`: each kind's dtype and fields,
the table column that holds its values (of a storage type that holds them), its embedded values
and marks, its categories (built once, as decoding builds them), and its Arrow type."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .arrow_dtypes import _kind as _arrow_kind
from .decoding import _decode_embedded
from .manifest_values import (
    _UNITS,
    _VALUE_TAGS,
    _built,
    _choice,
    _describe,
    _dict,
    _fail,
    _get,
    _int,
    _key,
    _list,
    _scalar,
    _str,
    _tz,
)
from .values import _MARK_CODES, SQL_TYPES, _short, _tz_from_json

#: The most columns a version's table has: SQLite's highest compile-time limit (PostgreSQL's is
#: 1,600).
MAX_TABLE_COLUMNS = 32_767
#: The longest text of an Arrow type (its name, and its serialised schema).
_MAX_ARROW_CHARS = 1 << 20

_GENERIC_TYPES = frozenset({"INTEGER", "REAL", "TEXT", "BLOB"})
_NUMPY_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
_FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
_MASKED_DTYPES = frozenset(
    {"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64", "boolean"}
)
_STRING_DTYPES = frozenset({"str", "string"})
_NULLS = frozenset(name for name in _MARK_CODES if name != "negzero")
_MARKS = frozenset(_MARK_CODES.values())
#: The storage types of object columns of each value kind (PostgreSQL's native ones included).
_OBJECT_TYPES: dict[str, frozenset[str]] = {
    "str": frozenset({"TEXT"}),
    "bytes": frozenset({"BLOB"}),
    "decimal": frozenset({"TEXT", "NUMERIC"}),
    "json": frozenset({"TEXT", "JSON", "JSONB"}),
    "bool": frozenset({"INTEGER", "BOOLEAN"}),
    "int": frozenset({"INTEGER"}),
    "float": frozenset({"REAL"}),
    "date": frozenset({"TEXT", "DATE"}),
    "time": frozenset({"TEXT", "TIME"}),
    "none": frozenset({"BLOB"}),
}
#: Storage types a category's rows never take: its categories' dates and times stay ISO text.
_NOT_FOR_CATEGORIES = frozenset({"DATE", "TIME", "JSON", "JSONB"})
_KINDS = ("numpy", "float", "masked", "string", "category", "datetime", "timedelta", "object")


def _float_range(dtype: str) -> float:
    return float(np.finfo(dtype.lower()).max)


def _number(value: Any, at: str, limit: float) -> None:
    """A stored float (or an integer) that the dtype holds; null, or a tagged infinity."""
    if value is None or (type(value) is dict and value.keys() == {"$float"}):
        _scalar(value, at, ("$float",))
    elif type(value) is int:
        _int(value, at)
    elif type(value) is not float:
        _fail(at, f"expected a number or null, got {_describe(value)}")
    elif math.isfinite(value) and abs(value) > limit:
        _fail(at, f"expected a number the column's dtype holds, got {value!r}")


def _element_check(spec: dict, at: str) -> Any:
    """How each embedded stored value of this array is checked: a function of (value, path)."""
    kind, dtype = spec["kind"], spec["dtype"]

    def of_types(*types: type, null: bool = True) -> Any:
        names = " or ".join(t.__name__ for t in types) + (" or null" if null else "")

        def check(value: Any, where: str) -> None:
            if value is None and null:
                return
            if type(value) not in types:
                _fail(where, f"expected {names}, got {_describe(value)}")
            if type(value) is int:
                _int(value, where)

        return check

    def tagged(tag: str) -> Any:
        def check(value: Any, where: str) -> None:
            if value is not None:
                _scalar(value, where, (tag,))
                if type(value) is not dict:
                    _fail(where, f"expected a {tag} value or null, got {_describe(value)}")

        return check

    if kind == "numpy":
        return of_types(bool, null=False) if dtype == "bool" else of_types(int, null=False)
    if kind == "float" or (kind == "masked" and dtype.startswith("Float")):
        limit = _float_range(dtype)
        return lambda value, where: _number(value, where, limit)
    if kind == "masked":
        return of_types(bool) if dtype == "boolean" else of_types(int)
    if kind == "string":
        return of_types(str)
    if kind in ("datetime", "timedelta"):
        return of_types(int)
    if kind == "category":
        return lambda value, where: _scalar(value, where, _VALUE_TAGS)
    if kind == "labels":
        return _scalar
    value_kind = spec["object"]
    if value_kind in ("str", "decimal", "json", "date", "time"):
        return of_types(str)
    if value_kind == "bytes":
        return tagged("$bytes")
    if value_kind in ("bool", "int"):
        return of_types(bool) if value_kind == "bool" else of_types(int)
    if value_kind == "float":
        return lambda value, where: _number(value, where, float("inf"))
    return of_types(type(None))


class _Table:
    """The table's columns as ``sql_columns`` lists them, and which array names each."""

    def __init__(self, sql_columns: Any, native_types: bool) -> None:
        entries = _list(sql_columns, "sql_columns", most=MAX_TABLE_COLUMNS, least=1)
        self.types: dict[str, str] = {}
        lowered: set[str] = set()
        for i, entry in enumerate(entries):
            at = _key("sql_columns", i)
            if type(entry) is not list or len(entry) != 2:
                _fail(at, f"expected a [name, storage type] pair, got {_describe(entry)}")
            name = _str(entry[0], _key(at, 0), most=63)
            if not name or "\x00" in name or len(name.encode("utf-8", "surrogatepass")) > 63:
                _fail(_key(at, 0), f"expected a column name of 1 to 63 UTF-8 bytes without NUL, got {_short(name)}")
            if name.lower() in lowered:
                _fail(_key(at, 0), f"the column {name!r} is listed twice")
            lowered.add(name.lower())
            self.types[name] = _choice(entry[1], _key(at, 1), SQL_TYPES if native_types else _GENERIC_TYPES)
        self.named: dict[str, str] = {}

    def name(self, spec: dict, key: str, at: str, accepted: Collection[str]) -> None:
        """The column ``spec[key]`` names: listed, named by no other array, of a type in ``accepted``."""
        name = _str(_get(spec, key, at), _key(at, key), most=63)
        where = _key(at, key)
        if name not in self.types:
            _fail(where, f"names the column {name!r}, which sql_columns does not list")
        if name in self.named:
            _fail(where, f"names the column {name!r}, which {self.named[name]} names too")
        self.named[name] = where
        if self.types[name] not in accepted:
            _fail(
                where,
                f"names the column {name!r} of storage type {self.types[name]}, which does not hold its values; "
                f"expected one of {', '.join(sorted(accepted))}",
            )

    def all_named(self) -> None:
        for name in self.types:
            if name not in self.named:
                _fail("sql_columns", f"lists the column {name!r}, which no array names")


def _storage_types(spec: dict) -> frozenset[str]:
    """The storage types that hold the values of a (checked) array spec."""
    kind, dtype = spec["kind"], spec["dtype"]
    if kind == "numpy" or (kind == "masked" and dtype == "boolean"):
        return frozenset({"INTEGER", "BOOLEAN"}) if dtype in ("bool", "boolean") else frozenset({"INTEGER"})
    if kind == "float" or (kind == "masked" and dtype.startswith("Float")):
        return frozenset({"REAL"})
    if kind == "masked":
        return frozenset({"INTEGER"})
    if kind == "string":
        return frozenset({"TEXT"})
    if kind == "datetime":
        return frozenset({"INTEGER", "TIMESTAMP" if spec["tz"] is None else "TIMESTAMPTZ"})
    if kind == "timedelta":
        return frozenset({"INTEGER", "INTERVAL"})
    if kind == "category":
        return _storage_types(spec["categories"]) - _NOT_FOR_CATEGORIES
    return _OBJECT_TYPES[spec["object"]]


def _is_text(spec: dict) -> bool:
    kind = spec["kind"]
    if kind == "category":
        return _is_text(spec["categories"])
    return kind == "string" or (kind == "object" and spec["object"] == "str")


def _array(spec: Any, at: str, *, table: _Table | None, labels: bool = False) -> dict:
    """An array spec: its values in ``table``'s columns, or (``table`` None) embedded."""
    spec = _dict(spec, at)
    kinds = (*_KINDS, "labels") if labels else _KINDS
    kind = _choice(_get(spec, "kind", at), _key(at, "kind"), kinds)
    dtype_at = _key(at, "dtype")
    dtype = _get(spec, "dtype", at)
    if kind == "numpy":
        _choice(dtype, dtype_at, _NUMPY_DTYPES)
    elif kind == "float":
        _choice(dtype, dtype_at, _FLOAT_DTYPES)
        if "null" in spec:
            _choice(spec["null"], _key(at, "null"), ("nan",))
    elif kind == "masked":
        _choice(dtype, dtype_at, _MASKED_DTYPES)
        _choice(_get(spec, "null", at), _key(at, "null"), ("na", "nan"))
    elif kind == "string":
        _choice(dtype, dtype_at, _STRING_DTYPES)
        _choice(_get(spec, "storage", at), _key(at, "storage"), ("python", "pyarrow"))
        _choice(_get(spec, "na", at), _key(at, "na"), ("nan", "na"))
    elif kind == "category":
        _choice(dtype, dtype_at, ("category",))
        _choice(_get(spec, "ordered", at), _key(at, "ordered"), (True, False))
        categories = _dict(_get(spec, "categories", at), _key(at, "categories"))
        if categories.get("kind") == "category":
            _fail(_key(at, "categories.kind"), "expected the kind of the categories' own dtype, got 'category'")
        _array(categories, _key(at, "categories"), table=None)
        _categories(spec, at)
    elif kind in ("datetime", "timedelta"):
        unit = _choice(_get(spec, "unit", at), _key(at, "unit"), _UNITS)
        tz = _get(spec, "tz", at) if kind == "datetime" else None
        if tz is not None:
            _tz(tz, _key(at, "tz"))
            # The dtype is named after its unit and time zone: a name of its own is never read
            # (pandas would look a "dateutil/..." zone up as a file).
            with _built(_key(at, "tz"), "the time zone"):
                expected = str(pd.DatetimeTZDtype(unit, _tz_from_json(tz)))
        else:
            expected = f"{'datetime' if kind == 'datetime' else 'timedelta'}64[{unit}]"
        if dtype != expected:
            _fail(dtype_at, f"expected {expected!r} (its unit and time zone), got {_describe(dtype)}")
        if "freq" in spec:
            freq = _str(spec["freq"], _key(at, "freq"), most=64)
            with _built(_key(at, "freq"), "the frequency"):
                pd.tseries.frequencies.to_offset(freq)
    elif kind == "object":
        _choice(dtype, dtype_at, ("object",))
        _choice(_get(spec, "object", at), _key(at, "object"), _OBJECT_TYPES)
        _choice(_get(spec, "null", at), _key(at, "null"), _NULLS)
    else:
        _choice(dtype, dtype_at, ("object",))
    if "freq" in spec and (kind not in ("datetime", "timedelta") or "arrow" in spec):
        _fail(_key(at, "freq"), "only a datetime or timedelta index of NumPy times has a frequency")
    if "arrow" in spec:
        _arrow_entry(spec, at)
    if table is None:
        _embedded_values(spec, at)
        if "text_as" in spec:
            _fail(_key(at, "text_as"), "embedded values are never stored as bytes")
        return spec
    accepted = _storage_types(spec)
    if "text_as" in spec:
        _choice(spec["text_as"], _key(at, "text_as"), ("utf-8",))
        if not _is_text(spec):
            _fail(_key(at, "text_as"), "only text is stored as its UTF-8 bytes")
        accepted = frozenset({"BLOB"})
    table.name(spec, "sql", at, accepted)
    if "marks_sql" in spec:
        if kind not in ("float", "masked", "object"):
            _fail(_key(at, "marks_sql"), f"an array of kind {kind!r} has no marks")
        table.name(spec, "marks_sql", at, ("INTEGER",))
    return spec


def _embedded_values(spec: dict, at: str) -> None:
    values = _list(_get(spec, "values", at), _key(at, "values"))
    check = _element_check(spec, at)
    values_at = _key(at, "values")
    for i, value in enumerate(values):
        check(value, _key(values_at, i))
    if "marks" in spec:
        marks_at = _key(at, "marks")
        marks = _list(spec["marks"], marks_at)
        if len(marks) != len(values):
            _fail(marks_at, f"expected one mark per value ({len(values):,}), got {len(marks):,}")
        for i, mark in enumerate(marks):
            if mark is not None and (type(mark) is not int or mark not in _MARKS):
                _fail(_key(marks_at, i), f"expected a mark ({', '.join(map(str, sorted(_MARKS)))}) or null, got {_describe(mark)}")


def _categories(spec: dict, at: str) -> None:
    """The categories pandas makes of a category spec's (checked) categories."""
    with _built(_key(at, "categories"), "the categories"):
        array = _decode_embedded(spec["categories"], _key(at, "categories"))
        pd.CategoricalDtype(pd.Index(array, dtype=array.dtype), ordered=spec["ordered"])


def _arrow_entry(spec: dict, at: str) -> None:
    """An array's Arrow type: one the codec stores, stored as this array's kind."""
    at = _key(at, "arrow")
    entry = _dict(spec["arrow"], at)
    _str(_get(entry, "dtype", at), _key(at, "dtype"), most=_MAX_ARROW_CHARS)
    _str(_get(entry, "type", at), _key(at, "type"), most=_MAX_ARROW_CHARS)
    t = _arrow_type(_get(entry, "schema", at), _key(at, "schema"))
    family = _arrow_kind(t)
    if family is None:
        _fail(_key(at, "schema"), f"holds the Arrow type {t}, which dsnotebook does not store")
    kind = spec["kind"]
    if family == "int":
        expected: dict[str, Any] = {"kind": "masked", "dtype": f"{'U' if pa.types.is_unsigned_integer(t) else ''}Int{t.bit_width}"}
    elif family == "float":
        expected = {"kind": "masked", "dtype": f"Float{t.bit_width}"}
    elif family == "bool":
        expected = {"kind": "masked", "dtype": "boolean"}
    elif family == "string":
        expected = {"kind": "string", "storage": "pyarrow", "na": "na"}
    elif family == "timestamp":
        expected = {"kind": "datetime", "unit": t.unit}
        if kind == "datetime" and (spec["tz"] is None) != (t.tz is None):
            _fail(_key(at, "schema"), f"holds the Arrow type {t}, but the array's time zone is {spec['tz']!r}")
    elif family == "duration":
        expected = {"kind": "timedelta", "unit": t.unit}
    elif family == "dictionary":
        expected = {"kind": "category"}
    else:
        expected = {"kind": "object"}
        if kind == "object":
            allowed = {"none", _arrow_object_kind(t)}
            if spec["object"] not in allowed:
                _fail(_key(at, "schema"), f"holds the Arrow type {t}, whose values are not {spec['object']} values")
    for key, value in expected.items():
        if spec.get(key) != value:
            _fail(_key(at, "schema"), f"holds the Arrow type {t}, stored with {key} {value!r}, not {spec.get(key)!r}")
    if family == "dictionary":
        categories = spec["categories"]
        inner = categories.get("arrow") if type(categories) is dict else None
        if type(inner) is not dict or _arrow_type(inner.get("schema"), "") != t.value_type:
            _fail(_key(at, "schema"), f"holds the Arrow type {t}, but the categories are not Arrow {t.value_type} values")
        count = len(categories["values"])
        index = t.index_type
        most = 2 ** (index.bit_width - (0 if pa.types.is_unsigned_integer(index) else 1))
        if count > most:
            _fail(_key(at, "schema"), f"holds the Arrow type {t}, whose indices count at most {most:,} categories, not {count:,}")


def _arrow_object_kind(t: pa.DataType) -> str:
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytes"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_decimal(t):
        return "decimal"
    return "json"


def _arrow_type(text: Any, at: str) -> pa.DataType:
    """The one field's type of a serialised Arrow schema (base64 of its IPC bytes)."""
    return _arrow_schema(text, at, fields=1).field(0).type


def _arrow_schema(text: Any, at: str, *, fields: int | None = None) -> pa.Schema:
    text = _str(text, at, most=_MAX_ARROW_CHARS)
    try:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text, validate=True)))
    except (binascii.Error, ValueError, pa.ArrowException, OSError):
        _fail(at, "expected a serialised Arrow schema (base64 of its IPC bytes), which it is not")
    if fields is not None and len(schema) != fields:
        _fail(at, f"expected an Arrow schema of {fields} field, got {len(schema)}")
    return schema
