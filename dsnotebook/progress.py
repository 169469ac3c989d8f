"""Progress as plain numbers, and one pure formatter for every place that shows it.

The engine produces :class:`Progress` snapshots; the text repr, the terminal bar and the notebook
widgets only render them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Progress", "ProgressListener", "format_count", "format_duration", "format_status"]


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


class ProgressListener(Protocol):
    """Called with a snapshot on every change, on the thread that runs the upload's loop."""

    def __call__(self, progress: Progress) -> None: ...


Unsubscribe = Callable[[], None]


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


def format_status(p: Progress, *, timing: bool = True) -> str:
    """A one-line description of an upload, for reprs, logs and widgets.

    ``timing=False`` leaves out the elapsed time and rate, which differ from run to run.
    """
    target = f"{p.dataset!r}" + (f" v{p.version}" if p.version is not None else "")
    parts = [f"{target} {p.status}", f"{p.rows_done:,}/{p.rows_total:,} rows ({p.fraction:.0%})"]
    if p.deduplicated:
        parts.append("identical to the latest version, nothing new published")
    if timing and p.elapsed > 0:
        parts.append(f"{format_duration(p.elapsed)}, {format_count(p.rows_per_s)} rows/s")
    if p.attempts > 1:
        parts.append(f"{p.attempts} attempts")
    if p.error:
        parts.append(f"error: {p.error}")
    return " · ".join(parts)
