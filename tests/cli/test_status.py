"""``dsnotebook status``: the table, ``--json`` and ``--watch``, against a real hub on a temporary database."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import make_url

import dsnotebook as dsn

FIELDS = {
    "taken_at",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "rows_per_s",
    "queued_bytes",
    "loop_lag_p50_s",
    "loop_lag_p99_s",
    "rss_bytes",
    "cpu_percent",
    "memory_limit_bytes",
    "database_bytes",
    "tables_bytes",
    "staging_bytes",
    "free_disk_bytes",
    "memory_state",
    "disk_state",
}
UPLOAD_COUNTS = ("queued", "running", "succeeded", "failed", "cancelled")
SIZE = r"(\d+ bytes|\d+\.\d [KMGT]B)"


def status_json(cli, url: str) -> dict:
    code, out, err = cli("--url", url, "status", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 1  # one object, one line
    return json.loads(out)


def big_csv(tmp_path: Path, rows: int = 50_000) -> Path:
    path = tmp_path / "big.csv"
    pd.DataFrame({"n": range(rows), "x": [i / 7 for i in range(rows)], "s": [f"row {i}" for i in range(rows)]}).to_csv(path, index=False)
    return path


def test_status_prints_a_short_table(cli, url, csv_file):
    assert cli("--url", url, "push", str(csv_file), "--name", "sales")[0] == 0
    code, out, err = cli("--url", url, "status")
    assert code == 0 and err == ""
    heading, *rows = out.splitlines()
    # The time is local, to the second, with the zone's name.
    assert re.fullmatch(rf"dsnotebook status of {re.escape(url)} at \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \S+", heading), heading
    table = dict(re.match(r"(\S+(?: lag)?)\s+(.*)", row).groups() for row in rows)
    assert list(table) == ["uploads", "writing", "loop lag", "memory", "database", "disk"]
    # A fresh process has no uploads of its own: the database's figures are the interesting ones.
    assert table["uploads"] == "0 queued · 0 running · 0 succeeded · 0 failed · 0 cancelled"
    assert table["writing"] == "0 rows/s · 0 bytes still to write"
    assert re.fullmatch(rf"(ok|WARN|CRITICAL): RSS {SIZE} of {SIZE} \(\d+\.\d%\) · CPU \d+\.\d%", table["memory"])
    assert re.fullmatch(rf"{SIZE} · staging 0 bytes", table["database"])
    assert re.fullmatch(rf"ok: {SIZE} free", table["disk"])


def test_status_json_is_one_object_of_the_hubs_figures(cli, url, csv_file):
    cli("--url", url, "push", str(csv_file), "--name", "sales")
    data = status_json(cli, url)
    assert set(data) == FIELDS
    taken_at = datetime.fromisoformat(data["taken_at"])
    assert taken_at.utcoffset() == timedelta(0)
    assert all(data[name] == 0 for name in UPLOAD_COUNTS)
    assert data["rows_per_s"] == 0 and data["queued_bytes"] == 0 and data["staging_bytes"] == 0
    assert 0 < data["rss_bytes"] <= data["memory_limit_bytes"]
    assert data["database_bytes"] > 0 and data["free_disk_bytes"] > 0
    assert data["tables_bytes"] is None  # a PostgreSQL figure
    assert data["memory_state"] in ("ok", "warn", "critical") and data["disk_state"] == "ok"


def test_status_json_database_bytes_grow_with_a_push(cli, url, tmp_path):
    # The catalog is created first, so that both measurements open an existing database.
    dsn.connect(url).close()
    before = status_json(cli, url)["database_bytes"]
    path = big_csv(tmp_path)
    assert cli("--url", url, "push", str(path), "--name", "big")[0] == 0
    after = status_json(cli, url)["database_bytes"]
    # 50,000 rows of three columns take far more than whatever the write-ahead log holds at open.
    assert after - before > path.stat().st_size // 4, (before, after)


def test_status_json_on_each_backend(cli, db_url, backend):
    dsn.connect(db_url).close()  # status reads a database; it never creates one
    data = status_json(cli, db_url)
    assert set(data) == FIELDS and data["database_bytes"] > 0
    if backend == "postgresql":
        assert data["free_disk_bytes"] is None and data["tables_bytes"] >= 0
    else:
        assert data["free_disk_bytes"] > 0 and data["tables_bytes"] is None


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param("soon", id="word"),
        pytest.param("", id="empty"),
        pytest.param("0", id="zero"),
        pytest.param("-1", id="negative"),
        pytest.param("0.01", id="below-the-minimum"),
        pytest.param("nan", id="nan"),
        pytest.param("inf", id="infinite"),
    ],
)
def test_status_watch_rejects_a_bad_interval_before_doing_anything(cli, url, seconds):
    code, out, err = cli("--url", url, "status", "--watch", seconds)
    assert code == 2 and out == ""
    assert err == f"dsnotebook: error: --watch: expected a number of seconds, at least 0.1, got {seconds!r}\n"
    assert not Path(make_url(url).database).exists()  # the database was not even opened


def _watch(url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dsnotebook", "--url", url, "status", "--json", "--watch", "0.1", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_status_watch_reprints_until_ctrl_c_and_exits_quietly(url):
    dsn.connect(url).close()
    with _watch(url) as proc:
        try:
            first, second = json.loads(proc.stdout.readline()), json.loads(proc.stdout.readline())
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert set(first) == set(second) == FIELDS
    assert datetime.fromisoformat(second["taken_at"]) > datetime.fromisoformat(first["taken_at"])
    assert proc.returncode == 0 and err == ""


def test_status_watch_stops_quietly_when_its_reader_goes_away(url):
    dsn.connect(url).close()
    with _watch(url) as proc:
        try:
            line = proc.stdout.readline()
            proc.stdout.close()  # as `| head -1` does
            err = proc.stderr.read()
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert set(json.loads(line)) == FIELDS
    assert proc.returncode == 1 and err == ""
