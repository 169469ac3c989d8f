"""What SQL users see of missing floats: NULL on every backend, so that SQL's aggregates skip them,
checked with the plain drivers (sqlite3, asyncpg), not through dsnotebook; and the exact round
trip that keeps a true NaN apart from pd.NA all the same."""

from __future__ import annotations

import asyncio
import decimal
import sqlite3

import numpy as np
import pandas as pd
import pytest
from frametools import assert_identical
from hubtools import execute

from dsnotebook.store.codec import encode

D = decimal.Decimal
INF = np.inf


def sql_rows(hub, sql: str) -> list[tuple]:
    """The rows of a query on the hub's database, through the plain driver: sqlite3 (read-only)
    or asyncpg."""
    url = hub.url
    if url.get_backend_name() == "sqlite":
        con = sqlite3.connect(f"file:{url.database}?mode=ro", uri=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    async def fetch() -> list[tuple]:
        import asyncpg

        conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------------
# The repro: avg and count over a float column with a NaN
# ---------------------------------------------------------------------------------------


# How the rows reach the table: ADBC's binary COPY (PostgreSQL) or the handoff (SQLite); on
# PostgreSQL, asyncpg's COPY, which frames with a numeric column take; and an append, which
# copies the previous version's rows with SQL.
PATHS = ("bulk", "numeric-column", "append")


def push_repro(hub, path: str):
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0]})
    if path == "numeric-column":
        df["d"] = pd.Series([D("1.50"), None, D("2")], dtype=object)
    if path == "append":
        hub.push(df.iloc[:2], "f").wait(timeout=60)
        version = hub.push(df.iloc[2:], "f", if_exists="append").wait(timeout=60)
    else:
        version = hub.push(df, "f").wait(timeout=60)
    assert_identical(hub.pull("f"), df)
    return version


@pytest.mark.parametrize("path", PATHS)
def test_sql_aggregates_skip_a_missing_float(hub, path):
    version = push_repro(hub, path)
    view = hub.info("f").view_name
    for relation in (version.table_name, view):
        assert sql_rows(hub, f"SELECT avg(x), count(x), count(*) FROM {q(relation)}") == [(2.0, 2, 3)], relation


# ---------------------------------------------------------------------------------------
# Every float kind, NaN next to NA, -0.0 and infinities
# ---------------------------------------------------------------------------------------


def floats_of_every_kind() -> pd.DataFrame:
    """Each float column and index level holds NaN (and, where pandas has one, pd.NA or None)
    next to -0.0 and both infinities."""
    values = np.array([1.5, np.nan, -0.0, INF, -INF, np.nan])
    na = np.array([False, False, False, False, False, True])
    return pd.DataFrame(
        {
            "f64": values,
            "f32": values.astype("float32"),
            "f16": values.astype("float16"),
            "F64_nan": pd.arrays.FloatingArray(values, np.zeros(6, dtype=bool)),
            "F64_nan_na": pd.arrays.FloatingArray(values, na),
            "F32_nan_na": pd.arrays.FloatingArray(values.astype("float32"), na),
            "F64_na": pd.array([1.5, None, -0.0, INF, -INF, None], dtype="Float64"),
            "obj": pd.Series([1.5, np.nan, -0.0, INF, -INF, None], dtype=object),
            "cat": pd.Categorical([1.5, np.nan, -0.0, INF, -INF, np.nan]),
        },
        index=pd.MultiIndex.from_arrays(
            [
                pd.Index([0.5, np.nan, -0.0, INF, -INF, 2.5]),
                pd.Index(pd.arrays.FloatingArray(np.array([np.nan, 1.0, 2.0, 3.0, 4.0, 5.0]), na)),
                list("abcdef"),
            ],
            names=["lo", "hi", "key"],
        ),
    )


def sql_names(df: pd.DataFrame) -> dict[str, str]:
    """The table column of each data column's label and each index level's name."""
    manifest = encode(df).manifest
    names = {label: spec["sql"] for label, spec in zip(df.columns, manifest["data"])}
    names.update({name: spec["sql"] for name, spec in zip(df.index.names, manifest["index"]["levels"])})
    return names


def present(values: pd.Series | pd.Index) -> np.ndarray:
    """Which cells hold a value: neither missing nor NaN (a Float column's NaN is a value to
    pandas, but NULL in the table)."""
    if isinstance(values.array, pd.arrays.FloatingArray) or values.dtype.kind == "f":
        return ~np.isnan(values.to_numpy(dtype="float64", na_value=np.nan))
    return np.asarray(values.notna())


def expected_counts(df: pd.DataFrame) -> dict[str, int]:
    """Cells that hold a value, per column and index level."""
    counts = {label: int(present(df[label]).sum()) for label in df.columns}
    counts.update({name: int(present(df.index.get_level_values(name)).sum()) for name in df.index.names})
    return counts


def assert_sql_counts(hub, table: str, df: pd.DataFrame) -> None:
    names = sql_names(df)
    counts = ", ".join(f"count({q(names[key])})" for key in names)
    got = dict(zip(names, sql_rows(hub, f"SELECT {counts} FROM {q(table)}")[0]))
    assert got == expected_counts(df)


@pytest.mark.parametrize("numeric_column", [False, True], ids=["bulk", "numeric-column"])
def test_missing_floats_are_null_and_come_back_exactly(hub, numeric_column):
    df = floats_of_every_kind()
    if numeric_column:
        df["d"] = pd.Series([D("1.50"), None, D("-0"), D("2"), D("3"), D("4")], dtype=object)
    version = hub.push(df, "kinds").wait(timeout=60)
    assert_sql_counts(hub, version.table_name, df)
    back = hub.pull("kinds")
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert_identical(back, df)  # also the sign of every zero


def test_appends_keep_nan_apart_from_na_and_store_null(hub):
    df = floats_of_every_kind()
    hub.push(df.iloc[:3], "kinds").wait(timeout=60)
    version = hub.push(df.iloc[3:], "kinds", if_exists="append").wait(timeout=60)
    assert_sql_counts(hub, version.table_name, df)
    assert_identical(hub.pull("kinds"), df)


def test_a_frame_with_nan_is_deduplicated(hub):
    df = floats_of_every_kind()
    first = hub.push(df, "kinds").wait(timeout=60)
    again = hub.push(floats_of_every_kind(), "kinds").wait(timeout=60)
    assert again.deduplicated and again.version == first.version
    assert again.content_hash == first.content_hash == encode(df).content_hash()
    # A NaN and a pd.NA are different content.
    changed = df.copy()
    changed["F64_nan"] = pd.arrays.FloatingArray(df["F64_nan"].to_numpy(), np.isnan(df["F64_nan"].to_numpy()))
    assert not hub.push(changed, "kinds").wait(timeout=60).deduplicated


# ---------------------------------------------------------------------------------------
# Tables written by earlier releases on PostgreSQL, which kept NaN as a value
# ---------------------------------------------------------------------------------------


def restore_nan_values(hub, table: str, df: pd.DataFrame) -> int:
    """Write NaN values where earlier releases did on PostgreSQL: in every float64/float32 column
    and index level, and every Float column's cell that holds NaN but not pd.NA (object
    columns stored NULL already). Returns how many cells now hold NaN."""
    names = sql_names(df)
    arrays = {label: df[label] for label in df.columns}
    arrays.update({name: df.index.get_level_values(name) for name in df.index.names})
    statements = []
    cells = 0
    for key, values in arrays.items():
        if isinstance(values.array, pd.arrays.FloatingArray):
            nan = np.isnan(values.to_numpy(dtype="float64", na_value=0.0)) & ~np.asarray(values.isna())
        elif isinstance(values.dtype, np.dtype) and values.dtype.kind == "f":
            nan = np.isnan(values.to_numpy())
        else:
            continue
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(nan))
        if rows:
            statements.append(f"UPDATE {q(table)} SET {q(names[key])} = 'NaN' WHERE __dsn_row IN ({rows})")
            cells += int(nan.sum())
    execute(hub, *statements)
    return cells


def nan_values(hub, table: str, df: pd.DataFrame) -> int:
    names = sql_names(df)
    real = [names[key] for key in names if key not in ("obj", "cat", "key", "d")]
    found = " + ".join(f"count(*) FILTER (WHERE {q(name)} = 'NaN')" for name in real)
    return sql_rows(hub, f"SELECT {found} FROM {q(table)}")[0][0]


@pytest.mark.postgresql_only
@pytest.mark.parametrize("numeric_column", [False, True], ids=["arrow-read", "asyncpg-read"])
def test_nan_values_of_earlier_releases_read_back_and_append_as_null(hub, numeric_column):
    df = floats_of_every_kind()
    if numeric_column:
        df["d"] = pd.Series([D("1.50"), None, D("-0"), D("2"), D("3"), D("4")], dtype=object)
    old = hub.push(df.iloc[:4], "kinds").wait(timeout=60)
    assert restore_nan_values(hub, old.table_name, df.iloc[:4]) == nan_values(hub, old.table_name, df.iloc[:4]) > 0
    assert_identical(hub.pull("kinds"), df.iloc[:4])
    # The same frame is still the same content.
    assert hub.push(df.iloc[:4], "kinds").wait(timeout=60).deduplicated
    new = hub.push(df.iloc[4:], "kinds", if_exists="append").wait(timeout=60)
    assert nan_values(hub, new.table_name, df) == 0
    assert_sql_counts(hub, new.table_name, df)
    assert_identical(hub.pull("kinds"), df)
