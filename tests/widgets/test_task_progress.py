"""One upload's live row: what it shows, how often it redraws, and the handle's display hook."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hubtools import occupy_the_slot, refuse_progress_beyond, wait_until

import dsnotebook as dsn
from dsnotebook import _faults
from dsnotebook.progress import Progress, format_remaining, format_status
from dsnotebook.widgets import TaskProgress
from dsnotebook.widgets.progress import MAX_UPDATES_PER_S, short_title
from dsnotebook.widgets.theme import STYLESHEET

TIME_LEFT = re.compile(r"^(\d+s|\d+(:\d\d){1,2}) left$")


def test_updates_are_throttled_to_ten_per_second_plus_the_final_one(hub):
    release = occupy_the_slot(hub)
    try:
        # 400 chunks: one progress event each, far more than ten per second.
        task = hub.push(pd.DataFrame({"a": np.arange(200_000)}), "many chunks", chunk_size=500)
        row = TaskProgress.for_task(task)
        events: list[str] = []
        task.subscribe(lambda p: events.append(p.status))
        assert row.renders == 1 and row.status_badge.value == "queued" and row.percent.value == "0%"
    finally:
        release()
    task.wait(timeout=60)
    wait_until(lambda: row.status_badge.value == "succeeded", what="the final render")
    assert len(events) > 400
    allowed = task.elapsed * MAX_UPDATES_PER_S + 3  # the first render, a trailing one and the final one
    assert 2 <= row.renders <= allowed, (row.renders, task.elapsed)
    assert (row.bar.value, row.percent.value, row.rows.value) == (1.0, "100%", "200,000 / 200,000 rows")
    assert row.rate.value.endswith("rows/s") and row.elapsed.value.endswith("s")
    assert row.eta.value == ""  # no time left once it has ended


def test_one_task_has_one_row_and_a_stable_repr(hub):
    task = hub.push(pd.DataFrame({"a": [1, 2]}), "tiny")
    task.wait(timeout=30)
    row = TaskProgress.for_task(task)
    assert TaskProgress.for_task(task) is row
    assert repr(row) == "<TaskProgress of the upload of 'tiny'>"
    # A row made after the end shows the end at once, and needs no Cancel.
    assert row.status_badge.value == "succeeded" and row.cancel_button.disabled
    row.close()
    assert TaskProgress.for_task(task) is not row  # a closed row is replaced


def test_a_deduplicated_push_says_so(hub):
    df = pd.DataFrame({"a": [1, 2, 3]})
    hub.push(df, "same").wait(timeout=30)
    again = hub.push(df, "same")
    again.wait(timeout=30)
    row = TaskProgress.for_task(again)
    assert row.status_badge.value == "succeeded (identical)" and row.title.value == "same v1"


def test_retry_needs_a_handler(hub):
    release = occupy_the_slot(hub)
    try:
        task = hub.push(pd.DataFrame({"a": [1]}), "r")
        plain = TaskProgress(task)
        task.cancel()
        wait_until(task.done, what="the cancel")
    finally:
        release()
    wait_until(lambda: plain.status_badge.value == "cancelled", what="the final render")
    assert plain.retry_button.layout.display == "none"  # nobody to retry it
    retried = []
    plain.set_retry(retried.append)
    assert plain.retry_button.layout.display is None
    plain.retry_button.click()
    assert retried == [task]


def test_a_failing_button_shows_its_error_in_the_row(hub, caplog):
    task = hub.push(pd.DataFrame({"a": [1]}), "x")
    task.wait(timeout=30)
    row = TaskProgress(task, on_retry=lambda t: 1 / 0)
    row._act("retrying", row._retry)
    assert "Retrying failed: division by zero" in row.error.value and row.error.layout.display is None
    assert 'class="dsn-level-error' in row.error.value  # coloured by the theme, not a fixed red
    assert any("retrying the upload of 'x' failed" in r.getMessage() for r in caplog.records)


def test_outside_a_kernel_the_handle_displays_as_text(hub, capsys):
    task = hub.push(pd.DataFrame({"a": [1]}), "plain")
    task.wait(timeout=30)
    task._ipython_display_()  # what IPython calls; there is no kernel here
    assert capsys.readouterr().out.strip() == repr(task)
    assert repr(task).startswith("<UploadTask 'plain' v1 succeeded · 1/1 rows (100%)")


@pytest.mark.parametrize("status", ["queued", "running"])
def test_cancel_button_is_live_until_the_end(hub, status):
    release = occupy_the_slot(hub) if status == "queued" else None
    try:
        task = hub.push(pd.DataFrame({"a": np.arange(300_000)}), "c", chunk_size=1_000)
        if status == "running":
            wait_until(lambda: task.rows_done > 0, what="the upload to start")
        row = TaskProgress.for_task(task)
        assert not row.cancel_button.disabled
        row.cancel_button.click()
        with pytest.raises(dsn.UploadCancelled):
            task.wait(timeout=30)  # returns once the catalog records the cancel
    finally:
        if release is not None:
            release()
    assert task.status == "cancelled"
    wait_until(lambda: row.status_badge.value == "cancelled", what="the final render")
    assert row.bar.bar_style == "warning" and row.cancel_button.disabled
    assert hub.datasets().empty and hub.tasks().iloc[0]["status"] == "cancelled"


# -- time left ---------------------------------------------------------------------------------


def snapshot(status: str, done: int, total: int = 1_000, elapsed: float = 5.0) -> Progress:
    return Progress(task_id="t" * 32, dataset="d", status=status, rows_done=done, rows_total=total, elapsed=elapsed)


def test_time_left_is_estimated_from_the_average_rate_while_running():
    running = snapshot("running", 250)
    assert running.rows_per_s == 50 and running.remaining == pytest.approx(15.0)
    assert format_remaining(running.remaining) == "15s left"
    assert format_status(running).endswith("5.0s, 50 rows/s, 15s left")
    assert format_remaining(14.2) == "15s left"  # rounded up, as a countdown should be
    assert (format_remaining(75), format_remaining(3_600)) == ("1:15 left", "1:00:00 left")
    # Unknown before the first rows, and gone once the upload has ended.
    assert snapshot("running", 0).remaining is None
    assert snapshot("queued", 0, elapsed=0).remaining is None
    for status in ("succeeded", "failed", "cancelled", "interrupted"):
        assert snapshot(status, 250).remaining is None
    assert snapshot("running", 1_000).remaining == 0


def test_a_running_upload_shows_its_time_left(hub):
    # Held after its second chunk, so that it is seen running, at a known place.
    _faults.arm("between_chunks@2:pause")
    try:
        task = hub.push(pd.DataFrame({"a": np.arange(50_000)}), "held", chunk_size=1_000)
        row = TaskProgress.for_task(task)
        assert _faults.paused.wait(timeout=30), "the upload never reached its second chunk"
        wait_until(lambda: row.rows.value == "2,000 / 50,000 rows", what="the render of the held upload")
        assert row.status_badge.value == "running"
        assert TIME_LEFT.match(row.eta.value), row.eta.value
        assert row.eta.tooltip == "at the average rate so far"
        task.cancel()
        with pytest.raises(dsn.UploadCancelled):
            task.wait(timeout=30)
    finally:
        _faults.arm(None)
    wait_until(lambda: row.status_badge.value == "cancelled", what="the final render")
    assert row.eta.value == "" and row.eta.tooltip is None


# -- names, colours ----------------------------------------------------------------------------


def test_a_long_name_is_cut_with_an_ellipsis_and_keeps_its_version(hub):
    assert short_title("sales", 3) == "sales v3"
    assert short_title("x" * 30, None) == "x" * 30
    assert short_title("x" * 31, 12) == "x" * 29 + "… v12"
    # Wide characters count twice.
    assert short_title("売" * 16, 1) == "売" * 14 + "… v1"

    name = "quarterly sales of every region, revised quarterly sales of every region, revised"
    task = hub.push(pd.DataFrame({"a": [1, 2]}), name)
    task.wait(timeout=30)
    row = TaskProgress.for_task(task)
    assert row.title.value == "quarterly sales of every regi… v1"
    assert row.title.tooltip.startswith(f"{name} v1\n")  # the whole name, and the upload's id
    assert task.id in row.title.tooltip


def test_each_status_has_a_theme_class_and_no_fixed_colour(hub):
    release = occupy_the_slot(hub)
    try:
        task = hub.push(pd.DataFrame({"a": [1]}), "colours")
        row = TaskProgress.for_task(task)
        assert "dsn-state-queued" in row.status_badge._dom_classes and "dsn-row-queued" in row._dom_classes
        task.cancel()
        with pytest.raises(dsn.UploadCancelled):
            task.wait(timeout=30)
    finally:
        release()
    wait_until(lambda: "dsn-state-cancelled" in row.status_badge._dom_classes, what="the final render")
    assert [c for c in row.status_badge._dom_classes if c.startswith("dsn-state-")] == ["dsn-state-cancelled"]
    assert row.status_badge.style.text_color is None  # the colour comes from the stylesheet
    assert row.children[0].value == f"<style>{STYLESHEET}</style>"  # which every row carries
    # The stylesheet colours each state from JupyterLab's own variables, made readable as text.
    for state, variable in [
        ("running", "--jp-brand-color1"),
        ("succeeded", "--jp-success-color1"),
        ("failed", "--jp-error-color1"),
        ("cancelled", "--jp-warn-color1"),
        ("interrupted", "--jp-warn-color1"),
    ]:
        rule = next(line for line in STYLESHEET.splitlines() if f".dsn-state-{state}" in line and "color" in line)
        assert f"color-mix(in srgb, var({variable}) 65%, var(--jp-content-font-color0))" in rule, rule
    assert "#" not in STYLESHEET.split("/* -- one upload's row")[0]  # no fixed colour values


# -- retries -----------------------------------------------------------------------------------


def test_retry_from_a_row_says_where_it_went_in_both_rows(hub):
    undo = refuse_progress_beyond(hub, 1_000)
    frame = pd.DataFrame({"a": np.arange(3_000)})
    task = hub.push(frame, "flaky", chunk_size=1_000)
    with pytest.raises(dsn.UploadError):
        task.wait(timeout=30)
    undo()
    # A row shown in an earlier cell, given a Retry button (as the panel does).
    row = TaskProgress.for_task(task)
    row.set_retry(hub.retry)
    wait_until(lambda: row.retry_button.layout.display is None, what="the Retry button")
    row.retry_button.click()
    new = row.retried_as
    assert new is not None and new is not task and new.dataset == "flaky"
    # The click shows where it was made: the row names the retry and hides its Retry button.
    assert f"Retried as upload {new.id[:8]}: " in row.note.value and row.note.layout.display is None
    assert row.retry_button.layout.display == "none"
    assert row.status_badge.value == "failed"  # it still says how it ended
    # The retry's own row says what it retries, also when it is made after the click.
    new_row = TaskProgress.for_task(new)
    assert new_row.note.value == f'<span class="dsn-text">Retry of upload {task.id[:8]}</span>'
    assert "dsn-retry-of" in new_row._dom_classes and "dsn-retried" in row._dom_classes
    assert new.wait(timeout=30).version == 1
    wait_until(lambda: "succeeded</span>" in row.note.value and ", v1" in row.note.value, what="the retry's end in the old row")
    pd.testing.assert_frame_equal(hub.pull("flaky"), frame)


def test_a_retry_started_from_code_shows_in_the_rows_too(hub):
    undo = refuse_progress_beyond(hub, 1_000)
    task = hub.push(pd.DataFrame({"a": np.arange(3_000)}), "flaky", chunk_size=1_000)
    with pytest.raises(dsn.UploadError):
        task.wait(timeout=30)
    undo()
    row = TaskProgress.for_task(task)  # shown in an earlier cell, before the retry
    new = hub.retry(task)
    assert new.retry_of == task.id and task.retried_by is new
    wait_until(lambda: row.retried_as is new, what="the old row to follow the retry")
    assert f"Retried as upload {new.id[:8]}: " in row.note.value
    assert f"Retry of upload {task.id[:8]}" in TaskProgress.for_task(new).note.value
    assert new.wait(timeout=30).version == 1
    wait_until(lambda: ", v1" in row.note.value, what="the retry's end in the old row")
