"""Publishing: the staged rows become the dataset's next version, in one transaction with the
version row, the dataset's latest pointer, its SQL view and the task's success."""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .. import _faults
from ..errors import VersionConflict
from ..models import DatasetVersion
from ..store import codec
from ..store.append import fit_checks, plan_append
from ..store.backends import ROW_ID, Backend
from ..store.catalog import datasets, tasks, utcnow, version_table_name, view_name
from ..store.catalog import versions as versions_table
from ..store.repository import find_dataset, find_version, point_latest, quote
from .handle import UploadTask
from .staging import let_go
from .validate import Request, check_append

__all__ = ["created_by", "dataset_changes", "publish", "record_success"]


def created_by() -> str:
    """Who publishes: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def dataset_changes(req: Request, dataset=None) -> dict[str, Any]:
    """The description and tags a push sets (only those given, and only if they differ)."""
    changes: dict[str, Any] = {}
    if req.description is not None and (dataset is None or dataset.description != req.description):
        changes["description"] = req.description
    if req.tags is not None and (dataset is None or dataset.tags != req.tags):
        changes["tags"] = req.tags
    return changes


async def record_success(session: AsyncSession, handle: UploadTask, version: DatasetVersion) -> DatasetVersion:
    """Write the task's success; part of the publish transaction, so both land or neither."""
    await session.execute(
        tasks.update()
        .where(tasks.c.id == handle.id)
        .values(
            status="succeeded",
            version=version.version,
            deduplicated=version.deduplicated,
            content_hash=version.content_hash,
            staging_table=None,
            rows_done=handle.rows_done,
            attempts=handle.attempts,
            finished_at=utcnow(),
            bytes_written=handle.bytes_written,
            peak_rows_per_s=handle._final_peak(),
        )
    )
    return version


async def publish(
    session: AsyncSession, backend: Backend, handle: UploadTask, req: Request, encoded, content_hash: str, stage: str
) -> DatasetVersion:
    """Turn the staging table into the next version, all in one transaction (the caller commits)."""
    now = utcnow()
    conn = await session.connection()
    # Publishers of one dataset take turns on its catalog row, so version numbers are
    # allocated without a read-then-write race, also across processes and machines.
    dataset = await find_dataset(session, req.name, for_update=True)
    manifest = encoded.manifest
    rows = encoded.nrows
    if dataset is None:
        # Another publisher may be creating the same dataset right now: the insert gives way.
        insert = backend.insert_if_absent(
            datasets,
            [datasets.c.name],
            name=req.name,
            description=req.description or "",
            tags=req.tags or {},
            created_at=now,
            updated_at=now,
            next_version=1,
            view_name="",
        )
        await session.execute(insert)
        dataset = await find_dataset(session, req.name, for_update=True)
        if not dataset.view_name:
            await session.execute(
                datasets.update().where(datasets.c.id == dataset.id).values(view_name=view_name(dataset.id, req.name))
            )
            dataset = await find_dataset(session, req.name, for_update=True)
    if dataset.latest_version is not None:
        if req.if_exists == "fail":
            raise VersionConflict(f"dataset {req.name!r} was created by another upload meanwhile and if_exists='fail'")
        if req.if_exists == "append":
            # Checked again here: another push may have published since this one was queued.
            latest = await find_version(session, dataset, reader=backend)
            check_append(req.name, latest.manifest, manifest)
            target = quote(conn, stage)
            # A column appended in another dtype keeps the previous one where its values fit.
            unfit = set()
            for column, condition in fit_checks(latest.manifest, manifest, lambda ident: quote(conn, ident)):
                if (await conn.exec_driver_sql(f"SELECT 1 FROM {target} WHERE {condition} LIMIT 1")).first() is not None:
                    unfit.add(column)
            plan = plan_append(latest.manifest, manifest, lambda ident: quote(conn, ident), backend, unfit=unfit)
            # The all-NULL column takes the type of the values it receives, and a native type a
            # general one (a database without column types has nothing to do).
            for column, sql_type, using in plan.retype:
                await backend.retype(conn, stage, column, sql_type, using)
            for column in plan.to_bytes:
                await backend.to_bytes(conn, stage, column)
            for marks, value, code in plan.add_marks:
                await conn.exec_driver_sql(f"ALTER TABLE {target} ADD COLUMN {quote(conn, marks)} BIGINT")
                await conn.exec_driver_sql(
                    f"UPDATE {target} SET {quote(conn, marks)} = {int(code)} WHERE {quote(conn, value)} IS NULL"
                )
            row_id = quote(conn, ROW_ID)
            prev = quote(conn, latest.table_name)
            names = ", ".join(quote(conn, column) for column, _ in plan.select_old)
            exprs = ", ".join(expr for _, expr in plan.select_old)
            # Previous rows get row ids up to 0, so they sort before the staged rows (1..n).
            await conn.exec_driver_sql(
                f"INSERT INTO {target} ({row_id}, {names}) "
                f"SELECT {row_id} - (SELECT COALESCE(MAX({row_id}), 0) FROM {prev}), {exprs} FROM {prev}"
            )
            manifest = plan.manifest
            rows = latest.rows + encoded.nrows
            content_hash = hashlib.sha256(f"{latest.content_hash}+{content_hash}".encode()).hexdigest()
    if manifest is not encoded.manifest or not isinstance(encoded, codec.EncodedFrame):
        # An append's combined manifest, or a stream's (known once it was read), is checked
        # here: what could not be read back is never published.
        codec.check_new_manifest(manifest, rows=rows, native_types=backend.capabilities.native_types)
    number = dataset.next_version
    table_name = version_table_name(dataset.id, number)
    await backend.seal(conn, stage, table_name)
    await conn.exec_driver_sql(f"ALTER TABLE {quote(conn, stage)} RENAME TO {quote(conn, table_name)}")
    by = created_by()
    await session.execute(
        versions_table.insert().values(
            dataset_id=dataset.id,
            version=number,
            table_name=table_name,
            rows=rows,
            columns=len(codec.schema(manifest)),
            manifest=manifest,
            content_hash=content_hash,
            created_at=now,
            created_by=by,
            task_id=handle.id,
        )
    )
    changes = {"latest_version": number, "next_version": number + 1, "updated_at": now, **dataset_changes(req)}
    await session.execute(datasets.update().where(datasets.c.id == dataset.id).values(**changes))
    await point_latest(session, dataset, table_name, manifest, backend)
    # Staged rows kept for a resume would now publish over a newer version: they go.
    kept = (
        await session.execute(
            select(tasks.c.id, tasks.c.staging_table).where(
                tasks.c.dataset == req.name, tasks.c.status == "interrupted", tasks.c.staging_table.is_not(None)
            )
        )
    ).all()
    await let_go(session, kept)
    version = DatasetVersion(
        name=req.name,
        version=number,
        rows=rows,
        columns=len(codec.schema(manifest)),
        created_at=now,
        content_hash=content_hash,
        table_name=table_name,
        task_id=handle.id,
        created_by=by,
    )
    version = await record_success(session, handle, version)
    await _faults.reached("publishing")
    return version

