"""The handle of one upload: live numbers, ``wait()``, ``await``, ``cancel()``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from .. import _waiting
from .._listeners import log as listener_log, report_failure
from ..errors import UploadCancelled, UsageError, ValidationError, WaitTimeout
from ..models import DatasetVersion
from ..progress import Listeners, Progress, ProgressListener, format_status
from ..store.catalog import utcnow
from ..tasks import TERMINAL_STATUSES

__all__ = ["RETRYABLE_STATUSES", "UploadTask"]

#: Statuses from which an upload can be started again with the same frame and options.
RETRYABLE_STATUSES = frozenset({"failed", "cancelled", "interrupted"})


class UploadTask:
    """The handle of one upload: live numbers, ``wait()``, ``await``, ``cancel()``.

    Its attributes are updated on the loop that runs the upload and can be read from any thread.
    """

    def __init__(
        self, *, task_id: str, dataset: str, rows_total: int, loop: asyncio.AbstractEventLoop, bytes_total: int = 0
    ) -> None:
        self.id = task_id
        self.dataset = dataset
        self.rows_total = rows_total
        #: The encoded bytes of all its rows (an estimate; see ``EncodedFrame.estimated_nbytes``).
        self.bytes_total = bytes_total
        #: The fastest rate over any second of the upload so far (None until a second has passed).
        self.peak_rows_per_s: float | None = None
        self._rate_mark: tuple[float, int] | None = None
        #: The id of the upload this one starts again (``hub.retry``), or None.
        self.retry_of: str | None = None
        #: The upload that started this one again, once ``hub.retry`` has (listeners hear of it).
        self.retried_by: UploadTask | None = None
        self.rows_done = 0
        self.status = "queued"
        self.attempts = 0
        self.error: BaseException | None = None
        self.version: DatasetVersion | None = None
        self.queued_at: datetime = utcnow()
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self._t0: float | None = None
        self._t1: float | None = None
        self._loop = loop
        self._task: asyncio.Task | None = None
        self._listeners: Listeners[ProgressListener] = Listeners()
        self._failed_listeners: dict[int, ProgressListener] = {}
        self._interrupting = False
        # A cancel that arrived while the publish was committing, which went through.
        self._cancel_came_late = False
        # Starts the same upload again; kept (with the frame) only while a retry makes sense.
        self._resubmit: Callable[[], Awaitable[UploadTask]] | None = None
        self._owner: Any = None  # the DatasetUploadService that started it
        self._recording: asyncio.Task | None = None

    # -- numbers -----------------------------------------------------------------------------

    @property
    def progress(self) -> float:
        """Fraction of rows written, in [0, 1]."""
        return self.snapshot().fraction

    @property
    def elapsed(self) -> float:
        """Seconds since the upload started running (0 while queued), frozen when it ends."""
        if self._t0 is None:
            return 0.0
        return (self._t1 if self._t1 is not None else time.monotonic()) - self._t0

    @property
    def rows_per_s(self) -> float:
        return self.snapshot().rows_per_s

    @property
    def bytes_written(self) -> int:
        """The encoded bytes of the rows written so far."""
        return self.bytes_at(self.rows_done)

    def bytes_at(self, rows: int) -> int:
        """The encoded bytes of the first ``rows`` rows."""
        return round(self.bytes_total * rows / self.rows_total) if self.rows_total else 0

    def _rate_sample(self, rows: int) -> float | None:
        """Note that ``rows`` rows are written now; returns the peak rate so far, measured over
        spans of at least a second (chunks alone are too short to time)."""
        now = time.monotonic()
        if self._rate_mark is None:
            self._rate_mark = (now, rows)
            return self.peak_rows_per_s
        since, rows_then = self._rate_mark
        if now - since >= 1.0:
            rate = (rows - rows_then) / (now - since)
            self.peak_rows_per_s = max(rate, self.peak_rows_per_s or 0.0)
            self._rate_mark = (now, rows)
        return self.peak_rows_per_s

    def _final_peak(self) -> float | None:
        """The peak rate once the upload has ended: an upload shorter than a second has only
        its average."""
        if self.peak_rows_per_s is None and self.elapsed > 0 and self.rows_done:
            self.peak_rows_per_s = self.rows_done / self.elapsed
        return self.peak_rows_per_s

    @property
    def deduplicated(self) -> bool:
        return bool(self.version is not None and self.version.deduplicated)

    @property
    def task(self) -> asyncio.Task | None:
        """The underlying :class:`asyncio.Task` (on the loop that runs the upload)."""
        return self._task

    def done(self) -> bool:
        """Whether the upload has ended (succeeded, failed, cancelled or interrupted)."""
        return self.status in TERMINAL_STATUSES

    @property
    def can_retry(self) -> bool:
        """Whether ``hub.retry(task)`` can start this upload again: it failed, was cancelled or interrupted.

        Until then the handle keeps the frame it was given (a shallow, copy-on-write snapshot);
        a successful upload lets go of it.
        """
        return self.status in RETRYABLE_STATUSES and self._resubmit is not None

    def snapshot(self) -> Progress:
        """The current state as an immutable :class:`~dsnotebook.progress.Progress`."""
        return Progress(
            task_id=self.id,
            dataset=self.dataset,
            status=self.status,
            rows_done=self.rows_done,
            rows_total=self.rows_total,
            elapsed=self.elapsed,
            version=None if self.version is None else self.version.version,
            deduplicated=self.deduplicated,
            error=None if self.error is None else str(self.error),
            attempts=self.attempts,
        )

    def subscribe(self, listener: ProgressListener) -> Callable[[], None]:
        """Call ``listener(progress)`` on every change (and once more when a retry of it starts,
        see :attr:`retried_by`); returns a function that unsubscribes.

        Listeners run on the upload's loop thread and must be quick (a blocking ``wait()`` there
        raises :class:`UsageError`). An exception in one does not affect the upload: its first one
        is logged at ERROR with the traceback on the ``dsnotebook.listeners`` logger, which shows
        on stderr even when logging is not configured; later ones of the same listener go to DEBUG.

        Raises:
            ValidationError: ``listener`` is not callable.
        """
        if not callable(listener):
            raise ValidationError(f"listener: expected a callable taking a Progress snapshot, got {listener!r}")
        return self._listeners.add(listener)

    def _emit(self) -> None:
        listeners = self._listeners.snapshot()
        if not listeners:
            return
        snap = self.snapshot()
        for listener in listeners:
            try:
                listener(snap)
            except Exception:  # noqa: BLE001 - a listener's bug must never break an upload; it is shown
                if id(listener) in self._failed_listeners:
                    listener_log.debug("the progress listener %r of upload %s failed again", listener, self.id, exc_info=True)
                    continue
                # Held, so that its id stays its own while the upload lives.
                self._failed_listeners[id(listener)] = listener
                report_failure(
                    "the progress listener %r of the upload of %r (task %s) raised an error; the upload "
                    "goes on, and later errors of this listener are logged at DEBUG",
                    listener,
                    self.dataset,
                    self.id,
                )

    def _set(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        if changes.get("status") == "running" and self._t0 is None:
            self._t0 = time.monotonic()
            self.started_at = utcnow()
        if self.done() and self._t1 is None:
            self._t1 = time.monotonic()
            self.finished_at = utcnow()
        self._emit()

    # -- waiting -----------------------------------------------------------------------------

    def _outcome(self) -> DatasetVersion:
        task = self._task
        if task is None or not task.done():
            raise UsageError("the upload has not finished yet")
        if task.cancelled() and self.status == "succeeded" and self.version is not None:
            return self.version  # cancelled after the upload had published and said so
        if task.cancelled():
            how = "interrupted by shutdown" if self.status == "interrupted" else "cancelled"
            raise UploadCancelled(
                f"the upload of {self.dataset!r} was {how}; nothing was published",
                task_id=self.id,
                dataset=self.dataset,
            )
        exc = task.exception()
        if exc is not None:
            raise exc
        return task.result()

    async def _settle(self) -> None:
        # asyncio.wait never cancels the task it waits for, so an interrupted waiter leaves the upload alone.
        await asyncio.wait({self._task})
        if self._recording is not None:
            # Cancelled while queued: its end is being written to the catalog; wait for that too.
            await asyncio.wait({self._recording})

    def _on_own_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def wait(self, timeout: float | None = None) -> DatasetVersion:
        """Block until the upload ends and return the published version.

        Raises:
            UploadError: the upload failed (the cause is chained).
            UploadCancelled: the upload was cancelled or interrupted.
            WaitTimeout: ``timeout`` seconds passed; the upload keeps running.
            UsageError: called on the thread that runs the upload's loop (in a listener, say),
                where it would deadlock.
            KeyboardInterrupt: Ctrl-C stopped the waiting; the upload goes on, as the message
                says, until :meth:`cancel` stops it.
        """
        if self._task is not None and self._task.done() and (self._recording is None or self._recording.done()):
            return self._outcome()
        if self._on_own_loop_thread():
            raise UsageError(
                f"wait() was called for the upload of {self.dataset!r} on the thread of the event loop "
                "that runs it (inside a listener or another callback, say), where it would deadlock: "
                "the upload cannot go on while this thread waits. Use 'await task' in async code; in a "
                "listener, return at once and follow the upload with task.subscribe(...)"
            )
        future = asyncio.run_coroutine_threadsafe(self._settle(), self._loop)
        try:
            _waiting.result(future, timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise WaitTimeout(
                f"the upload of {self.dataset!r} did not finish within {timeout} s; it keeps running "
                f"({format_status(self.snapshot())})"
            ) from None
        except KeyboardInterrupt as exc:
            # Only the waiting stops; the upload is not the caller's code and goes on.
            future.cancel()
            if self.done():
                raise
            raise KeyboardInterrupt(self._still_running(exc, "wait() was interrupted")).with_traceback(exc.__traceback__) from None
        return self._outcome()

    def _still_running(self, exc: BaseException, how: str) -> str:
        """The message of an interrupted wait: the upload goes on, and how to stop it."""
        message = (
            f"{how}, but the upload of {self.dataset!r} continues in the background "
            f"({format_status(self.snapshot(), timing=False)}); call task.cancel() to stop it"
        )
        return f"{exc}; {message}" if str(exc) else message

    async def _await(self) -> DatasetVersion:
        try:
            if asyncio.get_running_loop() is self._loop:
                await self._settle()
            else:
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._settle(), self._loop))
        except asyncio.CancelledError as exc:
            # The awaiting task was cancelled; _settle never cancels the upload, which goes on.
            if not self.done():
                exc.args = (self._still_running(exc, "await task was cancelled"),)
            raise
        return self._outcome()

    def __await__(self):
        return self._await().__await__()

    def cancel(self) -> bool:
        """Ask the upload to stop. Returns False if it had already ended.

        Nothing is published and waiting afterwards raises :class:`UploadCancelled`, except when
        the cancel arrives while the publish is committing: the commit then finishes, and the
        upload ends ``succeeded`` with its version, as the database says.
        """
        if self.done() or self._task is None:
            return False
        if self._on_own_loop_thread():
            self._cancel_once()
        else:
            self._loop.call_soon_threadsafe(self._cancel_once)
        return True

    def _cancel_once(self) -> None:
        # A repeated cancel (a double click) must not interrupt the cleanup of the first one.
        if not self._task.cancelling():
            self._task.cancel()

    def __repr__(self) -> str:
        return f"<UploadTask {format_status(self.snapshot())}>"

    def _ipython_display_(self) -> None:
        # The one place the engine reaches for the widgets: lazily, and only when IPython asks.
        try:
            from ..widgets.progress import display_task
        except ImportError:
            print(repr(self))
            return
        display_task(self)

