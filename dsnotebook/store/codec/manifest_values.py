"""The checks of the JSON values a manifest holds, for :mod:`.manifest`: their shapes (an
object, a list of bounded length, a 64-bit integer, one of a set of names), the scalar forms of
names and labels with their tags (see :mod:`.values`), and time zones. A check that fails raises
``_Refused``, which says where in the manifest and what was expected there."""

from __future__ import annotations

import base64
import contextlib
import re
import zoneinfo
from collections.abc import Collection, Iterator
from typing import Any, NoReturn

import numpy as np

from dsnotebook.errors import DatasetError

from .jsontext import MAX_JSON_DEPTH, UnreadableJSON
from .values import _INT64_MAX, _INT64_MIN, _NAT, _scalar_from_json, _short

#: The most values any list embedded in a manifest holds (column labels, categories, marks).
MAX_EMBEDDED_VALUES = 10_000_000
#: The longest text of a name the manifest gives a dtype, a time zone or a frequency.
_MAX_NAME_CHARS = 1_024
_UNITS = ("s", "ms", "us", "ns")
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


def _scalar(value: Any, at: str, tags: Collection[str] = _TAGS.keys(), depth: int = 0) -> None:
    """A name or label (any scalar form of the package docstring), or with ``tags`` limited, a
    stored value; checked, then read as decoding reads it. ``depth`` counts the tuples around it."""
    if value is None or type(value) in (str, bool, int, float):
        return
    if depth > MAX_JSON_DEPTH:
        _fail(at, f"expected tuples nested at most {MAX_JSON_DEPTH} deep")
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
        _scalar(plain, _key(at, "value"), {"f": ("$float",), "S": ("$bytes",)}.get(letter, ()), depth + 1)
    elif tag == "$tuple":
        for i, item in enumerate(_list(content, inner)):
            _scalar(item, _key(inner, i), depth=depth + 1)
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
