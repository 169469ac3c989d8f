"""The status strip: the hub's figures, their colours past the thresholds, and a refresh loop that
runs only while the strip is displayed and leaves nothing behind once it is closed.

The frontend's part is played by the message it sends: ipywidgets' ``_view_count`` update, as
JupyterLab sends it when a view of the strip appears or goes away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time

import pandas as pd
import pytest
from hubtools import wait_until

from dsnotebook._portal import get_portal
from dsnotebook.monitor import format_bytes
from dsnotebook.widgets import StatusStrip
from dsnotebook.widgets.strip import MIN_INTERVAL_S
from dsnotebook.widgets.theme import STYLESHEET


def frontend_views(widget, count: int) -> None:
    """Deliver the message JupyterLab sends when the number of views of ``widget`` changes."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": {"_view_count": count}}}, "buffers": []})


def portal_tasks() -> set[str]:
    async def others():
        me = asyncio.current_task()
        return {t.get_name() for t in asyncio.all_tasks() if t is not me}

    return get_portal().run(others())


def level(widget) -> str | None:
    levels = [c.removeprefix("dsn-level-") for c in widget._dom_classes if c.startswith("dsn-level-")]
    assert len(levels) <= 1, widget._dom_classes
    return levels[0] if levels else None


def record_shows(strip: StatusStrip) -> list[float]:
    """The monotonic time of every status the strip shows from now on."""
    times: list[float] = []
    show = strip.show

    def recording(status):
        show(status)
        if status is not None:
            times.append(time.monotonic())

    strip.show = recording
    return times


def test_the_strip_shows_the_hubs_figures(hub, backend):
    strip = hub.monitor()
    try:
        assert isinstance(strip, StatusStrip)
        assert repr(strip) == "<StatusStrip: queue · rows/s · memory · database · free disk>"
        status = strip.refresh()
        assert strip.status is status and strip.refreshes == 1
        assert strip.queue.value == "0 queued · 0 running"
        assert strip.rate.value == "0 rows/s"
        assert strip.memory.value == f"RSS {format_bytes(status.rss_bytes)} of {format_bytes(status.memory_limit_bytes)}"
        assert strip.database.value == f"DB {format_bytes(status.database_bytes)}" and strip.database.layout.display is None
        if backend == "sqlite":
            assert strip.disk.value == f"{format_bytes(status.free_disk_bytes)} free" and strip.disk.layout.display is None
        else:  # a database server's disk cannot be seen from here
            assert status.free_disk_bytes is None and strip.disk.layout.display == "none"
        assert strip.note.value == ""
        # All is well on this machine: no colour.
        assert (status.memory_state, status.disk_state) == ("ok", "ok")
        assert level(strip) is None and level(strip.memory) is None and level(strip.disk) is None
        # Nothing refreshes while the strip is not displayed.
        assert not strip.running
    finally:
        strip.close()


def test_memory_and_disk_turn_amber_then_red(hub):
    strip = hub.monitor()
    try:
        real = strip.refresh()
        limit = real.memory_limit_bytes
        cases = [
            # (changes, memory level, disk level, strip level)
            ({"rss_bytes": int(limit * 0.5)}, None, None, None),
            ({"rss_bytes": int(limit * 0.85)}, "warn", None, "warn"),
            ({"rss_bytes": int(limit * 0.95)}, "critical", None, "critical"),
            ({"rss_bytes": 0, "free_disk_bytes": 10_000, "queued_bytes": 4_000}, None, None, None),
            ({"rss_bytes": 0, "free_disk_bytes": 10_000, "queued_bytes": 6_000}, None, "warn", "warn"),
            ({"rss_bytes": 0, "free_disk_bytes": 10_000, "queued_bytes": 12_000}, None, "critical", "critical"),
            ({"rss_bytes": int(limit * 0.85), "free_disk_bytes": 10_000, "queued_bytes": 12_000}, "warn", "critical", "critical"),
        ]
        for changes, memory, disk, overall in cases:
            status = dataclasses.replace(real, **changes)
            strip.show(status)
            assert (level(strip.memory), level(strip.disk), level(strip)) == (memory, disk, overall), changes
            assert strip.memory.value == f"RSS {format_bytes(status.rss_bytes)} of {format_bytes(limit)}"
        assert strip.disk.value == "9.8 KB free"
        assert "12.0 KB to write" not in strip.disk.tooltip and "11.7 KB to write" in strip.disk.tooltip
    finally:
        strip.close()
    # Amber and red are the theme's warning and error colours, made readable as text.
    rules = {line.split("{")[0]: line for line in STYLESHEET.splitlines() if "{" in line}
    amber = next(r for s, r in rules.items() if ".dsn-level-warn," in s or ".dsn-level-warn " in s)
    red = next(r for s, r in rules.items() if ".dsn-level-critical" in s and "color-mix" in r)
    assert "var(--jp-warn-color1)" in amber and "var(--jp-error-color1)" in red
    assert ".dsn-strip.dsn-level-warn { border-left-color: var(--jp-warn-color1); }" in STYLESHEET
    assert ".dsn-strip.dsn-level-critical { border-left-color: var(--jp-error-color1); }" in STYLESHEET


def test_a_running_upload_is_counted(hub):
    from dsnotebook import _faults

    strip = hub.monitor()
    _faults.arm("between_chunks@2:pause")
    try:
        task = hub.push(pd.DataFrame({"a": range(50_000)}), "held", chunk_size=1_000)
        assert _faults.paused.wait(timeout=30)
        strip.refresh()
        assert strip.queue.value == "0 queued · 1 running"
        assert strip.rate.value.endswith("rows/s") and strip.rate.value != "0 rows/s"
        task.cancel()
    finally:
        _faults.arm(None)
        strip.close()
    with pytest.raises(Exception, match="cancelled"):
        task.wait(timeout=30)


def test_the_panel_refreshes_its_strip_only_while_displayed_and_leaves_no_timer(hub):
    before = portal_tasks()
    panel = hub.panel(namespace={})
    strip = panel.strip
    shows = record_shows(strip)
    try:
        assert not strip.running and strip.refreshes == 0  # made, not displayed: no queries
        assert strip._view_count == 0  # the frontend is asked to count the views

        # A view appears: the strip refreshes at once, then once a second.
        frontend_views(strip, 1)
        assert strip.running
        wait_until(lambda: len(shows) >= 3, what="three refreshes")
        gaps = [b - a for a, b in itertools.pairwise(shows)]
        assert all(gap >= MIN_INTERVAL_S * 0.95 for gap in gaps), gaps
        assert strip.queue.value == "0 queued · 0 running"
        assert portal_tasks() - before  # the refresh loop runs on the hub's loop

        # The last view goes (the output was cleared): the loop stops, and its task is gone.
        frontend_views(strip, 0)
        # (A task of the hub's that ran before may have ended meanwhile: nothing new is left.)
        assert not strip.running and portal_tasks() <= before
        count = strip.refreshes

        # Displayed again, then the panel is closed while the loop sleeps.
        frontend_views(strip, 1)
        wait_until(lambda: strip.refreshes > count, what="a refresh after the new view")
    finally:
        panel.close()
    # No task, and so no timer, is left: the loop's sleep went with its task.
    assert not strip.running
    assert portal_tasks() <= before
    assert strip.comm is None and panel.comm is None


def test_displaying_the_strip_alone_starts_it_and_closing_stops_it(hub):
    before = portal_tasks()
    strip = hub.monitor()
    try:
        frontend_views(strip, 2)  # shown in two cells: still one loop
        frontend_views(strip, 1)
        assert strip.running
        wait_until(lambda: strip.refreshes >= 1, what="the first refresh")
    finally:
        strip.close()
    assert not strip.running and portal_tasks() <= before
    frontend_views(strip, 1)  # a late message from the frontend starts nothing
    assert not strip.running


def test_a_closed_hub_stops_the_loop_and_says_so(hub):
    before = portal_tasks()
    strip = hub.monitor()
    try:
        frontend_views(strip, 1)
        wait_until(lambda: strip.refreshes >= 1, what="the first refresh")
        hub.close()
        wait_until(lambda: not strip.running, what="the loop to end")
        assert strip.note.value == "Status: the hub is closed."
        assert portal_tasks() <= before  # the hub's own tasks ended with it, and the strip's too
        frontend_views(strip, 0)
        frontend_views(strip, 1)  # shown again: nothing to ask
        assert not strip.running and strip.note.value == "Status: the hub is closed."
    finally:
        strip.close()
