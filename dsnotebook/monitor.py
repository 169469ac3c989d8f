"""Figures about the process and the machine that a hub's status reports: the event loop's
lateness, memory and CPU, the memory limit, and free disk space.

Process and disk figures come from psutil. The memory limit is the process's cgroup limit where
there is one (a container or a JupyterHub spawner sets it), else the machine's memory.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import psutil

__all__ = ["LoopLag", "ProcessFigures", "format_bytes", "free_disk_bytes", "memory_limit_bytes", "percentile"]


def format_bytes(n: float | None) -> str:
    """``1536`` -> ``"1.5 KB"``, in powers of 1024 with one decimal (``"-"`` for None)."""
    if n is None:
        return "-"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values``, interpolated linearly between the closest
    ranks (numpy's default); None when there are none."""
    if len(values) == 0:
        return None
    return float(np.percentile(values, q))


class LoopLag:
    """How late an event loop wakes up from a short sleep, over a sliding window.

    :meth:`run` sleeps ``interval`` seconds at a time and records by how much each wake-up came
    late: the time the loop was busy elsewhere (a long callback, a blocking call) before it could
    run this one. Started as a task on the loop to watch; cancel it to stop.
    """

    def __init__(self, *, interval: float = 0.1, window: float = 60.0) -> None:
        self.interval = interval
        self.window = window
        self._samples: deque[tuple[float, float]] = deque(maxlen=int(window / interval) + 1)

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self._samples.append((now, max(0.0, now - before - self.interval)))

    def percentiles(self) -> tuple[float | None, float | None]:
        """The median and 99th percentile of the lateness over the window, in seconds."""
        since = time.monotonic() - self.window
        recent = [lag for at, lag in self._samples if at >= since]
        return percentile(recent, 50), percentile(recent, 99)


class ProcessFigures:
    """This process's resident memory and CPU use.

    The CPU figure is the use since the previous reading, taken at most every half second; until
    half a second has passed since the first reading, it is the average over the process's life
    (a shorter span would say 0 % or several hundred).
    """

    MIN_SPAN = 0.5

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._mark = (time.monotonic(), self._cpu_seconds())
        self._last: float | None = None

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def rss_bytes(self) -> int:
        return int(self._process.memory_info().rss)

    def cpu_percent(self) -> float:
        now, used = time.monotonic(), self._cpu_seconds()
        since, used_then = self._mark
        if now - since >= self.MIN_SPAN:
            self._last = (used - used_then) / (now - since) * 100
            self._mark = (now, used)
        if self._last is not None:
            return self._last
        life = time.time() - self._process.create_time()
        return used / life * 100 if life > 0 else 0.0


_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def memory_limit_bytes() -> int:
    """The memory this process may use: the cgroup's limit when one is set and below the
    machine's memory, else the machine's memory."""
    machine = int(psutil.virtual_memory().total)
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < machine:
            return int(text)
    return machine


def free_disk_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free space for this user on the filesystem that holds ``path`` (or its nearest existing
    parent, for a file not yet created); None when it cannot be seen."""
    target = Path(path)
    for candidate in (target, *target.parents):
        if candidate.exists():
            try:
                return int(psutil.disk_usage(str(candidate)).free)
            except OSError:
                return None
    return None
