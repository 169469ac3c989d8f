"""How the CLI takes --url and --version, and how it fails: one ``dsnotebook: error: ...`` line on
stderr, exit status 2, and no output or database before the arguments have been checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import make_url

import dsnotebook as dsn


def sqlite_file(url: str) -> Path:
    return Path(make_url(url).database)


def assert_one_error_line(code: int, out: str, err: str, expected: str) -> None:
    """The command failed as every command must: status 2, nothing on stdout, one line on stderr."""
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("dsnotebook: error: "), err
    assert expected in err, err


def names(table: str) -> list[str]:
    """The first column of a table printed by ``ls``."""
    return [line.split()[0] for line in table.splitlines()[1:]]


@pytest.fixture
def pushed(url, csv_file) -> str:
    """``url`` holding dataset 'sales' (3 rows, from ``csv_file``)."""
    with dsn.connect(url) as hub:
        hub.push(pd.read_csv(csv_file), "sales").wait(timeout=60)
    return url


# -- --url before or after the command ----------------------------------------------------------

COMMANDS = [
    pytest.param(["ls"], id="ls"),
    pytest.param(["versions", "sales"], id="versions"),
    pytest.param(["show", "sales"], id="show"),
    pytest.param(["pull", "sales", "-o", "{tmp}/out.csv"], id="pull"),
    pytest.param(["tasks"], id="tasks"),
    pytest.param(["rm", "sales", "--yes"], id="rm"),
    pytest.param(["cleanup"], id="cleanup"),
    pytest.param(["status"], id="status"),
    pytest.param(["push", "{csv}", "--name", "more"], id="push"),
]


@pytest.mark.parametrize("argv", COMMANDS)
def test_every_command_takes_url_after_its_name(cli, pushed, argv, tmp_path, csv_file):
    argv = [a.format(tmp=tmp_path, csv=csv_file) for a in argv]
    code, _, err = cli(*argv, "--url", pushed)
    assert code == 0, err


def test_a_url_after_the_command_wins_over_one_before_it_and_over_the_environment(cli, pushed, tmp_path, monkeypatch):
    other = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    dsn.connect(other).close()  # an empty database
    assert names(cli("--url", other, "ls", "--url", pushed)[1]) == ["sales"]
    assert cli("--url", pushed, "ls", "--url", other)[1].strip() == "no datasets"
    monkeypatch.setenv("DSNOTEBOOK_URL", other)
    assert names(cli("ls", "--url", pushed)[1]) == ["sales"]
    assert cli("ls")[1].strip() == "no datasets"


def test_version_prints_the_package_version(cli):
    assert cli("--version") == (0, f"dsnotebook {dsn.__version__}\n", "")


# -- errors: one line, status 2, before anything is printed or opened ---------------------------


def test_an_error_dsnotebook_reports_exits_with_2(cli, pushed):
    assert_one_error_line(*cli("--url", pushed, "show", "nope"), "dsnotebook: error: no dataset named 'nope'")
    assert_one_error_line(*cli("--url", pushed, "versions", "nope"), "no dataset named 'nope'")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["ls", "--bogus"], "unrecognized arguments: --bogus", id="unknown-option"),
        pytest.param(["frobnicate"], "invalid choice: 'frobnicate'", id="unknown-command"),
        pytest.param(["pull", "sales"], "the following arguments are required: -o/--output (see 'dsnotebook pull --help')", id="missing-option"),
        pytest.param([], "the following arguments are required: COMMAND (see 'dsnotebook --help')", id="no-command"),
    ],
)
def test_a_malformed_command_line_is_one_error_line(cli, url, argv, expected):
    assert_one_error_line(*cli("--url", url, *argv), expected)
    assert not sqlite_file(url).exists()


ROWS = "argument --rows: expected a number of rows"
VERSION = "argument --version: expected a version number, 1 or more"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["show", "sales", "--rows", "-1"], f"{ROWS}, 0 or more, got '-1'", id="show-negative-rows"),
        pytest.param(["show", "sales", "--rows", "many"], f"{ROWS}, 0 or more, got 'many'", id="show-rows-word"),
        pytest.param(["show", "sales", "--rows", str(2**63)], f"{ROWS}, at most {2**63 - 1}, got '{2**63}'", id="show-rows-beyond-64-bits"),
        pytest.param(["pull", "sales", "--version", "0", "-o", "{tmp}/x.csv"], f"{VERSION}, got '0'", id="pull-version-0"),
        pytest.param(["pull", "sales", "--version", "latest", "-o", "{tmp}/x.csv"], f"{VERSION}, got 'latest'", id="pull-version-word"),
        pytest.param(["rm", "sales", "--version", "-2", "--yes"], f"{VERSION}, got '-2'", id="rm-negative-version"),
        pytest.param(["tasks", "--limit", "0"], "argument --limit: expected a number of uploads, 1 or more, got '0'", id="tasks-limit-0"),
        pytest.param(["demo", "--rows", "0"], f"{ROWS}, 1 or more, got '0'", id="demo-rows-0"),
    ],
)
def test_a_bad_value_is_refused_before_anything_is_printed(cli, url, tmp_path, argv, expected):
    # No database is there: had the command opened it before checking its arguments, it would
    # have failed on that (or, for demo, created it).
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert_one_error_line(*cli("--url", url, *argv), expected)
    assert not sqlite_file(url).exists() and not (tmp_path / "x.csv").exists()


# -- pull: the output file is checked before the database is opened ----------------------------


def test_pull_into_a_missing_directory(cli, url, tmp_path):
    target = tmp_path / "missing_dir" / "x.csv"
    expected = f"dsnotebook: error: -o {target}: the directory '{target.parent}' does not exist\n"
    assert cli("--url", url, "pull", "x", "-o", str(target)) == (2, "", expected)
    assert not sqlite_file(url).exists()  # refused before the database was opened


def test_pull_onto_a_directory(cli, url, tmp_path):
    (tmp_path / "out").mkdir()
    code, out, err = cli("--url", url, "pull", "x", "-o", str(tmp_path / "out"))
    assert_one_error_line(code, out, err, f"-o {tmp_path / 'out'}: is a directory; give a file path ending in .csv, .feather, .parquet")
    assert not sqlite_file(url).exists()


def test_pull_below_a_file(cli, url, csv_file):
    code, out, err = cli("--url", url, "pull", "x", "-o", str(csv_file / "x.csv"))
    assert_one_error_line(code, out, err, f"the directory '{csv_file}' does not exist")


def test_pull_to_an_unknown_file_type(cli, url, tmp_path):
    code, out, err = cli("--url", url, "pull", "x", "-o", str(tmp_path / "x.xlsx"))
    assert_one_error_line(code, out, err, "x.xlsx: unknown file type '.xlsx'; use one of .csv, .feather, .parquet")


def test_pull_to_a_path_that_cannot_be_created(cli, url, tmp_path):
    # The name is a link to a file in a directory that does not exist: the checks on the name pass,
    # and only opening the file tells that it cannot be written.
    target = tmp_path / "x.csv"
    target.symlink_to(tmp_path / "gone" / "x.csv")
    code, out, err = cli("--url", url, "pull", "x", "-o", str(target))
    assert_one_error_line(code, out, err, f"-o {target}: cannot write there: No such file or directory")
    assert not sqlite_file(url).exists()


def test_pull_onto_a_full_disk_is_one_error_line(cli, pushed, tmp_path):
    # /dev/full accepts the open and fails every write with ENOSPC, as a disk that fills up does.
    target = tmp_path / "x.csv"
    target.symlink_to("/dev/full")
    code, out, err = cli("--url", pushed, "pull", "sales", "-o", str(target))
    assert_one_error_line(code, out, err, f"-o {target}: cannot write 'sales' as CSV: OSError: [Errno 28] No space left on device")


def test_pull_leaves_no_file_behind_when_the_dataset_is_missing(cli, pushed, tmp_path):
    assert_one_error_line(*cli("--url", pushed, "pull", "nope", "-o", str(tmp_path / "x.csv")), "no dataset named 'nope'")
    assert list(tmp_path.glob("x.*")) == []


def test_pull_keeps_an_existing_file_when_the_dataset_is_missing(cli, pushed, tmp_path):
    (tmp_path / "x.csv").write_text("kept\n")
    assert_one_error_line(*cli("--url", pushed, "pull", "nope", "-o", str(tmp_path / "x.csv")), "no dataset named 'nope'")
    assert (tmp_path / "x.csv").read_text() == "kept\n"


# -- read-only commands never create a database -------------------------------------------------

READ_ONLY = [
    pytest.param(["ls"], id="ls"),
    pytest.param(["versions", "sales"], id="versions"),
    pytest.param(["show", "sales"], id="show"),
    pytest.param(["pull", "sales", "-o", "{tmp}/out.csv"], id="pull"),
    pytest.param(["tasks"], id="tasks"),
    pytest.param(["status"], id="status"),
    pytest.param(["rm", "sales", "--yes"], id="rm"),
    pytest.param(["cleanup"], id="cleanup"),
]


@pytest.mark.parametrize("argv", READ_ONLY)
def test_commands_other_than_push_and_demo_refuse_a_missing_database(cli, url, tmp_path, argv):
    argv = [a.format(tmp=tmp_path) for a in argv]
    path = sqlite_file(url)
    code, out, err = cli("--url", url, *argv)
    assert_one_error_line(code, out, err, str(path))
    assert not path.exists() and not (tmp_path / "out.csv").exists()


def test_push_creates_the_database(cli, url, csv_file):
    assert cli("--url", url, "push", str(csv_file), "--name", "sales")[0] == 0
    assert names(cli("--url", url, "ls")[1]) == ["sales"]


def test_the_default_database_is_not_created_by_ls(cli, monkeypatch, _isolated_home):
    monkeypatch.delenv("DSNOTEBOOK_URL")
    default = _isolated_home / ".dsnotebook" / "datasets.db"
    code, out, err = cli("ls")
    assert_one_error_line(code, out, err, str(default))
    assert not default.exists()


# -- the same through a real process ------------------------------------------------------------


def run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dsnotebook", *argv],
        check=False, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )


def test_a_real_process_prints_one_line_and_exits_with_2(pushed, tmp_path):
    target = tmp_path / "missing_dir" / "x.csv"
    done = run("pull", "sales", "-o", str(target), "--url", pushed)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"dsnotebook: error: -o {target}: the directory '{target.parent}' does not exist\n"
    done = run("show", "sales", "--url", pushed, "--rows", "-1")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "dsnotebook: error: argument --rows: expected a number of rows, 0 or more, got '-1' (see 'dsnotebook show --help')\n"
    done = run("ls", "--url", f"sqlite+aiosqlite:///{tmp_path / 'nothing.db'}")
    assert (done.returncode, done.stdout, done.stderr.count("\n")) == (2, "", 1) and "nothing.db" in done.stderr
    assert not (tmp_path / "nothing.db").exists()


def test_a_real_process_takes_url_after_the_command_and_prints_its_version(pushed):
    env = {k: v for k, v in os.environ.items() if k != "DSNOTEBOOK_URL"}
    done = run("ls", "--url", pushed, env=env)
    assert done.returncode == 0 and names(done.stdout) == ["sales"], done.stderr
    done = run("--version", env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"dsnotebook {dsn.__version__}\n", "")
