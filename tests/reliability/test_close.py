"""Closing a hub while uploads run, and the interpreter exiting under them: closing waits or
cancels as asked, an exit marks the uploads interrupted (and resumable), and nothing hangs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from frametools import assert_identical
from hubtools import kept_stages, record_written_rows, staging_tables

import dsnotebook as dsn
from dsnotebook.errors import HubClosed, UploadCancelled

PREVIOUS = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(n), "b": [f"v{i}" for i in range(n)]})


def _previous_intact(db_url: str) -> None:
    with dsn.connect(db_url) as hub:
        assert hub.info("d").latest.version == 1
        assert_identical(hub.pull("d"), PREVIOUS)


def _seed(db_url: str) -> None:
    with dsn.connect(db_url) as hub:
        hub.push(PREVIOUS, "d").wait(timeout=60)


def test_close_waits_for_running_uploads(db_url):
    hub = dsn.connect(db_url)
    task = hub.push(frame(50_000), "d", chunk_size=500)
    hub.close()
    assert task.status == "succeeded"
    with pytest.raises(HubClosed):
        hub.pull("d")
    with pytest.raises(HubClosed):
        hub.push(frame(10), "e")
    with dsn.connect(db_url) as again:
        assert_identical(again.pull("d"), frame(50_000))


def test_close_with_cancel_stops_uploads_and_publishes_nothing(db_url):
    _seed(db_url)
    hub = dsn.connect(db_url, concurrency=1)
    running = hub.push(frame(200_000), "d", chunk_size=500)
    queued = hub.push(frame(1_000), "d")
    while running.rows_done == 0:
        pass
    hub.close(cancel=True)
    assert running.status == "cancelled" and queued.status == "cancelled"
    for task in (running, queued):
        with pytest.raises(UploadCancelled):
            task.wait()
    _previous_intact(db_url)
    with dsn.connect(db_url) as again:
        statuses = again.tasks(dataset="d").set_index("id")["status"]
        assert statuses[running.id] == statuses[queued.id] == "cancelled"
        assert staging_tables(again) == []


def test_ctrl_c_inside_a_with_block_cancels_the_uploads(db_url):
    _seed(db_url)
    with pytest.raises(KeyboardInterrupt), dsn.connect(db_url) as hub:
        task = hub.push(frame(300_000), "d", chunk_size=500)
        while task.rows_done == 0:
            pass
        raise KeyboardInterrupt
    assert task.status == "cancelled"
    _previous_intact(db_url)


def test_other_errors_inside_a_with_block_wait_for_the_uploads(db_url):
    with pytest.raises(RuntimeError), dsn.connect(db_url) as hub:
        task = hub.push(frame(20_000), "d", chunk_size=500)
        raise RuntimeError("the caller's own error")
    assert task.status == "succeeded"


def test_async_hub_aclose_waits_or_cancels(db_url):
    _seed(db_url)

    async def main():
        async with dsn.AsyncHub(db_url) as hub:
            waited = await hub.push(frame(20_000), "e", chunk_size=1_000)
        assert waited.status == "succeeded"
        hub = await dsn.AsyncHub(db_url).open()
        cancelled = await hub.push(frame(300_000), "d", chunk_size=500)
        while cancelled.rows_done == 0:
            await asyncio.sleep(0.001)
        await hub.aclose(cancel=True)
        return cancelled

    task = asyncio.run(main())
    assert task.status == "cancelled"
    _previous_intact(db_url)


def test_hubs_close_at_exit_while_thread_pools_still_take_work(tmp_path):
    """At exit Python stops every thread pool from taking work before the ``atexit`` hooks run.
    The hubs close before that, since an upload still running needs its I/O threads for each
    chunk until the exit's cancel reaches it; the portal's exit hooks find pools that work."""
    script = textwrap.dedent(
        f"""
        import concurrent.futures, dsnotebook as dsn
        from dsnotebook._portal import get_portal
        hub = dsn.connect({f"sqlite+aiosqlite:///{tmp_path / 'exit.db'}"!r})

        def probe():
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                print("a thread pool takes work:", pool.submit(lambda: True).result(), flush=True)

        get_portal().on_exit(probe)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "a thread pool takes work: True", done.stderr


def test_interpreter_exit_interrupts_running_uploads_quickly_and_they_resume(db_url):
    """An interpreter that exits with uploads running stops them within seconds; the next
    connect finds them ``interrupted``, with their committed rows kept for a resume."""
    _seed(db_url)
    script = textwrap.dedent(
        f"""
        import time, numpy as np, pandas as pd, dsnotebook as dsn
        hub = dsn.connect({db_url!r}, concurrency=1)
        frame = pd.DataFrame({{"a": np.arange(2_000_000), "b": [f"v{{i}}" for i in range(2_000_000)]}})
        task = hub.push(frame, "d", chunk_size=1000)
        queued = hub.push(frame.head(10), "d")
        while task.rows_done < 5000:
            time.sleep(0.01)
        print("started", flush=True)
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    ran = f"the script ran {time.monotonic() - started:.1f} s, its exit included"
    assert done.returncode == 0, (ran, done.stderr)
    assert done.stdout.strip() == "started" and done.stderr == "", (ran, done.stderr)
    print(ran)
    _previous_intact(db_url)
    with dsn.connect(db_url) as hub:
        tasks = hub.tasks(dataset="d")
        assert sorted(tasks["status"]) == ["interrupted", "interrupted", "succeeded"], tasks[["id", "status", "error"]].to_string()
        kept = kept_stages(hub)
        assert len(kept) == 1 and staging_tables(hub) == list(kept)
        (table, committed), = kept.items()
        assert committed >= 5000 and committed % 1000 == 0
        written = record_written_rows(hub, table)
        whole = pd.DataFrame({"a": np.arange(2_000_000), "b": [f"v{i}" for i in range(2_000_000)]})
        hub.push(whole, "d", chunk_size=100_000).wait(timeout=300)
        assert written() == list(range(committed + 1, 2_000_001))
        assert_identical(hub.pull("d"), whole)
