"""Cancelling an upload at every stage: nothing partial is ever published, the previous version
survives, and the outcome reported is the one the database holds."""

from __future__ import annotations

import gc
import logging
import random
import time

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from frametools import STR, assert_identical
from hubtools import occupy_the_slot, staging_tables, wait_until

from dsnotebook import _faults
from dsnotebook.errors import UploadCancelled

PREVIOUS = pd.DataFrame({"id": [1, 2, 3], "note": pd.array(["a", "b", "c"], dtype=STR)})


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(rows), "x": rng.random(rows), "s": pd.array([f"s{i % 97}" for i in range(rows)], dtype=STR)})


@pytest.fixture
def fault():
    """Arm a fault point in this process for the test; always disarmed afterwards."""
    yield _faults.arm
    _faults.arm(None)


def _assert_nothing_new(hub, cancelled_tasks) -> None:
    assert hub.info("d").latest.version == 1
    assert_identical(hub.pull("d"), PREVIOUS)
    assert staging_tables(hub) == []
    statuses = hub.tasks(dataset="d").set_index("id")["status"]
    for task in cancelled_tasks:
        assert statuses[task.id] == "cancelled"
        assert task.status == "cancelled"
        with pytest.raises(UploadCancelled, match="cancelled; nothing was published"):
            task.wait(timeout=30)


def test_cancel_while_queued(hub):
    hub.push(PREVIOUS, "d").wait(timeout=60)
    release = occupy_the_slot(hub)
    try:
        task = hub.push(_frame(1000), "d")
        time.sleep(0.05)
        assert task.status == "queued"
        assert task.cancel()
    finally:
        release()
    with pytest.raises(UploadCancelled):
        task.wait(timeout=30)
    _assert_nothing_new(hub, [task])


@pytest.mark.parametrize("point", ["staging", "between_chunks", "publishing"])
def test_cancel_at_a_stage_publishes_nothing(hub, fault, point):
    """Held at the stage by a fault point, then cancelled: ``publishing`` is inside the publish
    transaction, with the version row, the latest pointer and the renamed table all written and
    not yet committed; the cancel rolls all of it back."""
    hub.push(PREVIOUS, "d").wait(timeout=60)
    fault(f"{point}@2:pause" if point != "publishing" else "publishing:pause")
    task = hub.push(_frame(20_000), "d", chunk_size=5_000)
    assert _faults.paused.wait(60), f"the upload never reached {point}"
    assert task.status == "running"
    assert task.cancel()
    with pytest.raises(UploadCancelled):
        task.wait(timeout=30)
    _assert_nothing_new(hub, [task])
    # The hub goes on working: the same frame publishes in full afterwards.
    fault(None)
    version = hub.push(_frame(20_000), "d", chunk_size=5_000).wait(timeout=60)
    assert version.version == 2
    assert_identical(hub.pull("d"), _frame(20_000))


def test_a_cancel_after_the_publish_committed_reports_success(hub, fault):
    hub.push(PREVIOUS, "d").wait(timeout=60)
    fault("published:pause")
    task = hub.push(_frame(20_000), "d", chunk_size=5_000)
    assert _faults.paused.wait(60)
    assert task.cancel()
    version = task.wait(timeout=30)
    assert task.status == "succeeded" and version.version == 2
    assert hub.tasks(dataset="d").set_index("id")["status"][task.id] == "succeeded"
    assert_identical(hub.pull("d"), _frame(20_000))
    assert staging_tables(hub) == []


def test_cancels_at_random_moments_are_reported_as_the_database_has_them(hub):
    """A cancel may land anywhere, the commit of the publish included: whatever the task says
    happened is what the catalog says, and the data matches it."""
    hub.push(PREVIOUS, "d").wait(timeout=60)
    frame = _frame(6_000)
    start = time.monotonic()
    hub.push(frame, "timing", chunk_size=1_000).wait(timeout=60)
    duration = time.monotonic() - start
    rng = random.Random(20261203)
    delays = [rng.uniform(0, duration * 1.2) for _ in range(25)]
    print("cancel delays (s):", ", ".join(f"{d:.4f}" for d in delays))
    latest = 1
    outcomes = []
    for i, delay in enumerate(delays):
        task = hub.push(_frame(6_000, seed=i + 1), "d", chunk_size=1_000)
        time.sleep(delay)
        task.cancel()
        try:
            version = task.wait(timeout=60)
        except UploadCancelled:
            outcomes.append("cancelled")
            assert task.status == "cancelled"
            assert hub.info("d").latest.version == latest
        else:
            outcomes.append("succeeded")
            latest += 1
            assert task.status == "succeeded" and version.version == latest
            assert_identical(hub.pull("d"), _frame(6_000, seed=i + 1))
        assert hub.tasks(dataset="d").set_index("id")["status"][task.id] == task.status
        assert staging_tables(hub) == []
    print("outcomes:", outcomes)
    assert_identical(hub.pull("d", version=1), PREVIOUS)


def _cancel_at_a_pool_event(hub, caplog, name: str, nth: int, counts) -> None:
    """Push, and cancel the upload the ``nth`` time the pool's event ``name`` fires for it (those
    for which ``counts(task, *event args)`` is true). Then: the upload ended cancelled with nothing
    published, the pool logged nothing (a connection left to the garbage collector is logged), and
    every connection goes back to the pool."""
    hub.push(PREVIOUS, "d").wait(timeout=60)
    task = None
    seen = 0

    def on_event(*args):
        nonlocal seen
        if task is None or not counts(task, *args):
            return
        seen += 1
        if seen == nth:
            task.cancel()

    pool = hub._async.engine.pool
    event.listen(pool, name, on_event)
    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            task = hub.push(_frame(50_000), "d", chunk_size=1_000)
            with pytest.raises(UploadCancelled):
                task.wait(timeout=60)
            gc.collect()
    finally:
        event.remove(pool, name, on_event)
    assert seen >= nth
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy.pool")] == []
    # The hub's heartbeat may hold one for a moment; it hands it back at once.
    wait_until(lambda: pool.checkedout() == 0, what="every connection back in the pool")
    _assert_nothing_new(hub, [task])


@pytest.mark.parametrize("nth", range(1, 7))
def test_a_cancel_while_a_connection_goes_back_to_the_pool(hub, caplog, nth):
    """Every commit ends with the pool resetting the connection (a rollback) as it goes back. A
    cancel landing in one of those resets, the nth after the first chunk, waits for it: no
    connection is left half returned."""

    def after_the_first_chunk(task, dbapi_connection, record, state) -> bool:
        return not state.transaction_was_reset and task.rows_done > 0

    _cancel_at_a_pool_event(hub, caplog, "reset", nth, after_the_first_chunk)


@pytest.mark.parametrize("nth", range(1, 5))
def test_a_cancel_while_the_pool_hands_over_a_connection(hub, caplog, nth):
    """An upload takes connections from the pool as it goes (its session's, and on SQLite its
    writer's own). A cancel landing while the pool hands one over, the nth after the upload
    started, leaves none of them checked out: each is closed before the cancel is raised."""

    def while_running(task, dbapi_connection, record, proxy) -> bool:
        return task.status == "running"

    _cancel_at_a_pool_event(hub, caplog, "checkout", nth, while_running)


def test_a_cancel_stays_a_cancel_when_the_rollback_after_it_fails(hub):
    """The cancel lands while a chunk's progress is written; the rollback after it then fails
    as a lost connection would, which a retry loop takes for a transient error. The upload
    still ends cancelled, with nothing published, rather than retrying the chunk and going on."""
    hub.push(PREVIOUS, "d").wait(timeout=60)
    task = None
    state = {"cancelled": False, "failed_rollbacks": 0}

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if task is not None and not state["cancelled"] and task.rows_done > 0 and statement.startswith("UPDATE dsn_tasks"):
            state["cancelled"] = True
            task.cancel()

    def on_rollback(conn):
        if state["cancelled"] and state["failed_rollbacks"] == 0:
            state["failed_rollbacks"] += 1
            raise DisconnectionError("the connection was lost during the rollback")

    engine = hub._async.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "rollback", on_rollback)
    try:
        task = hub.push(_frame(50_000), "d", chunk_size=1_000)
        with pytest.raises(UploadCancelled):
            task.wait(timeout=60)
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "rollback", on_rollback)
    assert state["failed_rollbacks"] == 1
    assert task.attempts == 1 and task.rows_done < 50_000
    _assert_nothing_new(hub, [task])
