"""Progress as plain numbers, and one pure formatter for every place that shows it.

The engine produces :class:`Progress` snapshots; the text repr, the terminal bar and the notebook
widgets only render them. Every figure they show (fraction, rate, time left) is computed here.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "Listeners",
    "Progress",
    "ProgressListener",
    "Throttle",
    "format_count",
    "format_duration",
    "format_remaining",
    "format_status",
]


@dataclass(frozen=True)
class Progress:
    """One upload's state at a moment."""

    task_id: str
    dataset: str
    status: str
    rows_done: int
    rows_total: int
    elapsed: float
    version: int | None = None
    deduplicated: bool = False
    error: str | None = None
    attempts: int = 0

    @property
    def fraction(self) -> float:
        """Done as a fraction in [0, 1]; an empty upload counts as done once it has succeeded."""
        if self.rows_total <= 0:
            return 1.0 if self.status == "succeeded" else 0.0
        return min(1.0, self.rows_done / self.rows_total)

    @property
    def rows_per_s(self) -> float:
        return self.rows_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def remaining(self) -> float | None:
        """Seconds left while running, at the average rate so far (as tqdm estimates it);
        None before the first rows are written and once the upload has ended."""
        if self.status != "running" or self.rows_done <= 0 or self.elapsed <= 0:
            return None
        return max(0, self.rows_total - self.rows_done) / self.rows_per_s


class ProgressListener(Protocol):
    """Called with a snapshot on every change, on the thread that runs the upload's loop."""

    def __call__(self, progress: Progress) -> None: ...


Unsubscribe = Callable[[], None]
L = TypeVar("L", bound=Callable[..., Any])


class Listeners(Generic[L]):
    """A list of callbacks that threads can add to, remove from and call safely."""

    def __init__(self) -> None:
        self._items: list[L] = []
        self._lock = threading.Lock()

    def add(self, listener: L) -> Unsubscribe:
        """Register ``listener``; returns a function that removes it again."""
        with self._lock:
            self._items.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._items:
                    self._items.remove(listener)

        return unsubscribe

    def snapshot(self) -> list[L]:
        """The listeners now, to call outside the lock (a listener may unsubscribe itself)."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def format_count(n: float) -> str:
    """``1234567`` → ``'1.23M'``; small numbers stay exact."""
    n = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def format_duration(seconds: float) -> str:
    """``75.2`` → ``'1:15'``; under a minute as ``'4.2s'``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_remaining(seconds: float) -> str:
    """``34.2`` → ``'34s left'``, ``75`` → ``'1:15 left'``: whole seconds, rounded up."""
    whole = math.ceil(seconds)
    return f"{whole}s left" if whole < 60 else f"{format_duration(whole)} left"


def format_status(p: Progress, *, timing: bool = True) -> str:
    """A one-line description of an upload, for reprs, logs and widgets.

    ``timing=False`` leaves out the elapsed time and rate, which differ from run to run.
    """
    target = f"{p.dataset!r}" + (f" v{p.version}" if p.version is not None else "")
    parts = [f"{target} {p.status}", f"{p.rows_done:,}/{p.rows_total:,} rows ({p.fraction:.0%})"]
    if p.deduplicated:
        parts.append("identical to the latest version, nothing new published")
    if timing and p.elapsed > 0:
        timing_part = f"{format_duration(p.elapsed)}, {format_count(p.rows_per_s)} rows/s"
        if p.remaining is not None:
            timing_part += f", {format_remaining(p.remaining)}"
        parts.append(timing_part)
    if p.attempts > 1:
        parts.append(f"{p.attempts} attempts")
    if p.error:
        parts.append(f"error: {p.error}")
    return " · ".join(parts)


class Throttle:
    """Coalesce a stream of snapshots into at most one render per ``interval`` seconds.

    ``update(p)`` is called on every change, on the thread of a running event loop (where
    listeners run). A snapshot that arrives too soon after the last render is kept and
    rendered when the interval has passed, unless a newer one replaces it first. A terminal
    snapshot (``final=True``) is rendered at once, and always.
    """

    def __init__(self, render: Callable[[Progress], None], *, interval: float = 0.1, clock: Callable[[], float] | None = None) -> None:
        self._render = render
        self._interval = interval
        self._clock = clock or time.monotonic
        self._last = float("-inf")
        self._pending: Progress | None = None
        self._timer: Any = None
        self._closed = False

    def update(self, progress: Progress, *, final: bool = False) -> None:
        if self._closed:
            return
        now = self._clock()
        if final or now - self._last >= self._interval:
            self._cancel_timer()
            self._pending = None
            self._emit(progress, now)
            if final:
                self._closed = True
            return
        self._pending = progress
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop to wait on: the next update or the final one renders it
            self._timer = loop.call_later(self._last + self._interval - now, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._pending is not None and not self._closed:
            pending, self._pending = self._pending, None
            self._emit(pending, self._clock())

    def _emit(self, progress: Progress, now: float) -> None:
        self._last = now
        self._render(progress)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Stop rendering; a pending snapshot is dropped."""
        self._closed = True
        self._cancel_timer()
        self._pending = None
