"""Where the errors of listeners go: the functions users hand to ``hub.on_upload`` and
``task.subscribe``.

A listener runs on the loop that runs the uploads, so an error in it cannot reach the code that
registered it, and it must not break the upload either. It is logged at ERROR, with its
traceback, on the ``dsnotebook.listeners`` logger.

The package gives the ``dsnotebook`` logger a ``NullHandler``, so that the library stays quiet
when logging is not configured. That handler also keeps Python's last-resort handler (stderr,
WARNING and above) from ever seeing the library's records. A failing listener is a bug in the
caller's own code, which they must see, in a notebook too, as they would see an exception in a
thread. So this logger hands its records to the last resort itself when no handler up its chain
would take them; once logging is configured, the configured handlers take them, and the last
resort stays silent, as usual.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["log", "report_failure"]

log = logging.getLogger("dsnotebook.listeners")


class _LastResortWhenUnhandled(logging.Handler):
    """Pass a record to ``logging.lastResort`` when no other handler would take it."""

    def emit(self, record: logging.LogRecord) -> None:
        logger: logging.Logger | None = log
        while logger is not None:
            if any(h is not self and not isinstance(h, logging.NullHandler) for h in logger.handlers):
                return  # logging is configured: its handlers show the record (or drop it on purpose)
            logger = logger.parent if logger.propagate else None
        last = logging.lastResort
        if last is not None and record.levelno >= last.level:
            last.handle(record)


log.addHandler(_LastResortWhenUnhandled())


def report_failure(message: str, *args: Any) -> None:
    """Log the exception being handled, raised by a listener, at ERROR with its traceback."""
    log.error(message, *args, exc_info=True)
