"""Leases: which uploads still have a live process behind them.

Every hub renews the heartbeat of its own running and queued uploads four times per lease, and
marks as ``interrupted`` the uploads whose process is gone: on this host, a process that no longer
exists; on another host, whose processes cannot be checked from here, one whose heartbeat is older
than the lease. An interrupted upload keeps its committed staging rows for a resume.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from ..store.catalog import tasks, utcnow
from ..store.engine import WriteGate, write_transaction
from ..store.repository import drop_table
from .service import DatasetUploadService, owner

__all__ = ["DEFAULT_LEASE_S", "Leases"]

log = logging.getLogger("dsnotebook")

#: Seconds without a heartbeat after which another machine's queued or running upload counts as
#: interrupted. Its owner renews the heartbeat four times per lease.
DEFAULT_LEASE_S = 60.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Leases:
    """The heartbeats of one hub's uploads, and the marking of other processes' dead ones."""

    def __init__(
        self, uploads: DatasetUploadService, write_sessions: async_sessionmaker, gate: WriteGate, *, lease: float = DEFAULT_LEASE_S
    ) -> None:
        self._uploads = uploads
        self._write = write_sessions
        self._gate = gate
        self._lease = lease

    async def mark_interrupted(self) -> None:
        """Mark the uploads whose process is gone as interrupted.

        On this host, a process that no longer exists is gone. For another host, whose processes
        cannot be checked from here, an upload is gone once its heartbeat is older than the lease.
        """
        host, _pid = owner()
        stale = utcnow() - timedelta(seconds=self._lease)
        columns = (
            tasks.c.id,
            tasks.c.owner_host,
            tasks.c.owner_pid,
            tasks.c.staging_table,
            tasks.c.rows_done,
            tasks.c.heartbeat_at,
            tasks.c.queued_at,
        )
        active = tasks.c.status.in_(("queued", "running"))
        async with write_transaction(self._write, self._gate) as session:
            rows = (await session.execute(select(*columns).where(active))).all()

            def gone(r) -> bool:
                if r.owner_host == host:
                    return not _pid_alive(r.owner_pid)
                return (r.heartbeat_at or r.queued_at) < stale

            dead = [r for r in rows if gone(r)]
            if dead:
                # Locked and read again: a process killed just after it sent the commit of its
                # publish is gone, yet the database may apply that commit only now. The lock
                # waits for it, and a row it has marked succeeded no longer matches.
                ids = [r.id for r in dead]
                dead = (await session.execute(select(*columns).where(tasks.c.id.in_(ids), active).with_for_update())).all()
            for r in dead:
                # Committed staging rows stay for a resume (see Staging.expire); a staging table
                # without any is of no use. A chunk's rows are committed before its progress, so
                # the table may hold one chunk more than the progress says: it is what counts.
                staged = await self._uploads.staging.staged_rows(session, r.staging_table) if r.staging_table else None
                rows_done = r.rows_done if staged is None else staged
                keep = r.staging_table if rows_done > 0 else None
                if r.staging_table and keep is None:
                    await drop_table(session, r.staging_table)
                await session.execute(
                    tasks.update()
                    .where(tasks.c.id == r.id)
                    .values(
                        status="interrupted",
                        error="the process running this upload ended before it finished",
                        staging_table=keep,
                        rows_done=rows_done,
                        finished_at=utcnow(),
                    )
                )
        if dead:
            log.info("marked %d upload(s) of ended processes as interrupted", len(dead))

    async def keep_alive(self) -> None:
        """Forever: renew the heartbeat of this hub's uploads, mark other processes' dead ones,
        and let go of kept staging rows that expired."""
        interval = self._lease / 4
        while True:
            await asyncio.sleep(interval)
            try:
                ids = [handle.id for handle in self._uploads.handles()]
                if ids:
                    async with write_transaction(self._write, self._gate) as session:
                        await session.execute(
                            tasks.update()
                            .where(tasks.c.id.in_(ids), tasks.c.status.in_(("queued", "running")))
                            .values(heartbeat_at=utcnow())
                        )
                await self.mark_interrupted()
                await self._uploads.expire_staging()
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one; the lease allows four
                log.debug("heartbeat failed", exc_info=True)
