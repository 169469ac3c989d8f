"""A cancel may arrive at any await of an upload: wherever it lands, every connection the upload
took is back in the pool once ``wait()`` returns, the pool logs nothing, nothing reaches stderr,
and what the task reports is what the database holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any

import numpy as np
import pandas as pd
from frametools import STR, assert_identical
from hubtools import staging_tables

import dsnotebook as dsn
from dsnotebook.errors import UploadCancelled

PREVIOUS = pd.DataFrame({"id": [1, 2, 3], "note": pd.array(["a", "b", "c"], dtype=STR)})
ROWS, CHUNK = 3_000, 1_000
UPLOADS = 500


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(ROWS), "x": rng.random(ROWS), "s": pd.array([f"s{i % 7}" for i in range(ROWS)], dtype=STR)})


class _Stepped:
    """Drives a coroutine, calling ``on_step()`` each time it suspends at an await."""

    def __init__(self, coro: Coroutine[Any, Any, Any], on_step: Callable[[], None]) -> None:
        self._coro = coro
        self._on_step = on_step

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self._coro.__await__()
        send: Callable[[Any], Any] = inner.send
        message: Any = None
        while True:
            try:
                signal = send(message)
            except StopIteration as done:
                return done.value
            self._on_step()
            try:
                message = yield signal
                send = inner.send
            except BaseException as exc:  # noqa: BLE001 - passed on to the coroutine, as a Task would
                message, send = exc, inner.throw


async def _stepped(coro: Coroutine[Any, Any, Any], on_step: Callable[[], None]) -> Any:
    return await _Stepped(coro, on_step)


class _AwaitCanceller:
    """On the hub's loop, counts the awaits of upload tasks; the first one created after
    :meth:`arm` is cancelled at each of its awaits numbered in ``at``."""

    def __init__(self) -> None:
        self._at: tuple[int, ...] = ()
        self._armed = False
        #: The number of awaits of each upload task so far, in creation order.
        self.steps: list[int] = []
        #: How many cancels were sent, in all.
        self.cancels = 0

    def arm(self, *at: int) -> None:
        self._at, self._armed = at, True

    def factory(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any) -> asyncio.Task:
        # Upload tasks run BackgroundTaskService._run; every other task goes unchanged.
        if getattr(coro, "__qualname__", "") == "BackgroundTaskService._run" and self._armed:
            self._armed = False
            at, index = self._at, len(self.steps)
            self.steps.append(0)

            def on_step() -> None:
                self.steps[index] += 1
                if self.steps[index] in at:
                    self.cancels += 1
                    asyncio.current_task().cancel()  # lands at the await the task has just reached

            coro = _stepped(coro, on_step)
        return asyncio.Task(coro, loop=loop, **kwargs)


@contextlib.contextmanager
def _cancel_at_awaits(hub) -> Iterator[_AwaitCanceller]:
    canceller = _AwaitCanceller()
    loop = hub._portal.loop
    hub._portal.run(_set_task_factory(loop, canceller.factory))
    try:
        yield canceller
    finally:
        hub._portal.run(_set_task_factory(loop, None))


async def _set_task_factory(loop: asyncio.AbstractEventLoop, factory) -> None:
    loop.set_task_factory(factory)


def test_a_cancel_at_any_await_of_an_upload_hands_back_every_connection(db_url, capfd):
    """An uncancelled upload is counted first: it suspends at N awaits. Then 500 uploads are each
    cancelled at one of those awaits (every one of them in turn, in a seeded random order), and
    once more up to 8 awaits later, in the cleanup the first cancel started. After each
    ``wait()``: no connection is checked out; at the end, every upload's outcome is the one the
    catalog records, no staging table is left and the data matches the outcomes. The pool logs no error
    (the conftest fails any test where it does) and nothing is written to stderr."""
    # A long lease: the heartbeat does not run between the first pass and the end of the test,
    # so any connection checked out after a wait() is the upload's.
    with dsn.connect(db_url, lease=86_400) as hub:
        hub.push(PREVIOUS, "d").wait(timeout=60)
        hub.tasks()  # the first housekeeping pass is over
        pool = hub._async.engine.pool
        with _cancel_at_awaits(hub) as canceller:
            canceller.arm()
            assert hub.push(_frame(0), "d", chunk_size=CHUNK).wait(timeout=60).version == 2
            awaits = canceller.steps[-1]
            assert awaits > 20, f"an upload of {ROWS} rows in {ROWS // CHUNK} chunks suspended only {awaits} times"
            latest = 2
            rng = random.Random(20261206)
            points = [1 + i % awaits for i in range(UPLOADS)]
            rng.shuffle(points)
            # A second cancel, as a second click or a hub closed meanwhile would send, lands in
            # the cleanup that the first one started: its rollback, its record of the end, the
            # drop of the staging rows, the close of its sessions.
            again = [at + rng.randint(1, 8) for at in points]
            outcomes = {"cancelled": 0, "succeeded": 0}
            ended: dict[str, str] = {}  # task id -> its status, as its handle reports it
            for i, at in enumerate(points):
                canceller.arm(at, again[i])
                task = hub.push(_frame(i + 1), "d", chunk_size=CHUNK)
                try:
                    version = task.wait(timeout=60)
                except UploadCancelled:
                    outcomes["cancelled"] += 1
                    assert task.status == "cancelled"
                else:
                    # The cancel came after the publish committed, or the upload had fewer awaits
                    # this time (a wait that found its result ready): it succeeded, and says so.
                    outcomes["succeeded"] += 1
                    latest += 1
                    assert version.version == latest and task.status == "succeeded"
                assert pool.checkedout() == 0, f"upload {i}, cancelled at await {at} of {awaits}: a connection is still checked out"
                ended[task.id] = task.status
                if task.status == "succeeded":
                    assert hub.info("d").latest.version == latest
        # What each upload reported is what the catalog records (an ended upload's record no
        # longer changes, so one read at the end sees what a read after each wait() would).
        recorded = hub.tasks(dataset="d").set_index("id")["status"]
        assert {task_id: recorded[task_id] for task_id in ended} == ended
        assert staging_tables(hub) == []
        assert hub.info("d").latest.version == latest
        assert_identical(hub.pull("d", version=1), PREVIOUS)
    assert awaits <= UPLOADS and outcomes["cancelled"] >= UPLOADS // 2, (awaits, outcomes)
    out, err = capfd.readouterr()
    assert err == ""
    with capfd.disabled():
        print(f"\nan upload suspends at {awaits} awaits; {UPLOADS} uploads, {canceller.cancels} cancels sent: {outcomes}")
