"""Rows of driver values as columns: the path for what Arrow does not carry exactly."""

from __future__ import annotations

from collections.abc import Sequence

from pandas._libs.lib import to_object_array_tuples

__all__ = ["columns_of"]


def columns_of(rows: Sequence[Sequence], ncols: int) -> list[Sequence]:
    """Driver rows (tuples, or asyncpg's Records) as ``ncols`` columns of values.

    The rows become one 2-D object array, each value one cell even when it is a list (a JSON
    value parsed by the driver), the conversion ``pd.read_sql`` uses; its columns are views.
    """
    if not rows:
        return [() for _ in range(ncols)]
    table = to_object_array_tuples(rows)
    return [table[:, i] for i in range(ncols)]
