"""``StatusStrip``: a hub's figures in one line, refreshed while it is on screen.

It shows the uploads waiting and running, the rows per second, this process's memory (RSS), the
database's size and the free disk, from :meth:`Hub.status <dsnotebook.hub.Hub.status>`. Memory
turns amber above 80 % of the memory limit and red above 90 %; free disk turns amber below twice
the bytes the uploads still have to write, and red below them (the thresholds are
:class:`~dsnotebook.models.HubStatus`'s own).

Refreshing: at most once a second, and only while the strip is displayed. The frontend counts
the strip's views (ipywidgets' ``_view_count``): the refresh loop starts with the first view
and stops when the last one goes (an output cleared, a notebook closed) or when the strip is
closed. The loop is a task on the hub's own loop, so a busy cell never holds it up, and no
timer or task is left once :meth:`StatusStrip.close` returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..errors import HubClosed
from ..monitor import format_bytes
from ..progress import format_count
from .theme import set_modifier, stylesheet

if TYPE_CHECKING:
    from ..models import HubStatus

__all__ = ["MIN_INTERVAL_S", "StatusStrip"]

log = logging.getLogger("dsnotebook")

#: The shortest time between two refreshes, in seconds: each one queries the database.
MIN_INTERVAL_S = 1.0
#: How long :meth:`StatusStrip.stop` waits for the refresh loop to end.
STOP_TIMEOUT_S = 10.0
_ORDER = {"ok": 0, "warn": 1, "critical": 2}


def _item(name: str, tooltip: str) -> w.Label:
    return w.Label(tooltip=tooltip).add_class("dsn-strip-item").add_class(f"dsn-strip-{name}")


class StatusStrip(w.HBox):
    """A hub's queue, rate, memory, database size and free disk, in one line.

    ``hub.monitor()`` shows one alone; the :class:`~dsnotebook.widgets.UploadPanel` shows one
    above its tabs.

    Args:
        hub: the sync :class:`~dsnotebook.hub.Hub` to watch.
        interval: seconds between refreshes while displayed; at least :data:`MIN_INTERVAL_S`.

    Attributes:
        status: the :class:`~dsnotebook.models.HubStatus` shown, or None before the first.
        refreshes: how many statuses it has shown.
    """

    def __init__(self, hub: Any, *, interval: float = MIN_INTERVAL_S) -> None:
        self.hub = hub
        self.interval = max(MIN_INTERVAL_S, float(interval))
        self.queue = _item("queue", "This hub's uploads waiting for a slot, and running")
        self.rate = _item("rate", "Rows per second of the running uploads together")
        self.memory = _item("memory", "")
        self.database = _item("database", "")
        self.disk = _item("disk", "")
        self.note = _item("note", "")
        self.status: HubStatus | None = None
        self.refreshes = 0
        self._lock = threading.RLock()
        self._closed = False
        self._future: concurrent.futures.Future | None = None  # the refresh loop, as submitted
        self._task: asyncio.Task | None = None  # the refresh loop, once running on the hub's loop
        self._loop: asyncio.AbstractEventLoop | None = None  # the hub's loop, once the refresh loop ran
        self._failing = False  # the last refresh failed (logged once, until one succeeds)
        super().__init__([stylesheet(), self.queue, self.rate, self.memory, self.database, self.disk, self.note])
        self.add_class("dsn-strip")
        self.show(None)
        # A number (not None) asks the frontend to count this widget's views.
        self._view_count = 0
        self.observe(self._on_views, names="_view_count")

    def __repr__(self) -> str:
        # Stored as the cell's text output; it must not change from run to run.
        return "<StatusStrip: queue · rows/s · memory · database · free disk>"

    # -- showing a status ----------------------------------------------------------------------

    def show(self, status: HubStatus | None) -> None:
        """Render ``status`` (None: placeholders). Any thread may call it."""
        with self._lock:
            self.status = status
            if status is None:
                for item in (self.queue, self.rate, self.memory, self.database, self.disk):
                    item.value = ""
                self.database.layout.display = self.disk.layout.display = "none"
                self.note.value = "Status: waiting for the first figures…"
                set_modifier(self, "dsn-level-", None)
                return
            self.refreshes += 1
            self.queue.value = f"{status.queued:,} queued · {status.running:,} running"
            self.queue.tooltip = (
                f"This hub's uploads since it opened: {status.queued:,} queued, {status.running:,} running, "
                f"{status.succeeded:,} succeeded, {status.failed:,} failed, {status.cancelled:,} cancelled"
            )
            self.rate.value = f"{format_count(status.rows_per_s)} rows/s"
            share = status.rss_bytes / status.memory_limit_bytes if status.memory_limit_bytes else 0.0
            self.memory.value = f"RSS {format_bytes(status.rss_bytes)} of {format_bytes(status.memory_limit_bytes)}"
            self.memory.tooltip = (
                f"This process's resident memory: {share:.0%} of the limit. Amber above 80 %, red above 90 %. "
                f"CPU {status.cpu_percent:.0f} %."
            )
            set_modifier(self.memory, "dsn-level-", _level(status.memory_state))
            if status.database_bytes is None:
                self.database.layout.display = "none"
            else:
                self.database.value = f"DB {format_bytes(status.database_bytes)}"
                parts = [f"The database: {format_bytes(status.database_bytes)}"]
                if status.tables_bytes is not None:
                    parts.append(f"dsnotebook's tables {format_bytes(status.tables_bytes)}")
                parts.append(f"rows kept for resuming uploads {format_bytes(status.staging_bytes)}")
                self.database.tooltip = "; ".join(parts)
                self.database.layout.display = None
            if status.free_disk_bytes is None:
                self.disk.layout.display = "none"
            else:
                self.disk.value = f"{format_bytes(status.free_disk_bytes)} free"
                self.disk.tooltip = (
                    f"Free disk where the database is. The uploads still have {format_bytes(status.queued_bytes)} "
                    "to write: amber below twice that, red below it."
                )
                self.disk.layout.display = None
            set_modifier(self.disk, "dsn-level-", _level(status.disk_state))
            worst = max(status.memory_state, status.disk_state, key=lambda s: _ORDER.get(s, 0))
            set_modifier(self, "dsn-level-", _level(worst))
            self.note.value = ""

    def _show_problem(self, text: str) -> None:
        with self._lock:
            self.note.value = text

    def refresh(self) -> HubStatus:
        """Ask the hub for its status now, show it and return it (blocks for a few milliseconds)."""
        status = self.hub.status()
        self.show(status)
        return status

    # -- the refresh loop ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the refresh loop runs."""
        with self._lock:
            return self._future is not None and not self._future.done()

    def start(self) -> None:
        """Refresh every :attr:`interval` seconds until :meth:`stop` or :meth:`close`.

        Displaying the strip calls this by itself; call it only for a strip shown some other way.
        """
        with self._lock:
            if self._closed or self.running:
                return
            if self.hub.closed:
                self._show_problem("Status: the hub is closed.")
                return
            self._future = self.hub.submit(self._run())

    def stop(self) -> None:
        """Stop refreshing; returns once the loop has ended (its timer with it)."""
        with self._lock:
            future, self._future = self._future, None
        if future is None or future.done():
            return  # never started, or it ended by itself (the hub closed)
        future.cancel()
        try:
            on_its_loop = self._loop is not None and asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_its_loop = False
        if on_its_loop:
            return  # the loop cannot be waited for from its own thread; it ends at its next step
        # The cancel and this wait go through the hub loop's queue in order: once the wait runs,
        # the refresh loop has either ended or been told to.
        try:
            self.hub.submit(self._join()).result(timeout=STOP_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            log.warning("the status strip's refresh loop did not stop within %s s", STOP_TIMEOUT_S)

    async def _join(self) -> None:
        task = self._task
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait({task})

    async def _run(self) -> None:
        self._task, self._loop = asyncio.current_task(), asyncio.get_running_loop()
        try:
            while not self._closed:
                try:
                    status = await self.hub.aio.status()
                except HubClosed:
                    self._show_problem("Status: the hub is closed.")
                    return
                except Exception as exc:  # noqa: BLE001 - shown in the strip; logged once per run of failures
                    if not self._failing:
                        log.warning("the status strip could not read the hub's status: %s", exc, exc_info=True)
                    self._failing = True
                    self._show_problem(f"Status unavailable: {exc}")
                else:
                    self._failing = False
                    self.show(status)
                await asyncio.sleep(self.interval)
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def _on_views(self, change: dict[str, Any]) -> None:
        # The frontend's view count changed: a view was shown, or one went away.
        if change["new"]:
            self.start()
        else:
            self.stop()

    def close(self) -> None:
        """Stop refreshing and close the strip's widgets."""
        with self._lock:
            was_closed, self._closed = self._closed, True
        self.stop()
        if was_closed:
            return
        self.unobserve(self._on_views, names="_view_count")
        for item in (self.queue, self.rate, self.memory, self.database, self.disk, self.note):
            item.close()
        super().close()


def _level(state: str) -> str | None:
    """The CSS level of a :class:`~dsnotebook.models.HubStatus` state: none when all is well."""
    return None if state == "ok" else state
