"""Interrupting a wait leaves the upload running, and the interruption says so.

Ctrl-C in ``task.wait()`` still raises ``KeyboardInterrupt``, and a cancelled ``await task`` still
raises ``CancelledError``, but their messages say that the upload goes on and that
``task.cancel()`` stops it. Each upload here waits for a slot the test holds, so that it is sure
to be unfinished when the interruption lands, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from frametools import assert_identical
from hubtools import occupy_the_slot, staging_tables

import dsnotebook as dsn
from dsnotebook.errors import UploadCancelled

ROWS = 30_000


def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(ROWS), "b": [f"v{i}" for i in range(ROWS)]})


def still_running(how: str, dataset: str) -> str:
    return (
        f"{how}, but the upload of {dataset!r} continues in the background "
        f"({dataset!r} queued · 0/{ROWS:,} rows (0%)); call task.cancel() to stop it"
    )


# The child holds its hub's only upload slot, pushes, and blocks in task.wait(). A thread of its
# own says "blocked" once the main thread sits inside wait(), waiting on its lock; then the test
# sends SIGINT. The child prints the KeyboardInterrupt as Python would, lets the upload run, and
# waits for it again.
CHILD = textwrap.dedent(
    """
    import asyncio, sys, threading, time, traceback
    import numpy as np, pandas as pd, dsnotebook as dsn

    hub = dsn.connect(URL, concurrency=1)

    async def hold_the_slot():
        release = asyncio.Event()

        async def hold(_session):
            await release.wait()

        holder = hub.task_service.create_task_with_session(hold, task_name="hold the slot")
        while hub.task_service.record(holder).started_at is None:
            await asyncio.sleep(0.001)
        return release

    release = hub.submit(hold_the_slot()).result()
    frame = pd.DataFrame({"a": np.arange(ROWS), "b": [f"v{i}" for i in range(ROWS)]})
    task = hub.push(frame, "big", chunk_size=1000)
    main = threading.main_thread().ident

    def in_wait():
        f = sys._current_frames().get(main)
        top = f
        while f is not None and f.f_code is not dsn.UploadTask.wait.__code__:
            f = f.f_back
        return f is not None and top.f_code.co_name == "wait" and top.f_code.co_filename.endswith("threading.py")

    def announce():
        while not in_wait():
            time.sleep(0.001)
        print("blocked", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    try:
        task.wait()
    except KeyboardInterrupt:
        traceback.print_exc()
        print("after the interrupt:", task.status, flush=True)

    async def open_the_slot():
        release.set()

    hub.submit(open_the_slot()).result()
    print("published rows:", task.wait(timeout=300).rows, flush=True)
    hub.close()
    """
)


def test_ctrl_c_in_wait_says_the_upload_continues_and_how_to_stop_it(db_url):
    script = f"URL = {db_url!r}\nROWS = {ROWS}\n" + CHILD
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline() == "blocked\n"
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr
    lines = stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):", stderr
    assert lines[-1] == "KeyboardInterrupt: " + still_running("wait() was interrupted", "big"), stderr
    assert stdout == f"after the interrupt: queued\npublished rows: {ROWS}\n"
    with dsn.connect(db_url) as hub:
        assert_identical(hub.pull("big"), frame())
        assert hub.tasks(dataset="big")["status"].tolist() == ["succeeded"]


async def _cancel_the_await(task, message: str | None = None) -> asyncio.CancelledError:
    """Await ``task`` in an asyncio task, cancel that task (with ``message``) once it is inside
    the await, and return the CancelledError that came out of it."""
    awaiting = asyncio.Event()

    async def waiter():
        awaiting.set()
        return await task  # runs on until it suspends, before the test resumes below

    waiting = asyncio.create_task(waiter())
    await awaiting.wait()
    waiting.cancel(message)
    with pytest.raises(asyncio.CancelledError) as err:
        await waiting
    return err.value


@pytest.mark.parametrize("then", ["finishes", "cancelled"])
def test_a_cancelled_await_of_a_sync_hubs_upload_says_it_continues(hub, then):
    release = occupy_the_slot(hub)
    try:
        task = hub.push(frame(), "d", chunk_size=1000)
        error = asyncio.run(_cancel_the_await(task))
        assert str(error) == still_running("await task was cancelled", "d")
        assert task.status == "queued"
        if then == "cancelled":
            assert task.cancel()
    finally:
        release()
    if then == "finishes":
        assert task.wait(timeout=300).rows == ROWS
        assert_identical(hub.pull("d"), frame())
    else:
        with pytest.raises(UploadCancelled):
            task.wait(timeout=300)
        assert hub.datasets().empty and staging_tables(hub) == []


def test_a_cancelled_await_on_the_async_hubs_own_loop_says_it_continues(db_url):
    async def main() -> None:
        async with dsn.AsyncHub(db_url, concurrency=1) as ahub:
            release = asyncio.Event()

            async def hold(_session):
                await release.wait()

            holder = ahub.task_service.create_task_with_session(hold, task_name="hold the slot")
            while ahub.task_service.record(holder).started_at is None:
                await asyncio.sleep(0.001)
            try:
                task = await ahub.push(frame(), "d", chunk_size=1000)
                error = await _cancel_the_await(task)
                assert str(error) == still_running("await task was cancelled", "d")
                # A message given to cancel() is kept, in front.
                error = await _cancel_the_await(task, "the request timed out")
                assert str(error) == "the request timed out; " + still_running("await task was cancelled", "d")
            finally:
                release.set()
            assert (await task).rows == ROWS
            assert_identical(await ahub.pull("d"), frame())

    asyncio.run(main())
