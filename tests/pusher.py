"""A child process that pushes one frame and waits for it, for the kill, resume and monitor
tests: :class:`Pusher` starts one (forked, see ``tests/forks.py``) and reads what it says.

The frame depends only on its rows and seed, so a parent can build the same one to compare.
"""

from __future__ import annotations

import os
import traceback

import numpy as np
import pandas as pd

from forks import FORKS, adopt_environment

from dsnotebook._compat import default_string_dtype


def make(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i:04d}" for i in range(1000)])
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "x": rng.random(rows),
            "label": pd.array(words[rng.integers(0, len(words), rows)], dtype=default_string_dtype()),
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**15, rows), unit="us"),
            "flag": rng.random(rows) < 0.5,
        }
    )


#: The rows and seed of the million-row frame the kill tests push.
MILLION = (1_000_000, 1)

_FRAMES: dict[tuple[int, int], pd.DataFrame] = {}


def frame(rows: int, seed: int) -> pd.DataFrame:
    """``make(rows, seed)``, built once per process (a million rows take a few tenths of a second)."""
    if (rows, seed) not in _FRAMES:
        _FRAMES[rows, seed] = make(rows, seed)
    return _FRAMES[rows, seed]


def forked(conn, env: dict[str, str], url: str, name: str, rows: int, seed: int, chunk_size: int | None, fault: str | None) -> None:
    """The pushing process's body: connect, say ``"ready"``, push ``frame(rows, seed)`` and wait.

    ``conn`` gets ``"ready"``, ``"done <version>"``, or ``"error <traceback>"`` (the fork
    server's stderr is no test's); ``env`` is the test's environment as of the fork; ``fault`` is
    armed as ``DSNOTEBOOK_FAULT`` would be.
    """
    try:
        adopt_environment(env)
        import dsnotebook as dsn
        from dsnotebook import _faults

        _faults.arm(fault)
        df = frame(rows, seed)
        hub = dsn.connect(url)
        conn.send("ready")
        version = hub.push(df, name, chunk_size=chunk_size).wait()
        conn.send(f"done {version.version}")
        hub.close()
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test with it
        conn.send(f"error {traceback.format_exc()}")
        raise


class Pusher:
    """A process pushing ``frame(rows, seed)`` as dataset "d", forked (see ``tests/forks.py``)
    from a server that has dsnotebook and the million-row frame already; see :func:`forked`.

    ``fault`` is armed in it as ``DSNOTEBOOK_FAULT`` would be (``"between_chunks@4:kill"``, say).
    """

    def __init__(self, db_url: str, rows: int, seed: int, chunk_size: int, fault: str | None = None) -> None:
        env = dict(os.environ)
        env.pop("DSNOTEBOOK_FAULT", None)
        self._messages, theirs = FORKS.Pipe(duplex=False)
        self.process = FORKS.Process(
            target=forked, args=(theirs, env, db_url, "d", rows, seed, chunk_size, fault), name="pusher", daemon=True
        )
        self.process.start()
        theirs.close()
        self.said: list[str] = []

    def next_message(self, timeout: float) -> str | None:
        """The process's next message, or None once it has ended without one."""
        if not self._messages.poll(timeout):
            raise AssertionError(f"the pushing process said nothing within {timeout} s; it said {self.said}")
        try:
            message = self._messages.recv()
        except EOFError:
            return None
        self.said.append(message)
        assert not message.startswith("error"), message
        return message

    def kill(self) -> None:
        """SIGKILL, unless the process has ended already (its pid may then be another's)."""
        self.process.kill()

    def end(self, timeout: float) -> tuple[int, bool]:
        """Waits for the process to end; returns its exit code and whether it said it was done."""
        while self.next_message(timeout) is not None:
            pass
        self.process.join(timeout)
        assert self.process.exitcode is not None, f"the pushing process is still running after {timeout} s"
        code = self.process.exitcode
        self._messages.close()
        self.process.close()
        return code, any(m.startswith("done") for m in self.said)
