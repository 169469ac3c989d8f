"""Every CLI command, run in-process against a temporary database."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import dsnotebook as dsn
from dsnotebook.cli.progress import bar_postfix
from dsnotebook.progress import Progress


def test_push_shows_progress_and_stores_the_file(cli, url, csv_file):
    code, out, err = cli("--url", url, "push", str(csv_file), "--name", "sales", "--description", "from csv")
    assert code == 0
    assert "'sales' version 1: 3 rows × 3 columns" in out
    assert "3/3" in err and "succeeded" in err  # the tqdm bar
    with dsn.connect(url) as hub:
        pd.testing.assert_frame_equal(hub.pull("sales"), pd.read_csv(csv_file))
        assert hub.info("sales").description == "from csv"


def test_push_progress_shows_the_rate_and_the_process_memory(cli, url, tmp_path):
    path = tmp_path / "big.csv"
    pd.DataFrame({"n": range(20_000), "x": [0.5] * 20_000}).to_csv(path, index=False)
    code, _, err = cli("--url", url, "push", str(path), "--name", "big")
    assert code == 0
    # The final bar: tqdm's own rate is left out, so "rows/s" is the upload's and RSS is this process's.
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(r"20000/20000 \[[^\]]*, succeeded, [\d.]+[kMG]? rows/s, RSS (\d+ bytes|\d+\.\d [KMGT]B)\]$", final), final


@pytest.mark.parametrize(
    ("status", "elapsed", "expected"),
    [
        pytest.param("queued", 0.0, "queued, RSS 1.4 MB", id="queued-has-no-rate-yet"),
        pytest.param("running", 2.0, "running, 25k rows/s, RSS 1.4 MB", id="running"),
    ],
)
def test_bar_postfix(status, elapsed, expected):
    progress = Progress(task_id="t", dataset="d", status=status, rows_done=50_000 if elapsed else 0, rows_total=100_000, elapsed=elapsed)
    assert bar_postfix(progress, 1_500_000) == expected


def test_push_identical_file_again_is_deduplicated(cli, url, csv_file):
    cli("--url", url, "push", str(csv_file), "--name", "sales")
    code, out, _ = cli("--url", url, "push", str(csv_file), "--name", "sales")
    assert code == 0 and "version 1" in out and "identical" in out


def test_push_append_and_fail(cli, url, csv_file):
    cli("--url", url, "push", str(csv_file), "--name", "sales")
    code, out, _ = cli("--url", url, "push", str(csv_file), "--name", "sales", "--if-exists", "append")
    assert code == 0 and "version 2: 6 rows" in out
    code, _, err = cli("--url", url, "push", str(csv_file), "--name", "sales", "--if-exists", "fail")
    assert code == 2 and "already exists" in err


def test_push_parquet_and_feather(cli, url, tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "t": pd.to_datetime(["2026-01-01", None]).tz_localize("UTC")})
    df.to_parquet(tmp_path / "f.parquet")
    df.to_feather(tmp_path / "f.feather")
    assert cli("--url", url, "push", str(tmp_path / "f.parquet"), "--name", "pq")[0] == 0
    assert cli("--url", url, "push", str(tmp_path / "f.feather"), "--name", "fe")[0] == 0
    with dsn.connect(url) as hub:
        pd.testing.assert_frame_equal(hub.pull("pq"), pd.read_parquet(tmp_path / "f.parquet"))
        pd.testing.assert_frame_equal(hub.pull("fe"), pd.read_feather(tmp_path / "f.feather"))


def test_push_rejects_unknown_file_types_and_missing_files(cli, url, tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    code, _, err = cli("--url", url, "push", str(tmp_path / "x.txt"), "--name", "x")
    assert code == 2 and "unknown file type '.txt'" in err and ".csv" in err
    code, _, err = cli("--url", url, "push", str(tmp_path / "missing.csv"), "--name", "x")
    assert code == 2 and "missing.csv" in err


def test_ls_versions_show_tasks(cli, url, csv_file):
    cli("--url", url, "push", str(csv_file), "--name", "sales")
    cli("--url", url, "push", str(csv_file), "--name", "sales", "--if-exists", "append")
    code, out, _ = cli("--url", url, "ls")
    assert code == 0 and "sales" in out and "latest_version" in out
    code, out, _ = cli("--url", url, "versions", "sales")
    assert code == 0 and len([line for line in out.splitlines() if "dsn_data_" in line]) == 2
    code, out, _ = cli("--url", url, "show", "sales", "--rows", "2")
    assert code == 0 and "version 2 of 2: 6 rows × 3 columns" in out
    assert "amount" in out and "float64" in out and "first 2 rows" in out
    code, out, _ = cli("--url", url, "tasks")
    assert code == 0 and out.count("succeeded") == 2


def test_empty_listings(cli, url):
    dsn.connect(url).close()  # an empty database
    assert cli("--url", url, "ls")[1].strip() == "no datasets"
    assert cli("--url", url, "tasks")[1].strip() == "no tasks"


def test_pull_writes_files(cli, url, csv_file, tmp_path):
    cli("--url", url, "push", str(csv_file), "--name", "sales")
    code, out, _ = cli("--url", url, "pull", "sales", "-o", str(tmp_path / "out.csv"))
    assert code == 0 and "wrote 3 rows" in out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out.csv"), pd.read_csv(csv_file))
    if pytest.importorskip("pyarrow"):
        assert cli("--url", url, "pull", "sales", "--version", "1", "-o", str(tmp_path / "out.parquet"))[0] == 0
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), pd.read_csv(csv_file))


def test_rm_a_version_and_a_dataset(cli, url, csv_file):
    cli("--url", url, "push", str(csv_file), "--name", "sales")
    cli("--url", url, "push", str(csv_file), "--name", "sales", "--if-exists", "append")
    code, out, _ = cli("--url", url, "rm", "sales", "--version", "2", "--yes")
    assert code == 0 and "removed version 2" in out
    code, out, _ = cli("--url", url, "rm", "sales", "-y")
    assert code == 0 and "removed dataset 'sales' (1 version: 1)" in out
    code, _, err = cli("--url", url, "rm", "sales", "--yes")
    assert code == 2 and "no dataset named 'sales'" in err


def test_unknown_dataset_is_a_clear_error(cli, url):
    dsn.connect(url).close()  # an empty database
    code, out, err = cli("--url", url, "show", "nope")
    assert code == 2 and out == "" and "dsnotebook: error: no dataset named 'nope'" in err


def test_bad_url_is_a_clear_error(cli):
    code, _, err = cli("--url", "postgresql+asyncpg://u:hunter2@127.0.0.1:9/x", "ls")
    # The password on the command line is warned about first (tests/cli/test_cli_credentials.py).
    warning, error = err.splitlines()
    assert code == 2 and "hunter2" not in err and warning.startswith("dsnotebook: warning: ") and error.startswith("dsnotebook: error: ")


def test_demo_pushes_pulls_and_verifies(cli, url):
    code, out, _ = cli("--url", url, "demo", "--rows", "3000")
    assert code == 0
    assert "all 3 uploads succeeded and pulled back identical" in out
    for name in ("demo/sales", "demo/sensors", "demo/users"):
        assert name in out
    with dsn.connect(url) as hub:
        assert sorted(hub.datasets()["name"]) == ["demo/sales", "demo/sensors", "demo/users"]


def test_demo_defaults_to_a_demo_database_in_the_home_directory(cli, monkeypatch, _isolated_home):
    monkeypatch.delenv("DSNOTEBOOK_URL")
    assert cli("demo", "--rows", "500")[0] == 0
    assert (_isolated_home / ".dsnotebook" / "demo.db").exists()
    assert not (_isolated_home / ".dsnotebook" / "datasets.db").exists()


def test_dsnotebook_url_is_used_by_the_cli(cli, monkeypatch, tmp_path, csv_file):
    monkeypatch.setenv("DSNOTEBOOK_URL", f"sqlite+aiosqlite:///{tmp_path / 'env.db'}")
    cli("push", str(csv_file), "--name", "viaenv")
    with dsn.connect(f"sqlite+aiosqlite:///{tmp_path / 'env.db'}") as hub:
        assert hub.datasets()["name"].tolist() == ["viaenv"]


def test_python_dash_m_and_console_script(url):
    dsn.connect(url).close()  # an empty database
    env = {**os.environ, "DSNOTEBOOK_URL": url}
    out = subprocess.run([sys.executable, "-m", "dsnotebook", "ls"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "no datasets"
    help_text = subprocess.run([sys.executable, "-m", "dsnotebook", "--help"], capture_output=True, text=True, timeout=60).stdout
    for command in ("push", "ls", "versions", "show", "pull", "tasks", "rm", "cleanup", "status", "demo"):
        assert command in help_text
    script = os.path.join(os.path.dirname(sys.executable), "dsnotebook")
    assert subprocess.run([script, "ls"], capture_output=True, text=True, env=env, timeout=60).returncode == 0


def test_cleanup_drops_staging_tables_no_upload_owns(cli, url, csv_file):
    cli("--url", url, "push", str(csv_file), "--name", "sales")
    import sqlite3

    from sqlalchemy.engine import make_url

    con = sqlite3.connect(make_url(url).database)
    con.execute('CREATE TABLE "dsn_stage_0123456789abcdef0123456789abcdef" (x INTEGER)')
    con.commit()
    con.close()
    code, out, _ = cli("--url", url, "cleanup")
    assert code == 0 and "dropped 1 staging table kept" in out
    code, out, _ = cli("--url", url, "cleanup")
    assert code == 0 and "dropped 0 staging tables" in out
    with dsn.connect(url) as hub:
        pd.testing.assert_frame_equal(hub.pull("sales"), pd.read_csv(csv_file))


def readme_commands() -> list[list[str]]:
    """The command lines of the README's "Command line" section, as argument lists."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.strip()]


def test_help_texts_have_every_option_the_readme_shows(cli):
    commands = readme_commands()
    _, top_help, _ = cli("--help")
    for argv in commands:
        command = argv[0] if not argv[0].startswith("-") else None
        _, help_text, _ = cli(command, "--help") if command else (0, top_help, "")
        if command:
            assert re.search(rf"^    {command} ", top_help, re.MULTILINE), f"'dsnotebook --help' does not list {command}"
        for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", " ".join(argv)):
            assert option in help_text, f"'dsnotebook {command or ''} --help' does not show {option}, which the README does"
    # Every command has a line in the README.
    assert {a[0] for a in commands if not a[0].startswith("-")} == set(re.findall(r"^    (\w+) ", top_help, re.MULTILINE))


def test_show_and_pull_a_series_and_a_table(cli, url, tmp_path):
    with dsn.connect(url) as hub:
        hub.push(pd.Series([1.5, 2.5], name="price"), "prices").wait()
        hub.push(pa.table({"n": [1, None]}), "counts").wait()
    code, out, _ = cli("--url", url, "show", "prices")
    assert code == 0 and "price" in out and "2.5" in out
    assert cli("--url", url, "pull", "prices", "-o", str(tmp_path / "p.parquet"))[0] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), pd.DataFrame({"price": [1.5, 2.5]}))
    code, out, _ = cli("--url", url, "pull", "counts", "-o", str(tmp_path / "c.csv"))
    assert code == 0 and "wrote 2 rows × 1 columns" in out
    assert cli("--url", url, "push", str(tmp_path / "c.csv"), "--name", "counts", "--if-exists", "append")[0] == 0
    with dsn.connect(url) as hub:
        assert hub.pull("counts").equals(pa.table({"n": [1, None, 1, None]}))
