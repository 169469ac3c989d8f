"""Pushing, publishing, versions and the failure guarantees, through a real SQLite hub."""

from __future__ import annotations

import asyncio
import decimal
import itertools
import sqlite3
import threading
import time

import numpy as np
import pandas as pd
import pytest
from frametools import STR, assert_identical, frames
from hubtools import execute, occupy_the_slot, refuse_progress_beyond, sqlite_path, staging_tables, table_and_view_names
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testenv import examples

import dsnotebook as dsn
from dsnotebook import _compat as compat
from dsnotebook.errors import (
    DatasetNotFound,
    SchemaMismatch,
    UploadCancelled,
    UploadError,
    UsageError,
    ValidationError,
    VersionConflict,
    WaitTimeout,
)


def frame(n: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "x": rng.random(n),
            "n": pd.array([i if i % 7 else None for i in range(n)], dtype="Int64"),
            "s": [f"row{i}" for i in range(n)],
        }
    )


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_index_type=True, check_column_type=True)


# -- the happy path -------------------------------------------------------------------------------


def test_push_then_pull_returns_the_identical_frame(hub):
    df = frame(1234)
    task = hub.push(df, "sales", description="Q3", tags={"team": "bi"}, chunk_size=100)
    version = task.wait(timeout=30)
    assert (version.name, version.version, version.rows, version.columns) == ("sales", 1, 1234, 4)
    assert not version.deduplicated
    assert task.status == "succeeded" and task.rows_done == task.rows_total == 1234
    assert task.progress == 1.0 and task.elapsed > 0 and task.rows_per_s > 0
    assert "@" in version.created_by
    assert_same(hub.pull("sales"), df)
    info = hub.info("sales")
    assert info.description == "Q3" and info.tags == {"team": "bi"} and info.latest == version
    assert info.schema == [(label, compat.dtype_label(dtype)) for label, dtype in df.dtypes.items()]
    assert [dtype for _, dtype in info.schema[:3]] == ["int64", "float64", "Int64"]


def test_a_series_is_stored_as_a_one_column_frame_and_pulled_as_the_series(hub):
    s = pd.Series([1.5, 2.5], name="price")
    hub.push(s, "prices").wait(timeout=30)
    assert hub.info("prices").schema == [("price", "float64")]
    pd.testing.assert_series_equal(hub.pull("prices"), s, check_exact=True)


def test_await_the_handle_on_another_loop(hub):
    async def main():
        task = hub.push(frame(10), "a")
        return await task

    assert asyncio.run(main()).version == 1


def test_sync_hub_works_inside_a_running_event_loop(hub):
    """What a Jupyter cell does: call the blocking API while the thread's loop is running."""

    async def cell():
        task = hub.push(frame(50), "in-loop")
        version = task.wait(timeout=30)
        return version, hub.pull("in-loop")

    version, back = asyncio.run(cell())
    assert version.rows == 50
    assert_same(back, frame(50))


def test_the_frame_as_it_was_at_push_time_is_stored(hub):
    df = frame(1000)
    original = df.copy()
    task = hub.push(df, "snap", chunk_size=10)
    df.loc[:, "x"] = -1.0
    df.loc[0, "s"] = "changed"
    df["extra"] = 1
    task.wait(timeout=30)
    assert_same(hub.pull("snap"), original)


# -- if_exists, versions, dedupe -----------------------------------------------------------------


def test_replace_makes_new_versions_and_old_ones_stay_readable(hub):
    a, b = frame(10, seed=1), frame(20, seed=2)
    hub.push(a, "d").wait(timeout=30)
    hub.push(b, "d", if_exists="replace").wait(timeout=30)
    assert_same(hub.pull("d"), b)
    assert_same(hub.pull("d", version=1), a)
    v = hub.versions("d")
    assert list(v["version"]) == [1, 2] and list(v["latest"]) == [False, True]
    assert list(v["rows"]) == [10, 20]


def test_append_publishes_previous_rows_plus_new_rows(hub):
    a, b = frame(10, seed=1), frame(5, seed=2)
    hub.push(a, "d").wait(timeout=30)
    v2 = hub.push(b, "d", if_exists="append", chunk_size=2).wait(timeout=30)
    assert v2.version == 2 and v2.rows == 15
    assert_same(hub.pull("d"), pd.concat([a, b], ignore_index=True))
    assert_same(hub.pull("d", version=1), a)


def test_append_to_a_missing_dataset_creates_it(hub):
    hub.push(frame(3), "new", if_exists="append").wait(timeout=30)
    assert_same(hub.pull("new"), frame(3))


def test_append_with_another_schema_names_each_difference(hub):
    hub.push(frame(3), "d").wait(timeout=30)
    other = frame(3).drop(columns=["s"]).assign(x=lambda f: f["x"].astype("float32"), extra=1)
    with pytest.raises(SchemaMismatch) as err:
        hub.push(other, "d", if_exists="append")
    message = str(err.value)
    assert "'extra'" in message and "'s'" in message and "'x'" in message and "float32" in message
    assert err.value.added == ["extra"] and err.value.missing == ["s"]
    assert len(hub.versions("d")) == 1


def test_fail_raises_if_the_dataset_exists(hub):
    hub.push(frame(3), "d", if_exists="fail").wait(timeout=30)
    with pytest.raises(VersionConflict, match="already exists"):
        hub.push(frame(4), "d", if_exists="fail")
    assert len(hub.versions("d")) == 1


def test_identical_push_is_deduplicated(hub):
    v1 = hub.push(frame(100), "d").wait(timeout=30)
    task = hub.push(frame(100), "d")
    again = task.wait(timeout=30)
    assert again.deduplicated and task.deduplicated
    assert again.version == v1.version and again.content_hash == v1.content_hash
    assert len(hub.versions("d")) == 1
    tasks = hub.tasks(dataset="d")
    assert list(tasks["deduplicated"]) == [True, False]
    # A new description or tags still land, without a new version.
    hub.push(frame(100), "d", description="now described", tags={"k": "v"}).wait(timeout=30)
    info = hub.info("d")
    assert (info.description, info.tags, info.latest.version) == ("now described", {"k": "v"}, 1)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda f: f.assign(x=f["x"].where(f.index != 3, 0.5)), id="one-value"),
        pytest.param(lambda f: f.assign(s=f["s"].where(f.index != 0, "other")), id="one-string"),
        pytest.param(lambda f: f.assign(id=f["id"].astype("int32")), id="one-dtype"),
        pytest.param(lambda f: f.rename(columns={"x": "y"}), id="one-label"),
        pytest.param(lambda f: f.set_axis(pd.RangeIndex(1, len(f) + 1)), id="index"),
    ],
)
def test_any_single_change_makes_a_new_version(hub, change):
    base = frame(20)
    hub.push(base, "d").wait(timeout=30)
    changed = change(base.copy())
    version = hub.push(changed, "d").wait(timeout=30)
    assert not version.deduplicated and version.version == 2
    assert_same(hub.pull("d"), changed)


def test_an_empty_frame_with_columns_makes_a_version_with_its_schema(hub):
    empty = frame(0)
    version = hub.push(empty, "empty").wait(timeout=30)
    assert version.rows == 0 and version.columns == 4
    assert_same(hub.pull("empty"), empty)


def test_version_numbers_are_never_reused(hub):
    for seed in range(3):
        hub.push(frame(5, seed), "d").wait(timeout=30)
    assert hub.delete("d", version=3) == [3]
    assert hub.info("d").latest.version == 2
    assert_same(hub.pull("d"), frame(5, 1))
    assert hub.push(frame(5, 9), "d").wait(timeout=30).version == 4
    with pytest.raises(DatasetNotFound, match="no version 3; its versions are: 1, 2, 4"):
        hub.pull("d", version=3)


def test_prune_keeps_the_newest(hub):
    for seed in range(4):
        hub.push(frame(5, seed), "d").wait(timeout=30)
    assert hub.prune("d", keep=2) == [1, 2]
    assert list(hub.versions("d")["version"]) == [3, 4]
    assert_same(hub.pull("d", version=3), frame(5, 2))
    with pytest.raises(ValidationError, match="keep"):
        hub.prune("d", keep=0)


def test_delete_dataset_removes_versions_tables_and_view(hub):
    hub.push(frame(5), "d").wait(timeout=30)
    hub.push(frame(6), "d").wait(timeout=30)
    view = hub.info("d").view_name
    assert hub.delete("d") == [1, 2]
    assert hub.datasets().empty
    with pytest.raises(DatasetNotFound):
        hub.pull("d")
    names = table_and_view_names(hub)
    assert not any(n.startswith(("dsn_data_", "dsn_stage_")) for n in names) and view not in names


def test_datasets_lists_latest_rows_and_columns(hub):
    hub.push(frame(5), "b", description="bee").wait(timeout=30)
    hub.push(frame(7), "a").wait(timeout=30)
    hub.push(frame(9), "a").wait(timeout=30)
    ds = hub.datasets()
    assert list(ds.columns[:6]) == ["name", "latest_version", "rows", "columns", "updated_at", "description"]
    assert ds[["name", "latest_version", "rows", "columns", "versions"]].values.tolist() == [["a", 2, 9, 4, 2], ["b", 1, 5, 4, 1]]
    assert ds.loc[ds["name"] == "b", "description"].item() == "bee"


def test_partial_pull(hub):
    df = frame(50).set_index("id")
    hub.push(df, "d").wait(timeout=30)
    assert_same(hub.pull("d", columns=["s", "x"]), df[["s", "x"]])
    assert_same(hub.pull("d", limit=7), df.head(7))
    assert_same(hub.pull("d", columns="n", limit=0), df[["n"]].head(0))
    with pytest.raises(ValidationError, match="'nope'"):
        hub.pull("d", columns=["nope"])


@pytest.mark.sqlite_only
def test_sql_users_see_typed_tables_and_a_latest_view(hub):
    hub.push(frame(5, 1), "d").wait(timeout=30)
    hub.push(frame(3, 2), "d").wait(timeout=30)
    info = hub.info("d")
    con = sqlite3.connect(sqlite_path(hub))
    count = con.execute(f'select count(*) from "{info.view_name}"').fetchone()[0]
    types = {r[1]: r[2] for r in con.execute(f'pragma table_info("{info.latest.table_name}")')}
    con.close()
    assert count == 3
    assert types["id"] == "BIGINT" and types["s"] == "TEXT"


def test_hostile_names_are_just_data(hub):
    name = 'x"; DROP TABLE dsn_datasets; --'
    hub.push(frame(3), name).wait(timeout=30)
    assert_same(hub.pull(name), frame(3))
    assert hub.datasets()["name"].tolist() == [name]


def test_unknown_dataset_suggests_close_names(hub):
    hub.push(frame(3), "sales_2024").wait(timeout=30)
    with pytest.raises(DatasetNotFound, match="did you mean 'sales_2024'"):
        hub.pull("sales_2042")
    with pytest.raises(DatasetNotFound):
        hub.info("nothing-like-it")
    with pytest.raises(DatasetNotFound):
        hub.delete("sales_2024", version=9)


# -- bad input: a clear error before anything is scheduled, and nothing written -------------------


def _nothing_written(hub) -> None:
    assert hub.tasks().empty and hub.datasets().empty


@pytest.mark.parametrize(
    "obj",
    [pytest.param([1, 2], id="list"), pytest.param({"a": [1]}, id="dict"), pytest.param(np.zeros((2, 2)), id="ndarray")],
)
def test_non_frames_are_rejected(hub, obj):
    with pytest.raises(ValidationError, match="DataFrame"):
        hub.push(obj, "d")
    _nothing_written(hub)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("   ", "empty", id="whitespace"),
        pytest.param("  padded  ", "'  padded  ' starts and ends with whitespace", id="surrounding-spaces"),
        pytest.param("x" * 256, "too long", id="too-long"),
        pytest.param("a\nb", "control character", id="newline"),
        pytest.param("a\x00b", "control character", id="nul"),
        pytest.param(42, "expected a str", id="not-str"),
    ],
)
def test_bad_names_are_rejected(hub, name, fragment):
    with pytest.raises(ValidationError, match=fragment):
        hub.push(frame(2), name)
    _nothing_written(hub)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("n" * 255, id="255-characters"),
        pytest.param("ventes 2026 – été / Q3", id="unicode"),
        pytest.param("team \U0001F468\u200D\U0001F469\u200D\U0001F467", id="emoji-with-joiners"),
        pytest.param("spaced  inside", id="inner-spaces"),
    ],
)
def test_printable_names_are_stored_as_given(hub, name):
    hub.push(frame(2), name).wait(timeout=30)
    assert hub.datasets()["name"].tolist() == [name]
    assert_same(hub.pull(name), frame(2))


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        pytest.param({"if_exists": "overwrite"}, "'replace', 'append', 'fail'", id="if_exists"),
        pytest.param({"priority": "high"}, "priority", id="priority"),
        pytest.param({"chunk_size": 0}, "chunk_size", id="chunk_size"),
        pytest.param({"tags": {"a": object()}}, "tags", id="tags"),
        pytest.param({"description": 3}, "description", id="description"),
    ],
)
def test_bad_options_are_rejected(hub, options, fragment):
    with pytest.raises(ValidationError, match=fragment):
        hub.push(frame(2), "d", **options)
    _nothing_written(hub)


@pytest.mark.parametrize(
    ("df", "fragments"),
    [
        pytest.param(pd.DataFrame([[1, 2]], columns=["a", "a"]), ["'a'", "duplicate"], id="duplicate-labels"),
        pytest.param(pd.DataFrame(index=range(3)), ["column"], id="zero-columns"),
        pytest.param(pd.DataFrame({"c": [1 + 2j]}), ["'c'", "(1+2j)"], id="complex"),
        pytest.param(pd.DataFrame({"o": [object()]}, dtype=object), ["'o'", "object"], id="arbitrary-object"),
        pytest.param(pd.DataFrame({"m": ["a", 1]}, dtype=object), ["'m'", "1"], id="mixed-types"),
        pytest.param(pd.DataFrame({"big": [1, 2**70]}, dtype=object), ["'big'", str(2**70)], id="int-overflow"),
    ],
)
def test_unsupported_frames_are_rejected(hub, df, fragments):
    with pytest.raises(ValidationError) as err:
        hub.push(df, "d")
    for fragment in fragments:
        assert fragment in str(err.value)
    _nothing_written(hub)


# -- failure, cancel, timeouts --------------------------------------------------------------------


def _block_writes(path: str) -> sqlite3.Connection:
    """Hold the write lock from another connection, as another process would."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    return con


def _until(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_wait_timeout_leaves_the_task_running(hub):
    # The upload waits for a slot until release(), so the short wait times out however fast
    # the machine is; the task then runs on to its end.
    release = occupy_the_slot(hub)
    task = hub.push(frame(10_000), "d", chunk_size=1000)
    try:
        with pytest.raises(WaitTimeout) as err:
            task.wait(timeout=0.05)
        assert isinstance(err.value, TimeoutError) and "keeps running" in str(err.value)
        assert not task.done()
    finally:
        release()
    assert task.wait(timeout=60).version == 1
    assert_same(hub.pull("d"), frame(10_000))


def test_cancel_leaves_no_partial_version_and_the_previous_one_intact(hub):
    previous = frame(10, seed=1)
    hub.push(previous, "d").wait(timeout=30)
    started = threading.Event()
    task = hub.push(frame(200_000, seed=2), "d", chunk_size=1000)
    task.subscribe(lambda p: started.set() if p.rows_done >= 2000 else None)
    assert started.wait(30)
    assert task.cancel()
    with pytest.raises(UploadCancelled) as err:
        task.wait(timeout=30)
    assert err.value.task_id == task.id and err.value.dataset == "d"
    assert task.status == "cancelled" and 0 < task.rows_done < 200_000
    assert list(hub.versions("d")["version"]) == [1]
    assert_same(hub.pull("d"), previous)
    row = hub.tasks().iloc[0]
    assert (row["id"], row["status"]) == (task.id, "cancelled")
    assert staging_tables(hub) == []


def test_a_failed_upload_says_why_and_keeps_the_previous_version(hub):
    previous = frame(10, seed=1)
    hub.push(previous, "d").wait(timeout=30)
    # The database itself refuses the third chunk, as a constraint or a full disk would.
    refuse_progress_beyond(hub, 3000)
    task = hub.push(frame(10_000, seed=2), "d", chunk_size=1000)
    with pytest.raises(UploadError) as err:
        task.wait(timeout=30)
    assert str(err.value) == "the upload of 'd' failed: simulated storage failure" and err.value.__cause__ is not None
    assert task.status == "failed" and task.error is err.value and task.rows_done == 2000
    assert_same(hub.pull("d"), previous)
    assert list(hub.versions("d")["version"]) == [1]
    row = hub.tasks().iloc[0]
    assert row["status"] == "failed" and "simulated storage failure" in row["error"]
    assert staging_tables(hub) == []


def test_transient_lock_is_retried_and_attempts_are_recorded(tmp_path):
    # A short busy timeout makes "database is locked" surface quickly instead of after 5 s.
    url = f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}?timeout=0.2"
    with dsn.connect(url, retry=dsn.RetryPolicy(attempts=100, base_delay=0.02, max_delay=0.05)) as hub:
        # The upload waits for its slot until the listener below is subscribed.
        release_slot = occupy_the_slot(hub)
        task = hub.push(frame(5_000), "d", chunk_size=500)
        blocker = sqlite3.connect(hub.url.database, isolation_level=None, check_same_thread=False)
        assert hub._portal.run(_busy_timeout_ms(hub)) == 200
        release = threading.Timer(1.0, lambda: (blocker.execute("COMMIT"), blocker.close()))
        locked = threading.Event()

        def lock_after_first_chunk(progress):
            # Runs on the upload's thread right after the first chunk committed: another
            # writer takes the lock before the second chunk can.
            if 0 < progress.rows_done < 5_000 and not locked.is_set():
                locked.set()
                blocker.execute("BEGIN IMMEDIATE")
                release.start()

        task.subscribe(lock_after_first_chunk)
        release_slot()
        version = task.wait(timeout=60)
        assert version.version == 1 and version.rows == 5_000
        assert task.attempts > 1
        release.join()
        assert locked.is_set()
        assert hub.tasks(dataset="d").iloc[0]["attempts"] == task.attempts
        assert_same(hub.pull("d"), frame(5_000))


async def _busy_timeout_ms(hub) -> int:
    async with hub._async.engine.connect() as conn:
        return (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()


@pytest.mark.parametrize("timeout", ["soon", "-1"])
def test_a_bad_busy_timeout_in_the_url_is_refused(tmp_path, timeout):
    with pytest.raises(dsn.ConfigError, match=f"timeout='{timeout}' is not a number of seconds"):
        dsn.connect(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}?timeout={timeout}")


def test_wait_on_the_portal_thread_is_a_usage_error(hub):
    outcome = {}
    done = threading.Event()
    task = hub.push(frame(20_000), "d", chunk_size=1000)

    def listener(progress):
        if "error" not in outcome:
            try:
                task.wait()
            except UsageError as exc:
                outcome["error"] = exc
            done.set()

    task.subscribe(listener)
    task.wait(timeout=30)
    assert done.wait(5) and isinstance(outcome["error"], UsageError)


def test_a_dropped_handle_still_completes(db_url, monkeypatch):
    import gc
    import weakref

    import dsnotebook.upload.service as upload_module

    monkeypatch.setattr(upload_module, "HISTORY_LENGTH", 1)
    with dsn.connect(db_url) as hub:
        task = hub.push(frame(5000), "dropped", chunk_size=100)
        handle = weakref.ref(task)
        del task
        gc.collect()
        # The hub holds a running upload's handle; waiting on it (a slow machine may take a
        # while) and then letting go again leaves the hub's reference the only one.
        running = handle()
        assert running is not None, "the hub let go of a running upload"
        running.wait(timeout=300)
        del running
        assert hub.tasks(dataset="dropped")["status"].tolist() == ["succeeded"]
        assert_same(hub.pull("dropped"), frame(5000))
        assert handle()._resubmit is None  # a finished upload lets go of its frame at once
        # Past the hub's short memory of recent uploads, nothing keeps the handle alive.
        hub.push(frame(3), "next").wait(timeout=30)
        gc.collect()
        assert handle() is None


def test_priorities_order_queued_uploads(hub):
    release = occupy_the_slot(hub)
    handles = [hub.push(frame(3, seed=i), f"p{i}", priority=p) for i, p in enumerate([0, 5, 1, 5, 3])]
    assert all(h.status == "queued" for h in handles)
    release()
    for h in handles:
        h.wait(timeout=60)
    order = sorted(handles, key=lambda h: h.started_at)
    assert [h.dataset for h in order] == ["p1", "p3", "p4", "p2", "p0"]


# -- the catalog ----------------------------------------------------------------------------------


def test_tasks_frame_has_stable_columns(hub):
    hub.push(frame(3), "d").wait(timeout=30)
    t = hub.tasks()
    assert list(t.columns) == [
        "id", "name", "dataset", "status", "priority", "rows_done", "rows_total", "attempts", "version",
        "deduplicated", "error", "queued_at", "started_at", "finished_at", "elapsed_s", "owner_host", "owner_pid",
        "staging_table", "bytes_written", "peak_rows_per_s",
    ]
    row = t.iloc[0]
    assert (row["status"], row["rows_done"], row["version"], row["attempts"]) == ("succeeded", 3, 1, 1)
    assert row["queued_at"] <= row["started_at"] <= row["finished_at"]


@pytest.mark.sqlite_only
def test_tasks_of_a_dead_process_become_interrupted(db_url):
    import os
    import subprocess
    import sys

    hub = dsn.connect(db_url)
    hub.push(frame(3), "d").wait(timeout=30)
    hub.close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    con = sqlite3.connect(db_url.split("///", 1)[1])
    con.execute(
        "insert into dsn_tasks (id, name, dataset, status, if_exists, priority, rows_total, rows_done, attempts, "
        "deduplicated, queued_at, owner_host, owner_pid, staging_table) values "
        "('deadbeef', 'push d', 'd', 'running', 'replace', 0, 10, 5, 1, 0, '2026-01-01 00:00:00', ?, ?, 'dsn_stage_deadbeef')",
        (__import__("socket").gethostname(), pid),
    )
    con.execute('create table "dsn_stage_deadbeef" (x integer)')
    con.execute(
        "insert into dsn_tasks (id, name, dataset, status, if_exists, priority, rows_total, rows_done, attempts, "
        "deduplicated, queued_at, owner_host, owner_pid) values "
        "('alive', 'push e', 'e', 'running', 'replace', 0, 10, 5, 1, 0, ?, ?, ?)",
        # Queued by this process, so after it started (an earlier upload would be another
        # process's that had the same pid).
        (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), __import__("socket").gethostname(), os.getpid()),
    )
    con.commit()
    con.close()
    with dsn.connect(db_url) as again:
        t = again.tasks().set_index("id")
        assert t.loc["deadbeef", "status"] == "interrupted"
        assert t.loc["alive", "status"] == "running"
        assert_same(again.pull("d"), frame(3))
    con = sqlite3.connect(db_url.split("///", 1)[1])
    assert con.execute("select count(*) from sqlite_master where name = 'dsn_stage_deadbeef'").fetchone()[0] == 0
    con.close()


def test_a_newer_catalog_is_refused(db_url):
    with dsn.connect(db_url) as hub:
        execute(hub, "update dsn_meta set value = '99' where key = 'schema_version'")
    with pytest.raises(VersionConflict, match="schema version 99"):
        dsn.connect(db_url)


def test_decimal_and_json_objects_round_trip_through_the_hub(hub):
    df = pd.DataFrame(
        {
            "price": pd.Series([decimal.Decimal("1.10"), None, decimal.Decimal("-0.001")], dtype=object),
            "meta": pd.Series([{"a": [1, 2]}, [True, None], {}], dtype=object),
        }
    )
    hub.push(df, "objs").wait(timeout=30)
    back = hub.pull("objs")
    assert_same(back, df)
    assert [repr(v) for v in back["price"]] == [repr(v) for v in df["price"]]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            pd.DataFrame({"f": pd.array([1.0, None], dtype="Float64")}),
            pd.DataFrame({"f": pd.array([np.nan, None, 2.0], dtype="Float64")}),
            id="marks-only-in-new",
        ),
        pytest.param(
            pd.DataFrame({"f": pd.array([np.nan, None, -0.0], dtype="Float64")}),
            pd.DataFrame({"f": pd.array([1.0, None], dtype="Float64")}),
            id="marks-only-in-old",
        ),
        pytest.param(
            pd.DataFrame({"o": pd.Series(["a", None], dtype=object)}),
            pd.DataFrame({"o": pd.Series(["b", np.nan], dtype=object)}),
            id="different-null-kinds",
        ),
        pytest.param(
            pd.DataFrame({"o": pd.Series([None, None], dtype=object)}),
            pd.DataFrame({"o": pd.Series([decimal.Decimal("1.50"), None], dtype=object)}),
            id="all-missing-then-decimals",
        ),
        pytest.param(
            pd.DataFrame({"o": pd.Series([0, 7], dtype=object)}),
            pd.DataFrame({"o": pd.Series([None], dtype=object)}),
            id="ints-then-all-missing",
        ),
        pytest.param(
            pd.DataFrame({"o": pd.Series([b"\x00", None], dtype=object)}),
            pd.DataFrame({"o": pd.Series([None, pd.NA], dtype=object)}),
            id="bytes-then-all-missing",
        ),
        pytest.param(
            pd.DataFrame({"o": pd.Series([], dtype=object), "n": pd.Series([], dtype="Int64")}),
            pd.DataFrame({"o": pd.Series([{"a": 1}, [2]], dtype=object), "n": pd.array([None, 3], dtype="Int64")}),
            id="empty-schema-then-rows",
        ),
        pytest.param(
            pd.DataFrame({"f": [1.0, -0.0, np.nan]}),
            pd.DataFrame({"f": [np.nan, 2.0]}),
            id="negative-zero",
        ),
        pytest.param(
            pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
            pd.DataFrame({"b": ["z"], "a": [3]}),
            id="reordered-columns",
        ),
        pytest.param(
            pd.DataFrame({"v": [1, 2]}, index=pd.date_range("2026-01-01", periods=2, freq="D", tz="Europe/Paris", name="day")),
            pd.DataFrame({"v": [3]}, index=pd.DatetimeIndex([pd.Timestamp("2025-06-01", tz="Europe/Paris")], name="day")),
            id="datetime-index",
        ),
        pytest.param(
            pd.DataFrame({"c": pd.Categorical(["a", None], categories=["a", "b", "c"], ordered=True)}),
            pd.DataFrame({"c": pd.Categorical(["c"], categories=["a", "b", "c"], ordered=True)}),
            id="category",
        ),
        pytest.param(
            pd.DataFrame({"v": [1.5]}, index=pd.MultiIndex.from_tuples([("a", 1)], names=["k", "n"])),
            pd.DataFrame({"v": [2.5, 3.5]}, index=pd.MultiIndex.from_tuples([("b", 2), ("a", 3)], names=["k", "n"])),
            id="multi-index",
        ),
    ],
)
def test_append_is_exactly_the_concatenation(hub, first, second):
    hub.push(first, "d").wait(timeout=30)
    hub.push(second, "d", if_exists="append").wait(timeout=30)
    expected = pd.concat([first, second[first.columns]], ignore_index=isinstance(first.index, pd.RangeIndex))
    if isinstance(expected.index, pd.DatetimeIndex):
        expected.index.freq = None
    for column in expected.columns:
        if expected[column].dtype == object:
            # The cells themselves: pandas 2.2's concat turns pd.NA in an all-missing object
            # column into None.
            cells = [*first[column], *second[column]]
            expected[column] = pd.Series(cells, index=expected.index, dtype=object)
    back = hub.pull("d")
    assert_same(back, expected)
    for column in expected.columns:
        if expected[column].dtype == object:
            assert [repr(v) for v in back[column]] == [repr(v) for v in expected[column]]
    assert_same(hub.pull("d", version=1), first)


@pytest.mark.parametrize(
    ("first", "then"),
    [
        pytest.param(("python", "na"), ("pyarrow", "na"), id="python-then-pyarrow"),
        pytest.param(("pyarrow", "na"), ("python", "na"), id="pyarrow-then-python"),
        pytest.param(("pyarrow", "nan"), ("python", "nan"), id="str-then-python-nan"),
    ],
)
def test_an_appended_string_column_keeps_its_first_storage(hub, first, then):
    """Storage is part of the dtype: an append keeps the dataset's, as for every other dtype.
    (Under pandas 2.2 a NaN string column is always Arrow-backed; see dsnotebook._compat.)"""
    old = pd.DataFrame({"s": pd.Series(["a", None], dtype=compat.string_dtype(*first))})
    new = pd.DataFrame({"s": pd.Series(["b", None], dtype=compat.string_dtype(*then))})
    hub.push(old, "d").wait(timeout=30)
    hub.push(new, "d", if_exists="append").wait(timeout=30)
    expected = pd.concat([old, new], ignore_index=True).astype({"s": compat.string_dtype(*first)})
    assert_same(hub.pull("d"), expected)


def test_appending_an_empty_frame_is_deduplicated(hub):
    hub.push(frame(5), "d").wait(timeout=30)
    version = hub.push(frame(5).head(0), "d", if_exists="append").wait(timeout=30)
    assert version.deduplicated and version.version == 1


def test_append_checks_the_schema_again_at_publish(db_url):
    """Another push may publish a new schema between an append's submit and its publish."""
    with dsn.connect(db_url, concurrency=1) as hub:  # one at a time, in priority order
        _append_after_a_schema_change(hub)


def _append_after_a_schema_change(hub):
    release = occupy_the_slot(hub)
    first = hub.push(frame(5), "d", priority=2)
    # Valid when submitted: the dataset does not exist yet.
    appended = hub.push(frame(3), "d", if_exists="append", priority=0)
    other = hub.push(pd.DataFrame({"z": [1]}), "d", priority=1)
    release()
    assert first.wait(timeout=60).version == 1
    assert other.wait(timeout=60).version == 2
    with pytest.raises(UploadError) as err:
        appended.wait(timeout=60)
    assert isinstance(err.value.__cause__, SchemaMismatch) and "'z'" in str(err.value)
    assert list(hub.versions("d")["version"]) == [1, 2]


@pytest.mark.sqlite_only
def test_cancel_mid_statement_records_the_cancel_and_drops_the_staging_rows(hub):
    """A cancel landing inside a chunk's executemany must not leave SQLite's write lock held.

    Otherwise the cleanup cannot write: the catalog keeps saying "running" and the staging
    table stays behind.
    """
    df = pd.DataFrame({"a": np.arange(200_000), "s": ["x" * 20] * 200_000})
    handles = []
    for i in range(8):
        task = hub.push(df, f"big{i}", chunk_size=20_000)
        _until(lambda task=task: task.rows_done > 0)
        time.sleep(0.002 * i)  # land at different points of the next chunk
        task.cancel()
        with pytest.raises(UploadCancelled):
            task.wait(timeout=60)
        handles.append(task)
    tasks = hub.tasks().set_index("id")
    assert [tasks.loc[h.id, "status"] for h in handles] == ["cancelled"] * 8
    assert hub.datasets().empty
    assert staging_tables(hub) == []


def test_frames_wider_than_the_database_allows_are_rejected_up_front(hub, backend):
    limit = {"sqlite": 2000, "postgresql": 1600}[backend]  # columns per table, the row id included
    wide = pd.DataFrame(np.zeros((2, limit)))
    with pytest.raises(ValidationError, match=f"at most {limit - 1}"):
        hub.push(wide, "wide")
    _nothing_written(hub)
    if backend == "postgresql":
        # Fewer columns than that already overflow PostgreSQL's 8 kB row: refused up front too.
        with pytest.raises(ValidationError, match="stores at most 8,160 per row"):
            hub.push(pd.DataFrame(np.zeros((2, 1100))), "too wide a row")
        limit = 1001
    fits = pd.DataFrame(np.arange(3 * (limit - 1)).reshape(3, limit - 1))
    hub.push(fits, "fits").wait(timeout=60)
    assert_same(hub.pull("fits"), fits)


_names = itertools.count()


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(df=frames(), data=st.data())
def test_push_pull_and_append_round_trip_property(hub, df, data):
    """Whatever the frame: pull gives it back identical, and so does pushing it in two appends."""
    whole = f"whole-{next(_names)}"
    hub.push(df, whole, chunk_size=data.draw(st.integers(1, 4), label="chunk_size")).wait(timeout=60)
    assert_identical(hub.pull(whole), df)

    split = data.draw(st.integers(0, len(df)), label="split")
    halves = f"halves-{next(_names)}"
    hub.push(df.iloc[:split], halves).wait(timeout=60)
    hub.push(df.iloc[split:], halves, if_exists="append").wait(timeout=60)
    assert_identical(hub.pull(halves), df)


def test_partial_pull_of_tuple_labels_and_of_no_columns(hub):
    df = pd.DataFrame({("a", 1): [1, 2, 3], ("b", 2): ["x", "y", "z"]})
    hub.push(df, "tuples").wait(timeout=30)
    assert_same(hub.pull("tuples", columns=("b", 2)), df[[("b", 2)]])
    assert_same(hub.pull("tuples", columns=[("a", 1)], limit=2), df[[("a", 1)]].head(2))
    assert_same(hub.pull("tuples", columns=[]), df[[]])
    assert_same(hub.pull("tuples", columns=[], limit=1), df[[]].head(1))


# -- retry, and the uploads of this process -----------------------------------------------------


def test_a_cancel_while_queued_is_recorded(hub):
    release = occupy_the_slot(hub)
    try:
        task = hub.push(frame(10), "q")
        assert task.cancel()
        with pytest.raises(UploadCancelled):
            task.wait(timeout=30)
    finally:
        release()
    assert task.status == "cancelled" and task.finished_at is not None
    hub._portal.run(hub._async._uploads.drain())
    row = hub.tasks().iloc[0]
    assert (row["status"], row["rows_done"]) == ("cancelled", 0)
    assert hub.datasets().empty


def test_close_with_cancel_records_queued_uploads_as_cancelled(db_url):
    hub = dsn.connect(db_url)
    release = occupy_the_slot(hub)
    queued = [hub.push(frame(10, seed=i), f"q{i}") for i in range(3)]
    hub.close(cancel=True)
    release()
    assert [t.status for t in queued] == ["cancelled"] * 3
    with dsn.connect(db_url) as again:
        assert sorted(again.tasks()["status"]) == ["cancelled"] * 3


def test_retry_starts_the_same_upload_again(hub):
    df = frame(3_000)
    undo = refuse_progress_beyond(hub, 1_000)
    failed = hub.push(df, "r", description="kept", tags={"k": 1}, chunk_size=1_000)
    with pytest.raises(UploadError):
        failed.wait(timeout=30)
    assert failed.can_retry
    undo()
    again = hub.retry(failed)
    assert again is not failed and again.id != failed.id
    assert again.wait(timeout=30).version == 1
    assert_same(hub.pull("r"), df)
    info = hub.info("r")
    assert (info.description, info.tags) == ("kept", {"k": 1})
    assert not again.can_retry and again._resubmit is None  # a success lets go of the frame
    assert hub.uploads()[:2] == [again, failed]


def test_retry_is_refused_for_a_running_or_succeeded_upload_or_another_hubs(hub, db_url, tmp_path):
    release = occupy_the_slot(hub)
    task = hub.push(frame(1_000), "big", chunk_size=100)
    try:
        with pytest.raises(UsageError, match="is queued"):
            hub.retry(task)
    finally:
        release()
    task.wait(timeout=60)
    with pytest.raises(UsageError, match="only a failed, cancelled or interrupted upload can be retried"):
        hub.retry(task)
    with dsn.connect(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}") as other:
        with pytest.raises(UsageError, match="was not started by"):
            other.retry(task)
        with pytest.raises(ValidationError, match="expected an UploadTask"):
            other.retry("big")


def test_uploads_lists_this_hubs_recent_uploads_newest_first(hub):
    import dsnotebook.upload.service as upload_module

    assert hub.uploads() == []
    tasks = [hub.push(frame(3, seed=i), f"u{i}") for i in range(3)]
    for t in tasks:
        t.wait(timeout=30)
    assert hub.uploads() == tasks[::-1]
    seen = []
    unsubscribe = hub.on_upload(seen.append)
    new = hub.push(frame(3), "u3")
    unsubscribe()
    hub.push(frame(3), "u4").wait(timeout=30)
    new.wait(timeout=30)
    assert seen == [new]
    assert len(hub.uploads()) == 5 <= upload_module.HISTORY_LENGTH


@pytest.mark.sqlite_only
def test_a_push_waits_for_at_most_a_chunk_of_a_running_upload(hub):
    """Writers of one hub take turns at SQLite's lock; a push is not starved by a running upload.

    SQLite only: PostgreSQL has no single write lock, so a push never waits for an upload there,
    and how many rows an upload writes meanwhile measures only the speed of its COPY."""
    big = hub.push(pd.DataFrame({"a": np.arange(2_000_000)}), "big", chunk_size=10_000)
    _until(lambda: big.rows_done >= 10_000)
    waited = []
    for i in range(5):
        before = big.rows_done
        hub.push(frame(3, seed=i), f"small{i}")
        waited.append(big.rows_done - before)
    assert not big.done(), "the upload ended before the pushes could be measured against it"
    # Each push recorded its task after at most the chunk in flight (and the one just granted).
    assert max(waited) <= 2 * 10_000, waited
    big.cancel()


def test_cancelling_twice_then_closing_with_cancel_leaves_nothing_behind(db_url):
    """A second cancel must not cut the first one's cleanup short (the leak check sees the rest)."""
    hub = dsn.connect(db_url)
    task = hub.push(pd.DataFrame({"a": np.arange(2_000_000)}), "big", chunk_size=10_000)
    _until(lambda: task.rows_done >= 20_000)
    assert task.cancel()
    task.cancel()  # a double click
    hub.close(cancel=True)
    assert task.status == "cancelled"
    with dsn.connect(db_url) as again:
        assert staging_tables(again) == []
        assert again.tasks()["status"].tolist() == ["cancelled"]


def test_strings_with_nul_characters_round_trip_on_every_backend(hub):
    """PostgreSQL's text cannot hold NUL: such columns are stored as UTF-8 bytes there, losslessly."""
    df = pd.DataFrame(
        {
            "s": pd.Series(["a\x00b", "c", None], dtype=STR),
            "o": pd.Series(["x\x00", "y", None], dtype=object),
            "c": pd.Categorical(["p\x00", "q", "p\x00"]),
            "plain": ["no", "nul", "here"],
        },
        index=pd.Index(["i\x00", "j", "k"], name="key"),
    )
    hub.push(df, "nul").wait(timeout=30)
    assert_same(hub.pull("nul"), df)
    # Appending text without NUL to bytes, and the other way round, keeps every value.
    clean = pd.DataFrame(
        {
            "s": pd.Series(["ab", None, "c"], dtype=STR),
            "o": pd.Series(["x", "y", "z"], dtype=object),
            "c": pd.Categorical(["q", "p\x00", "q"], categories=df["c"].cat.categories),
            "plain": ["all", "plain", "text"],
        },
        index=pd.Index(["l", "m", "n"], name="key"),
    )
    hub.push(clean, "nul", if_exists="append").wait(timeout=30)
    assert_same(hub.pull("nul"), pd.concat([df, clean]))
    hub.push(clean, "clean").wait(timeout=30)
    hub.push(df, "clean", if_exists="append").wait(timeout=30)
    assert_same(hub.pull("clean"), pd.concat([clean, df]))


def test_a_description_with_a_nul_character_is_refused(hub):
    with pytest.raises(ValidationError, match="description: contains a NUL character"):
        hub.push(frame(3), "d", description="bad\x00")


@pytest.mark.sqlite_only
def test_the_end_of_a_failed_upload_is_recorded_even_past_a_lock(tmp_path):
    """Recording a failure retries "database is locked" instead of leaving the row "running"."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}?timeout=0.2"
    with dsn.connect(url, retry=dsn.RetryPolicy(attempts=20, base_delay=0.05, max_delay=0.2)) as hub:
        refuse_progress_beyond(hub, 1_000)
        blocker = sqlite3.connect(hub.url.database, isolation_level=None, check_same_thread=False)
        release = threading.Timer(0.8, lambda: (blocker.execute("COMMIT"), blocker.close()))

        def lock_when_it_fails(progress):
            # Runs on the upload's thread as the failure is decided, before its end is recorded.
            if progress.status == "failed" and not release.is_alive():
                blocker.execute("BEGIN IMMEDIATE")
                release.start()

        task = hub.push(frame(5_000), "d", chunk_size=500)
        task.subscribe(lock_when_it_fails)
        with pytest.raises(UploadError):
            task.wait(timeout=30)
        release.join()
        assert hub.tasks().iloc[0]["status"] == "failed"
