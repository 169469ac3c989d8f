"""The frozen records the public API returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["DatasetInfo", "DatasetVersion"]


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable, published version of a dataset."""

    name: str
    version: int
    rows: int
    columns: int
    created_at: datetime
    content_hash: str
    table_name: str
    task_id: str | None
    created_by: str
    #: True when the push that returned this found identical content and published nothing new.
    deduplicated: bool = False


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset: its description, tags, latest version and schema."""

    name: str
    description: str
    tags: dict[str, object]
    latest: DatasetVersion
    #: ``(column label, pandas dtype)`` for each column of the latest version.
    schema: list[tuple[object, str]] = field(default_factory=list)
    #: A SQL view that always shows the latest version's table.
    view_name: str = ""
    versions: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
