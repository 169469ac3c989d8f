"""The UploadPanel and its rows, driven through the real ipywidgets objects against a real SQLite hub.

No kernel is involved: ``Button.click()`` runs the handlers, and setting a widget's value fires
its observers, as a click or an edit in the browser would.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from hubtools import execute, occupy_the_slot, refuse_progress_beyond, wait_until

import dsnotebook as dsn
from dsnotebook.widgets import StatusStrip, TaskProgress, UploadPanel
from dsnotebook.widgets.panel import DATASETS_TAB, TASKS_TAB
from dsnotebook.widgets.tables import format_ago
from dsnotebook.widgets.theme import STYLESHEET


def sales_frame(n: int = 2_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "region": pd.Series(rng.choice(["north", "south", "east"], n), dtype="category"),
            "units": pd.array(rng.integers(0, 100, n), dtype="Int64"),
            "price": rng.random(n),
            "day": pd.date_range("2026-01-01", periods=n, freq="h", tz="Europe/Paris"),
        }
    )


@pytest.fixture
def namespace():
    return {"sales": sales_frame(), "costs": sales_frame(50, seed=1), "answer": 42, "_": sales_frame(3)}


@pytest.fixture
def panel(hub, namespace):
    p = hub.panel(namespace=namespace)
    yield p
    p.close()


def row_of(panel: UploadPanel, task) -> TaskProgress:
    return next(row for row in panel.task_list.children if row.task is task)


class _TableReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[dict[str, tuple[str, str | None]]] = []
        self._cell: list[str] | None = None
        self._title: str | None = None
        self._row: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self._cell, self._title = [], dict(attrs).get("title")
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(("".join(self._cell), self._title))
            self._cell = None
        elif tag == "tr":
            if not self.headers:
                self.headers = [text for text, _ in self._row]
            else:
                self.rows.append(dict(zip(self.headers, self._row)))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def read_table(html: str) -> tuple[list[str], list[dict[str, tuple[str, str | None]]]]:
    """The headers of an HTML table, and each row as {header: (text, tooltip)}."""
    reader = _TableReader()
    reader.feed(html)
    return reader.headers, reader.rows


# -- uploading -----------------------------------------------------------------------------------


def test_upload_from_the_panel_ends_with_a_green_full_bar(hub, panel, namespace):
    assert panel.frame_dropdown.options == (("costs (50 × 4)", "costs"), ("sales (2,000 × 4)", "sales"))
    assert panel.upload_button.disabled  # nothing chosen yet...
    # ...which is no error: the form opens with a neutral hint, and the status line is empty.
    assert panel.message.value == (
        '<span class="dsn-msg dsn-level-hint dsn-text">Choose one of the notebook\'s frames to upload.</span>'
    )
    assert panel.controller.problem is not None  # Upload stays disabled all the same
    assert panel.status.value == "" and panel.status_line.layout.display == "none"
    # The strip sits above the tabs.
    assert isinstance(panel.strip, StatusStrip)
    assert panel.children.index(panel.strip) < panel.children.index(panel.tabs)

    panel.frame_dropdown.value = "sales"
    assert panel.name_text.value == "sales"  # prefilled with the variable's name
    panel.name_text.value = "q3 sales"
    panel.description_text.value = "third quarter"
    assert not panel.upload_button.disabled
    assert "Ready to upload 2,000 rows as 'q3 sales'" in panel.message.value
    assert "dsn-level-success" in panel.message.value

    panel.upload_button.click()
    assert panel.tabs.selected_index == TASKS_TAB
    task = panel.controller.tasks[0]
    assert task.dataset == "q3 sales"
    task.wait(timeout=30)

    # The click is answered next to the button.
    assert "Started the upload of 'q3 sales' (2,000 rows); follow it in the Tasks tab." in panel.message.value
    row = row_of(panel, task)
    assert row is panel.task_list.children[0]
    assert (row.bar.value, row.bar.bar_style, row.percent.value) == (1.0, "success", "100%")
    assert row.status_badge.value == "succeeded" and "dsn-state-succeeded" in row.status_badge._dom_classes
    assert row.title.value == "q3 sales v1"
    assert row.rows.value == "2,000 / 2,000 rows"
    assert row.cancel_button.disabled and row.cancel_button.layout.display == "none"
    assert row.retry_button.layout.display == "none" and row.error.layout.display == "none"
    wait_until(lambda: "Stored 'q3 sales' version 1: 2,000 rows." in panel.status.value, what="the status line")
    # It says when, and fades out by itself; there is nothing to dismiss.
    assert re.search(r'<span class="dsn-when">\d\d:\d\d:\d\d</span>', panel.status.value)
    assert "dsn-level-success" in panel.status.value and "dsn-fades" in panel.status.value
    assert panel.dismiss_button.layout.display == "none"

    # The catalog holds exactly what the panel says.
    info = hub.info("q3 sales")
    assert (info.latest.version, info.latest.rows, info.description) == (1, 2_000, "third quarter")
    pd.testing.assert_frame_equal(hub.pull("q3 sales"), namespace["sales"])
    assert hub.tasks().iloc[0][["dataset", "status", "rows_done"]].tolist() == ["q3 sales", "succeeded", 2_000]
    # The datasets tab catches up by itself once the upload has ended.
    wait_until(lambda: "q3 sales" in panel.datasets_table.value, what="the datasets table to list the upload")
    assert "third quarter" in panel.datasets_table.value


def test_the_name_follows_the_frame_until_the_user_types_one(panel):
    panel.frame_dropdown.value = "sales"
    panel.frame_dropdown.value = "costs"
    assert panel.name_text.value == "costs"
    panel.name_text.value = "my name"
    panel.frame_dropdown.value = "sales"
    assert panel.name_text.value == "my name"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param({"name": "   "}, "name: '   ' is empty or whitespace only", id="blank-name"),
        pytest.param({"name": "bell\x07"}, "control character '\\x07'", id="control-character"),
        pytest.param({"name": "x" * 256}, "256 characters is too long; at most 255", id="long-name"),
        pytest.param({"name": "taken", "if_exists": "fail"}, "'taken' already exists and if_exists is 'fail'", id="fail-exists"),
        pytest.param({"frame": "bad"}, "bad: column 'z'", id="unstorable-column"),
    ],
)
def test_invalid_input_disables_upload_and_names_the_problem(hub, namespace, edit, expected):
    hub.push(sales_frame(10), "taken").wait(timeout=30)
    namespace["bad"] = pd.DataFrame({"z": [1 + 2j, 3j]})
    panel = hub.panel(namespace=namespace)
    try:
        panel.frame_dropdown.value = edit.get("frame", "sales")
        if "name" in edit:
            panel.name_text.value = edit["name"]
        if "if_exists" in edit:
            panel.if_exists_dropdown.value = edit["if_exists"]
        assert panel.upload_button.disabled
        assert expected in panel.controller.problem
        # In red, in the form's own line, with its whitespace kept (three spaces stay three).
        assert panel.message.value.startswith('<span class="dsn-msg dsn-level-error dsn-text">')
        assert expected in panel.message.value
        assert panel.status.value == ""
        # Fixing it enables the button.
        panel.frame_dropdown.value = "sales"
        panel.name_text.value = "fresh"
        panel.if_exists_dropdown.value = "replace"
        assert not panel.upload_button.disabled and panel.controller.problem is None
    finally:
        panel.close()


def test_an_unstorable_value_is_named_with_its_column(hub, namespace):
    namespace["objects"] = pd.DataFrame({"ok": [1, 2], "things": [object(), object()]})
    panel = hub.panel(namespace=namespace)
    try:
        panel.frame_dropdown.value = "objects"
        assert panel.upload_button.disabled
        assert "column 'things'" in panel.controller.problem
        # Clicking anyway (e.g. a stale button in the browser) starts nothing and says why, next
        # to the button; the status line is for what happens elsewhere.
        panel.upload_button.click()
        assert panel.controller.tasks == [] and hub.tasks().empty
        assert "starting the upload failed" in panel.message.value and "things" in panel.message.value
        assert panel.status.value == ""
        # An edit replaces it with the form's state.
        panel.frame_dropdown.value = "sales"
        assert "Ready to upload" in panel.message.value and "failed" not in panel.message.value
    finally:
        panel.close()


def test_a_frame_beyond_the_databases_limits_is_refused_before_the_click(hub, namespace, backend):
    """The panel checks through hub.check, so the backend's column limit refuses a frame that
    the codec alone would take (SQLite allows 2,000 columns, PostgreSQL 1,600)."""
    namespace["wide"] = pd.DataFrame(np.zeros((3, 2_500)), columns=[f"c{i}" for i in range(2_500)])
    panel = hub.panel(namespace=namespace)
    try:
        panel.frame_dropdown.value = "wide"
        assert panel.upload_button.disabled
        assert "split the frame into several datasets" in panel.controller.problem
        assert hub.tasks().empty
    finally:
        panel.close()
    with pytest.raises(dsn.ValidationError, match="at most"):
        hub.check(namespace["wide"], "wide")
    hub.check(namespace["sales"], "sales")  # a frame push takes passes, and nothing is written
    assert hub.datasets().empty and hub.tasks().empty


def test_refresh_finds_new_frames_and_forgets_deleted_ones(panel, namespace):
    panel.frame_dropdown.value = "costs"
    namespace["fresh"] = sales_frame(7)
    del namespace["costs"]
    # Nothing changes until Refresh is clicked...
    assert [value for _, value in panel.frame_dropdown.options] == ["costs", "sales"]
    panel.refresh_frames_button.click()
    assert panel.frame_dropdown.options == (("fresh (7 × 4)", "fresh"), ("sales (2,000 × 4)", "sales"))
    # ...and a frame that is gone is no longer chosen: the form asks for one again.
    assert panel.frame_dropdown.value is None and panel.upload_button.disabled
    assert "dsn-level-hint" in panel.message.value and "Choose one of the notebook" in panel.message.value
    assert "no frame chosen" in panel.controller.problem


def test_a_variable_rebound_to_something_else_is_refused(panel, namespace):
    panel.frame_dropdown.value = "sales"
    namespace["sales"] = "not a frame any more"
    panel.upload_button.click()
    assert panel.controller.tasks == []
    assert "'sales' is now a str, not a pandas or polars DataFrame, a pandas Series or a pyarrow Table" in panel.message.value
    assert "dsn-level-error" in panel.message.value and panel.status.value == ""


def test_cancel_a_queued_upload_from_its_row(hub, panel):
    release = occupy_the_slot(hub)
    try:
        panel.frame_dropdown.value = "sales"
        panel.upload_button.click()
        task = panel.controller.tasks[0]
        row = row_of(panel, task)
        assert row.status_badge.value == "queued" and not row.cancel_button.disabled
        row.cancel_button.click()
        with pytest.raises(dsn.UploadCancelled):
            task.wait(timeout=30)  # returns once the catalog records the cancel
    finally:
        release()
    assert task.status == "cancelled"
    wait_until(lambda: row.status_badge.value == "cancelled", what="the final render")
    assert row.bar.bar_style == "warning" and row.cancel_button.disabled
    assert row.retry_button.layout.display is None  # a cancelled upload can be started again
    # Nothing was published, and the catalog says why.
    assert hub.datasets().empty
    assert hub.tasks().iloc[0]["status"] == "cancelled"


def test_a_failed_upload_turns_red_and_retry_publishes_it(hub, panel, namespace):
    undo = refuse_progress_beyond(hub, 1_000)
    task = hub.push(namespace["sales"], "sales", chunk_size=500)
    with pytest.raises(dsn.UploadError):
        task.wait(timeout=30)
    wait_until(lambda: panel.task_list.children and panel.task_list.children[0].task is task, what="the row")
    row = row_of(panel, task)
    wait_until(lambda: row.status_badge.value == "failed", what="the final render")
    assert row.bar.bar_style == "danger" and "dsn-state-failed" in row.status_badge._dom_classes
    assert row.error.layout.display is None and "simulated storage failure" in row.error.value
    assert row.bar.value == pytest.approx(500 / 2_000)
    assert row.retry_button.layout.display is None
    wait_until(lambda: "The upload of 'sales' failed: simulated storage failure" in panel.status.value, what="the status line")
    # An error stays until it is dismissed.
    assert "dsn-level-error" in panel.status.value and "dsn-fades" not in panel.status.value
    assert panel.dismiss_button.layout.display is None

    undo()
    row.retry_button.click()
    new = panel.controller.tasks[0]
    assert new is not task and new.dataset == "sales"
    # Both rows say how they are related, so the panel never shows two rows that look alike.
    assert row.retried_as is new and f"Retried as upload {new.id[:8]}: " in row.note.value
    assert row.retry_button.layout.display == "none"
    assert row_of(panel, new).note.value == f'<span class="dsn-text">Retry of upload {task.id[:8]}</span>'
    assert f"Retrying the upload of 'sales' as upload {new.id[:8]}." in panel.status.value
    assert new.wait(timeout=30).version == 1
    assert [r.task for r in panel.task_list.children] == [new, task]
    assert row.status_badge.value == "failed"  # the old row stays as it ended
    wait_until(lambda: "succeeded</span>" in row.note.value, what="the retry's end in the old row")
    pd.testing.assert_frame_equal(hub.pull("sales"), namespace["sales"])
    assert hub.tasks()["status"].tolist() == ["succeeded", "failed"]


def test_retrying_a_succeeded_upload_is_refused_in_the_status_area(hub, panel, namespace):
    task = hub.push(namespace["costs"], "costs")
    task.wait(timeout=30)
    assert not task.can_retry
    panel.controller.run("retrying the upload", panel.controller.retry, task)
    assert "only a failed, cancelled or interrupted upload can be retried" in panel.status.value


def test_uploads_started_in_code_are_listed_newest_first(hub, namespace):
    before = hub.push(namespace["costs"], "early")
    before.wait(timeout=30)
    panel = hub.panel(namespace=namespace)
    try:
        after = hub.push(namespace["sales"], "late")
        after.wait(timeout=30)
        wait_until(lambda: len(panel.task_list.children) == 2, what="the second row")
        assert [row.task for row in panel.task_list.children] == [after, before]
        # Displaying a task and the panel's row are the same widget, so they never disagree.
        assert TaskProgress.for_task(after) is panel.task_list.children[0]
    finally:
        panel.close()


def test_uploads_of_earlier_sessions_are_listed_from_the_catalog(db_url, tmp_path, namespace):
    # An upload whose process died: recorded as running by a pid that no longer exists.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    with dsn.connect(db_url) as earlier:
        earlier.push(namespace["costs"], "from before").wait(timeout=30)
        execute(
            earlier,
            "INSERT INTO dsn_tasks (id, name, dataset, status, if_exists, priority, rows_total, rows_done, attempts, "
            "deduplicated, queued_at, owner_host, owner_pid) SELECT 'deadbeef', 'push crashed', 'crashed', 'running', "
            f"'replace', 0, 100, 40, 1, deduplicated, queued_at, owner_host, {int(dead.stdout)} FROM dsn_tasks",
        )
    with dsn.connect(db_url) as hub:
        panel = hub.panel(namespace=namespace)
        try:
            history = panel.controller.history
            assert sorted(zip(history["dataset"], history["status"])) == [("crashed", "interrupted"), ("from before", "succeeded")]
            assert "interrupted" in panel.history_table.value and "from before" in panel.history_table.value
            # This session's own uploads are rows above, not history.
            task = hub.push(namespace["sales"], "now")
            task.wait(timeout=30)
            panel.refresh_history_button.click()
            assert "now" not in set(panel.controller.history["dataset"])
        finally:
            panel.close()


# -- browsing and deleting -------------------------------------------------------------------------


def test_browse_datasets_versions_schema_and_preview(hub, namespace):
    hub.push(sales_frame(10, seed=1), "sales", description="first").wait(timeout=30)
    hub.push(sales_frame(20, seed=2), "sales", description="second").wait(timeout=30)
    hub.push(namespace["costs"], "costs").wait(timeout=30)
    panel = UploadPanel(hub, namespace=namespace, preview_rows=3)
    try:
        panel.tabs.selected_index = DATASETS_TAB
        table = panel.controller.datasets
        assert table[["name", "latest_version", "rows", "columns", "description"]].values.tolist() == [
            ["costs", 1, 50, 4, ""], ["sales", 2, 20, 4, "second"]
        ]
        headers, rows = read_table(panel.datasets_table.value)
        assert headers == ["Dataset", "Latest", "Rows", "Columns", "Updated", "Description"]
        assert [(r["Dataset"][0], r["Latest"][0], r["Rows"][0], r["Description"][0]) for r in rows] == [
            ("costs", "v1", "50", ""), ("sales", "v2", "20", "second")
        ]
        assert [value for _, value in panel.dataset_dropdown.options] == [None, "costs", "sales"]

        panel.dataset_dropdown.value = "sales"
        assert [value for _, value in panel.version_dropdown.options] == [None, 1, 2]
        assert panel.version_dropdown.value == 2
        schema = panel.controller.schema
        expected = sales_frame(20, seed=2).dtypes
        assert schema.values.tolist() == [[label, str(dtype)] for label, dtype in expected.items()]
        assert schema["dtype"].tolist()[:3] == ["category", "Int64", "float64"]
        headers, rows = read_table(panel.schema_table.value)
        assert headers == ["Column", "Type"] and rows[-1] == {"Column": ("day", None), "Type": (str(expected["day"]), None)}
        pd.testing.assert_frame_equal(panel.controller.preview, sales_frame(20, seed=2).head(3))
        assert panel.preview.value.count("<tr") == 4  # a header and three rows

        panel.version_dropdown.value = 1
        pd.testing.assert_frame_equal(panel.controller.preview, sales_frame(10, seed=1).head(3))
    finally:
        panel.close()


def test_deleting_a_version_asks_first(hub, namespace):
    for seed in (1, 2, 3):
        hub.push(sales_frame(10, seed=seed), "sales").wait(timeout=30)
    panel = hub.panel(namespace=namespace)
    try:
        panel.dataset_dropdown.value = "sales"
        panel.version_dropdown.value = 2
        panel.delete_button.click()
        assert panel.confirm_box.layout.display is None
        assert panel.confirm_question.value == "Delete version 2 of 'sales'? This cannot be undone."
        assert hub.versions("sales")["version"].tolist() == [3, 2, 1] or sorted(hub.versions("sales")["version"]) == [1, 2, 3]

        panel.confirm_no.click()  # changing one's mind deletes nothing
        assert panel.confirm_box.layout.display == "none"
        assert sorted(hub.versions("sales")["version"]) == [1, 2, 3]

        panel.delete_button.click()
        panel.confirm_yes.click()
        assert sorted(hub.versions("sales")["version"]) == [1, 3]
        assert "Deleted version 2 of 'sales'." in panel.status.value
        assert [value for _, value in panel.version_dropdown.options] == [None, 1, 3]
        pd.testing.assert_frame_equal(hub.pull("sales", version=1), sales_frame(10, seed=1))

        # With no version chosen, Delete removes the whole dataset, again after asking.
        panel.version_dropdown.value = None
        assert panel.delete_button.description == "Delete dataset"
        panel.delete_button.click()
        assert "Delete the dataset 'sales' and all its versions?" in panel.confirm_question.value
        panel.confirm_yes.click()
        assert hub.datasets().empty
        assert panel.dataset_dropdown.value is None and "No datasets yet." in panel.datasets_table.value
    finally:
        panel.close()


def test_tables_read_as_text_for_people(hub, namespace, db_url):
    big = pd.DataFrame({"n": np.arange(1_234_567, dtype="int64")})
    hub.push(big, "big", description="a long description " * 4).wait(timeout=60)
    panel = hub.panel(namespace=namespace)
    try:
        headers, [row] = read_table(panel.datasets_table.value)
        assert (row["Rows"], row["Latest"], row["Updated"][0]) == (("1,234,567", None), ("v1", None), "just now")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row["Updated"][1])  # the exact time, as a tooltip
        assert row["Description"][1] == "a long description " * 4  # cut by the page, whole in the tooltip

        panel.dataset_dropdown.value = "big"
        version = hub.versions("big").iloc[0]
        headers, [row] = read_table(panel.versions_table.value)
        assert headers == ["Version", "Latest", "Rows", "Columns", "Created", "By", "Content hash", "Upload", "SQL table"]
        assert (row["Version"][0], row["Latest"][0], row["Rows"][0]) == ("v1", "latest", "1,234,567")
        # Hashes and ids are short, and whole in their tooltips.
        assert row["Content hash"] == (version["content_hash"][:12], version["content_hash"])
        assert row["Upload"] == (version["task_id"][:8], version["task_id"])
        assert row["SQL table"][0] == version["table_name"]
        # Every table sits in a box that scrolls sideways on its own when it is wider than the panel.
        for widget in (panel.datasets_table, panel.versions_table, panel.schema_table, panel.preview):
            assert widget.value.startswith('<div class="dsn-scroll">'), widget.value[:80]
        assert ".dsn-scroll {{ overflow-x: auto;".replace("{{", "{") in STYLESHEET
    finally:
        panel.close()
    with dsn.connect(db_url) as later:  # a new session: the upload is history now
        panel = later.panel(namespace=namespace)
        try:
            headers, [row] = read_table(panel.history_table.value)
            assert headers == ["Dataset", "Status", "Rows", "Attempts", "Queued", "Finished", "Upload", "Error"]
            assert (row["Dataset"][0], row["Status"][0], row["Rows"][0], row["Finished"][0]) == ("big", "succeeded", "1,234,567", "just now")
            assert 'class="dsn-state-succeeded"' in panel.history_table.value
        finally:
            panel.close()


def test_times_read_relative_to_now():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    ago = [format_ago(now - timedelta(**delta), now) for delta in (
        {"seconds": 3}, {"seconds": 42}, {"minutes": 3, "seconds": 59}, {"hours": 5}, {"days": 1}, {"days": 12}, {"days": 40},
    )]  # fmt: skip
    assert ago == ["just now", "42 s ago", "3 min ago", "5 h ago", "1 day ago", "12 days ago", "2026-01-20"]
    assert format_ago(pd.NaT, now) == "" and format_ago(None, now) == ""


def test_the_status_line_keeps_an_error_until_it_is_dismissed(hub, panel):
    # A failed refresh goes to the status line, in red, with its time; the form is not involved.
    hub.close()
    panel.refresh_datasets_button.click()
    assert "refreshing the datasets failed" in panel.status.value and "dsn-level-error" in panel.status.value
    assert panel.status_line.layout.display is None and panel.dismiss_button.layout.display is None
    assert "dsn-level-hint" in panel.message.value
    panel.dismiss_button.click()
    assert panel.controller.status is None
    assert panel.status.value == "" and panel.status_line.layout.display == "none"


def test_a_retry_started_in_code_is_linked_in_the_rows(hub, panel, namespace):
    release = occupy_the_slot(hub)
    try:
        task = hub.push(namespace["costs"], "costs")
        task.cancel()
        with pytest.raises(dsn.UploadCancelled):
            task.wait(timeout=30)
    finally:
        release()
    new = panel.controller.retry(task)
    new.wait(timeout=30)
    old_row, new_row = row_of(panel, task), row_of(panel, new)
    assert old_row.retried_as is new and f"Retried as upload {new.id[:8]}" in old_row.note.value
    assert f"Retry of upload {task.id[:8]}" in new_row.note.value
    assert old_row.retry_button.layout.display == "none"
    assert new.retry_of == task.id and task.retried_by is new


# -- errors are shown, never swallowed -------------------------------------------------------------


def test_a_failing_callback_shows_in_the_status_area_and_is_logged(hub, namespace, caplog):
    hub.push(sales_frame(10), "sales").wait(timeout=30)
    panel = hub.panel(namespace=namespace)
    # The database loses its catalog underneath the panel.
    execute(hub, "DROP TABLE dsn_versions" + ("" if hub.url.get_backend_name() == "sqlite" else " CASCADE"))
    with caplog.at_level(logging.ERROR, logger="dsnotebook"):
        panel.refresh_datasets_button.click()
    assert panel.status.value.startswith('<span class="dsn-msg dsn-level-error dsn-text"><span class="dsn-when">')
    assert "refreshing the datasets failed:" in panel.status.value
    assert "dsn_versions" in panel.status.value
    [record] = [r for r in caplog.records if r.name == "dsnotebook"]
    assert record.levelno == logging.ERROR and "refreshing the datasets failed" in record.getMessage()
    assert record.exc_info is not None
    panel.close()


def test_a_closed_hub_is_reported_not_raised(hub, panel):
    hub.close()
    panel.refresh_datasets_button.click()
    assert "refreshing the datasets failed" in panel.status.value and "is closed" in panel.status.value


# -- pyarrow Tables and polars DataFrames --------------------------------------------------------


def test_a_pyarrow_table_is_listed_and_uploaded_as_it_is(hub, namespace):
    import pyarrow as pa

    namespace["events"] = pa.table({"n": pa.array([1, None, 3], pa.int32()), "tag": ["a", "b", None]})
    panel = hub.panel(namespace=namespace)
    try:
        assert panel.frame_dropdown.options == (
            ("costs (50 × 4)", "costs"), ("events (Table, 3 × 2)", "events"), ("sales (2,000 × 4)", "sales"),
        )
        panel.frame_dropdown.value = "events"
        assert panel.name_text.value == "events" and not panel.upload_button.disabled
        assert "Ready to upload 3 rows as 'events'" in panel.message.value
        panel.upload_button.click()
        task = panel.controller.tasks[0]
        task.wait(timeout=30)
        assert "Started the upload of 'events' (3 rows)" in panel.message.value
        # Pushed as the Table it is: pulled back as that Table, types and all.
        assert hub.pull("events").equals(namespace["events"])
    finally:
        panel.close()


def test_a_table_rebound_to_something_else_is_refused(panel, namespace):
    import pyarrow as pa

    namespace["events"] = pa.table({"n": [1]})
    panel.refresh_frames_button.click()
    panel.frame_dropdown.value = "events"
    namespace["events"] = [1, 2]
    panel.upload_button.click()
    assert panel.controller.tasks == []
    assert "'events' is now a list, not a pandas or polars DataFrame" in panel.message.value


def test_the_hints_name_every_kind_when_there_is_nothing_to_upload(hub):
    panel = hub.panel(namespace={"answer": 42})
    try:
        assert panel.frame_dropdown.options == ()
        assert (
            "Nothing to upload in the notebook yet (a pandas or polars DataFrame, a pandas Series or a pyarrow Table): "
            "create one, then click Refresh." in panel.message.value
        )
    finally:
        panel.close()


def test_a_polars_frame_is_listed_and_passed_to_the_hub_as_it_is(hub, namespace):
    pl = pytest.importorskip("polars")
    from dsnotebook.errors import ValidationError

    namespace["pl_sales"] = pl.DataFrame({"n": [1, 2, 3], "s": ["x", None, "z"]})
    namespace["lazy"] = pl.DataFrame({"n": [1]}).lazy()  # not a frame hub.push takes
    panel = hub.panel(namespace=namespace)
    try:
        assert ("pl_sales (polars DataFrame, 3 × 2)", "pl_sales") in panel.frame_dropdown.options
        assert "lazy" not in [value for _, value in panel.frame_dropdown.options]
        panel.frame_dropdown.value = "pl_sales"
        # The form's verdict is the hub's own on the very object: no conversion on the way.
        try:
            hub.check(namespace["pl_sales"], "pl_sales")
        except ValidationError as exc:
            assert panel.controller.problem == f"pl_sales: {exc}"
            assert panel.upload_button.disabled
            pytest.skip(f"hub.push does not take polars DataFrames in this tree yet: {exc}")
        assert panel.controller.problem is None and not panel.upload_button.disabled
        panel.upload_button.click()
        panel.controller.tasks[0].wait(timeout=30)
        assert hub.pull("pl_sales", to="polars").equals(namespace["pl_sales"])
    finally:
        panel.close()


def test_frames_are_listed_without_polars(db_url):
    # As if polars were not installed: the panel tells the kinds apart without importing it.
    # (Whether polars is imported at all is not the panel's to say: the ADBC driver manager
    # imports it on connecting, where it is installed.)
    script = (
        "import sys; sys.modules['polars'] = None\n"
        "import pandas as pd, pyarrow as pa, dsnotebook as dsn\n"
        f"hub = dsn.connect({db_url!r})\n"
        "panel = hub.panel(namespace={'t': pa.table({'n': [1]}), 'df': pd.DataFrame({'n': [1, 2]})})\n"
        "print(panel.frame_dropdown.options)\n"
        "panel.close(); hub.close()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(('df (2 × 1)', 'df'), ('t (Table, 1 × 1)', 't'))"


@pytest.mark.sqlite_only
def test_a_hub_that_may_not_write_says_why_and_keeps_upload_disabled(hub, db_url, namespace):
    hub.push(sales_frame(10), "stored").wait(timeout=60)
    database = db_url.split(":///", 1)[1]
    with dsn.connect(f"sqlite+aiosqlite:///file:{database}?mode=ro&uri=true") as reader:
        assert not reader.writable
        panel = reader.panel(namespace=namespace)
        try:
            panel.frame_dropdown.value = "sales"
            assert panel.upload_button.disabled
            assert "read-only" in panel.controller.problem
            assert "dsn-level-error" in panel.message.value and "read-only" in panel.message.value
            # Browsing still works.
            assert panel.controller.datasets["name"].tolist() == ["stored"]
        finally:
            panel.close()
