"""The codec's Arrow path: ``EncodedFrame.to_arrow`` and ``decode_arrow``.

- ``to_arrow`` gives, value for value, what ``rows()`` gives, in the Arrow types of
  ``ARROW_TYPES``, for every explicit case and every generated frame of tests/test_codec.py, on
  both dialects; ``decode_arrow`` turns it back into the identical frame.
- Real round trips through ADBC: SQLite (ingest, then ``fetch_arrow_table``), and PostgreSQL's
  native types where a server answers (see conftest.py).
- ``decode_arrow`` takes the other Arrow types readers give for each storage type.
- The hot path makes no Python object per value (measured as memory, not time: a Python int or
  float costs 32 bytes or more per value; Arrow's own buffers are not traced at all).
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import tracemalloc

import adbc_driver_sqlite.dbapi
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from frametools import STR, assert_identical, frames
from hypothesis import HealthCheck, given, settings
from test_codec import CASES, quote, select_frame, stored_manifest

from dsnotebook._compat import string_dtype
from dsnotebook.errors import DatasetError, ValidationError
from dsnotebook.store.codec import (
    ARROW_TYPES,
    ROW_ID,
    EncodedFrame,
    decode_arrow,
    select,
)
from dsnotebook.store.codec import encode as _encode

# Generic storage (as on SQLite), and PostgreSQL's native types.
DIALECTS = ("sqlite", "postgresql")


def encode(df, dialect: str = "sqlite") -> EncodedFrame:
    return _encode(df, native_types=dialect == "postgresql")

D = decimal.Decimal
_tables = itertools.count()


# ---------------------------------------------------------------------------------------
# to_arrow against rows(), and decode_arrow of it
# ---------------------------------------------------------------------------------------


def comparable(value, sql_type: str):
    """A stored value as (type, repr), so that NaN equals NaN and -0.0 differs from 0.0.

    Where the two producers differ only in form: rows() gives bools stored as INTEGER as
    Python bools (Arrow: 0 and 1), NUMERIC as Decimals (Arrow: their text), and aware
    datetimes in pandas' UTC (Arrow: its own tzinfo object for UTC).
    """
    if value is None:
        return None
    if sql_type == "INTEGER" and type(value) is bool:
        value = int(value)
    if sql_type == "NUMERIC" and type(value) is D:
        value = str(value)
    if type(value) is dt.datetime and value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return type(value), repr(value)


def assert_same_values(enc: EncodedFrame, start: int, stop: int) -> None:
    batch = enc.to_arrow(start, stop)
    assert batch.schema == enc.arrow_schema()
    assert batch.schema.names == [c.name for c in enc.columns]
    types = [c.sql_type for c in enc.columns]
    got = [tuple(comparable(v, t) for v, t in zip(row, types)) for row in zip(*batch.to_pydict().values())]
    expected = [tuple(comparable(v, t) for v, t in zip(row, types)) for row in enc.rows(start, stop)]
    assert got == expected


def check_arrow(df: pd.DataFrame, dialect: str) -> EncodedFrame:
    enc = encode(df, dialect=dialect)
    n = enc.nrows
    half = n // 2
    assert_same_values(enc, 0, n)
    assert_same_values(enc, half, n + 5)  # starts mid-frame, clipped at the end
    manifest = stored_manifest(enc)
    batch = enc.to_arrow(-3, n, row_ids=True)
    assert batch.schema.field(0) == pa.field(ROW_ID, pa.int64())
    assert batch.column(0).to_pylist() == list(range(1, n + 1))
    assert_identical(decode_arrow(manifest, batch), df)
    # Two chunks per column, as a reader gives them; the row numbers are not needed.
    table = pa.Table.from_batches([enc.to_arrow(0, half), enc.to_arrow(half, n)])
    assert_identical(decode_arrow(manifest, table), df)
    return enc


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("make", list(CASES.values()), ids=list(CASES))
def test_to_arrow_matches_rows_and_decodes(make, dialect):
    check_arrow(make(), dialect)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=frames())
def test_to_arrow_property(df):
    for dialect in DIALECTS:
        check_arrow(df, dialect)


def test_arrow_types_of_each_storage_type():
    df = pd.DataFrame(
        {
            "i": np.array([1, 2], dtype="int8"),
            "f": np.array([0.5, np.nan], dtype="float32"),
            "s": pd.Series(["a", None], dtype=STR),
            "o": pd.Series([b"\x00", None], dtype=object),
            "b": [True, False],
            "d": pd.to_datetime(["2020-01-01", None]),
            "z": pd.to_datetime(["2020-01-01", None]).tz_localize("Europe/Paris"),
            "t": pd.to_timedelta([1, None], unit="s"),
            "n": pd.Series([D("1.50"), None], dtype=object),
            "j": pd.Series([{"b": 1, "a": 2}, None], dtype=object),
            "k": pd.Series([[1], None], dtype=object),
        }
    )
    sqlite = encode(df).arrow_schema()
    assert [str(t) for t in sqlite.types] == [
        "int64", "double", "large_string", "large_binary", "int64", "int64", "int64", "int64",
        "large_string", "large_string", "large_string",
    ]  # fmt: skip
    postgresql = encode(df, dialect="postgresql")
    assert [c.sql_type for c in postgresql.columns][4:] == [
        "BOOLEAN", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL", "NUMERIC", "JSON", "JSONB",
    ]  # fmt: skip
    batch = postgresql.to_arrow(0, 2)
    assert batch.schema.types[4:] == [ARROW_TYPES[c.sql_type] for c in postgresql.columns[4:]]
    assert batch.column("z").type == pa.timestamp("us", tz="UTC")
    # Microseconds since the Unix epoch (Paris was UTC+1 on 2020-01-01), not since 2000.
    assert batch.column("z").cast(pa.int64()).to_pylist() == [1_577_833_200_000_000, None]
    assert batch.column("d").cast(pa.int64()).to_pylist() == [1_577_836_800_000_000, None]
    assert batch.column("t").to_pylist() == [dt.timedelta(seconds=1), None]
    assert batch.column("n").to_pylist() == ["1.50", None]
    assert batch.column("j").to_pylist() == ['{"b":1,"a":2}', None]


def test_to_arrow_makes_nan_null_and_widens_bools():
    df = pd.DataFrame(
        {
            "f": [np.nan, 1.0],
            "g": pd.arrays.FloatingArray(np.array([np.nan, 0.0]), np.array([False, True])),
            "b": [True, False],
        }
    )
    batch = encode(df).to_arrow(0, 2)
    # NaN is NULL on every database (as SQLite stores it); the marks tell NaN from pd.NA.
    assert batch.column("f").to_pylist() == [None, 1.0]
    assert batch.column("g").is_null().to_pylist() == [True, True]
    assert batch.column("__dsn_missing_1").to_pylist() == [2, 3]
    assert batch.column("b").to_pylist() == [1, 0]


def test_to_arrow_clips_bounds():
    enc = encode(pd.DataFrame({"a": [1, 2, 3], "s": pd.Series(["x", None, "z"], dtype=STR)}))
    assert enc.to_arrow(2, 9).to_pydict() == {"a": [3], "s": ["z"]}
    assert enc.to_arrow(-5, 1).to_pydict() == {"a": [1], "s": ["x"]}
    empty = enc.to_arrow(3, 5, row_ids=True)
    assert empty.num_rows == 0
    assert empty.schema.names == [ROW_ID, "a", "s"]


def test_pyarrow_strings_are_handed_over_without_copying():
    s = pd.Series(["ab", None, "c"] * 10, dtype=pd.StringDtype("pyarrow"))
    column = encode(pd.DataFrame({"s": s})).to_arrow(3, 30).column(0)
    data_buffer = s.array.__arrow_array__().chunk(0).buffers()[2]
    assert column.buffers()[2].address == data_buffer.address


@pytest.mark.parametrize("dialect", DIALECTS)
def test_chunked_arrow_strings_across_chunk_boundaries(dialect):
    parts = [pd.Series(["a\x00", None, "b"], dtype=STR), pd.Series(["c", None], dtype=STR)]
    df = pd.DataFrame({"s": pd.concat(parts, ignore_index=True), "c": pd.Categorical(["x", "y", None, "x", "y"])})
    assert df["s"].array.__arrow_array__().num_chunks == 2
    enc = check_arrow(df, dialect)
    for start, stop in [(1, 4), (3, 5), (0, 2)]:
        assert_same_values(enc, start, stop)


# ---------------------------------------------------------------------------------------
# decode_arrow: what readers give
# ---------------------------------------------------------------------------------------


def replace_column(batch: pa.RecordBatch, name: str, column: pa.Array) -> pa.Table:
    table = pa.Table.from_batches([batch])
    return table.set_column(table.schema.get_field_index(name), name, column)


def month_day_nano(us: list) -> pa.Array:
    """What ADBC's PostgreSQL reader gives for INTERVAL (here with whole days split off)."""
    values = [None if v is None else pa.MonthDayNano([0, v // 86_400_000_000, v % 86_400_000_000 * 1000]) for v in us]
    return pa.array(values, type=pa.month_day_nano_interval())


READER_TYPES = {
    # name: (make the frame, dialect, column, how a reader might give that column)
    "int32": (
        lambda: pd.DataFrame({"x": np.array([1, -7], dtype="int16")}),
        "sqlite",
        "x",
        lambda c: c.cast(pa.int32()),
    ),
    "uint8-bool": (lambda: pd.DataFrame({"x": [True, False]}), "sqlite", "x", lambda c: c.cast(pa.uint8())),
    "bool-as-int8": (lambda: pd.DataFrame({"x": [True, False]}), "postgresql", "x", lambda c: c.cast(pa.int8())),
    "string": (
        lambda: pd.DataFrame({"x": pd.Series(["a", None], dtype=STR)}),
        "sqlite",
        "x",
        lambda c: c.cast(pa.string()),
    ),
    "string-view": (
        lambda: pd.DataFrame({"x": pd.Series(["a", None], dtype="string[python]")}),
        "sqlite",
        "x",
        lambda c: c.cast(pa.string_view()),
    ),
    "dictionary": (
        lambda: pd.DataFrame({"x": pd.Categorical(["b", "a", None, "b"])}),
        "sqlite",
        "x",
        lambda c: c.dictionary_encode(),
    ),
    "binary": (
        lambda: pd.DataFrame({"x": pd.Series([b"\x00", None], dtype=object)}),
        "sqlite",
        "x",
        lambda c: c.cast(pa.binary()),
    ),
    "text-with-nul-binary": (
        lambda: pd.DataFrame({"x": pd.Series(["a\x00b", None], dtype=STR)}),
        "postgresql",
        "x",
        lambda c: c.cast(pa.binary()),
    ),
    "null-type": (
        lambda: pd.DataFrame({"x": pd.Series([None, None], dtype=STR)}),
        "sqlite",
        "x",
        lambda c: pa.nulls(2),
    ),
    "all-null-int64-for-text": (
        lambda: pd.DataFrame({"x": pd.Series([None, None], dtype=object)}),
        "sqlite",
        "x",
        lambda c: pa.nulls(2, pa.int64()),
    ),
    "all-null-int64-for-real": (
        lambda: pd.DataFrame({"x": [np.nan, np.nan]}),
        "sqlite",
        "x",
        lambda c: pa.nulls(2, pa.int64()),
    ),
    "timestamp-ns": (
        lambda: pd.DataFrame({"x": pd.to_datetime(["2021-03-28 01:30:00.123456", None])}),
        "postgresql",
        "x",
        lambda c: c.cast(pa.timestamp("ns")),
    ),
    "timestamp-ns-dictionary": (
        lambda: pd.DataFrame({"x": pd.to_datetime(["2021-03-28 01:30", None, "2021-03-28 01:30"])}),
        "postgresql",
        "x",
        lambda c: c.cast(pa.timestamp("ns")).dictionary_encode(),
    ),
    "timestamp-int64": (
        lambda: pd.DataFrame({"x": pd.to_datetime(["1969-12-31 23:59:59.999999", None]).as_unit("us")}),
        "postgresql",
        "x",
        lambda c: c.cast(pa.int64()),
    ),
    "timestamptz-other-zone-ms": (
        lambda: pd.DataFrame(
            {"x": pd.to_datetime(["2021-03-28 01:30", None]).tz_localize("UTC").tz_convert("Asia/Tokyo")}
        ),
        "postgresql",
        "x",
        lambda c: c.cast(pa.timestamp("ms", tz="America/St_Johns")),
    ),
    "timestamptz-naive": (
        lambda: pd.DataFrame({"x": pd.to_datetime(["2021-03-28 01:30", None]).tz_localize("Europe/Paris")}),
        "postgresql",
        "x",
        lambda c: c.cast(pa.timestamp("us")),
    ),
    "category-timestamptz": (
        lambda: pd.DataFrame(
            {"x": pd.Categorical(pd.to_datetime(["2021-01-01", None, "2020-01-01"]).tz_localize("UTC"))}
        ),
        "postgresql",
        "x",
        lambda c: c.cast(pa.timestamp("ns", tz="UTC")),
    ),
    "interval-month-day-nano": (
        lambda: pd.DataFrame(
            {"x": pd.to_timedelta(["3 days 00:00:00.000001", None, "-1 days 23:00:00"]).as_unit("us")}
        ),
        "postgresql",
        "x",
        lambda c: month_day_nano(c.cast(pa.int64()).to_pylist()),
    ),
    "interval-duration-s": (
        lambda: pd.DataFrame({"x": pd.to_timedelta(["1 day", None]).as_unit("s")}),
        "postgresql",
        "x",
        lambda c: c.cast(pa.duration("s")),
    ),
    "interval-int64": (
        lambda: pd.DataFrame({"x": pd.to_timedelta([-1, None], unit="us").as_unit("us")}),
        "postgresql",
        "x",
        lambda c: c.cast(pa.int64()),
    ),
    "numeric-decimal128": (
        lambda: pd.DataFrame({"x": pd.Series([D("1.50"), None, D("-0.25")], dtype=object)}),
        "postgresql",
        "x",
        lambda c: pa.array([D("1.50"), None, D("-0.25")], type=pa.decimal128(10, 2)),
    ),
    "numeric-decimal256": (
        lambda: pd.DataFrame({"x": pd.Series([D("1"), None], dtype=object)}),
        "postgresql",
        "x",
        lambda c: pa.array([D("1"), None], type=pa.decimal256(40, 0)),
    ),
    "category-numeric-string": (
        lambda: pd.DataFrame(
            {"x": pd.Categorical([D("1.0"), D("2.50"), None], categories=pd.Index([D("2.50"), D("1.0")], dtype=object))}
        ),
        "postgresql",
        "x",
        lambda c: c.cast(pa.string()),
    ),
    "jsonb-extension": (
        lambda: pd.DataFrame({"x": pd.Series([{"a": 1, "bb": [2]}, None], dtype=object)}),
        "postgresql",
        "x",
        # jsonb's own text, spaced as PostgreSQL writes it, under ADBC's arrow.json type.
        lambda c: pa.array(['{"a": 1, "bb": [2]}', None], type=pa.json_()),
    ),
    "marks-int32": (
        lambda: pd.DataFrame({"x": pd.Series(["a", None, np.nan], dtype=object)}),
        "sqlite",
        "__dsn_missing_0",
        lambda c: c.cast(pa.int32()),
    ),
}


@pytest.mark.parametrize("make, dialect, column, convert", list(READER_TYPES.values()), ids=list(READER_TYPES))
def test_decode_arrow_takes_what_readers_give(make, dialect, column, convert):
    df = make()
    enc = encode(df, dialect=dialect)
    batch = enc.to_arrow(0, enc.nrows)
    table = replace_column(batch, column, convert(batch.column(column)))
    assert_identical(decode_arrow(stored_manifest(enc), table), df)


def test_decode_arrow_finds_columns_by_name():
    df = select_frame()
    enc = encode(df)
    batch = enc.to_arrow(0, enc.nrows, row_ids=True)
    shuffled = pa.Table.from_batches([batch]).select(batch.schema.names[::-1])
    assert_identical(decode_arrow(stored_manifest(enc), shuffled), df)


@pytest.mark.parametrize(
    "labels",
    [pytest.param(["a"], id="one"), pytest.param(["c", "a"], id="reordered"), pytest.param([7, "b"], id="marks")],
)
def test_decode_arrow_reduced_manifest_and_limit(labels):
    df = select_frame()
    enc = encode(df)
    names, reduced = select(stored_manifest(enc), labels)
    table = pa.Table.from_batches([enc.to_arrow(0, enc.nrows)]).select(names)
    assert_identical(decode_arrow(reduced, table), df[labels])
    assert_identical(decode_arrow(reduced, table.slice(0, 2)), df[labels].iloc[:2])


def test_decode_arrow_no_columns_reads_nrows():
    df = pd.DataFrame({"a": [1, 2, 3]}, index=pd.RangeIndex(4, 10, 2, name="r"))
    names, reduced = select(encode(df).manifest, [])
    assert names == []
    assert_identical(decode_arrow({**reduced, "nrows": 3}, pa.table({})), df[[]])


def test_decode_arrow_errors():
    enc = encode(pd.DataFrame({"a": [1, 2], "c": pd.Categorical(["x", "y"])}))
    manifest = stored_manifest(enc)
    batch = enc.to_arrow(0, 2)
    with pytest.raises(ValidationError, match=r"without the column\(s\) 'c'.*the table has \['a'\]"):
        decode_arrow(manifest, batch.select(["a"]))
    with pytest.raises(ValidationError, match="'a' 2 times"):
        decode_arrow(manifest, pa.table([batch.column(0), batch.column(0), batch.column(1)], names=["a", "a", "c"]))
    with pytest.raises(ValidationError, match="pyarrow Table or RecordBatch, got dict"):
        decode_arrow(manifest, {"a": [1, 2]})
    with pytest.raises(DatasetError, match="'zzz' is not one of"):
        decode_arrow(manifest, replace_column(batch, "c", pa.array(["x", "zzz"], type=pa.large_string())))
    with pytest.raises(DatasetError, match="column 'a': NULL stored in a column of dtype int64"):
        decode_arrow(manifest, replace_column(batch, "a", pa.array([1, None])))
    with pytest.raises(DatasetError, match="column 'a': stored values of Arrow type string cannot be read as INTEGER"):
        decode_arrow(manifest, replace_column(batch, "a", pa.array(["1", "2"])))
    with pytest.raises(DatasetError, match="column 'a': stored values of Arrow type double cannot be read as INTEGER"):
        decode_arrow(manifest, replace_column(batch, "a", pa.array([1.0, 2.0])))
    with pytest.raises(DatasetError, match="format 99"):
        decode_arrow({**manifest, "format": 99}, batch)
    months = encode(pd.DataFrame({"t": pd.to_timedelta([1], unit="s")}), dialect="postgresql")
    interval = pa.array([pa.MonthDayNano([1, 0, 0])], type=pa.month_day_nano_interval())
    with pytest.raises(DatasetError, match="counts months"):
        decode_arrow(months.manifest, pa.table({"t": interval}))


def test_decoded_frame_is_writable():
    df = pd.DataFrame({"i": [1, 2], "f": [0.5, 1.5], "d": pd.to_datetime(["2020-01-01", None])})
    enc = encode(df)
    out = decode_arrow(enc.manifest, enc.to_arrow(0, 2))
    out.loc[0, "i"] = 7
    out.loc[1, "f"] = -1.0
    assert out["i"].tolist() == [7, 2] and out["f"].tolist() == [0.5, -1.0]


# ---------------------------------------------------------------------------------------
# Through ADBC into SQLite and back
# ---------------------------------------------------------------------------------------
#
# What ADBC's SQLite driver (1.13) does, found here:
# - Ingest maps int64 to INTEGER, double to REAL, (large_)string to TEXT and (large_)binary to
#   BLOB, and binds a NaN as NULL (as SQLite stores it); it refuses duration ("unsupported
#   type") and writes timestamps as ISO text, so only the generic SQLite storage goes this way.
# - The reader infers each column's Arrow type from the values in its first batch of rows
#   (``adbc.sqlite.query.batch_rows``, 1024 by default), not from the declared type. A column
#   that is NULL throughout that batch becomes int64 (decode_arrow takes an all-NULL column of
#   any type); one that mixes INTEGER and REAL values becomes double, INTEGER and TEXT becomes
#   string (the integers as their text), TEXT and BLOB becomes binary. A later batch holding
#   another kind of value than the first one fails the read with "Type mismatch in column 0:
#   expected INT64 but got DOUBLE" (or "STRING/BINARY"): a REAL, TEXT or BLOB column whose
#   first 1024 rows are all NULL cannot be read with the default batch size. A reader must
#   therefore make the batch cover the leading NULLs; here it covers the whole table.


@pytest.fixture
def adbc(tmp_path):
    con = adbc_driver_sqlite.dbapi.connect(str(tmp_path / "arrow.db"))
    yield con
    con.close()


def adbc_write(con, enc: EncodedFrame) -> str:
    """Create a table from ``enc`` with ADBC's bulk ingest, in two chunks; return its name."""
    table = f"t{next(_tables)}"
    half = enc.nrows // 2
    with con.cursor() as cur:
        cur.adbc_ingest(table, enc.to_arrow(0, half, row_ids=True), mode="create")
        cur.adbc_ingest(table, enc.to_arrow(half, enc.nrows, row_ids=True), mode="append")
    con.commit()
    return table


def adbc_read(
    con, table: str, names: list[str], *, limit: int | None = None, batch_rows: int | None = None
) -> pa.Table:
    sql = f"SELECT {', '.join(quote(n) for n in [ROW_ID, *names])} FROM {table} ORDER BY rowid"
    if limit is not None:
        sql += f" LIMIT {limit}"
    with con.cursor() as cur:
        if batch_rows is not None:
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
        cur.execute(sql)
        return cur.fetch_arrow_table()


def adbc_roundtrip(con, df: pd.DataFrame) -> pd.DataFrame:
    enc = encode(df)
    table = adbc_write(con, enc)
    read = adbc_read(con, table, [c.name for c in enc.columns], batch_rows=max(1, enc.nrows))
    return decode_arrow(stored_manifest(enc), read)


@pytest.mark.parametrize("make", list(CASES.values()), ids=list(CASES))
def test_adbc_sqlite_roundtrip(adbc, make):
    df = make()
    assert_identical(adbc_roundtrip(adbc, df), df)


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(df=frames())
def test_adbc_sqlite_roundtrip_property(adbc, df):
    assert_identical(adbc_roundtrip(adbc, df), df)


def test_adbc_sqlite_leading_nulls_and_several_batches(adbc):
    n = 4_000
    lead = 2_000  # more than a default batch of NULLs before the first value
    floats = np.full(n, np.nan)
    floats[lead:] = np.arange(n - lead) / 4
    text = pd.Series([None] * lead + [f"s{i}" for i in range(n - lead)], dtype=STR)
    df = pd.DataFrame(
        {
            "f": floats,
            "s": text,
            "o": pd.Series([None] * lead + [b"\x00"] * (n - lead), dtype=object),
            "n": pd.array([None] * lead + list(range(n - lead)), dtype="Int64"),
            "c": pd.Categorical([None] * lead + ["a", "b"] * ((n - lead) // 2)),
            "i": np.arange(n),
        }
    )
    df.index = pd.Index(np.arange(n) * 2, name="k")
    enc = encode(df)
    table = adbc_write(adbc, enc)
    names = [c.name for c in enc.columns]
    assert_identical(decode_arrow(stored_manifest(enc), adbc_read(adbc, table, names, batch_rows=n)), df)
    # With values from the first row on, the default batches come back as several chunks.
    values = df.iloc[lead:].reset_index(drop=True)
    enc = encode(values)
    read = adbc_read(adbc, adbc_write(adbc, enc), [c.name for c in enc.columns])
    assert read.column(1).num_chunks > 1
    assert_identical(decode_arrow(stored_manifest(enc), read), values)


def test_adbc_sqlite_select_and_limit(adbc):
    df = select_frame()
    enc = encode(df)
    table = adbc_write(adbc, enc)
    names, reduced = select(stored_manifest(enc), ["b", 7])
    assert_identical(decode_arrow(reduced, adbc_read(adbc, table, names)), df[["b", 7]])
    all_names = [c.name for c in enc.columns]
    assert_identical(decode_arrow(stored_manifest(enc), adbc_read(adbc, table, all_names, limit=2)), df.iloc[:2])


# ---------------------------------------------------------------------------------------
# Through ADBC into PostgreSQL's native types and back (where a server answers)
# ---------------------------------------------------------------------------------------

#: Column types of a PostgreSQL table for each storage type (the backends own the real DDL).
PG_DDL = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "TEXT": "TEXT", "BLOB": "BYTEA"}


@pytest.fixture
def adbc_pg(pg_database):
    import adbc_driver_postgresql.dbapi
    from testenv import PG_SERVER

    con = adbc_driver_postgresql.dbapi.connect(PG_SERVER.rsplit("/", 1)[0] + "/" + pg_database)
    yield con
    con.rollback()
    con.close()


PG_CASES = {
    name: CASES[name]
    for name in [
        "bool",
        "boolean-NA",
        "float64",
        "Float64-NaN-and-NA",
        "str-default",
        "string-pyarrow-NA",
        "category-datetime-tz",
        "category-decimal",
        "category-bool",
        "datetime-us",
        "datetime-s",
        "datetime-ns",
        "datetime-Paris-DST",
        "datetime-fixed-offset",
        "timedelta-s",
        "timedelta-us",
        "object-decimal",
        "object-json",
        "object-bool",
        "mixed-frame",
        "index-datetime-tz-freq",
        "index-multi",
        "empty-typed",
    ]
}


@pytest.mark.parametrize("make", list(PG_CASES.values()), ids=list(PG_CASES))
def test_adbc_postgresql_native_roundtrip(adbc_pg, make):
    df = make()
    enc = encode(df, dialect="postgresql")
    table = f"t{next(_tables)}"
    stage = f"{table}_stage"
    columns = [quote(c.name) for c in enc.columns]
    ddl = ", ".join(f"{name} {PG_DDL.get(c.sql_type, c.sql_type)}" for name, c in zip(columns, enc.columns))
    # NUMERIC and JSON travel as text (ADBC writes no text into numeric or json) and are cast in SQL.
    casts = ", ".join(f"{name}::{PG_DDL.get(c.sql_type, c.sql_type)}" for name, c in zip(columns, enc.columns))
    with adbc_pg.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE {table} ({quote(ROW_ID)} BIGINT, {ddl})")
        cur.adbc_ingest(stage, enc.to_arrow(0, enc.nrows, row_ids=True), mode="create", temporary=True)
        cur.execute(f"INSERT INTO {table} SELECT {quote(ROW_ID)}, {casts} FROM {stage}")
        cur.execute(f"SELECT * FROM {table} ORDER BY {quote(ROW_ID)}")
        read = cur.fetch_arrow_table()
    assert_identical(decode_arrow(stored_manifest(enc), read), df)


# ---------------------------------------------------------------------------------------
# The hot path makes no Python object per value
# ---------------------------------------------------------------------------------------

ROWS = 200_000
COMMON = (
    "int64",
    "float64",
    "float64-nan",
    "str",
    "str-python",
    "category",
    "bool",
    "datetime64[ns]",
    "datetime64[us, Paris]",
    "timedelta64[us]",
    "Int64-NA",
    "boolean-NA",
    "float64-negzero",
)


@pytest.fixture(scope="module")
def common() -> dict:
    """A column of each common dtype, ROWS long, with missing values where the dtype has them."""
    rng = np.random.default_rng(7)
    with_nan = rng.random(ROWS)
    with_nan[rng.random(ROWS) < 0.1] = np.nan
    with_na = pd.array(rng.integers(-(10**12), 10**12, ROWS), dtype="Int64")
    with_na[rng.random(ROWS) < 0.1] = pd.NA
    words = np.array([f"word{i}" for i in range(1000)] + [None], dtype=object)
    columns = {
        "int64": rng.integers(-(10**12), 10**12, ROWS),
        "float64": rng.random(ROWS),
        "float64-nan": with_nan,
        "str": pd.Series(words[rng.integers(0, 1001, ROWS)], dtype=STR),
        "str-python": pd.Series(words[rng.integers(0, 1001, ROWS)], dtype=string_dtype("python", "nan")),
        "category": pd.Categorical.from_codes(rng.integers(-1, 50, ROWS), categories=[f"c{i}" for i in range(50)]),
        "bool": rng.random(ROWS) < 0.5,
        "datetime64[ns]": pd.Series(rng.integers(0, 2**60, ROWS).view("M8[ns]")),
        "datetime64[us, Paris]": pd.Series(rng.integers(0, 2**52, ROWS).view("M8[us]"))
        .dt.tz_localize("UTC")
        .dt.tz_convert("Europe/Paris"),
        "timedelta64[us]": pd.Series(rng.integers(-(2**52), 2**52, ROWS).view("m8[us]")),
        "Int64-NA": with_na,
        "boolean-NA": pd.array(np.where(rng.random(ROWS) < 0.1, None, rng.random(ROWS) < 0.5), dtype="boolean"),
        "float64-negzero": np.where(rng.random(ROWS) < 0.5, -0.0, 1.5),
    }
    assert tuple(columns) == COMMON
    return columns


def traced_peak(fn) -> tuple[object, int, int]:
    """``fn()``, and the peak and the end size of the Python and NumPy memory it took.

    tracemalloc sees Python objects and NumPy's buffers, not Arrow's memory pool, so Arrow
    arrays cost nothing here; a Python int or float costs 24 or 28 bytes, plus 8 for its
    place in a list.
    """
    was_tracing = tracemalloc.is_tracing()  # PYTHONTRACEMALLOC may have started it already
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        out = fn()
        end, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return out, peak - before, end - before


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", COMMON)
def test_hot_path_makes_no_python_object_per_value(common, name, dialect):
    df = pd.DataFrame({"x": common[name]})
    enc = encode(df, dialect=dialect)
    manifest = stored_manifest(enc)
    batch, peak, _ = traced_peak(lambda: enc.to_arrow(0, ROWS))
    assert peak < 24 * ROWS, f"to_arrow took {peak / ROWS:.1f} bytes per row"
    out, peak, end = traced_peak(lambda: decode_arrow(manifest, batch))
    # What the frame keeps (8 bytes a row for int64, a str object per row for Python storage)
    # is the result; only the working memory on top of it counts.
    assert peak - end < 24 * ROWS, f"decode_arrow took {(peak - end) / ROWS:.1f} bytes per row"
    assert_identical(out, df)


def test_common_dtypes_round_trip_in_chunks(common):
    df = pd.DataFrame(common)
    enc = encode(df)
    step = 65_536
    table = pa.Table.from_batches([enc.to_arrow(start, start + step) for start in range(0, ROWS, step)])
    assert_identical(decode_arrow(json.loads(json.dumps(enc.manifest)), table), df)
