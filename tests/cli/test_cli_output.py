"""What ls, versions, tasks and show print: tables in local time with ``-`` for missing values, and
``--json`` documents with every column, on both backends."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hubtools import refuse_progress_beyond

from dsnotebook.errors import UploadError
from dsnotebook.store.repository import DATASET_COLUMNS, TASK_COLUMNS, VERSION_COLUMNS

#: A local time zone 5 h 30 east of UTC, as a POSIX TZ string (it needs no zone database).
LOCAL_TZ = "IST-05:30"
LOCAL = timezone(timedelta(hours=5, minutes=30))
#: A reason for an upload to fail that is long, and spans two lines.
FAILURE = "the storage refused this chunk\nbecause the simulated volume is out of quota for this project"


@pytest.fixture
def local_zone():
    """The process's local time zone is :data:`LOCAL_TZ` for the test."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = LOCAL_TZ
    time.tzset()
    yield LOCAL
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"n": np.arange(rows), "x": np.linspace(0, 1, rows)})


def fail_an_upload(hub, name: str) -> None:
    """Push ``name`` and let the database refuse its second chunk, with :data:`FAILURE`."""
    undo = refuse_progress_beyond(hub, 200, FAILURE)
    with pytest.raises(UploadError):
        hub.push(frame(1000), name, chunk_size=100).wait(timeout=60)
    undo()


def no_nan(constant: str):
    raise AssertionError(f"{constant} is not JSON")


def parse(out: str):
    """``out`` as exactly one JSON document, refusing NaN and Infinity."""
    return json.loads(out, parse_constant=no_nan)


def table(out: str) -> list[dict[str, str]]:
    """The rows of a printed table, as dicts by column heading.

    Headings and cells are right-aligned, so each column ends where its heading ends.
    """
    header, *lines = out.splitlines()
    spans = [(m.group(), m.end()) for m in re.finditer(r"\S+", header)]
    rows = []
    for line in lines:
        starts = [0] + [end for _, end in spans[:-1]]
        rows.append({name: line[start:end].strip() for (name, end), start in zip(spans, starts, strict=True)})
    return rows


def iso(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.utcoffset() is not None, f"{text!r} has no UTC offset"
    return value


def test_json_of_ls_versions_and_tasks(cli, db_url, hub):
    hub.push(frame(3), "sales", description="Q3", tags={"team": "bi", "n": 2}).wait(timeout=60)
    hub.push(frame(5), "sales").wait(timeout=60)
    hub.push(frame(2), "users").wait(timeout=60)
    fail_an_upload(hub, "broken")

    code, out, err = cli("--url", db_url, "ls", "--json")
    assert code == 0 and err == ""
    datasets = hub.datasets()
    records = parse(out)
    assert [r["name"] for r in records] == ["sales", "users"]
    for record, expected in zip(records, datasets.itertuples(), strict=True):
        assert list(record) == DATASET_COLUMNS
        assert iso(record["updated_at"]) == expected.updated_at and iso(record["created_at"]) == expected.created_at
        assert (record["latest_version"], record["versions"], record["rows"], record["columns"]) == (
            expected.latest_version, expected.versions, expected.rows, expected.columns,
        )
    assert records[0]["tags"] == {"team": "bi", "n": 2} and records[0]["description"] == "Q3"

    code, out, _ = cli("--url", db_url, "versions", "sales", "--json")
    versions = hub.versions("sales")
    records = parse(out)
    assert code == 0 and [r["version"] for r in records] == [1, 2]
    for record, expected in zip(records, versions.itertuples(), strict=True):
        assert list(record) == VERSION_COLUMNS
        assert iso(record["created_at"]) == expected.created_at
        assert (record["content_hash"], record["task_id"], record["latest"]) == (expected.content_hash, expected.task_id, expected.latest)

    code, out, _ = cli("--url", db_url, "tasks", "--json")
    tasks = hub.tasks().set_index("id")
    records = {r["id"]: r for r in parse(out)}
    assert code == 0 and set(records) == set(tasks.index)
    for task_id, record in records.items():
        expected = tasks.loc[task_id]
        assert list(record) == TASK_COLUMNS
        assert iso(record["queued_at"]) == expected["queued_at"]
        assert record["status"] == expected["status"] and record["rows_done"] == expected["rows_done"]
    [failed] = [r for r in records.values() if r["status"] == "failed"]
    assert failed["dataset"] == "broken" and failed["version"] is None and FAILURE in failed["error"]
    assert all(r["error"] is None and isinstance(r["version"], int) for r in records.values() if r["status"] == "succeeded")


def test_json_of_empty_listings(cli, db_url, hub):
    assert cli("--url", db_url, "ls", "--json") == (0, "[]\n", "")
    assert cli("--url", db_url, "tasks", "--json") == (0, "[]\n", "")


def test_tables_show_local_time_to_the_second(cli, db_url, hub, local_zone):
    hub.push(frame(3), "sales").wait(timeout=60)

    def local(ts: pd.Timestamp) -> str:
        return ts.tz_convert(local_zone).strftime("%Y-%m-%d %H:%M:%S")

    [row] = table(cli("--url", db_url, "ls")[1])
    assert row["updated_at"] == local(hub.datasets()["updated_at"][0])
    created = hub.versions("sales")["created_at"][0]
    assert local(created) in cli("--url", db_url, "versions", "sales")[1]
    assert local(hub.tasks()["queued_at"][0]) in cli("--url", db_url, "tasks")[1]
    assert f"created {local(created)} IST by " in cli("--url", db_url, "show", "sales")[1]
    for command in (["ls"], ["versions", "sales"], ["tasks"]):
        assert "+00:00" not in cli("--url", db_url, *command)[1]


def test_a_real_process_shows_times_in_its_local_zone(db_url, hub):
    hub.push(frame(3), "sales").wait(timeout=60)
    queued = hub.tasks()["queued_at"][0]
    done = subprocess.run(
        [sys.executable, "-m", "dsnotebook", "tasks", "--url", db_url],
        check=False, capture_output=True, text=True, timeout=120, env={**os.environ, "TZ": LOCAL_TZ},
    )
    assert done.returncode == 0, done.stderr
    assert queued.tz_convert(LOCAL).strftime("%Y-%m-%d %H:%M:%S") in done.stdout


def test_tasks_table_keeps_the_error_column_readable(cli, db_url, hub):
    ok = hub.push(frame(3), "sales")
    ok.wait(timeout=60)
    fail_an_upload(hub, "broken")
    failed_id = hub.tasks(status="failed")["id"][0]

    code, out, _ = cli("--url", db_url, "tasks")
    assert code == 0
    for missing in ("None", "NaN", "<NA>", "NaT", "nan"):
        assert missing not in out.split()
    rows = {row["id"]: row for row in table(out)}
    assert len(out.splitlines()) == 3  # a heading and one line per upload, though the error spans two
    assert list(rows[ok.id[:8]]) == ["id", "dataset", "status", "rows_done", "rows_total", "attempts", "version", "queued_at", "error"]
    assert rows[ok.id[:8]]["error"] == "-" and rows[ok.id[:8]]["version"] == "1"
    broken = rows[failed_id[:8]]
    assert broken["status"] == "failed" and broken["version"] == "-"
    error = " ".join(hub.tasks(status="failed")["error"][0].splitlines())
    assert len(error) > 60
    assert broken["error"] == error[:59] + "…"


def test_ls_and_versions_show_missing_values_as_a_dash(cli, db_url, hub):
    hub.push(frame(3), "plain").wait(timeout=60)
    [row] = table(cli("--url", db_url, "ls")[1])
    assert row["name"] == "plain" and row["description"] == "-"
    [row] = table(cli("--url", db_url, "versions", "plain")[1])
    assert row["version"] == "1" and row["latest"] == "yes" and row["task_id"] != "-"
