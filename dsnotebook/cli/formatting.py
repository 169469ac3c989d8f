"""DataFrames as text for the terminal, and as JSON for programs. Sizes are formatted by
:func:`dsnotebook.monitor.format_bytes`, as in the notebook's status strip.

In a table every cell is one line of text: times in local time to the second, a missing value
(None, NaN, NA, NaT, or empty text) as ``-``, and long text cut short. In JSON, times are ISO-8601 with their
UTC offset and missing values are ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MISSING", "cell", "json_records", "local_time", "print_frame", "print_json"]

#: How a missing value shows in a table.
MISSING = "-"
#: The widest a table cell gets, unless a column is given its own width.
CELL_WIDTH = 40


def local_time(value: datetime, *, zone: bool = False) -> str:
    """``value`` in the machine's local time zone, to the second: ``'2026-03-28 14:05:09'``, with
    the zone's name after it (``'… CET'``) when ``zone`` is true."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime(warn=False)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z" if zone else "%Y-%m-%d %H:%M:%S")


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def cell(value: Any, *, width: int = CELL_WIDTH) -> str:
    """``value`` as one line of at most ``width`` characters for a table (see the module docstring)."""
    if _missing(value):
        return MISSING
    if isinstance(value, datetime):
        return local_time(value)
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,g}"
    text = " ".join(str(value).splitlines())
    if not text.strip():
        return MISSING
    return text if len(text) <= width else text[: width - 1] + "…"


def print_frame(df: pd.DataFrame, *, empty: str, widths: Mapping[str, int] | None = None) -> None:
    """Print ``df`` as a table without its index, or ``empty`` when it has no rows.

    ``widths`` gives some columns a width other than :data:`CELL_WIDTH`.
    """
    if df.empty:
        print(empty)
        return
    widths = widths or {}
    text = pd.DataFrame(
        {column: [cell(v, width=widths.get(column, CELL_WIDTH)) for v in df[column]] for column in df.columns},
        columns=df.columns,
    )
    with pd.option_context("display.width", 1000, "display.max_columns", None, "display.max_colwidth", None):
        print(text.to_string(index=False))


def _json_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if _missing(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``df`` as JSON-able dicts, one per row, keyed by column (see the module docstring)."""
    return [
        {str(column): _json_value(value) for column, value in zip(df.columns, row, strict=True)}
        for row in df.itertuples(index=False, name=None)
    ]


def print_json(df: pd.DataFrame) -> None:
    """Print ``df`` as one JSON document: an array with an object per row."""
    print(json.dumps(json_records(df), allow_nan=False, ensure_ascii=False))
