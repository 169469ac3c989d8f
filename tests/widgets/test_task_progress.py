"""One upload's live row: what it shows, how often it redraws, and the handle's display hook."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hubtools import occupy_the_slot, wait_until

import dsnotebook as dsn
from dsnotebook.widgets import TaskProgress
from dsnotebook.widgets.progress import MAX_UPDATES_PER_S


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
    assert "retrying failed: division by zero" in row.error.value and row.error.layout.display is None
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
