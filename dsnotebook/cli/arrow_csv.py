"""Reading a CSV file through pyarrow's CSV reader, with the result ``pandas.read_csv`` gives.

pyarrow parses CSV several times faster than pandas, but infers types by other rules (it reads
``0x1F`` as a number, ``2026-01-01`` as a date, keeps empty strings, and so on). So every column
is read as text, and the column's type is then chosen by pandas' rules, as pandas' C parser
applies them with the default options ``dsnotebook push`` uses:

- the cells pandas takes as missing (``""``, ``NA``, ``null``, ``nan``, ...) are missing;
- a column of whole numbers is ``int64``, or ``float64`` with missing cells; a column of
  ``True``/``False`` (in the spellings pandas accepts) is ``bool``, or ``object`` holding
  NaN for the missing cells; a column of decimal numbers is ``float64``; an all-missing
  column is ``float64``; anything else is ``str``, exactly as written.

Where pyarrow cannot give pandas' result exactly, :func:`read_csv` returns None and the caller
reads the file with pandas: text that is not UTF-8, a numeric column with ``+`` signs, blanks
around numbers, or more digits than ``int64`` holds, duplicate or empty column names, a line of
blanks in a one-column file, rows of unequal length, or a file without data rows.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import IO

import numpy as np
import pandas as pd

# pandas' own list of the cells it reads as missing, so that the two readers agree on them.
from pandas._libs.parsers import STR_NA_VALUES

__all__ = ["MIN_CPUS", "faster", "read_csv"]

#: The spellings pandas reads as booleans by default.
TRUE = ("True", "TRUE", "true")
FALSE = ("False", "FALSE", "false")
#: Whole numbers as pandas reads them: a column of these that is not all :func:`_whole` is left to pandas.
INT_LIKE = r"^[ \t\r\n\f\v]*[+-]?[0-9]+[ \t\r\n\f\v]*$"
#: Decimal numbers and infinities as pyarrow's cast and pandas both parse them.
FLOAT = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?$|^[+-]?(?i:inf|infinity)$"
#: What pandas may also read as a number, but :func:`_whole` and :data:`FLOAT` do not cover: a
#: column of these is left to pandas.
NUMBER_LIKE = r"^[ \t\r\n\f\v]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\r\n\f\v]*$|^[ \t]*[+-]?(?i:inf|infinity)[ \t]*$"
#: Values checked first, so that a column of text rarely needs a full pass for each type.
SAMPLE = 1000


#: The CPUs pyarrow needs for its reader to beat pandas' on a typical file (an estimate: only
#: 2 CPUs were measured). pyarrow parses in parallel and pandas does not; on 2 busy CPUs, a
#: 1,000,000-row CSV file of 8 columns (97 MB) took this module 1.7-2.9 s (reading 0.6-1.3 s,
#: choosing the types about 1 s) against pandas' 0.6-0.9 s. With text columns asked for
#: (``--parse-dates``, ``--dtype``), pyarrow was faster in some runs and slower in others.
MIN_CPUS = 4


def faster() -> bool:
    """Whether pyarrow's reader is expected to be faster than pandas' here: it has
    :data:`MIN_CPUS` CPUs or more (``pyarrow.cpu_count()``, which ``pyarrow.set_cpu_count``
    and ``OMP_NUM_THREADS`` set)."""
    import pyarrow as pa

    return pa.cpu_count() >= MIN_CPUS


class _NotExact(Exception):
    """pyarrow's result would differ from pandas'; the file is read with pandas instead."""


def read_csv(
    source: IO[bytes], *, sep: str, header: bool, text_columns: Collection[object], reopen: Callable[[], IO[bytes]]
) -> pd.DataFrame | None:
    """Read a UTF-8 CSV file with pyarrow, as ``pd.read_csv(source, sep=sep, header=0 or None,
    dtype={c: "str" for c in text_columns}, low_memory=False)`` reads it.

    Args:
        source: the file's bytes (decompressed), for the column names.
        reopen: returns the file's bytes anew, for the full read.

    Returns:
        The frame, or None where pyarrow cannot give pandas' result exactly.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if sep in "\"\r\n":
        return None
    read_options = pacsv.ReadOptions(autogenerate_column_names=not header)
    parse_options = pacsv.ParseOptions(delimiter=sep, newlines_in_values=True)
    try:
        with pacsv.open_csv(source, read_options=read_options, parse_options=parse_options) as head:
            names = head.schema.names
        if len(set(names)) != len(names) or "" in names:
            return None  # pandas renames these ("a.1", "Unnamed: 0")
        convert_options = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            null_values=sorted(STR_NA_VALUES), strings_can_be_null=True, quoted_strings_can_be_null=True,
        )
        with reopen() as f:
            table = pacsv.read_csv(f, read_options=read_options, parse_options=parse_options, convert_options=convert_options)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None  # rows of unequal length, text that is not UTF-8, an empty file: pandas says what it makes of them
    if table.num_rows == 0:
        return None
    labels: list[object] = list(names) if header else list(range(len(names)))
    keep = set(text_columns)
    try:
        columns = {
            label: _column(table.column(i), as_text=label in keep, alone=len(names) == 1)
            for i, label in enumerate(labels)
        }
    except _NotExact:
        return None
    return pd.DataFrame(columns)


def _all(mask) -> bool:
    import pyarrow.compute as pc

    return bool(pc.all(mask).as_py())


def _every(values, test) -> bool:
    """Whether ``test`` holds for every value: checked on the first :data:`SAMPLE` values first,
    so that a column of text rarely takes a full pass for each type it is not."""
    return _all(test(values.slice(0, SAMPLE))) and _all(test(values))


def _whole(values):
    """Which values are whole numbers of at most 18 digits, with at most a minus sign: the text
    pyarrow's cast reads exactly as pandas reads it, each fitting int64 (pandas reads longer
    ones as uint64 or text). Plain string kernels, several times faster than a regex."""
    import pyarrow as pa
    import pyarrow.compute as pc

    negative = pc.starts_with(values, "-")
    digits = pc.if_else(negative, pc.utf8_slice_codeunits(values, 1), values)
    length = pc.binary_length(digits)
    return pc.and_(pc.ascii_is_decimal(digits), pc.less_equal(length, pa.scalar(18, pa.int32())))


def _regex(pattern: str):
    import pyarrow.compute as pc

    return lambda values: pc.match_substring_regex(values, pattern)


def _column(column, *, as_text: bool, alone: bool) -> pd.Series:
    """One column (Arrow text, missing cells null) as pandas' C parser types it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = column.drop_null()
    if alone and len(values) and not _all(pc.invert(pc.match_substring_regex(values, r"^[ \t\r\f\v]+$"))):
        raise _NotExact  # pandas skips a line of blanks; in a one-column file, pyarrow reads it as a value
    if as_text:
        return column.to_pandas()
    missing = len(values) < len(column)
    if len(values) == 0:
        return pd.Series(np.full(len(column), np.nan))
    if _every(values, _whole):
        # pandas reads whole numbers beside missing cells as floats, parsing the text as floats.
        return pc.cast(column, pa.float64() if missing else pa.int64()).to_pandas()
    if _every(values, _regex(INT_LIKE)):
        raise _NotExact  # a sign or blanks around whole numbers, or more digits than int64 holds
    booleans = pa.array(TRUE + FALSE)
    if _every(values, lambda v: pc.is_in(v, booleans)):
        flags = pc.is_in(column, pa.array(TRUE))
        if not missing:
            return flags.to_pandas()
        result = flags.to_numpy(zero_copy_only=False).astype(object)
        result[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
        return pd.Series(result, dtype=object)
    if _every(values, _regex(FLOAT)):
        return pc.cast(column, pa.float64()).to_pandas()
    if _every(values, _regex(NUMBER_LIKE)):
        raise _NotExact  # numbers with blanks around them, which pandas reads
    return column.to_pandas()
