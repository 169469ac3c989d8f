"""``dsnotebook rm`` asks first: on a real terminal (a pty) it waits for y, without one it refuses
unless --yes is given."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

import pandas as pd
import pytest

import dsnotebook as dsn

PROMPT_END = "[y/N] "


@pytest.fixture
def two_versions(url) -> str:
    """``url`` holding dataset 'sales' with versions 1 and 2."""
    with dsn.connect(url) as hub:
        hub.push(pd.DataFrame({"a": [1, 2]}), "sales").wait(timeout=60)
        hub.push(pd.DataFrame({"a": [3]}), "sales", if_exists="append").wait(timeout=60)
    return url


def stored(url: str) -> dict[str, list[int]]:
    with dsn.connect(url) as hub:
        return {name: hub.versions(name)["version"].tolist() for name in hub.datasets()["name"]}


def rm(*argv: str, stdin: int | str) -> subprocess.CompletedProcess:
    """Run ``dsnotebook rm`` with ``stdin``: a file descriptor, or text to send through a pipe."""
    feed = {"input": stdin} if isinstance(stdin, str) else {"stdin": stdin}
    return subprocess.run(
        [sys.executable, "-m", "dsnotebook", "rm", *argv], check=False, capture_output=True, text=True, timeout=120, **feed
    )


@pytest.fixture
def typed_on_a_terminal(monkeypatch) -> Iterator[Callable[[str], None]]:
    """``typed_on_a_terminal(text)`` makes this process's stdin a pseudo-terminal on which
    ``text`` has been typed already (the terminal keeps it until it is read), for ``dsnotebook
    rm`` run in-process."""
    opened: list[tuple[int, TextIO]] = []

    def type_(text: str) -> None:
        leader, follower = pty.openpty()
        os.write(leader, text.encode())
        stdin = open(follower, encoding="utf-8")  # noqa: SIM115 - closed at the end of the test
        opened.append((leader, stdin))
        monkeypatch.setattr(sys, "stdin", stdin)

    yield type_
    for leader, stdin in opened:
        stdin.close()
        os.close(leader)


def rm_on_a_terminal(*argv: str, answer: str) -> tuple[int, str, str, str]:
    """Run ``dsnotebook rm`` in a real process with a pseudo-terminal as stdin, and type ``answer``
    on it once the question is on stderr.

    Returns the exit status, stdout, the question (up to its ``[y/N]``) and the rest of stderr.
    """
    leader, follower = pty.openpty()
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "dsnotebook", "rm", *argv],
            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) as proc:
            os.close(follower)
            follower = None
            question = ""
            while not question.endswith(PROMPT_END):
                char = proc.stderr.read(1)
                assert char, f"rm ended without asking; it printed {question!r}"
                question += char
            os.write(leader, answer.encode())
            out, err = proc.communicate(timeout=120)
    finally:
        os.close(leader)
        if follower is not None:
            os.close(follower)
    return proc.returncode, out, question, err


def test_rm_without_a_terminal_refuses_unless_yes(cli, two_versions, monkeypatch):
    expected = (
        "dsnotebook: error: rm: standard input is not a terminal, so the removal cannot be confirmed; "
        "pass --yes to remove without asking\n"
    )
    done = rm("sales", "--url", two_versions, stdin=subprocess.DEVNULL)  # a real process, reading nothing
    assert (done.returncode, done.stdout, done.stderr) == (2, "", expected)
    read, write = os.pipe()  # a pipe that says yes
    os.write(write, b"y\n")
    os.close(write)
    with open(read, encoding="utf-8") as piped:
        monkeypatch.setattr(sys, "stdin", piped)
        assert cli("rm", "sales", "--url", two_versions) == (2, "", expected)
        assert stored(two_versions) == {"sales": [1, 2]}
        code, out, err = cli("rm", "sales", "--version", "2", "--yes", "--url", two_versions)
    assert (code, out, err) == (0, "removed version 2 of 'sales' (1 version: 2)\n", "")
    assert stored(two_versions) == {"sales": [1]}


def test_rm_in_process_without_a_terminal_refuses_before_opening_the_database(cli, url):
    # pytest's stdin is not a terminal; the database does not even exist.
    code, out, err = cli("--url", url, "rm", "sales")
    assert (code, out) == (2, "") and "pass --yes" in err


def test_rm_asks_on_a_terminal_and_removes_on_yes(two_versions):
    code, out, question, err = rm_on_a_terminal("sales", "--url", two_versions, answer="y\n")
    assert question == "remove dataset 'sales' and its 2 versions: 1, 2? [y/N] "
    assert (code, out, err) == (0, "removed dataset 'sales' (2 versions: 1, 2)\n", "")
    assert stored(two_versions) == {}


@pytest.mark.parametrize("answer", ["n\n", "\n", "yeah, no\n"], ids=["no", "enter", "anything-else"])
def test_rm_on_a_terminal_keeps_the_data_unless_told_yes(cli, two_versions, answer, typed_on_a_terminal):
    typed_on_a_terminal(answer)
    code, out, err = cli("rm", "sales", "--version", "1", "--url", two_versions)
    assert (code, out, err) == (0, "nothing removed\n", "remove version 1 of 'sales'? [y/N] ")
    assert stored(two_versions) == {"sales": [1, 2]}


def test_rm_of_a_missing_version_asks_nothing_and_names_the_versions_there_are(cli, two_versions, typed_on_a_terminal):
    typed_on_a_terminal("y\n")
    code, out, err = cli("rm", "sales", "--version", "7", "--url", two_versions)
    assert (code, out) == (2, "")
    assert err == "dsnotebook: error: dataset 'sales' has no version 7; its versions are: 1, 2\n"
    assert stored(two_versions) == {"sales": [1, 2]}
