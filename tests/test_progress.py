"""The throttle that keeps widget updates to ten per second, and the status formatter."""

from __future__ import annotations

import asyncio

from dsnotebook.progress import Progress, Throttle, format_status


def snap(done: int, status: str = "running") -> Progress:
    return Progress(task_id="t", dataset="d", status=status, rows_done=done, rows_total=1000, elapsed=1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_coalesced_and_the_final_state_always_renders():
    clock = FakeClock()
    rendered: list[int] = []
    throttle = Throttle(lambda p: rendered.append(p.rows_done), interval=0.1, clock=clock)
    # 1,000 updates over one simulated second, without a loop to schedule the trailing render.
    for i in range(1000):
        clock.now = i / 1000
        throttle.update(snap(i))
    throttle.update(snap(1000, "succeeded"), final=True)
    assert rendered[0] == 0 and rendered[-1] == 1000
    assert len(rendered) <= 1 / 0.1 + 2
    # Nothing renders after the final state.
    throttle.update(snap(5))
    assert rendered[-1] == 1000


def test_the_last_update_of_a_burst_renders_after_the_interval():
    rendered: list[int] = []

    async def main():
        throttle = Throttle(lambda p: rendered.append(p.rows_done), interval=0.05)
        for i in range(5):
            throttle.update(snap(i))  # 0 renders at once; 1..4 are coalesced
        assert rendered == [0]
        await asyncio.sleep(0.15)
        assert rendered == [0, 4]
        throttle.update(snap(10, "failed"), final=True)
        assert rendered == [0, 4, 10]

    asyncio.run(main())


def test_a_final_update_cancels_the_pending_one():
    rendered: list[int] = []

    async def main():
        throttle = Throttle(lambda p: rendered.append(p.rows_done), interval=10)
        throttle.update(snap(1))
        throttle.update(snap(2))
        throttle.update(snap(3, "cancelled"), final=True)
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert rendered == [1, 3]


def test_format_status_leaves_out_timing_on_request():
    p = Progress(task_id="t", dataset="sales", status="succeeded", rows_done=1000, rows_total=1000, elapsed=2.0, version=3)
    assert format_status(p, timing=False) == "'sales' v3 succeeded · 1,000/1,000 rows (100%)"
    assert format_status(p).endswith("2.0s, 500 rows/s")
