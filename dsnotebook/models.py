"""The frozen records the public API returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["DatasetInfo", "DatasetVersion", "HubStatus", "TaskStats"]

#: How a figure stands against its threshold: ``"warn"`` is shown amber, ``"critical"`` red.
Level = Literal["ok", "warn", "critical"]


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


@dataclass(frozen=True)
class HubStatus:
    """What a hub's background work costs right now; see :meth:`~dsnotebook.Hub.status`.

    Sizes are in bytes. A figure the database cannot give is None.
    """

    taken_at: datetime
    #: This hub's uploads since it opened, by status.
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    #: Rows per second of the running uploads together.
    rows_per_s: float
    #: Estimated bytes the queued and running uploads have still to write.
    queued_bytes: int
    #: How late the library's event loop wakes up, median and 99th percentile over the last minute.
    loop_lag_p50_s: float | None
    loop_lag_p99_s: float | None
    #: This process's resident memory and CPU use (100 is one core busy).
    rss_bytes: int
    cpu_percent: float
    #: The memory this process may use: its cgroup's limit if there is one, else the machine's.
    memory_limit_bytes: int
    #: SQLite: the file and its write-ahead log; PostgreSQL: ``pg_database_size``.
    database_bytes: int | None
    #: PostgreSQL: dsnotebook's own tables (catalog, versions, staging); None on SQLite.
    tables_bytes: int | None
    #: Rows kept in the staging tables of interrupted uploads, for a resume.
    staging_bytes: int
    #: Free space on the database's filesystem (SQLite only: a server's disk cannot be seen).
    free_disk_bytes: int | None

    @property
    def memory_state(self) -> Level:
        """``"warn"`` above 80 % of the memory limit, ``"critical"`` above 90 %."""
        used = self.rss_bytes / self.memory_limit_bytes if self.memory_limit_bytes else 0.0
        return "critical" if used > 0.9 else "warn" if used > 0.8 else "ok"

    @property
    def disk_state(self) -> Level:
        """``"warn"`` when the free disk is below twice the bytes still to write, ``"critical"``
        below those bytes; ``"ok"`` when the free space cannot be seen."""
        if self.free_disk_bytes is None or self.queued_bytes == 0:
            return "ok"
        if self.free_disk_bytes < self.queued_bytes:
            return "critical"
        return "warn" if self.free_disk_bytes < 2 * self.queued_bytes else "ok"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values: the fields, the two states, and ``taken_at`` in ISO-8601."""
        values = asdict(self)
        values["taken_at"] = self.taken_at.isoformat()
        values["memory_state"] = self.memory_state
        values["disk_state"] = self.disk_state
        return values


@dataclass(frozen=True)
class TaskStats:
    """Execution-time statistics of a :class:`~dsnotebook.tasks.BackgroundTaskService` over its
    lifetime: counts by status, and the queue wait and run time of the tasks that ended, in
    seconds (None before any task has)."""

    counts: dict[str, int]
    wait_mean_s: float | None
    wait_p50_s: float | None
    wait_p95_s: float | None
    run_mean_s: float | None
    run_p50_s: float | None
    run_p95_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
