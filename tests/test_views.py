"""What SQL users see in a dataset's ``dsn_latest_<name>_<id>`` view, read with plain SQL through
the databases' own drivers (``sqlite3``, psycopg), never through dsnotebook: index levels under
their names, columns under their labels, no internal columns, a range index that follows the
row order across appends, and on SQLite readable datetimes and timedeltas."""

from __future__ import annotations

import datetime as dt
import sqlite3
import zoneinfo

import numpy as np
import pandas as pd
import pytest
from hubtools import sqlite_path

UTC = dt.UTC


def _iso(values: list, unit: str = "us") -> pd.DatetimeIndex:
    # Parsed by NumPy at the unit: pandas 2.2 parses text to nanoseconds only.
    return pd.DatetimeIndex(np.array(values, dtype=f"M8[{unit}]"))


def query(hub, db_url: str, sql: str) -> tuple[list[str], list[tuple]]:
    """The column names and rows of ``sql``, run by the database's own driver."""
    if hub.url.get_backend_name() == "sqlite":
        con = sqlite3.connect(sqlite_path(hub))
        try:
            cursor = con.execute(sql)
            return [d[0] for d in cursor.description], cursor.fetchall()
        finally:
            con.close()
    import psycopg

    with psycopg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://")) as con:
        cursor = con.execute(sql)
        return [d.name for d in cursor.description], cursor.fetchall()


def view_of(hub, db_url: str, name: str, order_by: str | None = None) -> tuple[list[str], list[tuple]]:
    view = hub.info(name).view_name
    return query(hub, db_url, f'SELECT * FROM "{view}"' + (f" ORDER BY {order_by}" if order_by else ""))


def is_sqlite(hub) -> bool:
    return hub.url.get_backend_name() == "sqlite"


def test_an_index_made_from_a_column_keeps_its_name(hub, db_url):
    # set_index gives a RangeIndex named "id" here, which the table does not store.
    df = pd.DataFrame({"id": np.arange(1000), "amount": 1.0}).set_index("id")
    hub.push(df, "d").wait(timeout=60)
    columns, rows = view_of(hub, db_url, "d", order_by='"id"')
    assert columns == ["id", "amount"]
    assert [r[0] for r in rows] == list(range(1000))
    assert query(hub, db_url, f'SELECT sum("amount") FROM "{hub.info("d").view_name}" WHERE "id" < 10')[1] == [(10.0,)]


def test_a_named_index_shows_under_its_name(hub, db_url):
    hub.push(pd.DataFrame({"x": [1.5, 2.5]}, index=pd.Index([7, 3], name="order id")), "d").wait(timeout=30)
    columns, rows = view_of(hub, db_url, "d", order_by='"x"')
    assert columns == ["order id", "x"]
    assert rows == [(7, 1.5), (3, 2.5)]


def test_an_unnamed_index_is_called_index_as_to_sql_writes_it(hub, db_url):
    hub.push(pd.DataFrame({"x": [1, 2]}, index=pd.Index(["a", "b"])), "labels").wait(timeout=30)
    hub.push(pd.DataFrame({"x": [5, 6]}), "default").wait(timeout=30)
    # A column labelled "index" leaves the name to it; the index is level_0, as to_sql names it.
    hub.push(pd.DataFrame({"index": [1, 2]}, index=pd.Index([9, 8])), "taken").wait(timeout=30)
    assert view_of(hub, db_url, "labels", order_by='"x"') == (["index", "x"], [("a", 1), ("b", 2)])
    assert view_of(hub, db_url, "default", order_by='"index"') == (["index", "x"], [(0, 5), (1, 6)])
    assert view_of(hub, db_url, "taken", order_by='"index"') == (["level_0", "index"], [(9, 1), (8, 2)])


def test_a_multiindex_shows_each_level(hub, db_url):
    named = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["key", None])
    unnamed = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)])
    hub.push(pd.DataFrame({"x": [10, 20]}, index=named), "named").wait(timeout=30)
    hub.push(pd.DataFrame({"x": [10, 20]}, index=unnamed), "unnamed").wait(timeout=30)
    assert view_of(hub, db_url, "named", order_by='"x"') == (["key", "level_1", "x"], [("a", 1, 10), ("b", 2, 20)])
    assert view_of(hub, db_url, "unnamed", order_by='"x"') == (["level_0", "level_1", "x"], [("a", 1, 10), ("b", 2, 20)])


def test_after_appends_the_range_index_continues_in_row_order(hub, db_url):
    hub.push(pd.DataFrame({"amount": [3.0, 1.0, 2.0]}), "d").wait(timeout=30)
    hub.push(pd.DataFrame({"amount": [9.0, 8.0]}), "d", if_exists="append").wait(timeout=30)
    hub.push(pd.DataFrame({"amount": [7.0]}), "d", if_exists="append").wait(timeout=30)
    columns, rows = view_of(hub, db_url, "d", order_by='"index"')
    assert columns == ["index", "amount"]
    # Ordered by the index, the rows come back in the dataset's order, labelled as pull labels them.
    assert rows == list(zip(hub.pull("d").index.tolist(), [3.0, 1.0, 2.0, 9.0, 8.0, 7.0]))
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4, 5]


def test_after_an_append_a_stepped_range_and_an_explicit_index_continue(hub, db_url):
    hub.push(pd.DataFrame({"x": [1, 2]}, index=pd.RangeIndex(10, 14, 2, name="n")), "stepped").wait(timeout=30)
    hub.push(pd.DataFrame({"x": [3]}, index=pd.RangeIndex(0, 1, name="n")), "stepped", if_exists="append").wait(timeout=30)
    assert view_of(hub, db_url, "stepped", order_by='"n"') == (["n", "x"], list(zip(hub.pull("stepped").index.tolist(), [1, 2, 3])))
    assert [r[0] for r in view_of(hub, db_url, "stepped", order_by='"n"')[1]] == [10, 12, 14]
    hub.push(pd.DataFrame({"x": [1]}, index=pd.Index([5], name="k")), "explicit").wait(timeout=30)
    hub.push(pd.DataFrame({"x": [2]}, index=pd.Index([-4], name="k")), "explicit", if_exists="append").wait(timeout=30)
    assert view_of(hub, db_url, "explicit", order_by='"x"') == (["k", "x"], [(5, 1), (-4, 2)])


def test_no_internal_or_marks_columns_are_shown(hub, db_url):
    # A negative zero (in the data and in the index) needs a hidden marks column in the table.
    signed = np.array([1.0, -0.0, np.nan])
    df = pd.DataFrame({"f": signed, "__dsn_row": [1, 2, 3]}, index=pd.Index(signed, name="i"))
    hub.push(df, "d").wait(timeout=30)
    table = hub.info("d").latest.table_name
    stored, _ = query(hub, db_url, f'SELECT * FROM "{table}"')
    assert "__dsn_missing_0" in stored and "__dsn_index_0_missing" in stored  # the storage keeps them
    columns, rows = view_of(hub, db_url, "d", order_by='"___dsn_row"')
    assert columns == ["i", "f", "___dsn_row"]
    assert [r[2] for r in rows] == [1, 2, 3]


def test_a_label_that_an_index_name_takes_gets_a_suffix(hub, db_url):
    hub.push(pd.DataFrame({"id": [10, 20]}, index=pd.Index([1, 2], name="id")), "same").wait(timeout=30)
    hub.push(pd.DataFrame({"id": [10, 20], "ID_2": [0, 0]}, index=pd.Index([1, 2], name="ID")), "case").wait(timeout=30)
    assert view_of(hub, db_url, "same", order_by='"id"') == (["id", "id_2"], [(1, 10), (2, 20)])
    assert view_of(hub, db_url, "case", order_by='"ID"') == (["ID", "id_2", "ID_2_2"], [(1, 10, 0), (2, 20, 0)])


def test_non_string_labels_show_as_text(hub, db_url):
    long = "é" * 40  # 80 UTF-8 bytes: cut to 63 bytes without splitting a character
    df = pd.DataFrame({0: [1], 2.5: [2], ("a", 1): [3], None: [4], long: [5]}, index=pd.Index([7], name=3))
    hub.push(df, "d").wait(timeout=30)
    columns, rows = view_of(hub, db_url, "d")
    assert columns == ["3", "0", "2.5", "('a', 1)", "None", "é" * 31]
    assert rows == [(7, 1, 2, 3, 4, 5)]


def _times() -> pd.DataFrame:
    when = ["1969-12-31 23:59:59.5", None, "2024-03-31 10:00", "1900-01-01 00:00:00.000001"]
    return pd.DataFrame(
        {
            "naive": _iso(when),
            # A ZoneInfo on both pandas lines: pandas 2.2 takes a name as pytz's, whose offsets
            # before 1911 are rounded to whole minutes.
            "aware": _iso(when).tz_localize(zoneinfo.ZoneInfo("Europe/Paris")),
            "nanos": _iso(when, "ns") + pd.to_timedelta([0, 0, 1, 0], unit="ns"),
            "seconds": _iso(["1969-12-31 23:59:59", None, "2024-03-31 10:00", "0001-01-01"], "s"),
            "ms": _iso(["1969-12-31 23:59:59.999", None, "2024-03-31 10:00", "1970-01-01 00:00:00.001"], "ms"),
        }
    )


@pytest.mark.sqlite_only
def test_sqlite_shows_datetimes_as_iso_text(hub, db_url):
    df = _times()
    # Years SQLite's date functions do not cover show the stored count of seconds.
    df["far"] = pd.Series(np.array(["10000-01-01", "NaT", "2024-03-31T10:00", "1970-01-01"], dtype="datetime64[s]"))
    hub.push(df, "d").wait(timeout=30)
    columns, rows = view_of(hub, db_url, "d", order_by='"index"')
    assert columns == ["index", "naive", "aware", "nanos", "seconds", "ms", "far"]
    assert rows == [
        (0, "1969-12-31T23:59:59.500000", "1969-12-31T22:59:59.500000+00:00", "1969-12-31T23:59:59.500000000",
         "1969-12-31T23:59:59", "1969-12-31T23:59:59.999", 253402300800),
        (1, None, None, None, None, None, None),
        (2, "2024-03-31T10:00:00", "2024-03-31T08:00:00+00:00", "2024-03-31T10:00:00.000000001",
         "2024-03-31T10:00:00", "2024-03-31T10:00:00", "2024-03-31T10:00:00"),
        (3, "1900-01-01T00:00:00.000001", "1899-12-31T23:50:39.000001+00:00", "1900-01-01T00:00:00.000001000",
         "0001-01-01T00:00:00", "1970-01-01T00:00:00.001", "1970-01-01T00:00:00"),
    ]
    # The text sorts and compares as the times do.
    view = hub.info("d").view_name
    assert query(hub, db_url, f'SELECT "index" FROM "{view}" WHERE "naive" IS NOT NULL ORDER BY "naive"')[1] == [(3,), (0,), (2,)]
    assert query(hub, db_url, f"SELECT count(*) FROM \"{view}\" WHERE \"naive\" >= '2024-03-31'")[1] == [(1,)]


@pytest.mark.postgresql_only
def test_postgresql_shows_native_times_and_counts_where_not_exact(hub, db_url):
    hub.push(_times(), "d").wait(timeout=30)
    columns, rows = view_of(hub, db_url, "d", order_by='"index"')
    assert columns == ["index", "naive", "aware", "nanos", "seconds", "ms"]
    df = _times()
    assert [r[1] for r in rows] == [None if pd.isna(v) else v.to_pydatetime() for v in df["naive"]]
    # timestamptz: the same instants (psycopg gives them in the session's time zone).
    assert [r[2] for r in rows] == [None if pd.isna(v) else v.tz_convert("UTC").to_pydatetime() for v in df["aware"]]
    assert rows[3][2] == dt.datetime(1899, 12, 31, 23, 50, 39, 1, tzinfo=UTC)
    # Nanoseconds do not fit PostgreSQL's timestamps: the column stays the count of nanoseconds.
    assert [r[3] for r in rows] == [-500_000_000, None, 1_711_879_200_000_000_001, -2_208_988_799_999_999_000]
    assert [r[4] for r in rows] == [dt.datetime(1969, 12, 31, 23, 59, 59), None, dt.datetime(2024, 3, 31, 10), dt.datetime(1, 1, 1)]


def test_booleans_timedeltas_and_categories(hub, db_url):
    df = pd.DataFrame(
        {
            "flag": [True, False, True],
            "maybe": pd.array([True, None, False], dtype="boolean"),
            "took": pd.to_timedelta(["-1.5s", None, "1 day"]),
            "took_s": pd.to_timedelta(["90s", "-1s", None]).as_unit("s"),
            "kind": pd.Categorical(["b", None, "a"], categories=["b", "a"], ordered=True),
            "day": pd.Categorical(_iso(["1969-12-31 12:00", "2024-03-31", None])),
        }
    )
    hub.push(df, "d").wait(timeout=30)
    columns, rows = view_of(hub, db_url, "d", order_by='"index"')
    assert columns == ["index", "flag", "maybe", "took", "took_s", "kind", "day"]
    if is_sqlite(hub):
        assert rows == [
            (0, 1, 1, -1.5, 90.0, "b", "1969-12-31T12:00:00"),
            (1, 0, None, None, -1.0, None, "2024-03-31T00:00:00"),
            (2, 1, 0, 86400.0, None, "a", None),
        ]
        view = hub.info("d").view_name
        assert query(hub, db_url, f'SELECT typeof("took"), typeof("took_s") FROM "{view}" WHERE "index" = 0')[1] == [("real", "real")]
    else:
        assert rows == [
            (0, True, True, dt.timedelta(seconds=-1.5), dt.timedelta(seconds=90), "b", dt.datetime(1969, 12, 31, 12)),
            (1, False, None, None, dt.timedelta(seconds=-1), None, dt.datetime(2024, 3, 31)),
            (2, True, False, dt.timedelta(days=1), None, "a", None),
        ]


def test_the_view_follows_the_latest_version_after_a_delete_or_prune(hub, db_url):
    hub.push(pd.DataFrame({"x": [1]}, index=pd.Index(["a"], name="first")), "d").wait(timeout=30)
    hub.push(pd.DataFrame({"x": [2]}, index=pd.Index(["b"], name="second")), "d").wait(timeout=30)
    hub.push(pd.DataFrame({"x": [3]}, index=pd.Index(["c"], name="third")), "d").wait(timeout=30)
    assert view_of(hub, db_url, "d") == (["third", "x"], [("c", 3)])
    hub.delete("d", version=3)
    assert view_of(hub, db_url, "d") == (["second", "x"], [("b", 2)])
    hub.push(pd.DataFrame({"x": [4]}, index=pd.Index(["e"], name="fourth")), "d").wait(timeout=30)
    hub.delete("d", version=4)
    hub.prune("d", keep=1)
    assert view_of(hub, db_url, "d") == (["second", "x"], [("b", 2)])
