"""One side of the cross-version test (tests/test_pandas_lines.py), run as a child process
under whichever pandas line its interpreter has:

    python pandas_line.py URL STEP [STEP ...]

Each step, in order, over one hub:

    push:NAME            push this line's frame as NAME
    append:NAME          append this line's frame to NAME
    check:NAME:PUSHERS   pull NAME and compare it with what the pushes (a comma-separated list
                         of pandas major versions, "3,2" for pushed under 3 then appended under
                         2) become under this pandas

Prints a line of JSON per step (this pandas' version, and the version pushed or the dtypes
pulled) and exits 0, or exits 1 naming the difference. One process runs several steps: each
start of an interpreter costs seconds of importing pandas.
"""

from __future__ import annotations

import json
import sys

import zoneinfo

import numpy as np
import pandas as pd

import dsnotebook as dsn
from dsnotebook import _compat as compat

PARIS = zoneinfo.ZoneInfo("Europe/Paris")

def frame(pushed_under: int, start: int = 0) -> pd.DataFrame:
    """The frame each line pushes, as this pandas holds it once pushed under ``pushed_under``.

    Its ``python_nan`` column is a Python-backed NaN string column under pandas 3; pandas 2.2
    has none, so there (and for what 2.2 pushed) it is the Arrow-backed one.
    """
    python_nan_storage = "python" if pushed_under >= 3 else "pyarrow"
    words = ["a", None, "", "é😀", "z"]
    n = len(words)
    return pd.DataFrame(
        {
            "text": pd.Series(words, dtype=compat.default_string_dtype()),
            "python_nan": pd.Series(words, dtype=compat.string_dtype(python_nan_storage, "nan")),
            "python_na": pd.Series(words, dtype=compat.string_dtype("python", "na")),
            "pyarrow_na": pd.Series(words, dtype=compat.string_dtype("pyarrow", "na")),
            "objects": pd.Series(words, dtype=object),
            "count": pd.array([1, None, 3, -(2**63), 2**63 - 1], dtype="Int64"),
            "x": np.array([1.5, np.nan, -0.0, np.inf, 2.0]),

            "when": pd.date_range("2024-03-31 01:00", periods=n, freq="h", tz=PARIS, unit="us"),
            # Text categories as pandas 3 infers them (str); pandas 2.2 would infer objects.
            "size": pd.Categorical(
                ["s", "m", None, "l", "s"], categories=pd.Index(["s", "m", "l"], dtype=compat.default_string_dtype()), ordered=True
            ),
            "flag": pd.array([True, None, False, True, False], dtype="boolean"),
        },
        index=pd.Index([f"k{start + i}" for i in range(n)], name="key", dtype=compat.default_string_dtype()),
    )


def main(argv: list[str]) -> int:
    url, *steps = argv
    line = 3 if compat.PANDAS_3 else 2
    with dsn.connect(url) as hub:
        for step in steps:
            command, name, *rest = step.split(":")
            if command in ("push", "append"):
                append = command == "append"
                version = hub.push(frame(line, start=5 if append else 0), name, if_exists="append" if append else "replace").wait(timeout=120)
                print(json.dumps({"pandas": pd.__version__, "version": version.version}), flush=True)
            elif not _check(hub, name, [int(p) for p in rest[0].split(",")]):
                return 1
    return 0


def _check(hub, name: str, pushers: list[int]) -> bool:
    back = hub.pull(name)
    parts = [frame(p, start=5 * i) for i, p in enumerate(pushers)]
    # An append keeps the dataset's dtypes (a string column its first storage).
    expected = pd.concat(parts).astype(parts[0].dtypes.to_dict())
    # Column labels are text: pandas 3 holds them as str, pandas 2.2 as objects. An append keeps
    # the first push's labels.
    expected.columns = pd.Index(list(expected.columns), dtype=compat.default_string_dtype() if pushers[0] >= 3 else object)
    print(json.dumps({"pandas": pd.__version__, "dtypes": {str(k): compat.dtype_label(v) for k, v in back.dtypes.items()}}), flush=True)
    try:
        pd.testing.assert_frame_equal(back, expected, check_exact=True)
    except AssertionError as exc:
        print(f"pandas {pd.__version__}: {name} pulled is not the expected frame: {exc}", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
