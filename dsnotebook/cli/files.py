"""Reading data files into DataFrames for ``dsnotebook push``.

The format comes from the file name: ``.csv``, ``.tsv``, ``.json`` (one document), ``.jsonl``
(one object per line), ``.xlsx`` (first sheet; needs openpyxl), ``.parquet`` and ``.feather``.
CSV, TSV and JSON files may be compressed (``.gz`` or ``.zst``, read through pyarrow's codecs).

- A CSV file's separator, unless ``--sep`` gives it, is detected with :class:`csv.Sniffer` on the
  first lines, among ``,``, ``;``, tab and ``|``; a separator other than a comma is reported.
- A UTF-8 CSV or TSV file is read with pyarrow's reader where that is expected to be faster
  (see :mod:`.arrow_csv`), with the dtypes and values pandas' reader gives, or else with pandas.
- A file that is not valid text in its encoding (UTF-8 unless ``--encoding`` says otherwise) is
  refused with the line and byte offset of the first bad byte, and the option that reads it.
- ``--dtype`` and ``--parse-dates`` cast columns without changing any value (see :mod:`.casting`),
  and so does an append, to the dtypes the latest version stores: text as read from the file
  for text, date and duration columns, numbers cast only where every value is kept exactly.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_float_dtype, is_numeric_dtype

from ..errors import ValidationError
from . import arrow_csv
from .casting import DoesNotFit, describe, fit_to_schema, to_datetime, to_dtype
from .text import decoding_error, open_text, sniff_separator

__all__ = ["FORMATS", "ReadOptions", "check_file", "default_name", "identify", "read", "read_options"]


@dataclass(frozen=True)
class Format:
    """A kind of file ``push`` reads."""

    name: str
    #: Text: ``--encoding`` applies, and the file may be compressed.
    text: bool = False
    #: Delimited text: ``--sep`` applies.
    delimited: bool = False
    #: A header row that ``--no-header`` can say is absent.
    header: bool = False


FORMATS = {
    ".csv": Format("CSV", text=True, delimited=True, header=True),
    ".tsv": Format("TSV", text=True, delimited=True, header=True),
    ".json": Format("JSON", text=True),
    ".jsonl": Format("JSON lines", text=True),
    ".xlsx": Format("Excel", header=True),
    ".parquet": Format("Parquet"),
    ".feather": Format("Feather"),
}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
TYPE_EXAMPLES = (
    "int64, Int64 (with missing values), float64, bool, boolean, str, category, datetime64[us], "
    "datetime64[us, UTC] or timedelta64[us]"
)


@dataclass(frozen=True)
class ReadOptions:
    """How to read a file: the command line's reading options, checked."""

    sep: str | None = None
    encoding: str | None = None
    header: bool = True
    dtype: tuple[tuple[str, str], ...] = ()
    parse_dates: tuple[str, ...] = ()


def read_options(
    *, sep: str | None = None, encoding: str | None = None, no_header: bool = False,
    dtype: Sequence[str] = (), parse_dates: Sequence[str] = (),
) -> ReadOptions:
    """Check the reading options that do not depend on the file.

    Raises:
        ValidationError: a separator that is not one character, an unknown encoding, a
            ``--dtype`` that is not ``COL=TYPE`` with a pandas dtype, or a column given twice.
    """
    if sep is not None:
        sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep)
        if len(sep) != 1:
            raise ValidationError(f"--sep {sep!r}: give one character, such as ',', ';', '|' or '\\t' (a tab)")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise ValidationError(
                f"--encoding {encoding!r}: unknown encoding; use one such as utf-8, latin-1, cp1252 or utf-16"
            ) from exc
    pairs = []
    for item in dtype:
        column, eq, type_name = item.rpartition("=")
        if not eq or not column:
            raise ValidationError(f"--dtype {item!r}: expected COL=TYPE, such as amount=float64")
        try:
            resolved = pd.api.types.pandas_dtype(type_name)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"--dtype {item}: {type_name!r} is not a pandas dtype; use one such as {TYPE_EXAMPLES}") from exc
        if isinstance(resolved, np.dtype) and resolved.kind in "mM" and np.datetime_data(resolved)[0] == "generic":
            raise ValidationError(f"--dtype {item}: give the unit, such as {type_name}[us]")
        pairs.append((column, type_name))
    named = [column for column, _ in pairs] + list(parse_dates)
    twice = next((c for c in named if named.count(c) > 1), None)
    if twice is not None:
        raise ValidationError(f"column {twice!r} is given more than once in --dtype and --parse-dates; give it once")
    return ReadOptions(sep, encoding, not no_header, tuple(pairs), tuple(parse_dates))


def identify(path: Path) -> tuple[Format, str | None]:
    """The file's format and compression (``"gzip"``, ``"zstd"`` or None), from its name.

    Raises:
        ValidationError: an unknown suffix, or a compressed file of a format that is not text.
    """
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    suffix = (suffixes[-2] if len(suffixes) > 1 else "") if compression else (suffixes[-1] if suffixes else "")
    if suffix not in FORMATS:
        shown = "".join(path.suffixes[-2:]) if compression else path.suffix
        what = f"unknown file type {shown.lower()!r}" if shown else "no file type suffix"
        raise ValidationError(
            f"{path.name}: {what}; use one of {', '.join(FORMATS)} "
            f"(CSV, TSV and JSON may be compressed: {', '.join(COMPRESSIONS)})"
        )
    fmt = FORMATS[suffix]
    if compression and not fmt.text:
        raise ValidationError(f"{path.name}: a compressed {fmt.name} file is not read; {fmt.name} files are read uncompressed")
    return fmt, compression


def default_name(path: Path) -> str:
    """The dataset name for a file: its name without format and compression suffixes
    (``sales.csv.gz`` gives ``sales``)."""
    _, compression = identify(path)
    name = path.name
    for _ in range(2 if compression else 1):
        name = name[: -len(Path(name).suffix)]
    return name


def check_file(path: Path, options: ReadOptions) -> tuple[Format, str | None]:
    """Check what can be checked without reading: the file's type and existence, that the options
    apply to its format, and that with ``--no-header`` the columns are given by number.

    Returns:
        The format and compression, as :func:`identify` gives them.

    Raises:
        ValidationError: naming the file and the option at fault.
    """
    fmt, compression = identify(path)
    if not path.is_file():
        raise ValidationError(f"{path}: no such file")
    _check_applies(path, fmt, options)
    for column, type_name in options.dtype:
        _label(column, options.header, f"--dtype {column}={type_name}")
    for column in options.parse_dates:
        _label(column, options.header, f"--parse-dates {column}")
    return fmt, compression


def _check_applies(path: Path, fmt: Format, options: ReadOptions) -> None:
    def kinds(test: Callable[[Format], bool]) -> str:
        names = list(dict.fromkeys(f.name for f in FORMATS.values() if test(f)))
        return ", ".join(names[:-1]) + " and " + names[-1]

    if options.sep is not None and not fmt.delimited:
        raise ValidationError(f"{path.name}: --sep applies to {kinds(lambda f: f.delimited)} files, not to {fmt.name} files")
    if options.encoding is not None and not fmt.text:
        raise ValidationError(
            f"{path.name}: --encoding applies to {kinds(lambda f: f.text)} files, not to {fmt.name} files"
        )
    if not options.header and not fmt.header:
        raise ValidationError(f"{path.name}: --no-header applies to {kinds(lambda f: f.header)} files, not to {fmt.name} files")


def _label(token: str, header: bool, option: str) -> object:
    """A column as the command line names it; without a header, columns are numbered from 0."""
    if header:
        return token
    if not token.isdigit():
        raise ValidationError(
            f"{option}: with --no-header the columns are numbered from 0; name the column {token!r} by its number"
        )
    return int(token)


def _text_first(dtype: object) -> bool:
    """Whether a CSV column read for ``dtype`` is read as text, for :mod:`.casting` to parse:
    text stays exactly as written (leading zeros and all), dates are parsed as dates, and whole
    numbers of a nullable dtype (Int64) stay exact beside empty cells, which pandas would read as
    float64. NumPy integers hold no empty cell, so pandas' float64 is refused at the first one."""
    if isinstance(dtype, pd.CategoricalDtype):
        return dtype.categories is None or not is_numeric_dtype(dtype.categories.dtype)
    numpy_integer = isinstance(dtype, np.dtype) and dtype.kind in "iu"
    return not (is_float_dtype(dtype) or is_bool_dtype(dtype) or numpy_integer)


def _load(
    path: Path, fmt: Format, compression: str | None, options: ReadOptions, text_columns: list, note: Callable[[str], None]
) -> pd.DataFrame:
    encoding = options.encoding or "utf-8"
    if fmt.delimited:
        sep = options.sep or ("\t" if fmt.name == "TSV" else None)
        if sep is None:
            sep = sniff_separator(path, compression, encoding)
            if sep != ",":
                shown = "tabs" if sep == "\t" else repr(sep)
                note(f"{path.name}: the columns are separated by {shown} (detected; --sep sets the separator)")
        if codecs.lookup(encoding).name == "utf-8" and arrow_csv.faster():
            # pyarrow's reader gives pandas' result, or None where it cannot.
            with open_text(path, compression) as f:
                frame = arrow_csv.read_csv(
                    f, sep=sep, header=options.header, text_columns=text_columns, reopen=lambda: open_text(path, compression)
                )
            if frame is not None:
                return frame
        with open_text(path, compression) as f:
            return pd.read_csv(
                f, sep=sep, encoding=encoding, header=0 if options.header else None,
                dtype={label: "str" for label in text_columns}, low_memory=False,
            )
    if fmt.text:
        with open_text(path, compression) as f:
            return pd.read_json(f, lines=fmt.name == "JSON lines", dtype=False, encoding=encoding)
    if fmt.name == "Excel":
        try:
            return pd.read_excel(path, header=0 if options.header else None)
        except ImportError as exc:
            raise ValidationError(
                f"{path.name}: reading Excel files needs the openpyxl package; install it with: pip install openpyxl"
            ) from exc
    return pd.read_parquet(path) if fmt.name == "Parquet" else pd.read_feather(path)


def read(
    path: Path, options: ReadOptions = ReadOptions(), *, schema: Mapping[object, object] | None = None,
    stored_as: str = "the latest version", note: Callable[[str], None] = lambda line: None,
) -> pd.DataFrame:
    """Read ``path`` as its name says, with ``options``.

    Args:
        schema: for an append, the dtype of each column the latest version stores; the file's
            columns are cast to them without changing a value.
        stored_as: that version, as messages name it (``"'sales' version 2"``).
        note: shows the user a line (the separator detected, when it is not a comma).

    Raises:
        ValidationError: naming the file, and the option, column, row and value at fault.
    """
    fmt, compression = check_file(path, options)
    dtypes = {_label(c, options.header, f"--dtype {c}={t}"): (c, t) for c, t in options.dtype}
    dates = {_label(c, options.header, f"--parse-dates {c}"): c for c in options.parse_dates}
    targets = {**(schema or {}), **{label: pd.api.types.pandas_dtype(t) for label, (_, t) in dtypes.items()}}
    text_columns = [label for label, dtype in targets.items() if _text_first(dtype)] + list(dates)
    try:
        frame = _load(path, fmt, compression, options, text_columns, note)
    except UnicodeDecodeError as exc:
        raise decoding_error(path, compression, options.encoding or "utf-8", exc) from exc
    except pd.errors.EmptyDataError as exc:
        raise ValidationError(f"{path.name} is empty: it has no header line or data") from exc
    except (OSError, ValueError) as exc:
        hint = "; if it holds one JSON object per line, name it .jsonl" if fmt.name == "JSON" and "Trailing data" in str(exc) else ""
        raise ValidationError(f"{path.name}: cannot read it as {fmt.name}: {exc}{hint}") from exc
    options_named = [(k, f"--dtype {c}={t}") for k, (c, t) in dtypes.items()] + [(k, f"--parse-dates {c}") for k, c in dates.items()]
    for label, option in options_named:
        if label not in frame.columns:
            have = ", ".join(map(repr, frame.columns[:50])) + (", ..." if len(frame.columns) > 50 else "")
            raise ValidationError(f"{path.name}: {option}: the file has no column {label!r}; its columns are {have}")
    for label, (column, type_name) in dtypes.items():
        try:
            frame[label] = to_dtype(frame[label], type_name)
        except DoesNotFit as exc:
            raise ValidationError(f"{path.name}: --dtype {column}={type_name}: {exc}") from exc
    for label, column in dates.items():
        try:
            frame[label] = to_datetime(frame[label])
        except DoesNotFit as exc:
            raise ValidationError(f"{path.name}: --parse-dates {column}: {exc}") from exc
    if schema:
        try:
            frame = fit_to_schema(frame, schema)
        except DoesNotFit as exc:
            stored = describe(schema[exc.column])
            raise ValidationError(
                f"{path.name}: column {exc.column!r}: {exc}; {stored_as} stores this column as {stored}. "
                "Fix the file, or use --if-exists replace to publish a new schema"
            ) from exc
    return frame
