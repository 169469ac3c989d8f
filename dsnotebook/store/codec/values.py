"""The codec's shared vocabulary: the storage types and their Arrow types, the marks' codes,
limits, small helpers for messages and checks, and the JSON forms of scalars, labels and time
zones that the manifest holds (see the package docstring)."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import math
import sys
import zoneinfo
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dsnotebook.errors import DatasetError, ValidationError

SQL_TYPES = ("INTEGER", "REAL", "TEXT", "BLOB", "BOOLEAN", "NUMERIC", "JSON", "JSONB", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL", "DATE", "TIME")
"""Storage types; the store maps them to each dialect's own types. SQLite uses the first four;
PostgreSQL also the native types of :data:`NATIVE_TYPES` where they hold the values exactly."""

NATIVE_TYPES = ("BOOLEAN", "NUMERIC", "JSON", "JSONB", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL", "DATE", "TIME")
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
    "DATE": pa.date32(),
    "TIME": pa.time64("us"),
}
"""The Arrow type of each storage type: what :meth:`EncodedFrame.to_arrow` produces and what
:func:`decode_arrow` brings each column it reads to first. Read-only."""

_CHUNK = 65_536  # rows per step when hashing or validating, to keep memory flat
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_NAT = np.iinfo(np.int64).min
#: 2000-01-01 00:00 in microseconds since the Unix epoch: PostgreSQL's timestamps count from it.
PG_EPOCH_US = 946_684_800_000_000
_US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
_UNITS_PER_US = {"ns": 1_000}

# Codes of the companion "marks" column.
_MARK_CODES = {"none": 1, "nan": 2, "na": 3, "nat": 4, "negzero": 5}
_MARKERS: dict[str, Any] = {"none": None, "nan": np.nan, "na": pd.NA, "nat": pd.NaT}
_MARKER_TYPES = {type(None): "none", type(pd.NA): "na", type(pd.NaT): "nat"}


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


def _first_value(obj: pd.Series | pd.Index) -> Any:
    """The first value of ``obj``, for a message, or None when it is empty.

    An Arrow-backed value that Python's types cannot hold (a timestamp before year 1 or after
    9999, a duration over 999,999,999 days) comes as its Arrow scalar: pandas' own ``[0]``
    raises OverflowError for it, and naming the value must not fail before the column is
    even looked at.
    """
    if not len(obj):
        return None
    try:
        return obj.array[0]
    except (OverflowError, ValueError):
        if not isinstance(obj.dtype, pd.ArrowDtype):
            raise
        return obj.array.__arrow_array__()[0]


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


def _arrow_from_values(values: Sequence, arrow_type: pa.DataType) -> pa.Array:
    """An Arrow array of Python values (None is null); Python bools become 0 and 1 where
    the type is an integer (Arrow refuses to convert them directly)."""
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array(values).cast(arrow_type)


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
