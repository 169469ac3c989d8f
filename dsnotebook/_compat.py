"""What differs between the two pandas lines dsnotebook supports, 2.2 and 3.x.

This is the only module that asks which pandas it runs on (``tests/test_compat.py`` holds every
other module to that). Everything else calls the functions below, which give the same answers
on both lines:

- **Strings.** pandas 3's default ``str`` dtype is ``StringDtype(storage, na_value=np.nan)``;
  pandas 2.2 has no ``na_value`` argument, and its one string dtype with NaN as the missing value
  is ``StringDtype("pyarrow_numpy")`` (what ``future.infer_string`` gives there). The manifest
  records a string column as its storage (``"python"`` or ``"pyarrow"``) and its missing value
  (``"nan"`` or ``"na"``), which both lines read: a pandas 3 ``str`` column comes back under
  pandas 2.2 as ``string[pyarrow_numpy]``, and that dtype comes back under pandas 3 as ``str``.
- **Copy-on-write.** Always on in pandas 3, so a shallow copy is a snapshot the caller's later
  edits cannot reach. pandas 2.2 shares the data unless the user turned copy-on-write on, so a
  snapshot there is a deep copy.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd

PANDAS_VERSION: tuple[int, int] = tuple(int(p) for p in re.match(r"(\d+)\.(\d+)", pd.__version__).groups())  # type: ignore[assignment, union-attr]
"""The running pandas' (major, minor) version."""

PANDAS_3 = PANDAS_VERSION >= (3, 0)

StringNA = Literal["nan", "na"]

# pandas 2.2's name for the Arrow storage with NaN as the missing value.
_PYARROW_NUMPY = "pyarrow_numpy"


def string_dtype(storage: str, na: StringNA) -> pd.StringDtype:
    """The string dtype with this storage (``"python"`` or ``"pyarrow"``) and missing value
    (``"nan"`` for ``np.nan``, ``"na"`` for ``pd.NA``) on the running pandas.

    Under pandas 2.2 a NaN string column always takes Arrow storage (``string[pyarrow_numpy]``):
    that line has no Python-backed string dtype whose missing value is NaN.
    """
    if PANDAS_3:
        return pd.StringDtype(storage, na_value=np.nan if na == "nan" else pd.NA)
    if na == "nan":
        return pd.StringDtype(_PYARROW_NUMPY)
    return pd.StringDtype(storage)


def string_kind(dtype: pd.StringDtype) -> tuple[str, StringNA]:
    """A string dtype's storage (``"python"`` or ``"pyarrow"``) and missing value (``"nan"`` or
    ``"na"``), as the manifest records them on either pandas line."""
    if dtype.storage == _PYARROW_NUMPY:
        return "pyarrow", "nan"
    na_value = getattr(dtype, "na_value", pd.NA)
    return dtype.storage, "nan" if isinstance(na_value, float) and np.isnan(na_value) else "na"


def string_dtype_name(na: StringNA) -> str:
    """The name the manifest records for a string column, pandas 3's on both lines: ``"str"``
    for NaN as the missing value, ``"string"`` for ``pd.NA``."""
    return "str" if na == "nan" else "string"


def dtype_label(dtype: object) -> str:
    """A dtype's name as schemas show it: ``str(dtype)``, except for pandas 2.2's NaN string
    dtype, which ``str`` calls ``"string"`` like the ``pd.NA`` one: here it is
    ``"string[pyarrow_numpy]"``, the name pandas 2.2 reads back as that dtype."""
    if isinstance(dtype, pd.StringDtype) and dtype.storage == _PYARROW_NUMPY:
        return f"string[{_PYARROW_NUMPY}]"
    return str(dtype)


def default_string_dtype() -> pd.StringDtype:
    """The dtype pandas 3 gives text by default (``"str"``), or its pandas 2.2 equivalent."""
    if PANDAS_3:
        return pd.StringDtype(na_value=np.nan)
    return pd.StringDtype(_PYARROW_NUMPY)


def snapshot(obj: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """A copy of ``obj`` that the caller's later in-place edits cannot change.

    Shallow, and so free, wherever copy-on-write is on: always in pandas 3, by option in 2.2.
    """
    if PANDAS_3 or pd.options.mode.copy_on_write is True:
        return obj.copy(deep=False)
    return obj.copy(deep=True)
