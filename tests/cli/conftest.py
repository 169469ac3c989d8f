"""The CLI runs in-process, on a SQLite file under tmp_path, with its output captured."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from dsnotebook.cli import main

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "sales.csv"
    pd.DataFrame({"region": ["north", "south", "east"], "amount": [1.5, 2.25, 3.0], "units": [1, 2, 3]}).to_csv(path, index=False)
    return path


@pytest.fixture
def cli(capsys) -> Run:
    """``cli("--url", url, "ls")`` runs ``dsnotebook --url … ls``; returns (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run
