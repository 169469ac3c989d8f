"""kill -9 of a pushing process at every named stage and at random times: a version is either
fully there or not at all, the previous version survives, and the task says what happened."""

from __future__ import annotations

import random
import signal
import sqlite3
import time

import pandas as pd
import pytest
from frametools import STR, assert_identical
from hubtools import kept_stages, staging_tables
from sqlalchemy.engine import make_url
from pusher import MILLION, Pusher, frame

import dsnotebook as dsn
from dsnotebook import _faults

PREVIOUS = pd.DataFrame({"id": [1, 2, 3], "note": pd.array(["a", "b", "c"], dtype=STR)})


def _check_after_kill(
    db_url: str, backend: str, rows: int, seed: int, *, previous: int, may_have_published: bool, known: set[str]
) -> tuple[str, set[str]]:
    """The checks of every kill; returns the killed push's status and the task ids now recorded.

    ``previous`` is the version the dataset had before the killed push, holding PREVIOUS;
    ``known`` the task ids recorded before it started. The killed push is the task not among
    them; a kill that landed before the push recorded its task leaves none ("not recorded").
    """
    if backend == "sqlite":
        con = sqlite3.connect(make_url(db_url).database)
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            con.close()
    with dsn.connect(db_url) as hub:  # connecting marks the dead process's upload interrupted
        tasks = hub.tasks(dataset="d")
        new = tasks[~tasks["id"].isin(known)]
        assert len(new) <= 1, new.to_dict("records")
        task = new.iloc[0] if len(new) else pd.Series({"status": "not recorded"})
        latest = hub.info("d").latest.version
        if latest != previous:
            assert may_have_published, "a version was published before the publish could have committed"
            assert latest == previous + 1 and task["status"] == "succeeded"
            assert_identical(hub.pull("d"), frame(rows, seed))
        else:
            assert task["status"] in ("interrupted", "not recorded"), task.to_dict()
        assert_identical(hub.pull("d", version=previous), PREVIOUS)
        # Every staging table left belongs to an interrupted upload that a push of the same
        # content resumes from, with the rows it committed.
        kept = kept_stages(hub)
        assert set(staging_tables(hub)) == set(kept)
        assert all(done > 0 for done in kept.values())
        if task["status"] == "succeeded":
            assert kept == {}
        assert not hub.tasks()["status"].isin(["queued", "running"]).any()
        return task["status"], set(hub.tasks()["id"])


@pytest.mark.parametrize("point", [*_faults.POINTS])
def test_kill_at_each_named_stage(db_url, backend, point):
    with dsn.connect(db_url) as hub:
        hub.push(PREVIOUS, "d").wait(timeout=60)
        known = set(hub.tasks()["id"])
    rows, chunk = 20_000, 5_000
    # The second time a chunk point is reached: rows are already committed to the staging table.
    fault = f"{point}@2:kill" if point in ("staging", "between_chunks") else f"{point}:kill"
    child = Pusher(db_url, rows, seed=7, chunk_size=chunk, fault=fault)
    code, finished = child.end(timeout=120)
    assert code == -signal.SIGKILL, child.said
    assert not finished
    status, _ = _check_after_kill(db_url, backend, rows, 7, previous=1, may_have_published=point == "published", known=known)
    assert status == ("succeeded" if point == "published" else "interrupted")


def test_a_push_killed_before_it_recorded_its_task_is_told_apart_from_the_previous_one(db_url, backend):
    """Killed at once after connecting, the child has most likely not recorded its task yet
    (validating a million rows comes first): the check must not take the previous push's task,
    which succeeded, for the killed one."""
    with dsn.connect(db_url) as hub:
        hub.push(PREVIOUS, "d").wait(timeout=60)
        known = set(hub.tasks()["id"])
    rows, seed = MILLION
    child = Pusher(db_url, rows, seed=seed, chunk_size=50_000)
    assert child.next_message(timeout=60) == "ready"
    child.kill()
    _, finished = child.end(timeout=60)
    assert not finished
    status, now = _check_after_kill(db_url, backend, rows, seed, previous=1, may_have_published=False, known=known)
    assert status in ("not recorded", "interrupted")
    assert (status == "not recorded") == (now == known)


def _push_previous_again(db_url: str) -> tuple[int, set[str]]:
    """Push PREVIOUS as the dataset's only version; returns it and the task ids recorded now.

    The million-row versions before it have been checked already: kept, they would only make
    each later check (SQLite's integrity check reads the whole file) read them again.
    """
    with dsn.connect(db_url) as hub:
        previous = hub.push(PREVIOUS, "d").wait(timeout=60).version
        hub.prune("d", keep=1)
        assert hub.versions("d")["version"].tolist() == [previous]
        return previous, set(hub.tasks()["id"])


@pytest.mark.slow
def test_kill_a_million_row_push_at_random_times(db_url, backend, capsys):
    seed = 20261203
    rng = random.Random(seed)
    rows, frame_seed = MILLION
    with dsn.connect(db_url) as hub:
        hub.push(PREVIOUS, "d").wait(timeout=60)
    # How long such a push takes here, so that the kill times spread over the whole upload.
    started = time.monotonic()
    child = Pusher(db_url, rows, seed=frame_seed, chunk_size=50_000)
    assert child.next_message(timeout=60) == "ready"
    ready = time.monotonic()
    assert child.end(timeout=600) == (0, True), child.said
    span = time.monotonic() - ready
    previous, known = _push_previous_again(db_url)
    delays = [round(rng.uniform(0, span * 1.3), 3) for _ in range(20)]
    with capsys.disabled():
        print(f"\nseed {seed}: push takes {span:.2f} s (start-up {ready - started:.2f} s); kill delays {delays}")
    outcomes = []
    for delay in delays:
        child = Pusher(db_url, rows, seed=frame_seed, chunk_size=50_000)
        assert child.next_message(timeout=60) == "ready"
        time.sleep(delay)
        child.kill()
        _, finished = child.end(timeout=60)
        status, known = _check_after_kill(db_url, backend, rows, frame_seed, previous=previous, may_have_published=True, known=known)
        outcomes.append(status)
        if status == "succeeded":
            previous, known = _push_previous_again(db_url)
        else:
            assert not finished
    with dsn.connect(db_url) as hub:
        errors = hub.tasks(dataset="d", status="interrupted")["error"]
        resumed = int(errors.str.contains("resumed by upload").sum())
    with capsys.disabled():
        print(f"outcomes: {outcomes}; {resumed} of the interrupted pushes were resumed by the next one")
