"""Checking a manifest before anything decodes it.

A version's manifest is read from the catalog, where anyone who can write to the database may
have changed it. :func:`check_manifest` holds it to the format the encoder writes (see the
package docstring) before any of it is used, and refuses anything else with a
:class:`~dsnotebook.errors.DatasetError` naming the dataset, the version, the place in the
manifest (``data[3].categories.values[7]``) and what was expected. Once a manifest has passed,
decoding it raises nothing but a ``DatasetError`` (for stored values that do not fit it), builds
nothing larger than what the manifest and the table hold, and never imports or evaluates what
it names. :func:`check_new_manifest` holds a manifest about to be published to the same rules,
so that nothing is written that could not be read back.

What is accepted:

- The format number. A newer one is refused with :class:`~dsnotebook.errors.VersionConflict`,
  as a newer catalog is.
- Known kinds, dtypes, units, time zones and tagged values only: dtypes come from fixed sets (no
  text reaches ``np.dtype`` or ``pandas_dtype`` unchecked), and an Arrow type must be one the
  codec stores, matching how its column is stored.
- Keys a release does not know are ignored, as releases have always ignored the keys later ones
  added (``"pushed"``, an array's ``"arrow"``); every key that decoding reads is checked.
- Sizes: at most :data:`MAX_TABLE_COLUMNS` columns and :data:`MAX_EMBEDDED_VALUES` values in
  any embedded list (column labels, categories, marks), marks as long as their values, labels
  as many as the columns, integers within 64 bits where they count or index anything, and a
  range index whose labels stay within 64 bits for the version's row count.
- Consistency: each array names one of the table's columns (``sql_columns``), of a storage type
  that holds its kind (natives only where the database has them), and each of those columns is
  named once.
- What pandas must accept: the column labels and the categories (unique, not null, of one dtype)
  are built once here, as decoding builds them, and pandas' refusal is reported by its path.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import re
import zoneinfo
from collections.abc import Collection, Iterator
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa

from dsnotebook.errors import DatasetError, ValidationError, VersionConflict

from .arrow_dtypes import _kind as _arrow_kind
from .decoding import _decode_columns, _decode_embedded
from .encoding import _duplicate_labels
from .jsontext import UnreadableJSON, json_text_problem
from .values import (
    _INT64_MAX,
    _INT64_MIN,
    _MARK_CODES,
    _NAT,
    MANIFEST_FORMAT,
    SQL_TYPES,
    _scalar_from_json,
    _short,
    _tz_from_json,
)

__all__ = ["MAX_EMBEDDED_VALUES", "MAX_TABLE_COLUMNS", "check_manifest", "check_new_manifest"]

#: The most values any list embedded in a manifest holds (column labels, categories, marks).
MAX_EMBEDDED_VALUES = 10_000_000
#: The most columns a version's table has: SQLite's highest compile-time limit (PostgreSQL's is
#: 1,600).
MAX_TABLE_COLUMNS = 32_767
#: The longest text of a name the manifest gives a dtype, a time zone or a frequency.
_MAX_NAME_CHARS = 1_024
#: The longest text of an Arrow type (its name, and its serialised schema).
_MAX_ARROW_CHARS = 1 << 20

_GENERIC_TYPES = frozenset({"INTEGER", "REAL", "TEXT", "BLOB"})
_UNITS = ("s", "ms", "us", "ns")
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
# A NumPy scalar's dtype as ``dtype.str`` gives it (``"<i8"``, ``"|b1"``, ``"<U5"``).
_NUMPY_SCALAR = re.compile(r"[<>|=]?(?:b1|[iu][1248]|f[248]|[US]\d{1,9})")
_TAGS: dict[str, frozenset[str]] = {
    "$float": frozenset({"$float"}),
    "$numpy": frozenset({"$numpy", "value"}),
    "$tuple": frozenset({"$tuple"}),
    "$bytes": frozenset({"$bytes"}),
    "$decimal": frozenset({"$decimal"}),
    "$na": frozenset({"$na"}),
    "$nat": frozenset({"$nat"}),
    "$timestamp": frozenset({"$timestamp", "unit", "tz"}),
    "$timedelta": frozenset({"$timedelta", "unit"}),
}
#: The tags of stored values embedded in a manifest (categories, labels of a typed Index).
_VALUE_TAGS = frozenset({"$float", "$bytes"})
#: pandas' refusals of what it is asked to build from checked parts: a ValueError, TypeError or
#: an arithmetic error (an overflow, a Decimal it cannot read); pyarrow's are among these too.
_REFUSALS = (ValueError, TypeError, ArithmeticError)


class _Refused(Exception):
    """A part of the manifest that is not accepted: where (``at``) and why."""

    def __init__(self, at: str, problem: str) -> None:
        super().__init__(f"{at or 'the manifest'}: {problem}")
        self.at = at
        self.problem = problem


def _fail(at: str, problem: str) -> NoReturn:
    raise _Refused(at, problem)


def _describe(value: Any) -> str:
    if isinstance(value, UnreadableJSON):
        return f"unreadable JSON ({value.reason})"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return f"an object with the keys {_short(sorted(map(str, value)), 60)}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, int):
        return f"an integer of {value.bit_length()} bits" if value.bit_length() > 64 else str(value)
    return _short(value, 60)


def _key(at: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{at}[{key}]"
    return f"{at}.{key}" if at else key


def _dict(value: Any, at: str) -> dict:
    if type(value) is not dict:
        _fail(at, f"expected a JSON object, got {_describe(value)}")
    return value


def _get(obj: dict, key: str, at: str) -> Any:
    if key not in obj:
        _fail(_key(at, key), "missing")
    return obj[key]


def _list(value: Any, at: str, *, most: int | None = None, least: int = 0) -> list:
    """A list of ``least`` to ``most`` items (default :data:`MAX_EMBEDDED_VALUES`)."""
    most = MAX_EMBEDDED_VALUES if most is None else most
    if type(value) is not list:
        _fail(at, f"expected a list, got {_describe(value)}")
    if not least <= len(value) <= most:
        _fail(at, f"expected a list of {least} to {most:,} items, got {len(value):,}")
    return value


def _int(value: Any, at: str, low: int = _INT64_MIN, high: int = _INT64_MAX) -> int:
    if type(value) is not int:
        _fail(at, f"expected an integer, got {_describe(value)}")
    if not low <= value <= high:
        _fail(at, f"expected an integer from {low} to {high}, got {_describe(value)}")
    return value


def _str(value: Any, at: str, *, most: int = _MAX_NAME_CHARS) -> str:
    if type(value) is not str:
        _fail(at, f"expected a string, got {_describe(value)}")
    if len(value) > most:
        _fail(at, f"expected a string of at most {most:,} characters, got {len(value):,}")
    return value


def _choice(value: Any, at: str, choices: Collection[Any]) -> Any:
    """One of ``choices``, of the same type (true is not 1)."""
    if type(value) not in {type(choice) for choice in choices} or value not in choices:
        _fail(at, f"expected one of {', '.join(map(repr, sorted(choices, key=str)))}, got {_describe(value)}")
    return value


@contextlib.contextmanager
def _built(at: str, what: str) -> Iterator[None]:
    """Build a checked part as decoding builds it; pandas' (or pyarrow's) refusal refuses it."""
    try:
        yield
    except DatasetError as exc:
        _fail(at, f"{what}: {exc}")
    except _REFUSALS as exc:
        _fail(at, f"{what}, which pandas refuses: {type(exc).__name__}: {_short(str(exc), 200)}")


# ---------------------------------------------------------------------------------------
# Scalars: names, labels, stored values
# ---------------------------------------------------------------------------------------


def _scalar(value: Any, at: str, tags: Collection[str] = _TAGS.keys()) -> None:
    """A name or label (any scalar form of the package docstring), or with ``tags`` limited, a
    stored value; checked, then read as decoding reads it."""
    if value is None or type(value) in (str, bool, int, float):
        return
    if type(value) is not dict:
        _fail(at, f"expected a scalar (null, true, false, a number, a string or a tagged value), got {_describe(value)}")
    tag = next((name for name in value if name in _TAGS), None)
    if tag is None or tag not in tags or value.keys() != _TAGS[tag]:
        known = ", ".join(sorted(tags))
        _fail(at, f"expected a scalar or one of the tagged values {known} with its own keys, got {_describe(value)}")
    inner = _key(at, tag)
    content = value[tag]
    if tag == "$float":
        _choice(content, inner, ("inf", "-inf", "nan"))
    elif tag == "$numpy":
        dtype = _str(content, inner, most=16)
        if _NUMPY_SCALAR.fullmatch(dtype) is None:
            _fail(inner, f"expected the dtype of a NumPy bool, integer, float, str or bytes scalar, got {_short(dtype)}")
        letter = dtype.lstrip("<>|=")[0]
        plain = value["value"]
        expected = {"b": (bool,), "i": (int,), "u": (int,), "f": (float, int, dict), "U": (str,), "S": (dict,)}[letter]
        if type(plain) not in expected:
            _fail(_key(at, "value"), f"expected the value of a {dtype} scalar, got {_describe(plain)}")
        _scalar(plain, _key(at, "value"), {"f": ("$float",), "S": ("$bytes",)}.get(letter, ()))
    elif tag == "$tuple":
        for i, item in enumerate(_list(content, inner)):
            _scalar(item, _key(inner, i))
        return  # each item was read already
    elif tag in ("$bytes", "$decimal"):
        if type(content) is not str:
            _fail(inner, f"expected a string, got {_describe(content)}")
    elif tag in ("$na", "$nat"):
        _choice(content, inner, (True,))
    else:
        count = _int(content, inner)
        if count == _NAT:
            _fail(inner, "expected a time, got the value that stands for NaT")
        _choice(value["unit"], _key(at, "unit"), _UNITS)
        if tag == "$timestamp" and value["tz"] is not None:
            _tz(value["tz"], _key(at, "tz"))
    with _built(at, "the value"):
        if tag == "$bytes":
            base64.b64decode(content, validate=True)
        # A NumPy float too large for its dtype is refused, rather than made inf with a warning.
        with np.errstate(over="raise"):
            _scalar_from_json(value)


def _tz(spec: Any, at: str) -> None:
    """A time zone: a zoneinfo or pytz key that names a zone, or a fixed offset."""
    spec = _dict(spec, at)
    if spec.keys() == {"zoneinfo"} or spec.keys() == {"pytz"}:
        (source, key), = spec.items()
        key = _str(key, _key(at, source), most=255)
        try:
            if source == "pytz":
                try:
                    import pytz
                except ImportError:
                    zoneinfo.ZoneInfo(key)  # decoding falls back to the same zone from the standard library
                else:
                    pytz.timezone(key)
            else:
                zoneinfo.ZoneInfo(key)
        except (ValueError, KeyError, OSError):
            _fail(_key(at, source), f"expected the key of a time zone, got {_short(key)}, which names none")
    elif spec.keys() <= {"offset_us", "name"} and "offset_us" in spec:
        day = 86_400_000_000
        _int(spec["offset_us"], _key(at, "offset_us"), -day + 1, day - 1)
        if "name" in spec:
            _str(spec["name"], _key(at, "name"), most=255)
    else:
        _fail(at, f"expected a time zone ({{'zoneinfo': key}}, {{'pytz': key}} or {{'offset_us': n}}), got {_describe(spec)}")


# ---------------------------------------------------------------------------------------
# Array specs
# ---------------------------------------------------------------------------------------


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
        categories = _array(_get(spec, "categories", at), _key(at, "categories"), table=None)
        if categories["kind"] == "category":
            _fail(_key(at, "categories.kind"), "expected the kind of the categories' own dtype, got 'category'")
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


# ---------------------------------------------------------------------------------------
# Index specs and the manifest
# ---------------------------------------------------------------------------------------


def _index(spec: Any, at: str, *, table: _Table | None, labels: int | None, rows: int) -> dict:
    """An index spec: the row index (levels in ``table``), or the column labels (embedded,
    ``labels`` of them)."""
    spec = _dict(spec, at)
    kind = _choice(_get(spec, "kind", at), _key(at, "kind"), ("range", "index", "multi"))
    if kind == "range":
        start = _int(_get(spec, "start", at), _key(at, "start"))
        stop = _int(_get(spec, "stop", at), _key(at, "stop"))
        step = _int(_get(spec, "step", at), _key(at, "step"))
        if step == 0:
            _fail(_key(at, "step"), "expected a step other than 0")
        _scalar(_get(spec, "name", at), _key(at, "name"))
        if labels is not None and len(range(start, stop, step)) != labels:
            _fail(at, f"a range of {len(range(start, stop, step)):,} labels, but the manifest has {labels:,} columns")
        if labels is None and rows and not _INT64_MIN <= start + (rows - 1) * step <= _INT64_MAX:
            _fail(at, f"its labels for the version's {rows:,} rows go beyond 64-bit integers")
        return spec
    names = _list(_get(spec, "names", at), _key(at, "names"), most=MAX_TABLE_COLUMNS, least=1)
    levels = _list(_get(spec, "levels", at), _key(at, "levels"), most=MAX_TABLE_COLUMNS, least=1)
    if len(names) != len(levels) or (kind == "index" and len(levels) != 1):
        _fail(at, f"expected {'one level' if kind == 'index' else 'one name per level'}, got {len(names)} names and {len(levels)} levels")
    for k, name in enumerate(names):
        _scalar(name, _key(_key(at, "names"), k))
    for k, level in enumerate(levels):
        level_at = _key(_key(at, "levels"), k)
        level = _array(level, level_at, table=table, labels=labels is not None)
        if kind == "multi" and "freq" in level:
            _fail(_key(level_at, "freq"), "a level of a MultiIndex has no frequency")
        if labels is not None and len(level["values"]) != labels:
            _fail(_key(level_at, "values"), f"expected one label per column ({labels:,}), got {len(level['values']):,}")
    return spec


def _pushed(manifest: dict, labels: list) -> None:
    """What was pushed (see :mod:`dsnotebook.store.kinds`); a Table's or polars frame's schema
    must name the columns and give each the Arrow type it is stored as."""
    pushed = manifest.get("pushed")
    if pushed is None:
        return
    pushed = _dict(pushed, "pushed")
    kind = _choice(_get(pushed, "kind", "pushed"), "pushed.kind", ("series", "arrow", "polars"))
    if kind == "series":
        _scalar(_get(pushed, "name", "pushed"), "pushed.name")
        return
    schema = _arrow_schema(_get(pushed, "schema", "pushed"), "pushed.schema", fields=len(labels))
    if len(set(schema.names)) != len(schema.names):
        _fail("pushed.schema", "names a field twice")
    for i, (field, label, spec) in enumerate(zip(schema, labels, manifest["data"])):
        at = f"pushed.schema (field {i})"
        if type(label) is not str or field.name != label:
            _fail(at, f"is named {field.name!r}, but column {i} is labelled {_short(label)}")
        stored = _arrow_type(spec["arrow"]["schema"], "") if "arrow" in spec else None
        if stored != field.type:
            _fail(at, f"has the type {field.type}, but column {i} is stored as {stored or spec['dtype']}")


def _check(manifest: Any, *, rows: int, columns: int | None, native_types: bool) -> dict:
    if isinstance(manifest, UnreadableJSON):
        _fail("", f"it cannot be read: {manifest.reason}")
    manifest = _dict(manifest, "")
    version = manifest.get("format")
    if type(version) is int and version > MANIFEST_FORMAT:
        raise VersionConflict(
            f"its manifest has format {version}, but this dsnotebook reads format {MANIFEST_FORMAT}; "
            "upgrade dsnotebook to read it"
        )
    _choice(_get(manifest, "format", ""), "format", (MANIFEST_FORMAT,))
    for key in ("nrows", "columns_taken"):
        if key in manifest:
            _fail(key, "only the manifest of a partial read holds it, never a stored one")
    table = _Table(_get(manifest, "sql_columns", ""), native_types)
    _index(_get(manifest, "index", ""), "index", table=table, labels=None, rows=rows)
    data = _list(_get(manifest, "data", ""), "data", most=MAX_TABLE_COLUMNS, least=1)
    if columns is not None and columns != len(data):
        _fail("data", f"describes {len(data):,} columns, but the catalog counts {_describe(columns)}")
    for i, spec in enumerate(data):
        _array(spec, _key("data", i), table=table)
    table.all_named()
    _index(_get(manifest, "columns", ""), "columns", table=None, labels=len(data), rows=rows)
    with _built("columns", "the column labels"):
        labels = _decode_columns(manifest)
        duplicates = _duplicate_labels(labels)
    if duplicates:
        _fail("columns", f"labels two columns alike: {', '.join(_short(d) for d in duplicates)}")
    _pushed(manifest, labels.tolist())
    return manifest


def check_manifest(
    manifest: object, *, dataset: str, version: int, rows: object, columns: object = None, native_types: bool = True
) -> dict:
    """Check a manifest read from the catalog before anything uses it.

    Args:
        manifest: the value read: a dict, or whatever the catalog held instead (an
            :class:`~dsnotebook.store.codec.jsontext.UnreadableJSON` marker, a list, ...).
        dataset, version: the dataset's name and the version's number, for the message.
        rows: the version's row count in the catalog.
        columns: the version's column count in the catalog (None: not compared).
        native_types: whether the database stores native types (see the backend's
            capabilities); without, only the generic storage types are accepted.

    Returns:
        ``manifest``, unchanged.

    Raises:
        DatasetError: the row count is not a count, or the manifest is malformed or describes
            what dsnotebook does not store; the message names the dataset, the version, the
            place in the manifest and what was expected there.
        VersionConflict: the manifest has a newer format than this dsnotebook reads.
    """
    name = f"dataset {dataset!r} version {version}"
    if type(rows) is not int or not 0 <= rows <= _INT64_MAX:
        raise DatasetError(f"{name} cannot be read: its row count in the catalog is {_describe(rows)}, not a count of rows")
    if isinstance(manifest, UnreadableJSON):
        raise DatasetError(
            f"{name} cannot be read: its manifest in the catalog cannot be read: {manifest.reason}; "
            "push the data again, or delete this version"
        )
    try:
        return _check(manifest, rows=rows, columns=columns, native_types=native_types)
    except _Refused as exc:
        where = f" at {exc.at}" if exc.at else ""
        raise DatasetError(
            f"{name} cannot be read: its manifest in the catalog is malformed{where}: {exc.problem}; "
            "push the data again, or delete this version"
        ) from None
    except VersionConflict as exc:
        raise VersionConflict(f"{name} cannot be read: {exc}") from None


def check_new_manifest(manifest: dict, *, rows: int, native_types: bool = True) -> None:
    """Refuse a manifest about to be published that :func:`check_manifest` would refuse when read
    back: its JSON text too long or nested too deep, or a part over its limit.

    Raises:
        ValidationError: naming the part and the limit.
    """
    text = json.dumps(manifest)  # as SQLAlchemy's JSON type writes it
    problem = json_text_problem(text)
    if problem is not None:
        raise ValidationError(
            f"the frame cannot be stored: {problem.replace('its JSON', 'its manifest (dtypes, labels, categories) as JSON')}; "
            "store fewer or shorter column labels or categories"
        )
    try:
        _check(json.loads(text), rows=rows, columns=None, native_types=native_types)
    except _Refused as exc:
        where = f" at {exc.at}" if exc.at else ""
        raise ValidationError(f"the frame cannot be stored: its manifest could not be read back{where}: {exc.problem}") from None
