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
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import UsageError

T = TypeVar("T")

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
            return future.result(timeout)
        except KeyboardInterrupt:
            future.cancel()
            raise

    def on_exit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` at interpreter exit, before the loop stops."""
        self._exit_hooks.append(hook)

    def stop(self, timeout: float = 5.0) -> None:
        """Run the exit hooks, then stop the loop and join its thread within ``timeout``."""
        hooks, self._exit_hooks = self._exit_hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - one broken hook must not block the others at exit
                import logging

                logging.getLogger("dsnotebook").exception("exit hook failed")
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)
        if not loop.is_running():
            loop.close()


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
