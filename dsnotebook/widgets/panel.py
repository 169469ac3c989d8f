"""``UploadPanel``: upload a notebook's frames (pandas or polars DataFrames, Series, pyarrow
Tables), watch the uploads, browse what is stored.

Every decision is the :class:`~dsnotebook.widgets.controller.PanelController`'s; this module only
lays out standard ipywidgets, forwards clicks and edits to the controller, and renders its state
when it says something changed.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from ..store.engine import mask_url
from ..upload import IF_EXISTS, UploadTask
from .controller import Message, PanelController
from .progress import TaskProgress
from .strip import StatusStrip
from .tables import (
    datasets_table,
    history_table,
    preview_table,
    schema_table,
    versions_table,
)
from .theme import stylesheet

__all__ = ["UploadPanel"]

TAB_TITLES = ("Upload", "Tasks", "Datasets")
UPLOAD_TAB, TASKS_TAB, DATASETS_TAB = range(3)


def _user_namespace() -> Mapping[str, Any]:
    """The notebook's variables, or an empty mapping outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    return {} if shell is None else shell.user_ns


def message_html(message: Message | None, *, timed: bool = False) -> str:
    """A message as HTML: coloured by its level, its whitespace kept (three spaces stay three).

    ``timed`` puts its time in front, and lets an info or success message fade out after a few
    seconds (errors and warnings stay until they are replaced or dismissed).
    """
    if message is None:
        return ""
    classes = f"dsn-level-{message.level} dsn-text"
    when = ""
    if timed:
        when = f'<span class="dsn-when">{message.at:%H:%M:%S}</span>'
        if message.level in ("info", "success"):
            classes += " dsn-fades"
    return f'<span class="dsn-msg {classes}">{when}{html.escape(message.text, quote=False)}</span>'


def _table_box(css: str) -> w.HTML:
    return w.HTML().add_class(css).add_class("dsn-table-box")


class UploadPanel(w.VBox):
    """Upload a notebook's frames (pandas or polars DataFrames, Series, pyarrow Tables), follow
    every upload, and browse the stored datasets.

    Above the tabs, a :class:`~dsnotebook.widgets.StatusStrip` shows the hub's queue, rate,
    memory, database size and free disk while the panel is displayed, and a status line tells
    what just happened (an upload ended, a version was deleted, something failed).

    Args:
        hub: the :class:`~dsnotebook.hub.Hub` to use (``hub.panel()`` is the short way).
        namespace: where to find frames to upload; by default the notebook's variables.
        preview_rows: rows shown in a dataset's preview.

    The behaviour lives in :attr:`controller` (a
    :class:`~dsnotebook.widgets.controller.PanelController`), which code can drive directly.
    """

    def __init__(self, hub: Any, namespace: Mapping[str, Any] | None = None, *, preview_rows: int = 10) -> None:
        self._local = threading.local()
        self.controller = PanelController(hub, _user_namespace() if namespace is None else namespace, preview_rows=preview_rows)
        c = self.controller

        # -- Upload
        self.frame_dropdown = w.Dropdown(description="Frame", options=[], value=None).add_class("dsn-frame").add_class("dsn-form-field")
        self.refresh_frames_button = w.Button(description="Refresh", icon="refresh", tooltip="Look for frames again").add_class("dsn-refresh-frames")
        self.name_text = w.Text(description="Name", placeholder="dataset name").add_class("dsn-name").add_class("dsn-form-field")
        self.description_text = w.Text(description="Description", placeholder="optional").add_class("dsn-description").add_class("dsn-form-field")
        self.if_exists_dropdown = w.Dropdown(description="If it exists", options=list(IF_EXISTS), value=c.if_exists).add_class("dsn-if-exists")
        self.upload_button = w.Button(description="Upload", icon="upload", button_style="primary", disabled=True).add_class("dsn-upload")
        #: The form's one line: a hint, its first problem, what Upload will do, or how it went.
        self.message = w.HTML().add_class("dsn-message")
        upload_tab = w.VBox(
            [
                w.HBox([self.frame_dropdown, self.refresh_frames_button]).add_class("dsn-toolbar"),
                self.name_text,
                self.description_text,
                self.if_exists_dropdown,
                self.upload_button,
                self.message,
            ]
        )

        # -- Tasks
        self.task_list = w.VBox().add_class("dsn-task-list")
        self.refresh_history_button = w.Button(description="Refresh", icon="refresh").add_class("dsn-refresh-history")
        self.history_table = _table_box("dsn-history")
        tasks_tab = w.VBox(
            [
                w.HTML("<b>Uploads started in this session</b>"),
                self.task_list,
                w.HBox([w.HTML("<b>Earlier uploads and other processes</b>"), self.refresh_history_button]).add_class("dsn-toolbar"),
                self.history_table,
            ]
        )

        # -- Datasets
        self.refresh_datasets_button = w.Button(description="Refresh", icon="refresh").add_class("dsn-refresh-datasets")
        self.datasets_table = _table_box("dsn-datasets-table")
        self.dataset_dropdown = w.Dropdown(description="Dataset", options=[("", None)], value=None).add_class("dsn-dataset-select")
        self.version_dropdown = w.Dropdown(description="Version", options=[("", None)], value=None).add_class("dsn-version-select")
        self.delete_button = w.Button(description="Delete version", icon="trash", button_style="danger", disabled=True).add_class("dsn-delete")
        self.confirm_question = w.HTML().add_class("dsn-confirm-question")
        self.confirm_yes = w.Button(description="Delete", button_style="danger").add_class("dsn-confirm-yes")
        self.confirm_no = w.Button(description="Keep").add_class("dsn-confirm-no")
        self.confirm_box = w.HBox([self.confirm_question, self.confirm_yes, self.confirm_no], layout=w.Layout(display="none")).add_class("dsn-confirm").add_class("dsn-toolbar")
        self.versions_table = _table_box("dsn-versions")
        self.schema_table = _table_box("dsn-schema")
        self.preview = _table_box("dsn-preview")
        datasets_tab = w.VBox(
            [
                w.HBox([w.HTML("<b>Stored datasets</b>"), self.refresh_datasets_button]).add_class("dsn-toolbar"),
                self.datasets_table,
                w.HBox([self.dataset_dropdown, self.version_dropdown, self.delete_button]).add_class("dsn-toolbar"),
                self.confirm_box,
                w.HTML("<b>Versions</b>"),
                self.versions_table,
                w.HTML("<b>Schema</b>"),
                self.schema_table,
                w.HTML("<b>First rows</b>"),
                self.preview,
            ]
        )

        self.tabs = w.Tab(children=[upload_tab, tasks_tab, datasets_tab], titles=TAB_TITLES).add_class("dsn-tabs")
        self.strip = StatusStrip(hub)
        #: The status line: what happened last, with its time.
        self.status = w.HTML().add_class("dsn-notice")
        self.dismiss_button = w.Button(icon="times", tooltip="Dismiss this message", layout=w.Layout(width="auto")).add_class("dsn-dismiss")
        self.status_line = w.HBox([self.status, self.dismiss_button]).add_class("dsn-notice-line")
        header = w.HTML(f"<b>dsnotebook</b> · {html.escape(mask_url(hub.url))}").add_class("dsn-header")
        super().__init__([stylesheet(), header, self.strip, self.status_line, self.tabs])
        self.add_class("dsn-panel")

        # -- bindings: widgets → controller
        self.frame_dropdown.observe(self._user(lambda ch: c.select_frame(ch["new"]), "choosing the frame"), names="value")
        self.name_text.observe(self._user(lambda ch: c.set_name(ch["new"]), "checking the name"), names="value")
        self.description_text.observe(self._user(lambda ch: c.set_description(ch["new"]), "checking the description"), names="value")
        self.if_exists_dropdown.observe(self._user(lambda ch: c.set_if_exists(ch["new"]), "choosing if_exists"), names="value")
        self.refresh_frames_button.on_click(self._user(lambda _b: c.refresh_frames(), "refreshing the frames"))
        self.upload_button.on_click(lambda _b: self._upload())
        self.refresh_history_button.on_click(self._user(lambda _b: c.refresh_history(), "refreshing the task history"))
        self.refresh_datasets_button.on_click(self._user(lambda _b: c.refresh_datasets(), "refreshing the datasets"))
        self.dataset_dropdown.observe(self._user(lambda ch: c.select_dataset(ch["new"]), "showing the dataset"), names="value")
        self.version_dropdown.observe(self._user(lambda ch: c.select_version(ch["new"]), "showing the version"), names="value")
        self.delete_button.on_click(self._user(lambda _b: c.request_delete(), "deleting"))
        self.confirm_yes.on_click(self._user(lambda _b: c.confirm_delete(), "deleting"))
        self.confirm_no.on_click(self._user(lambda _b: c.abort_delete(), "keeping the version"))
        self.dismiss_button.on_click(lambda _b: c.clear_status())

        # -- bindings: controller → widgets
        self._renderers: dict[str, Callable[[], None]] = {
            "frames": self._render_frames,
            "form": self._render_form,
            "tasks": self._render_tasks,
            "history": self._render_history,
            "datasets": self._render_datasets,
            "selection": self._render_selection,
            "status": self._render_status,
        }
        for render in self._renderers.values():
            render()
        self._unobserve = c.observe(self._on_change)

    def __repr__(self) -> str:
        # Stored as the cell's text output; it must not change from run to run.
        return "<UploadPanel: Upload · Tasks · Datasets>"

    def close(self) -> None:
        """Stop following uploads and refreshing the strip, and close every widget of the panel."""
        self._unobserve()
        self.controller.close()
        self.strip.close()
        for row in self.task_list.children:
            row.close()
        super().close()

    # -- widgets → controller ---------------------------------------------------------------

    def _user(self, fn: Callable[[Any], Any], action: str) -> Callable[[Any], None]:
        """A widget callback: ignored while the panel itself sets the widget; errors are reported."""

        def callback(arg: Any) -> None:
            if getattr(self._local, "syncing", False):
                return
            self.controller.run(action, fn, arg)

        return callback

    def _upload(self) -> UploadTask | None:
        # Whatever happens shows in the form's own line, next to the button.
        try:
            task = self.controller.upload()
        except Exception as exc:  # noqa: BLE001 - shown in the form, and logged
            self.controller.report_form_error("starting the upload", exc)
            return None
        self.tabs.selected_index = TASKS_TAB
        return task

    def _retry(self, task: UploadTask) -> UploadTask:
        # Called by a row's Retry button, which shows an error in the row and links the two rows.
        return self.controller.retry(task)

    # -- controller → widgets ---------------------------------------------------------------

    def _on_change(self, event: str) -> None:
        render = self._renderers.get(event)
        if render is not None:
            render()

    def _syncing(self) -> _Syncing:
        return _Syncing(self._local)

    def _render_frames(self) -> None:
        c = self.controller
        with self._syncing():
            self.frame_dropdown.options = [(choice.label, choice.variable) for choice in c.frames]
            self.frame_dropdown.value = c.frame

    def _render_form(self) -> None:
        c = self.controller
        with self._syncing():
            if self.frame_dropdown.value != c.frame:
                self.frame_dropdown.value = c.frame
            for widget, value in ((self.name_text, c.name), (self.description_text, c.description), (self.if_exists_dropdown, c.if_exists)):
                if widget.value != value:
                    widget.value = value
        self.upload_button.disabled = not c.can_upload
        self.message.value = message_html(c.form_message)

    def _render_tasks(self) -> None:
        c = self.controller
        self.task_list.children = [TaskProgress.for_task(task, on_retry=self._retry) for task in list(c.tasks)]

    def _render_history(self) -> None:
        self.history_table.value = history_table(self.controller.history)

    def _render_datasets(self) -> None:
        self.datasets_table.value = datasets_table(self.controller.datasets)
        self._render_dataset_choices()

    def _render_dataset_choices(self) -> None:
        c = self.controller
        names = [str(name) for name in c.datasets["name"]]
        if c.selected is not None and c.selected not in names:
            names.append(c.selected)  # the list is being reloaded; keep the selection meanwhile
        with self._syncing():
            self.dataset_dropdown.options = [("", None)] + [(name, name) for name in names]
            self.dataset_dropdown.value = c.selected

    def _render_selection(self) -> None:
        c = self.controller
        self._render_dataset_choices()
        with self._syncing():
            versions = [] if c.versions.empty else [int(v) for v in c.versions["version"]]
            self.version_dropdown.options = [("", None)] + [(f"v{v}", v) for v in versions]
            self.version_dropdown.value = c.selected_version if c.selected_version in versions else None
        selected = c.selected is not None
        self.delete_button.disabled = not selected
        self.delete_button.description = "Delete version" if c.selected_version is not None else "Delete dataset"
        self.versions_table.value = versions_table(c.versions) if selected else '<i class="dsn-empty">Select a dataset.</i>'
        self.schema_table.value = schema_table(c.schema) if selected else ""
        self.preview.value = preview_table(c.preview) if selected else ""
        self.confirm_question.value = html.escape(c.delete_question(), quote=False)
        self.confirm_box.layout.display = None if c.pending_delete is not None else "none"

    def _render_status(self) -> None:
        status = self.controller.status
        self.status.value = message_html(status, timed=True)
        self.status_line.layout.display = None if status is not None else "none"
        # An info or success message fades by itself; an error or a warning stays until dismissed.
        lasting = status is not None and status.level in ("warning", "error")
        self.dismiss_button.layout.display = None if lasting else "none"


class _Syncing:
    """Marks this thread as setting widgets from the controller, so their callbacks stay quiet."""

    def __init__(self, local: threading.local) -> None:
        self._local = local

    def __enter__(self) -> None:
        self._previous = getattr(self._local, "syncing", False)
        self._local.syncing = True

    def __exit__(self, *exc: object) -> None:
        self._local.syncing = self._previous
