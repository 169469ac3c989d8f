"""One of two processes that push to the same SQLite file at once, for the lock test.

    python contender.py URL TAG START_FILE

Prints ``ready`` once connected, waits until START_FILE exists, then pushes 10 frames and waits for them all. Prints one JSON line:
the status, error, task id and attempts of every push (a push refused while queueing counts as failed, without a task), and the
number of lock retries the engine logged, queueing included.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import numpy as np
import pandas as pd


def main() -> None:
    import dsnotebook as dsn
    from dsnotebook.errors import DsnotebookError

    url, tag, start = sys.argv[1], sys.argv[2], sys.argv[3]
    retries = []

    class CountRetries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "transient error, retry" in record.getMessage():
                retries.append(record.getMessage())

    logging.getLogger("dsnotebook").addHandler(CountRetries(logging.WARNING))
    hub = dsn.connect(url)
    print("ready", flush=True)
    while not os.path.exists(start):
        time.sleep(0.005)
    tasks, outcomes = [], []
    for i in range(10):
        df = pd.DataFrame({"x": np.arange(30_000) + i, "tag": tag})
        try:
            tasks.append(hub.push(df, f"{tag}-{i % 3}", if_exists="append", chunk_size=3_000))
        except DsnotebookError as exc:
            outcomes.append({"status": "failed", "error": str(exc), "id": None, "attempts": 0})
    for task in tasks:
        try:
            task.wait(timeout=300)
        except DsnotebookError:
            pass
        error = None if task.error is None else str(task.error)
        outcomes.append({"status": task.status, "error": error, "id": task.id, "attempts": task.attempts})
    hub.close()
    print(json.dumps({"outcomes": outcomes, "retries": len(retries)}), flush=True)


if __name__ == "__main__":
    main()
