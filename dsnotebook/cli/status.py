"""``dsnotebook status``: the figures of :meth:`Hub.status`, once or every few seconds.

A fresh process has no uploads of its own, so its upload counts are zeros; what it shows is the
database's size, the staging rows kept for resumes, the free disk, and this process's memory.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING

from ..errors import ValidationError
from ..hub import Hub
from ..monitor import format_bytes
from ..store.engine import mask_url
from .formatting import local_time

if TYPE_CHECKING:
    from ..models import HubStatus

__all__ = ["MIN_WATCH_S", "add_commands", "render_status", "watch_interval"]

#: The shortest ``--watch`` interval: each report queries the database.
MIN_WATCH_S = 0.1
_CLEAR_SCREEN = "\x1b[H\x1b[2J"


def watch_interval(text: str) -> float:
    """The seconds of ``--watch SECONDS``.

    Raises:
        ValidationError: unless ``text`` is a finite number of at least :data:`MIN_WATCH_S`.
    """
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= MIN_WATCH_S):
        raise ValidationError(f"--watch: expected a number of seconds, at least {MIN_WATCH_S:g}, got {text!r}")
    return seconds


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _state(level: str) -> str:
    # Upper case so that a warning stands out in a screen of figures.
    return level if level == "ok" else level.upper()


def render_status(status: HubStatus, *, url: str) -> str:
    """The status as a short table for people: one line per kind of figure.

    ``url`` names the database in the heading; pass it with the password masked.
    """
    uploads = " · ".join(
        f"{getattr(status, name):,} {name}" for name in ("queued", "running", "succeeded", "failed", "cancelled")
    )
    writing = f"{status.rows_per_s:,.0f} rows/s · {format_bytes(status.queued_bytes)} still to write"
    if status.loop_lag_p50_s is None and status.loop_lag_p99_s is None:
        lag = "no samples yet"
    else:
        lag = f"p50 {_lag(status.loop_lag_p50_s)} · p99 {_lag(status.loop_lag_p99_s)} over the last minute"
    share = status.rss_bytes / status.memory_limit_bytes if status.memory_limit_bytes else 0.0
    memory = (
        f"{_state(status.memory_state)}: RSS {format_bytes(status.rss_bytes)} of {format_bytes(status.memory_limit_bytes)}"
        f" ({share:.1%}) · CPU {status.cpu_percent:.1f}%"
    )
    database = [format_bytes(status.database_bytes) if status.database_bytes is not None else "size unknown"]
    if status.tables_bytes is not None:
        database.append(f"dsnotebook tables {format_bytes(status.tables_bytes)}")
    database.append(f"staging {format_bytes(status.staging_bytes)}")
    if status.free_disk_bytes is None:
        disk = "free space unknown (the database server's disk cannot be seen from here)"
    else:
        disk = f"{_state(status.disk_state)}: {format_bytes(status.free_disk_bytes)} free"
    rows = [
        ("uploads", uploads),
        ("writing", writing),
        ("loop lag", lag),
        ("memory", memory),
        ("database", " · ".join(database)),
        ("disk", disk),
    ]
    width = max(len(label) for label, _ in rows) + 2
    heading = f"dsnotebook status of {url} at {local_time(status.taken_at, zone=True)}"
    return "\n".join([heading, *(f"{label:<{width}}{value}" for label, value in rows)])


def _prepare(args: argparse.Namespace) -> None:
    if args.watch is not None:
        args.watch = watch_interval(args.watch)


def cmd_status(hub: Hub, args: argparse.Namespace) -> int:
    url = mask_url(hub.url)

    def render(status: HubStatus) -> str:
        # One object per line, so that a --watch stream is JSON Lines.
        return json.dumps(status.to_dict()) if args.json else render_status(status, url=url)

    if args.watch is None:
        print(render(hub.status()))
        return 0
    clear = not args.json and sys.stdout.isatty()
    try:
        due = time.monotonic()
        first = True
        while True:
            text = render(hub.status())
            if clear:
                text = _CLEAR_SCREEN + text
            elif not first and not args.json:
                text = "\n" + text
            print(text, flush=True)
            first = False
            # Keep to the SECONDS grid; a report slower than SECONDS skips ticks rather than bunching up.
            due += args.watch
            now = time.monotonic()
            due = max(due, now)
            time.sleep(due - now)
    except KeyboardInterrupt:
        return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``status`` to ``sub``."""
    p = sub.add_parser(
        "status",
        help="database size, free disk, memory and uploads, once or every SECONDS",
        description="Show the database's size, the staging rows kept for resuming uploads, the free disk, "
        "and this process's uploads, event-loop lag and memory.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (with --watch, one per line)")
    p.add_argument("--watch", metavar="SECONDS", help="print again every SECONDS until Ctrl-C")
    p.set_defaults(run=cmd_status, prepare=_prepare)
