"""``TaskProgress``: one upload's live row, made of standard ipywidgets only.

The row renders the engine's :class:`~dsnotebook.progress.Progress` snapshots and nothing else:
every figure it shows (fraction, rate, time left) is computed in :mod:`dsnotebook.progress`.
Updates arrive on the thread that runs the upload's loop (the library's portal thread, for a
sync hub) and are throttled to ten per second, plus the final one.

Its parts sit in three groups (name and bar; figures; status and buttons) that wrap onto a new
line one at a time when the notebook is narrow, so that no label is ever cut. Colours come from
CSS classes (see :mod:`dsnotebook.widgets.theme`), which follow JupyterLab's theme.

A row that was retried says so, and by which upload; the new upload's row says what it retries.
That link shows wherever the row is displayed, in the cell that showed it first as in the panel.
"""

from __future__ import annotations

import html
import logging
import threading
import unicodedata
import weakref
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..progress import (
    Progress,
    Throttle,
    format_count,
    format_duration,
    format_remaining,
)
from ..tasks import TERMINAL_STATUSES
from ..upload import UploadTask
from .theme import set_modifier, stylesheet

__all__ = ["TaskProgress", "display_task", "short_id", "short_title"]

log = logging.getLogger("dsnotebook")

#: Renders per second per task, at most; the final state is always rendered.
MAX_UPDATES_PER_S = 10
#: The bar's style for each status (ipywidgets colours the bar from the theme).
BAR_STYLES = {"succeeded": "success", "failed": "danger", "cancelled": "warning", "interrupted": "warning"}
#: Width of the dataset name in the title, in characters (wide characters count twice).
TITLE_WIDTH = 30

_rows: weakref.WeakValueDictionary[str, TaskProgress] = weakref.WeakValueDictionary()
_rows_lock = threading.RLock()


def short_id(task_id: str) -> str:
    """The first 8 characters of an upload's id, as task names and the panel show it."""
    return task_id[:8]


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def short_title(name: str, version: int | None, width: int = TITLE_WIDTH) -> str:
    """``name vN``, with a name wider than ``width`` cut with an ellipsis; the version is kept."""
    if sum(_width(ch) for ch in name) > width:
        kept, used = [], 0
        for ch in name:
            used += _width(ch)
            if used > width - 1:
                break
            kept.append(ch)
        name = "".join(kept).rstrip() + "…"
    return name + (f" v{version}" if version is not None else "")


def _label(css: str, *classes: str) -> w.Label:
    label = w.Label().add_class(css)
    for c in classes:
        label.add_class(c)
    return label


class TaskProgress(w.VBox):
    """A live row for one upload: name and version, bar, rows, rows/s, elapsed, time left, status, Cancel.

    The bar turns green when the upload succeeds and red when it fails, with the error shown
    below it. Use :meth:`for_task` to get the row of a task, so that one task has one row however
    often it is displayed.

    Args:
        task: the upload's handle.
        on_retry: called with the handle when Retry is clicked, returning the new upload's handle;
            without it there is no Retry button (the :class:`~dsnotebook.widgets.UploadPanel`
            provides one).
        on_error: called with ``(action, exception)`` when Cancel or Retry fails; by default the
            error is shown in the row, where the button was clicked.
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
        self._lock = threading.RLock()
        self._closed = False
        self._problem: str | None = None  # a failed Cancel or Retry
        self.title = _label("dsn-title")
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0).add_class("dsn-bar")
        self.percent = _label("dsn-percent", "dsn-figure")
        self.rows = _label("dsn-rows", "dsn-figure")
        self.rate = _label("dsn-rate", "dsn-figure")
        self.elapsed = _label("dsn-elapsed", "dsn-figure")
        self.eta = _label("dsn-eta", "dsn-figure")
        self.status_badge = _label("dsn-status")
        self.cancel_button = w.Button(description="Cancel", icon="stop", tooltip="Stop this upload").add_class("dsn-cancel")
        self.retry_button = w.Button(
            description="Retry", icon="redo", button_style="info", tooltip="Start this upload again",
            layout=w.Layout(display="none"),
        ).add_class("dsn-retry")  # fmt: skip
        self.error = w.HTML(layout=w.Layout(display="none")).add_class("dsn-error")
        #: Which upload retried this one, or which one this one retries.
        self.note = w.HTML(layout=w.Layout(display="none")).add_class("dsn-note")
        self.cancel_button.on_click(lambda _b: self._act("cancelling", self.task.cancel))
        self.retry_button.on_click(lambda _b: self._act("retrying", self._retry))
        line = w.HBox(
            [
                w.HBox([self.title, self.bar, self.percent]).add_class("dsn-task-group").add_class("dsn-task-identity"),
                w.HBox([self.rows, self.rate, self.elapsed, self.eta]).add_class("dsn-task-group").add_class("dsn-task-figures"),
                w.HBox(
                    [self.status_badge, w.Box([self.cancel_button, self.retry_button]).add_class("dsn-actions")]
                ).add_class("dsn-task-group").add_class("dsn-task-state"),
            ]
        ).add_class("dsn-task-line")
        super().__init__([stylesheet(), line, self.error, self.note])
        self.add_class("dsn-task")
        self.add_class(f"dsn-task-{task.id}")
        self.renders = 0
        self._throttle = Throttle(self._render, interval=1 / MAX_UPDATES_PER_S)
        self._unsubscribe: Callable[[], None] | None = None
        # The retry of this upload, followed until it ends.
        self._successor: UploadTask | None = None
        self._retry_throttle: Throttle | None = None
        self._retry_unsubscribe: Callable[[], None] | None = None
        self._render(task.snapshot())
        if task.retry_of is not None:
            self._show_origin(task.retry_of)
        # An ended upload that can be retried is still listened to: a retry of it, from any row,
        # the panel or code, shows here.
        if not task.done() or (task.can_retry and task.retried_by is None):
            self._unsubscribe = task.subscribe(self._on_progress)
            # It may have ended, or been retried, between the snapshot and the subscription.
            if task.done():
                self._on_progress(task.snapshot())
        if task.retried_by is not None:
            self._follow_retry(task.retried_by)

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

    @property
    def retried_as(self) -> UploadTask | None:
        """The upload that retried this one (``task.retried_by``) as this row shows it, if any."""
        return self._successor

    def close(self) -> None:
        self._closed = True
        self._detach()
        self._throttle.close()
        self._stop_following()
        super().close()

    def __repr__(self) -> str:
        # Stored as the cell's text output; it must not change from run to run.
        return f"<TaskProgress of the upload of {self.task.dataset!r}>"

    # -- updates ----------------------------------------------------------------------------

    def _on_progress(self, progress: Progress) -> None:
        final = progress.status in TERMINAL_STATUSES
        retry = self.task.retried_by
        if retry is not None:
            self._detach()
            self._follow_retry(retry)
            return
        self._throttle.update(progress, final=final)
        if final and not self.task.can_retry:
            self._detach()

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _render(self, p: Progress) -> None:
        with self._lock:
            self.renders += 1
            ended = p.status in TERMINAL_STATUSES
            self.title.value = short_title(p.dataset, p.version)
            self.title.tooltip = p.dataset + (f" v{p.version}" if p.version is not None else "") + f"\nupload {p.task_id}"
            self.bar.value = p.fraction
            self.bar.bar_style = BAR_STYLES.get(p.status, "")
            self.percent.value = f"{p.fraction:.0%}"
            self.rows.value = f"{p.rows_done:,} / {p.rows_total:,} rows"
            self.rate.value = f"{format_count(p.rows_per_s)} rows/s" if p.elapsed > 0 else ""
            self.elapsed.value = format_duration(p.elapsed) if p.elapsed > 0 else ""
            self.elapsed.tooltip = "time since the upload started" if p.elapsed > 0 else None
            remaining = p.remaining
            self.eta.value = format_remaining(remaining) if remaining is not None else ""
            self.eta.tooltip = "at the average rate so far" if remaining is not None else None
            self.status_badge.value = p.status + (" (identical)" if p.deduplicated else "")
            set_modifier(self.status_badge, "dsn-state-", p.status)
            set_modifier(self, "dsn-row-", p.status)
            self.cancel_button.disabled = ended
            self.cancel_button.layout.display = "none" if ended else None
            self._render_retry_button()
            problem = self._problem or p.error
            if problem:
                # A sentence of its own under the row: it starts with a capital.
                problem = problem[:1].upper() + problem[1:]
                self.error.value = f'<span class="dsn-level-error dsn-text">{html.escape(problem, quote=False)}</span>'
                self.error.layout.display = None
            else:
                self.error.value = ""
                self.error.layout.display = "none"

    def _render_retry_button(self) -> None:
        # Once retried, the row points at the retry instead: a second Retry would start a twin.
        retry = self.task.done() and self._on_retry is not None and self.task.can_retry and self._successor is None
        self.retry_button.layout.display = None if retry else "none"

    # -- retries ----------------------------------------------------------------------------

    def _show_origin(self, origin_id: str) -> None:
        with self._lock:
            self.note.value = f'<span class="dsn-text">Retry of upload {short_id(origin_id)}</span>'
            self.note.layout.display = None
            self.add_class("dsn-retry-of")

    def _follow_retry(self, retry: UploadTask) -> None:
        with self._lock:
            if self._successor is retry:
                return
            self._stop_following()
            self._successor = retry
            self._render_retry_button()
            self.add_class("dsn-retried")
            self._render_retry(retry.snapshot())
            if retry.done():
                return
            self._retry_throttle = Throttle(self._render_retry, interval=1 / MAX_UPDATES_PER_S)
            self._retry_unsubscribe = retry.subscribe(self._on_retry_progress)
        if retry.done():  # it ended before the subscription
            self._on_retry_progress(retry.snapshot())

    def _on_retry_progress(self, p: Progress) -> None:
        throttle = self._retry_throttle
        if throttle is None:
            return
        final = p.status in TERMINAL_STATUSES
        throttle.update(p, final=final)
        if final:
            self._stop_following()

    def _stop_following(self) -> None:
        if self._retry_throttle is not None:
            self._retry_throttle.close()
            self._retry_throttle = None
        if self._retry_unsubscribe is not None:
            self._retry_unsubscribe()
            self._retry_unsubscribe = None

    def _render_retry(self, p: Progress) -> None:
        with self._lock:
            where = f"v{p.version}" if p.version is not None else f"{p.fraction:.0%}"
            self.note.value = (
                f'<span class="dsn-text">Retried as upload {short_id(p.task_id)}: </span>'
                f'<span class="dsn-state-{html.escape(p.status)}">{html.escape(p.status, quote=False)}</span>'
                f'<span class="dsn-text">, {where}</span>'
            )
            self.note.layout.display = None

    # -- buttons ----------------------------------------------------------------------------

    def _retry(self) -> None:
        if self._on_retry is None:
            return
        self._on_retry(self.task)

    def _act(self, action: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - shown where the user clicked, and logged
            if self._on_error is not None:
                self._on_error(action, exc)
                return
            log.exception("%s the upload of %r failed", action, self.task.dataset)
            with self._lock:
                self._problem = f"{action} failed: {exc}"
            self._render(self.task.snapshot())
        else:
            if self._problem is not None:
                with self._lock:
                    self._problem = None
                self._render(self.task.snapshot())


def display_task(task: UploadTask) -> None:
    """Show ``task`` as a live :class:`TaskProgress` row under a Jupyter kernel, else as text."""
    from IPython import get_ipython
    from IPython.display import display

    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        print(repr(task))
        return
    display(TaskProgress.for_task(task))
