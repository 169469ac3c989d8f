"""Cancelling an upload at every stage: nothing partial is ever published, the previous version
survives, and the outcome reported is the one the database holds."""

from __future__ import annotations

import logging
import random
import time

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event
from frametools import assert_identical
from hubtools import occupy_the_slot, staging_tables

from dsnotebook import _faults
from dsnotebook.errors import UploadCancelled

PREVIOUS = pd.DataFrame({"id": [1, 2, 3], "note": pd.array(["a", "b", "c"], dtype="str")})


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(rows), "x": rng.random(rows), "s": pd.array([f"s{i % 97}" for i in range(rows)], dtype="str")})


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


def _pool_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy.pool")]


@pytest.mark.parametrize("nth", range(1, 7))
def test_a_cancel_while_a_connection_goes_back_to_the_pool(hub, caplog, nth):
    """Every commit ends with the pool resetting the connection (a rollback) as it goes back. A
    cancel landing in one of those resets, the nth after the first chunk, waits for it: no
    connection is left half returned, and the upload ends cancelled with nothing published."""
    hub.push(PREVIOUS, "d").wait(timeout=60)
    task = None
    resets = 0

    def on_reset(dbapi_connection, record, state):
        nonlocal resets
        if task is None or state.transaction_was_reset or task.rows_done == 0:
            return
        resets += 1
        if resets == nth:
            task.cancel()

    pool = hub._async.engine.pool
    event.listen(pool, "reset", on_reset)
    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            task = hub.push(_frame(50_000), "d", chunk_size=1_000)
            with pytest.raises(UploadCancelled):
                task.wait(timeout=60)
    finally:
        event.remove(pool, "reset", on_reset)
    assert resets >= nth
    assert _pool_errors(caplog) == []
    _assert_nothing_new(hub, [task])
