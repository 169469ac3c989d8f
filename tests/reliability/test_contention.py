"""Two processes writing one SQLite file at once: retries with backoff absorb the lock, every
push ends succeeded or failed with a clear error, nothing hangs, and the attempts are on record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import dsnotebook as dsn

CONTENDER = str(Path(__file__).with_name("contender.py"))


@pytest.mark.sqlite_only
def test_two_processes_pushing_to_one_file(db_url, tmp_path, backend):
    # No busy wait at all: every overlap of the two writers becomes "database is locked" at once,
    # so the retries, not SQLite's busy handler, must absorb it.
    url = f"{db_url}?timeout=0"
    with dsn.connect(db_url):
        pass  # create the file and the catalog first
    start = tmp_path / "start"
    children = [
        subprocess.Popen([sys.executable, CONTENDER, url, tag, str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    for child in children:  # both are connected before either pushes
        assert child.stdout.readline().strip() == "ready"
    start.touch()
    outcomes, retries = [], 0
    for child in children:
        out, err = child.communicate(timeout=600)  # a hang fails here
        assert child.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        outcomes += report["outcomes"]
        retries += report["retries"]
    assert len(outcomes) == 20
    for outcome in outcomes:
        assert outcome["status"] in ("succeeded", "failed"), outcome
        if outcome["status"] == "failed":
            assert "database is locked" in outcome["error"], outcome
    with dsn.connect(db_url) as hub:
        tasks = hub.tasks()
        assert not tasks["status"].isin(["queued", "running"]).any()
        succeeded = tasks[tasks["status"] == "succeeded"]
        assert len(succeeded) == sum(o["status"] == "succeeded" for o in outcomes)
        # The locks were met and retried (while queueing, or within an upload), and each upload's
        # attempts, retries included, are on record as its handle counted them.
        assert retries > 0
        on_record = tasks.set_index("id")["attempts"]
        for outcome in outcomes:
            if outcome["id"] is not None:
                assert on_record[outcome["id"]] == outcome["attempts"], outcome
        # Every dataset's versions are gap-free, and its rows are those of its successful pushes.
        for name in hub.datasets()["name"]:
            versions = hub.versions(name)
            assert versions["version"].tolist() == list(range(1, len(versions) + 1))
            assert len(hub.pull(name)) == 30_000 * (succeeded["dataset"] == name).sum()
    print(f"\n{len(succeeded)} of 20 pushes succeeded; {retries} lock retries; attempts {sorted(tasks['attempts'].tolist())}")
