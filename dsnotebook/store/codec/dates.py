"""``datetime.date`` and ``datetime.time`` values in object columns: the checks, their ISO text
(the generic storage: ``2024-03-31``, ``10:00:00.250000``, which sorts and compares in SQL as the
values do), and the values read back, from that text or from the date and time objects a driver
gives for PostgreSQL's ``date`` and ``time`` columns."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from dsnotebook.errors import DatasetError, ValidationError

from .values import _short

#: The object kinds of date and time values, by their exact type: a ``datetime.datetime`` (a
#: subclass of date) is not one of them.
DATE_KINDS: dict[type, str] = {_dt.date: "date", _dt.time: "time"}
_CLASSES = {kind: cls for cls, kind in DATE_KINDS.items()}
#: PostgreSQL's native types for them (see :mod:`.native`).
NATIVE_DATE_TYPES = {"date": "DATE", "time": "TIME"}


def check_times(a: np.ndarray, where: str) -> None:
    """Refuse a time that would not come back identical: one with a time zone (PostgreSQL's
    ``time with time zone`` keeps an offset but not a zone, and an offset alone means little
    without a date), or one with ``fold=1``, which means nothing without a time zone."""
    for i, v in enumerate(a):
        if type(v) is not _dt.time:
            continue
        if v.tzinfo is not None:
            raise ValidationError(
                f"{where} holds {_short(v)} at position {i}, a time with a time zone, which cannot "
                "be stored; accepted: naive datetime.time values (drop the zone with "
                ".replace(tzinfo=None)), or dates and times together as a datetime64 column with "
                "a time zone"
            )
        if v.fold:
            raise ValidationError(
                f"{where} holds {_short(v)} at position {i}; fold=1 means nothing without a time "
                "zone and would not come back; accepted: naive datetime.time values with fold=0 "
                "(use .replace(fold=0))"
            )


def iso_text(chunk: np.ndarray, kind: str) -> list:
    """The ISO text of each value (``date.isoformat()``, ``time.isoformat()``), None where a
    value is missing."""
    cls = _CLASSES[kind]
    return [v.isoformat() if type(v) is cls else None for v in chunk]


def native_values(chunk: np.ndarray, kind: str) -> list:
    """The values themselves, None where a value is missing: what a driver binds to PostgreSQL's
    ``date`` and ``time``."""
    cls = _CLASSES[kind]
    return [v if type(v) is cls else None for v in chunk]


def from_stored(values: Sequence, kind: str, where: str) -> list:
    """The date or time objects of stored (non-missing) values: ISO text, or the objects
    themselves as drivers return them for ``date`` and ``time`` columns."""
    cls = _CLASSES[kind]
    parse = cls.fromisoformat
    out: list[Any] = []
    for v in values:
        if type(v) is str:
            try:
                out.append(parse(v))
            except ValueError:
                raise DatasetError(f"{where}: the stored text {_short(v)} is not an ISO {kind}") from None
        elif type(v) is cls:
            out.append(v)
        else:
            raise DatasetError(f"{where}: the stored value {_short(v)} is not a {kind}")
    return out
