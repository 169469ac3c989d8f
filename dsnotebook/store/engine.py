"""Database URLs, engines and the one boundary where driver errors become dsnotebook errors."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ..errors import ConfigError, DsnotebookError, UploadError

__all__ = [
    "WriteGate",
    "write_transaction",
    "DEFAULT_PATH",
    "default_url",
    "is_read_only",
    "is_sqlite",
    "mask_url",
    "open_engine",
    "resolve_url",
    "time_codecs",
    "translate",
]

#: Where the embedded default database lives, unless ``DSNOTEBOOK_URL`` says otherwise.
DEFAULT_PATH = Path("~/.dsnotebook/datasets.db")

#: How long a SQLite connection waits for a lock before it reports "database is locked".
SQLITE_BUSY_TIMEOUT_S = 5.0

# Sync drivers people type by habit, mapped to the async driver dsnotebook runs on.
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def default_url() -> str:
    """``DSNOTEBOOK_URL`` if set, else the per-user SQLite file at :data:`DEFAULT_PATH`."""
    env = os.environ.get("DSNOTEBOOK_URL", "").strip()
    if env:
        return env
    return f"sqlite+aiosqlite:///{DEFAULT_PATH.expanduser()}"


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def resolve_url(url: str | URL | None) -> URL:
    """Parse ``url`` (or the default) into an async SQLAlchemy URL.

    Raises:
        ConfigError: the URL is malformed, names an unknown driver, or is an in-memory SQLite URL.
    """
    text = default_url() if url is None else url
    if isinstance(text, str) and not text.strip():
        raise ConfigError("url: an empty string is not a database URL; pass e.g. 'sqlite+aiosqlite:///data.db' or None for the default")
    try:
        parsed = text if isinstance(text, URL) else make_url(text)
    except ArgumentError as exc:
        raise ConfigError(
            f"url: {_mask_text(str(text))!r} is not a database URL; expected something like "
            "'sqlite+aiosqlite:///path/to/data.db' or 'postgresql+asyncpg://user@host/db'"
        ) from exc
    name = parsed.drivername
    if name in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[name])
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(
            f"url: {mask_url(parsed)!r} is an in-memory SQLite database, which every connection "
            "sees empty; give a file path such as 'sqlite+aiosqlite:///data.db'"
        )
    return parsed


def _mask_text(text: str) -> str:
    """Mask ``user:password@`` in text that SQLAlchemy cannot parse."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", text)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def is_read_only(url: URL) -> bool:
    """A SQLite URL opened with ``?mode=ro`` (as in ``sqlite+aiosqlite:///file:data.db?mode=ro&uri=true``)."""
    mode = url.query.get("mode")
    return is_sqlite(url) and (mode if isinstance(mode, str) or mode is None else mode[-1]) == "ro"


def _sqlite_file(url: URL) -> Path:
    path = url.database or ""
    if path.startswith("file:"):
        path = path[5:].split("?", 1)[0]
    return Path(path).expanduser().resolve()


def _create_sqlite_file(path: Path) -> None:
    """Create the database file with WAL journaling; WAL is persistent, so this runs once."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot create the SQLite database at {str(path)!r}: {exc}") from exc


async def open_engine(url: URL, *, create: bool = True) -> AsyncEngine:
    """Create an engine for ``url`` on the running loop and check that the database answers.

    For SQLite the file is created on first use (``create=True``); afterwards it is always opened
    with ``mode=rw``, so a database deleted or moved underneath the hub raises an error instead of
    being silently recreated empty. Every connection gets a busy timeout, foreign keys and WAL.

    Raises:
        ConfigError: unknown driver, or the database cannot be reached or opened.
    """
    connect_url = url
    kwargs: dict = {}
    busy_timeout = SQLITE_BUSY_TIMEOUT_S
    if is_sqlite(url):
        busy_timeout = _busy_timeout(url)
        path = _sqlite_file(url)
        read_only = is_read_only(url)
        if not path.exists():
            if not create or read_only:
                raise ConfigError(f"the SQLite database {str(path)!r} does not exist")
            _create_sqlite_file(path)
        connect_url = url.set(database=f"file:{quote(str(path))}", query={"mode": "ro" if read_only else "rw", "uri": "true"})
        kwargs["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
    try:
        engine = create_async_engine(connect_url, **kwargs)
    except (NoSuchModuleError, ImportError, ArgumentError) as exc:
        raise ConfigError(
            f"url: the driver {url.drivername!r} of {mask_url(url)!r} is not available; use "
            "'sqlite+aiosqlite' (built in) or 'postgresql+asyncpg' (pip install 'dsnotebook[postgres]')"
        ) from exc
    except SQLAlchemyError as exc:
        raise ConfigError(f"url: {mask_url(url)!r} cannot be used: {exc}") from exc
    if is_sqlite(url):
        _install_sqlite_hooks(engine, busy_timeout)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except (DBAPIError, OSError) as exc:
        await engine.dispose()
        raise ConfigError(f"cannot connect to {mask_url(url)}: {_driver_message(exc)}") from exc
    return engine


def _busy_timeout(url: URL) -> float:
    """Seconds a SQLite connection waits for another writer's lock: the URL's ``?timeout=``, as
    with Python's ``sqlite3.connect``, or :data:`SQLITE_BUSY_TIMEOUT_S`."""
    raw = url.query.get("timeout")
    if raw is None:
        return SQLITE_BUSY_TIMEOUT_S
    try:
        value = float(raw if isinstance(raw, str) else raw[-1])
    except ValueError:
        value = -1.0
    if not 0 <= value < 86_400:
        raise ConfigError(f"url: timeout={raw!r} is not a number of seconds; use for example ?timeout=5")
    return value


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout: float) -> None:
    """SQLite pragmas per connection, and explicit transaction control.

    The driver's own implicit transactions are switched off so that SQLAlchemy's ``begin``
    event can start them. Connections whose execution options carry ``dsn_write=True`` start
    with ``BEGIN IMMEDIATE``: in WAL mode a deferred transaction that later upgrades to a write
    gets SQLITE_BUSY at once, and the busy timeout does not help.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:
        if conn.get_execution_options().get("dsn_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _driver_message(exc: BaseException) -> str:
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
    returned unchanged. A database that cannot be used at all gives a ``ConfigError``; any other
    failure an ``error``: an ``UploadError`` for uploads, a ``DatasetError`` for reads and deletes.
    """
    if isinstance(exc, DsnotebookError):
        return exc
    message = _driver_message(exc)
    low = message.lower()
    # A missing catalog table means another file than the one created; a missing data table is a
    # damaged dataset, reported as the error of whatever read it.
    lost_catalog = re.search(r"no such table: dsn_(meta|datasets|versions|tasks)\b", low) is not None
    if "unable to open database" in low or "readonly database" in low or lost_catalog:
        return ConfigError(
            f"{what} cannot be used: {message}. Was the database file moved, deleted, or opened read-only?"
        )
    if "database or disk is full" in low or "disk i/o error" in low:
        return error(f"{what}: the disk or database is full ({message})")
    return error(f"{what} failed: {message}")


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
    """A session in a write transaction, taken in turn through ``gate``; committed on success."""
    async with gate, sessions() as session, session.begin():
        yield session


# PostgreSQL's names of the time types whose values asyncpg otherwise turns into datetime objects.
_PG_TIME_TYPES = {"TIMESTAMP": "timestamp", "TIMESTAMPTZ": "timestamptz", "INTERVAL": "interval"}


def _first(value: tuple) -> int:
    return value[0]


def _interval_us(value: tuple) -> int:
    months, days, microseconds = value
    if months:
        raise ValueError(f"an interval of {months} months has no fixed length in microseconds")
    return days * 86_400_000_000 + microseconds


@asynccontextmanager
async def time_codecs(raw, sql_types: set[str]) -> AsyncIterator[None]:
    """Within the block, asyncpg passes TIMESTAMP, TIMESTAMPTZ and INTERVAL values as integers.

    ``raw`` is the pool connection of ``AsyncConnection.get_raw_connection()``. Writes take the
    tuples of asyncpg's ``tuple`` format (``(microseconds since 2000-01-01,)``, or ``(months, days,
    microseconds)`` for an interval); reads give the microseconds as one integer. A million
    datetime objects cost about a second to make and as much to take apart; these, milliseconds.

    Only the driver call inside the block may use the connection: the codecs are the
    connection's own, and SQLAlchemy's statements must never see them. They are put back however
    the block ends.
    """
    driver = raw.driver_connection
    names = [_PG_TIME_TYPES[t] for t in sorted(sql_types) if t in _PG_TIME_TYPES]
    changed: list[str] = []
    try:
        for name in names:
            decoder = _interval_us if name == "interval" else _first
            await driver.set_type_codec(name, schema="pg_catalog", encoder=tuple, decoder=decoder, format="tuple")
            changed.append(name)
        yield
    finally:
        # For built-in types asyncpg needs no query for this, so it also works on a connection
        # whose transaction has failed or whose statement was cancelled.
        for name in changed:
            await driver.reset_type_codec(name, schema="pg_catalog")
