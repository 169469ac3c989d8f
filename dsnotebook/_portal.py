"""The library-owned event loop ("the portal").

A sync :class:`~dsnotebook.hub.Hub` runs all of its async work on one event loop that lives on a
daemon thread and is started on first use. A sync call blocks on a ``concurrent.futures.Future``,
so it behaves the same whether or not the calling thread already runs a loop (a Jupyter cell
does). Nothing here patches asyncio and nothing calls ``asyncio.run`` inside the library.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import concurrent.futures.thread  # its exit hook must be registered before the portal's (below)
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from . import _waiting
from .errors import UsageError

T = TypeVar("T")

log = logging.getLogger("dsnotebook")

__all__ = ["Portal", "get_portal"]


class Portal:
    """An event loop running forever on a daemon thread."""

    def __init__(self, name: str = "dsnotebook-portal") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._exit_hooks: list[Callable[[], None]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's loop, started on first use."""
        with self._lock:
            if self._loop is None or self._loop.is_closed() or not self._thread.is_alive():
                self._start()
            return self._loop

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name=self._name, daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread

    def in_portal_thread(self) -> bool:
        """Whether the caller runs on the portal's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the portal loop and return a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the portal loop and block the calling thread for its result.

        Raises:
            UsageError: when called on the portal thread itself, where blocking would deadlock.
        """
        if self.in_portal_thread():
            coro.close()
            raise UsageError(
                "a blocking dsnotebook call was made on the library's own event-loop thread "
                "(for example inside a task callback); it would deadlock. Use the AsyncHub "
                "methods with 'await' there instead."
            )
        future = self.submit(coro)
        try:
            return _waiting.result(future, timeout)
        except KeyboardInterrupt:
            future.cancel()
            raise

    def on_exit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` at interpreter exit, before the loop stops."""
        self._exit_hooks.append(hook)

    def stop(self, timeout: float = 5.0) -> None:
        """Run the exit hooks, cancel what still runs on the loop, then stop the loop and join
        its thread, each within ``timeout``."""
        hooks, self._exit_hooks = self._exit_hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - one broken hook must not block the others at exit
                log.exception("exit hook failed")
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or loop.is_closed():
            return
        if thread is not None and thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(_cancel_leftovers(timeout), loop).result(timeout + 1)
            except Exception:  # noqa: BLE001 - the loop stops below whatever happened here
                log.debug("cancelling the portal's last tasks failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)
        if not loop.is_running():
            loop.close()


async def _cancel_leftovers(timeout: float) -> None:
    """Cancel every other task on the running loop and wait up to ``timeout`` for them to end.

    A task still pending when its loop is closed is destroyed, and asyncio reports each one on
    stderr ("Task was destroyed but it is pending!"). The exit hooks close the hubs; this is for
    whatever else still runs (a coroutine handed to ``Hub.submit``, say), as ``asyncio.run``
    does for its own loop. Their outcomes are taken here, so that none is reported as never
    retrieved either.
    """
    me = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not me]
    for task in leftovers:
        task.cancel()
    if not leftovers:
        return
    done, _pending = await asyncio.wait(leftovers, timeout=timeout)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.debug("task %r ended with an error at exit", task.get_name(), exc_info=task.exception())


def _at_exit_before_thread_pools(hook: Callable[[], None]) -> None:
    """Run ``hook`` as the interpreter begins to exit, while thread pools still take work.

    At exit, Python first runs the hooks of ``threading._register_atexit``, newest first, then
    joins the non-daemon threads, and only then the ``atexit`` hooks. concurrent.futures stops
    every ThreadPoolExecutor from taking work in one of the first. An upload still running
    then failed on its next chunk ("cannot schedule new futures after interpreter shutdown")
    before an ``atexit`` hook could interrupt it. Registered after concurrent.futures' hook,
    ``hook`` runs before it. Where the interpreter lacks that hook list, ``atexit`` is used.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(hook)
    else:
        register(hook)


_portal = Portal()
_at_exit_before_thread_pools(_portal.stop)


def get_portal() -> Portal:
    """The process-wide portal."""
    return _portal
