"""The panel's tables as HTML for people: readable headers, grouped numbers, relative times,
short hashes and ids with the full value in a tooltip.

Each table sits in a box of its own that scrolls sideways when the table is wider than the
panel, so the panel itself never overflows. Nothing here imports ipywidgets: these are pure
functions from a DataFrame (as the hub returns it) to a string.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

__all__ = [
    "datasets_table",
    "format_ago",
    "history_table",
    "preview_table",
    "schema_table",
    "versions_table",
]

#: Characters of a content hash shown; the whole hash is in the tooltip.
HASH_CHARS = 12
#: Characters of an upload id shown, as in task names.
ID_CHARS = 8


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, CSS classes, and the tooltip with the full value."""

    text: str
    css: str = ""
    title: str | None = None

    def html(self) -> str:
        attrs = f' class="{self.css}"' if self.css else ""
        if self.title is not None:
            attrs += f' title="{html.escape(self.title)}"'
        return f"<td{attrs}>{html.escape(self.text, quote=False)}</td>"


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Any], Cell]
    css: str = ""


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def format_ago(when: datetime | pd.Timestamp | None, now: datetime) -> str:
    """``'just now'``, ``'42 s ago'``, ``'3 min ago'``, ``'5 h ago'``, ``'2 days ago'``, or the date
    for anything older than a month."""
    if _missing(when):
        return ""
    seconds = (now - when).total_seconds()
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    if days < 31:
        return "1 day ago" if days == 1 else f"{days} days ago"
    return f"{when:%Y-%m-%d}"


def _when(now: datetime) -> Callable[[Any], Cell]:
    def cell(value: Any) -> Cell:
        if _missing(value):
            return Cell("")
        return Cell(format_ago(value, now), title=f"{pd.Timestamp(value).tz_convert(UTC):%Y-%m-%d %H:%M:%S} UTC")

    return cell


#: Text longer than this may be cut by the page (with an ellipsis); its cell has a tooltip.
LONG_TEXT = 24


def _text(value: Any) -> Cell:
    if _missing(value):
        return Cell("")
    text = str(value)
    return Cell(text, "dsn-long", title=text if len(text) > LONG_TEXT else None)


def _count(value: Any) -> Cell:
    return Cell("" if _missing(value) else f"{int(value):,}", "dsn-num")


def _short(chars: int) -> Callable[[Any], Cell]:
    def cell(value: Any) -> Cell:
        if _missing(value):
            return Cell("")
        text = str(value)
        return Cell(text[:chars], "dsn-code", title=text)

    return cell


def _status(value: Any) -> Cell:
    status = "" if _missing(value) else str(value)
    return Cell(status, f"dsn-state-{html.escape(status)}" if status else "")


def _latest(value: Any) -> Cell:
    return Cell("latest" if not _missing(value) and bool(value) else "")


def _render(frame: pd.DataFrame, columns: Sequence[tuple[str, Column]], css: str) -> str:
    head = "".join(Cell(c.header, c.css).html().replace("<td", "<th").replace("</td>", "</th>") for _, c in columns)
    body = []
    for _, record in frame.iterrows():
        cells = [column.cell(record.get(key)) for key, column in columns]
        body.append("<tr>" + "".join(cell.html() for cell in cells) + "</tr>")
    return (
        f'<div class="dsn-scroll"><table class="dsn-table {css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _empty(message: str) -> str:
    return f'<i class="dsn-empty">{html.escape(message)}</i>'


def history_table(frame: pd.DataFrame, *, now: datetime | None = None, empty: str = "No earlier uploads.") -> str:
    """Uploads of earlier sessions and other processes, from ``hub.tasks()``."""
    if frame is None or frame.empty:
        return _empty(empty)
    now = now or datetime.now(UTC)
    shown = frame.assign(_rows=[_rows_of(done, total) for done, total in zip(frame["rows_done"], frame["rows_total"])])
    columns = [
        ("dataset", Column("Dataset", _text)),
        ("status", Column("Status", _status)),
        ("_rows", Column("Rows", lambda v: Cell(v, "dsn-num"), "dsn-num")),
        ("attempts", Column("Attempts", _count, "dsn-num")),
        ("queued_at", Column("Queued", _when(now))),
        ("finished_at", Column("Finished", _when(now))),
        ("id", Column("Upload", _short(ID_CHARS))),
        ("error", Column("Error", _text)),
    ]
    return _render(shown, [c for c in columns if c[0] in shown.columns], "dsn-table-history")


def _rows_of(done: Any, total: Any) -> str:
    if _missing(total):
        return ""
    done = 0 if _missing(done) else int(done)
    return f"{int(total):,}" if done == int(total) else f"{done:,} / {int(total):,}"


def datasets_table(frame: pd.DataFrame, *, now: datetime | None = None, empty: str = "No datasets yet.") -> str:
    """The stored datasets, from ``hub.datasets()``."""
    if frame is None or frame.empty:
        return _empty(empty)
    now = now or datetime.now(UTC)
    columns = [
        ("name", Column("Dataset", _text)),
        ("latest_version", Column("Latest", lambda v: Cell("" if _missing(v) else f"v{int(v)}", "dsn-num"), "dsn-num")),
        ("rows", Column("Rows", _count, "dsn-num")),
        ("columns", Column("Columns", _count, "dsn-num")),
        ("updated_at", Column("Updated", _when(now))),
        ("description", Column("Description", _text)),
    ]
    return _render(frame, [c for c in columns if c[0] in frame.columns], "dsn-table-datasets")


def versions_table(frame: pd.DataFrame, *, now: datetime | None = None, empty: str = "No versions.") -> str:
    """One dataset's versions, from ``hub.versions(name)``."""
    if frame is None or frame.empty:
        return _empty(empty)
    now = now or datetime.now(UTC)
    columns = [
        ("version", Column("Version", lambda v: Cell(f"v{int(v)}", "dsn-num"), "dsn-num")),
        ("latest", Column("Latest", _latest)),
        ("rows", Column("Rows", _count, "dsn-num")),
        ("columns", Column("Columns", _count, "dsn-num")),
        ("created_at", Column("Created", _when(now))),
        ("created_by", Column("By", _text)),
        ("content_hash", Column("Content hash", _short(HASH_CHARS))),
        ("task_id", Column("Upload", _short(ID_CHARS))),
        ("table_name", Column("SQL table", lambda v: Cell("" if _missing(v) else str(v), "dsn-code"))),
    ]
    return _render(frame, [c for c in columns if c[0] in frame.columns], "dsn-table-versions")


def schema_table(frame: pd.DataFrame) -> str:
    """A version's columns and their pandas dtypes."""
    if frame is None or frame.empty:
        return ""
    columns = [("column", Column("Column", _text)), ("dtype", Column("Type", lambda v: Cell(str(v), "dsn-code")))]
    return _render(frame, columns, "dsn-table-schema")


def preview_table(frame: pd.DataFrame, *, max_cols: int = 30) -> str:
    """A version's first rows, as pandas shows them (the user's own labels and values)."""
    if frame is None or frame.empty:
        return ""
    table = frame.to_html(border=0, classes="dsn-table dsn-table-preview", max_cols=max_cols, escape=True)
    return f'<div class="dsn-scroll">{table}</div>'
