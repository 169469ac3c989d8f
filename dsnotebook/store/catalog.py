"""The catalog: ``dsn_`` tables that describe datasets, versions and tasks.

Dataset names are data, never SQL: they live in ``dsn_datasets.name``. The tables that hold rows
get generated names (``dsn_data_<dataset id>_v<version>``, ``dsn_stage_<task id>``), and every
identifier is quoted by SQLAlchemy.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    inspect,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import ConfigError, VersionConflict
from .engine import doing, lock_wait_logged, mask_url

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = [
    "SCHEMA_VERSION",
    "STAGE_PREFIX",
    "datasets",
    "ensure_schema",
    "meta",
    "metadata",
    "open_catalog",
    "stage_table_name",
    "tasks",
    "utcnow",
    "version_table_name",
    "versions",
    "view_name",
]

#: The catalog layout this code reads and writes. A database with a newer one is refused.
SCHEMA_VERSION = 3

metadata = MetaData()


class UTCDateTime(TypeDecorator):
    """Timestamps stored as UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


meta = Table(
    "dsn_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

datasets = Table(
    "dsn_datasets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=dict),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("latest_version", Integer, nullable=True),
    # Version numbers are never reused while the dataset exists, even after deletes.
    Column("next_version", Integer, nullable=False, default=1),
    Column("view_name", Text, nullable=False),
)

versions = Table(
    "dsn_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset_id", Integer, ForeignKey("dsn_datasets.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("table_name", Text, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("columns", Integer, nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("task_id", String(32), nullable=True),
    UniqueConstraint("dataset_id", "version", name="uq_dsn_versions_dataset_version"),
)

tasks = Table(
    "dsn_tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("dataset", Text, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("if_exists", String(16), nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("rows_total", BigInteger, nullable=False, default=0),
    Column("rows_done", BigInteger, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("version", Integer, nullable=True),
    Column("deduplicated", Boolean, nullable=False, default=False),
    Column("content_hash", String(64), nullable=True),
    Column("staging_table", Text, nullable=True),
    Column("queued_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("owner_host", Text, nullable=False),
    Column("owner_pid", Integer, nullable=False),
    # Renewed by the owning process while the upload is queued or running (schema version 2).
    Column("heartbeat_at", UTCDateTime(), nullable=True),
    # The encoded bytes written so far, and the fastest rate over any second (schema version 3).
    Column("bytes_written", BigInteger, nullable=True),
    Column("peak_rows_per_s", Float, nullable=True),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def version_table_name(dataset_id: int, version: int) -> str:
    return f"dsn_data_{dataset_id}_v{version}"


STAGE_PREFIX = "dsn_stage_"


def stage_table_name(task_id: str) -> str:
    return f"{STAGE_PREFIX}{task_id}"


def view_name(dataset_id: int, name: str) -> str:
    """A readable view name for SQL users: ``dsn_latest_<slug>_<id>``, always unique by id."""
    slug = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")[:40]
    return f"dsn_latest_{slug}_{dataset_id}" if slug else f"dsn_latest_{dataset_id}"


def _catalog_state(conn: Connection) -> tuple[int | None, bool]:
    """The catalog's schema version (None: there is no catalog) and whether all its tables are there."""
    names = set(inspect(conn).get_table_names())
    complete = set(metadata.tables) <= names
    if meta.name not in names:
        return None, complete
    found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    return (None if found is None else int(found)), complete


def _refuse_newer(found: int) -> None:
    if found > SCHEMA_VERSION:
        raise VersionConflict(
            f"this database's catalog has schema version {found}, but this dsnotebook understands "
            f"up to {SCHEMA_VERSION}; upgrade dsnotebook to use it"
        )


async def open_catalog(engine: AsyncEngine, backend: Backend, *, create: bool = True) -> None:
    """Check the catalog, and create or migrate it only where it needs that.

    The check only reads, so opening a database whose catalog is up to date never waits for
    another process's write lock (on SQLite, for a writer holding ``BEGIN IMMEDIATE``). A
    missing catalog is created, and an older one migrated, in a write transaction.

    Args:
        create: False never creates a catalog: a database without one is refused. An older
            catalog is still migrated, since this dsnotebook could not use it otherwise.

    Raises:
        ConfigError: ``create`` is False and the database holds no dsnotebook catalog, or the
            catalog must be created or migrated and the database role may not write (see
            :attr:`~dsnotebook.store.backends.Backend.write_refusal`).
        VersionConflict: the catalog was written by a newer dsnotebook.
    """
    async with engine.connect() as conn:
        found, complete = await conn.run_sync(_catalog_state)
    if found is None and not create:
        raise ConfigError(
            f"{mask_url(backend.url)} holds no dsnotebook catalog (no {meta.name} table); "
            "the first push to it creates one"
        )
    if found is not None:
        _refuse_newer(found)
        if found == SCHEMA_VERSION and complete:
            return
    if backend.write_refusal is not None:
        if found is None:
            needs = "no dsnotebook catalog"
        elif found < SCHEMA_VERSION:
            needs = f"a catalog of schema version {found}, which this dsnotebook must migrate to {SCHEMA_VERSION}"
        else:
            needs = "an incomplete dsnotebook catalog"
        raise ConfigError(f"{mask_url(backend.url)} holds {needs}, and {backend.write_refusal}")
    with doing(f"{'migrating' if found is not None else 'creating'} the catalog of {mask_url(backend.url)}"):
        async with engine.execution_options(dsn_write=True).begin() as conn:
            await ensure_schema(conn, backend)


async def ensure_schema(conn: AsyncConnection, backend: Backend) -> None:
    """Create the catalog if missing, refuse a newer one, migrate an older one, in the
    transaction of ``conn`` (a write transaction).

    Raises:
        VersionConflict: the database was written by a newer dsnotebook.
    """
    with lock_wait_logged("the catalog lock"):
        await backend.lock_catalog(conn)
    await conn.run_sync(metadata.create_all)
    found = (await conn.execute(select(meta.c.value).where(meta.c.key == "schema_version"))).scalar()
    if found is None:
        await conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        return
    _refuse_newer(int(found))
    # Older catalogs are migrated one step per version, ending with the update below.
    # Each version since 1 only added columns to dsn_tasks: add those the table lacks.
    if int(found) < SCHEMA_VERSION:
        present = await conn.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns(tasks.name)})
        for column in tasks.columns:
            if column.name not in present:
                column_type = column.type.compile(dialect=conn.dialect)
                await conn.exec_driver_sql(f"ALTER TABLE {tasks.name} ADD COLUMN {column.name} {column_type}")
    if int(found) < SCHEMA_VERSION:
        await conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
