"""The interpreter exits quietly, whatever state the hubs are in.

Each case runs a real interpreter and compares its whole stdout and stderr with what the script
prints itself: no "Task was destroyed but it is pending!", no unclosed-connection warnings, no
log records. Warnings are turned into errors, so that a connection left open shows up as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import dsnotebook as dsn

FRAME = "pd.DataFrame({'a': np.arange(2_000_000), 'b': np.arange(2_000_000) * 0.5})"

CASES = {
    "printed and dropped": "print(dsn.connect(URL))",
    "dropped unprinted": "dsn.connect(URL)",
    "deleted": "hub = dsn.connect(URL)\ndel hub",
    "closed": "hub = dsn.connect(URL)\nhub.close()",
    "created in a thread": (
        "import threading\n"
        "worker = threading.Thread(target=dsn.connect, args=(URL,))\n"
        "worker.start()\n"
        "worker.join()"
    ),
    "a submitted coroutine still running": (
        "import asyncio\n"
        "hub = dsn.connect(URL)\n"
        "pending = hub.submit(asyncio.sleep(3600))\n"
        "hub.submit(asyncio.sleep(0)).result()  # the loop has started the one above"
    ),
    "default hub push": (
        "import os\n"
        "os.environ['DSNOTEBOOK_URL'] = URL\n"
        "print(dsn.push(pd.DataFrame({'a': [1, 2]}), 'small').wait().version)"
    ),
    "default hub push left running": (
        "import os, time\n"
        "os.environ['DSNOTEBOOK_URL'] = URL\n"
        f"task = dsn.push({FRAME}, 'big', chunk_size=1000)\n"
        "while task.rows_done == 0:\n"
        "    time.sleep(0.01)\n"
        "print('running')"
    ),
}

EXPECTED_STDOUT = {
    "printed and dropped": "<Hub {url} (open)>\n",
    "default hub push": "1\n",
    "default hub push left running": "running\n",
}


def run_script(body: str, url: str) -> subprocess.CompletedProcess:
    script = f"import numpy as np, pandas as pd, dsnotebook as dsn\nURL = {url!r}\n" + body
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_nothing_prints_at_exit(db_url, case):
    done = run_script(CASES[case], db_url)
    assert (done.returncode, done.stdout, done.stderr) == (0, EXPECTED_STDOUT.get(case, "").format(url=db_url), "")


def test_an_unreferenced_hub_with_a_running_upload_exits_quietly_and_marks_it_interrupted(db_url):
    """The exit reaches a hub nobody refers to any more: its upload ends ``interrupted``, with
    its committed rows kept for a resume, as for a hub still held."""
    body = textwrap.dedent(
        f"""
        import time
        task = dsn.connect(URL).push({FRAME}, 'big', chunk_size=1000)
        while task.rows_done == 0:
            time.sleep(0.01)
        print(task.id)
        """
    )
    done = run_script(body, db_url)
    assert (done.returncode, done.stderr) == (0, "")
    task_id = done.stdout.strip()
    with dsn.connect(db_url) as hub:
        task = hub.tasks(dataset="big").set_index("id").loc[task_id]
        assert task["status"] == "interrupted", task.to_dict()
        assert task["rows_done"] > 0
