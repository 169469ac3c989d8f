"""A flood of uploads from one hub: all complete within the concurrency limit, start in priority
order, and leave neither memory nor task objects behind."""

from __future__ import annotations

import gc
import resource

import numpy as np
import pandas as pd
import pytest

from frametools import STR
from hubtools import occupy_the_slot

import dsnotebook as dsn


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _small(i: int) -> pd.DataFrame:
    return pd.DataFrame({"i": np.full(1_000, i, dtype="int64"), "x": np.arange(1_000) * 0.5, "s": pd.array([f"v{i}"] * 1_000, dtype=STR)})


@pytest.mark.slow
def test_two_hundred_queued_pushes_with_mixed_priorities(db_url):
    rng = np.random.default_rng(6)
    priorities = rng.integers(-2, 3, 200).tolist()
    with dsn.connect(db_url, concurrency=1) as hub:
        service = hub._async.task_service
        peaks = []
        tasks = [hub.push(_small(i), f"load-{i}", priority=priorities[i]) for i in range(20)]
        for t in tasks:
            t.wait(timeout=120)
        gc.collect()
        peaks.append(_peak_rss_mb())
        # The other 180 are all queued behind a running task before any of them can start.
        release = occupy_the_slot(hub)
        try:
            tasks += [hub.push(_small(i), f"load-{i}", priority=priorities[i]) for i in range(20, 200)]
            assert {t.status for t in tasks[20:]} == {"queued"}
        finally:
            release()
        for t in tasks[20:]:
            t.wait(timeout=300)
        gc.collect()
        peaks.append(_peak_rss_mb())
        assert [t.status for t in tasks] == ["succeeded"] * 200
        # Never more than the limit ran at once (the catalog's start and end times agree).
        history = hub.tasks().sort_values("started_at")
        starts = history["started_at"].tolist()
        ends = history["finished_at"].tolist()
        assert all(ends[k] <= starts[k + 1] for k in range(len(starts) - 1))
        # The 180 queued ones started by priority, first come first served among equals.
        later = history[history["dataset"].isin([f"load-{i}" for i in range(20, 200)])]
        order = [int(name.split("-")[1]) for name in later["dataset"]]
        assert order == sorted(range(20, 200), key=lambda i: (-priorities[i], i))
        # Memory stays flat, and nothing of the 200 uploads is left in the registries.
        assert peaks[1] - peaks[0] <= 50, peaks
        assert service.running() == [] and hub._async._uploads.handles() == []
        for i in (0, 57, 199):
            assert hub.pull(f"load-{i}").equals(_small(i))
