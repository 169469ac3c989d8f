"""The terminal's progress bars: one tqdm bar per upload, polled from the handles.

The bar leaves out tqdm's own rate, which counts from when the bar appeared (queue time included)
and only sees the polls; its postfix shows the upload's own rate instead, and the process's
resident memory, so that a push that outgrows the machine shows it while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

import psutil
from tqdm import tqdm

from ..monitor import format_bytes
from ..progress import Progress, format_count
from ..upload import UploadTask

__all__ = ["bar_postfix", "follow"]

_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
_POLL_S = 0.1


def bar_postfix(progress: Progress, rss_bytes: int) -> str:
    """``'running, 48.2k rows/s, RSS 412.5 MB'``: the status, the upload's rate once it has
    started, and the process's resident memory."""
    parts = [progress.status]
    if progress.elapsed > 0:
        parts.append(f"{format_count(progress.rows_per_s)} rows/s")
    parts.append(f"RSS {format_bytes(rss_bytes)}")
    return ", ".join(parts)


def follow(tasks: Sequence[UploadTask], *, out: TextIO | None = None) -> None:
    """Show a tqdm bar per upload on ``out`` until every one has ended."""
    process = psutil.Process()
    bars = [
        tqdm(
            total=t.rows_total,
            desc=t.dataset,
            unit="rows",
            unit_scale=t.rows_total >= 100_000,
            position=i,
            leave=True,
            file=out,
            dynamic_ncols=True,
            bar_format=_BAR_FORMAT,
        )
        for i, t in enumerate(tasks)
    ]

    def show(*, refresh: bool) -> None:
        rss = process.memory_info().rss
        for task, bar in zip(tasks, bars, strict=True):
            snap = task.snapshot()
            bar.update(snap.rows_done - bar.n)
            bar.set_postfix_str(bar_postfix(snap, rss), refresh=refresh)

    try:
        while True:
            show(refresh=False)
            if all(t.done() for t in tasks):
                break
            time.sleep(_POLL_S)
    finally:
        show(refresh=True)
        for bar in bars:
            bar.close()
