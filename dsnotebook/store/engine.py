"""The default URL, masked URLs, the write gate, and the one boundary where driver errors
become dsnotebook errors. What differs per database lives in :mod:`dsnotebook.store.backends`."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..errors import ConfigError, DsnotebookError, UploadError
from ..tasks import release_cancelled_frames, rollback_keeping_a_cancel, run_to_completion

__all__ = [
    "DEFAULT_PATH",
    "LOCK_WAIT_LOG_S",
    "WriteGate",
    "default_url",
    "doing",
    "driver_message",
    "lock_wait_logged",
    "mask_text",
    "mask_url",
    "translate",
    "write_transaction",
]

log = logging.getLogger("dsnotebook")

#: Where the embedded default database lives, unless ``DSNOTEBOOK_URL`` says otherwise.
DEFAULT_PATH = Path("~/.dsnotebook/datasets.db")


def default_url() -> str:
    """``DSNOTEBOOK_URL`` if set, else the per-user SQLite file at :data:`DEFAULT_PATH`."""
    env = os.environ.get("DSNOTEBOOK_URL", "").strip()
    if env:
        return env
    return f"sqlite+aiosqlite:///{DEFAULT_PATH.expanduser()}"


# A password given as a query parameter, which asyncpg and libpq both take.
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&\s'\"]*", re.IGNORECASE)


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``: the one after the user name, and
    one given as ``?password=``."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    if parsed.password is not None and parsed.host is not None and "@" in parsed.host:
        # An "@" typed unencoded in the password (instead of %40): SQLAlchemy ends the password at
        # the first "@" and takes the rest for part of the host.
        parsed = parsed.set(host=parsed.host.rpartition("@")[2])
    return _QUERY_PASSWORD.sub(r"\1***", parsed.render_as_string(hide_password=True))


def mask_text(text: str) -> str:
    """Mask the passwords of URLs in text that SQLAlchemy cannot parse (a malformed URL, a
    command line): in each word with an ``@``, whatever lies between the ``:`` after the user
    name and the last ``@`` (a password typed unencoded may hold ``/`` or ``@``), and the value
    of ``password=``."""
    return _QUERY_PASSWORD.sub(r"\1***", re.sub(r"\S*@\S*", _mask_userinfo, text))


def _mask_userinfo(match: re.Match[str]) -> str:
    word = match.group(0)
    # The user name starts after the scheme's "://" (or ":/", a slash short), else at the start.
    scheme = re.match(r"[^:/@\s]*:/{1,3}", word)
    start = scheme.end() if scheme is not None else 0
    at = word.rfind("@")
    colon = word.find(":", start, at)
    if at < start or colon < 0:
        return word
    return word[: colon + 1] + "***" + word[at:]


def driver_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    # SQLAlchemy's asyncpg adapter prefixes the driver's class: "<class 'asyncpg…'>: message".
    message = re.sub(r"^<class '[^']+'>:\s*", "", str(orig).strip())
    if type(orig).__module__ == "builtins" and not isinstance(orig, OSError):
        # Not the driver's: a KeyError's message alone is just the key.
        return f"{type(orig).__name__}: {message}" if message else type(orig).__name__
    return message or type(orig).__name__


def translate(exc: BaseException, *, what: str = "the database", error: type[DsnotebookError] = UploadError) -> DsnotebookError:
    """Map a driver error to the dsnotebook error a user should see.

    Use as ``raise translate(exc) from exc``. Errors that are already dsnotebook errors are
    returned unchanged. A database that cannot be used at all gives a ``ConfigError``, and so does
    one that refuses the database role a right (PostgreSQL's "permission denied for table …",
    "must be owner of view …"): the message says which right on which object. Any other failure
    gives an ``error``: an ``UploadError`` for uploads, a ``DatasetError`` for reads and deletes.
    """
    if isinstance(exc, DsnotebookError):
        return exc
    message = driver_message(exc)
    denied = _denied(exc, message)
    if denied is not None:
        return ConfigError(f"permission denied for {what}: {denied}")
    low = message.lower()
    # A missing catalog table means another file than the one created; a missing data table is a
    # damaged dataset, reported as the error of whatever read it.
    lost_catalog = re.search(r"no such table: dsn_(meta|datasets|versions|tasks)\b", low) is not None
    if "unable to open database" in low or "readonly database" in low or lost_catalog:
        return ConfigError(
            f"{what} cannot be used: {message}. Was the database file moved, deleted, or opened read-only?"
        )
    if "database or disk is full" in low or "disk i/o error" in low:
        return error(f"{what} failed: the disk or the database is full; free some space and try again")
    return error(f"{what} failed: {message}")


# PostgreSQL's words for a right the role lacks (SQLSTATE 42501), and for an object only its owner
# may alter, replace or drop.
_DENIED = re.compile(r"permission denied for (schema|table|view|sequence|relation|database) (\S+)")
_NOT_OWNER = re.compile(r"must be owner of (table|view|relation|sequence|schema) (\S+)")


def _right(kind: str, name: str, statement: str) -> str:
    """The right on ``kind`` ``name`` that ``statement`` needs."""
    low = " ".join(statement.lower().replace("(", " ").split())
    if kind in ("schema", "database"):
        return f"{'CREATE' if low.startswith('create') else 'USAGE'} on {kind} {name}"
    if kind == "sequence":
        return f"USAGE on sequence {name}"
    if low.startswith("copy"):
        verb = "SELECT" if " to stdout" in low else "INSERT"
    elif low.startswith(("select", "with")):
        verb = "UPDATE" if " for update" in low else "SELECT"
    elif low.startswith(("insert", "update", "delete")):
        verb = low.split(None, 1)[0].upper()
    else:
        return f"a right on {kind} {name}"
    return f"{verb} on {kind} {name}"


def _denied(exc: BaseException, message: str) -> str | None:
    """What the database role may not do, in words, if ``exc`` is PostgreSQL refusing it."""
    found = _DENIED.search(message)
    if found is not None:
        # SQLAlchemy keeps the statement; ADBC's message ends with it.
        statement = getattr(exc, "statement", None) or message.partition("Query was:")[2]
        kind, name = found.groups()
        owner = "database's" if kind == "database" else "schema's"
        if kind in ("schema", "database"):
            hint = ""
        elif kind == "sequence":
            hint = " (GRANT USAGE ON ALL SEQUENCES IN SCHEMA …)"
        else:
            hint = (
                " (GRANT … ON ALL TABLES IN SCHEMA covers the tables there now, ALTER DEFAULT PRIVILEGES "
                "FOR ROLE <the role that pushes> those of versions pushed later)"
            )
        return f"the database role lacks {_right(kind, name, statement)}; ask the {owner} owner to grant it{hint}"
    found = _NOT_OWNER.search(message)
    if found is not None:
        kind, name = found.groups()
        return (
            f"the database role does not own {kind} {name}: PostgreSQL lets only the role "
            "that created it, or a member of that role, replace or drop it; push and delete as that role"
        )
    return None


#: A wait for a database lock longer than this many seconds is logged at INFO.
LOCK_WAIT_LOG_S = 1.0

# What the current task is doing, for the lock-wait log; unset, the task's name says it.
_doing: ContextVar[str | None] = ContextVar("dsnotebook_doing", default=None)


@contextmanager
def doing(what: str) -> Iterator[None]:
    """Name the work of the enclosed block (``"marking the uploads of ended processes
    interrupted"``) for the log lines of :func:`lock_wait_logged`."""
    token = _doing.set(what)
    try:
        yield
    finally:
        _doing.reset(token)


def _who() -> str:
    what = _doing.get()
    if what is None:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        what = task.get_name() if task is not None else "a connection"
    return f"{what} (process {os.getpid()})"


@contextmanager
def lock_wait_logged(lock: str) -> Iterator[None]:
    """Log at INFO when the enclosed block, which waits for ``lock`` (say "the write lock of
    /data/team.db"), takes longer than :data:`LOCK_WAIT_LOG_S`.

    The first line is logged while the block still waits, so a stalled call says why at once;
    a second one when it ends, with the time it waited. Who waits is the work named by
    :func:`doing`, or else the asyncio task's name, with the process id. Without a running
    event loop only the second line is logged.
    """
    who = _who()
    started = time.monotonic()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def still_waiting() -> None:
        log.info("%s has waited %.1f s so far for %s, which another connection holds", who, time.monotonic() - started, lock)

    timer = loop.call_later(LOCK_WAIT_LOG_S, still_waiting) if loop is not None else None
    try:
        yield
    except BaseException:
        waited = time.monotonic() - started
        if waited > LOCK_WAIT_LOG_S:
            log.info("%s stopped waiting for %s after %.1f s", who, lock, waited)
        raise
    else:
        waited = time.monotonic() - started
        if waited > LOCK_WAIT_LOG_S:
            log.info("%s got %s after %.1f s", who, lock, waited)
    finally:
        if timer is not None:
            timer.cancel()


class WriteGate:
    """The writers of one hub take turns, first come, first served, when the database has a single
    write lock (SQLite).

    SQLite's busy handler polls with growing sleeps. A writer waiting there, such as a push
    recording its task, almost never wins against an upload that begins its next chunk the
    moment the previous one commits: a push behind a running upload took 1.4 to 2.4 s. Writers of
    the same hub queue on an :class:`asyncio.Lock` instead, which is fair, so such a push waits
    for one chunk at most. Other processes still meet at SQLite's own lock. On other databases
    the gate is always open.
    """

    def __init__(self, exclusive: bool) -> None:
        self._lock = asyncio.Lock() if exclusive else None

    async def __aenter__(self) -> None:
        if self._lock is not None:
            await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()


@asynccontextmanager
async def write_transaction(sessions: async_sessionmaker, gate: WriteGate) -> AsyncIterator[AsyncSession]:
    """A session in a write transaction, taken in turn through ``gate``; committed on success.

    The commit is never cut short: it ends by handing the connection back to the pool, which
    resets it with a rollback, and a cancel landing in that rollback would leave the connection
    half returned (SQLAlchemy logs "Exception during reset"). A cancel that arrives while the
    transaction commits or rolls back is raised once that has ended.
    """
    async with gate, sessions() as session:
        try:
            yield session
        except BaseException as exc:
            # A cancelled statement's cursor keeps SQLite's write lock until it is freed.
            release_cancelled_frames(exc)
            await rollback_keeping_a_cancel(session, exc)
            raise
        await run_to_completion(session.commit())
