"""dsnotebook: push pandas DataFrames as named, versioned datasets in the background, and pull
them back identical.

>>> import dsnotebook as dsn
>>> hub = dsn.connect()                      # doctest: +SKIP
>>> task = hub.push(df, "sales")             # doctest: +SKIP
>>> task.wait()                              # doctest: +SKIP
>>> hub.pull("sales")                        # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import sys
import types
from typing import TYPE_CHECKING

from . import tasks as _tasks_module
from ._keywords import suggest_keywords
from .errors import (
    ConfigError,
    DatasetError,
    DatasetNotFound,
    DsnotebookError,
    HubClosed,
    SchemaMismatch,
    UploadCancelled,
    UploadError,
    UsageError,
    ValidationError,
    VersionConflict,
    WaitTimeout,
)
from .hub import AsyncHub, Hub, connect, datasets, default_hub, pull, push, tasks_frame
from .models import DatasetInfo, DatasetVersion, HubStatus, TaskStats
from .progress import Progress
from .tasks import BackgroundTaskService, RetryPolicy
from .upload import UploadTask

if TYPE_CHECKING:
    import pandas as pd

__version__ = "0.1.0"

# Errors reach users through task handles and widgets; a library never prints on its own.
logging.getLogger("dsnotebook").addHandler(logging.NullHandler())


class _CallableTasksModule(types.ModuleType):
    """``dsnotebook.tasks`` is both the task-service module and the ``dsn.tasks()`` helper."""

    @functools.partial(suggest_keywords, called="dsnotebook.tasks")
    def __call__(self, *, dataset: str | None = None, status: str | None = None) -> pd.DataFrame:
        """``default_hub().tasks(dataset=..., status=...)``: persisted uploads as a DataFrame."""
        return tasks_frame(dataset=dataset, status=status)


_tasks_module.__class__ = _CallableTasksModule
tasks = sys.modules[__name__ + ".tasks"]


def __getattr__(name: str):
    # The widgets import ipywidgets, so they load on first use only: ``import dsnotebook`` works
    # (and pushes data) without ipywidgets installed. For the same reason they are not in
    # ``__all__``, and ``from dsnotebook import *`` never needs ipywidgets.
    if name in ("UploadPanel", "TaskProgress", "StatusStrip"):
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AsyncHub",
    "BackgroundTaskService",
    "ConfigError",
    "DatasetError",
    "DatasetInfo",
    "DatasetNotFound",
    "DatasetVersion",
    "DsnotebookError",
    "Hub",
    "HubClosed",
    "HubStatus",
    "Progress",
    "RetryPolicy",
    "SchemaMismatch",
    "TaskStats",
    "UploadCancelled",
    "UploadError",
    "UploadTask",
    "UsageError",
    "ValidationError",
    "VersionConflict",
    "WaitTimeout",
    "connect",
    "datasets",
    "default_hub",
    "pull",
    "push",
    "tasks",
]
