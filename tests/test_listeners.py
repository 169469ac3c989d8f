"""Listeners users give the library (``hub.on_upload``, ``task.subscribe``): an error in one
never breaks the upload, and is shown, with its traceback, even when logging is not configured."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from hubtools import occupy_the_slot

from dsnotebook.errors import UsageError, ValidationError

FRAME = pd.DataFrame({"a": range(10_000)})


def test_listener_errors_reach_stderr_without_any_logging_configuration(db_url):
    """A script (or a notebook) that never configured logging still sees the error."""
    script = textwrap.dedent(
        f"""
        import pandas as pd, dsnotebook as dsn
        hub = dsn.connect({db_url!r})
        hub.on_upload(lambda t: t.wait())

        def broken(progress):
            raise RuntimeError("the listener's own bug")

        def follow(task):
            task.subscribe(broken)

        hub.on_upload(follow)
        task = hub.push(pd.DataFrame({{"a": range(10_000)}}), "d", chunk_size=1000)
        print("version", task.wait(timeout=120).version, flush=True)
        hub.close()
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert (done.returncode, done.stdout) == (0, "version 1\n"), done.stderr
    wait_refused = (
        "wait() was called for the upload of 'd' on the thread of the event loop that runs it (inside a "
        "listener or another callback, say), where it would deadlock: the upload cannot go on while this "
        "thread waits. Use 'await task' in async code; in a listener, return at once and follow the upload "
        "with task.subscribe(...)"
    )
    traceback = r"Traceback \(most recent call last\):\n(?:  .*\n)+"
    expected = (
        # The on_upload listener that waits gets a clear error rather than a deadlock.
        r"the on_upload listener <function <lambda> at 0x[0-9a-f]+> raised an error for the upload of 'd' "
        r"\(task [0-9a-f]{32}\); the upload goes on\n"
        + traceback
        + re.escape(f"dsnotebook.errors.UsageError: {wait_refused}\n")
        # The progress listener fails at every change, and is shown once.
        + r"the progress listener <function broken at 0x[0-9a-f]+> of the upload of 'd' \(task [0-9a-f]{32}\) "
        r"raised an error; the upload goes on, and later errors of this listener are logged at DEBUG\n"
        + traceback
        + r"RuntimeError: the listener's own bug\n"
    )
    assert re.fullmatch(expected, done.stderr), done.stderr


def test_with_logging_configured_the_errors_go_to_its_handlers_only(hub, caplog, capfd):
    def broken(progress):
        raise RuntimeError("boom")

    with caplog.at_level(logging.DEBUG, logger="dsnotebook"):
        unsubscribe = hub.on_upload(lambda task: task.subscribe(broken))
        task = hub.push(FRAME, "d", chunk_size=1000)
        assert task.wait(timeout=60).version == 1
        unsubscribe()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.exc_info[0]) for r in errors] == [("dsnotebook.listeners", RuntimeError)]
    assert f"(task {task.id})" in errors[0].getMessage()
    # The later changes failed too; they are logged at DEBUG.
    again = [r for r in caplog.records if r.name == "dsnotebook.listeners" and r.levelno == logging.DEBUG]
    assert again and all(r.exc_info[0] is RuntimeError for r in again)
    assert capfd.readouterr().err == ""


def test_an_on_upload_listener_that_fails_leaves_the_push_and_the_upload_alone(hub, caplog):
    release = occupy_the_slot(hub)
    seen = []
    with caplog.at_level(logging.ERROR, logger="dsnotebook"):
        hub.on_upload(lambda task: task.wait())
        hub.on_upload(seen.append)
        try:
            task = hub.push(FRAME, "d")
        finally:
            release()
        assert task.wait(timeout=60).version == 1
    assert seen == [task]  # the listener after the failing one still ran
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "dsnotebook.listeners" and record.exc_info[0] is UsageError
    assert "raised an error for the upload of 'd'" in record.getMessage()


def test_listeners_must_be_callable(hub):
    with pytest.raises(ValidationError, match="listener: expected a callable taking the upload's handle, got 3"):
        hub.on_upload(3)
    task = hub.push(FRAME, "d")
    with pytest.raises(ValidationError, match="listener: expected a callable taking a Progress snapshot, got 'x'"):
        task.subscribe("x")
    task.wait(timeout=60)

