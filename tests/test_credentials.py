"""A PostgreSQL URL without a password takes it where libpq looks: ``PGPASSWORD``, then the
password file (the URL's ``?passfile=``, else ``PGPASSFILE``, else ``~/.pgpass``).

Both of dsnotebook's PostgreSQL drivers must find it: asyncpg, for the catalog and for the rows of
frames with NUMERIC columns (its COPY), and libpq, inside ADBC, for the bulk rows, on connections
it opens later in the hub's I/O threads from the same process environment.

How a passing test proves the password was used: the shared test server trusts every connection,
so these tests start a private server (``tests/pgserver.py``) whose TCP connections must pass
SCRAM-SHA-256 authentication (checked below through ``pg_hba_file_rules``). A connect there
succeeds only when the client sent the role's password, which each test puts in one place only.
Each round trip also counts the connections the bulk path opened and the COPYs asyncpg ran, so
both drivers are known to have logged in. And the same URL is refused with no password anywhere,
or with a wrong one, so the successes are not vacuous.
"""

from __future__ import annotations

import asyncio
import decimal
import secrets
from pathlib import Path

import adbc_driver_manager
import asyncpg
import pandas as pd
import pytest
from pgserver import PasswordServer, require_password_server
from sqlalchemy.engine import make_url

import dsnotebook as dsn
from dsnotebook.errors import ConfigError
from dsnotebook.store.backends import _arrow_io

WRONG = "not-the-password"


@pytest.fixture(scope="session")
def server():
    with require_password_server() as s:
        yield s


@pytest.fixture(autouse=True)
def no_password_anywhere(monkeypatch, _isolated_home):
    """No password from the environment of the test run; HOME is a fresh directory without a .pgpass."""
    for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE", "PGUSER", "PGHOST", "PGPORT", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)
    assert not (_isolated_home / ".pgpass").exists()
    return _isolated_home


class Drivers:
    """Counts the logins of the bulk path (ADBC's libpq) and asyncpg's COPYs."""

    def __init__(self, monkeypatch) -> None:
        self.libpq_connects = 0
        self.asyncpg_copies = 0
        connect = _arrow_io.pg_connect
        copy = asyncpg.Connection.copy_records_to_table

        def counted_connect(uri):
            conn = connect(uri)
            self.libpq_connects += 1
            return conn

        async def counted_copy(conn, *args, **kwargs):
            result = await copy(conn, *args, **kwargs)
            self.asyncpg_copies += 1
            return result

        monkeypatch.setattr(_arrow_io, "pg_connect", counted_connect)
        monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", counted_copy)


@pytest.fixture
def drivers(monkeypatch) -> Drivers:
    return Drivers(monkeypatch)


def write_passfile(path: Path, line: str, mode: int = 0o600) -> Path:
    path.write_text(line)
    path.chmod(mode)
    return path


def round_trip(url: str, drivers: Drivers) -> None:
    """Connect, push one frame through each bulk path, and pull both back identical."""
    token = secrets.token_hex(4)
    bulk = pd.DataFrame({"n": [1, 2, 3], "x": [0.5, 1.5, -2.0], "s": ["a", token, "c"]})
    numeric = pd.DataFrame({"d": [decimal.Decimal("1.50"), decimal.Decimal(int(token, 16))]})
    with dsn.connect(url) as hub:
        before = drivers.libpq_connects
        hub.push(bulk, f"bulk {token}").wait(timeout=60)
        pd.testing.assert_frame_equal(hub.pull(f"bulk {token}"), bulk)
        # The bulk rows went in and came out through libpq's own logins.
        assert drivers.libpq_connects >= before + 2
        copies = drivers.asyncpg_copies
        hub.push(numeric, f"numeric {token}").wait(timeout=60)
        pd.testing.assert_frame_equal(hub.pull(f"numeric {token}"), numeric)
        # NUMERIC values went through asyncpg's COPY.
        assert drivers.asyncpg_copies == copies + 1


def libpq_connects(url: str) -> bool:
    """Whether libpq, as the bulk path calls it, logs in with ``url`` and the environment."""
    try:
        conn = _arrow_io.pg_connect(_arrow_io.pg_uri(make_url(url)))
    except adbc_driver_manager.Error:
        return False
    conn.close()
    return True


def refused(url: str) -> str:
    """The message of the ConfigError that connecting with ``url`` raises."""
    with pytest.raises(ConfigError) as err:
        dsn.connect(url)
    return str(err.value)


def test_the_private_server_wants_a_password_on_every_tcp_connection(server: PasswordServer, drivers):
    rules = asyncio.run(server.admin_rows("SELECT type, auth_method FROM pg_hba_file_rules WHERE error IS NULL"))
    assert {method for kind, method in rules if kind == "host"} == {"scram-sha-256"}
    assert ("host", "trust") not in rules
    # So without the password, or with a wrong one, both drivers are turned away...
    message = refused(server.url())
    assert "password" in message and f"{server.host}:{server.port}" in message
    assert not libpq_connects(server.url())
    assert "password authentication failed" in refused(server.url(password=WRONG))
    assert not libpq_connects(server.url(password=WRONG))
    # ...and with it in the URL, both get in.
    round_trip(server.url(password=server.password), drivers)


def test_a_password_from_pgpassword(server, drivers, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", server.password)
    assert libpq_connects(server.url())
    round_trip(server.url(), drivers)


def test_a_password_from_pgpass_in_the_home_directory(server, drivers, no_password_anywhere):
    write_passfile(no_password_anywhere / ".pgpass", server.pgpass_line())
    assert libpq_connects(server.url())
    round_trip(server.url(), drivers)


def test_a_password_file_named_by_pgpassfile(server, drivers, monkeypatch, tmp_path):
    monkeypatch.setenv("PGPASSFILE", str(write_passfile(tmp_path / "passwords", server.pgpass_line())))
    assert libpq_connects(server.url())
    round_trip(server.url(), drivers)


def test_a_password_file_named_in_the_url(server, drivers, tmp_path):
    passfile = write_passfile(tmp_path / "passwords", server.pgpass_line())
    url = server.url(query=f"?passfile={passfile}")
    assert libpq_connects(url)
    round_trip(url, drivers)


def test_a_password_file_line_may_use_wildcards_and_escapes(server, drivers, no_password_anywhere):
    lines = (
        "# a comment, then a line for another role\n"
        f"*:*:*:someone_else:{WRONG}\n"
        f"{server.host}:*:*:{server.user}:{server.password}\n"
    )
    write_passfile(no_password_anywhere / ".pgpass", lines)
    round_trip(server.url(), drivers)


def test_a_malformed_password_file_line_is_a_config_error(server, no_password_anywhere):
    # libpq skips a line of fewer than five fields; asyncpg cannot read the file at all. Either
    # way the connect fails, and it says so as a ConfigError, not as the driver's ValueError.
    write_passfile(no_password_anywhere / ".pgpass", f"{server.host}:{server.password}\n")
    with pytest.raises(dsn.ConfigError, match="cannot connect to") as caught:
        dsn.connect(server.url())
    assert server.password not in str(caught.value)


def test_a_password_file_others_can_read_is_ignored(server, no_password_anywhere):
    # libpq ignores such a file (and says so on stderr); asyncpg too, with a UserWarning.
    write_passfile(no_password_anywhere / ".pgpass", server.pgpass_line(), mode=0o640)
    assert not libpq_connects(server.url())
    with pytest.warns(UserWarning, match="group or world access"):
        refused(server.url())


# Where the password is, and whether the connect succeeds: libpq's order is the URL's password,
# then PGPASSWORD, then the password file (the URL's passfile=, else PGPASSFILE, else ~/.pgpass).
PRECEDENCE = [
    pytest.param({"url": True, "PGPASSWORD": False, "~/.pgpass": False}, True, id="url-over-pgpassword"),
    pytest.param({"url": False, "PGPASSWORD": True}, False, id="a-wrong-url-password-is-not-replaced"),
    pytest.param({"PGPASSWORD": True, "~/.pgpass": False}, True, id="pgpassword-over-pgpass"),
    pytest.param({"PGPASSWORD": False, "~/.pgpass": True}, False, id="a-wrong-pgpassword-is-not-replaced"),
    pytest.param({"PGPASSFILE": True, "~/.pgpass": False}, True, id="pgpassfile-over-home"),
    pytest.param({"PGPASSFILE": False, "~/.pgpass": True}, False, id="pgpassfile-replaces-home"),
    pytest.param({"passfile=": True, "PGPASSFILE": False}, True, id="url-passfile-over-pgpassfile"),
    pytest.param({"passfile=": False, "PGPASSFILE": True}, False, id="url-passfile-replaces-pgpassfile"),
]


@pytest.mark.parametrize(("where", "connects"), PRECEDENCE)
def test_which_password_wins_is_libpqs_order(server, drivers, monkeypatch, tmp_path, no_password_anywhere, where, connects):
    def password(right: bool) -> str:
        return server.password if right else WRONG

    query = ""
    url_password = password(where["url"]) if "url" in where else None
    if "PGPASSWORD" in where:
        monkeypatch.setenv("PGPASSWORD", password(where["PGPASSWORD"]))
    if "~/.pgpass" in where:
        write_passfile(no_password_anywhere / ".pgpass", server.pgpass_line(password(where["~/.pgpass"])))
    if "PGPASSFILE" in where:
        monkeypatch.setenv("PGPASSFILE", str(write_passfile(tmp_path / "env-passfile", server.pgpass_line(password(where["PGPASSFILE"])))))
    if "passfile=" in where:
        query = f"?passfile={write_passfile(tmp_path / 'url-passfile', server.pgpass_line(password(where['passfile='])))}"
    url = server.url(password=url_password, query=query)

    assert libpq_connects(url) is connects
    if connects:
        round_trip(url, drivers)
    else:
        assert "password authentication failed" in refused(url)


def test_the_environment_is_read_when_each_bulk_connection_opens(server, drivers, monkeypatch):
    # ADBC opens its connections later than the hub, in its I/O threads: what it reads is the
    # process environment of that moment.
    monkeypatch.setenv("PGPASSWORD", server.password)
    with dsn.connect(server.url()) as hub:
        monkeypatch.setenv("PGPASSWORD", WRONG)
        with pytest.raises(dsn.UploadError, match="password authentication failed"):
            hub.push(pd.DataFrame({"n": [1, 2]}), f"late {secrets.token_hex(4)}").wait(timeout=60)


def test_a_password_given_as_a_query_parameter(server, drivers):
    # libpq and asyncpg both take ?password= (and prefer it to one before the host).
    url = server.url(password=WRONG, query=f"?password={server.password}")
    assert libpq_connects(url)
    round_trip(url, drivers)
