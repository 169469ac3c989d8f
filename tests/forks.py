"""Test processes forked from a server that has imported dsnotebook once.

A fresh interpreter spends two to three seconds importing dsnotebook, pandas, pyarrow and
SQLAlchemy. The tests that start many processes (pushers to kill, writers appending at once)
fork them instead from one server per test process, which has imported these, both bulk drivers,
and the million-row frame the kill tests push (``tests/million_rows.py``). A forked
process is a process of its own: its own pid, hub, connections and locks.

Its target is a module-level function (pickled by name) that calls :func:`adopt_environment`
first, and reports to the test through a pipe: the server's stdout and stderr are no test's.
"""

from __future__ import annotations

import multiprocessing
import os

FORKS = multiprocessing.get_context("forkserver")
# One list for every test module: the server starts once per test process, with whichever list
# was set last before it started.
FORKS.set_forkserver_preload(["dsnotebook", "adbc_driver_sqlite.dbapi", "adbc_driver_postgresql.dbapi", "million_rows"])


def adopt_environment(env: dict[str, str]) -> None:
    """Take the test's environment as of the fork (its private HOME and DSNOTEBOOK_URL, say),
    not the server's, which is the environment of the test that started it."""
    os.environ.clear()
    os.environ.update(env)
