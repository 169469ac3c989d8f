"""PostgreSQL's native column types: which values get them, what SQL users see, and appends that
mix them with the generic types, all against the real server."""

from __future__ import annotations

import datetime as dt
import decimal
import itertools

import numpy as np
import pandas as pd
import pytest
from frametools import assert_identical
from hubtools import execute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testenv import examples

from dsnotebook.store.backends.postgresql import time_codecs

pytestmark = pytest.mark.postgresql_only

D = decimal.Decimal


def _iso(values: list) -> pd.DatetimeIndex:
    return pd.to_datetime(values, format="ISO8601")


def column_types(hub, table: str) -> dict[str, str]:
    rows = execute(
        hub,
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_name = '{table}' ORDER BY ordinal_position",
    )
    return dict(rows)


def everything() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flag": [True, False, True],
            "maybe": pd.array([True, None, False], dtype="boolean"),
            "obj_bool": pd.Series([True, None, False], dtype=object),
            "price": pd.Series([D("1.50"), None, D("-0.0002")], dtype=object),
            "sci": pd.Series([D("1E+2"), D("7"), None], dtype=object),
            "doc": pd.Series([{"a": 1, "bb": [1.5, None, "x"]}, None, [1, {"k": True}]], dtype=object),
            "raw_doc": pd.Series([{"zz": 1, "a": 2}, [1e20], None], dtype=object),
            "when": _iso(["2020-01-01 00:00:00.000001", None, "1900-05-05"]),
            "when_ns": _iso(["2020-01-01 00:00:00.000000001", None, "1900-05-05"]),
            "when_paris": _iso(["2020-03-29 01:30", None, "2021-10-31 02:30"]).tz_localize("UTC").tz_convert("Europe/Paris"),
            "took": pd.to_timedelta(["1 day 3us", None, "-5s"]),
            "took_ns": pd.to_timedelta(["1ns", "2s", None]),
            "day": pd.Categorical(_iso(["2020-01-01", None, "2020-01-02"])),
        }
    ).set_index(pd.Index(_iso(["2001-01-01", "2001-01-02", "2001-01-03"]).tz_localize("UTC"), name="at"))


def test_values_get_native_types_where_those_hold_them_exactly(hub):
    df = everything()
    version = hub.push(df, "native").wait(timeout=60)
    assert column_types(hub, version.table_name) == {
        "__dsn_row": "bigint",
        "__dsn_index_0": "timestamp with time zone",
        "flag": "boolean",
        "maybe": "boolean",
        "obj_bool": "boolean",
        "price": "numeric",
        "sci": "text",  # numeric has no positive exponent: 1E+2 would come back as 100
        "doc": "jsonb",
        "raw_doc": "json",  # jsonb would reorder the keys and turn 1e+20 into an integer
        "when": "timestamp without time zone",
        "when_ns": "bigint",  # nanoseconds: PostgreSQL's timestamps stop at microseconds
        "when_paris": "timestamp with time zone",
        "took": "interval",
        "took_ns": "bigint",
        "day": "timestamp without time zone",
    }
    back = hub.pull("native")
    assert_identical(back, df)
    assert [str(v) for v in back["price"]] == ["1.50", "None", "-0.0002"]


def test_sql_users_see_the_values_in_their_native_form(hub):
    version = hub.push(everything(), "native").wait(timeout=60)
    rows = execute(
        hub,
        "SET LOCAL TIME ZONE 'UTC'",
        "SELECT flag, price::text, doc ->> 'a', when_paris::text, took::text, \"when\"::text "
        f"FROM {version.table_name} ORDER BY __dsn_row LIMIT 1",
    )
    # A Timedelta is an exact duration, so the interval holds hours, not calendar days: added to
    # a timestamptz across a change of clocks, "1 day" would mean 23 or 25 hours.
    assert rows == [(True, "1.50", "1", "2020-03-29 01:30:00+00", "24:00:00.000003", "2020-01-01 00:00:00.000001")]
    # Time arithmetic and JSON operators work on the stored columns as they are.
    assert execute(hub, f"SELECT count(*) FROM {version.table_name} WHERE \"when\" < '2000-01-01'") == [(1,)]
    assert execute(hub, f"SELECT count(*) FROM {version.table_name} WHERE doc @> '{{\"a\": 1}}'") == [(1,)]


def _parts(kind: str) -> list[pd.DataFrame]:
    """Three frames of one dtype whose values take different storage types."""
    if kind == "datetime":
        parts = [["2020-01-01 00:00:00.000001"], ["2020-01-01 00:00:00.000000007", None], ["1999-12-31"]]
        return [pd.DataFrame({"v": _iso(p).astype("datetime64[ns]")}) for p in parts]
    if kind == "datetime-tz":
        parts = [["2020-01-01 00:00:00.5"], ["2020-06-01 00:00:00.000000007"], [None, "2020-01-02"]]
        return [pd.DataFrame({"v": _iso(p).astype("datetime64[ns]").tz_localize("Europe/Paris")}) for p in parts]
    if kind == "timedelta":
        parts = [["1s", None], ["3ns"], ["-2 days 1us"]]
        return [pd.DataFrame({"v": pd.to_timedelta(p).astype("timedelta64[ns]")}) for p in parts]
    if kind == "decimal":
        parts = [[D("1.10"), None], [D("1E+3")], [D("-0.5")]]
    elif kind == "json":
        parts = [[{"a": 1}], [{"b": 1, "a": 2}, None], [[1.5]]]
    else:
        raise AssertionError(kind)
    return [pd.DataFrame({"v": pd.Series(p, dtype=object)}) for p in parts]


@pytest.mark.parametrize("kind", ["datetime", "datetime-tz", "timedelta", "decimal", "json"])
def test_appends_mix_native_and_general_storage_of_one_dtype(hub, kind):
    parts = _parts(kind)
    for i, part in enumerate(parts):
        hub.push(part.reset_index(drop=True), "mixed", if_exists="append").wait(timeout=60)
        expected = pd.concat(parts[: i + 1], ignore_index=True)
        assert_identical(hub.pull("mixed"), expected)
    for version in (1, 2):
        assert_identical(hub.pull("mixed", version=version), pd.concat(parts[:version], ignore_index=True))


def test_versions_stored_with_the_generic_types_still_read_and_append(hub):
    """A dataset pushed before native types existed (bool as 0/1, times as integer counts)."""
    df = everything()
    uploads = hub._async._uploads
    uploads._native_types = False  # what earlier releases wrote on PostgreSQL too
    try:
        old = hub.push(df, "legacy").wait(timeout=60)
    finally:
        uploads._native_types = True
    assert set(column_types(hub, old.table_name).values()) <= {"bigint", "double precision", "text", "bytea"}
    hub.push(df, "legacy", if_exists="append").wait(timeout=60)
    assert_identical(hub.pull("legacy"), pd.concat([df, df]))
    assert_identical(hub.pull("legacy", version=1), df)


_names = itertools.count()


@st.composite
def time_parts(draw):
    unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
    kind = draw(st.sampled_from(["datetime", "datetime-tz", "timedelta"]))
    per_unit = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    fine = draw(st.booleans())  # a whole number of microseconds, or any nanosecond
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 4))
        ints = draw(st.lists(st.none() | st.integers(-(2**62), 2**62), min_size=n, max_size=n))
        if not fine:
            ints = [None if v is None else v - v % 1000 for v in ints]
        i8 = np.array([np.iinfo(np.int64).min if v is None else v // per_unit for v in ints], dtype=np.int64)
        array = pd.array(i8.view(f"{'m' if kind == 'timedelta' else 'M'}8[{unit}]"))
        if kind == "datetime-tz":
            array = array.tz_localize("UTC").tz_convert("America/St_Johns")
        parts.append(pd.DataFrame({"t": array}))
    return parts


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(parts=time_parts())
def test_time_values_of_every_unit_and_precision_round_trip_through_appends(hub, parts):
    name = f"times-{next(_names)}"
    for part in parts:
        hub.push(part, name, if_exists="append").wait(timeout=60)
    assert_identical(hub.pull(name), pd.concat(parts, ignore_index=True))


def test_the_time_codecs_are_put_back_however_the_block_ends(hub):
    engine = hub._async.engine
    paris_new_year = dt.datetime(2019, 12, 31, 23, tzinfo=dt.timezone.utc)

    async def fail_inside_a_transaction() -> list:
        seen = []
        async with engine.begin() as conn:
            await conn.exec_driver_sql("SELECT 1")
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            async with time_codecs(raw, {"TIMESTAMPTZ", "INTERVAL"}):
                seen.append(await driver.fetchval("SELECT TIMESTAMPTZ '2020-01-01 00:00+01'"))
                seen.append(await driver.fetchval("SELECT INTERVAL '1 day 2 us'"))
            with pytest.raises(Exception, match="division by zero"):
                async with time_codecs(raw, {"TIMESTAMPTZ"}):
                    await driver.execute("SELECT 1 / 0")
            await conn.rollback()
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            seen.append(await raw.driver_connection.fetchval("SELECT TIMESTAMPTZ '2020-01-01 00:00+01'"))
        return seen

    us_since_2000, interval_us, after = hub._portal.run(fail_inside_a_transaction())
    assert us_since_2000 == (paris_new_year - dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
    assert interval_us == 86_400_000_002
    assert after == paris_new_year
    # The catalog's own timestamps still come back as datetimes after pushes and pulls of times.
    hub.push(everything(), "t").wait(timeout=60)
    hub.pull("t")
    assert isinstance(hub.versions("t")["created_at"].iloc[0], pd.Timestamp)


def test_a_thousand_boolean_columns_fit_where_a_thousand_numbers_would_not(hub):
    flags = pd.DataFrame(np.zeros((2, 1100), dtype=bool))
    hub.push(flags, "flags").wait(timeout=60)
    assert_identical(hub.pull("flags"), flags)
