"""One module per database, behind one seam (:class:`~dsnotebook.store.backends.base.Backend`).

:func:`backend_for` picks the module for a URL and refuses, at ``connect``, a database or driver
that no module supports. Nothing outside this package asks which database it is talking to.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ...errors import ConfigError
from ..engine import default_url, mask_text, mask_url
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
            unusable for its backend (an in-memory SQLite database).
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
    return cls(cls.check_url(parsed), schema=schema, file_mode=file_mode)
