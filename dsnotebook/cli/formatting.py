"""Text for the terminal: byte sizes and DataFrames."""

from __future__ import annotations

import pandas as pd

__all__ = ["format_bytes", "print_frame"]

_BYTE_UNITS = (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("PB", 1e15))


def format_bytes(n: float) -> str:
    """A size in decimal units with one decimal: ``1_234_567_890`` → ``'1.2 GB'``, ``512`` → ``'512 B'``."""
    if abs(n) < 1000:
        return f"{n:.0f} B"
    for unit, size in _BYTE_UNITS:
        value = n / size
        # 999_960 is '1.0 MB', not '1000.0 kB'.
        if abs(round(value, 1)) < 1000 or unit == _BYTE_UNITS[-1][0]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def print_frame(df: pd.DataFrame, *, empty: str) -> None:
    """Print ``df`` without its index, or ``empty`` when it has no rows."""
    if df.empty:
        print(empty)
    else:
        with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 40):
            print(df.to_string(index=False))
