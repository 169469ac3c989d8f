"""Ctrl-C interrupts a blocking wait even where a SIGINT handler was installed with SA_RESTART,
as polars installs one when it is imported."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import textwrap

import pytest

from dsnotebook import _waiting

CHILD = textwrap.dedent(
    """
    import concurrent.futures, os, signal, threading, time
    import polars  # installs its SIGINT handler, with SA_RESTART
    from dsnotebook import _waiting

    late = concurrent.futures.Future()
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    # Without a timeout a lock wait is not woken by such a signal: it would end only here.
    threading.Timer(15, late.set_result, ("ended",)).start()
    start = time.monotonic()
    try:
        _waiting.result(late)
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - start:.1f} s")
    else:
        print("not interrupted")
    os._exit(0)
    """
)


def test_ctrl_c_interrupts_a_wait_after_polars_is_imported():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("interrupted after"), done.stdout
    assert float(done.stdout.split()[2]) < 10


def test_the_result_the_future_gives_and_its_own_timeout_error_come_through():
    ready = concurrent.futures.Future()
    ready.set_result(7)
    assert _waiting.result(ready) == 7
    failed = concurrent.futures.Future()
    failed.set_exception(TimeoutError("the work's own"))
    with pytest.raises(TimeoutError, match="the work's own"):
        _waiting.result(failed, timeout=5)


def test_a_timeout_is_kept():
    with pytest.raises(TimeoutError):
        _waiting.result(concurrent.futures.Future(), timeout=0.25)
