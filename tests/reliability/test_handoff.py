"""SQLite's Arrow path under load: ADBC links its own SQLite, so it only ever opens private
hand-off files, never the hub's database (two SQLite copies in one process that open one file
break its locks and lose committed rows). Here pushes and pulls run in this process while other
processes read, write and check the same database file, and every check says ``ok`` and every
row is where it should be."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from frametools import STR, assert_identical

import dsnotebook as dsn
from dsnotebook.store.backends import _arrow_io

pytestmark = pytest.mark.sqlite_only

# Runs until the stop file appears. "reader": pulls every dataset it finds and checks each pull
# has the rows the catalog says; "writer": pushes and appends frames of its own; "checker": runs
# PRAGMA integrity_check through plain sqlite3. Creates "<stop>.<role>" after its first round.
# Prints one line: its name and how often it went round, or the first problem.
_OTHER = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    import numpy as np, pandas as pd
    import dsnotebook as dsn

    role, url, path, stop = sys.argv[1:5]
    rounds = 0
    if role == "checker":
        while not os.path.exists(stop):
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            result = con.execute("PRAGMA integrity_check").fetchall()
            con.close()
            if result != [("ok",)]:
                print(f"checker: integrity_check said {result}", flush=True)
                sys.exit(1)
            rounds += 1
            if rounds == 1:
                open(f"{stop}.{role}", "w").close()
            time.sleep(0.02)
    else:
        hub = dsn.connect(url)
        while not os.path.exists(stop):
            if role == "reader":
                for name in hub.datasets()["name"]:
                    for version, rows in hub.versions(name)[["version", "rows"]].itertuples(index=False):
                        pulled = hub.pull(name, version=int(version))
                        if len(pulled) != rows:
                            print(f"reader: {name} v{version} pulled {len(pulled)} of {rows} rows", flush=True)
                            sys.exit(1)
            else:
                frame = pd.DataFrame({"x": np.arange(20_000) + rounds, "s": [f"w{rounds}-{i}" for i in range(20_000)]})
                hub.push(frame, f"other-{rounds % 2}", if_exists="append", chunk_size=4_000).wait(timeout=300)
            rounds += 1
            if rounds == 1:
                open(f"{stop}.{role}", "w").close()
        hub.close()
    print(f"{role}: {rounds}", flush=True)
    """
)


def _frame(i: int, n: int = 120_000) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    ints = pd.array(rng.integers(0, 100, n), dtype="Int64")
    ints[rng.random(n) < 0.1] = pd.NA
    return pd.DataFrame(
        {
            "i": np.arange(n) + i,
            "f": rng.normal(size=n),
            "s": pd.array([f"v{i}-{k % 997}" for k in range(n)], dtype=STR),
            "t": pd.date_range("2020-01-01", periods=n, freq="s"),
            "n": ints,
        }
    )


def test_pushes_and_pulls_beside_other_processes_keep_the_file_intact(db_url, tmp_path):
    path = db_url.split("///", 1)[1]
    stop = tmp_path / "stop"
    with dsn.connect(db_url) as hub:
        hub.push(_frame(0, 1_000), "main-seed").wait(timeout=60)
        others = [
            subprocess.Popen(
                [sys.executable, "-c", _OTHER, role, db_url, path, str(stop)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for role in ("reader", "writer", "checker")
        ]
        try:
            frames = {f"main-{i}": _frame(i) for i in range(6)}
            # Pulls in this process too, while the uploads run: both paths use hand-off files.
            pulled: list[int] = []
            done = threading.Event()

            def pull_meanwhile() -> None:
                while not done.is_set():
                    pulled.append(len(hub.pull("main-seed")))

            puller = threading.Thread(target=pull_meanwhile)
            puller.start()
            try:
                tasks = [hub.push(df, name, chunk_size=20_000) for name, df in frames.items()]
                tasks.append(hub.push(frames["main-0"], "main-0", if_exists="append", chunk_size=20_000))
                for task in tasks:
                    task.wait(timeout=600)
            finally:
                done.set()
                puller.join()
            assert pulled and set(pulled) == {1_000}
            # On a loaded machine the uploads may end before a process has started: each goes
            # round at least once before it is stopped.
            started = [Path(f"{stop}.{role}") for role in ("reader", "writer", "checker")]
            deadline = time.monotonic() + 300
            while not all(p.exists() for p in started) and all(o.poll() is None for o in others):
                assert time.monotonic() < deadline, f"not every process went round in 300 s: {[p.name for p in started if not p.exists()]}"
                time.sleep(0.05)
            stop.touch()
            reports = []
            for other in others:
                out, err = other.communicate(timeout=300)
                assert other.returncode == 0, out + err
                reports.append(out.strip().splitlines()[-1])
        finally:
            stop.touch()
            for other in others:
                if other.poll() is None:
                    other.kill()
                    other.wait()
        # Each process went round at least once beside the uploads.
        assert [r.split(":")[0] for r in reports] == ["reader", "writer", "checker"]
        assert all(int(r.split(": ")[1]) >= 1 for r in reports), reports
        for name, df in frames.items():
            expected = pd.concat([df, df], ignore_index=True) if name == "main-0" else df
            assert_identical(hub.pull(name), expected)
        for name in hub.datasets()["name"]:
            if name.startswith("other-"):
                pulled_other = hub.pull(name)
                assert pulled_other["s"].is_unique
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()
    # Every hand-off file is gone once its chunk or read is done.
    assert list(Path(_arrow_io.handoff_dir()).iterdir()) == []


def test_adbc_only_ever_opens_private_files(db_url):
    """The files ADBC opens live in this process's private directory, never beside the database."""
    directory = Path(_arrow_io.handoff_dir())
    assert directory.stat().st_mode & 0o777 == 0o700
    path = Path(_arrow_io.new_handoff_path("probe"))
    try:
        assert path.parent == directory and path.stat().st_mode & 0o777 == 0o600
        assert Path(db_url.split("///", 1)[1]).resolve().parent != directory
    finally:
        _arrow_io.remove_handoff(str(path))
    with dsn.connect(db_url) as hub:
        hub.push(_frame(1, 5_000), "d", chunk_size=1_000).wait(timeout=60)
        assert_identical(hub.pull("d"), _frame(1, 5_000))
        # While the hub is open, this process holds the database file open only through its
        # aiosqlite connections: no descriptor of it belongs to anything else.
        fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if _readable(fd)]
        assert not any(f.startswith(str(directory)) for f in fds)
    time.sleep(0)  # nothing left to wait for: every hand-off was closed by the call that used it


def _readable(fd: str) -> bool:
    try:
        os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return True
