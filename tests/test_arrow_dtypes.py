"""Arrow-backed pandas columns (``pd.ArrowDtype``): exact round trips through a hub on both
backends (as data columns and as an index level, by Arrow and, on PostgreSQL, through asyncpg's
COPY), through the codec's two decoders, appends, and the refusal of Arrow types that have no
storage, naming the column and the type."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import sqlite3

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from frametools import assert_identical
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import check, stored_manifest

from dsnotebook.errors import SchemaMismatch, ValidationError
from dsnotebook.store.codec import decode, decode_arrow, encode, schema

D = decimal.Decimal
NAN = float("nan")


def arrow_series(values: list | pa.Array, t: pa.DataType | None = None) -> pd.Series:
    array = values if isinstance(values, pa.Array) else pa.array(values, type=t)
    return pd.Series(pd.arrays.ArrowExtensionArray(array))


#: (Arrow type, values with a null), one column each.
TYPES = {
    "int8": (pa.int8(), [-128, None, 127, 0]),
    "int16": (pa.int16(), [1, None, -32768, 2]),
    "int32": (pa.int32(), [1, None, 2**31 - 1, 3]),
    "int64": (pa.int64(), [-(2**63), None, 2**63 - 1, 0]),
    "uint8": (pa.uint8(), [255, None, 0, 1]),
    "uint16": (pa.uint16(), [65535, None, 0, 1]),
    "uint32": (pa.uint32(), [2**32 - 1, None, 0, 1]),
    "uint64": (pa.uint64(), [2**63 - 1, None, 0, 1]),
    # A NaN value is not a null: both come back, apart.
    "float32": (pa.float32(), [1.5, None, NAN, -0.0]),
    "float64": (pa.float64(), [-0.0, None, NAN, 1e308]),
    "bool": (pa.bool_(), [True, None, False, True]),
    "string": (pa.string(), ["a", None, "", "é\U0001f600"]),
    "large_string": (pa.large_string(), ["x", None, "", "y"]),
    "binary": (pa.binary(), [b"\x00\xff", None, b"", b"a"]),
    "large_binary": (pa.large_binary(), [b"a", None, b"", b"\x00"]),
    "timestamp_s": (pa.timestamp("s"), [0, None, 10**10, -(10**10)]),
    "timestamp_ms": (pa.timestamp("ms"), [1, None, -1, 1_700_000_000_123]),
    "timestamp_us_utc": (
        pa.timestamp("us", "UTC"),
        [1, None, -1, 1_700_000_000_123_456],
    ),
    "timestamp_ns_paris": (
        pa.timestamp("ns", "Europe/Paris"),
        [1, None, -5, 1_700_000_000_123_456_789],
    ),
    "timestamp_us_offset": (pa.timestamp("us", "+01:00"), [1_000_000, None, 0, 5]),
    "duration_s": (pa.duration("s"), [1, None, -7, 86_400 * 365]),
    "duration_us": (pa.duration("us"), [1, None, -7, 0]),
    "duration_ns": (pa.duration("ns"), [1, None, -7, 0]),
    "date32": (
        pa.date32(),
        [dt.date(2024, 2, 29), None, dt.date(1, 1, 1), dt.date(9999, 12, 31)],
    ),
    "date64": (
        pa.date64(),
        [dt.date(2024, 2, 29), None, dt.date(1970, 1, 1), dt.date(1900, 1, 2)],
    ),
    "time32_s": (
        pa.time32("s"),
        [dt.time(1, 2, 3), None, dt.time(0), dt.time(23, 59, 59)],
    ),
    "time32_ms": (
        pa.time32("ms"),
        [dt.time(1, 2, 3, 4000), None, dt.time(0), dt.time(12)],
    ),
    "time64_us": (
        pa.time64("us"),
        [dt.time(1, 2, 3, 5), None, dt.time(0), dt.time(23, 59, 59, 999_999)],
    ),
    "time64_ns": (pa.time64("ns"), [1, None, 0, 86_399_999_999_999]),
    "decimal128": (
        pa.decimal128(12, 3),
        [D("1.500"), None, D("-0.001"), D("999999999.999")],
    ),
    "list": (pa.list_(pa.int64()), [[1, None], None, [], [2**62]]),
    "large_list": (pa.large_list(pa.string()), [["a"], None, [], ["b", None]]),
    "struct": (
        pa.struct(
            [("a", pa.int32()), ("b", pa.string()), ("c", pa.list_(pa.float64()))]
        ),
        [
            {"a": 1, "b": None, "c": [1.5]},
            None,
            {"a": None, "b": "x", "c": None},
            {"a": 2, "b": "", "c": []},
        ],
    ),
}
DICTIONARIES = {
    "dictionary_string": pa.array(["a", None, "b", "a"]).dictionary_encode(),
    "dictionary_ordered": pa.DictionaryArray.from_arrays(
        pa.array([0, 1, None, 2], type=pa.int8()),
        pa.array([3.5, 1.0, 2.0]),
        ordered=True,
    ),
    "dictionary_timestamp": pa.array(
        [1, None, 2, 1], type=pa.timestamp("us", "UTC")
    ).dictionary_encode(),
}


def arrow_frame(
    names: list[str] | None = None, *, with_decimal: bool = True
) -> pd.DataFrame:
    wanted = names or [name for name in TYPES if with_decimal or name != "decimal128"]
    columns = {name: arrow_series(TYPES[name][1], TYPES[name][0]) for name in wanted}
    if names is None:
        columns |= {name: arrow_series(array) for name, array in DICTIONARIES.items()}
    index = pd.MultiIndex.from_arrays(
        [
            pd.Index(
                pd.arrays.ArrowExtensionArray(
                    pa.array(["k", None, "m", "n"], type=pa.string())
                ),
                name="key",
            ),
            pd.Index(
                pd.arrays.ArrowExtensionArray(
                    pa.array([3, 1, None, 2], type=pa.int64())
                ),
                name="n",
            ),
        ]
    )
    return pd.DataFrame(columns).set_axis(index)


def pushed(hub, df: pd.DataFrame, name: str, **options) -> object:
    return hub.push(df, name, **options).wait(timeout=60)


# ---------------------------------------------------------------------------------------
# Through a hub, on both backends
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "with_decimal",
    # On PostgreSQL a Decimal (NUMERIC) column sends the rows through asyncpg's COPY and reads
    # them back as rows; without one, Arrow carries them both ways.
    [False, True],
    ids=["arrow", "with-decimal"],
)
def test_every_arrow_dtype_comes_back_identical(hub, with_decimal):
    df = arrow_frame(with_decimal=with_decimal)
    pushed(hub, df, "arrowed")
    back = hub.pull("arrowed")
    assert_identical(back, df)
    assert [str(t) for t in back.dtypes] == [str(t) for t in df.dtypes]
    assert all(isinstance(t, pd.ArrowDtype) for t in back.dtypes)
    assert isinstance(back.index.levels[0].dtype, pd.ArrowDtype)
    assert np.isnan(back["float64"].array[2]) and back["float64"].isna().tolist() == [
        False,
        True,
        False,
        False,
    ]
    assert_identical(
        hub.pull("arrowed", columns=["struct", "int64"]), df[["struct", "int64"]]
    )
    assert (
        dict(hub.info("arrowed").schema)["timestamp_ns_paris"]
        == "timestamp[ns, tz=Europe/Paris][pyarrow]"
    )


@pytest.mark.parametrize("name", list(TYPES), ids=list(TYPES))
def test_an_arrow_column_alone_as_the_index(hub, name):
    t, values = TYPES[name]
    # pandas' assert_index_equal finds an Arrow-backed index unequal to itself when it holds
    # a NaN value; NaN in data columns is checked above.
    values = [2.5 if isinstance(v, float) and math.isnan(v) else v for v in values]
    df = pd.DataFrame(
        {"n": range(len(values))}, index=pd.Index(arrow_series(values, t), name=name)
    )
    pushed(hub, df, "indexed")
    assert_identical(hub.pull("indexed"), df)


#: Every timestamp unit, naive and in three kinds of zone, every duration unit, and decimals
#: across their precisions and scales: the cases TYPES leaves out, in one frame.
UNITS_AND_SCALES = {
    **{
        f"timestamp_{unit}_{zone or 'naive'}": (
            pa.timestamp(unit, zone),
            [0, None, -(10**10), 1_700_000_000 * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit] + 7],
        )
        for unit in ("s", "ms", "us", "ns")
        for zone in (None, "UTC", "Europe/Paris", "America/New_York")
    },
    **{f"duration_{unit}": (pa.duration(unit), [1, None, -(2**62), 2**63 - 1]) for unit in ("s", "ms", "us", "ns")},
    "decimal128_1_0": (pa.decimal128(1, 0), [D("9"), None, D("-9"), D("0")]),
    "decimal128_5_5": (pa.decimal128(5, 5), [D("0.99999"), None, D("-0.00001"), D("0.00000")]),
    "decimal128_38_0": (pa.decimal128(38, 0), [D("9" * 38), None, D("-" + "9" * 38), D("1")]),
    "decimal128_38_10": (pa.decimal128(38, 10), [D("9" * 28 + "." + "9" * 10), None, D("-1.0000000001"), D("0E-10")]),
    "decimal256_76_40": (pa.decimal256(76, 40), [D("9" * 36 + "." + "9" * 40), None, D("-1." + "0" * 39 + "1"), D("0E-40")]),
}


def test_every_timestamp_unit_and_zone_duration_unit_and_decimal_scale_comes_back_identical(hub):
    df = pd.DataFrame({name: arrow_series(values, t).array for name, (t, values) in UNITS_AND_SCALES.items()})
    pushed(hub, df, "units")
    back = hub.pull("units")
    assert_identical(back, df)
    assert dict(hub.info("units").schema)["decimal128_38_10"] == "decimal128(38, 10)[pyarrow]"
    assert back["decimal128_38_10"].array[2] == D("-1.0000000001")


#: Times that Arrow holds and Python's datetime does not: before year 1, after year 9999, and
#: durations over 999,999,999 days (found by the property test: naming the first value for a
#: message called ``as_py()``, which raised OverflowError before anything was stored).
BEYOND_PYTHON = {
    "timestamp_s_before_year_1": (pa.timestamp("s"), [-(10**12), None, 2**63 - 1]),
    "timestamp_ms_utc_after_9999": (pa.timestamp("ms", "UTC"), [10**15, None, -(2**63) + 1]),
    "timestamp_us_offset": (pa.timestamp("us", "+05:30"), [-(2**62), None, 2**62]),
    "duration_s_long": (pa.duration("s"), [10**17, None, -(10**17)]),
}


def test_times_beyond_pythons_datetime_come_back_identical(hub):
    df = pd.DataFrame({name: arrow_series(values, t).array for name, (t, values) in BEYOND_PYTHON.items()})
    pushed(hub, df, "far")
    assert_identical(hub.pull("far"), df)


def test_times_after_year_9999_in_a_zone_with_daylight_saving_come_back_equal(hub):
    # pandas cannot show or compare these (it asks Python's datetime for the offset), so the
    # Arrow arrays are compared; the dtype still says the zone.
    columns = {
        zone: pa.array([2**62, None, 10**18, -(2**62)], pa.int64()).cast(pa.timestamp("ns" if zone == "America/New_York" else "us", zone))
        for zone in ("Europe/Paris", "America/New_York")
    }
    df = pd.DataFrame({zone: arrow_series(array).array for zone, array in columns.items()})
    pushed(hub, df, "zones")
    back = hub.pull("zones")
    assert list(back.dtypes) == list(df.dtypes)
    for zone, array in columns.items():
        assert back[zone].array.__arrow_array__().combine_chunks().equals(array)


def test_appending_an_arrow_column_to_itself(hub):
    df = arrow_frame(
        ["int64", "float64", "string", "binary", "timestamp_us_utc", "date32", "list"]
    )
    df["dictionary_string"] = arrow_series(DICTIONARIES["dictionary_string"]).array
    pushed(hub, df, "log")
    pushed(hub, df, "log", if_exists="append")
    assert_identical(hub.pull("log"), pd.concat([df, df]))


def test_appending_numpy_backed_values_of_the_same_arrow_type_keeps_the_arrow_column(hub):
    pushed(hub, pd.DataFrame({"id": arrow_series([1, None], pa.int64())}), "ids")
    pushed(hub, pd.DataFrame({"id": pd.array([2, None], dtype="Int64")}), "ids", if_exists="append")
    pushed(hub, pd.DataFrame({"id": np.array([3], dtype=np.int64)}), "ids", if_exists="append")
    assert_identical(hub.pull("ids"), pd.DataFrame({"id": arrow_series([1, None, 2, None, 3], pa.int64())}))


def test_appending_values_of_another_arrow_type_to_an_arrow_column_is_a_schema_mismatch(hub):
    pushed(hub, pd.DataFrame({"id": arrow_series([1, None], pa.int64())}), "ids")
    with pytest.raises(SchemaMismatch) as err:
        hub.push(
            pd.DataFrame({"id": pd.array([1, 2], dtype="Int32")}),
            "ids",
            if_exists="append",
        )
    assert "'id'" in str(err.value) and "int64[pyarrow]" in str(err.value) and "Int32" in str(err.value)


# ---------------------------------------------------------------------------------------
# The codec alone: rows and Arrow, generic and native storage
# ---------------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path):
    con = sqlite3.connect(tmp_path / "codec.db")
    yield con
    con.close()


def _codec_roundtrips(df: pd.DataFrame) -> None:
    for native in (False, True):
        enc = encode(df, native_types=native)
        manifest = stored_manifest(enc)
        rows = enc.rows(0, enc.nrows)
        columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in enc.columns]
        assert_identical(decode(manifest, columns), df)
        half = enc.nrows // 2
        table = pa.Table.from_batches(
            [enc.to_arrow(0, half), enc.to_arrow(half, enc.nrows)]
        )
        assert_identical(decode_arrow(manifest, table), df)


def test_the_codec_round_trips_every_arrow_dtype(db):
    df = arrow_frame()
    _codec_roundtrips(df)
    check(db, df)
    assert schema(encode(df).manifest)[0] == ("int8", "int8[pyarrow]")


def test_chunked_and_empty_arrow_columns():
    columns = {
        name: pd.arrays.ArrowExtensionArray(
            pa.chunked_array([pa.array(v[:2], type=t), pa.array(v[2:], type=t)])
        )
        for name, (t, v) in TYPES.items()
    }
    # Chunks with different dictionaries: one set of categories.
    first, second = (
        pa.array(["z", None]).dictionary_encode(),
        DICTIONARIES["dictionary_string"][:2],
    )
    columns["dictionary"] = pd.arrays.ArrowExtensionArray(
        pa.chunked_array([first, second])
    )
    df = pd.DataFrame(columns)
    _codec_roundtrips(df)
    _codec_roundtrips(df.iloc[:0])


def test_storage_types():
    df = arrow_frame(
        [
            "int64",
            "float64",
            "bool",
            "binary",
            "timestamp_us_utc",
            "date32",
            "time64_us",
            "decimal128",
        ]
    )
    generic = [c.sql_type for c in encode(df).columns][2:10]
    native = [c.sql_type for c in encode(df, native_types=True).columns][2:10]
    assert generic == [
        "INTEGER",
        "REAL",
        "INTEGER",
        "BLOB",
        "INTEGER",
        "TEXT",
        "TEXT",
        "TEXT",
    ]
    assert native == [
        "INTEGER",
        "REAL",
        "BOOLEAN",
        "BLOB",
        "TIMESTAMPTZ",
        "DATE",
        "TIME",
        "NUMERIC",
    ]


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ints=st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), max_size=8),
    floats=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=64) | st.none(), max_size=8
    ),
    texts=st.lists(st.text() | st.none(), max_size=8),
)
def test_codec_roundtrip_property(ints, floats, texts):
    n = min(len(ints), len(floats), len(texts))
    texts = [
        None
        if v is None
        else v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        for v in texts
    ]
    df = pd.DataFrame(
        {
            "ints": arrow_series(ints[:n], pa.int64()).array,
            "floats": arrow_series(floats[:n], pa.float64()).array,
            "texts": arrow_series(texts[:n], pa.large_string()).array,
        },
        index=pd.Index(arrow_series(ints[:n], pa.int64()), name="level"),
    )
    _codec_roundtrips(df)


# ---------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("series", "fragments"),
    [
        (
            arrow_series([2**63, None], pa.uint64()),
            ["uint64 value 9223372036854775808", "2**63-1"],
        ),
        (
            arrow_series([np.float16(1.5), None], pa.float16()),
            ["halffloat[pyarrow]", "accepted Arrow-backed dtypes"],
        ),
        (
            arrow_series([None, None], pa.null()),
            ["null[pyarrow]", "accepted Arrow-backed dtypes"],
        ),
        (
            arrow_series(
                [pa.scalar((1, 2, 3), type=pa.month_day_nano_interval()).as_py()],
                pa.month_day_nano_interval(),
            ),
            ["month_day_nano_interval[pyarrow]", "accepted Arrow-backed dtypes"],
        ),
        (
            arrow_series([[1]], pa.list_(pa.timestamp("us"))),
            ["list<item: timestamp[us]>[pyarrow]", "accepted"],
        ),
        (
            arrow_series([[b"x"]], pa.list_(pa.binary())),
            ["list<item: binary>[pyarrow]", "accepted"],
        ),
        (
            arrow_series([[("a", 1)]], pa.map_(pa.string(), pa.int64())),
            ["map<string, int64>[pyarrow]", "accepted"],
        ),
        (
            arrow_series([b"ab"], pa.binary(2)),
            ["fixed_size_binary[2][pyarrow]", "accepted"],
        ),
        (arrow_series([1, None], pa.date64()), ["date64 value 1 ms", "whole days"]),
        # int64's smallest value is pandas' NaT: stored, it would come back as a null.
        (
            arrow_series([0, -(2**63), None], pa.timestamp("us", "UTC")),
            ["timestamp[us, tz=UTC] value -9223372036854775808 at position 1", "NaT"],
        ),
        (arrow_series([-(2**63)], pa.duration("s")), ["duration[s] value -9223372036854775808 at position 0", "NaT"]),
        (arrow_series([None, -(2**63)], pa.time64("ns")), ["time64[ns] value -9223372036854775808 at position 1", "NaT"]),
        # Lists and structs are stored as JSON, which has no NaN or infinity.
        (arrow_series([[1.5], [NAN]], pa.list_(pa.float64())), ["position 1", "non-finite float nan"]),
        (
            arrow_series(
                pa.DictionaryArray.from_arrays(pa.array([0, 1]), pa.array(["a", "a"]))
            ),
            ["dictionary<values=string", "holds a null or a value twice"],
        ),
        (
            arrow_series([None], pa.struct([("a", pa.int8()), ("a", pa.int8())])),
            ["struct<a: int8, a: int8>[pyarrow]", "accepted"],
        ),
    ],
    ids=[
        "uint64-above-int64",
        "float16",
        "null",
        "interval",
        "list-of-timestamps",
        "list-of-binary",
        "map",
        "fixed-size-binary",
        "date64-not-a-day",
        "timestamp-at-nat",
        "duration-at-nat",
        "time64-ns-at-nat",
        "list-of-floats-with-nan",
        "dictionary-with-repeats",
        "struct-duplicate-fields",
    ],
)
def test_unsupported_arrow_dtypes_are_refused_naming_the_column(hub, series, fragments):
    df = pd.DataFrame({"culprit": series})
    with pytest.raises(ValidationError) as err:
        encode(df)
    message = str(err.value)
    assert "column 'culprit'" in message
    for fragment in fragments:
        assert fragment in message
    with pytest.raises(ValidationError, match="column 'culprit'"):
        hub.push(df, "refused")
    assert hub.datasets().empty
