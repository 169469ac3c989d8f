"""Resuming an interrupted push from the staging rows it had committed, and how long those rows
are kept. The rows written are counted by a trigger in the database, not by the engine."""

from __future__ import annotations

import signal
from datetime import timedelta

import pandas as pd
import pytest
from frametools import assert_identical
from hubtools import execute, kept_stages, record_written_rows, staging_tables
from pusher import Pusher, make

import dsnotebook as dsn
from dsnotebook import _faults
from dsnotebook.errors import ValidationError

ROWS, CHUNK, SEED = 100_000, 10_000, 5


def _kill_after_chunks(db_url: str, chunks: int) -> None:
    """Push make(ROWS, SEED) in a child process that is killed once ``chunks`` chunks are committed."""
    child = Pusher(db_url, ROWS, SEED, CHUNK, fault=f"between_chunks@{chunks}:kill")
    code, finished = child.end(timeout=120)
    assert (code, finished) == (-signal.SIGKILL, False), child.said


@pytest.fixture
def fault():
    yield _faults.arm
    _faults.arm(None)


def _interrupted(hub):
    frame = hub.tasks(dataset="d", status="interrupted")
    assert len(frame) == 1
    return frame.iloc[0]


def test_pushing_the_same_content_again_writes_only_the_remaining_rows(db_url):
    _kill_after_chunks(db_url, 4)
    with dsn.connect(db_url) as hub:
        old = _interrupted(hub)
        # The rows it committed are kept, with the task that can resume them.
        assert kept_stages(hub) == {old.staging_table: 40_000}
        assert staging_tables(hub) == [old.staging_table]
        written = record_written_rows(hub, old.staging_table)
        task = hub.push(make(ROWS, SEED), "d", chunk_size=CHUNK)
        version = task.wait(timeout=120)
        assert version.version == 1 and version.rows == ROWS
        assert_identical(hub.pull("d"), make(ROWS, SEED))
        # Counted by the database's trigger: rows 40,001..100,000 and nothing else.
        assert written() == list(range(40_001, ROWS + 1))
        tasks = hub.tasks(dataset="d").set_index("id")
        assert tasks.loc[task.id, "status"] == "succeeded" and tasks.loc[task.id, "rows_done"] == ROWS
        assert "resumed by upload " + task.id in tasks.loc[old.id, "error"]
        assert staging_tables(hub) == [] and kept_stages(hub) == {}


def test_other_content_does_not_resume_and_a_newer_version_ends_the_kept_rows(db_url):
    _kill_after_chunks(db_url, 3)
    with dsn.connect(db_url) as hub:
        old = _interrupted(hub)
        written = record_written_rows(hub, old.staging_table)
        other = make(ROWS, SEED + 1)
        hub.push(other, "d", chunk_size=CHUNK).wait(timeout=120)
        assert_identical(hub.pull("d"), other)
        assert written() == []  # a table of its own, not the interrupted one's
        # The dataset has a newer version than the interrupted upload: its rows are of no use now.
        assert staging_tables(hub) == [] and kept_stages(hub) == {}


def test_a_different_dataset_does_not_resume(db_url):
    _kill_after_chunks(db_url, 2)
    with dsn.connect(db_url) as hub:
        old = _interrupted(hub)
        written = record_written_rows(hub, old.staging_table)
        hub.push(make(ROWS, SEED), "elsewhere", chunk_size=CHUNK).wait(timeout=120)
        assert written() == []
        assert kept_stages(hub) == {old.staging_table: 20_000}


def test_kept_rows_expire_after_keep_interrupted(db_url):
    _kill_after_chunks(db_url, 2)
    with dsn.connect(db_url, keep_interrupted=timedelta(hours=1)) as hub:
        old = _interrupted(hub)
        assert kept_stages(hub) == {old.staging_table: 20_000}
    # Interrupted two hours ago: past the hour, so the next hub drops the rows when it connects.
    with dsn.connect(db_url) as hub:
        if hub.url.get_backend_name() == "sqlite":
            execute(hub, f"UPDATE dsn_tasks SET finished_at = datetime(finished_at, '-2 hours') WHERE id = '{old.id}'")
        else:
            execute(hub, f"UPDATE dsn_tasks SET finished_at = finished_at - interval '2 hours' WHERE id = '{old.id}'")
    with dsn.connect(db_url, keep_interrupted=3600) as hub:
        assert hub.wait_housekeeping(timeout=60)  # it drops expired rows in the background
        assert staging_tables(hub) == [] and kept_stages(hub) == {}
        assert _interrupted(hub).staging_table is None
        # Nothing to resume from: the push writes every row.
        hub.push(make(ROWS, SEED), "d", chunk_size=CHUNK).wait(timeout=120)
        assert_identical(hub.pull("d"), make(ROWS, SEED))


def test_keep_interrupted_zero_keeps_nothing(db_url):
    _kill_after_chunks(db_url, 2)
    with dsn.connect(db_url, keep_interrupted=0) as hub:
        assert hub.wait_housekeeping(timeout=60)
        assert staging_tables(hub) == [] and kept_stages(hub) == {}


def test_cleanup_drops_kept_rows_at_once(db_url):
    _kill_after_chunks(db_url, 2)
    with dsn.connect(db_url) as hub:
        assert len(kept_stages(hub)) == 1
        assert hub.cleanup() == 1
        assert staging_tables(hub) == [] and kept_stages(hub) == {}
        assert hub.cleanup() == 0


def test_cleanup_leaves_running_uploads_alone(hub):
    hub.push(make(1_000, 1), "first").wait(timeout=60)
    task = hub.push(make(400_000, 2), "d", chunk_size=5_000)
    while task.rows_done == 0:
        pass
    assert hub.cleanup() == 0
    task.wait(timeout=120)
    assert_identical(hub.pull("d"), make(400_000, 2))


@pytest.mark.parametrize("bad", [-1, "7 days", True, float("nan")])
def test_keep_interrupted_is_validated(db_url, bad):
    with pytest.raises(ValidationError, match="keep_interrupted"):
        dsn.connect(db_url, keep_interrupted=bad)


def test_an_interrupted_append_resumes_and_appends(db_url, fault):
    """Interrupted the way an interpreter exit interrupts it (in process, not killed), an append
    keeps its committed rows too, and the resumed append publishes the previous rows plus all of the new."""
    first, more = make(5_000, 1), make(ROWS, SEED)
    more.index = pd.RangeIndex(5_000, 5_000 + ROWS)
    with dsn.connect(db_url) as hub:
        hub.push(first, "d").wait(timeout=60)
    hub = dsn.connect(db_url)
    fault("between_chunks@3:pause")
    task = hub.push(more, "d", if_exists="append", chunk_size=CHUNK)
    assert _faults.paused.wait(60)
    hub._run(hub._async._shutdown(cancel=True, timeout=None, interrupted=True))
    fault(None)
    assert task.status == "interrupted"
    with dsn.connect(db_url) as hub:
        assert kept_stages(hub) == {_interrupted(hub).staging_table: 30_000}
        written = record_written_rows(hub, _interrupted(hub).staging_table)
        version = hub.push(more, "d", if_exists="append", chunk_size=CHUNK).wait(timeout=120)
        assert version.version == 2 and version.rows == 5_000 + ROWS
        # The new rows from 30,001 on; the publish copies the previous version's rows in too, at
        # row ids up to 0.
        rows = written()
        assert [i for i in rows if i > 0] == list(range(30_001, ROWS + 1))
        assert len([i for i in rows if i <= 0]) == 5_000
        assert_identical(hub.pull("d"), pd.concat([first, more]))
        assert_identical(hub.pull("d", version=1), first)
        assert staging_tables(hub) == []
