"""One module per database, behind one seam (:class:`~dsnotebook.store.backends.base.Backend`).

:func:`backend_for` picks the module for a URL and refuses, at ``connect``, a database or driver
that no module supports. Nothing outside this package asks which database it is talking to.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ...errors import ConfigError, ValidationError
from ..engine import default_url, mask_text, mask_url
from ._file_modes import check_file_mode
from .base import ROW_ID, Backend, Capabilities, ChunkWriter, Rows
from .postgresql import PostgreSQLBackend
from .sqlite import SQLiteBackend

__all__ = ["BACKENDS", "ROW_ID", "Backend", "Capabilities", "ChunkWriter", "Rows", "backend_for", "supported_url_forms"]

#: The registered backends, by SQLAlchemy backend name.
BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (SQLiteBackend, PostgreSQLBackend)}

# Names people type by habit (a sync driver, or none), mapped to the backend that serves them.
_ALIASES = {"postgres": "postgresql"}
_SYNC_DRIVERS = {"pysqlite", "psycopg2", "pg8000", "psycopg2cffi"}


def supported_url_forms() -> str:
    """The URL forms of every registered backend, for messages."""
    return ", ".join(repr(form) for b in BACKENDS.values() for form in b.url_forms)


def backend_for(url: str | URL | None, *, schema: str | None = None, file_mode: int | None = None) -> Backend:
    """The backend for ``url`` (None: ``DSNOTEBOOK_URL`` or the per-user SQLite file).

    A URL without a driver, or with a sync driver people type by habit (``sqlite://``,
    ``postgresql://``, ``postgresql+psycopg2://``), gets the backend's async driver.

    Raises:
        ConfigError: the URL is malformed or empty, or names a database or an async driver that
            dsnotebook does not support (the message lists the supported forms), or is otherwise
            unusable for its backend (an in-memory SQLite database), or ``DSNOTEBOOK_UMASK`` is
            malformed, or has ``?schema=`` where the database has no schemas (SQLite) or names
            another schema than ``schema``.
        ValidationError: ``file_mode`` is not permission bits for a new database file, or is
            given for a database that is not a file (PostgreSQL); ``schema`` is not a schema
            name, or is given for a database without schemas (SQLite).
    """
    text = default_url() if url is None else url
    if isinstance(text, str) and not text.strip():
        raise ConfigError(
            "url: an empty string is not a database URL; pass e.g. 'sqlite+aiosqlite:///data.db' or None for the default"
        )
    try:
        parsed = text if isinstance(text, URL) else make_url(text)
    except ArgumentError as exc:
        raise ConfigError(
            f"url: {mask_text(str(text))!r} is not a database URL; expected one of {supported_url_forms()}"
        ) from exc
    parsed = _password_in_place(parsed)
    name = _ALIASES.get(parsed.get_backend_name(), parsed.get_backend_name())
    cls = BACKENDS.get(name)
    if cls is None:
        raise ConfigError(
            f"url: {mask_url(parsed)!r} names the database {parsed.get_backend_name()!r}, which dsnotebook "
            f"does not support; supported URL forms: {supported_url_forms()}"
        )
    driver = parsed.get_driver_name() if "+" in parsed.drivername else None
    if driver is None or driver in _SYNC_DRIVERS:
        parsed = parsed.set(drivername=f"{cls.name}+{cls.drivers[0]}")
    elif driver not in cls.drivers:
        raise ConfigError(
            f"url: {mask_url(parsed)!r} uses the driver {driver!r}, which dsnotebook does not support for "
            f"{cls.name}; supported URL forms: {supported_url_forms()}"
        )
    elif name != parsed.get_backend_name():
        parsed = parsed.set(drivername=f"{cls.name}+{driver}")
    if check_file_mode(file_mode) is not None and not cls.capabilities.file_modes:
        with_files = ", ".join(b.name for b in BACKENDS.values() if b.capabilities.file_modes)
        raise ValidationError(
            f"file_mode: applies to {with_files} database files only; {mask_url(parsed)!r} is a {cls.name} "
            "database, whose server decides who can read it: leave file_mode out"
        )
    if not cls.capabilities.schemas and (schema is not None or "schema" in parsed.query):
        with_schemas = ", ".join(b.name for b in BACKENDS.values() if b.capabilities.schemas)
        given, error = ("schema", ValidationError) if schema is not None else ("url", ConfigError)
        raise error(
            f"{given}: schemas are {with_schemas}'s; {mask_url(parsed)!r} is a {cls.name} database, which "
            f"keeps its datasets in its file: leave {'schema' if schema is not None else '?schema='} out"
        )
    return cls(cls.check_url(parsed), schema=schema, file_mode=file_mode)


def _password_in_place(url: URL) -> URL:
    """``url`` with its password where SQLAlchemy hides it, after the user name.

    A ``?password=`` moves there, so that no repr of the URL shows it. A password typed with an
    unencoded ``@`` (instead of ``%40``) is made whole again: SQLAlchemy ends it at the first
    ``@`` and takes the rest for part of the host, where reprs would show it and no connection
    could use it.

    Raises:
        ConfigError: the URL gives ``?password=`` more than once, with different values.
    """
    if url.password is not None and url.host is not None and "@" in url.host:
        rest, _, host = url.host.rpartition("@")
        url = url.set(password=f"{url.password}@{rest}", host=host)
    given = url.query.get("password")
    if given is None:
        return url
    if isinstance(given, tuple) and len(set(given)) == 1:
        given = given[0]
    if isinstance(given, tuple):
        raise ConfigError(f"url: {mask_url(url)!r} gives ?password= more than once; give the password once")
    # As libpq and asyncpg do, ?password= wins over a password after the user name.
    return url.difference_update_query(["password"]).set(password=given)
