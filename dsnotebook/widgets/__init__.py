"""Notebook widgets: a live progress row per upload, and the interactive UploadPanel.

This package is the only part of dsnotebook that imports ipywidgets or IPython, and it does so
only when a widget is asked for: ``dsnotebook.widgets.controller`` (the panel's behaviour) works
without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .panel import UploadPanel
    from .progress import TaskProgress

__all__ = ["TaskProgress", "UploadPanel"]


def __getattr__(name: str) -> Any:
    if name == "TaskProgress":
        from .progress import TaskProgress

        return TaskProgress
    if name == "UploadPanel":
        from .panel import UploadPanel

        return UploadPanel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
