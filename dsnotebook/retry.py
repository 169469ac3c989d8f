"""Retries: which errors are transient, the backoff policy, and the one loop that retries.

A transient error is one that the same work may not meet again a moment later: SQLite's "database
is locked" (another writer held the lock past the busy timeout) and a dropped connection.
:class:`RetryPolicy` says how often and how long to wait (jittered exponential backoff), and
:func:`with_retries` is the loop that both the task service (whole attempts, each with a fresh
session) and the upload layer (one chunk's transaction) use.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, StatementError

from dsnotebook.errors import ValidationError

__all__ = ["RetryPolicy", "is_transient", "with_retries"]

T = TypeVar("T")
logger = logging.getLogger("dsnotebook")

# SQLite's primary result codes for "another connection holds the lock" (SQLITE_BUSY) and
# "a table in this shared cache is locked" (SQLITE_LOCKED). Extended codes keep these in the
# low byte.
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_LOCK_MESSAGES = ("database is locked", "database table is locked", "database is busy")

# asyncpg's "the connection went away" errors, matched by class name so that asyncpg stays an
# optional dependency. PostgresConnectionError is the base of SQLSTATE class 08.
_ASYNCPG_CONNECTION_LOST = frozenset(
    {
        "PostgresConnectionError",
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "AdminShutdownError",
        "CrashShutdownError",
        "CannotConnectNowError",
    }
)

# Guards against pathological exception chains; real ones are a handful of links long.
_MAX_CHAIN = 32


def _is_lock_error(exc: BaseException) -> bool:
    if isinstance(exc, StatementError):
        # SQLAlchemy's wrapper: its message quotes the SQL, so judge the driver error (.orig).
        return False
    is_driver_error = isinstance(exc, sqlite3.Error) or any(
        cls.__name__ == "OperationalError" for cls in type(exc).__mro__
    )
    if not is_driver_error:
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return True
    message = str(exc).lower()
    return any(phrase in message for phrase in _LOCK_MESSAGES)


def _is_connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, DisconnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return True
    return any(
        cls.__name__ in _ASYNCPG_CONNECTION_LOST and cls.__module__.startswith("asyncpg")
        for cls in type(exc).__mro__
    )


def is_transient(exc: BaseException) -> bool:
    """Tell whether an error is worth retrying with a fresh session.

    Transient errors are SQLite lock contention ("database is locked", "database table is
    locked", "database is busy") and lost connections (SQLAlchemy's ``DisconnectionError``, a
    ``DBAPIError`` whose connection was invalidated, ``ConnectionResetError``,
    ``BrokenPipeError``, ``ConnectionAbortedError`` and asyncpg's connection-lost errors). The
    error itself, its ``.orig`` driver error and its ``__cause__`` chain are inspected, so the
    raw ``sqlite3`` error and SQLAlchemy's wrapper of it are both recognised. The implicit
    ``__context__`` is not followed: an error raised while handling a lock error is a different
    failure.

    :param exc: the error a task raised.
    :returns: True if retrying may succeed; always False for :class:`asyncio.CancelledError`.
    """
    if isinstance(exc, asyncio.CancelledError):
        return False
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _is_lock_error(current) or _is_connection_lost(current):
            return True
        for linked in (getattr(current, "orig", None), current.__cause__):
            if isinstance(linked, BaseException):
                pending.append(linked)
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and after how long, a task is re-run after a transient error.

    Each retry calls ``func`` again with a fresh session, so only give a policy to work that is
    safe to repeat (idempotent, or committing its own progress and resuming from it).

    The wait uses *equal jitter*: the backoff cap for retry ``n`` is
    ``min(max_delay, base_delay * 2 ** (n - 1))`` and the delay is drawn uniformly from
    ``[cap / 2, cap]``. Unlike full jitter (``[0, cap]``), this never retries at once into a lock
    that is still held, and successive delays never shrink until the cap is reached.

    :param attempts: total attempts, the first included; ``1`` disables retrying.
    :param base_delay: the cap of the first retry's delay, in seconds.
    :param max_delay: the largest delay, in seconds.
    :param retry_on: decides whether an error is retryable; defaults to :func:`is_transient`.
    :raises ValidationError: if an argument is out of range, naming the argument.
    """

    attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 2.0
    retry_on: Callable[[BaseException], bool] = is_transient

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise ValidationError(f"attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValidationError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_delay < self.base_delay:
            raise ValidationError(
                f"max_delay must be >= base_delay, got max_delay={self.max_delay!r} "
                f"and base_delay={self.base_delay!r}"
            )
        if not callable(self.retry_on):
            raise ValidationError(f"retry_on must be callable, got {self.retry_on!r}")

    def delay(self, attempt: int) -> float:
        """The time to wait before a retry.

        :param attempt: the retry's number: 1 for the first retry (the second attempt).
        :returns: seconds, within ``[0, max_delay]``.
        :raises ValidationError: if ``attempt`` is not an int >= 1.
        """
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise ValidationError(f"attempt must be an int >= 1, got {attempt!r}")
        # Past 2**64 the cap is max_delay anyway; bounding the exponent avoids float overflow.
        cap = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 64))
        return cap / 2 + random.uniform(0, cap / 2)

    def retryable(self, exc: BaseException, attempts_made: int) -> bool:
        """Tell whether a task should run again after ``exc``.

        :param exc: the error the last attempt raised.
        :param attempts_made: how many attempts have run so far, the failed one included.
        :returns: True if attempts remain and ``retry_on(exc)`` accepts the error. Never True for
            :class:`asyncio.CancelledError`, whatever ``retry_on`` says.
        """
        if isinstance(exc, asyncio.CancelledError) or attempts_made >= self.attempts:
            return False
        return bool(self.retry_on(exc))


async def with_retries(
    policy: RetryPolicy | None,
    attempt: Callable[[], Awaitable[T]],
    *,
    label: str | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> T:
    """Await ``attempt()``; while it fails with an error ``policy`` calls transient, wait with
    jittered backoff and try again. With no policy, the first error is raised.

    ``label`` names the work in a warning logged before each retry; ``on_retry(error, failures
    so far, delay)`` runs there too (to count it, or log in its own words).
    """
    failures = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            failures += 1
            if policy is None or not policy.retryable(exc, failures):
                raise
            delay = policy.delay(failures)
            if label is not None:
                logger.warning("%s: transient error, retry %d of %d: %s", label, failures, policy.attempts - 1, exc)
            if on_retry is not None:
                on_retry(exc, failures, delay)
        await asyncio.sleep(delay)
