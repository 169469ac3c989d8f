"""``dsnotebook pull -o x.parquet`` writes the Arrow table the hub gives, without a pandas round
trip, and ``pd.read_parquet`` reads back the frame pandas used to write: index included, for
DataFrames, Series, Arrow-backed columns and pushed pyarrow Tables. (pandas itself cannot read back an Arrow-backed list column from a
file it wrote: the pandas metadata names a dtype ``pandas_dtype`` does not parse.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import dsnotebook as dsn
from dsnotebook.cli.datasets import as_frame

from frametools import STR

FRAMES = [
    pytest.param(
        pd.DataFrame(
            {
                "n": [1, 2, 3],
                "x": [1.5, np.nan, 3.0],
                "s": pd.Series(["a", None, "c"], dtype=STR),
                "t": pd.to_datetime(["2026-01-01", None, "2026-01-03"]).tz_localize("UTC"),
                "c": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
                "i": pd.array([1, None, 3], dtype="Int64"),
            }
        ),
        id="frame",
    ),
    pytest.param(pd.DataFrame({"n": [1, 2]}, index=pd.Index(["a", "b"], name="key")), id="named-index"),
    pytest.param(pd.DataFrame({"n": [1, 2]}, index=pd.Index([10, 20])), id="unnamed-index"),
    pytest.param(pd.DataFrame({"n": [1, 2]}, index=pd.RangeIndex(5, 9, 2)), id="range-index"),
    pytest.param(
        pd.DataFrame({"n": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "j"])),
        id="multi-index",
    ),
    pytest.param(pd.Series([1.5, 2.5], name="price"), id="series"),
    pytest.param(pd.Series([1, 2], index=pd.Index(["x", "y"], name="k"), name="n"), id="series-with-index"),
    pytest.param(
        pd.DataFrame(
            {
                "a": pd.array([1, None], dtype=pd.ArrowDtype(pa.int64())),
                "d": pd.array([1.5, None], dtype=pd.ArrowDtype(pa.float32())),
                "s": pd.array(["x", None], dtype=pd.ArrowDtype(pa.string())),
            }
        ),
        id="arrow-backed-frame",
    ),
    pytest.param(pa.table({"n": [1, None], "s": ["x", "y"], "t": pa.array([1, 2], pa.timestamp("ns", "UTC"))}), id="table"),
    pytest.param(pa.Table.from_pandas(pd.DataFrame({"n": [1, 2]}, index=pd.Index(["a", "b"], name="key"))), id="table-from-pandas"),
]


@pytest.mark.parametrize("pushed", FRAMES)
def test_parquet_reads_back_as_the_pandas_writer_wrote_it(cli, url, tmp_path, pushed):
    with dsn.connect(url) as hub:
        hub.push(pushed, "d").wait(timeout=60)
        # What pull wrote before: the pandas frame, through DataFrame.to_parquet.
        as_frame(hub.pull("d", to="pandas")).to_parquet(tmp_path / "old.parquet")
    code, out, err = cli("--url", url, "pull", "d", "-o", str(tmp_path / "new.parquet"))
    assert code == 0, err
    old = pd.read_parquet(tmp_path / "old.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "new.parquet"), old, check_exact=True)
    assert out.strip() == f"wrote {len(old):,} rows × {old.shape[1]} columns to {tmp_path / 'new.parquet'}"


def test_a_pushed_table_is_written_as_pulled(cli, url, tmp_path):
    import pyarrow.parquet as pq

    table = pa.table({"n": pa.array([1, None], pa.int32()), "d": pa.array([1, 2], pa.duration("ms"))})
    with dsn.connect(url) as hub:
        hub.push(table, "t").wait(timeout=60)
    assert cli("--url", url, "pull", "t", "-o", str(tmp_path / "t.parquet"))[0] == 0
    assert pq.read_table(tmp_path / "t.parquet").select(["n", "d"]).cast(table.schema).equals(table)
    assert pq.read_table(tmp_path / "t.parquet").schema.field("n").type == pa.int32()


def test_an_older_version(cli, url, tmp_path):
    with dsn.connect(url) as hub:
        hub.push(pa.table({"n": [1]}), "v").wait(timeout=60)
        hub.push(pd.DataFrame({"m": [2.5, 3.5]}), "v").wait(timeout=60)
    assert cli("--url", url, "pull", "v", "--version", "1", "-o", str(tmp_path / "v1.parquet"))[0] == 0
    assert cli("--url", url, "pull", "v", "-o", str(tmp_path / "v2.parquet"))[0] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "v1.parquet"), pd.DataFrame({"n": pd.array([1], dtype=pd.ArrowDtype(pa.int64()))}))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "v2.parquet"), pd.DataFrame({"m": [2.5, 3.5]}))


def test_a_failed_write_removes_the_file_it_created(cli, url, tmp_path):
    # Parquet holds no struct without fields; the writer creates the file before it finds out.
    with dsn.connect(url) as hub:
        hub.push(pa.table({"s": pa.array([{}, {}], pa.struct([]))}), "e").wait(timeout=60)
    target = tmp_path / "e.parquet"
    code, out, err = cli("--url", url, "pull", "e", "-o", str(target))
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith(f"dsnotebook: error: -o {target}: cannot write 'e' as Parquet: ArrowNotImplementedError: ")
    assert "no child field" in lines[0]
    assert not target.exists()
