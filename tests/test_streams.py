"""Pushing streams: a pyarrow RecordBatchReader, an object with ``__arrow_c_stream__`` and a polars
LazyFrame are read in slices into a spool file, and their rows come back as the stream gave them,
on both backends."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from frametools import assert_identical
from hubtools import wait_until

from dsnotebook.errors import SchemaMismatch, UploadCancelled, UploadError, ValidationError
from dsnotebook.store import streams

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("f", pa.float64()),
        ("s", pa.string()),
        ("cat", pa.dictionary(pa.int32(), pa.string())),
        ("dec", pa.decimal128(12, 3)),
        ("ns", pa.timestamp("ns", "Europe/Paris")),
        ("day", pa.date32()),
        ("t", pa.time64("us")),
        ("b", pa.bool_()),
        ("tags", pa.list_(pa.string())),
        ("pt", pa.struct([("x", pa.int32()), ("y", pa.string())])),
    ],
    metadata={"source": "meter 12"},
)


def _batch(rows: list[dict]) -> pa.RecordBatch:
    """A batch of ``rows``, its dictionary column encoded on its own (so each batch has its own)."""
    columns = {name: [r[name] for r in rows] for name in SCHEMA.names}
    arrays = []
    for field in SCHEMA:
        if pa.types.is_dictionary(field.type):
            arrays.append(pa.array(columns[field.name], pa.string()).dictionary_encode())
        else:
            arrays.append(pa.array(columns[field.name], field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def _row(i: int, **changes) -> dict:
    row = {
        "id": i,
        "f": i / 4,
        "s": f"row {i}",
        "cat": "low" if i % 2 else "high",
        "dec": decimal.Decimal(f"{i}.125"),
        "ns": pd.Timestamp(1_700_000_000_000_000_000 + i * 1_000, unit="ns"),
        "day": dt.date(2024, 1, 1) + dt.timedelta(days=i),
        "t": dt.time(12, 0, i % 60, 500),
        "b": i % 3 == 0,
        "tags": [f"t{i}", "x"] if i % 2 else [],
        "pt": {"x": i, "y": "p"},
    }
    row.update(changes)
    return row


def uneven_batches() -> list[pa.RecordBatch]:
    """Batches whose storage differs, one from the next: the version must take them all."""
    return [
        # Only nulls in the decimal column, a NaN but no null in the floats.
        _batch([_row(0, dec=None, f=float("nan")), _row(1, dec=None), _row(2, dec=None)]),
        # A null float only; a new category; a NUL character (which PostgreSQL's text cannot hold).
        _batch([_row(3, f=None, cat="mid"), _row(4, s="nul\x00inside"), _row(5)]),
        _batch([]),
        # Both a NaN and a null; a timestamp that carries nanoseconds.
        _batch([_row(6, f=float("nan")), _row(7, f=None, ns=pd.Timestamp(1_700_000_000_000_000_001, unit="ns")), _row(8)]),
        # Nulls everywhere.
        _batch([{name: None for name in SCHEMA.names} | {"id": 9}]),
    ]


def as_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def assert_tables_equal(pulled: pa.Table, pushed: pa.Table) -> None:
    """Equal schemas (with metadata) and cells; NaN equals NaN, and stays apart from null."""
    assert pulled.schema.equals(pushed.schema, check_metadata=True), (pulled.schema, pushed.schema)
    assert_identical(as_frame(pulled), as_frame(pushed))
    for name in pushed.column_names:
        if pa.types.is_floating(pushed.schema.field(name).type):
            for mask in (pc.is_null, pc.is_nan):
                assert mask(pulled[name]).equals(mask(pushed[name])), name


def reader(batches: list[pa.RecordBatch], schema: pa.Schema = SCHEMA) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(schema, batches)


@pytest.mark.parametrize("chunk_size", [4, 1000])
def test_a_reader_of_uneven_batches_comes_back_equal(hub, chunk_size):
    batches = uneven_batches()
    pushed = pa.Table.from_batches(batches, schema=SCHEMA)
    task = hub.push(reader(batches), "readings", chunk_size=chunk_size)
    version = task.wait()
    assert version.rows == pushed.num_rows == 10 and task.rows_total == 10 and task.rows_done == 10
    pulled = hub.pull("readings")
    assert isinstance(pulled, pa.Table)
    assert_tables_equal(pulled, pushed)
    assert_tables_equal(hub.pull("readings", to="arrow", columns=["f", "cat"], limit=8), pushed.select(["f", "cat"]).slice(0, 8))
    batches_back = list(hub.iter_batches("readings", batch_rows=3))
    assert [b.num_rows for b in batches_back] == [3, 3, 3, 1]
    assert_tables_equal(pa.concat_tables(batches_back), pushed)
    assert_identical(hub.pull("readings", to="pandas"), as_frame(pushed).set_axis(pd.RangeIndex(10)))
    # The categories are the union of the batches' dictionaries, in order of appearance.
    assert hub.pull("readings")["cat"].combine_chunks().dictionary.to_pylist() == ["high", "low", "mid"]


def test_the_same_stream_again_publishes_nothing_new(hub):
    first = hub.push(reader(uneven_batches()), "readings").wait()
    again = hub.push(reader(uneven_batches()), "readings")
    assert again.wait().version == first.version and again.deduplicated


def test_an_empty_reader_publishes_an_empty_version(hub):
    hub.push(reader([]), "nothing").wait()
    pulled = hub.pull("nothing")
    assert pulled.num_rows == 0 and pulled.schema.equals(SCHEMA, check_metadata=True)


class CapsuleStream:
    """Only the Arrow PyCapsule stream interface, as other Arrow libraries offer it."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


def test_an_arrow_capsule_stream_comes_back_as_a_table(hub):
    pushed = pa.Table.from_batches(uneven_batches()[:2], schema=SCHEMA)
    hub.push(CapsuleStream(pushed), "capsule").wait()
    assert_tables_equal(hub.pull("capsule"), pushed)


def test_a_polars_lazyframe_is_collected_in_batches(hub):
    lazy = pl.LazyFrame({"k": list(range(10)), "name": [f"n{i}" if i % 3 else None for i in range(10)]}).with_columns(
        (pl.col("k") * 1.5).alias("x")
    )
    hub.push(lazy, "lazy").wait()
    pulled = hub.pull("lazy")
    assert isinstance(pulled, pl.DataFrame) and pulled.equals(lazy.collect()) and pulled.schema == lazy.collect_schema()
    assert hub.pull("lazy", to="arrow").equals(lazy.collect().to_arrow())
    assert hub.versions("lazy")["rows"].tolist() == [10]


def test_a_polars_lazyframe_with_a_dtype_that_cannot_be_stored_is_refused_up_front(hub):
    lazy = pl.LazyFrame({"ok": [1, 2], "big": pl.Series([1, 2], dtype=pl.Int128)})
    with pytest.raises(ValidationError, match="'big'.*Int128"):
        hub.push(lazy, "refused")
    assert hub.tasks().empty


def test_a_stream_appends_to_a_frame_and_a_frame_to_a_stream(hub):
    table = pa.Table.from_batches(uneven_batches(), schema=SCHEMA)
    first, rest = table.slice(0, 4), table.slice(4)
    hub.push(first, "both").wait()
    hub.push(reader(rest.to_batches(max_chunksize=2)), "both", if_exists="append").wait()
    assert_tables_equal(hub.pull("both"), table)
    hub.push(reader(first.to_batches()), "other").wait()
    hub.push(rest, "other", if_exists="append").wait()
    assert_tables_equal(hub.pull("other"), table)


@pytest.mark.parametrize(
    ("field", "words"),
    [
        (pa.field("half", pa.float16()), ["'half'", "halffloat"]),
        (pa.field("m", pa.map_(pa.string(), pa.int64())), ["'m'", "map<string, int64>"]),
    ],
    ids=["float16", "map"],
)
def test_a_stream_of_an_unstorable_type_is_refused_before_anything_is_read(hub, field, words):
    schema = pa.schema([("ok", pa.int64()), field])
    source = reader([pa.RecordBatch.from_pylist([{"ok": 1, field.name: None}], schema=schema)], schema)
    with pytest.raises(ValidationError) as caught:
        hub.push(source, "refused")
    for word in words:
        assert word in str(caught.value)
    assert hub.tasks().empty
    assert source.read_all().num_rows == 1  # nothing was read


def test_a_value_refused_mid_stream_fails_the_upload_and_keeps_the_previous_version(hub):
    schema = pa.schema([("u", pa.uint64())])
    hub.push(reader([pa.record_batch([pa.array([1, 2], pa.uint64())], schema=schema)], schema), "big").wait()
    bad = [
        pa.record_batch([pa.array([3, 4], pa.uint64())], schema=schema),
        pa.record_batch([pa.array([2**63 + 5], pa.uint64())], schema=schema),
    ]
    task = hub.push(reader(bad, schema), "big")
    with pytest.raises(UploadError) as caught:
        task.wait()
    assert "'u'" in str(caught.value) and "9223372036854775813" in str(caught.value)
    assert not task.can_retry  # the stream was read; nothing is left to push again
    assert hub.versions("big")["version"].tolist() == [1]
    assert hub.pull("big")["u"].to_pylist() == [1, 2]


def test_cancelling_while_the_stream_is_read_leaves_no_version_and_no_spool_file(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    schema = pa.schema([("n", pa.int64())])
    hub.push(pa.table({"n": [0]}), "counted").wait()
    reached, release = threading.Event(), threading.Event()

    def batches():
        yield pa.record_batch([pa.array([1, 2])], schema=schema)
        reached.set()
        release.wait(30)
        yield pa.record_batch([pa.array([3])], schema=schema)

    task = hub.push(pa.RecordBatchReader.from_batches(schema, batches()), "counted")
    assert reached.wait(30)
    wait_until(lambda: task.rows_total == 2, what="the first batch counted")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("dsnotebook-stream-")]
    assert task.cancel()
    release.set()
    with pytest.raises(UploadCancelled):
        task.wait(timeout=30)
    assert task.status == "cancelled"
    assert hub.pull("counted", to="arrow")["n"].to_pylist() == [0]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("dsnotebook-stream-")]


def test_the_total_grows_as_the_stream_is_read(hub):
    seen: list[tuple[str, int, int]] = []
    schema = pa.schema([("n", pa.int64())])
    source = reader([pa.record_batch([pa.array(range(k * 10, k * 10 + 10))], schema=schema) for k in range(3)], schema)
    task = hub.push(source, "grows")
    task.subscribe(lambda p: seen.append((p.status, p.rows_total, p.rows_done)))
    task.wait()
    totals = [total for _, total, _ in seen]
    assert totals == sorted(totals) and totals[-1] == 30
    assert all(done <= total for _, total, done in seen)
    assert hub.tasks(dataset="grows")["rows_total"].tolist() == [30]


def test_slices_of_a_large_batch_are_read_one_at_a_time(hub, monkeypatch):
    monkeypatch.setattr(streams, "SLICE_ROWS", 3)
    pushed = pa.Table.from_batches(uneven_batches(), schema=SCHEMA).combine_chunks()
    hub.push(reader(pushed.to_batches()), "sliced", chunk_size=4).wait()
    assert_tables_equal(hub.pull("sliced"), pushed)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pyarrow as pa
    import dsnotebook as dsn

    def status(field):
        # VmHWM is this process's own peak. (ru_maxrss is not: after a fork it starts from the
        # forking process's peak, which a long test run makes large.)
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    rows, per_batch = 2_000_000, 50_000
    schema = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("label", pa.string()),
                        ("at", pa.timestamp("us", "UTC"))])

    def batches():
        for start in range(0, rows, per_batch):
            ids = np.arange(start, start + per_batch)
            labels = pa.array(np.char.add("row-", ids.astype("U12")).astype(object) + "-" + "x" * 60)
            yield pa.record_batch([pa.array(ids), pa.array(ids * 0.5), labels,
                                   pa.array(ids * 1_000_000).cast(pa.timestamp("us", "UTC"))], schema=schema)

    hub = dsn.connect(sys.argv[1])
    hub.wait_housekeeping()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # start the peak afresh from here
    except OSError:
        pass
    before = status("VmRSS")
    version = hub.push(pa.RecordBatchReader.from_batches(schema, batches()), "big").wait()
    print(json.dumps({"rows": version.rows, "growth": status("VmHWM") - before}))
    hub.close()
    """
)


@pytest.mark.sqlite_only
def test_a_reader_larger_than_the_growth_allowed_is_pushed_in_bounded_memory(db_url, tmp_path):
    """190 MB of Arrow rows (and far more once encoded at once) pass with the process's peak
    memory growing by less than 200 MB (65 MB measured on SQLite)."""
    script = tmp_path / "push_big.py"
    script.write_text(MEMORY_SCRIPT)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(script), db_url], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["rows"] == 2_000_000
    assert figures["growth"] < 200 * 2**20, f"peak memory grew by {figures['growth'] / 2**20:.0f} MB"


def test_appended_dictionary_columns_unite_their_dictionaries(hub):
    first = pa.table({"cat": pa.array(["b", None, "a"]).dictionary_encode()})
    second = pa.table({"cat": pa.array(["c", "a", None, "d"]).dictionary_encode()})
    hub.push(first, "cats").wait()
    hub.push(second, "cats", if_exists="append").wait()
    pulled = hub.pull("cats")["cat"].combine_chunks()
    assert pulled.dictionary.to_pylist() == ["b", "a", "c", "d"]
    assert pulled.to_pylist() == ["b", None, "a", "c", "a", None, "d"]


def test_pandas_categoricals_with_other_categories_still_do_not_append(hub):
    """A pandas CategoricalDtype names its categories: other ones are another dtype."""
    hub.push(pd.DataFrame({"cat": pd.Categorical(["a"])}), "cats").wait()
    with pytest.raises(SchemaMismatch, match="'cat'"):
        hub.push(pd.DataFrame({"cat": pd.Categorical(["z"])}), "cats", if_exists="append")


def test_a_dictionary_pandas_cannot_hold_is_refused_naming_its_column(hub):
    with pytest.raises(ValidationError, match="'zeros'.*pandas cannot make categories"):
        hub.push(pa.table({"zeros": pa.array([0.0, -0.0]).dictionary_encode()}), "zeros")
