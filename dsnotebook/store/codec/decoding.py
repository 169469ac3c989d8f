"""Decoding from Python values: :func:`decode` and the array decoders it uses, the manifest's
format check, and :func:`_build_frame`, which assembles the index, the columns and their labels
for :func:`decode` and :func:`decode_arrow` alike.

Stored values that do not fit the manifest (text where it says integers, a float beyond its
dtype's range, JSON text that does not parse) raise :class:`~dsnotebook.errors.DatasetError`."""

from __future__ import annotations

import datetime as _dt
import decimal
import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dsnotebook._compat import string_dtype
from dsnotebook.errors import DatasetError, ValidationError

from .arrow_dtypes import from_codec_form
from .dates import from_stored
from .jsontext import UnreadableJSON
from .values import (
    _MARK_CODES,
    _MARKERS,
    _NAT,
    _US_PER_UNIT,
    MANIFEST_FORMAT,
    PG_EPOCH_US,
    TIME_TYPES,
    _scalar_from_json,
    _short,
    _tz_from_json,
    _values_from_json,
)


def _ints(values: Sequence, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """int64 array of stored integers, and the NULL mask (None when there is no NULL)."""
    try:
        return np.array(values, dtype=np.int64), None
    except (TypeError, ValueError, OverflowError):
        pass
    objects = np.array(values, dtype=object)
    null = np.equal(objects, None)
    objects[null] = 0
    try:
        return objects.astype(np.int64), null
    except (TypeError, ValueError, OverflowError) as exc:
        raise DatasetError(f"{where}: stored values are not integers ({exc})") from exc


def _floats(values: Sequence, where: str) -> np.ndarray:
    """float64 array of stored numbers, NaN for NULL."""
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DatasetError(f"{where}: stored values are not numbers ({exc})") from exc


def _narrowed(floats: np.ndarray, dtype: Any, where: str) -> np.ndarray:
    """The float64 values in a float dtype; a value beyond its range is refused, not made inf."""
    try:
        with np.errstate(over="raise"):
            return floats.astype(dtype)
    except FloatingPointError as exc:
        raise DatasetError(f"{where}: a stored value is beyond the range of {dtype}") from exc


def _utf8_text(values: Sequence, where: str) -> list:
    """Text stored as its UTF-8 bytes (see ``text_as``), None for NULL."""
    try:
        return [None if v is None else bytes(v).decode("utf-8") for v in values]
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: stored bytes are not UTF-8 text ({exc})") from exc


def _codes(marks: Sequence | None, n: int) -> np.ndarray:
    if marks is None:
        return np.zeros(n, dtype=np.int8)
    return np.nan_to_num(np.array(marks, dtype=np.float64), nan=0.0).astype(np.int8)


def _none_among(values: Sequence, positions: np.ndarray) -> np.ndarray:
    """Which of these (NULL-or-NaN) positions hold None rather than a float NaN."""
    return np.fromiter((values[i] is None for i in positions.tolist()), dtype=bool, count=len(positions))


def _string_dtype(spec: dict) -> pd.StringDtype:
    return string_dtype(spec["storage"], spec["na"])


_US = _dt.timedelta(microseconds=1)
_UNIX_EPOCH = _dt.datetime(1970, 1, 1)
_UNIX_EPOCH_UTC = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _native_time_ints(values: Sequence, sql_type: str, unit: str, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Stored TIMESTAMP(TZ) or INTERVAL values as counts of ``unit`` since the Unix epoch (or
    durations), and the NULL mask.

    Values come as the driver gives them: datetime or timedelta objects, or, from a read
    through asyncpg's tuple codecs (see :meth:`EncodedFrame.iter_rows`), the microseconds
    (since 2000-01-01 for timestamps).
    """
    first = next((v for v in values if v is not None), None)
    if isinstance(first, _dt.datetime):
        epoch = _UNIX_EPOCH_UTC if first.tzinfo is not None else _UNIX_EPOCH
        us_list = [0 if v is None else (v - epoch) // _US for v in values]
        offset = 0
    elif isinstance(first, _dt.timedelta):
        us_list = [0 if v is None else v // _US for v in values]
        offset = 0
    else:
        us_list = values
        offset = PG_EPOCH_US if sql_type != "INTERVAL" else 0
    us, null = _ints(us_list, where)
    if offset:
        us += offset
    if unit == "ns":
        out = us * 1_000
    else:
        out = us // _US_PER_UNIT[unit]
    if null is None and first is not None and any(v is None for v in values):
        null = np.equal(np.asarray(values, dtype=object), None)
    return out, null


def _native_time_counts(values: Sequence, sql_type: str, unit: str, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_native_time_ints`, refusing values that are not all times of one kind."""
    try:
        return _native_time_ints(values, sql_type, unit, where)
    except (TypeError, OverflowError) as exc:
        raise DatasetError(f"{where}: stored values are not {sql_type} values ({exc})") from exc


def _decode_array(
    spec: dict, values: Sequence, marks: Sequence | None, n: int, where: str, sql_type: str | None = None
) -> Any:
    if spec.get("text_as") == "utf-8":
        values = _utf8_text(values, where)
    kind = spec["kind"]
    if kind == "numpy":
        dtype = np.dtype(spec["dtype"])
        ints, null = _ints(values, where)
        if null is not None:
            raise DatasetError(f"{where}: NULL stored in a column of dtype {dtype}")
        return ints.astype(dtype)
    if kind == "float":
        floats = _floats(values, where)
        if marks is not None:
            floats[_codes(marks, n) == _MARK_CODES["negzero"]] = -0.0
        return _narrowed(floats, spec["dtype"], where)
    if kind == "masked":
        return _decode_masked(spec, values, marks, n, where)
    if kind == "string":
        objects = np.empty(n, dtype=object)
        objects[:] = values
        return pd.array(objects, dtype=_string_dtype(spec))
    if kind == "category":
        return _decode_category(spec, values, n, where, sql_type)
    if kind in ("datetime", "timedelta"):
        if sql_type in TIME_TYPES:
            ints, null = _native_time_counts(values, sql_type, spec["unit"], where)
        else:
            ints, null = _ints(values, where)
        return _times_from_counts(spec, ints, null)
    if kind == "object":
        return _decode_object(spec, values, marks, n, where)
    if kind == "labels":
        # Filled one by one: tuple labels must stay tuples, not become rows of a 2-D array.
        objects = np.empty(n, dtype=object)
        for i, v in enumerate(values):
            objects[i] = v
        return objects
    raise DatasetError(f"{where}: unknown kind {kind!r} in the manifest")


def _times_from_counts(spec: dict, ints: np.ndarray, null: np.ndarray | None) -> Any:
    """A datetime or timedelta array from counts of the spec's unit (UTC for a datetime with a
    time zone), NaT where ``null``; ``ints`` is changed in place."""
    if null is not None:
        ints[null] = _NAT
    letter = "M" if spec["kind"] == "datetime" else "m"
    array = pd.array(ints.view(f"{letter}8[{spec['unit']}]"))
    if spec["kind"] == "datetime" and spec["tz"] is not None:
        array = array.tz_localize("UTC").tz_convert(_tz_from_json(spec["tz"]))
    return array


def _decode_masked(spec: dict, values: Sequence, marks: Sequence | None, n: int, where: str) -> Any:
    dtype = pd.api.types.pandas_dtype(spec["dtype"])
    if isinstance(dtype, pd.Float32Dtype | pd.Float64Dtype):
        floats = _floats(values, where)
        if marks is not None:
            codes = _codes(marks, n)
            floats[codes == _MARK_CODES["negzero"]] = -0.0
            mask = codes == _MARK_CODES["na"]
        else:
            mask = np.zeros(n, dtype=bool)
            if spec["null"] == "na":
                # A table written by an earlier release on PostgreSQL may hold NaN values;
                # only NULL is NA.
                nulls = np.flatnonzero(np.isnan(floats))
                mask[nulls[_none_among(values, nulls)]] = True
        return pd.arrays.FloatingArray(_narrowed(floats, dtype.numpy_dtype, where), mask)
    ints, null = _ints(values, where)
    mask = np.zeros(n, dtype=bool) if null is None else null
    if isinstance(dtype, pd.BooleanDtype):
        return pd.arrays.BooleanArray(ints.astype(bool), mask)
    return pd.arrays.IntegerArray(ints.astype(dtype.numpy_dtype), mask)


def _decode_embedded(spec: dict, where: str) -> Any:
    values = _values_from_json(spec["values"])
    array = _decode_array(spec, values, spec.get("marks"), len(values), where)
    return from_codec_form(spec, array) if "arrow" in spec else array


def _decode_category(spec: dict, values: Sequence, n: int, where: str, sql_type: str | None) -> pd.Categorical:
    cat_spec = spec["categories"]
    # The embedded categories hold the generic stored form; bring native values to it.
    if sql_type in TIME_TYPES:
        ints, null = _native_time_counts(values, sql_type, cat_spec["unit"], where)
        values = ints.astype(object)
        if null is not None:
            values[null] = None
    elif sql_type == "NUMERIC":
        values = [None if v is None else str(v) for v in values]
    array = _decode_embedded(cat_spec, where)
    categories = pd.Index(array, dtype=array.dtype)
    stored = _values_from_json(cat_spec["values"])
    lookup = {v: i for i, v in enumerate(stored)}
    codes = np.fromiter(map(lookup.get, values, itertools.repeat(-1)), dtype=np.int64, count=n)
    missing = np.flatnonzero(codes == -1)
    if len(missing):
        unknown = [values[i] for i in missing.tolist() if values[i] is not None]
        if unknown:
            raise DatasetError(
                f"{where}: stored value {_short(unknown[0])} is not one of the column's categories"
            )
    dtype = pd.CategoricalDtype(categories, ordered=spec["ordered"])
    return pd.Categorical.from_codes(codes, dtype=dtype)


def _decode_object(spec: dict, values: Sequence, marks: Sequence | None, n: int, where: str) -> np.ndarray:
    kind = spec["object"]
    out = np.empty(n, dtype=object)
    if kind == "json":
        # A driver that parses JSON returns lists and dicts: assigned at once, lists of equal
        # length would be taken for the rows of a 2-D array.
        for i, v in enumerate(values):
            out[i] = v
    else:
        out[:] = values
    null = pd.isna(out) if n else np.zeros(0, dtype=bool)
    present = ~null
    if kind == "bool":
        out[present] = out[present].astype(bool)
    elif kind == "decimal":
        try:
            out[present] = [decimal.Decimal(v) for v in out[present]]
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise DatasetError(f"{where}: a stored value is not a decimal number ({exc})") from exc
    elif kind in ("date", "time"):
        # ISO text, or (PostgreSQL's date and time) the objects themselves.
        out[present] = from_stored(out[present], kind, where)
    elif kind == "json":
        # JSON text, or (from a driver that parses json itself, as SQLAlchemy's asyncpg
        # connections do) the list or dict it holds.
        for i in np.flatnonzero(present).tolist():
            if type(out[i]) is str:
                out[i] = _json_cell(out[i], where)
            elif type(out[i]) is UnreadableJSON:
                # Text the catalog's JSON reader left alone (see .jsontext): a data cell is
                # read whole, whatever its size and depth.
                out[i] = _json_cell(out[i].text, where)
    if marks is not None:
        codes = _codes(marks, n)
        for name, code in _MARK_CODES.items():
            hit = codes == code
            if name == "negzero":
                out[hit] = -0.0
            elif hit.any():
                out[hit] = _MARKERS[name]
    elif null.any():
        out[null] = _MARKERS[spec["null"]]
    return out


def _json_cell(text: Any, where: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise DatasetError(f"{where}: a stored value is not JSON text ({type(exc).__name__}: {exc})") from None


def _level_index(array: Any, spec: dict, name: Any, where: str) -> pd.Index:
    if "freq" in spec:
        cls = pd.DatetimeIndex if spec["kind"] == "datetime" else pd.TimedeltaIndex
        try:
            return cls(array, freq=spec["freq"], name=name)
        except ValueError as exc:
            raise DatasetError(f"{where}: the stored values do not have the frequency {spec['freq']!r} ({exc})") from exc
    return pd.Index(array, dtype=array.dtype, name=name)


def _decode_index(spec: dict, n: int, arrays: Callable[[int, dict], Any], where: str) -> pd.Index:
    if spec["kind"] == "range":
        start, step = spec["start"], spec["step"]
        return pd.RangeIndex(start, start + n * step, step, name=_scalar_from_json(spec["name"]))
    names = [_scalar_from_json(name) for name in spec["names"]]
    levels = [_level_index(arrays(k, level), level, names[k], f"{where} level {k}") for k, level in enumerate(spec["levels"])]
    if spec["kind"] == "multi":
        return pd.MultiIndex.from_arrays(levels, names=names)
    return levels[0]


def _decode_columns(manifest: dict) -> pd.Index:
    def arrays(k: int, level: dict) -> Any:
        return _decode_embedded(level, f"column labels level {k}")

    taken = manifest.get("columns_taken")
    if taken is None:
        return _decode_index(manifest["columns"], len(manifest["data"]), arrays, "column labels")
    # Some columns of a version (see select()): the full labels, indexed as df[labels] does, so
    # that a MultiIndex keeps its levels and every level its dtype.
    return _decode_index(manifest["columns"], taken["of"], arrays, "column labels")[taken["at"]]


def _check_format(manifest: dict) -> None:
    version = manifest.get("format") if isinstance(manifest, dict) else None
    if version != MANIFEST_FORMAT:
        raise DatasetError(
            f"manifest format {version!r} is not understood by this dsnotebook (it reads format "
            f"{MANIFEST_FORMAT}); upgrade dsnotebook to read this dataset"
        )


def decode(manifest: dict, columns: Sequence[Sequence]) -> pd.DataFrame:
    """Rebuild the DataFrame from stored values and its manifest.

    Args:
        manifest: the manifest from :func:`encode` (or the reduced one from :func:`select`).
        columns: one sequence of values per entry of ``manifest["sql_columns"]``, in that
            order (the order of :attr:`EncodedFrame.columns`), as the DB driver returns
            them (int, float, str, bytes or None): lists, tuples or 1-D NumPy object
            arrays. A prefix of the rows (a ``LIMIT``) is fine: a RangeIndex is rebuilt
            from the row count. With no SQL columns at all (see :func:`select`), the row
            count is read from ``manifest["nrows"]``.

    Returns:
        The DataFrame, equal to the encoded one in values, dtypes, index and labels.

    Raises:
        ValidationError: the number or lengths of ``columns`` do not match the manifest.
        DatasetError: the manifest has an unknown format, or the stored values do not
            fit it.
    """
    _check_format(manifest)
    names = [name for name, _ in manifest["sql_columns"]]
    if len(columns) != len(names):
        raise ValidationError(
            f"decode() got {len(columns)} value columns; the manifest lists {len(names)}: {names}"
        )
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ValidationError(f"decode() got value columns of different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else int(manifest.get("nrows", 0))
    by_name = dict(zip(names, columns))
    types = dict((name, sql_type) for name, sql_type in manifest["sql_columns"])

    def array_of(spec: dict, where: str) -> Any:
        marks = by_name[spec["marks_sql"]] if "marks_sql" in spec else None
        return _decode_array(spec, by_name[spec["sql"]], marks, n, where, types[spec["sql"]])

    return _build_frame(manifest, n, array_of)


def _build_frame(manifest: dict, n: int, array_of: Callable[[dict, str], Any]) -> pd.DataFrame:
    """Assemble the frame of ``n`` rows: the index, one column per data spec, the labels.

    ``array_of(spec, where)`` decodes the stored array an index level's or a column's spec
    names; ``where`` names it for error messages.
    """

    def decoded(spec: dict, where: str) -> Any:
        array = array_of(spec, where)
        return from_codec_form(spec, array) if "arrow" in spec else array

    def arrays(k: int, level: dict) -> Any:
        return decoded(level, f"index level {k}")

    index = _decode_index(manifest["index"], n, arrays, "index")
    data = {}
    for i, spec in enumerate(manifest["data"]):
        array = decoded(spec, f"column {spec['sql']!r}")
        # An explicit dtype: the DataFrame constructor would turn object strings into str.
        data[i] = pd.Series(array, index=index, dtype=array.dtype, copy=False)
    frame = pd.DataFrame(data, copy=False) if data else pd.DataFrame(index=index)
    frame.columns = _decode_columns(manifest)
    return frame
