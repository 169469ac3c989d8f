"""The UploadPanel's behaviour, with no widgets in it.

:class:`PanelController` holds the panel's state (the frames on offer, the upload form, the
uploads of this process, the stored datasets) and every action on it. The widgets in
:mod:`dsnotebook.widgets.panel` only bind to it, and notebooks or tests can drive it directly.
This module imports neither ipywidgets nor IPython.

Messages have one place each. The form's own line (:attr:`PanelController.form_message`) says
whether the form can be uploaded, and how the last click on Upload went; it changes with every
edit. The status line (:attr:`PanelController.status`) tells what happened elsewhere: an upload
ended, a version was deleted, a refresh failed. Each of its messages carries its time.

Threads: actions run on the caller's thread (the kernel's, for widget callbacks). Uploads start
and end on the library's portal thread, so the ``tasks`` and ``datasets`` events may arrive
there; a listener must not call the sync :class:`~dsnotebook.hub.Hub` from such an event.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pandas as pd

from .. import _waiting
from ..errors import ConfigError, DatasetNotFound, UsageError, ValidationError
from ..progress import Listeners, Progress
from ..tasks import TERMINAL_STATUSES
from ..upload import UploadTask, validate_name, validate_options

__all__ = ["FRAME_KINDS", "FrameChoice", "Message", "PanelController"]

log = logging.getLogger("dsnotebook")

Event = Literal["frames", "form", "tasks", "history", "datasets", "selection", "status"]
Listener = Callable[[str], None]

#: Columns of ``hub.tasks()`` shown for uploads of earlier sessions and other processes.
HISTORY_COLUMNS = ["id", "dataset", "status", "rows_done", "rows_total", "attempts", "queued_at", "finished_at", "error"]
#: Columns of ``hub.datasets()`` shown in the datasets table.
DATASET_COLUMNS = ["name", "latest_version", "rows", "columns", "updated_at", "description"]


#: What the panel offers to upload, as its messages name it.
FRAME_KINDS = "a pandas or polars DataFrame, a pandas Series or a pyarrow Table"


@dataclass(frozen=True)
class FrameChoice:
    """A variable that can be uploaded: a pandas DataFrame or Series, a pyarrow Table or a
    polars DataFrame."""

    variable: str
    rows: int
    columns: int
    #: ``"DataFrame"``, ``"Series"``, ``"Table"`` (pyarrow) or ``"polars DataFrame"``.
    kind: str

    @property
    def label(self) -> str:
        """``'sales (25,000 × 4)'`` for a pandas DataFrame, ``'events (Table, 10 × 3)'`` for
        the other kinds, as the dropdown shows it."""
        kind = "" if self.kind == "DataFrame" else f"{self.kind}, "
        return f"{self.variable} ({kind}{self.rows:,} × {self.columns:,})"


Level = Literal["hint", "info", "success", "warning", "error"]


@dataclass(frozen=True)
class Message:
    """A line for the panel's status area or the form's inline message.

    ``level`` decides its colour: ``"hint"`` is neutral (what to do next), ``"info"`` blue,
    ``"success"`` green, ``"warning"`` amber and ``"error"`` red.
    """

    text: str
    level: Level = "info"
    #: When it was said, in local time.
    at: datetime = field(default_factory=lambda: datetime.now().astimezone(), compare=False)


def _frame_kind(value: Any) -> tuple[str, int, int] | None:
    """The kind, rows and columns of something ``hub.push`` takes, or None.

    pyarrow Tables and polars DataFrames are told by their class's module and name, so that
    neither library is imported to look at a notebook's variables (polars is optional).
    """
    if isinstance(value, pd.DataFrame):
        return "DataFrame", len(value), value.shape[1]
    if isinstance(value, pd.Series):
        return "Series", len(value), 1
    cls = type(value)
    module, name = getattr(cls, "__module__", "") or "", cls.__name__
    if name == "Table" and (module == "pyarrow" or module.startswith("pyarrow.")):
        return "Table", value.num_rows, value.num_columns
    if name == "DataFrame" and (module == "polars" or module.startswith("polars.")):
        return "polars DataFrame", value.height, value.width
    return None


def _choice(variable: str, value: Any) -> FrameChoice | None:
    if variable.startswith("_"):
        return None  # IPython's output history (_, __, _1, ...) and private names
    kind = _frame_kind(value)
    return None if kind is None else FrameChoice(variable, kind[1], kind[2], kind[0])


def _ending(p: Progress) -> Message:
    """How an upload ended, for the status line."""
    if p.status == "succeeded":
        if p.deduplicated:
            return Message(f"{p.dataset!r} is unchanged: the frame is identical to version {p.version}.", "success")
        return Message(f"Stored {p.dataset!r} version {p.version}: {p.rows_done:,} rows.", "success")
    if p.status == "failed":
        # The error already reads "the upload of 'x' failed: <why>".
        text = p.error or f"the upload of {p.dataset!r} failed"
        return Message(text[:1].upper() + text[1:], "error")
    return Message(f"The upload of {p.dataset!r} was {p.status}; nothing was published.", "warning")


class PanelController:
    """State and actions of an :class:`~dsnotebook.widgets.UploadPanel`.

    Args:
        hub: the sync :class:`~dsnotebook.hub.Hub` to upload to and browse.
        namespace: where to look for frames to upload (pandas DataFrames and Series, pyarrow
            Tables, polars DataFrames), for example IPython's ``user_ns``; a mapping
            that is read again on every :meth:`refresh_frames`.
        preview_rows: rows shown in a dataset's preview.

    Listeners registered with :meth:`observe` are called with the name of what changed:
    ``"frames"``, ``"form"``, ``"tasks"``, ``"history"``, ``"datasets"``, ``"selection"`` or
    ``"status"``.
    """

    def __init__(self, hub: Any, namespace: Mapping[str, Any] | None = None, *, preview_rows: int = 10) -> None:
        self.hub = hub
        self.namespace: Mapping[str, Any] = {} if namespace is None else namespace
        self.preview_rows = preview_rows
        self._lock = threading.RLock()
        self._listeners: Listeners[Listener] = Listeners()
        self._closed = False
        # -- the upload form
        self.frames: list[FrameChoice] = []
        self.frame: str | None = None
        self.name = ""
        self.description = ""
        self.if_exists: str = "replace"
        self.problem: str | None = None
        #: How the last click on Upload went, until the form is edited again.
        self.form_notice: Message | None = None
        self._auto_name: str | None = None
        self._frame_verdict: tuple[tuple[str | None, int], Any, str | None] | None = None
        # -- uploads of this process, newest first, and those of earlier sessions
        self.tasks: list[UploadTask] = []
        self._ended: set[str] = set()
        self.history = pd.DataFrame(columns=HISTORY_COLUMNS)
        self._unsubscribe: list[Callable[[], None]] = []
        self._pending: set[concurrent.futures.Future] = set()
        # -- the stored datasets
        self.datasets = pd.DataFrame(columns=DATASET_COLUMNS)
        self.selected: str | None = None
        self.versions = pd.DataFrame()
        self.schema = pd.DataFrame(columns=["column", "dtype"])
        self.preview = pd.DataFrame()
        self.selected_version: int | None = None
        self.pending_delete: tuple[str, int | None] | None = None
        self.status: Message | None = None

        for task in reversed(hub.uploads()):
            self._add_task(task, notify=False)
        self._unsubscribe.append(hub.on_upload(self._on_upload))
        self.refresh_frames()
        self.refresh_datasets()
        self.refresh_history()

    # -- listeners ---------------------------------------------------------------------------

    def observe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` after every change; returns a function that unsubscribes."""
        return self._listeners.add(listener)

    def _notify(self, event: Event) -> None:
        for listener in self._listeners.snapshot():
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - shown in the status area, not lost in a log
                if event == "status":
                    log.exception("the panel's status listener failed")
                else:
                    self.report_error(f"showing {event}", exc)

    def close(self) -> None:
        """Stop following uploads; the panel no longer changes."""
        with self._lock:
            self._closed = True
            unsubscribe, self._unsubscribe = self._unsubscribe, []
            self._listeners.clear()
        for fn in unsubscribe:
            fn()

    # -- errors and messages -----------------------------------------------------------------

    def report_error(self, action: str, exc: BaseException) -> None:
        """Log a failed action on the ``dsnotebook`` logger and show it in the status area."""
        log.error("panel: %s failed: %s", action, exc, exc_info=(type(exc), exc, exc.__traceback__))
        self._set_status(Message(f"{action} failed: {exc}", "error"))

    def report_form_error(self, action: str, exc: BaseException) -> None:
        """Log a failed action of the upload form and show it in the form's own line."""
        log.error("panel: %s failed: %s", action, exc, exc_info=(type(exc), exc, exc.__traceback__))
        self._set_form_notice(Message(f"{action} failed: {exc}", "error"))

    def clear_status(self) -> None:
        """Clear the status line (the panel's dismiss button)."""
        self._set_status(None)

    def run(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)``; an exception is reported (logged and shown), not raised.

        This is how widget callbacks call the controller, so that no error vanishes into the
        kernel's log. Returns ``fn``'s result, or None when it raised.
        """
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported where the user is looking
            self.report_error(action, exc)
            return None

    def _set_status(self, message: Message | None) -> None:
        self.status = message
        self._notify("status")

    def _set_form_notice(self, message: Message | None) -> None:
        self.form_notice = message
        self._notify("form")

    @property
    def form_message(self) -> Message:
        """The form's line: a neutral hint until a frame is chosen, then the first problem in
        red, or what Upload will do; after a click on Upload, how it went."""
        if self.form_notice is not None:
            return self.form_notice
        if self.frame is None:
            if not self.frames:
                return Message(f"Nothing to upload in the notebook yet ({FRAME_KINDS}): create one, then click Refresh.", "hint")
            return Message("Choose one of the notebook's frames to upload.", "hint")
        if self.problem is not None:
            return Message(self.problem, "error")
        choice = next((f for f in self.frames if f.variable == self.frame), None)
        rows = f"{choice.rows:,} rows" if choice is not None else "the frame"
        return Message(f"Ready to upload {rows} as {self.name!r} ({self.if_exists}).", "success")

    # -- the frames on offer -----------------------------------------------------------------

    def refresh_frames(self) -> list[FrameChoice]:
        """Read the namespace again: its pandas DataFrames and Series, pyarrow Tables and polars
        DataFrames, sorted by name."""
        self._frame_verdict = None
        self.form_notice = None
        choices = [c for name, value in list(self.namespace.items()) if (c := _choice(str(name), value)) is not None]
        self.frames = sorted(choices, key=lambda c: c.variable.lower())
        if self.frame is not None and self.frame not in {c.variable for c in self.frames}:
            self.frame = None
        self._notify("frames")
        self.validate()
        return self.frames

    def select_frame(self, variable: str | None) -> None:
        """Choose the variable to upload; the name follows it unless the user typed another one."""
        self.frame = variable
        self.form_notice = None
        if variable is not None and (not self.name or self.name == self._auto_name):
            self.name = self._auto_name = variable
        self.validate()

    def set_name(self, name: str) -> None:
        self.name = name
        self.form_notice = None
        self.validate()

    def set_description(self, description: str) -> None:
        self.description = description
        self.form_notice = None
        self.validate()

    def set_if_exists(self, if_exists: str) -> None:
        self.if_exists = if_exists
        self.form_notice = None
        self.validate()

    def _frame_object(self) -> Any:
        """The chosen variable's value, as it is: ``hub.push`` takes each kind the panel lists."""
        if self.frame is None:
            raise ValidationError("no frame chosen; choose one of the notebook's frames to upload")
        try:
            value = self.namespace[self.frame]
        except KeyError:
            raise ValidationError(f"the variable {self.frame!r} no longer exists; click Refresh and choose again") from None
        if _frame_kind(value) is None:
            raise ValidationError(
                f"the variable {self.frame!r} is now a {type(value).__name__}, not {FRAME_KINDS}; click Refresh"
            )
        return value

    def _check(self) -> None:
        """The engine's own checks, in the order a user fixes them; raises the first problem."""
        frame = self._frame_object()
        validate_name(self.name)
        validate_options(description=self.description or None, if_exists=self.if_exists)
        if self.if_exists == "fail" and self.name in set(self.datasets["name"]):
            raise ValidationError(
                f"dataset {self.name!r} already exists and if_exists is 'fail'; choose another name, "
                "or 'replace' or 'append'"
            )
        self._check_frame(frame)

    def _check_frame(self, frame: Any) -> None:
        # Checking a frame scans its object columns, so the verdict is kept until the variable is
        # rebound or Refresh is clicked; push checks again in any case.
        key = (self.frame, id(frame))
        if self._frame_verdict is None or self._frame_verdict[0] != key or self._frame_verdict[1] is not frame:
            try:
                # The engine's own checks, the database's column and row limits included.
                self.hub.check(frame, self.name)
                problem = None
            except (ValidationError, ConfigError, UsageError) as exc:
                # A hub that may not write here (a read-only URL or database role) says why, and
                # Upload stays disabled.
                problem = str(exc)
            self._frame_verdict = (key, frame, problem)
        problem = self._frame_verdict[2]
        if problem is not None:
            raise ValidationError(f"{self.frame}: {problem}")

    def validate(self) -> str | None:
        """Check the form; returns the problem (also in :attr:`problem`), or None when it can be uploaded."""
        try:
            self._check()
            problem = None
        except ValidationError as exc:
            problem = str(exc)
        self.problem = problem
        self._notify("form")
        return problem

    @property
    def can_upload(self) -> bool:
        return self.problem is None

    # -- uploads -----------------------------------------------------------------------------

    def upload(self) -> UploadTask:
        """Start uploading the chosen frame with the form's options.

        Returns the new upload's handle, which also appears first in :attr:`tasks`.

        Raises:
            ValidationError: the form is not valid (the message says why); nothing was started.
            VersionConflict, SchemaMismatch: as for :meth:`Hub.push`.
        """
        problem = self.validate()
        if problem is not None:
            raise ValidationError(problem)
        frame = self._frame_object()
        task = self.hub.push(frame, self.name, description=self.description or None, if_exists=self.if_exists)
        self._add_task(task)  # the hub's listener usually got there first; adding is idempotent
        self._set_form_notice(
            Message(f"Started the upload of {task.dataset!r} ({task.rows_total:,} rows); follow it in the Tasks tab.", "info")
        )
        return task

    def cancel(self, task: UploadTask) -> bool:
        """Ask an upload to stop; returns False if it had already ended."""
        cancelled = task.cancel()
        if cancelled:
            self._set_status(Message(f"Cancelling the upload of {task.dataset!r}.", "info"))
        return cancelled

    def retry(self, task: UploadTask) -> UploadTask:
        """Start a failed, cancelled or interrupted upload again; returns the new handle."""
        new = self.hub.retry(task)
        self._add_task(new)
        self._set_status(Message(f"Retrying the upload of {task.dataset!r} as upload {new.id[:8]}.", "info"))
        return new

    def _on_upload(self, task: UploadTask) -> None:
        # On the portal thread, whenever the hub starts an upload (from this panel or from code).
        self._add_task(task)

    def _add_task(self, task: UploadTask, *, notify: bool = True) -> None:
        with self._lock:
            if self._closed or any(t is task for t in self.tasks):
                return
            self.tasks.insert(0, task)
            if not task.done():
                self._unsubscribe.append(task.subscribe(self._on_progress))
        if notify:
            self._notify("tasks")

    def _on_progress(self, progress: Progress) -> None:
        # On the uploads' loop thread: once an upload ends, say how, and reload what it changed
        # (once: an ended upload still tells its listeners when a retry of it starts).
        if progress.status in TERMINAL_STATUSES and progress.task_id not in self._ended:
            self._ended.add(progress.task_id)
            self._set_status(_ending(progress))
            self._refresh_in_background()

    def _refresh_in_background(self) -> None:
        """Reload what an ended upload changed, without blocking the uploads' loop thread.

        The reads run as coroutines on that loop; their results are applied when they arrive.
        """
        if self._closed or self.hub.closed:
            return
        ahub = self.hub.aio
        loads: list[tuple[str, Any, Callable[[Any], None]]] = [
            ("the datasets", ahub.datasets(), self._apply_datasets),
            ("the task history", ahub.tasks(), self._apply_history),
        ]
        if self.selected is not None:
            loads.append((f"the dataset {self.selected!r}", self._load_selection(self.selected, self.selected_version), self._apply_selection))
        for what, coro, update in loads:
            fut = self.hub.submit(coro)
            with self._lock:
                self._pending.add(fut)  # strongly held until it is done
            fut.add_done_callback(self._when_loaded(what, update))

    def _when_loaded(self, what: str, update: Callable[[Any], None]) -> Callable[[concurrent.futures.Future], None]:
        def done(fut: concurrent.futures.Future) -> None:
            with self._lock:
                self._pending.discard(fut)
            if fut.cancelled() or self._closed:
                return
            exc = fut.exception()
            if exc is not None:
                self.report_error(f"refreshing {what}", exc)
                return
            try:
                update(fut.result())
            except Exception as exc:  # noqa: BLE001 - shown in the status area
                self.report_error(f"showing {what}", exc)

        return done

    def _run_sync(self, coro: Any) -> Any:
        return _waiting.result(self.hub.submit(coro))

    def refresh_history(self) -> pd.DataFrame:
        """Reload the uploads of earlier sessions and other processes from ``hub.tasks()``."""
        self._apply_history(self.hub.tasks())
        return self.history

    def _apply_history(self, frame: pd.DataFrame) -> None:
        with self._lock:
            live = {t.id for t in self.tasks}
        earlier = frame[~frame["id"].isin(live)] if len(frame) else frame
        self.history = earlier.reindex(columns=HISTORY_COLUMNS).reset_index(drop=True)
        self._notify("history")

    # -- datasets ----------------------------------------------------------------------------

    def refresh_datasets(self) -> pd.DataFrame:
        """Reload the table of datasets, and the selected one's details."""
        self._apply_datasets(self.hub.datasets())
        if self.selected is not None:
            self.select_dataset(self.selected, self.selected_version)
        return self.datasets

    def _apply_datasets(self, frame: pd.DataFrame) -> None:
        self.datasets = frame.reindex(columns=DATASET_COLUMNS).reset_index(drop=True)
        self._notify("datasets")
        if self.if_exists == "fail":
            self.validate()  # whether the name is taken may have changed

    async def _load_selection(self, name: str | None, version: int | None) -> tuple[str | None, pd.DataFrame, int | None, pd.DataFrame]:
        if name is None:
            return None, pd.DataFrame(), None, pd.DataFrame()
        ahub = self.hub.aio
        try:
            versions = await ahub.versions(name)
        except DatasetNotFound:  # deleted meanwhile, perhaps by another process
            return None, pd.DataFrame(), None, pd.DataFrame()
        if versions.empty:
            return name, versions, None, pd.DataFrame()
        if version not in set(versions["version"]):
            latest = versions.loc[versions["latest"].astype(bool), "version"]
            version = int(latest.iloc[0] if len(latest) else versions["version"].max())
        preview = await ahub.pull(name, version, limit=self.preview_rows, to="pandas")
        if isinstance(preview, pd.Series):  # the table shows it as its one-column frame
            preview = preview.to_frame()
        return name, versions, version, preview

    def _apply_selection(self, loaded: tuple[str | None, pd.DataFrame, int | None, pd.DataFrame]) -> None:
        name, versions, version, preview = loaded
        self.selected, self.versions, self.selected_version, self.preview = name, versions, version, preview
        self.schema = pd.DataFrame(
            [(str(label), str(dtype)) for label, dtype in preview.dtypes.items()], columns=["column", "dtype"]
        )
        self._notify("selection")

    def select_dataset(self, name: str | None, version: int | None = None) -> None:
        """Show ``name``'s versions, and the schema and first rows of ``version`` (default: the latest).

        None clears the selection.

        Raises:
            DatasetNotFound: no dataset of that name.
        """
        self.pending_delete = None
        if name is not None and name not in set(self.datasets["name"]):
            self._apply_datasets(self.hub.datasets())
            if name not in set(self.datasets["name"]):
                raise ValidationError(f"no dataset named {name!r}; choose one of those listed")
        self._apply_selection(self._run_sync(self._load_selection(name, version)))

    def select_version(self, version: int | None) -> None:
        """Show ``version`` of the selected dataset; Delete acts on it (None: the whole dataset)."""
        if self.selected is None:
            raise ValidationError("no dataset selected; select a dataset first")
        if version is None:
            self.selected_version = None
            self.pending_delete = None
            self._notify("selection")
            return
        self.select_dataset(self.selected, version)

    def request_delete(self) -> str:
        """Ask before deleting the selected version (or, with no version selected, the whole dataset).

        Returns the question to show; nothing is deleted until :meth:`confirm_delete`.
        """
        if self.selected is None:
            raise ValidationError("no dataset selected; select a dataset to delete")
        self.pending_delete = (self.selected, self.selected_version)
        self._notify("selection")
        return self.delete_question()

    def delete_question(self) -> str:
        if self.pending_delete is None:
            return ""
        name, version = self.pending_delete
        if version is None:
            return f"Delete the dataset {name!r} and all its versions? This cannot be undone."
        return f"Delete version {version} of {name!r}? This cannot be undone."

    def confirm_delete(self) -> list[int]:
        """Carry out the pending deletion; returns the removed version numbers."""
        if self.pending_delete is None:
            raise ValidationError("nothing to delete; choose Delete first")
        name, version = self.pending_delete
        self.pending_delete = None
        removed = self.hub.delete(name, version)
        what = f"version {version} of {name!r}" if version is not None else f"the dataset {name!r}"
        self._apply_datasets(self.hub.datasets())
        self._apply_selection(self._run_sync(self._load_selection(name, None)))
        self._set_status(Message(f"Deleted {what}.", "success"))
        return removed

    def abort_delete(self) -> None:
        self.pending_delete = None
        self._notify("selection")

    def refresh(self) -> None:
        """Reload everything: frames, datasets, the selection and the task history."""
        self.refresh_frames()
        self.refresh_datasets()
        self.refresh_history()
