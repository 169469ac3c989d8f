"""The dsnotebook error tree.

Every error the library raises on purpose derives from :class:`DsnotebookError`::

    DsnotebookError
     ├── ConfigError            bad URL, unknown driver, unreachable or unusable database
     ├── DatasetError
     │    ├── DatasetNotFound   unknown dataset or version (suggests close names)
     │    ├── VersionConflict   if_exists="fail" on an existing dataset, a newer catalog, ...
     │    └── SchemaMismatch    append with added, missing or retyped columns
     ├── UploadError            an upload failed; chained to the cause (``raise ... from``)
     │    └── UploadCancelled   the upload was cancelled
     ├── ValidationError        bad input, naming the argument or column (also a ValueError)
     └── UsageError             the API was used in a way that cannot work
          ├── HubClosed         the hub was closed
          └── WaitTimeout       ``wait(timeout=...)`` expired (also a TimeoutError)

Driver errors (SQLAlchemy, sqlite3, asyncpg) are translated into this tree at one boundary,
:func:`dsnotebook.store.engine.translate`, always with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatasetError",
    "DatasetNotFound",
    "DsnotebookError",
    "HubClosed",
    "SchemaMismatch",
    "UploadCancelled",
    "UploadError",
    "UsageError",
    "ValidationError",
    "VersionConflict",
    "WaitTimeout",
]


class DsnotebookError(Exception):
    """Base class of every error dsnotebook raises on purpose."""


class ConfigError(DsnotebookError):
    """The database URL or configuration cannot be used."""


class DatasetError(DsnotebookError):
    """Something is wrong with a named dataset."""


class DatasetNotFound(DatasetError, LookupError):
    """No dataset (or version) exists under the given name."""


class VersionConflict(DatasetError):
    """The dataset's state conflicts with the request (for example ``if_exists="fail"``)."""


class SchemaMismatch(DatasetError):
    """An append does not match the schema of the latest version.

    ``hint``, when given, ends the message (after ". "); it is also kept apart, so that the
    command line can say the same in its own syntax.
    """

    def __init__(self, message: str, *, added=(), missing=(), retyped=(), hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message}. {hint}")
        self.added = list(added)
        self.missing = list(missing)
        self.retyped = list(retyped)
        self.hint = hint


class UploadError(DsnotebookError):
    """An upload failed. The cause is chained as ``__cause__``."""

    def __init__(self, message: str, *, task_id: str | None = None, dataset: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.dataset = dataset


class UploadCancelled(UploadError):
    """The upload was cancelled; nothing was published."""


class ValidationError(DsnotebookError, ValueError):
    """Bad input. The message names the argument or column and what would be accepted."""


class UsageError(DsnotebookError):
    """The API was used in a way that cannot work."""


class HubClosed(UsageError):
    """The hub has been closed."""


class WaitTimeout(UsageError, TimeoutError):
    """``wait(timeout=...)`` expired. The task keeps running."""
