"""DataFrames as text for the terminal. Sizes are formatted by :func:`dsnotebook.monitor.format_bytes`,
as in the notebook's status strip."""

from __future__ import annotations

import pandas as pd

__all__ = ["print_frame"]


def print_frame(df: pd.DataFrame, *, empty: str) -> None:
    """Print ``df`` without its index, or ``empty`` when it has no rows."""
    if df.empty:
        print(empty)
    else:
        with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 40):
            print(df.to_string(index=False))
