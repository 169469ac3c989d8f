"""Blocking waits that Ctrl-C can interrupt.

A thread blocked on a lock wakes for a signal only if the signal's handler was installed without
``SA_RESTART``. polars installs its SIGINT handler with that flag when it is imported (and ADBC's
driver manager imports polars wherever it is installed), so a plain ``future.result()`` would
sit through Ctrl-C until the wait ended of itself. :func:`result` waits in short slices instead:
between two, Python runs its signal handlers and raises the ``KeyboardInterrupt``.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

__all__ = ["SLICE_S", "result"]

#: The longest one slice of a wait lasts, in seconds: how late a Ctrl-C can be noticed.
SLICE_S = 0.1


def result(future: concurrent.futures.Future, timeout: float | None = None) -> Any:
    """``future.result(timeout)``, waiting at most :data:`SLICE_S` at a time.

    Raises:
        TimeoutError: ``timeout`` seconds passed and the future is not done.
        KeyboardInterrupt: Ctrl-C, at the latest one slice after it was pressed.
        Whatever the future raised.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE_S if deadline is None else min(SLICE_S, max(0.0, deadline - time.monotonic()))
        try:
            return future.result(left)
        except TimeoutError:
            if future.done():
                raise  # the future's own TimeoutError
            if deadline is not None and time.monotonic() >= deadline:
                raise
