"""A process that pushes one frame and waits for it, for the kill and lock tests to run as a child.

    python pusher.py URL NAME ROWS SEED [CHUNK_SIZE]

Prints ``ready`` once connected, just before the push, and ``done <version>`` after it. The
frame depends only on ROWS and SEED, so a parent can build the same one to compare.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

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


_FRAMES: dict[tuple[int, int], pd.DataFrame] = {}


def frame(rows: int, seed: int) -> pd.DataFrame:
    """``make(rows, seed)``, built once per process (a million rows take a few tenths of a second)."""
    if (rows, seed) not in _FRAMES:
        _FRAMES[rows, seed] = make(rows, seed)
    return _FRAMES[rows, seed]


def forked(conn, env: dict[str, str], url: str, name: str, rows: int, seed: int, chunk_size: int | None, fault: str | None) -> None:
    """What ``main()`` does, in a process forked from one that has dsnotebook imported already.

    Starting a fresh interpreter takes seconds here, most of what a test that kills twenty
    pushes spends. ``conn`` gets ``"ready"``, ``"done <version>"``, or ``"error <traceback>"``
    (the server's stderr is no test's); ``env`` is the parent's environment as of now, not as
    of when the fork server started; ``fault`` is armed as ``DSNOTEBOOK_FAULT`` would be.
    """
    import os
    import traceback

    try:
        os.environ.clear()
        os.environ.update(env)
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


def main() -> None:
    import dsnotebook as dsn

    url, name, rows, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    chunk_size = int(sys.argv[5]) if len(sys.argv) > 5 else None
    df = make(rows, seed)
    hub = dsn.connect(url)
    print("ready", flush=True)
    version = hub.push(df, name, chunk_size=chunk_size).wait()
    print(f"done {version.version}", flush=True)
    hub.close()


if __name__ == "__main__":
    main()
