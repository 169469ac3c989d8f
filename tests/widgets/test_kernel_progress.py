"""An upload keeps progressing while a real Jupyter kernel's main thread is busy.

The upload of a sync ``Hub`` runs on the library's portal thread, not on the kernel's event loop,
so a cell that blocks (``time.sleep``) does not stop it, and its progress row keeps sending widget
updates to the frontend meanwhile.

The notebook runs through nbclient, cell by cell. nbclient itself only keeps the messages whose
parent is the cell it is executing. The row's updates carry the parent of the cell that started
the upload, because the task was scheduled from that cell's context. So nbclient drops them, and
its stored widget state (``nb.metadata.widgets``) still shows the bar at 0. A second client on
the kernel's IOPub channel plays the frontend here and records every message.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from queue import Empty
from typing import Any

from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import dsnotebook

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ROWS = 1_000_000
SLEEP_S = 3


def notebook_cells(db_url: str) -> list[str]:
    setup = f"""\
import json, os, sys, time
import numpy as np
import pandas as pd
import dsnotebook as dsn
from ipykernel.connect import get_connection_file

hub = dsn.connect({db_url!r})
n = {ROWS:_}
rng = np.random.default_rng(0)
df = pd.DataFrame({{
    "id": np.arange(n, dtype="int64"),
    "x": rng.random(n),
    "units": rng.integers(0, 1_000, n),
    "label": pd.Series(np.arange(n) % 997, dtype="int64").astype(str),
}})
started = time.monotonic()
task = hub.push(df, "big", chunk_size=20_000)
print(json.dumps({{
    "executable": sys.executable,
    "dsnotebook": dsn.__file__,
    "env": {{k: os.environ.get(k) for k in ("HOME", "DSNOTEBOOK_URL", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")}},
    "ipython_dir": get_ipython().ipython_dir,
    "connection_file": get_connection_file(),
    "cwd": os.getcwd(),
    "push_s": time.monotonic() - started,
}}))
task
"""
    busy = f"""\
before = task.rows_done
import time
time.sleep({SLEEP_S})
after = task.rows_done
print(json.dumps({{"before": before, "after": after, "rows_total": task.rows_total, "status": task.status}}))
"""
    finish = """\
task.wait(timeout=120)
from dsnotebook.widgets import TaskProgress
row = TaskProgress.for_task(task)
print(json.dumps({
    "bar_value": row.bar.value,
    "bar_style": row.bar.bar_style,
    "percent": row.percent.value,
    "badge": row.status_badge.value,
    "status": task.status,
    "shape": list(hub.pull("big").shape),
    "row_model_id": row.model_id,
    "bar_model_id": row.bar.model_id,
    "elapsed": task.elapsed,
}))
hub.close()
"""
    return [setup, busy, finish]


def stdout_json(cell) -> dict[str, Any]:
    text = "".join(o["text"] for o in cell.outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")
    return json.loads(text)


class IOPubRecorder:
    """A second kernel client that only listens on IOPub, as a frontend would, and keeps every message."""

    def __init__(self, km, kc) -> None:
        self._kc = kc
        self.client = km.client()
        self.messages: list[dict[str, Any]] = []
        # msg_id of each execute_request seen on IOPub (from its execute_input), in order.
        self.requests: list[str] = []

    async def start(self) -> None:
        self.client.start_channels(shell=False, iopub=True, stdin=False, hb=False, control=False)
        # A SUB socket misses what is published before it has joined: ask for kernel_info (which
        # publishes busy/idle on IOPub) until this client hears something.
        deadline = time.monotonic() + 30
        while True:
            self._kc.kernel_info()
            try:
                await self.client.iopub_channel.get_msg(timeout=0.2)
                break
            except Empty:
                if time.monotonic() > deadline:
                    raise AssertionError("the IOPub recorder never heard from the kernel") from None
        await self.drain(timeout=0.2)

    async def drain(self, *, until_idle_of: int | None = None, timeout: float = 30) -> None:
        """Record messages: until the idle status of the n-th executed cell, or until none comes for ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if until_idle_of is not None and self._idle_seen(until_idle_of):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if until_idle_of is None:
                    return
                raise AssertionError(f"cell {until_idle_of} never went idle on IOPub")
            try:
                msg = await self.client.iopub_channel.get_msg(timeout=remaining)
            except Empty:
                continue
            self.messages.append(msg)
            if msg["msg_type"] == "execute_input":
                self.requests.append(msg["parent_header"]["msg_id"])

    def _idle_seen(self, cell: int) -> bool:
        if len(self.requests) <= cell:
            return False
        request = self.requests[cell]
        return any(
            m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" and m["parent_header"].get("msg_id") == request
            for m in self.messages
        )

    def updates_of(self, model_id: str) -> list[tuple[int | None, dict[str, Any]]]:
        """(cell running when it arrived, state) of every ``comm_msg`` update to ``model_id``, in order."""
        out = []
        running: int | None = None
        for m in self.messages:
            if m["msg_type"] == "execute_input":
                running = self.requests.index(m["parent_header"]["msg_id"])
            elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                if running is not None and m["parent_header"].get("msg_id") == self.requests[running]:
                    running = None
            elif m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model_id:
                data = m["content"]["data"]
                if data.get("method") == "update":
                    out.append((running, data["state"]))
        return out

    def opened_state(self, model_id: str) -> dict[str, Any]:
        for m in self.messages:
            if m["msg_type"] == "comm_open" and m["content"]["comm_id"] == model_id:
                return dict(m["content"]["data"]["state"])
        raise AssertionError(f"no comm_open for model {model_id} was seen on IOPub")

    async def stop(self) -> None:
        self.client.stop_channels()


def descendants(pid: int) -> set[int]:
    """The process ids under ``pid``, from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it is gone for our purpose once it is no longer running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


async def run_notebook(nb, cwd: Path, connection_file: Path) -> tuple[IOPubRecorder, list[int]]:
    client = NotebookClient(nb, kernel_name="python3", timeout=150, startup_timeout=60)
    # The client still owns (and so shuts down) this manager; without a name set here,
    # jupyter_client would write the connection file to the system's temporary directory.
    client.km = client.create_kernel_manager()
    client.km.connection_file = str(connection_file)
    recorder: IOPubRecorder | None = None
    kernel_pids: list[int] = []
    async with client.async_setup_kernel(cwd=str(cwd)):
        try:
            kernel_pid = client.km.provisioner.process.pid
            kernel_pids = [kernel_pid]
            recorder = IOPubRecorder(client.km, client.kc)
            await recorder.start()
            for index, cell in enumerate(nb.cells):
                await client.async_execute_cell(cell, index, execution_count=index + 1)
                await recorder.drain(until_idle_of=index)
            kernel_pids += sorted(descendants(kernel_pid))
        finally:
            if recorder is not None:
                await recorder.stop()
    # Leaving async_setup_kernel shut the kernel down and stopped nbclient's own channels.
    assert client.km is None and client.kc is None
    return recorder, kernel_pids


def test_upload_progresses_while_the_kernels_main_thread_sleeps(tmp_path, monkeypatch):
    t0 = time.monotonic()
    # Everything the kernel (and jupyter_client here) might write stays under tmp_path; the kernel
    # inherits this environment.
    env = {
        "HOME": tmp_path / "home",
        "IPYTHONDIR": tmp_path / "ipython",
        "JUPYTER_CONFIG_DIR": tmp_path / "jupyter" / "config",
        "JUPYTER_DATA_DIR": tmp_path / "jupyter" / "data",
        "JUPYTER_RUNTIME_DIR": tmp_path / "jupyter" / "runtime",
    }
    for key, path in env.items():
        path.mkdir(parents=True)
        monkeypatch.setenv(key, str(path))
    monkeypatch.setenv("DSNOTEBOOK_URL", f"sqlite+aiosqlite:///{tmp_path / 'home' / 'default.db'}")
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    monkeypatch.delenv("JUPYTER_CONFIG_PATH", raising=False)

    nb = new_notebook(cells=[new_code_cell(src) for src in notebook_cells(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")])
    connection_file = env["JUPYTER_RUNTIME_DIR"] / "kernel-under-test.json"
    recorder, kernel_pids = asyncio.run(run_notebook(nb, cwd=tmp_path, connection_file=connection_file))

    setup, busy, finish = (stdout_json(cell) for cell in nb.cells)
    timings = {"total_s": time.monotonic() - t0, "push_call_s": setup["push_s"], "upload_s": finish["elapsed"]}
    print(json.dumps({"busy_cell": busy, **{k: round(v, 2) for k, v in timings.items()}}))

    # The kernel ran this venv's python and this checkout of dsnotebook, with nothing under the real HOME.
    assert setup["executable"] == sys.executable
    assert setup["dsnotebook"] == dsnotebook.__file__
    assert setup["env"]["DSNOTEBOOK_URL"] == os.environ["DSNOTEBOOK_URL"]
    for key, path in env.items():
        assert setup["env"][key] == str(path)
    assert setup["connection_file"] == str(connection_file)
    for path in (setup["ipython_dir"], setup["cwd"]):
        assert Path(path).is_relative_to(tmp_path), path
    # The row displayed by the cell is a live widget: the same one TaskProgress.for_task returns.
    views = [o["data"][WIDGET_VIEW] for o in nb.cells[0].outputs if WIDGET_VIEW in o.get("data", {})]
    assert [v["model_id"] for v in views] == [finish["row_model_id"]]
    assert all(o.get("output_type") != "stream" or o.get("name") != "stderr" for cell in nb.cells for o in cell.outputs)

    # While the main thread slept, the upload kept going on the portal thread.
    assert busy["rows_total"] == ROWS
    assert busy["before"] < busy["rows_total"]
    assert busy["after"] > busy["before"]

    assert finish["bar_value"] == 1.0
    assert finish["bar_style"] == "success"
    assert finish["percent"] == "100%"
    assert finish["badge"] == "succeeded"
    assert finish["status"] == "succeeded"
    assert finish["shape"] == [ROWS, 4]

    # The frontend side got the bar's updates, sent from the portal thread: some while the busy
    # cell slept, and the final state.
    bar = finish["bar_model_id"]
    updates = recorder.updates_of(bar)
    while_busy = [state["value"] for cell, state in updates if cell == 1 and "value" in state]
    print(json.dumps({"bar_values_while_busy": while_busy}))
    assert len(set(while_busy)) >= 2, updates
    assert while_busy == sorted(while_busy)
    final = recorder.opened_state(bar)
    for _cell, state in updates:
        final.update(state)
    assert "dsn-bar" in final["_dom_classes"]
    assert final["value"] == 1.0
    assert final["bar_style"] == "success"

    # The kernel and anything it started are gone.
    lingering = [pid for pid in kernel_pids if alive(pid)]
    assert not lingering, f"kernel processes still running: {lingering}"
    assert not connection_file.exists()
