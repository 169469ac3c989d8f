"""A pull gives back the kind that was pushed (DataFrame, Series, pyarrow Table), or the kind asked
for with ``to=``, on both backends."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from frametools import assert_identical
from hubtools import execute

import dsnotebook as dsn
from dsnotebook.errors import ValidationError

SERIES = {
    "named": pd.Series([1.5, None, 3.0], name="price"),
    "unnamed": pd.Series(["a", None, "c"]),
    "index": pd.Series([1, 2, 3], index=pd.Index(["x", "y", "z"], name="key"), name="n"),
    "categorical": pd.Series(pd.Categorical(["lo", "hi", None, "lo"], categories=["lo", "hi"], ordered=True), name="level"),
    "tuple_name": pd.Series([True, False], name=("a", 1)),
}


def table() -> pa.Table:
    return pa.table(
        {
            "i": pa.array([1, None, 2**62 + 1], pa.int64()),
            "u8": pa.array([1, 2, None], pa.uint8()),
            "f": pa.array([1.5, None, -0.0], pa.float32()),
            "b": pa.array([True, None, False]),
            "s": pa.array(["a", None, "c"]),
            "ls": pa.array(["a", "", None], pa.large_string()),
            "bin": pa.array([b"\x00", None, b"z"]),
            "ts": pa.array([1, None, 3], pa.timestamp("ns", "Europe/Paris")),
            "ts_s": pa.array([1, 2, None], pa.timestamp("s")),
            "dur": pa.array([1, None, 3], pa.duration("ms")),
            "d": pa.array([dt.date(2024, 3, 31), None, dt.date(1, 1, 1)], pa.date32()),
            "t": pa.array([dt.time(10, 0, 0, 250), None, dt.time(23, 59)], pa.time64("us")),
            "dec": pa.array([decimal.Decimal("1.20"), None, decimal.Decimal("-3.45")], pa.decimal128(10, 2)),
            "cat": pa.array(["x", None, "x"]).dictionary_encode(),
        },
        metadata={"source": "sensor 7"},
    )


@pytest.mark.parametrize("series", SERIES.values(), ids=SERIES.keys())
def test_a_series_comes_back_identical(hub, series):
    hub.push(series, "s").wait()
    pulled = hub.pull("s")
    assert isinstance(pulled, pd.Series)
    pd.testing.assert_series_equal(pulled, series, check_exact=True, check_index_type=True)
    assert_identical(pulled.to_frame(), series.to_frame())
    assert_identical(hub.pull("s", to="pandas").to_frame(), series.to_frame())
    assert hub.pull("s", to="arrow").equals(pa.Table.from_pandas(series.to_frame()))


def test_a_series_as_arrow_names_its_column_and_keeps_a_non_default_index(hub):
    hub.push(SERIES["index"], "s").wait()
    hub.push(SERIES["unnamed"], "u").wait()
    assert hub.pull("s", to="arrow").column_names == ["n", "key"]
    assert hub.pull("u", to="arrow").column_names == ["0"]


def test_a_dataframe_converts_on_request(hub):
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"]}, index=pd.Index([7, 8, 9], name="id"))
    hub.push(df, "d").wait()
    assert_identical(hub.pull("d"), df)
    assert_identical(hub.pull("d", to="pandas"), df)
    arrow = hub.pull("d", to="arrow")
    assert arrow.equals(pa.Table.from_pandas(df)) and arrow.column_names == ["a", "b", "id"]
    assert hub.pull("d", columns=["b"], limit=2, to="arrow").to_pydict() == {"b": ["x", None], "id": [7, 8]}


def test_a_table_comes_back_equal_with_its_metadata(hub):
    pushed = table()
    hub.check(pushed, "t")
    hub.push(pushed, "t").wait()
    pulled = hub.pull("t")
    assert isinstance(pulled, pa.Table)
    assert pulled.equals(pushed, check_metadata=True)
    assert hub.pull("t", columns=["s", "dec"], limit=1).equals(pushed.select(["s", "dec"]).slice(0, 1))
    as_pandas = hub.pull("t", to="pandas")
    assert isinstance(as_pandas, pd.DataFrame) and as_pandas.columns.tolist() == pushed.column_names
    assert str(as_pandas["i"].dtype) == "int64[pyarrow]" and as_pandas["i"].iloc[2] == 2**62 + 1


def test_a_table_made_from_a_frame_keeps_its_index_columns_as_columns(hub):
    pushed = pa.Table.from_pandas(pd.DataFrame({"a": [1, 2]}, index=pd.Index([5, 6], name="k")))
    hub.push(pushed, "t").wait()
    assert hub.pull("t").equals(pushed, check_metadata=True)


@pytest.mark.parametrize(
    "column",
    [
        pa.array([[1], None, []]),
        pa.array([{"a": 1, "b": "x"}, None]),
        pa.array([1.0, float("nan"), None]),
        pa.array([1, 1001, None], pa.time64("ns")),
        pa.array([dt.date(2020, 1, 1), None], pa.date64()),
        pa.array([1, None, 2**63], pa.uint64()).slice(0, 2),
    ],
    ids=["list", "struct", "nan_and_null", "nanoseconds_of_a_time", "date64", "uint64"],
)
def test_table_columns_that_pandas_alone_would_change_come_back_equal(hub, column):
    """Each column goes through an Arrow-backed pandas column: a NaN stays apart from a null,
    a time keeps its nanoseconds, a list stays a list."""
    pushed = pa.table({"ok": pa.array([1, 2, 3])[: len(column)], "col": column})
    hub.push(pushed, "t").wait()
    pulled = hub.pull("t")
    assert pulled.schema.equals(pushed.schema)
    if pa.types.is_floating(column.type):  # Arrow's equality never holds for NaN
        for mask in (pc.is_null, pc.is_nan):
            assert mask(pulled["col"]).equals(mask(pushed["col"]))
        pulled, pushed = (t.set_column(1, "col", pc.fill_null(pc.if_else(pc.is_nan(t["col"]), 0.0, t["col"]), -1.0)) for t in (pulled, pushed))
    assert pulled.equals(pushed)


@pytest.mark.parametrize(
    ("column", "words"),
    [
        (pa.nulls(2), "null"),
        (pa.array(np.array([1.0, 2.0], dtype=np.float16)), "halffloat"),
        (pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())), "map<string, int64>"),
    ],
    ids=["null", "float16", "map"],
)
def test_a_table_column_the_codec_cannot_store_is_refused_up_front(hub, column, words):
    pushed = pa.table({"ok": pa.array([1, 2]), "bad": column})
    with pytest.raises(ValidationError, match="column 'bad'") as info:
        hub.check(pushed, "t")
    assert words in str(info.value)
    with pytest.raises(ValidationError, match="column 'bad'"):
        hub.push(pushed, "t")
    assert hub.tasks().empty and hub.datasets().empty


def test_a_table_with_repeated_names_is_refused(hub):
    pushed = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(ValidationError, match="duplicate column names 'a'"):
        hub.push(pushed, "t")


@pytest.mark.parametrize(
    ("pushed", "kind"),
    [
        (SERIES["named"], pd.Series),
        (pd.DataFrame({"price": [1.0, 2.0, 3.0]}), pd.DataFrame),
        (pa.table({"price": [1.0, 2.0, 3.0]}), pa.Table),
    ],
    ids=["series", "frame", "arrow"],
)
def test_batches_come_in_the_kind_pushed_or_asked_for(hub, pushed, kind):
    hub.push(pushed, "b").wait()
    batches = list(hub.iter_batches("b", batch_rows=2))
    assert [type(b) for b in batches] == [kind, kind] and sum(len(b) for b in batches) == 3
    arrow = list(hub.iter_batches("b", batch_rows=2, to="arrow"))
    assert all(isinstance(b, pa.Table) for b in arrow)
    assert pa.concat_tables(arrow).column("price").to_pylist() == [1.5 if kind is pd.Series else 1.0, None if kind is pd.Series else 2.0, 3.0]
    pandas = list(hub.iter_batches("b", batch_rows=2, to="pandas"))
    expected = pd.Series if kind is pd.Series else pd.DataFrame
    assert all(type(b) is expected for b in pandas)
    whole = hub.pull("b", to="pandas")
    joined = pd.concat(pandas)
    if expected is pd.Series:
        pd.testing.assert_series_equal(joined, whole)
    else:
        assert_identical(joined, whole)


def test_appends_keep_the_kind_of_the_first_push(hub):
    series = pd.Series([1, 2], name="v")
    hub.push(series, "s").wait()
    hub.push(pd.DataFrame({"v": [3]}), "s", if_exists="append").wait()
    pd.testing.assert_series_equal(hub.pull("s"), pd.Series([1, 2, 3], name="v"))
    hub.push(pd.Series([4], name="v"), "s", if_exists="append").wait()
    pd.testing.assert_series_equal(hub.pull("s"), pd.Series([1, 2, 3, 4], name="v"))

    hub.push(pd.DataFrame({"v": [1]}), "d").wait()
    hub.push(pd.Series([2], name="v"), "d", if_exists="append").wait()
    assert_identical(hub.pull("d"), pd.DataFrame({"v": [1, 2]}))

    hub.push(pa.table({"v": pa.array([1], pa.int32())}), "a").wait()
    hub.push(pa.table({"v": pa.array([None], pa.int32())}), "a", if_exists="append").wait()
    hub.push(pd.DataFrame({"v": pd.array([3], dtype="int32[pyarrow]")}), "a", if_exists="append").wait()
    assert hub.pull("a").equals(pa.table({"v": pa.array([1, None, 3], pa.int32())}))


def test_a_series_and_a_frame_of_the_same_values_are_two_versions(hub):
    hub.push(pd.DataFrame({"v": [1, 2]}), "s").wait()
    version = hub.push(pd.Series([1, 2], name="v"), "s").wait()
    assert not version.deduplicated and version.version == 2
    assert isinstance(hub.pull("s"), pd.Series) and isinstance(hub.pull("s", version=1), pd.DataFrame)


def test_a_version_stored_without_a_kind_comes_back_as_a_dataframe(hub):
    series = pd.Series([1, 2], index=[3, 4], name="v")
    hub.push(series, "old").wait()
    (manifest,) = execute(hub, "SELECT manifest FROM dsn_versions")[0]
    manifest = json.loads(manifest) if isinstance(manifest, str) else manifest
    assert manifest.pop("pushed") == {"kind": "series", "name": "v"}
    text = json.dumps(manifest).replace("'", "''")
    execute(hub, f"UPDATE dsn_versions SET manifest = '{text}'")
    assert_identical(hub.pull("old"), series.to_frame())
    assert_identical(hub.pull("old", to="pandas"), series.to_frame())
    assert [type(b) for b in hub.iter_batches("old")] == [pd.DataFrame]


@pytest.mark.parametrize("to", ["numpy", "Pandas", "", 1, True], ids=["numpy", "case", "empty", "int", "bool"])
def test_a_bad_to_is_refused_naming_the_accepted_values(hub, to):
    hub.push(pd.Series([1], name="v"), "s").wait()
    with pytest.raises(ValidationError, match=r"to: .* use one of 'pandas', 'arrow', 'polars'"):
        hub.pull("s", to=to)
    with pytest.raises(ValidationError, match=r"to: .* use one of 'pandas', 'arrow', 'polars'"):
        next(hub.iter_batches("s", to=to))


def test_the_module_helpers_take_tables_and_to(db_url, monkeypatch):
    monkeypatch.setenv("DSNOTEBOOK_URL", db_url)
    dsn.push(pa.table({"a": [1, 2]}), "m").wait()
    assert dsn.pull("m").equals(pa.table({"a": [1, 2]}))
    assert_identical(dsn.pull("m", to="pandas"), pd.DataFrame({"a": pd.array([1, 2], dtype="int64[pyarrow]")}))


@pytest.mark.asyncio
async def test_the_async_hub_gives_back_the_kind_pushed(db_url):
    async with dsn.AsyncHub(db_url) as hub:
        await (await hub.push(SERIES["index"], "s"))
        pd.testing.assert_series_equal(await hub.pull("s"), SERIES["index"])
        assert isinstance(await hub.pull("s", to="arrow"), pa.Table)
        await hub.check(table(), "t")
        await (await hub.push(table(), "t"))
        assert (await hub.pull("t")).equals(table(), check_metadata=True)
        batches = [b async for b in hub.iter_batches("t", batch_rows=2, to="pandas")]
        assert [type(b) for b in batches] == [pd.DataFrame, pd.DataFrame]
        with pytest.raises(ValidationError, match="to: 'numpy'"):
            await hub.pull("s", to="numpy")


def test_other_objects_are_refused_naming_what_is_accepted(hub):
    with pytest.raises(ValidationError) as caught:
        hub.check({"a": [1]}, "x")
    for accepted in ("pandas DataFrame or Series", "pyarrow Table or RecordBatchReader", "polars DataFrame or LazyFrame", "__arrow_c_stream__", "got dict"):
        assert accepted in str(caught.value)


def test_a_record_batch_is_pushed_and_pulled_as_a_table(hub):
    batch = pa.record_batch({"a": [1, None], "b": ["x", "y"]}, metadata={"k": "v"})
    hub.push(batch, "batch").wait()
    assert hub.pull("batch").equals(pa.Table.from_batches([batch]), check_metadata=True)
