"""Who can read a SQLite store: the permission bits of the directory, the database file and its
``-wal`` and ``-shm`` files, on real files after real pushes.

The default store (``~/.dsnotebook``, under the test's private HOME) is created private and
tightened at connect; a path the user names is created private and otherwise left as it is;
``file_mode`` and ``DSNOTEBOOK_UMASK`` ask for sharing; bad values are refused before anything
touches the disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from hubtools import file_mode as mode
from hubtools import usual_umask

import dsnotebook as dsn
from dsnotebook.errors import ConfigError, ValidationError

pytestmark = pytest.mark.sqlite_only

FRAME = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
TIGHTENED = "tightened the default store"


def companions(db: Path) -> list[Path]:
    """The ``-wal`` and ``-shm`` files beside ``db``, which must both be there."""
    files = [db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    assert all(f.exists() for f in files), f"no -wal or -shm beside {db}: {sorted(os.listdir(db.parent))}"
    return files


def push_and_check(hub: dsn.Hub, db: Path, file_bits: int) -> None:
    """Push, then, while the hub still holds its connections (which keep the ``-wal`` and
    ``-shm`` files), check the bits of the database and of both."""
    hub.push(FRAME, "d").wait(timeout=60)
    assert {f.name: f"{mode(f):04o}" for f in [db, *companions(db)]} == {
        f.name: f"{file_bits:04o}" for f in [db, *companions(db)]
    }
    pd.testing.assert_frame_equal(hub.pull("d"), FRAME)


def tightened_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dsnotebook" and TIGHTENED in r.getMessage()]


@pytest.fixture(autouse=True)
def _umask() -> Iterator[None]:
    with usual_umask():
        yield


@pytest.fixture(autouse=True)
def _no_umask_setting(monkeypatch) -> None:
    monkeypatch.delenv("DSNOTEBOOK_UMASK", raising=False)


@pytest.fixture
def store(_isolated_home, monkeypatch) -> Path:
    """The default store's directory, ``~/.dsnotebook`` under the test's own HOME."""
    monkeypatch.delenv("DSNOTEBOOK_URL")
    directory = _isolated_home / ".dsnotebook"
    assert Path("~/.dsnotebook").expanduser() == directory
    return directory


def old_store(directory: Path, name: str = "datasets.db") -> Path:
    """A default store as dsnotebook made it before: a 0755 directory and a 0644 WAL database."""
    directory.mkdir()
    db = directory / name
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    assert (mode(directory), mode(db)) == (0o755, 0o644)
    return db


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


# -- the default store ------------------------------------------------------------------------------


def test_a_new_default_store_is_private(store, caplog):
    caplog.set_level(logging.INFO, logger="dsnotebook")
    with dsn.connect() as hub:
        db = store / "datasets.db"
        assert Path(hub.url.database) == db
        assert mode(store) == 0o700
        push_and_check(hub, db, 0o600)
    assert mode(store) == 0o700 and mode(db) == 0o600
    assert tightened_lines(caplog) == []


def test_an_open_default_store_is_tightened_at_connect(store, caplog):
    db = old_store(store)
    # Another connection (an older dsnotebook's, say) holds the database open, with its -wal and
    # -shm files as that made them.
    other = sqlite3.connect(db)
    try:
        other.execute("CREATE TABLE t (a)")
        other.execute("INSERT INTO t VALUES (1)")
        other.commit()
        wal, shm = companions(db)
        assert (mode(wal), mode(shm)) == (0o644, 0o644)
        caplog.set_level(logging.INFO, logger="dsnotebook")
        with dsn.connect() as hub:
            line = (
                f"{TIGHTENED}, which other users of this machine could open: {store} 0755 -> 0700, "
                f"{db} 0644 -> 0600, {wal} 0644 -> 0600, {shm} 0644 -> 0600"
            )
            assert tightened_lines(caplog) == [line]
            assert mode(store) == 0o700
            push_and_check(hub, db, 0o600)
        assert other.execute("SELECT a FROM t").fetchall() == [(1,)]
    finally:
        other.close()
    caplog.clear()
    with dsn.connect():
        pass
    assert tightened_lines(caplog) == []  # once private, it stays so without another line


@pytest.mark.parametrize(
    ("setting", "file_mode", "directory_bits", "file_bits"),
    [
        pytest.param(None, None, 0o700, 0o600, id="private"),
        pytest.param("027", None, 0o750, 0o640, id="umask-027"),
        pytest.param(None, 0o640, 0o750, 0o640, id="file_mode-0640"),
        pytest.param("022", None, 0o755, 0o644, id="umask-022-keeps-it"),
        pytest.param(None, 0o644, 0o755, 0o644, id="file_mode-0644-keeps-it"),
    ],
)
def test_an_existing_default_store_is_tightened_no_further_than_asked(store, monkeypatch, caplog, setting, file_mode, directory_bits, file_bits):
    db = old_store(store)
    if setting is not None:
        monkeypatch.setenv("DSNOTEBOOK_UMASK", setting)
    caplog.set_level(logging.INFO, logger="dsnotebook")
    with dsn.connect(file_mode=file_mode) as hub:
        assert mode(store) == directory_bits
        push_and_check(hub, db, file_bits)
    changed = directory_bits != 0o755
    assert len(tightened_lines(caplog)) == (1 if changed else 0)


def test_an_existing_private_default_store_is_not_loosened(store, caplog):
    store.mkdir(mode=0o700)
    db = store / "datasets.db"
    with dsn.connect(sqlite_url(db)):
        pass
    caplog.set_level(logging.INFO, logger="dsnotebook")
    with dsn.connect(file_mode=0o660) as hub:
        push_and_check(hub, db, 0o600)
    assert mode(store) == 0o700
    assert tightened_lines(caplog) == []


def test_any_database_in_the_default_directory_is_tightened(store, caplog):
    # A URL that names a file there (as `dsnotebook demo` does) is the default store too.
    db = old_store(store, "mine.db")
    caplog.set_level(logging.INFO, logger="dsnotebook")
    with dsn.connect(sqlite_url(db)) as hub:
        push_and_check(hub, db, 0o600)
    assert mode(store) == 0o700
    assert len(tightened_lines(caplog)) == 1


def test_a_default_directory_that_is_a_link_is_left_to_its_owner(store, tmp_path, caplog):
    team = tmp_path / "team"
    db = old_store(team)
    store.symlink_to(team)
    caplog.set_level(logging.INFO, logger="dsnotebook")
    with dsn.connect() as hub:
        push_and_check(hub, db, 0o644)
    assert mode(team) == 0o755
    assert tightened_lines(caplog) == []


# -- a path the user names ----------------------------------------------------------------------------


def test_a_named_path_is_created_private(tmp_path, caplog):
    parent_bits = mode(tmp_path)
    db = tmp_path / "new" / "deeper" / "data.db"
    caplog.set_level(logging.INFO, logger="dsnotebook")
    with dsn.connect(sqlite_url(db)) as hub:
        push_and_check(hub, db, 0o600)
    assert (mode(tmp_path / "new"), mode(db.parent)) == (0o700, 0o700)
    assert mode(tmp_path) == parent_bits
    assert tightened_lines(caplog) == []


@pytest.mark.parametrize(
    ("existing", "setting", "file_mode"),
    [
        pytest.param(0o644, None, None, id="0644-stays-open"),
        pytest.param(0o664, "077", None, id="0664-despite-umask-077"),
        pytest.param(0o600, None, 0o660, id="0600-not-loosened-by-file_mode"),
        pytest.param(0o600, "002", None, id="0600-not-loosened-by-umask-002"),
    ],
)
def test_an_existing_named_file_keeps_its_bits(tmp_path, monkeypatch, caplog, existing, setting, file_mode):
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o775)
    db = directory / "data.db"
    with dsn.connect(sqlite_url(db)):
        pass
    os.chmod(db, existing)
    if setting is not None:
        monkeypatch.setenv("DSNOTEBOOK_UMASK", setting)
    caplog.set_level(logging.INFO, logger="dsnotebook")
    with dsn.connect(sqlite_url(db), file_mode=file_mode) as hub:
        # SQLite gives the -wal and -shm files the bits of the database file.
        push_and_check(hub, db, existing)
    assert mode(directory) == 0o775
    assert tightened_lines(caplog) == []


@pytest.mark.parametrize("process_umask", [0o022, 0o077, 0o000], ids=["umask-022", "umask-077", "umask-000"])
def test_file_mode_shares_a_new_file_whatever_the_process_umask(tmp_path, process_umask):
    db = tmp_path / "team" / "data.db"
    os.umask(process_umask)
    with dsn.connect(sqlite_url(db), file_mode=0o640) as hub:
        push_and_check(hub, db, 0o640)
    assert mode(db.parent) == 0o750


@pytest.mark.parametrize(
    ("setting", "directory_bits", "file_bits"),
    [
        pytest.param("027", 0o750, 0o640, id="027"),
        pytest.param("0o027", 0o750, 0o640, id="0o027"),
        pytest.param(" 0007 ", 0o770, 0o660, id="0007-padded"),
        pytest.param("077", 0o700, 0o600, id="077"),
        pytest.param("", 0o700, 0o600, id="empty-is-unset"),
    ],
)
def test_DSNOTEBOOK_UMASK_sets_the_bits_of_new_files(tmp_path, monkeypatch, setting, directory_bits, file_bits):
    monkeypatch.setenv("DSNOTEBOOK_UMASK", setting)
    db = tmp_path / "team" / "data.db"
    with dsn.connect(sqlite_url(db)) as hub:
        push_and_check(hub, db, file_bits)
    assert mode(db.parent) == directory_bits


def test_file_mode_wins_over_DSNOTEBOOK_UMASK(tmp_path, monkeypatch):
    monkeypatch.setenv("DSNOTEBOOK_UMASK", "002")
    db = tmp_path / "data.db"
    with dsn.connect(sqlite_url(db), file_mode=0o600) as hub:
        push_and_check(hub, db, 0o600)


# -- refused values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        pytest.param(True, "True", id="bool"),
        pytest.param("0o640", "'0o640'", id="str"),
        pytest.param(640, "0o1200", id="decimal-640"),
        pytest.param(0o755, "0o755", id="execute"),
        pytest.param(0o400, "0o400", id="owner-cannot-write"),
        pytest.param(0o066, "0o66", id="owner-cannot-read"),
        pytest.param(-1, "-1", id="negative"),
        pytest.param(0o4600, "0o4600", id="setuid"),
        pytest.param(416.0, "416.0", id="float"),
    ],
)
def test_file_mode_must_be_bits_for_a_database_file(tmp_path, bad, shown):
    db = tmp_path / "dir" / "x.db"
    with pytest.raises(ValidationError) as caught:
        dsn.connect(sqlite_url(db), file_mode=bad)
    assert str(caught.value) == (
        "file_mode: expected the permission bits of a new database file, such as 0o600 (its owner "
        "alone, the default) or 0o640 (its group reads too): an int from 0o600 to 0o666 that gives "
        f"the owner read and write and nobody execute; got {shown}"
    )
    assert not db.parent.exists()


@pytest.mark.parametrize("hub_class", [dsn.connect, dsn.AsyncHub], ids=["connect", "AsyncHub"])
def test_file_mode_is_refused_on_postgresql_before_connecting(hub_class):
    # Nothing listens on port 1: the refusal comes before any connection is tried.
    with pytest.raises(ValidationError, match=r"^file_mode: applies to sqlite database files only; 'postgresql\+asyncpg://someone@127\.0\.0\.1:1/db' is a postgresql database"):
        hub_class("postgresql://someone@127.0.0.1:1/db", file_mode=0o640)


@pytest.mark.parametrize("setting", ["abc", "8", "0x27", "1777", "700", "0o-27", "27 7"])
def test_a_malformed_DSNOTEBOOK_UMASK_is_refused(tmp_path, monkeypatch, setting):
    monkeypatch.setenv("DSNOTEBOOK_UMASK", setting)
    db = tmp_path / "dir" / "x.db"
    with pytest.raises(ConfigError) as caught:
        dsn.connect(sqlite_url(db))
    assert str(caught.value) == (
        f"DSNOTEBOOK_UMASK: {setting!r} is not an octal umask that leaves the owner read, write and search; "
        "use for example DSNOTEBOOK_UMASK=027 (the group reads, others nothing) or unset it for private files"
    )
    assert not db.parent.exists()
