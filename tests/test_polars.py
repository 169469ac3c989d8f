"""A pushed polars DataFrame comes back equal, every kind converts to polars with ``to="polars"``,
and appends across kinds match on Arrow types, on both backends."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from frametools import assert_identical

import dsnotebook as dsn
from dsnotebook.errors import SchemaMismatch, ValidationError

PARIS = "Europe/Paris"


def polars_frame() -> pl.DataFrame:
    """One column of each polars dtype dsnotebook stores, with nulls (and NaN) among the values."""
    return pl.DataFrame(
        {
            "i64": pl.Series([1, None, 2**62 + 1], dtype=pl.Int64),
            "i8": pl.Series([-128, 127, None], dtype=pl.Int8),
            "u32": pl.Series([0, None, 2**32 - 1], dtype=pl.UInt32),
            "u64": pl.Series([None, 2**63 - 1, 0], dtype=pl.UInt64),
            "f64": pl.Series([1.5, float("nan"), None], dtype=pl.Float64),
            "f32": pl.Series([-0.0, None, float("inf")], dtype=pl.Float32),
            "s": pl.Series(["a", None, ""], dtype=pl.String),
            "b": pl.Series([True, None, False], dtype=pl.Boolean),
            "bin": pl.Series([b"\x00", None, b"z"], dtype=pl.Binary),
            "cat": pl.Series(["lo", None, "hi"], dtype=pl.Categorical),
            "enum": pl.Series(["hi", "lo", None], dtype=pl.Enum(["lo", "hi"])),
            "ts_tz": pl.Series([dt.datetime(2024, 3, 31, 1, 59), None, dt.datetime(1, 1, 1)]).dt.replace_time_zone(PARIS),
            "ts_ns": pl.Series([dt.datetime(2024, 1, 1), dt.datetime(1970, 1, 1), None], dtype=pl.Datetime("ns")),
            "ts_ms": pl.Series([None, dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 2)], dtype=pl.Datetime("ms", "UTC")),
            "dec": pl.Series([decimal.Decimal("1.20"), None, decimal.Decimal("-3.45")], dtype=pl.Decimal(10, 2)),
            "date": pl.Series([dt.date(2024, 3, 31), None, dt.date(1, 1, 1)], dtype=pl.Date),
            "time": pl.Series([dt.time(10, 0, 0, 250), None, dt.time(23, 59, 59, 999999)], dtype=pl.Time),
            "dur": pl.Series([dt.timedelta(seconds=1), None, dt.timedelta(days=-2, microseconds=3)], dtype=pl.Duration("us")),
            "dur_ns": pl.Series([1, None, -5], dtype=pl.Int64).cast(pl.Duration("ns")),
            "list": pl.Series([[1, 2], None, []], dtype=pl.List(pl.Int64)),
            "list_s": pl.Series([["a", None], [], None], dtype=pl.List(pl.String)),
            "array": pl.Series([[1.5, 2.0], None, [0.0, -1.0]], dtype=pl.Array(pl.Float64, 2)),
            "struct": pl.Series(
                [{"a": 1, "b": "x"}, None, {"a": None, "b": "y"}], dtype=pl.Struct({"a": pl.Int64, "b": pl.String})
            ),
        }
    )


def assert_polars_equal(pulled: object, pushed: pl.DataFrame) -> None:
    """``.equals()``, the same schema, and what ``equals`` does not look at: -0.0 against 0.0."""
    assert isinstance(pulled, pl.DataFrame)
    assert pulled.schema == pushed.schema
    assert pulled.equals(pushed)
    for name, dtype in pushed.schema.items():
        if dtype.is_float():
            assert np.array_equal(np.signbit(pulled[name].fill_null(1.0).to_numpy()), np.signbit(pushed[name].fill_null(1.0).to_numpy()))


def test_a_polars_frame_comes_back_equal(hub):
    pushed = polars_frame()
    hub.check(pushed, "p")
    hub.push(pushed, "p").wait()
    assert_polars_equal(hub.pull("p"), pushed)
    # A NaN stays apart from a null.
    pulled = hub.pull("p")
    assert pulled["f64"].is_nan().to_list() == [False, True, None] and pulled["f64"].is_null().to_list() == [False, False, True]
    assert hub.pull("p", columns=["struct", "cat", "enum"], limit=2).equals(pushed.select(["struct", "cat", "enum"]).head(2))
    batches = list(hub.iter_batches("p", batch_rows=2))
    assert [type(b) for b in batches] == [pl.DataFrame, pl.DataFrame]
    assert_polars_equal(pl.concat(batches), pushed)


def test_a_polars_frame_converts_to_arrow_and_pandas(hub):
    pushed = polars_frame()
    hub.push(pushed, "p").wait()
    arrow = hub.pull("p", to="arrow")
    expected = pushed.to_arrow(compat_level=pl.CompatLevel.oldest())
    assert arrow.schema.equals(expected.schema, check_metadata=True)
    # Arrow's equality never holds for NaN: the float column is compared by its parts.
    assert arrow.drop_columns(["f64"]).equals(expected.drop_columns(["f64"]))
    assert str(arrow["f64"].to_pylist()) == str(expected["f64"].to_pylist()) == "[1.5, nan, None]"
    as_pandas = hub.pull("p", to="pandas")
    assert isinstance(as_pandas, pd.DataFrame) and as_pandas.columns.tolist() == pushed.columns
    assert str(as_pandas["i64"].dtype) == "int64[pyarrow]" and as_pandas["i64"].iloc[2] == 2**62 + 1
    assert_identical(as_pandas, pushed.to_arrow().to_pandas(types_mapper=pd.ArrowDtype))
    arrow_batches = list(hub.iter_batches("p", batch_rows=2, to="arrow"))
    assert all(isinstance(b, pa.Table) for b in arrow_batches)
    assert pa.concat_tables(arrow_batches).drop_columns(["f64"]).equals(arrow.drop_columns(["f64"]))


def test_a_dataframe_converts_to_polars(hub):
    df = pd.DataFrame(
        {
            "n": [1, 2, 3],
            "x": [1.5, np.nan, -2.0],
            "s": ["a", None, "c"],
            "at": pd.to_datetime(["2024-01-01", None, "2024-01-03"]).tz_localize(PARIS),
            "c": pd.Categorical(["lo", "hi", None]),
        }
    )
    hub.push(df, "d").wait()
    pulled = hub.pull("d", to="polars")
    assert pulled.equals(pl.from_arrow(pa.Table.from_pandas(df)))
    assert pulled.schema["n"] == pl.Int64 and pulled.schema["at"] == pl.Datetime("us", PARIS)
    assert pulled["x"].to_list() == [1.5, None, -2.0]  # NaN is pandas' missing value: null, as from_pandas gives
    assert pulled["c"].to_list() == ["lo", "hi", None]
    indexed = df.set_index("s")
    hub.push(indexed, "i").wait()
    assert hub.pull("i", to="polars").columns == ["n", "x", "at", "c", "s"]  # the index as a column, as for arrow
    batches = list(hub.iter_batches("d", batch_rows=2, to="polars"))
    assert [type(b) for b in batches] == [pl.DataFrame, pl.DataFrame]
    assert pl.concat(batches).equals(pulled)


def test_a_series_and_a_table_convert_to_polars(hub):
    hub.push(pd.Series([1.5, None, 3.0], name="price"), "s").wait()
    assert hub.pull("s", to="polars").equals(pl.DataFrame({"price": [1.5, None, 3.0]}))
    table = pa.table({"a": pa.array([1, None], pa.int32()), "t": pa.array([1, 2], pa.time64("ns"))})
    hub.push(table, "t").wait()
    pulled = hub.pull("t", to="polars")
    assert pulled.equals(pl.from_arrow(table)) and pulled.schema == {"a": pl.Int32, "t": pl.Time}
    assert [type(b) for b in hub.iter_batches("t", batch_rows=1, to="polars")] == [pl.DataFrame, pl.DataFrame]


# ---------------------------------------------------------------------------------------
# Appends across kinds
# ---------------------------------------------------------------------------------------


def numpy_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": np.array([1, 2], dtype=np.int64),
            "f": [1.5, np.nan],
            "s": ["a", np.nan],
            "o": pd.Series(["x", None], dtype=object),
            "at": pd.to_datetime(["2024-01-01", None]).tz_localize(PARIS).as_unit("us"),
            "b": [True, False],
        }
    )


def polars_rows(*, nulls: bool) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "i": pl.Series([None, 4] if nulls else [3, 4], dtype=pl.Int64),
            "f": pl.Series([None, float("nan")] if nulls else [2.5, float("nan")], dtype=pl.Float64),
            "s": [None, "d"],
            "o": ["y", None],
            "at": pl.Series([None, dt.datetime(2024, 2, 1)]).dt.replace_time_zone(PARIS),
            "b": pl.Series([None, False] if nulls else [True, False], dtype=pl.Boolean),
        }
    )


def test_polars_rows_that_fit_keep_the_numpy_dtypes(hub):
    hub.push(numpy_frame(), "n").wait()
    hub.push(polars_rows(nulls=False), "n", if_exists="append").wait()
    expected = pd.DataFrame(
        {
            "i": np.array([1, 2, 3, 4], dtype=np.int64),
            "f": [1.5, np.nan, 2.5, np.nan],
            "s": ["a", np.nan, np.nan, "d"],
            "o": pd.Series(["x", None, "y", None], dtype=object),
            "at": pd.to_datetime(["2024-01-01", None, None, "2024-02-01"]).tz_localize(PARIS).as_unit("us"),
            "b": [True, False, True, False],
        }
    )
    assert_identical(hub.pull("n"), expected)


def test_polars_nulls_that_numpy_cannot_hold_take_the_appended_dtype(hub):
    hub.push(numpy_frame(), "n").wait()
    hub.push(polars_rows(nulls=True), "n", if_exists="append").wait()
    pulled = hub.pull("n")
    expected = pd.DataFrame(
        {
            "i": pd.array([1, 2, None, 4], dtype="int64[pyarrow]"),
            # The NumPy NaN and the polars NaN stay NaN, the polars null is null.
            "f": pd.array(pa.array([1.5, np.nan, None, np.nan], from_pandas=False), dtype="double[pyarrow]"),
            "s": ["a", np.nan, np.nan, "d"],
            "o": pd.Series(["x", None, "y", None], dtype=object),
            "at": pd.to_datetime(["2024-01-01", None, None, "2024-02-01"]).tz_localize(PARIS).as_unit("us"),
            "b": pd.array([True, False, None, False], dtype="bool[pyarrow]"),
        }
    )
    assert_identical(pulled, expected)
    assert pulled["f"].isna().tolist() == [False, False, True, False]
    assert isinstance(hub.pull("n", version=1)["i"].dtype, np.dtype)  # the first version is untouched


def test_pandas_and_arrow_rows_appended_to_a_polars_frame_keep_its_kind(hub):
    first = polars_rows(nulls=True)
    hub.push(first, "p").wait()
    hub.push(numpy_frame(), "p", if_exists="append").wait()
    table = pa.table(
        {
            "i": pa.array([7], pa.int64()),
            "f": pa.array([None], pa.float64()),
            "s": pa.array(["t"], pa.string()),
            "o": pa.array(["u"], pa.large_string()),
            "at": pa.array([0], pa.timestamp("us", PARIS)),
            "b": pa.array([True]),
        }
    )
    hub.push(table, "p", if_exists="append").wait()
    pulled = hub.pull("p")
    expected = pl.concat([first, pl.from_pandas(numpy_frame(), nan_to_null=False), pl.from_arrow(table)])
    assert_polars_equal(pulled, expected)
    assert pulled["f"].is_nan().to_list() == [None, True, False, True, None]  # the NumPy NaN stays NaN
    assert len(hub.versions("p")) == 3


def test_arrow_backed_pandas_rows_append_to_numpy_columns(hub):
    hub.push(numpy_frame(), "n").wait()
    more = pd.DataFrame(
        {
            "i": pd.array([5], dtype="int64[pyarrow]"),
            "f": pd.array([0.25], dtype="double[pyarrow]"),
            "s": pd.array(["e"], dtype="string[pyarrow]"),
            "o": pd.array(["w"], dtype=pd.ArrowDtype(pa.large_string())),
            "at": pd.array([pd.Timestamp("2024-05-01", tz=PARIS)], dtype=pd.ArrowDtype(pa.timestamp("us", PARIS))),
            "b": pd.array([True], dtype="bool[pyarrow]"),
        }
    )
    hub.push(more, "n", if_exists="append").wait()
    expected = pd.concat([numpy_frame(), more.astype(numpy_frame().dtypes.to_dict())], ignore_index=True)
    assert_identical(hub.pull("n"), expected)


@pytest.mark.parametrize(
    ("column", "values", "words"),
    [
        ("i", pl.Series([3, 4], dtype=pl.Int32), "int32"),
        ("f", pl.Series([3, 4], dtype=pl.Int64), "int64[pyarrow]"),
        ("at", pl.Series([dt.datetime(2024, 1, 1)] * 2).dt.replace_time_zone("UTC"), "UTC"),
        ("at", pl.Series([dt.datetime(2024, 1, 1)] * 2, dtype=pl.Datetime("ns", PARIS)), "ns"),
        ("b", pl.Series(["yes", "no"]), "large_string"),
    ],
    ids=["int32", "int_for_float", "other_time_zone", "other_unit", "string_for_bool"],
)
def test_an_append_of_another_arrow_type_is_refused_naming_the_column(hub, column, values, words):
    hub.push(numpy_frame(), "n").wait()
    more = polars_rows(nulls=False).with_columns(values.alias(column))
    with pytest.raises(SchemaMismatch) as err:
        hub.push(more, "n", if_exists="append")
    assert err.value.retyped[0][0] == column and f"'{column}'" in str(err.value) and words in str(err.value)
    assert len(hub.versions("n")) == 1


# ---------------------------------------------------------------------------------------
# Refused dtypes, the module helpers, the async hub, and polars as an optional extra
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "words"),
    [
        (pl.Series("bad", [object(), None], dtype=pl.Object), "dtype Object"),
        (pl.Series("bad", [None, None], dtype=pl.Null), "dtype Null (Arrow type null)"),
        (pl.Series("bad", [1, None], dtype=pl.Int128), "dtype Int128"),
        (pl.Series("bad", [1.0, None], dtype=pl.Float16), "dtype Float16 (Arrow type halffloat)"),
        (pl.Series("bad", [{"a": 1}, None], dtype=pl.Struct({"a": pl.Int128})), "dtype Struct({'a': Int128})"),
    ],
    ids=["object", "null", "int128", "float16", "struct_of_int128"],
)
def test_a_polars_dtype_the_codec_cannot_store_is_refused_up_front(hub, column, words):
    pushed = pl.DataFrame({"ok": [1, 2]}).with_columns(column)
    with pytest.raises(ValidationError, match="column 'bad' of the polars DataFrame") as info:
        hub.check(pushed, "p")
    assert words in str(info.value) and "accepted polars dtypes" in str(info.value)
    with pytest.raises(ValidationError, match="column 'bad'"):
        hub.push(pushed, "p")
    assert hub.tasks().empty and hub.datasets().empty


def test_the_module_helpers_take_polars_frames(db_url, monkeypatch):
    monkeypatch.setenv("DSNOTEBOOK_URL", db_url)
    pushed = pl.DataFrame({"a": [1, None], "c": pl.Series(["x", "y"], dtype=pl.Categorical)})
    dsn.push(pushed, "m").wait()
    assert_polars_equal(dsn.pull("m"), pushed)
    assert dsn.pull("m", to="arrow").equals(pushed.to_arrow())


@pytest.mark.asyncio
async def test_the_async_hub_takes_and_gives_polars_frames(db_url):
    pushed = polars_frame()
    async with dsn.AsyncHub(db_url) as hub:
        await hub.check(pushed, "p")
        await (await hub.push(pushed, "p"))
        assert_polars_equal(await hub.pull("p"), pushed)
        await (await hub.push(pd.DataFrame({"a": [1, 2]}), "d"))
        assert (await hub.pull("d", to="polars")).equals(pl.DataFrame({"a": [1, 2]}))
        batches = [b async for b in hub.iter_batches("p", batch_rows=2, to="polars")]
        assert_polars_equal(pl.concat(batches), pushed)


def _run(tmp_path, body: str, *, without_polars: bool) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh interpreter; ``without_polars``: where ``import polars`` fails, as
    when it is not installed."""
    block = "import sys\nsys.modules['polars'] = None  # makes 'import polars' raise ImportError\n"
    script = (block if without_polars else "") + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "DSNOTEBOOK_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"},
    )


def test_importing_dsnotebook_does_not_import_polars(tmp_path):
    done = _run(tmp_path, "import sys, dsnotebook\nassert 'polars' not in sys.modules, 'polars was imported'", without_polars=False)
    assert done.returncode == 0, done.stderr


def test_without_polars_pushes_and_pulls_work_and_to_polars_says_how_to_install_it(tmp_path):
    body = """
        import pandas as pd
        import pyarrow as pa
        import dsnotebook as dsn
        from dsnotebook.errors import UsageError
        dsn.push(pd.DataFrame({'a': [1]}), 'd').wait()
        dsn.push(pa.table({'a': [1]}), 't').wait()
        assert dsn.pull('d')['a'].tolist() == [1] and dsn.pull('t', to='arrow').equals(pa.table({'a': [1]}))
        try:
            dsn.pull('d', to='polars')
        except UsageError as exc:
            print(exc)
        else:
            raise SystemExit('no error')
        finally:
            dsn.default_hub().close()
    """
    done = _run(tmp_path, body, without_polars=True)
    assert done.returncode == 0, done.stderr
    assert 'to="polars" needs the polars package' in done.stdout
    assert 'pip install "dsnotebook[polars]"' in done.stdout
