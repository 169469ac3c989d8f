"""PostgreSQL's native types: a part goes to BOOLEAN, NUMERIC, JSON or JSONB, TIMESTAMP or
TIMESTAMPTZ, INTERVAL, DATE or TIME where that type holds its values exactly, and text holding
NUL characters, which PostgreSQL's text cannot store, to its UTF-8 bytes."""

from __future__ import annotations

import decimal
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .arrays import _category_arrow, _encode_array
from .dates import NATIVE_DATE_TYPES, native_values
from .encoded import _arrow_of, _Part
from .values import _INT64_MAX, _NAT, _US_PER_UNIT, ARROW_TYPES, PG_EPOCH_US

# PostgreSQL's timestamps (and Python's datetime, which drivers return) hold years 1 to 9999.
_MIN_TIMESTAMP_US = -62_135_596_800_000_000  # 0001-01-01
_MAX_TIMESTAMP_US = 253_402_300_799_999_999  # 9999-12-31 23:59:59.999999


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


def _native_date(part: _Part, a: np.ndarray) -> None:
    """Date and time objects (their kind says which; all of them fit PostgreSQL's ``date`` and
    ``time``, and ``time`` keeps microseconds) become DATE or TIME, bound as the objects
    themselves and sent as Arrow date32 or time64[us]."""
    kind = part.spec["object"]
    part.sql_type = NATIVE_DATE_TYPES[kind]
    arrow_type = ARROW_TYPES[part.sql_type]
    part.values = lambda start, stop: native_values(a[start:stop], kind)
    # pyarrow reads the objects in C; from_pandas makes None, NaN, pd.NA and pd.NaT null.
    part.arrow = lambda start, stop: pa.array(a[start:stop], type=arrow_type, from_pandas=True)


def _go_native(part: _Part, where: str) -> None:
    """Store the part in PostgreSQL's native type where that type holds its values exactly.

    bool values become BOOLEAN; Decimal values NUMERIC (when every value keeps its digits and
    exponent, else TEXT); JSON values JSONB (when jsonb gives every value back exactly, else
    JSON, which keeps the text as written); datetimes TIMESTAMP or TIMESTAMPTZ and timedeltas
    INTERVAL at microsecond precision (values that carry nanoseconds stay INTEGER counts);
    date and time objects DATE and TIME, except as categories, which keep their ISO text.
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
        elif obj in NATIVE_DATE_TYPES:
            _native_date(part, a)
    elif kind in ("datetime", "timedelta"):
        _native_time(part)
    elif kind == "category":
        categories = part.owner.array.categories
        cat_part = _encode_array(categories, f"the categories of {where}")
        if cat_part.spec.get("object") in NATIVE_DATE_TYPES:
            # The rows hold the categories' stored values, which the manifest embeds as ISO
            # text; the decoders look the rows up among those as they are.
            return
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
