"""Staging: the table an upload writes its rows into, chunk by chunk; taking over the rows an
interrupted upload of the same content left; and letting go of kept rows that can no longer be
resumed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..retry import RetryPolicy, with_retries
from ..store import codec
from ..store.backends import ROW_ID, Backend
from ..store.catalog import STAGE_PREFIX, datasets, stage_table_name, tasks, utcnow, versions
from ..store.engine import WriteGate, write_transaction
from ..store.repository import drop_table, quote
from ..tasks import run_to_completion

__all__ = ["DEFAULT_KEEP_INTERRUPTED_S", "Checkpoints", "Staging", "let_go"]

log = logging.getLogger("dsnotebook")

#: How long the committed staging rows of an interrupted upload are kept for a resume, in seconds.
DEFAULT_KEEP_INTERRUPTED_S = 7 * 24 * 3600.0


class Staging:
    """Creates, resumes and expires staging tables on one database."""

    def __init__(
        self,
        *,
        backend: Backend,
        write_sessions: async_sessionmaker,
        gate: WriteGate,
        retry: RetryPolicy,
        keep_interrupted: float = DEFAULT_KEEP_INTERRUPTED_S,
    ) -> None:
        self._backend = backend
        self._write = write_sessions
        self._gate = gate
        self._retry = retry
        self._keep_interrupted = keep_interrupted

    async def create(self, session: AsyncSession, stage: str, encoded: codec.EncodedFrame) -> None:
        """A new, empty staging table for ``encoded`` (replacing any left under that name)."""
        conn = await session.connection()
        await drop_table(conn, stage)
        table = self._backend.staging_table(stage, encoded.columns)
        await conn.run_sync(lambda sync: table.create(sync))

    async def staged_rows(self, session: AsyncSession, stage: str) -> int | None:
        """How many rows the staging table holds (an upload writes rows ``1..n``), or None where
        there is no such table, or it is not one an upload wrote."""
        conn = await session.connection()

        def columns(sync) -> list[str] | None:
            inspector = sa_inspect(sync)
            return [c["name"] for c in inspector.get_columns(stage)] if inspector.has_table(stage) else None

        found = await conn.run_sync(columns)
        if found is None or ROW_ID not in found:
            return None
        row_id = quote(conn, ROW_ID)
        return int((await conn.exec_driver_sql(f"SELECT COALESCE(MAX({row_id}), 0) FROM {quote(conn, stage)}")).scalar())

    async def resume(self, session: AsyncSession, task_id: str, dataset: str, content_hash: str, stage: str) -> int | None:
        """Take over the staged rows of an interrupted upload of the same content, if any.

        Returns how many rows are already staged (they become this upload's staging table), or
        None to start from an empty one. The take-over is one transaction: two uploads of the
        same content never both get the rows.
        """
        conn = await session.connection()
        candidates = (
            await session.execute(
                select(tasks.c.id, tasks.c.staging_table, tasks.c.error)
                .where(
                    tasks.c.dataset == dataset,
                    tasks.c.status == "interrupted",
                    tasks.c.content_hash == content_hash,
                    tasks.c.staging_table.is_not(None),
                    tasks.c.rows_done > 0,
                    tasks.c.id != task_id,
                )
                .order_by(tasks.c.rows_done.desc())
            )
        ).all()
        for old in candidates:
            if not await conn.run_sync(lambda sync, name=old.staging_table: sa_inspect(sync).has_table(name)):
                await session.execute(tasks.update().where(tasks.c.id == old.id).values(staging_table=None))
                continue
            table = quote(conn, old.staging_table)
            row_id = quote(conn, ROW_ID)
            # Taken before counting: an upload only presumed dead (its heartbeat late) might
            # still commit a chunk, which would then be counted and written twice. (A database
            # with one write lock already holds it in this transaction.)
            await self._backend.lock_staging(conn, old.staging_table)
            count, last = (await conn.exec_driver_sql(f"SELECT COUNT(*), COALESCE(MAX({row_id}), 0) FROM {table}")).one()
            if count != last:  # rows 1..n, as every upload writes them; anything else is not ours to trust
                continue
            claimed = await session.execute(
                tasks.update()
                .where(tasks.c.id == old.id, tasks.c.staging_table == old.staging_table)
                .values(
                    staging_table=None,
                    error=f"{old.error or 'interrupted'}; its {count:,} staged rows were resumed by upload {task_id}",
                )
            )
            if claimed.rowcount != 1:
                continue
            await drop_table(conn, stage)
            await conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {quote(conn, stage)}")
            await session.execute(tasks.update().where(tasks.c.id == task_id).values(rows_done=count))
            log.info("upload %s resumes upload %s of %r from row %d", task_id, old.id, dataset, count)
            return int(count)
        return None

    async def expire(self, *, everything: bool = False) -> int:
        """Drop the kept staging rows of interrupted uploads that can no longer be resumed.

        They expire once their dataset has a version newer than the upload, or ``keep_interrupted``
        seconds after the upload was interrupted. ``everything`` drops all of them now, and
        also any staging table no queued or running upload owns. Returns how many tables went.
        """

        async def expire() -> int:
            async with write_transaction(self._write, self._gate) as session:
                conn = await session.connection()
                ended_at = func.coalesce(tasks.c.finished_at, tasks.c.heartbeat_at, tasks.c.queued_at)
                kept = (
                    await session.execute(
                        select(tasks.c.id, tasks.c.dataset, tasks.c.staging_table, tasks.c.queued_at, ended_at.label("ended_at"))
                        .where(tasks.c.status == "interrupted", tasks.c.staging_table.is_not(None))
                    )
                ).all()
                newest: dict[str, datetime] = {}
                if kept:
                    query = (
                        select(datasets.c.name, func.max(versions.c.created_at))
                        .join(versions, versions.c.dataset_id == datasets.c.id)
                        .group_by(datasets.c.name)
                    )
                    newest = dict((await session.execute(query)).all())
                horizon = utcnow() - timedelta(seconds=self._keep_interrupted)

                def expired(r) -> bool:
                    newer = newest.get(r.dataset)  # catalog times come back aware (UTCDateTime)
                    return everything or r.ended_at <= horizon or (newer is not None and newer > r.queued_at)

                doomed = [r for r in kept if expired(r)]
                await let_go(session, doomed)
                dropped = len(doomed)
                if everything:
                    owned = {
                        stage_table_name(task_id)
                        for (task_id,) in (
                            await session.execute(select(tasks.c.id).where(tasks.c.status.in_(("queued", "running"))))
                        ).all()
                    }
                    names = await conn.run_sync(lambda sync: sa_inspect(sync).get_table_names())
                    for name in names:
                        if name.startswith(STAGE_PREFIX) and name not in owned:
                            await drop_table(conn, name)
                            dropped += 1
                return dropped

        dropped = await with_retries(self._retry, expire, label="dropping expired staging rows")
        if dropped:
            log.info("dropped the staging rows of %d interrupted upload(s)", dropped)
        return dropped

class Checkpoints:
    """The backend's housekeeping after each chunk (SQLite's WAL checkpoint), run beside the
    next chunk, one at a time."""

    def __init__(self, checkpoint: Callable[[], Awaitable[None]] | None) -> None:
        self._checkpoint = checkpoint
        self._running: asyncio.Task | None = None

    def start(self) -> None:
        if self._checkpoint is None or (self._running is not None and not self._running.done()):
            return
        self._running = asyncio.ensure_future(self._checkpoint())

    async def close(self) -> None:
        """Wait for the checkpoint in flight, even when cancelled: cut short, it would leave its
        connection half-reset. Its failure only delays the copying, so it is logged."""
        if self._running is None:
            return
        try:
            await run_to_completion(self._running)
        except Exception:  # noqa: BLE001 - missed housekeeping is done at the next chunk
            log.debug("housekeeping after a chunk failed", exc_info=True)


async def let_go(session: AsyncSession, kept) -> None:
    """Drop the staging tables kept for these interrupted uploads (rows with ``id`` and
    ``staging_table``), and record that they are gone."""
    for r in kept:
        await drop_table(session, r.staging_table)
        await session.execute(tasks.update().where(tasks.c.id == r.id).values(staging_table=None))


