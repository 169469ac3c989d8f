"""Object columns of ``datetime.date`` and ``datetime.time`` values: exact round trips through a hub
on both backends (missing kinds mixed, in an index level, appended), through the codec's two
decoders, and what SQL users find in the tables: ISO text on SQLite, ``date`` and
``time without time zone`` on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import sqlite3

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from frametools import assert_identical
from hubtools import sqlite_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import check, stored_manifest

from dsnotebook.errors import SchemaMismatch, ValidationError
from dsnotebook.store.codec import decode, decode_arrow, encode, schema_diff

MISSING = [None, np.nan, pd.NA, pd.NaT]


def objects(values: list) -> pd.Series:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return pd.Series(out, dtype=object)


def dates_and_times() -> pd.DataFrame:
    day = objects([dt.date(2024, 3, 31), None, dt.date(1, 1, 1), np.nan, dt.date(9999, 12, 31), pd.NA, pd.NaT])
    clock = objects([dt.time(10, 0, 0, 250_000), pd.NaT, dt.time(0), None, dt.time(23, 59, 59, 999_999), dt.time(10), pd.NA])
    only_none = objects([dt.date(2000, 2, 29), None, None, dt.date(1970, 1, 1), None, None, dt.date(2024, 1, 1)])
    index = pd.MultiIndex.from_arrays(
        [
            pd.Index(objects([dt.date(2020, 1, d) for d in range(1, 8)]), dtype=object, name="day"),
            pd.Index(objects([dt.time(h, 30) for h in range(7)]), dtype=object, name="at"),
        ]
    )
    df = pd.DataFrame({"day": day, "clock": clock, "some": only_none, "n": range(7)})
    return df.set_axis(index)


def pushed(hub, df: pd.DataFrame, name: str, **options) -> object:
    return hub.push(df, name, **options).wait(timeout=60)


# ---------------------------------------------------------------------------------------
# Through a hub, on both backends
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "with_numeric",
    # On PostgreSQL a numeric column sends the rows through asyncpg's COPY, and reads them back
    # as rows, instead of Arrow both ways.
    [False, True],
    ids=["arrow", "with-numeric"],
)
def test_dates_and_times_come_back_identical(hub, with_numeric):
    df = dates_and_times()
    if with_numeric:
        df["price"] = objects([decimal.Decimal("1.50")] * len(df)).to_numpy()
    pushed(hub, df, "clock")
    back = hub.pull("clock")
    assert_identical(back, df)
    assert [type(v) for v in back["day"]] == [dt.date, type(None), dt.date, float, dt.date, type(pd.NA), type(pd.NaT)]
    assert_identical(hub.pull("clock", columns=["clock"]), df[["clock"]])
    assert dict(hub.info("clock").schema)["day"] == "object"


def test_a_date_column_alone_and_as_the_only_index(hub):
    df = pd.DataFrame({"t": objects([dt.time(1, 2, 3), dt.time(4, 5, 6, 7)])}).set_axis(
        pd.Index([dt.date(2021, 5, 6), dt.date(1999, 12, 31)], name="d")
    )
    pushed(hub, df, "alone")
    assert_identical(hub.pull("alone"), df)


def test_appending_dates_to_dates(hub):
    first = pd.DataFrame({"day": objects([dt.date(2024, 1, 1), None]), "at": objects([dt.time(9), np.nan])})
    second = pd.DataFrame({"day": objects([pd.NA, dt.date(2024, 1, 3)]), "at": objects([dt.time(9, 0, 0, 1), pd.NaT])})
    pushed(hub, first, "log")
    pushed(hub, second, "log", if_exists="append")
    assert_identical(hub.pull("log"), pd.concat([first, second], ignore_index=True))


def test_appending_dates_where_strings_were_is_a_schema_mismatch(hub):
    pushed(hub, pd.DataFrame({"day": objects(["2024-01-01"])}), "text")
    with pytest.raises(SchemaMismatch) as err:
        hub.push(pd.DataFrame({"day": objects([dt.date(2024, 1, 1)])}), "text", if_exists="append")
    assert "'day'" in str(err.value) and "str values" in str(err.value) and "date values" in str(err.value)
    assert len(hub.versions("text")) == 1


def test_values_appended_to_a_column_that_held_none_take_its_place(hub):
    pushed(hub, pd.DataFrame({"day": objects([None, None])}), "empty")
    more = pd.DataFrame({"day": objects([dt.date(2024, 1, 1), None])})
    pushed(hub, more, "empty", if_exists="append")
    assert_identical(hub.pull("empty"), pd.DataFrame({"day": objects([None, None, dt.date(2024, 1, 1), None])}))


# ---------------------------------------------------------------------------------------
# What the tables hold, read with the databases' own drivers
# ---------------------------------------------------------------------------------------


async def _pg_rows(db_url: str, sql: str) -> list:
    import asyncpg

    con = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [tuple(r) for r in await con.fetch(sql)]
    finally:
        await con.close()


def test_sql_users_find_iso_text_on_sqlite_and_date_and_time_on_postgresql(hub, db_url):
    df = pd.DataFrame(
        {"day": objects([dt.date(2024, 3, 31), dt.date(5, 1, 2), None]), "at": objects([dt.time(10, 0, 0, 250_000), dt.time(10), None])}
    ).set_axis(pd.Index([dt.date(2020, 1, 1), dt.date(2020, 1, 2), dt.date(2020, 1, 3)], name="on"))
    version = pushed(hub, df, "sql")
    view = hub.info("sql").view_name
    table = version.table_name
    if hub.url.get_backend_name() == "sqlite":
        con = sqlite3.connect(sqlite_path(hub))
        try:
            stored = con.execute(
                f'SELECT typeof("day"), "day", typeof("at"), "at", "__dsn_index_0" FROM "{table}" ORDER BY "__dsn_row"'
            ).fetchall()
            shown = con.execute(f'SELECT "on", "day", "at" FROM "{view}" ORDER BY "on"').fetchall()
            later = con.execute(f'SELECT "day" FROM "{view}" WHERE "at" > \'10:00:00\'').fetchall()
        finally:
            con.close()
        assert stored == [
            ("text", "2024-03-31", "text", "10:00:00.250000", "2020-01-01"),
            ("text", "0005-01-02", "text", "10:00:00", "2020-01-02"),
            ("null", None, "null", None, "2020-01-03"),
        ]
        assert shown == [("2020-01-01", "2024-03-31", "10:00:00.250000"), ("2020-01-02", "0005-01-02", "10:00:00"), ("2020-01-03", None, None)]
        assert later == [("2024-03-31",)]
        return
    types = asyncio.run(
        _pg_rows(
            db_url,
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_name = '{table}' AND column_name IN ('day', 'at', '__dsn_index_0') ORDER BY column_name",
        )
    )
    assert types == [("__dsn_index_0", "date"), ("at", "time without time zone"), ("day", "date")]
    shown = asyncio.run(_pg_rows(db_url, f'SELECT "on", "day", "at", "day"::text, "at"::text FROM "{view}" ORDER BY "on"'))
    assert shown == [
        (dt.date(2020, 1, 1), dt.date(2024, 3, 31), dt.time(10, 0, 0, 250_000), "2024-03-31", "10:00:00.25"),
        (dt.date(2020, 1, 2), dt.date(5, 1, 2), dt.time(10), "0005-01-02", "10:00:00"),
        (dt.date(2020, 1, 3), None, None, None, None),
    ]


# ---------------------------------------------------------------------------------------
# Refused up front, naming the column
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ([dt.time(10, tzinfo=dt.UTC)], ["column 'c'", "time zone", "position 0", "naive"]),
        ([None, dt.time(1, fold=1)], ["column 'c'", "fold=1", "position 1", "fold=0"]),
        ([dt.date(2024, 1, 1), dt.time(1)], ["column 'c'", "mixes date and time"]),
        ([dt.date(2024, 1, 1), dt.datetime(2024, 1, 1)], ["column 'c'", "datetime.datetime(2024, 1, 1, 0, 0)", "pd.to_datetime"]),
        ([dt.date(2024, 1, 1), "2024-01-02"], ["column 'c'", "mixes date and str"]),
    ],
    ids=["tz-aware-time", "fold", "date-and-time", "date-and-datetime", "date-and-str"],
)
def test_refused_values_name_the_column(values, fragments):
    with pytest.raises(ValidationError) as err:
        encode(pd.DataFrame({"c": objects(values)}))
    for fragment in fragments:
        assert fragment in str(err.value)


def test_schema_diff_tells_dates_from_strings_and_times():
    def manifest(values: list) -> dict:
        return encode(pd.DataFrame({"c": objects(values)})).manifest

    dates = manifest([dt.date(2024, 1, 1)])
    assert schema_diff(dates, manifest([dt.date(1, 1, 1), None])) == ([], [], [])
    assert schema_diff(dates, manifest([None])) == ([], [], [])
    assert schema_diff(dates, manifest(["2024-01-01"])) == ([], [], [("c", "object (date values)", "object (str values)")])
    assert schema_diff(dates, manifest([dt.time(1)])) == ([], [], [("c", "object (date values)", "object (time values)")])


# ---------------------------------------------------------------------------------------
# The codec alone: rows and Arrow, generic and native storage
# ---------------------------------------------------------------------------------------

missing = st.sampled_from(MISSING)
times = st.times().map(lambda t: t.replace(fold=0))


def _codec_roundtrips(df: pd.DataFrame, db: sqlite3.Connection) -> None:
    check(db, df)  # a real SQLite table, and the encoder's own rows
    for native in (False, True):
        enc = encode(df, native_types=native)
        manifest = stored_manifest(enc)
        rows = enc.rows(0, enc.nrows)
        columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in enc.columns]
        assert_identical(decode(manifest, columns), df)
        half = enc.nrows // 2
        table = pa.Table.from_batches([enc.to_arrow(0, half), enc.to_arrow(half, enc.nrows)])
        assert_identical(decode_arrow(manifest, table), df)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    days=st.lists(st.dates() | missing, max_size=8),
    clocks=st.lists(times | missing, max_size=8),
    level=st.lists(st.dates() | st.none(), max_size=8),
)
def test_codec_roundtrip_property(db, days, clocks, level):
    n = min(len(days), len(clocks), len(level))
    index = pd.Index(objects(level[:n]), dtype=object, name="level")
    df = pd.DataFrame({"days": objects(days[:n]).to_numpy(), "clocks": objects(clocks[:n]).to_numpy()}, index=index)
    _codec_roundtrips(df, db)


def test_storage_types_and_arrow_types():
    df = pd.DataFrame({"d": objects([dt.date(2024, 3, 31), None]), "t": objects([dt.time(10, 0, 0, 250_000), None])})
    generic = encode(df)
    assert [(c.name, c.sql_type) for c in generic.columns] == [("d", "TEXT"), ("t", "TEXT")]
    assert generic.rows(0, 2) == [("2024-03-31", "10:00:00.250000"), (None, None)]
    native = encode(df, native_types=True)
    assert [(c.name, c.sql_type) for c in native.columns] == [("d", "DATE"), ("t", "TIME")]
    batch = native.to_arrow(0, 2)
    assert batch.schema.types == [pa.date32(), pa.time64("us")]
    assert batch.to_pylist() == [{"d": dt.date(2024, 3, 31), "t": dt.time(10, 0, 0, 250_000)}, {"d": None, "t": None}]
    assert native.manifest["data"][0]["object"] == "date" and native.manifest["data"][1]["object"] == "time"


def test_categories_of_dates_stay_iso_text():
    df = pd.DataFrame({"c": pd.Categorical([dt.date(2024, 1, 2), None, dt.date(2024, 1, 1)])})
    for native in (False, True):
        enc = encode(df, native_types=native)
        assert [c.sql_type for c in enc.columns] == ["TEXT"]
        manifest = stored_manifest(enc)
        columns = [list(c) for c in zip(*enc.rows(0, enc.nrows))]
        assert_identical(decode(manifest, columns), df)
        assert_identical(decode_arrow(manifest, enc.to_arrow(0, enc.nrows)), df)


@pytest.fixture
def db(tmp_path):
    con = sqlite3.connect(tmp_path / "codec.db")
    yield con
    con.close()
