"""Notebook widgets: a live progress row per upload, the interactive UploadPanel, and the
StatusStrip that shows a hub's figures.

This package is the only part of dsnotebook that imports ipywidgets or IPython, and it does so
only when a widget is asked for: ``dsnotebook.widgets.controller`` (the panel's behaviour) and
``dsnotebook.widgets.tables`` (its tables as HTML) work without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .panel import UploadPanel
    from .progress import TaskProgress
    from .strip import StatusStrip

__all__ = ["StatusStrip", "TaskProgress", "UploadPanel"]

_WIDGETS = {"StatusStrip": "strip", "TaskProgress": "progress", "UploadPanel": "panel"}


def __getattr__(name: str) -> Any:
    module = _WIDGETS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
