"""Lossless casts of a file's columns, for ``dsnotebook push``: ``--dtype``, ``--parse-dates``
and an append's cast to the latest version's dtypes.

A cast either keeps every value exactly or refuses with :class:`DoesNotFit`, which names the first
row (counted from 1, the header not counted) and the value that does not fit. Text is parsed into
numbers, dates or durations; numbers are never turned into text or dates, since that would guess.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

__all__ = ["DoesNotFit", "describe", "fit_to_schema", "to_datetime", "to_dtype"]


class DoesNotFit(ValueError):
    """A value that a cast cannot keep exactly. ``str()`` reads "row 3 holds 2.5, which ..."."""

    def __init__(self, position: int | None, reason: str) -> None:
        super().__init__(reason if position is None else f"row {position + 1} {reason}")
        self.position = position
        #: The column's label, where the caller knows it.
        self.column: object = None


def describe(dtype: object) -> str:
    """A dtype as users write it; a category lists its categories (the first ten)."""
    if isinstance(dtype, pd.CategoricalDtype):
        categories = [_plain(c) for c in dtype.categories[:10]]
        more = ", ..." if len(dtype.categories) > 10 else ""
        return f"category {str(categories)[:-1]}{more}]" + (" (ordered)" if dtype.ordered else "")
    return str(dtype)


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) and not isinstance(value, (np.datetime64, np.timedelta64)) else value


def _holds(position: int, value: object, what: str) -> DoesNotFit:
    return DoesNotFit(position, f"holds {_plain(value)!r}, {what}")


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _is_text(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.StringDtype):
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


def _holds_missing(dtype: object) -> bool:
    return not (isinstance(dtype, np.dtype) and dtype.kind in "iub")


def _quietly(convert, series: pd.Series, dtype: object) -> pd.Series:
    """``convert(series)``, without NumPy's warnings about out-of-range values: the comparison
    that follows finds them. If pandas refuses, the first value it refuses alone is reported."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return convert(series)
    except (TypeError, ValueError, OverflowError) as exc:
        for position, value in enumerate(series.array):
            if pd.isna(value):
                continue
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    convert(pd.Series([value], dtype=series.dtype))
            except (TypeError, ValueError, OverflowError):
                raise _holds(position, value, f"which {describe(dtype)} cannot hold") from exc
        raise DoesNotFit(None, f"cannot be cast to {describe(dtype)}: {exc}") from exc


def _check_kept(source: pd.Series, result: pd.Series, dtype: object) -> None:
    """Refuse unless ``result`` holds a value wherever ``source`` (the column as read) does."""
    lost = _first(~source.isna().to_numpy() & result.isna().to_numpy())
    if lost is not None:
        number = is_numeric_dtype(dtype) or is_bool_dtype(dtype)
        reason = "which is not a number" if number else f"which {describe(dtype)} cannot hold"
        raise _holds(lost, source.iloc[lost], reason)


def _comparable(series: pd.Series) -> np.ndarray:
    """Values that compare exactly with another column's: Python objects (1 == 1.0, but
    2**53 + 1 != 2.0**53), and datetimes as NumPy datetimes in UTC, which compare across units
    without building a Timestamp per value."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    if series.dtype.kind in "mM":
        return series.to_numpy()
    return series.astype(object).to_numpy()


def _check_exact(source: pd.Series, reference: pd.Series, converted: pd.Series, dtype: object) -> pd.Series:
    """Refuse unless ``converted`` holds ``reference``'s values exactly, and a value wherever
    ``source`` (the column as read) holds one."""
    _check_kept(source, converted, dtype)
    both = ~(reference.isna().to_numpy() | converted.isna().to_numpy())
    differs = np.zeros(len(source), dtype=bool)
    differs[both] = _comparable(reference)[both] != _comparable(converted)[both]
    bad = _first(differs)
    if bad is not None:
        raise _holds(bad, source.iloc[bad], f"which {describe(dtype)} cannot hold exactly")
    return converted


def _parse_dates(series: pd.Series, date_format: str | None) -> pd.Series:
    # Without a format, pandas guesses one from the first value; failing that, it parses each
    # value with dateutil, and says so in a warning that is no news on the command line.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Could not infer format", UserWarning)
        try:
            return pd.to_datetime(series, format=date_format, errors="coerce")
        except ValueError:  # mixed UTC offsets (a value without one is taken as UTC)
            return pd.to_datetime(series, format=date_format, errors="coerce", utc=True)


def to_datetime(series: pd.Series, dtype: object = None) -> pd.Series:
    """Parse text into datetimes, or convert datetimes, to ``dtype`` if given.

    Text in ISO 8601 is read in any of its forms; other text in the format pandas guesses from
    the first value. Without ``dtype`` the unit is pandas' choice, and values with different UTC
    offsets are converted to UTC (a value without an offset among them is taken as UTC). Naive
    values take ``dtype``'s time zone (a time that does not exist there or is ambiguous is
    refused); values with an offset are converted to it.

    Raises:
        DoesNotFit: the first value that is not a date and time, is a number, or does not fit.
    """
    missing = series.isna().to_numpy()
    if isinstance(series.dtype, pd.DatetimeTZDtype) or series.dtype.kind == "M":
        parsed = series
    elif _is_text(series):
        parsed = _parse_dates(series, "ISO8601")
        bad = _first(~missing & parsed.isna().to_numpy())
        if bad is not None:  # not ISO 8601: the format pandas guesses from the first value
            guessed = _parse_dates(series, None)
            if (~missing & guessed.isna().to_numpy()).sum() < (~missing & parsed.isna().to_numpy()).sum():
                parsed = guessed
                bad = _first(~missing & parsed.isna().to_numpy())
        if bad is not None:
            raise _holds(bad, series.iloc[bad], "which is not a date and time pandas can read")
    elif missing.all():
        parsed = pd.to_datetime(series.astype(object))
    else:
        bad = _first(~missing)
        raise _holds(bad, series.iloc[bad], f"which is not text or a date (the file's column is {series.dtype})")
    if dtype is None:
        return parsed
    tz = getattr(dtype, "tz", None)
    if tz is not None and parsed.dt.tz is None:
        localized = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        bad = _first(~missing & localized.isna().to_numpy())
        if bad is not None:
            raise _holds(bad, series.iloc[bad], f"a time that does not exist, or is ambiguous, in {tz}")
        parsed = localized
    elif tz is not None:
        parsed = parsed.dt.tz_convert(tz)
    elif parsed.dt.tz is not None:
        bad = _first(~missing)
        raise _holds(bad, series.iloc[bad], f"which has a UTC offset, and {describe(dtype)} has no time zone")
    unit = dtype.unit if tz is not None else np.datetime_data(dtype)[0]
    converted = _quietly(lambda s: s.dt.as_unit(unit), parsed, dtype)
    return _check_exact(series, parsed, converted, dtype)


def to_dtype(series: pd.Series, dtype: object) -> pd.Series:
    """Cast ``series`` to ``dtype`` (a pandas dtype or its name) without changing any value.

    An all-missing column takes any dtype that holds missing values. Text is parsed into numbers,
    dates and durations; categories must hold each value.

    Raises:
        DoesNotFit: the first value the cast would change or lose.
    """
    dtype = pd.api.types.pandas_dtype(dtype)
    if series.dtype == dtype and not isinstance(dtype, pd.CategoricalDtype):
        return series
    missing = series.isna().to_numpy()
    if len(series) and missing.all() and _holds_missing(dtype):
        return series.astype(object).astype(dtype)
    if not _holds_missing(dtype) and missing.any():
        raise DoesNotFit(_first(missing), f"is empty, and {describe(dtype)} holds no missing values")
    if isinstance(dtype, pd.DatetimeTZDtype) or dtype.kind == "M":
        return to_datetime(series, dtype)
    text = _is_text(series)
    if isinstance(dtype, pd.CategoricalDtype):
        if dtype.categories is None:  # a bare "category" takes the values as they are
            return series.astype(dtype)
        outside = _first(~missing & ~series.isin(dtype.categories).to_numpy())
        if outside is not None:
            raise _holds(outside, series.iloc[outside], f"which is not one of the categories of {describe(dtype)}")
        # Built afresh: astype() keeps a categorical's own order when the categories are equal as sets.
        values = pd.Categorical(series.astype(object), dtype=dtype)
        return _check_exact(series, series, pd.Series(values, index=series.index, name=series.name), dtype)
    elif isinstance(dtype, pd.StringDtype) and not text:
        bad = _first(~missing)
        what = f"which is not text (the file's column is {series.dtype}); {describe(dtype)} holds text only"
        raise _holds(bad, series.iloc[bad], what)
    elif dtype.kind == "m" and text:
        reference = pd.to_timedelta(series, errors="coerce")
    elif (is_numeric_dtype(dtype) or is_bool_dtype(dtype)) and text:
        # Nullable results, so that whole numbers beyond 2**53 stay exact beside missing values.
        reference = pd.to_numeric(series, errors="coerce", dtype_backend="numpy_nullable")
    else:
        reference = series
    _check_kept(series, reference, dtype)
    converted = _quietly(lambda s: s.astype(dtype), reference, dtype)
    return _check_exact(series, reference, converted, dtype)


def fit_to_schema(frame: pd.DataFrame, dtypes: Mapping[object, object]) -> pd.DataFrame:
    """Cast each column of ``frame`` that ``dtypes`` names to that dtype, as :func:`to_dtype` does.

    Columns ``dtypes`` does not name are left as they are. When ``frame`` has exactly the named
    columns, they are put in ``dtypes``' order.

    Raises:
        DoesNotFit: for the first column that does not fit; its ``column`` is the label.
    """
    fitted = frame.copy()
    for position, label in enumerate(frame.columns):
        if label in dtypes:
            try:
                fitted.isetitem(position, to_dtype(frame.iloc[:, position], dtypes[label]))
            except DoesNotFit as exc:
                exc.column = label
                raise
    if len(fitted.columns) == len(dtypes) and set(fitted.columns) == set(dtypes):
        fitted = fitted[list(dtypes)]
    return fitted
