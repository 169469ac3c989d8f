"""Named points in an upload where the reliability tests make a process die or stall.

Set ``DSNOTEBOOK_FAULT`` before the process imports dsnotebook, as ``<point>[@<n>]:<action>``:
at the ``n``-th time (default: the first) any upload of the process reaches ``point``, the
``action`` happens. Actions: ``kill`` (SIGKILL to this process, as a crash or ``kill -9`` would
do) and ``pause`` (print ``dsnotebook-fault-reached <point>`` on stderr and hold that upload there
until it is cancelled, while the rest of the process goes on, so that a test can kill or cancel
an upload that is known to stand at that point).

Points, in the order an upload passes them:

=================  =====================================================================
``queued``         the task is recorded as queued, before it waits for a slot
``staging``        a chunk's rows are written to the staging table, not yet committed
``between_chunks`` a chunk has committed and the next has not begun
``publishing``     inside the publish transaction, everything done but the commit
``published``      right after the publish transaction has committed
=================  =====================================================================

Unset (always, outside tests), :func:`reached` costs one comparison. Tests that run the upload in
their own process use :func:`arm` instead of the variable, and wait on :data:`paused`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading

__all__ = ["POINTS", "arm", "paused", "reached"]

POINTS = ("queued", "staging", "between_chunks", "publishing", "published")


def _parse(text: str) -> tuple[str, int, str] | None:
    if not text:
        return None
    where, _, action = text.rpartition(":")
    point, _, nth = where.partition("@")
    if point not in POINTS or action not in ("kill", "pause") or (nth and not nth.isdigit()):
        raise ValueError(
            f"DSNOTEBOOK_FAULT={text!r}: expected <point>[@<n>]:<kill|pause> with a point among {', '.join(POINTS)}"
        )
    return point, int(nth or 1), action


_FAULT = _parse(os.environ.get("DSNOTEBOOK_FAULT", "").strip())
_counts: dict[str, int] = {}
_lock = threading.Lock()
#: Set when an upload pauses at the armed point; cleared by :func:`arm`.
paused = threading.Event()


def arm(text: str | None) -> None:
    """Arm a fault in this process, as ``DSNOTEBOOK_FAULT`` would (None disarms), with fresh counts."""
    global _FAULT
    with _lock:
        _FAULT = _parse((text or "").strip())
        _counts.clear()
        paused.clear()


async def reached(point: str) -> None:
    """Called by the engine at each named point; does nothing unless ``DSNOTEBOOK_FAULT`` names it."""
    fault = _FAULT
    if fault is None or fault[0] != point:
        return
    with _lock:
        _counts[point] = _counts.get(point, 0) + 1
        hit = _counts[point] == fault[1]
    if not hit:
        return
    if fault[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print(f"dsnotebook-fault-reached {point}", file=sys.stderr, flush=True)
    paused.set()
    await asyncio.Event().wait()
