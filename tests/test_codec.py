"""Round trips through the dtype codec and a real SQLite file, plus its checks and helpers.

Every round trip encodes a frame, writes its rows into a SQLite table in two chunks, reads
them back, passes the manifest through JSON text (as the catalog stores it) and decodes.
The result must equal the input exactly: values, dtypes, index, labels, and for object
columns each cell's type and repr.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import sqlite3
import zoneinfo

import dateutil.tz
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from testenv import examples

from dsnotebook import _compat as compat
from dsnotebook._compat import string_dtype
from dsnotebook.errors import ValidationError
from dsnotebook.store import codec
from frametools import STR, assert_identical, cells, frames

from dsnotebook.store.codec import SQL_TYPES, EncodedFrame, decode, encode, schema, schema_diff, select

D = decimal.Decimal
PARIS = "Europe/Paris"
_tables = itertools.count()


# ---------------------------------------------------------------------------------------
# Round-trip helpers
# ---------------------------------------------------------------------------------------


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture
def db(tmp_path):
    con = sqlite3.connect(tmp_path / "codec.db")
    yield con
    con.close()


def write_table(con: sqlite3.Connection, enc: EncodedFrame) -> str:
    """Create a table for ``enc`` and insert its rows in two chunks; return its name."""
    table = f"t{next(_tables)}"
    ddl = ", ".join(f"{quote(c.name)} {c.sql_type}" for c in enc.columns)
    con.execute(f"CREATE TABLE {table} ({ddl})")
    insert = f"INSERT INTO {table} VALUES ({', '.join('?' * len(enc.columns))})"
    half = max(1, -(-enc.nrows // 2))
    for start in range(0, enc.nrows, half):
        con.executemany(insert, enc.rows(start, start + half))
    con.commit()
    return table


def read_columns(
    con: sqlite3.Connection, table: str, names: list[str], limit: int | None = None
) -> list[list]:
    sql = f"SELECT {', '.join(quote(n) for n in names)} FROM {table} ORDER BY rowid"
    if limit is not None:
        sql += f" LIMIT {limit}"
    rows = con.execute(sql).fetchall()
    return [list(col) for col in zip(*rows)] if rows else [[] for _ in names]


def stored_manifest(enc: EncodedFrame) -> dict:
    # Strict JSON, as the catalog keeps it: no NaN or Infinity tokens.
    return json.loads(json.dumps(enc.manifest, allow_nan=False))


def object_views(columns: list[list]) -> list[np.ndarray]:
    """The same values as strided views of one 2-D object array, as the repository reads them."""
    if not columns or not columns[0]:
        return [np.empty(0, dtype=object) for _ in columns]
    table = np.empty((len(columns[0]), len(columns)), dtype=object)
    for i, column in enumerate(columns):
        table[:, i] = column
    return [table[:, i] for i in range(len(columns))]


def sqlite_roundtrip(
    con: sqlite3.Connection, obj, *, as_views: bool = False
) -> tuple[EncodedFrame, pd.DataFrame]:
    enc = encode(obj)
    assert all(c.sql_type in SQL_TYPES for c in enc.columns)
    table = write_table(con, enc)
    columns = read_columns(con, table, [c.name for c in enc.columns])
    return enc, decode(stored_manifest(enc), object_views(columns) if as_views else columns)


def direct_roundtrip(obj) -> pd.DataFrame:
    """Decode the encoder's own values, as a driver that keeps -0.0 (PostgreSQL) would."""
    enc = encode(obj)
    rows = enc.rows(0, enc.nrows)
    columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in enc.columns]
    return decode(stored_manifest(enc), columns)


def check(con, df: pd.DataFrame) -> EncodedFrame:
    """Round-trip through SQLite (values as lists and as object-array views) and directly."""
    enc, result = sqlite_roundtrip(con, df)
    assert_identical(result, df)
    assert_identical(sqlite_roundtrip(con, df, as_views=True)[1], df)
    assert_identical(direct_roundtrip(df), df)
    return enc


def needs_pyarrow():
    pytest.importorskip("pyarrow")


# ---------------------------------------------------------------------------------------
# Explicit cases: each builds its frame lazily so pyarrow-only cases can skip themselves
# ---------------------------------------------------------------------------------------


def nat_times(unit: str, tz: str | None = None) -> pd.Series:
    """Values with NaT at the unit's full precision, including the ends of its range."""
    texts = {
        "ns": ["2021-03-28 00:59:59.123456789", None, "1969-12-31 23:59:59.999999999", "2262-04-11"],
        "us": ["2021-03-28 00:59:59.123456", None, "1677-01-01", "9999-12-31 23:59:59.999999"],
        "ms": ["2021-03-28 00:59:59.123", None, "0001-01-01", "9999-12-31"],
        "s": ["2021-03-28 00:59:59", None, "0001-01-01", "9999-12-31 23:59:59"],
    }[unit]
    # Parsed by NumPy at the unit: pandas 2.2 parses text to nanoseconds only.
    values = pd.Series(np.array(texts, dtype=f"M8[{unit}]"))
    # A ZoneInfo on both pandas lines (pandas 2.2 would take a zone name as pytz's, which cannot
    # localize year 1 and rounds the offsets before 1911 to whole minutes).
    return values.dt.tz_localize(zoneinfo.ZoneInfo(tz)) if tz else values


def arrow_strings(values: list, na: str) -> pd.DataFrame:
    needs_pyarrow()
    return pd.DataFrame({"x": pd.Series(values, dtype=string_dtype("pyarrow", na))})


def nested_lists(depth: int) -> list:
    out: list = []
    for _ in range(depth):
        out = [out]
    return out


def paris_dst() -> pd.Series:
    # Spring forward on 2021-03-28 and fall back on 2021-10-31, with NaT and ns precision.
    utc = pd.to_datetime(
        ["2021-03-28 00:30", "2021-03-28 01:30:00.000000001", None, "2021-10-31 00:30", "2021-10-31 01:30"],
        utc=True,
        format="ISO8601",
    )
    return pd.Series(utc).dt.tz_convert(PARIS)


CASES = {
    # NumPy integers and bools
    **{
        name: (
            lambda name=name: pd.DataFrame(
                {"x": np.array([np.iinfo(name).min, 0, np.iinfo(name).max], dtype=name)}
            )
        )
        for name in ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"]
    },
    "uint64-fits": lambda: pd.DataFrame({"x": np.array([0, 1, 2**63 - 1], dtype="uint64")}),
    "bool": lambda: pd.DataFrame({"x": np.array([True, False, True])}),
    # NumPy floats
    **{
        name: (
            lambda name=name: pd.DataFrame(
                {
                    "x": np.array(
                        [1.5, np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-300 if name == "float64" else 1e-30],
                        dtype=name,
                    )
                }
            )
        )
        for name in ["float32", "float64"]
    },
    "float16": lambda: pd.DataFrame({"x": np.array([0.1, np.nan, -0.0, 65504], dtype="float16")}),
    "float64-exact-bits": lambda: pd.DataFrame({"x": [0.1 + 0.2, 1 / 3, 5e-324, 1.7976931348623157e308]}),
    # nullable dtypes
    **{
        name: (lambda name=name: pd.DataFrame({"x": pd.array([1, None, 0, 100], dtype=name)}))
        for name in ["Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"]
    },
    "Int64-extremes": lambda: pd.DataFrame({"x": pd.array([-(2**63), None, 2**63 - 1], dtype="Int64")}),
    "UInt64-max-fitting": lambda: pd.DataFrame({"x": pd.array([2**63 - 1, None], dtype="UInt64")}),
    "Float32-NA": lambda: pd.DataFrame({"x": pd.array([1.5, None, np.inf], dtype="Float32")}),
    "Float64-NA-only": lambda: pd.DataFrame({"x": pd.array([1.5, None, -np.inf], dtype="Float64")}),
    "Float64-NaN-only": lambda: pd.DataFrame(
        {"x": pd.arrays.FloatingArray(np.array([np.nan, 2.0]), np.array([False, False]))}
    ),
    "Float64-NaN-and-NA": lambda: pd.DataFrame(
        {
            "x": pd.arrays.FloatingArray(
                np.array([np.nan, 1.0, 0.0, np.nan, -0.0]), np.array([False, True, True, False, False])
            )
        }
    ),
    "boolean-NA": lambda: pd.DataFrame({"x": pd.array([True, None, False], dtype="boolean")}),
    "all-NA-Int64": lambda: pd.DataFrame({"x": pd.array([None, None], dtype="Int64")}),
    # strings
    "str-default": lambda: pd.DataFrame({"x": pd.Series(["a", None, "", "é\x00z", "😀"], dtype=STR)}),
    "str-python": lambda: pd.DataFrame(
        {"x": pd.Series(["a", None, "b"], dtype=string_dtype("python", "nan"))}
    ),
    "string-python-NA": lambda: pd.DataFrame({"x": pd.Series(["a", None, "\x00"], dtype="string[python]")}),
    "string-pyarrow-NA": lambda: arrow_strings(["a", None, "b\x00"], "na"),
    "str-pyarrow-NaN": lambda: arrow_strings(["a", None], "nan"),
    # categories
    "category-str-unused-missing": lambda: pd.DataFrame(
        {"x": pd.Categorical(["b", None, "a", "b"], categories=["b", "a", "never"])}
    ),
    "category-ordered": lambda: pd.DataFrame(
        {"x": pd.Categorical(["lo", "hi", None], categories=["lo", "mid", "hi"], ordered=True)}
    ),
    "category-int": lambda: pd.DataFrame({"x": pd.Categorical([3, None, 1], categories=[3, 2, 1])}),
    "category-float": lambda: pd.DataFrame(
        {"x": pd.Categorical([0.5, -0.0, np.inf], categories=[np.inf, 0.5, -0.0])}
    ),
    "category-bool": lambda: pd.DataFrame({"x": pd.Categorical([True, None, False])}),
    "category-object-str": lambda: pd.DataFrame(
        {"x": pd.Categorical(["a", "b"], categories=pd.Index(["b", "a"], dtype=object))}
    ),
    "category-decimal": lambda: pd.DataFrame(
        {"x": pd.Categorical([D("1.0"), D("1.50")], categories=pd.Index([D("1.50"), D("1.0")], dtype=object))}
    ),
    "category-datetime-tz": lambda: pd.DataFrame({"x": pd.Categorical(paris_dst().iloc[[0, 1, 3]])}),
    "category-all-missing": lambda: pd.DataFrame({"x": pd.Categorical([None, None], categories=["a"])}),
    "category-no-categories": lambda: pd.DataFrame({"x": pd.Categorical([None, None])}),
    # datetimes and timedeltas
    **{
        f"datetime-{unit}": (lambda unit=unit: pd.DataFrame({"x": nat_times(unit)}))
        for unit in ["s", "ms", "us", "ns"]
    },
    "datetime-ns-UTC": lambda: pd.DataFrame({"x": nat_times("ns", "UTC")}),
    "datetime-s-Paris": lambda: pd.DataFrame({"x": nat_times("s", PARIS)}),
    "datetime-Paris-DST": lambda: pd.DataFrame({"x": paris_dst()}),
    "datetime-fixed-offset": lambda: pd.DataFrame(
        {"x": nat_times("us", None).dt.tz_localize(dt.timezone(dt.timedelta(hours=-3, minutes=-30)))}
    ),
    "datetime-zoneinfo-UTC": lambda: pd.DataFrame(
        {"x": nat_times("ms", None).dt.tz_localize(zoneinfo.ZoneInfo("UTC"))}
    ),
    **{
        f"timedelta-{unit}": (
            lambda unit=unit: pd.DataFrame(
                {"x": pd.Series(np.array([1, -5, np.iinfo(np.int64).min, 123456789], dtype=f"m8[{unit}]"))}
            )
        )
        for unit in ["s", "ms", "us", "ns"]
    },
    # object columns
    "object-str-None": lambda: pd.DataFrame({"x": pd.Series(["a", None, "", "b\x00c"], dtype=object)}),
    "object-str-NaN": lambda: pd.DataFrame({"x": pd.Series(["a", np.nan, "c"], dtype=object)}),
    "object-str-all-markers": lambda: pd.DataFrame(
        {"x": pd.Series(["a", None, np.nan, pd.NA, pd.NaT, "z"], dtype=object)}
    ),
    "object-bytes": lambda: pd.DataFrame({"x": pd.Series([b"\x00\xff", None, b"", b"abc"], dtype=object)}),
    "object-decimal": lambda: pd.DataFrame(
        {
            "x": pd.Series(
                [
                    D("1.0"),
                    D("1.00"),
                    D("-0"),
                    D("NaN"),
                    D("-Infinity"),
                    D("Infinity"),
                    D("1E+2"),
                    D("0.1000000000000000000000000001"),
                    None,
                    D("-NaN"),
                ],
                dtype=object,
            )
        }
    ),
    "object-decimal-NA": lambda: pd.DataFrame({"x": pd.Series([D("2.50"), pd.NA], dtype=object)}),
    "object-json": lambda: pd.DataFrame(
        {
            "x": pd.Series(
                [{"a": [1, 2.5, None, True], "b": {"c": "d\x00"}}, [], {}, [[-0.0, 10**30]], None, ["é"]],
                dtype=object,
            )
        }
    ),
    "object-bool": lambda: pd.DataFrame({"x": pd.Series([True, None, False, np.nan], dtype=object)}),
    "object-int": lambda: pd.DataFrame({"x": pd.Series([1, -(2**63), 2**63 - 1, None, pd.NA], dtype=object)}),
    "object-float": lambda: pd.DataFrame({"x": pd.Series([1.5, np.nan, None, -0.0, np.inf], dtype=object)}),
    "object-float-nan-only": lambda: pd.DataFrame({"x": pd.Series([np.nan, np.nan], dtype=object)}),
    "object-all-None": lambda: pd.DataFrame({"x": pd.Series([None, None], dtype=object)}),
    "object-all-NA": lambda: pd.DataFrame({"x": pd.Series([pd.NA, pd.NA], dtype=object)}),
    "object-NaT-marker": lambda: pd.DataFrame({"x": pd.Series(["a", pd.NaT], dtype=object)}),
    # several columns, one each of the common kinds
    "mixed-frame": lambda: pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.5, np.nan, 2.0],
            "s": pd.Series(["x", None, "z"], dtype=STR),
            "c": pd.Categorical(["a", "b", None]),
            "b": [True, False, True],
            "d": pd.to_datetime(["2020-01-01", None, "2020-01-03"]),
            "n": pd.array([1, None, 3], dtype="Int64"),
            "o": pd.Series([D("1.10"), None, D("3")], dtype=object),
        }
    ),
    # indexes
    "index-range-offset": lambda: pd.DataFrame({"x": [1, 2, 3]}, index=pd.RangeIndex(10, 16, 2, name="r")),
    "index-range-named": lambda: pd.DataFrame({"x": [1, 2]}, index=pd.RangeIndex(2, name="row")),
    "index-range-negative-step": lambda: pd.DataFrame({"x": [1, 2, 3]}, index=pd.RangeIndex(5, -1, -2)),
    "index-int": lambda: pd.DataFrame({"x": [1, 2, 3]}, index=pd.Index([5, 3, 5], name="id")),
    "index-int8": lambda: pd.DataFrame({"x": [1, 2]}, index=pd.Index([5, -3], dtype="int8")),
    "index-float-NaN": lambda: pd.DataFrame({"x": [1, 2, 3]}, index=pd.Index([0.5, np.nan, -0.0])),
    "index-str": lambda: pd.DataFrame({"x": [1, 2]}, index=pd.Index(["a", "b\x00"], dtype=STR)),
    "index-object-str": lambda: pd.DataFrame(
        {"x": [1, 2]}, index=pd.Index(["a", None], dtype=object, name="k")
    ),
    "index-Int64-NA": lambda: pd.DataFrame({"x": [1, 2]}, index=pd.Index(pd.array([7, None], dtype="Int64"))),
    "index-bool": lambda: pd.DataFrame({"x": [1, 2]}, index=pd.Index([True, False])),
    "index-datetime-tz-freq": lambda: pd.DataFrame(
        {"x": range(5)}, index=pd.date_range("2021-03-27 22:00", periods=5, freq="h", tz=PARIS, name="when")
    ),
    "index-datetime-no-freq": lambda: pd.DataFrame(
        {"x": [1, 2]}, index=pd.DatetimeIndex(["2020-01-02", "2020-01-01"])
    ),
    "index-timedelta-freq": lambda: pd.DataFrame(
        {"x": [1, 2, 3]}, index=pd.timedelta_range("1s", periods=3, freq="s")
    ),
    "index-categorical": lambda: pd.DataFrame(
        {"x": [1, 2, 3]},
        index=pd.CategoricalIndex(["b", "a", "b"], categories=["b", "a", "c"], ordered=True, name="cat"),
    ),
    "index-multi": lambda: pd.DataFrame(
        {"x": [1, 2, 3]},
        index=pd.MultiIndex.from_arrays(
            [
                ["a", "b", "a"],
                [1, 2, 1],
                pd.to_datetime(["2020-01-01", "2020-01-02", None]).tz_localize("UTC"),
            ],
            names=["k", None, "t"],
        ),
    ),
    "index-multi-float-NaN-and-negzero": lambda: pd.DataFrame(
        {"x": [1, 2]},
        index=pd.MultiIndex.from_arrays([[np.nan, -0.0], ["u", "v"]], names=[("tuple", "name"), 3]),
    ),
    "index-multi-int-names-shadow-positions": lambda: pd.DataFrame(
        {"x": [1, 2]}, index=pd.MultiIndex.from_arrays([["a", "b"], [10, 20]], names=[1, 0])
    ),
    # column labels
    "columns-range": lambda: pd.DataFrame(np.zeros((2, 3))),
    "columns-range-offset": lambda: pd.DataFrame(np.ones((2, 2)), columns=pd.RangeIndex(5, 7, name="c")),
    "columns-int": lambda: pd.DataFrame({3: [1], 1: [2], -7: [3]}),
    "columns-float": lambda: pd.DataFrame([[1, 2, 3]], columns=pd.Index([1.5, np.nan, -0.0])),
    "columns-bool": lambda: pd.DataFrame([[1, 2]], columns=pd.Index([True, False])),
    "columns-object-str": lambda: pd.DataFrame([[1, 2]], columns=pd.Index(["a", "b"], dtype=object)),
    "columns-object-mixed": lambda: pd.DataFrame(
        [[1, 2, 3, 4, 5, 6]], columns=pd.Index(["a", 1, None, 2.5, ("t", 1), False], dtype=object)
    ),
    "columns-named": lambda: pd.DataFrame({"a": [1]}).rename_axis(columns="attrs"),
    "columns-multi": lambda: pd.DataFrame(
        [[1, 2.5, "x"]],
        columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["top", "sub"]),
    ),
    "columns-datetime": lambda: pd.DataFrame(
        [[1, 2]], columns=pd.date_range("2020-01-01", periods=2, freq="D")
    ),
    "columns-categorical": lambda: pd.DataFrame(
        [[1, 2]], columns=pd.CategoricalIndex(["x", "y"], categories=["y", "x", "z"])
    ),
    "columns-nul-and-case": lambda: pd.DataFrame(
        [[1, 2, 3, 4]], columns=["a\x00b", "ab", "AB", "__dsn_index_0"]
    ),
    "columns-long-unicode": lambda: pd.DataFrame([[1, 2]], columns=["é" * 40, "é" * 40 + "x"]),
    "columns-empty-label": lambda: pd.DataFrame([[1, 2]], columns=["", "column_0"]),
    # empty frames with columns
    "empty-object": lambda: pd.DataFrame(columns=["a", "b"]),
    "empty-typed": lambda: pd.DataFrame(
        {
            "i": pd.Series([], dtype="int32"),
            "n": pd.Series([], dtype="Int64"),
            "s": pd.Series([], dtype=STR),
            "c": pd.Series(pd.Categorical([], categories=["a"])),
            "d": pd.Series([], dtype="datetime64[ms, UTC]"),
            "f": pd.Series([], dtype="Float64"),
        }
    ),
    "empty-multiindex": lambda: pd.DataFrame(
        {"x": pd.Series([], dtype="float64")}, index=pd.MultiIndex.from_arrays([[], []], names=["a", "b"])
    ),
}


@pytest.mark.parametrize("make", list(CASES.values()), ids=list(CASES))
def test_roundtrip(db, make):
    try:
        frame = make()
    except OverflowError as exc:
        if compat.PANDAS_3:
            raise
        pytest.skip(f"pandas {pd.__version__} cannot build this frame (it localizes no date near year 1): {exc}")
    check(db, frame)


@pytest.mark.parametrize(
    "series, expected_label",
    [
        pytest.param(pd.Series([1, 2], name="amount"), "amount", id="named"),
        pytest.param(pd.Series([1.5, None]), 0, id="unnamed"),
        pytest.param(
            pd.Series(["a", None], dtype=STR, index=pd.Index([5, 6], name="k"), name=7),
            7,
            id="int-name-indexed",
        ),
    ],
)
def test_series_becomes_one_column_frame(db, series, expected_label):
    enc, result = sqlite_roundtrip(db, series)
    assert_identical(result, series.to_frame())
    assert result.columns.tolist() == [expected_label]
    if series.name is None:
        assert type(result.columns) is pd.RangeIndex


def test_signaling_nan_decimal(db):
    # assert_frame_equal cannot compare sNaN (comparing it raises), so compare the cells.
    df = pd.DataFrame({"x": pd.Series([D("sNaN"), D("-sNaN123"), None], dtype=object)})
    _, result = sqlite_roundtrip(db, df)
    assert cells(result["x"]) == cells(df["x"])


def test_companion_columns_only_when_needed():
    plain = encode(
        pd.DataFrame(
            {
                "f": [1.0, np.nan],
                "g": pd.array([1.0, None], dtype="Float64"),
                "o": pd.Series(["a", np.nan], dtype=object),
                "n": pd.array([1, None], dtype="Int64"),
            }
        )
    )
    assert [c.name for c in plain.columns] == ["f", "g", "o", "n"]
    both = encode(
        pd.DataFrame(
            {
                "F": pd.arrays.FloatingArray(np.array([np.nan, 1.0]), np.array([False, True])),
                "o": pd.Series(["a", np.nan, None], dtype=object).iloc[:2],
            }
        )
    )
    assert [c.name for c in both.columns] == ["F", "o", "__dsn_missing_0"]
    assert both.columns[-1].sql_type == "INTEGER"


def test_rows_are_plain_db_values_and_clip_bounds():
    df = pd.DataFrame(
        {
            "b": [True, False],
            "d": pd.to_datetime(["1970-01-01 00:00:01", None]).tz_localize(PARIS).as_unit("ns"),
            "c": pd.Categorical(["x", None]),
            "o": pd.Series([D("1.50"), None], dtype=object),
        }
    )
    enc = encode(df)
    assert enc.nrows == 2
    rows = enc.rows(0, 2)
    assert rows == [(True, -3_599_000_000_000, "x", "1.50"), (False, None, None, None)]
    assert [type(v) for v in rows[0]] == [bool, int, str, str]
    assert enc.rows(-5, 1) == enc.rows(0, 1)
    assert enc.rows(1, 99) == enc.rows(1, 2)
    assert enc.rows(2, 5) == []


def test_sql_values_are_readable(db):
    df = pd.DataFrame(
        {
            "price": pd.Series([D("9.90"), None], dtype=object),
            "tags": pd.Series([["a", "b"], None], dtype=object),
            "colour": pd.Categorical(["red", None]),
            "when": pd.to_datetime(["2020-01-01", None]).as_unit("s"),
        }
    )
    enc = encode(df)
    table = write_table(db, enc)
    assert db.execute(f'SELECT price, tags, colour, "when" FROM {table}').fetchall() == [
        ("9.90", '["a","b"]', "red", 1577836800),
        (None, None, None, None),
    ]
    assert db.execute(
        f"SELECT typeof(price), json_extract(tags, '$[1]') FROM {table} LIMIT 1"
    ).fetchone() == ("text", "b")


def test_frame_edits_after_a_snapshot_do_not_change_rows():
    """What a push encodes: ``compat.snapshot`` of the caller's frame (free under copy-on-write,
    a deep copy under pandas 2.2 without it)."""
    df = pd.DataFrame({"a": [1, 2, 3], "b": [1.0, 2.0, 3.0], "n": pd.array([1, None, 3], dtype="Int64")})
    snapshot = encode(df.copy(deep=True))
    enc = encode(compat.snapshot(df))
    df.iloc[0, 0] = 100
    df.loc[1, "b"] = -1.0
    df.loc[1, "n"] = 5
    assert enc.rows(0, 3) == snapshot.rows(0, 3)
    assert enc.content_hash() == snapshot.content_hash()


# ---------------------------------------------------------------------------------------
# Property test
# ---------------------------------------------------------------------------------------

@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(df=frames())
def test_roundtrip_property(db, df):
    enc = check(db, df)
    assert encode(df.copy(deep=True)).content_hash() == enc.content_hash()


# ---------------------------------------------------------------------------------------
# Validation errors
# ---------------------------------------------------------------------------------------


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


REJECTED = {
    "list": (lambda: [1, 2], ["pandas DataFrame or Series", "list"]),
    "dict": (lambda: {"a": [1]}, ["pandas DataFrame or Series", "dict"]),
    "ndarray": (lambda: np.zeros((2, 2)), ["pandas DataFrame or Series", "ndarray"]),
    "no-columns": (lambda: pd.DataFrame(index=[1, 2]), ["no columns", "at least one column"]),
    "duplicate-labels": (
        lambda: pd.DataFrame([[1, 2, 3]], columns=["a", "b", "a"]),
        ["duplicate", "'a'", "unique"],
    ),
    "complex-dtype": (
        lambda: pd.DataFrame({"z": [1 + 2j, 3j]}),
        ["column 'z'", "(1+2j)", "real and imaginary"],
    ),
    "complex-object": (
        lambda: pd.DataFrame({"z": pd.Series(["a", 1j], dtype=object)}),
        ["column 'z'", "1j", "complex", "may hold"],
    ),
    "arbitrary-object": (
        lambda: pd.DataFrame({"o": pd.Series([None, Opaque()], dtype=object)}),
        ["column 'o'", "Opaque()", "position 1", "may hold"],
    ),
    "numpy-scalar-object": (
        lambda: pd.DataFrame({"o": pd.Series([np.int64(5)], dtype=object)}),
        ["column 'o'", repr(np.int64(5)), "NumPy scalars"],
    ),
    "datetime-object": (
        lambda: pd.DataFrame({"o": pd.Series([dt.datetime(2020, 1, 2)], dtype=object)}),
        ["column 'o'", "datetime.datetime(2020, 1, 2, 0, 0)", "pd.to_datetime"],
    ),
    "tuple-object": (
        lambda: pd.DataFrame({"o": pd.Series([(1, 2)], dtype=object)}),
        ["column 'o'", "(1, 2)", "lists"],
    ),
    "mixed-str-int": (
        lambda: pd.DataFrame({"m": pd.Series(["a", None, 5], dtype=object)}),
        ["column 'm'", "mixes str and int", "position 2 holds 5"],
    ),
    "mixed-bool-int": (
        lambda: pd.DataFrame({"m": pd.Series([True, 1], dtype=object)}),
        ["column 'm'", "mixes bool and int", "position 1 holds 1"],
    ),
    "mixed-str-float": (
        lambda: pd.DataFrame({"m": pd.Series(["a", np.nan, 1.5], dtype=object)}),
        ["column 'm'", "mixes str and float", "1.5"],
    ),
    "mixed-list-str": (
        lambda: pd.DataFrame({"m": pd.Series([[1], "x"], dtype=object)}),
        ["column 'm'", "mixes json and str", "'x'"],
    ),
    "uint64-too-big": (
        lambda: pd.DataFrame({"u": np.array([1, 2**64 - 1], dtype="uint64")}),
        ["column 'u'", "18446744073709551615", "position 1", "up to 2**63-1"],
    ),
    "UInt64-too-big": (
        lambda: pd.DataFrame({"u": pd.array([None, 2**63], dtype="UInt64")}),
        ["column 'u'", "9223372036854775808", "up to 2**63-1"],
    ),
    "object-int-too-big": (
        lambda: pd.DataFrame({"big": pd.Series([1, 2**70], dtype=object)}),
        ["column 'big'", str(2**70), "64-bit", "Decimal"],
    ),
    "object-int-too-small": (
        lambda: pd.DataFrame({"big": pd.Series([-(2**63) - 1], dtype=object)}),
        ["column 'big'", str(-(2**63) - 1)],
    ),
    "json-tuple-inside": (
        lambda: pd.DataFrame({"j": pd.Series([{"a": (1, 2)}], dtype=object)}),
        ["column 'j'", "(1, 2)", "JSON"],
    ),
    "json-int-key": (
        lambda: pd.DataFrame({"j": pd.Series([{1: "a"}], dtype=object)}),
        ["column 'j'", "non-str key 1"],
    ),
    "json-surrogate": (
        lambda: pd.DataFrame({"j": pd.Series([["\udc80"]], dtype=object)}),
        ["column 'j'", "'\\udc80'"],
    ),
    "json-too-deep": (
        lambda: pd.DataFrame({"j": pd.Series([nested_lists(5000)], dtype=object)}),
        ["column 'j'", "nested too deeply"],
    ),
    "json-nan": (
        lambda: pd.DataFrame({"j": pd.Series([[np.nan]], dtype=object)}),
        ["column 'j'", "non-finite float nan"],
    ),
    "surrogate-object": (
        lambda: pd.DataFrame({"s": pd.Series(["ok", "\ud800"], dtype=object)}),
        ["column 's'", "'\\ud800'", "position 1", "UTF-8"],
    ),
    "surrogate-after-missing": (
        lambda: pd.DataFrame({"s": pd.Series([None, "ok", np.nan, "\ud800"], dtype=object)}),
        ["column 's'", "position 3", "UTF-8"],
    ),
    "surrogate-string": (
        lambda: pd.DataFrame({"s": pd.Series(["\udcff"], dtype="string[python]")}),
        ["column 's'", "'\\udcff'", "UTF-8"],
    ),
    "period-dtype": (
        lambda: pd.DataFrame({"p": pd.period_range("2020-01", periods=2, freq="M")}),
        ["column 'p'", "period[M]", "Period('2020-01', 'M')", "supported dtypes"],
    ),
    "interval-dtype": (
        lambda: pd.DataFrame({"iv": pd.arrays.IntervalArray.from_breaks([0, 1, 2])}),
        ["column 'iv'", "interval", "supported dtypes"],
    ),
    "mixed-categories": (
        lambda: pd.DataFrame({"c": pd.Categorical(["a", 1])}),
        ["categories of column 'c'", "mixes"],
    ),
    "bad-index": (
        lambda: pd.DataFrame({"x": [1, 2]}, index=pd.Index(["a", 2], dtype=object)),
        ["the index", "mixes str and int"],
    ),
    "bad-label": (
        lambda: pd.DataFrame([[1]], columns=pd.Index([Opaque()], dtype=object)),
        ["column labels", "Opaque()"],
    ),
    "unknown-tz": (
        lambda: pd.DataFrame(
            {
                "t": pd.Series(pd.to_datetime(["2020-01-01"]))
                .dt.tz_localize(dt.timezone.utc)
                .dt.tz_convert(dateutil.tz.gettz("Europe/Paris"))
            }
        ),
        ["column 't'", "time zone", "zoneinfo"],
    ),
}


@pytest.mark.parametrize("make, fragments", list(REJECTED.values()), ids=list(REJECTED))
def test_validation_errors(make, fragments):
    with pytest.raises(ValidationError) as info:
        encode(make())
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert isinstance(info.value, ValueError)


def test_validation_checks_every_row():
    values = ["x"] * 200_000 + [7]
    with pytest.raises(ValidationError, match="position 200000 holds 7"):
        encode(pd.DataFrame({"late": pd.Series(values, dtype=object)}))


# ---------------------------------------------------------------------------------------
# content_hash
# ---------------------------------------------------------------------------------------


def base_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.5, np.nan, 2.0],
            "s": pd.array(["a", None, "c"], dtype=STR),
            "c": pd.Categorical(["x", "y", None], categories=["x", "y"]),
            "d": pd.to_datetime(["2020-01-01", "2020-01-02", None]).as_unit("ns"),
            "n": pd.array([1, None, 3], dtype="Int64"),
            "F": pd.array([1.5, None, 3.0], dtype="Float64"),
            "o": np.array([D("1.0"), None, D("2")], dtype=object),
            "b": np.array([True, False, None], dtype=object),
        },
        index=pd.Index([10, 20, 30], name="id"),
    )


def _set(df: pd.DataFrame, column: str, row: int, value) -> pd.DataFrame:
    out = df.copy()
    values = out[column].array.copy()
    values[row] = value
    out[column] = values
    return out


HASH_CHANGES = {
    "int-value": lambda df: _set(df, "i", 0, 9),
    "float-value": lambda df: _set(df, "f", 0, 0.5000000000000001),
    "float-nan-to-value": lambda df: _set(df, "f", 1, 0.0),
    "str-value": lambda df: _set(df, "s", 0, "b"),
    "str-missing": lambda df: _set(df, "s", 0, None),
    "category-value": lambda df: _set(df, "c", 0, "y"),
    "category-order": lambda df: df.assign(c=df["c"].cat.reorder_categories(["y", "x"])),
    "category-ordered-flag": lambda df: df.assign(c=df["c"].cat.as_ordered()),
    "category-unused-added": lambda df: df.assign(c=df["c"].cat.add_categories(["z"])),
    "datetime-1ns": lambda df: _set(df, "d", 0, pd.Timestamp("2020-01-01 00:00:00.000000001")),
    "datetime-tz": lambda df: df.assign(d=df["d"].dt.tz_localize("UTC")),
    "datetime-unit": lambda df: df.assign(d=df["d"].dt.as_unit("s")),
    "Int64-NA-to-value": lambda df: _set(df, "n", 1, 0),
    "Float64-NA-to-NaN": lambda df: df.assign(
        F=pd.arrays.FloatingArray(np.array([1.5, np.nan, 3.0]), np.array([False, False, False]))
    ),
    "decimal-exponent": lambda df: _set(df, "o", 0, D("1.00")),
    "object-None-to-NaN": lambda df: _set(df, "o", 1, np.nan),
    "object-bool-to-int": lambda df: df.assign(b=np.array([1, 0, None], dtype=object)),
    "dtype-int32": lambda df: df.assign(i=df["i"].astype("int32")),
    "dtype-Int64": lambda df: df.assign(i=df["i"].astype("Int64")),
    "dtype-string": lambda df: df.assign(s=df["s"].astype("string[python]")),
    "label": lambda df: df.rename(columns={"i": "j"}),
    "label-type": lambda df: df.rename(columns={"i": 1}),
    "column-order": lambda df: df[list(df.columns[::-1])],
    "columns-name": lambda df: df.rename_axis(columns="attrs"),
    "index-value": lambda df: df.set_axis(pd.Index([10, 20, 31], name="id")),
    "index-name": lambda df: df.rename_axis("key"),
    "index-dtype": lambda df: df.set_axis(pd.Index([10, 20, 30], dtype="int32", name="id")),
    "index-range": lambda df: df.set_axis(pd.RangeIndex(10, 40, 10, name="id")),
    "row-dropped": lambda df: df.iloc[:2],
}


def test_content_hash_equal_for_equal_frames():
    first, second = encode(base_frame()), encode(base_frame())
    assert first.content_hash() == second.content_hash()
    assert len(first.content_hash()) == 64 and int(first.content_hash(), 16) >= 0


@pytest.mark.parametrize("change", list(HASH_CHANGES.values()), ids=list(HASH_CHANGES))
def test_content_hash_changes(change):
    df = base_frame()
    changed = change(df)
    assert encode(changed).content_hash() != encode(df).content_hash()


def test_content_hash_keeps_the_sign_of_zero():
    assert (
        encode(pd.DataFrame({"x": [0.0]})).content_hash()
        != encode(pd.DataFrame({"x": [-0.0]})).content_hash()
    )


def test_content_hash_ignores_values_under_na_mask():
    a = pd.arrays.IntegerArray(np.array([1, 111]), np.array([False, True]))
    b = pd.arrays.IntegerArray(np.array([1, 222]), np.array([False, True]))
    assert encode(pd.DataFrame({"x": a})).content_hash() == encode(pd.DataFrame({"x": b})).content_hash()


# ---------------------------------------------------------------------------------------
# select, schema, schema_diff
# ---------------------------------------------------------------------------------------


def select_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": [1, 2, 3],
            "b": pd.arrays.FloatingArray(np.array([np.nan, 1.0, 0.0]), np.array([False, False, True])),
            "c": pd.Series(["x", None, "z"], dtype=STR),
            7: pd.Categorical(["p", "q", "p"]),
        },
        index=pd.MultiIndex.from_arrays([["k1", "k2", "k3"], [1, 2, 3]], names=["key", "n"]),
    )


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(["a"], id="one"),
        pytest.param(["c", "a"], id="reordered"),
        pytest.param(["b"], id="with-companion"),
        pytest.param([7, "b"], id="int-label"),
        pytest.param(None, id="all"),
    ],
)
def test_select_reads_only_needed_columns(db, labels):
    df = select_frame()
    enc = encode(df)
    table = write_table(db, enc)
    names, reduced = select(stored_manifest(enc), labels)
    expected = df if labels is None else df[labels]
    assert names[:2] == ["__dsn_index_0", "__dsn_index_1"]
    assert ("__dsn_missing_1" in names) == (labels is None or "b" in labels)
    assert_identical(decode(reduced, read_columns(db, table, names)), expected)
    json.dumps(reduced, allow_nan=False)


@pytest.mark.parametrize(
    "index",
    [pd.RangeIndex(3), pd.RangeIndex(4, 10, 2, name="r"), pd.Index(["x", "y", "z"], name="k")],
    ids=["default", "range", "stored"],
)
def test_select_no_columns(db, index):
    df = pd.DataFrame({"a": [1, 2, 3]}, index=index)
    enc = encode(df)
    table = write_table(db, enc)
    names, reduced = select(enc.manifest, [])
    assert names == ([] if isinstance(index, pd.RangeIndex) else ["__dsn_index_0"])
    columns = read_columns(db, table, names) if names else []
    assert_identical(decode({**reduced, "nrows": 3}, columns), df[[]])


def test_select_with_range_columns_and_limit(db):
    df = pd.DataFrame(np.arange(12.0).reshape(4, 3), index=pd.RangeIndex(100, 108, 2))
    enc = encode(df)
    table = write_table(db, enc)
    names, reduced = select(enc.manifest, [2, 0])
    assert names == ["2", "0"]
    assert_identical(decode(reduced, read_columns(db, table, names, limit=3)), df[[2, 0]].iloc[:3])
    assert_identical(
        decode(enc.manifest, read_columns(db, table, [c.name for c in enc.columns], limit=2)), df.iloc[:2]
    )


def test_select_multiindex_columns(db):
    df = pd.DataFrame([[1, 2, 3]], columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)]))
    enc = encode(df)
    table = write_table(db, enc)
    names, reduced = select(enc.manifest, [("b", 1), ("a", 1)])
    assert_identical(decode(reduced, read_columns(db, table, names)), df[[("b", 1), ("a", 1)]])


@pytest.mark.parametrize(
    "labels, fragments",
    [
        pytest.param(
            ["a", "nope"], ["unknown column 'nope'", "available columns: 'a', 'b', 'c', 7"], id="unknown"
        ),
        pytest.param(["7"], ["unknown column '7'"], id="wrong-type"),
        pytest.param("a", ["single string", "['a']"], id="bare-string"),
        pytest.param(["a", "a"], ["'a' is requested twice"], id="duplicate"),
    ],
)
def test_select_errors(labels, fragments):
    with pytest.raises(ValidationError) as info:
        select(encode(select_frame()).manifest, labels)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_schema():
    df = pd.DataFrame(
        {
            "amount": pd.array([1, None], dtype="Int64"),
            "when": pd.to_datetime(["2020-01-01", None]).tz_localize(PARIS).as_unit("ns"),
            "name": pd.Series(["a", None], dtype=STR),
            "tag": pd.Series(["a", None], dtype="string[python]"),
            "c": pd.Categorical(["x", None]),
            "o": pd.Series([D("1"), None], dtype=object),
            3: [1.5, 2.5],
            "u": np.array([1, 2], dtype="uint8"),
            "td": pd.to_timedelta([1, 2], unit="s").as_unit("ms"),
        }
    )
    assert schema(encode(df).manifest) == [
        ("amount", "Int64"),
        ("when", "datetime64[ns, Europe/Paris]"),
        ("name", compat.dtype_label(STR)),  # "str"; "string[pyarrow_numpy]" under pandas 2.2
        ("tag", "string"),
        ("c", "category"),
        ("o", "object"),
        (3, "float64"),
        ("u", "uint8"),
        ("td", "timedelta64[ms]"),
    ]


def test_schema_diff():
    old = pd.DataFrame(
        {
            "a": [1, 2],
            "b": [1.0, 2.0],
            "c": pd.Categorical(["x", "y"]),
            "o": pd.Series(["s", None], dtype=object),
            "gone": [0, 0],
        }
    )
    new = pd.DataFrame(
        {
            "a": [1, 2],
            "b": [1, 2],
            "c": pd.Categorical(["x", "y"], categories=["y", "x"]),
            "o": pd.Series([1, None], dtype=object),
            "extra": [0, 0],
        }
    )
    added, missing, retyped = schema_diff(encode(old).manifest, encode(new).manifest)
    assert added == ["extra"]
    assert missing == ["gone"]
    assert [r[0] for r in retyped] == ["b", "c", "o"]
    assert retyped[0] == ("b", "float64", "int64")
    assert retyped[1][1] != retyped[1][2] and "'x', 'y'" in retyped[1][1]
    assert retyped[2] == ("o", "object (str values)", "object (int values)")


@pytest.mark.parametrize(
    "old, new",
    [
        pytest.param(pd.Series([1.0, np.nan]), pd.Series([1.0, 2.0]), id="float-missing-kinds"),
        pytest.param(
            pd.Series(["a", None], dtype=object),
            pd.Series(["a", np.nan], dtype=object),
            id="object-missing-kinds",
        ),
        pytest.param(
            pd.Series(["a", None], dtype=STR),
            pd.Series(["b", "c"], dtype=string_dtype("python", "nan")),
            id="string-storage",
        ),
        pytest.param(pd.Series([1, 2]), pd.Series([5, 6], index=pd.RangeIndex(2, 4)), id="range-offset"),
    ],
)
def test_schema_diff_ignores_storage_details(old, new):
    assert schema_diff(encode(old).manifest, encode(new).manifest) == ([], [], [])


def test_schema_diff_reports_index_changes():
    old = encode(pd.DataFrame({"a": [1]}))
    named = encode(pd.DataFrame({"a": [1]}, index=pd.Index(["k"], name="key", dtype=STR)))
    multi = encode(
        pd.DataFrame({"a": [1]}, index=pd.MultiIndex.from_arrays([pd.Index(["k"], dtype=STR), [1]], names=["key", "n"]))
    )
    text = compat.dtype_label(STR)
    _, _, retyped = schema_diff(old.manifest, named.manifest)
    assert retyped == [("<index>", "RangeIndex", f"Index('key': {text})")]
    _, _, retyped = schema_diff(named.manifest, multi.manifest)
    assert retyped == [("<index>", f"Index('key': {text})", f"MultiIndex('key': {text}, 'n': int64)")]


def test_schema_diff_names_the_categories_dtype_where_the_values_look_alike():
    """pandas 3 infers str categories where pandas 2.2 infers objects: the refusal says which."""
    text = encode(pd.DataFrame({"c": pd.Categorical(["a"], categories=pd.Index(["a"], dtype=STR))}))
    objects = encode(pd.DataFrame({"c": pd.Categorical(["a"], categories=pd.Index(["a"], dtype=object))}))
    _, _, retyped = schema_diff(text.manifest, objects.manifest)
    label = compat.dtype_label(STR)
    assert retyped == [("c", f"category (['a'] as {label}, ordered=False)", "category (['a'] as object (str values), ordered=False)")]


def test_schema_diff_keeps_label_types_apart():
    added, missing, _ = schema_diff(
        encode(pd.DataFrame({1: [1]})).manifest, encode(pd.DataFrame({"1": [1]})).manifest
    )
    assert (added, missing) == (["1"], [1])


# ---------------------------------------------------------------------------------------
# SQL names
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, expected",
    [
        pytest.param(
            ["amount", "Amount", "AMOUNT"], ["amount", "Amount_2", "AMOUNT_3"], id="case-insensitive"
        ),
        pytest.param(["a", "a_2", "A"], ["a", "a_2", "A_3"], id="suffix-taken"),
        pytest.param(["a\x00b", "ab"], ["ab", "ab_2"], id="nul-stripped"),
        pytest.param([("a", 1), None, 2.5, True], ["('a', 1)", "None", "2.5", "True"], id="str-of-label"),
        pytest.param(["__dsn_index_0", "__DSN_x"], ["___dsn_index_0", "___DSN_x"], id="reserved-prefix"),
        pytest.param(["", "\x00"], ["column_0", "column_1"], id="empty"),
        pytest.param(["x" * 70], ["x" * 63], id="cut-ascii"),
        pytest.param(["é" * 40], ["é" * 31], id="cut-utf8-boundary"),
        pytest.param(["x" * 70, "X" * 70], ["x" * 63, "X" * 61 + "_2"], id="cut-then-dedupe"),
    ],
)
def test_sql_names(labels, expected):
    names = codec._sql_names(labels)
    assert names == expected
    assert all(len(n.encode()) <= 63 for n in names)


def test_sql_names_in_encoded_frame():
    df = pd.DataFrame(
        [[1, 2, 3]], columns=["Total", "total", "__dsn_missing_0"], index=pd.Index(["r"], name="row")
    )
    df = df.astype({"Total": "Float64"})
    names = [c.name for c in encode(df).columns]
    assert names == ["__dsn_index_0", "Total", "total_2", "___dsn_missing_0"]


# ---------------------------------------------------------------------------------------
# decode checks
# ---------------------------------------------------------------------------------------


def test_decode_rejects_wrong_column_count():
    enc = encode(pd.DataFrame({"a": [1], "b": [2]}))
    with pytest.raises(ValidationError, match="got 1 value columns"):
        decode(enc.manifest, [[1]])


def test_decode_rejects_unknown_manifest_format():
    from dsnotebook.errors import DatasetError

    manifest = dict(encode(pd.DataFrame({"a": [1]})).manifest, format=99)
    with pytest.raises(DatasetError, match="format 99"):
        decode(manifest, [[1]])


def test_decode_rejects_values_outside_categories():
    from dsnotebook.errors import DatasetError

    enc = encode(pd.DataFrame({"c": pd.Categorical(["a"])}))
    with pytest.raises(DatasetError, match="'zzz' is not one of"):
        decode(enc.manifest, [["zzz"]])


def test_schema_diff_lets_an_all_missing_object_column_take_any_kind():
    empty = encode(pd.DataFrame({"o": pd.Series([None, None], dtype=object)})).manifest
    decimals = encode(pd.DataFrame({"o": pd.Series([D("1.5")], dtype=object)})).manifest
    strings = encode(pd.DataFrame({"o": pd.Series(["a"], dtype=object)})).manifest
    assert schema_diff(empty, decimals) == ([], [], [])
    assert schema_diff(decimals, empty) == ([], [], [])
    assert schema_diff(decimals, strings)[2] == [("o", "object (decimal values)", "object (str values)")]


def test_iter_rows_yields_what_rows_returns():
    df = pd.DataFrame({"a": [1, 2, 3], "s": ["x", None, "z"], "f": pd.array([1.5, None, np.nan], dtype="Float64")})
    enc = encode(df)
    for start, stop in [(0, 3), (1, 2), (2, 9), (3, 3), (-1, 1)]:
        lazy = enc.iter_rows(start, stop)
        assert not isinstance(lazy, list)
        assert list(lazy) == enc.rows(start, stop)
