"""Pulling in pieces: some columns only, and ``iter_batches`` for datasets larger than memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hubtools import execute

from dsnotebook.errors import DatasetNotFound, ValidationError
from frametools import STR, assert_identical


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    ints = pd.array(rng.integers(0, 9, n), dtype="Int64")
    ints[::4] = pd.NA
    return pd.DataFrame(
        {
            "a": np.arange(start, start + n),
            "b": pd.array([f"s{i}" for i in range(start, start + n)], dtype=STR),
            "c": pd.Categorical.from_codes(rng.integers(0, 2, n), categories=["x", "y"]),
            "t": pd.date_range("2021-01-01", periods=n, freq="s", tz="UTC"),
            "n": ints,
        }
    )


def test_pull_reads_only_the_columns_asked_for(hub):
    df = _frame(50)
    version = hub.push(df, "wide").wait(timeout=60)
    assert_identical(hub.pull("wide", columns=["c", "a"]), df[["c", "a"]])
    # Take column "b" away behind the catalog's back: a read of other columns never touches it.
    execute(hub, f'DROP VIEW "{hub.info("wide").view_name}"', f'ALTER TABLE "{version.table_name}" DROP COLUMN "b"')
    assert_identical(hub.pull("wide", columns=["a", "t"]), df[["a", "t"]])
    assert_identical(pd.concat(hub.iter_batches("wide", columns=["n"], batch_rows=7)), df[["n"]])
    with pytest.raises(Exception, match='"?b"?'):
        hub.pull("wide")


@pytest.mark.parametrize("batch_rows", [1, 7, 50, 1_000], ids=lambda n: f"batch{n}")
def test_batches_concatenate_to_the_pulled_frame(hub, batch_rows):
    df = _frame(50)
    hub.push(df, "d").wait(timeout=60)
    batches = list(hub.iter_batches("d", batch_rows=batch_rows))
    assert [len(b) for b in batches] == [min(batch_rows, 50 - i) for i in range(0, 50, batch_rows)]
    for batch in batches:
        assert batch.dtypes.equals(df.dtypes)
    assert_identical(pd.concat(batches), df)
    assert_identical(pd.concat(batches), hub.pull("d"))


def test_batches_of_an_appended_version_keep_its_order_and_index(hub):
    first, second = _frame(30), _frame(20, start=30)
    hub.push(first, "grow").wait(timeout=60)
    hub.push(second, "grow", if_exists="append").wait(timeout=60)
    expected = pd.concat([first, second], ignore_index=True)
    # The appended rows sit before row id 1 in the table; batches follow the push order.
    assert_identical(pd.concat(hub.iter_batches("grow", batch_rows=8)), expected)
    assert_identical(pd.concat(hub.iter_batches("grow", version=1, batch_rows=8)), first)


def test_batches_keep_a_named_index_and_an_empty_dataset_gives_no_rows(hub):
    df = _frame(12).set_index("a")
    hub.push(df, "named").wait(timeout=60)
    assert_identical(pd.concat(hub.iter_batches("named", batch_rows=5)), df)
    empty = _frame(0)
    hub.push(empty, "empty").wait(timeout=60)
    assert list(hub.iter_batches("empty")) == []


def test_iter_batches_refuses_bad_arguments_before_reading(hub):
    hub.push(_frame(3), "d").wait(timeout=60)
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValidationError, match="batch_rows"):
            next(hub.iter_batches("d", batch_rows=bad))
    with pytest.raises(DatasetNotFound):
        next(hub.iter_batches("nope"))
    with pytest.raises(ValidationError):
        next(hub.iter_batches("d", columns=["zzz"]))


def test_stopping_early_closes_the_read(hub):
    hub.push(_frame(100), "d").wait(timeout=60)
    batches = hub.iter_batches("d", batch_rows=10)
    assert len(next(batches)) == 10
    batches.close()
    # The hub fixture then checks that no connection is left checked out.


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, os, sys
    import dsnotebook as dsn

    def rss():
        fields = dict(line.split(":", 1) for line in open(f"/proc/{os.getpid()}/status").read().splitlines())
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

    url, mode = sys.argv[1], sys.argv[2]
    hub = dsn.connect(url)
    hub.pull("big", limit=10)  # imports and first connections are not part of what is measured
    open(f"/proc/{os.getpid()}/clear_refs", "w").write("5")
    base, _ = rss()
    rows = 0
    if mode == "batches":
        for batch in hub.iter_batches("big", batch_rows=20_000):
            rows += len(batch)
            del batch
    else:
        frame = hub.pull("big")
        rows = len(frame)
    _, peak = rss()
    hub.close()
    print(json.dumps({"rows": rows, "growth": peak - base}))
    """
)


def _peak_growth(db_url: str, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, db_url, mode], capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_iter_batches_memory_is_bounded_by_the_batch_not_the_dataset(hub, db_url):
    n = 1_500_000
    df = pd.DataFrame(
        {
            "a": np.arange(n),
            "x": np.random.default_rng(0).normal(size=n),
            "s": pd.array([f"row {i:08d} of the big one" for i in range(n)], dtype=STR),
        }
    )
    hub.push(df, "big", chunk_size=100_000).wait(timeout=300)
    full = _peak_growth(db_url, "pull")
    streamed = _peak_growth(db_url, "batches")
    assert full["rows"] == streamed["rows"] == n
    size = int(df.memory_usage(deep=True).sum())
    # A full pull holds the whole frame at least once; 20,000-row batches a 75th of it, plus
    # what the process keeps of the first batch's allocations.
    assert full["growth"] >= size * 0.8, (full, size)
    assert streamed["growth"] < size / 3, (streamed, size)


@pytest.mark.sqlite_only
def test_a_pull_in_many_parts_keeps_order_across_appends(hub, monkeypatch):
    """SQLite pulls part by part (one hand-off file filled while ADBC reads the last); with tiny
    parts, a pull of an appended version (row ids up to 0, then from 1) crosses many of them."""
    from dsnotebook.store.backends import sqlite as sqlite_backend

    monkeypatch.setattr(sqlite_backend, "PULL_PART_ROWS", 7)
    first, second = _frame(40), _frame(33, start=40)
    hub.push(first, "parts").wait(timeout=60)
    hub.push(second, "parts", if_exists="append").wait(timeout=60)
    assert_identical(hub.pull("parts"), pd.concat([first, second], ignore_index=True))
    assert_identical(hub.pull("parts", limit=12), first.iloc[:12])
    assert_identical(pd.concat(hub.iter_batches("parts", batch_rows=30)), pd.concat([first, second], ignore_index=True))


@pytest.mark.parametrize("limit", [5, 6, 2**63 - 1, 2**63, 10**30])
def test_a_limit_past_the_rows_reads_them_all(hub, limit):
    """A limit above SQL's largest integer is not an error: it asks for every row."""
    df = _frame(5)
    hub.push(df, "few").wait(timeout=60)
    assert_identical(hub.pull("few", limit=limit), df)


def test_columns_named_like_sql_keywords_come_back(hub):
    """Found by the label fuzzing: SQLite's CREATE TABLE … AS names a column "False" after the
    keyword, not the column, so reads take the hand-off's columns by position."""
    df = pd.DataFrame(
        {
            False: pd.Series([[], {"a": 1}, None], dtype=object),
            "true": [1.5, None, 2.5],
            "NULL": ["x", "y", None],
            "select": pd.array([1, None, 3], dtype="Int64"),
        }
    )
    hub.push(df.iloc[:0], "keywords").wait(timeout=60)
    hub.push(df, "keywords", if_exists="append").wait(timeout=60)
    assert_identical(hub.pull("keywords"), df)
    assert_identical(hub.pull("keywords", columns=[False, "NULL"]), df[[False, "NULL"]])
    assert_identical(pd.concat(hub.iter_batches("keywords", batch_rows=2)), df)
