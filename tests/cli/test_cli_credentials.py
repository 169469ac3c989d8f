"""A password in ``--url`` is on the command line, which every user of the machine can read
(``ps``, ``/proc/<pid>/cmdline``): the CLI warns once on stderr and points to the safer ways,
and never prints the password itself."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy.engine import make_url

from dsnotebook.cli.app import PASSWORD_WARNING

PASSWORD = "hunter2-cli"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nowhere() -> str:
    """A PostgreSQL URL with a password, where nothing listens: commands fail at once."""
    return f"postgresql+asyncpg://me:{PASSWORD}@127.0.0.1:{closed_port()}/x"


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("dsnotebook: warning:")]


def test_the_warning_says_why_and_what_to_do_instead():
    assert PASSWORD_WARNING.startswith("dsnotebook: warning: the password in --url")
    for way in ("ps", "DSNOTEBOOK_URL", "~/.pgpass", "PGPASSFILE", "PGPASSWORD"):
        assert way in PASSWORD_WARNING
    assert "\n" not in PASSWORD_WARNING


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(["--url", "{pw}", "ls"], id="before-the-command"),
        pytest.param(["ls", "--url", "{pw}"], id="after-the-command"),
        pytest.param(["--url", "{pw}", "ls", "--url", "{pw}"], id="before-and-after"),
        pytest.param(["--url", "{pw}", "ls", "--url", "{sqlite}"], id="overridden-by-one-without"),
        pytest.param(["--url={query}", "ls"], id="as-a-query-parameter"),
        pytest.param(["--ur", "{pw}", "tasks"], id="abbreviated-option"),
    ],
)
def test_a_password_on_the_command_line_is_warned_about_once(cli, nowhere, url, where):
    query = nowhere.replace(f"me:{PASSWORD}@", "me@") + f"?password={PASSWORD}"
    argv = [a.format(pw=nowhere, sqlite=url, query=query) for a in where]
    _, out, err = cli(*argv)
    assert warnings_in(err) == [PASSWORD_WARNING]
    assert err.startswith(PASSWORD_WARNING + "\n")
    assert PASSWORD not in out + err


@pytest.mark.postgresql_only
def test_the_command_still_runs_after_the_warning(cli, db_url, csv_file):
    # The shared test server trusts every connection, so any password lets the command in.
    with_password = make_url(db_url).set(password=PASSWORD).render_as_string(hide_password=False)
    code, out, err = cli("--url", with_password, "push", str(csv_file), "--name", "sales")
    assert code == 0, err
    assert warnings_in(err) == [PASSWORD_WARNING]
    code, out, err = cli("--url", with_password, "ls")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["sales"], out
    assert err == PASSWORD_WARNING + "\n"
    assert PASSWORD not in out + err


def test_no_warning_without_a_password(cli, url, nowhere):
    code, _, err = cli("--url", url, "push", "--help")
    assert code == 0 and err == ""
    without = nowhere.replace(f"me:{PASSWORD}@", "me@")
    code, _, err = cli("--url", without, "ls")
    assert code == 2 and warnings_in(err) == [], err
    code, _, err = cli("--url", nowhere.replace(f":{PASSWORD}@", ":@"), "ls")
    assert warnings_in(err) == [], err  # an empty password is no password


def test_no_warning_when_the_password_comes_from_dsnotebook_url(cli, nowhere, monkeypatch):
    monkeypatch.setenv("DSNOTEBOOK_URL", nowhere)
    code, out, err = cli("ls")
    assert code == 2
    assert warnings_in(err) == []
    assert err.startswith("dsnotebook: error: cannot connect to postgresql+asyncpg://me:***@127.0.0.1:")
    assert PASSWORD not in out + err


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        pytest.param(["ls", "{pw}"], "unrecognized arguments: postgresql+asyncpg://me:***@127.0.0.1:", id="url-without-option"),
        pytest.param(["{pw}"], "invalid choice: 'postgresql+asyncpg://me:***@127.0.0.1:", id="url-as-command"),
        pytest.param(["--url", "postgresql+asyncpg:/me:{password}@db/x", "ls"], "'postgresql+asyncpg:/me:***@db/x' is not a database URL", id="malformed-url"),
    ],
)
def test_error_lines_mask_passwords(cli, nowhere, argv, shown):
    code, out, err = cli(*[a.format(pw=nowhere, password=PASSWORD) for a in argv])
    assert code == 2
    assert shown in err
    assert PASSWORD not in out + err


def test_help_names_the_safer_ways(cli):
    for argv in (["--help"], ["ls", "--help"]):
        _, out, _ = cli(*argv)
        flat = " ".join(out.split())
        assert "Leave the password out" in flat
        for way in ("DSNOTEBOOK_URL", "~/.pgpass", "PGPASSFILE", "PGPASSWORD"):
            assert way in flat
