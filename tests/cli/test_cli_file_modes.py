"""The command line's default stores are private: ``dsnotebook demo`` creates ``~/.dsnotebook``
as 0700 and ``demo.db`` as 0600, and any command tightens a default store that others could read."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubtools import file_mode as mode
from hubtools import usual_umask


@pytest.fixture(autouse=True)
def _umask() -> Iterator[None]:
    with usual_umask():
        yield


@pytest.fixture
def store(_isolated_home, monkeypatch) -> Path:
    """``~/.dsnotebook`` under the test's own HOME, with no URL or umask set."""
    monkeypatch.delenv("DSNOTEBOOK_URL")
    monkeypatch.delenv("DSNOTEBOOK_UMASK", raising=False)
    return _isolated_home / ".dsnotebook"


def test_demo_creates_a_private_demo_database(cli, store):
    assert cli("demo", "--rows", "500")[0] == 0
    assert (mode(store), mode(store / "demo.db")) == (0o700, 0o600)


def test_a_command_tightens_a_default_store_others_could_read(cli, store, csv_file, monkeypatch, caplog):
    # A store made shared on purpose, then no longer asked to be.
    monkeypatch.setenv("DSNOTEBOOK_UMASK", "022")
    assert cli("push", str(csv_file), "--name", "sales")[0] == 0
    db = store / "datasets.db"
    assert (mode(store), mode(db)) == (0o755, 0o644)
    monkeypatch.delenv("DSNOTEBOOK_UMASK")
    caplog.set_level(logging.INFO, logger="dsnotebook")
    code, out, _ = cli("ls")
    assert code == 0 and "sales" in out
    assert (mode(store), mode(db)) == (0o700, 0o600)
    assert [r.getMessage() for r in caplog.records if "tightened the default store" in r.getMessage()] == [
        f"tightened the default store, which other users of this machine could open: {store} 0755 -> 0700, {db} 0644 -> 0600"
    ]
