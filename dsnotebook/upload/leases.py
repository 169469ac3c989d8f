"""Leases: which uploads still have a live process behind them.

Every hub renews the heartbeat of its own running and queued uploads four times per lease, and
marks as ``interrupted`` the uploads whose process is gone: on this host, a process that no longer
runs; on another host, whose processes cannot be checked from here, one whose heartbeat is older
than the lease. An interrupted upload keeps its committed staging rows for a resume.

This housekeeping runs in the background: a first pass as soon as the hub opens, then four
times per lease. Each pass reads first and takes the database's write lock only when it has
something to write, so opening a hub never waits for another process's writes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import psutil
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from ..retry import RetryPolicy, with_retries
from ..store.catalog import tasks, utcnow
from ..store.engine import WriteGate, doing, write_transaction
from ..store.repository import drop_table
from .service import DatasetUploadService, owner

__all__ = ["DEFAULT_LEASE_S", "Leases", "process_alive"]

log = logging.getLogger("dsnotebook")

#: Seconds without a heartbeat after which another machine's queued or running upload counts as
#: interrupted. Its owner renews the heartbeat four times per lease.
DEFAULT_LEASE_S = 60.0

# How much later than its upload's queued_at a process may seem to have started and still be its
# owner. Linux derives a process's start time from the boot time in whole seconds, so the two
# clocks disagree by up to a second; a pid reused within this margin is not recognised.
_START_SLACK_S = 2.0

_ACTIVE = ("queued", "running")


def process_alive(pid: int, queued_at: datetime) -> bool:
    """Whether the process of this host that queued an upload at ``queued_at`` still runs.

    A zombie (a process that ended and that its parent has not reaped yet) has ended. A process
    with that pid that started after the upload was queued is another one, which got the pid of
    the ended owner. A process this user may not inspect counts as running.
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= queued_at.timestamp() + _START_SLACK_S
    except psutil.NoSuchProcess:  # psutil.ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True


class Leases:
    """The heartbeats of one hub's uploads, and the marking of other processes' dead ones.

    Args:
        uploads: the hub's upload service (its live uploads, and the kept staging rows).
        read_sessions, write_sessions: the hub's session factories.
        gate: the hub's write gate.
        lease: see :data:`DEFAULT_LEASE_S`.
        retry: the policy for transient errors (a lock held past the busy timeout).
        writable: False for a database opened read-only, or whose role may only read: nothing
            is ever written then (other processes' ended uploads stay as they are listed).
    """

    def __init__(
        self,
        uploads: DatasetUploadService,
        read_sessions: async_sessionmaker,
        write_sessions: async_sessionmaker,
        gate: WriteGate,
        *,
        lease: float = DEFAULT_LEASE_S,
        retry: RetryPolicy | None = None,
        writable: bool = True,
    ) -> None:
        self._uploads = uploads
        self._read = read_sessions
        self._write = write_sessions
        self._gate = gate
        self._lease = lease
        self._retry = retry
        self._writable = writable
        self._first_pass = asyncio.Event()
        #: The error that ended the first pass, if one did.
        self.first_error: BaseException | None = None

    async def first_pass(self, timeout: float | None = None) -> bool:
        """Wait for the first pass of :meth:`keep_alive` to end (done, failed or cancelled);
        False if ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(self._first_pass.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def mark_interrupted(self) -> int:
        """Mark the uploads whose process is gone as interrupted; returns how many.

        On this host, a process that no longer runs is gone. For another host, whose processes
        cannot be checked from here, an upload is gone once its heartbeat is older than the lease.
        The uploads are read without a write lock, which is taken only when some are gone.
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
        active = tasks.c.status.in_(_ACTIVE)

        def gone(r) -> bool:
            if r.owner_host == host:
                return not process_alive(r.owner_pid, r.queued_at)
            return (r.heartbeat_at or r.queued_at) < stale

        async with self._read() as session:
            rows = (await session.execute(select(*columns).where(active))).all()
        ids = [r.id for r in rows if gone(r)]
        if not ids or not self._writable:
            return 0
        with doing("marking the uploads of ended processes interrupted"):
            async with write_transaction(self._write, self._gate) as session:
                # Locked and read again: a process killed just after it sent the commit of its
                # publish is gone, yet the database may apply that commit only now. The lock
                # waits for it, and a row it has marked succeeded no longer matches.
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
        return len(dead)

    async def _anything_kept(self) -> bool:
        """Whether an interrupted upload keeps staging rows (read without a write lock)."""
        kept = select(tasks.c.id).where(tasks.c.status == "interrupted", tasks.c.staging_table.is_not(None)).limit(1)
        async with self._read() as session:
            return (await session.execute(kept)).first() is not None

    async def _sweep(self) -> None:
        """One pass: renew this hub's heartbeats, mark dead uploads, let go of expired rows."""
        ids = [handle.id for handle in self._uploads.handles()]
        if ids and self._writable:
            with doing("renewing the heartbeats of this hub's uploads"):
                async with write_transaction(self._write, self._gate) as session:
                    await session.execute(
                        tasks.update().where(tasks.c.id.in_(ids), tasks.c.status.in_(_ACTIVE)).values(heartbeat_at=utcnow())
                    )
        await with_retries(self._retry, self.mark_interrupted, label="marking the uploads of ended processes interrupted")
        if self._writable and await self._anything_kept():
            with doing("dropping expired staging rows"):
                await self._uploads.expire_staging()

    async def keep_alive(self) -> None:
        """Forever: at once, then four times per lease, renew the heartbeat of this hub's
        uploads, mark other processes' dead ones, and let go of kept staging rows that expired.

        The first pass runs as soon as the hub opens; :meth:`first_pass` waits for it. A
        transient error is retried within the pass; a pass that fails anyway is tried again at
        the next beat (the lease allows four).
        """
        interval = self._lease / 4
        try:
            await self._sweep()
        except Exception as exc:  # noqa: BLE001 - reported to whoever waits for the pass, and retried at the next beat
            self.first_error = exc
            log.warning("the housekeeping after connecting failed (it is tried again in %g s): %s", interval, exc, exc_info=True)
        finally:
            self._first_pass.set()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._sweep()
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one; the lease allows four
                log.debug("heartbeat failed", exc_info=True)
