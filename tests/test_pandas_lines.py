"""A dataset pushed under pandas 3 is pulled and appended to under pandas 2.2, and the other way
round, on both backends: each side is a process of its own (tests/pandas_line.py), over one
database.

The other pandas line lives in another environment: ``DSNOTEBOOK_OTHER_PANDAS_PYTHON`` names its
interpreter (CI sets it to the environment of the oldest supported versions). Without it the
test skips, saying so; ``DSNOTEBOOK_REQUIRE_OTHER_PANDAS=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from dsnotebook import _compat as compat

TESTS = pathlib.Path(__file__).resolve().parent
CHILD = TESTS / "pandas_line.py"
OTHER_PYTHON = os.environ.get("DSNOTEBOOK_OTHER_PANDAS_PYTHON")


@pytest.fixture
def other_python() -> str:
    if not OTHER_PYTHON:
        reason = "DSNOTEBOOK_OTHER_PANDAS_PYTHON names no interpreter with the other pandas line"
        if os.environ.get("DSNOTEBOOK_REQUIRE_OTHER_PANDAS") == "1":
            pytest.fail(f"DSNOTEBOOK_REQUIRE_OTHER_PANDAS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return OTHER_PYTHON


def _run(python: str, url: str, *steps: str, home: pathlib.Path) -> list[dict]:
    """Runs ``steps`` in one process of ``python``; returns what each step printed."""
    # This checkout's dsnotebook on both sides, and a home of the test's own.
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "HOME": str(home)}
    env.pop("DSNOTEBOOK_URL", None)
    done = subprocess.run([python, str(CHILD), url, *steps], capture_output=True, text=True, env=env, timeout=300, cwd=home)
    assert done.returncode == 0, f"{python} {' '.join(steps)} failed:\n{done.stdout}\n{done.stderr}"
    printed = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert len(printed) == len(steps), printed
    return printed


def _check_pulled(pulled: dict, line: int) -> None:
    # The documented mapping: pandas 3's str is string[pyarrow_numpy] under pandas 2.2.
    assert pulled["dtypes"]["text"] == ("str" if line == 3 else "string[pyarrow_numpy]")
    assert pulled["dtypes"]["python_na"] == pulled["dtypes"]["pyarrow_na"] == "string"
    assert pulled["dtypes"]["objects"] == "object"


def test_a_dataset_crosses_between_pandas_lines_both_ways(db_url, tmp_path, other_python):
    """Dataset "from_this" is pushed under this test's pandas line, pulled and appended to under
    the other, then checked under both; "from_other" the other way round. Each process runs
    the steps of both datasets that fall to its line at that point."""
    this_line = 3 if compat.PANDAS_3 else 2
    # The other line pushes first, and says which pandas it runs.
    probe, _ = _run(other_python, db_url, "push:probe", "push:from_other", home=tmp_path)
    other_line = int(probe["pandas"].split(".")[0])
    assert {this_line, other_line} == {2, 3}, f"both interpreters run pandas {this_line}: the other must run the other line"
    this = sys.executable

    _, pulled, _ = _run(this, db_url, "push:from_this", f"check:from_other:{other_line}", "append:from_other", home=tmp_path)
    _check_pulled(pulled, this_line)
    pulled, *_ = _run(
        other_python,
        db_url,
        f"check:from_this:{this_line}",
        "append:from_this",
        f"check:from_this:{this_line},{other_line}",
        f"check:from_other:{other_line},{this_line}",
        home=tmp_path,
    )
    _check_pulled(pulled, other_line)
    _run(this, db_url, f"check:from_this:{this_line},{other_line}", f"check:from_other:{other_line},{this_line}", home=tmp_path)
