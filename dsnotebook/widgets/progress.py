"""``TaskProgress``: one upload's live row, made of standard ipywidgets only.

The row renders the engine's :class:`~dsnotebook.progress.Progress` snapshots and nothing else:
no numbers are computed here. Updates arrive on the thread that runs the upload's loop (the
library's portal thread, for a sync hub) and are throttled to ten per second, plus the final one.
"""

from __future__ import annotations

import html
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..progress import Progress, Throttle, format_count, format_duration
from ..tasks import TERMINAL_STATUSES
from ..upload import UploadTask

__all__ = ["TaskProgress", "display_task"]

log = logging.getLogger("dsnotebook")

#: Renders per second per task, at most; the final state is always rendered.
MAX_UPDATES_PER_S = 10

#: The bar's style and the badge's colour for each status.
BAR_STYLES = {"succeeded": "success", "failed": "danger", "cancelled": "warning", "interrupted": "warning"}
STATUS_COLORS = {
    "queued": "#616161",
    "running": "#1565c0",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#ef6c00",
    "interrupted": "#ef6c00",
}

_rows: weakref.WeakValueDictionary[str, TaskProgress] = weakref.WeakValueDictionary()
_rows_lock = threading.Lock()


class TaskProgress(w.VBox):
    """A live row for one upload: name and version, bar, rows, rows/s, elapsed, status, Cancel.

    The bar turns green when the upload succeeds and red when it fails, with the error shown
    below it. Use :meth:`for_task` to get the row of a task, so that one task has one row however
    often it is displayed.

    Args:
        task: the upload's handle.
        on_retry: called with the handle when Retry is clicked; without it there is no Retry
            button (the :class:`~dsnotebook.widgets.UploadPanel` provides one).
        on_error: called with ``(action, exception)`` when Cancel or Retry fails; by default the
            error is shown in the row.
    """

    def __init__(
        self,
        task: UploadTask,
        *,
        on_retry: Callable[[UploadTask], Any] | None = None,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.task = task
        self._on_retry = on_retry
        self._on_error = on_error
        self._lock = threading.Lock()
        self._closed = False
        self.title = w.Label(layout=w.Layout(width="16em", overflow="hidden")).add_class("dsn-title")
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="14em")).add_class("dsn-bar")
        self.percent = w.Label(layout=w.Layout(width="3.5em")).add_class("dsn-percent")
        self.rows = w.Label(layout=w.Layout(width="14em")).add_class("dsn-rows")
        self.rate = w.Label(layout=w.Layout(width="8em")).add_class("dsn-rate")
        self.elapsed = w.Label(layout=w.Layout(width="4.5em")).add_class("dsn-elapsed")
        self.status_badge = w.Label(style={"font_weight": "bold"}, layout=w.Layout(width="6.5em")).add_class("dsn-status")
        self.cancel_button = w.Button(description="Cancel", icon="stop", layout=w.Layout(width="7em")).add_class("dsn-cancel")
        self.retry_button = w.Button(
            description="Retry", icon="redo", button_style="info", layout=w.Layout(width="7em", display="none")
        ).add_class("dsn-retry")
        self.error = w.HTML(layout=w.Layout(display="none")).add_class("dsn-error")
        self.cancel_button.on_click(lambda _b: self._act("cancelling", self.task.cancel))
        self.retry_button.on_click(lambda _b: self._act("retrying", self._retry))
        row = w.HBox(
            [self.title, self.bar, self.percent, self.rows, self.rate, self.elapsed, self.status_badge, self.cancel_button, self.retry_button],
            layout=w.Layout(align_items="center"),
        )
        super().__init__([row, self.error])
        self.add_class("dsn-task")
        self.add_class(f"dsn-task-{task.id}")
        self.renders = 0
        self._throttle = Throttle(self._render, interval=1 / MAX_UPDATES_PER_S)
        self._unsubscribe: Callable[[], None] | None = None
        self._render(task.snapshot())
        if not task.done():
            self._unsubscribe = task.subscribe(self._on_progress)
            # It may have ended between the snapshot and the subscription.
            if task.done():
                self._on_progress(task.snapshot())

    @classmethod
    def for_task(cls, task: UploadTask, **options: Any) -> TaskProgress:
        """The row already made for ``task`` in this process, or a new one."""
        with _rows_lock:
            row = _rows.get(task.id)
            if row is None or row._closed:
                row = cls(task, **options)
                _rows[task.id] = row
            elif options.get("on_retry") is not None:
                row.set_retry(options["on_retry"])
            return row

    def set_retry(self, on_retry: Callable[[UploadTask], Any] | None) -> None:
        """Show (or, with None, hide) a Retry button for when the upload fails or is cancelled."""
        self._on_retry = on_retry
        self._render(self.task.snapshot())

    def close(self) -> None:
        self._closed = True
        self._detach()
        super().close()

    def __repr__(self) -> str:
        # Stored as the cell's text output; it must not change from run to run.
        return f"<TaskProgress of the upload of {self.task.dataset!r}>"

    # -- updates ----------------------------------------------------------------------------

    def _on_progress(self, progress: Progress) -> None:
        final = progress.status in TERMINAL_STATUSES
        self._throttle.update(progress, final=final)
        if final:
            self._detach()

    def _detach(self) -> None:
        self._throttle.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _render(self, p: Progress) -> None:
        with self._lock:
            self.renders += 1
            ended = p.status in TERMINAL_STATUSES
            self.title.value = p.dataset + (f" v{p.version}" if p.version is not None else "")
            self.title.tooltip = p.dataset
            self.bar.value = p.fraction
            self.bar.bar_style = BAR_STYLES.get(p.status, "")
            self.percent.value = f"{p.fraction:.0%}"
            self.rows.value = f"{p.rows_done:,} / {p.rows_total:,} rows"
            self.rate.value = f"{format_count(p.rows_per_s)} rows/s" if p.elapsed > 0 else ""
            self.elapsed.value = format_duration(p.elapsed) if p.elapsed > 0 else ""
            status = p.status + (" (identical)" if p.deduplicated else "")
            self.status_badge.value = status
            self.status_badge.style.text_color = STATUS_COLORS.get(p.status, "")
            self.cancel_button.disabled = ended
            self.cancel_button.layout.display = "none" if ended else None
            retry = ended and self._on_retry is not None and self.task.can_retry
            self.retry_button.layout.display = None if retry else "none"
            if p.error:
                self.error.value = f'<span style="color:#c62828">{html.escape(p.error, quote=False)}</span>'
                self.error.layout.display = None
            else:
                self.error.value = ""
                self.error.layout.display = "none"

    # -- buttons ----------------------------------------------------------------------------

    def _retry(self) -> None:
        if self._on_retry is not None:
            self._on_retry(self.task)

    def _act(self, action: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - shown where the user clicked, and logged by the handler
            if self._on_error is not None:
                self._on_error(action, exc)
                return
            log.error("%s the upload of %r failed: %s", action, self.task.dataset, exc, exc_info=True)
            with self._lock:
                self.error.value = f'<span style="color:#c62828">{html.escape(f"{action} failed: {exc}", quote=False)}</span>'
                self.error.layout.display = None


def display_task(task: UploadTask) -> None:
    """Show ``task`` as a live :class:`TaskProgress` row under a Jupyter kernel, else as text."""
    from IPython import get_ipython
    from IPython.display import display

    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        print(repr(task))
        return
    display(TaskProgress.for_task(task))
