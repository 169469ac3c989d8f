"""Encoding one pandas array (a column, an index level, categories) as a ``_Part``: the dispatch
on its dtype, and the NumPy, float, masked, string, datetime, timedelta and category kinds
(object columns are in :mod:`.objects`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dsnotebook._compat import string_dtype_name, string_kind
from dsnotebook.errors import ValidationError

from .arrow_dtypes import to_codec_form
from .encoded import (
    _arrow_of,
    _chunked_slice,
    _feed_buffer,
    _feed_floats,
    _marks_to_list,
    _Part,
)
from .objects import _encode_object
from .values import (
    _CHUNK,
    _INT64_MAX,
    _MARK_CODES,
    _NAT,
    ARROW_TYPES,
    _check_utf8,
    _chunks,
    _first_value,
    _short,
    _tz_to_json,
    _values_to_json,
)

_SUPPORTED_DTYPES = (
    "NumPy bool/int/uint/float, datetime64 (naive or with a time zone), timedelta64, the "
    "nullable Int*/UInt*/Float*/boolean dtypes, str/string, category, object, and Arrow-backed "
    "dtypes (pd.ArrowDtype) of the types listed for them in the codec's docstring"
)
_MASKED_ARRAYS = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)


def _encode_array(obj: pd.Series | pd.Index, where: str) -> _Part:
    """Validate one pandas array and prepare it for storage; see the package docstring."""
    dtype = obj.dtype
    if isinstance(dtype, pd.ArrowDtype):
        # Stored as the pandas array that holds the same values; the spec names the Arrow type.
        stored, arrow_spec = to_codec_form(obj, where)
        part = _encode_array(stored, where)
        part.spec["arrow"] = arrow_spec
        return part
    if isinstance(dtype, pd.CategoricalDtype):
        return _encode_category(obj, where)
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        return _encode_datetime(obj, where)
    if isinstance(dtype, np.dtype) and dtype.kind == "m":
        return _encode_timedelta(obj)
    if isinstance(dtype, pd.StringDtype):
        return _encode_string(obj, where)
    if isinstance(obj.array, _MASKED_ARRAYS):
        return _encode_masked(obj, where)
    if isinstance(dtype, np.dtype):
        if dtype.kind in "biu":
            return _encode_numpy(obj, where)
        if dtype.kind == "f":
            return _encode_float(obj)
        if dtype.kind == "O":
            return _encode_object(obj, where)
        if dtype.kind == "c":
            raise ValidationError(
                f"{where} holds complex numbers (first value {_short(_first_value(obj))}); "
                "complex numbers are not supported: store the real and imaginary parts as "
                "two float columns (.real and .imag)"
            )
    raise ValidationError(
        f"{where} has dtype {dtype} (first value {_short(_first_value(obj))}), which "
        f"dsnotebook cannot store; supported dtypes: {_SUPPORTED_DTYPES}"
    )


def _encode_numpy(obj: pd.Series | pd.Index, where: str) -> _Part:
    a = obj.to_numpy()
    if a.dtype == np.uint64 and len(a) and a.max() > _INT64_MAX:
        i = int(np.argmax(a > _INT64_MAX))
        raise ValidationError(
            f"{where} holds the uint64 value {int(a[i])} at position {i}, above the largest "
            f"value SQL INTEGER holds ({_INT64_MAX}); accepted: uint64 values up to 2**63-1 "
            "(convert larger ones to float64 or str first)"
        )
    return _Part(
        spec={"kind": "numpy", "dtype": str(a.dtype)},
        sql_type="INTEGER",
        n=len(a),
        values=lambda start, stop: a[start:stop].tolist(),
        marks=None,
        feed=_feed_buffer(a),
        owner=obj,
        arrow=lambda start, stop: pa.array(a[start:stop]),
    )


def _float_marks(a: np.ndarray, start: int, stop: int) -> np.ndarray:
    sub = a[start:stop]
    codes = np.zeros(len(sub), dtype=np.int8)
    codes[np.isnan(sub)] = _MARK_CODES["nan"]
    codes[(sub == 0) & np.signbit(sub)] = _MARK_CODES["negzero"]
    return codes


def _nan_to_none(floats: np.ndarray) -> list:
    """Python floats, None for NaN."""
    out = floats.tolist()
    for j in np.flatnonzero(np.isnan(floats)).tolist():
        out[j] = None
    return out


def _encode_float(obj: pd.Series | pd.Index) -> _Part:
    a = obj.to_numpy()
    # SQLite stores -0.0 as 0; only columns that hold one get a marks column.
    negzero = bool(np.any((a == 0) & np.signbit(a)))
    return _Part(
        spec={"kind": "float", "dtype": str(a.dtype), "null": "nan"},
        sql_type="REAL",
        n=len(a),
        # NaN is stored as NULL on every database, so that SQL's aggregates skip it.
        values=lambda start, stop: _nan_to_none(a[start:stop]),
        marks=(lambda start, stop: _float_marks(a, start, stop)) if negzero else None,
        feed=_feed_floats(a),
        owner=obj,
        # float16 has no exact Arrow cast on every version; NumPy widens it exactly. from_pandas
        # makes NaN null and keeps the NumPy buffer as the values.
        arrow=lambda start, stop: pa.array(a[start:stop].astype(np.float64, copy=False), from_pandas=True),
    )


def _encode_masked(obj: pd.Series | pd.Index, where: str) -> _Part:
    arr = obj.array
    dtype = obj.dtype
    is_float = isinstance(arr, pd.arrays.FloatingArray)
    is_bool = isinstance(arr, pd.arrays.BooleanArray)
    mask = np.asarray(arr.isna(), dtype=bool)
    if is_float:
        data = arr.to_numpy(dtype=dtype.numpy_dtype, na_value=np.nan)
    elif is_bool:
        data = arr.to_numpy(dtype=bool, na_value=False)
    else:
        data = arr.to_numpy(dtype=dtype.numpy_dtype, na_value=0)
    if data.dtype == np.uint64 and len(data):
        over = (data > _INT64_MAX) & ~mask
        if over.any():
            i = int(np.argmax(over))
            raise ValidationError(
                f"{where} holds the UInt64 value {int(data[i])} at position {i}, above the "
                f"largest value SQL INTEGER holds ({_INT64_MAX}); accepted: values up to "
                "2**63-1 (convert larger ones to Float64 or string first)"
            )
    has_na = bool(mask.any())
    nan_cells = np.isnan(data) & ~mask if is_float else None
    negzero = (data == 0) & np.signbit(data) if is_float else None
    has_nan = bool(nan_cells.any()) if is_float else False
    has_negzero = bool(negzero.any()) if is_float else False

    # Floats hold NaN under the mask. A NaN that is not masked is stored as NULL too, as on
    # SQLite: the manifest's "null" or the marks tell it from pd.NA.
    def values(start: int, stop: int) -> list:
        if is_float:
            return _nan_to_none(data[start:stop])
        out = data[start:stop].tolist()
        for j in np.flatnonzero(mask[start:stop]).tolist():
            out[j] = None
        return out

    def arrow(start: int, stop: int) -> pa.Array:
        if not (has_na or has_nan):
            return pa.array(data[start:stop])  # no validity bitmap to build: the buffer as it is
        if is_float:
            return pa.array(data[start:stop], from_pandas=True)
        return pa.array(data[start:stop], mask=mask[start:stop])

    def marks(start: int, stop: int) -> np.ndarray:
        codes = np.zeros(stop - start, dtype=np.int8)
        codes[mask[start:stop]] = _MARK_CODES["na"]
        codes[nan_cells[start:stop]] = _MARK_CODES["nan"]
        codes[negzero[start:stop]] = _MARK_CODES["negzero"]
        return codes

    def feed(h: Any) -> None:
        # Values under the mask are arbitrary; hash zeros there so equal frames agree, and one
        # canonical NaN (payloads can differ bit for bit). Without either, the data as it is.
        if has_na or has_nan:
            clean = data.copy()
            clean[mask] = 0
            if is_float:
                clean[np.isnan(clean)] = np.nan
        else:
            clean = data
        h.update(np.ascontiguousarray(clean))
        h.update(np.ascontiguousarray(mask))

    return _Part(
        spec={"kind": "masked", "dtype": str(dtype), "null": "nan" if has_nan and not has_na else "na"},
        sql_type="REAL" if is_float else "INTEGER",
        n=len(data),
        values=values,
        marks=marks if (has_na and has_nan) or has_negzero else None,
        feed=feed,
        owner=obj,
        arrow=arrow,
    )


def _encode_string(obj: pd.Series | pd.Index, where: str) -> _Part:
    arr = obj.array
    dtype = obj.dtype
    storage, na = string_kind(dtype)
    n = len(arr)
    if storage == "python":
        # Arrow storage is valid UTF-8 by construction; Python strings may hold surrogates.
        for start in _chunks(n):
            chunk = arr[start : start + _CHUNK].to_numpy(dtype=object, na_value="").tolist()
            _check_utf8(chunk, where, start, only_str=True)

    def values(start: int, stop: int) -> list:
        return arr[start:stop].to_numpy(dtype=object, na_value=None).tolist()

    if storage == "pyarrow":
        chunked = arr.__arrow_array__()

        def arrow(start: int, stop: int) -> pa.Array:
            return _chunked_slice(chunked, start, stop)
    else:

        def arrow(start: int, stop: int) -> pa.Array:
            # The array's own object ndarray (no copy); pyarrow reads it in C, and with
            # from_pandas both pd.NA and NaN (the two na_values) become null.
            objects = np.asarray(arr[start:stop], dtype=object)
            return pa.array(objects, type=pa.large_string(), from_pandas=True)

    return _Part(
        spec={"kind": "string", "dtype": string_dtype_name(na), "storage": storage, "na": na},
        sql_type="TEXT",
        n=n,
        values=values,
        marks=None,
        feed=_feed_strings(arr, storage, n, values),
        owner=obj,
        arrow=arrow,
    )


def _arrow_string_chunks(arr: Any) -> list | None:
    """(lengths in bytes with -1 for missing, the bytes) per chunk of an Arrow string array, or
    None where its layout is unusual (a missing value that still spans bytes)."""
    out = []
    for chunk in arr.__arrow_array__().chunks:
        chunk = chunk.cast(pa.large_string())
        _, offsets_buffer, data_buffer = chunk.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[chunk.offset : chunk.offset + len(chunk) + 1]
        lengths = np.diff(offsets)
        if chunk.null_count:
            null = chunk.is_null().to_numpy(zero_copy_only=False)
            if lengths[null].any():
                return None
            lengths[null] = -1
        data = memoryview(data_buffer)[offsets[0] : offsets[-1]] if len(offsets) and data_buffer is not None else b""
        out.append((lengths, data))
    return out


def _feed_strings(arr: Any, storage: str, n: int, values: Callable[[int, int], list]) -> Callable[[Any], None]:
    """Hash a string array as the lengths of its strings, then their text: the same for equal
    arrays however they are chunked, and a few times cheaper than hashing their repr."""

    def feed(h: Any) -> None:
        lengths_hash, text_hash = hashlib.sha256(), hashlib.sha256()
        chunks = _arrow_string_chunks(arr) if storage == "pyarrow" else None
        if chunks is not None:
            for lengths, data in chunks:
                lengths_hash.update(np.ascontiguousarray(lengths, dtype=np.int64))
                text_hash.update(data)
        else:
            for start in _chunks(n):
                chunk = values(start, min(n, start + _CHUNK))
                present = [v for v in chunk if v is not None]
                lengths = np.fromiter((-1 if v is None else len(v) for v in chunk), dtype=np.int64, count=len(chunk))
                lengths_hash.update(lengths)
                text_hash.update("".join(present).encode("utf-8", "surrogatepass"))
        h.update(lengths_hash.digest() + text_hash.digest())

    return feed


def _encode_datetimelike(obj: pd.Series | pd.Index, spec: dict) -> _Part:
    arr = obj.array
    i8 = arr.asi8
    nat = i8 == _NAT
    has_nat = bool(nat.any())

    def values(start: int, stop: int) -> list:
        out = i8[start:stop].tolist()
        if has_nat:
            for j in np.flatnonzero(nat[start:stop]).tolist():
                out[j] = None
        return out

    def arrow(start: int, stop: int) -> pa.Array:
        return pa.array(i8[start:stop], mask=nat[start:stop] if has_nat else None)

    spec["unit"] = arr.unit
    return _Part(
        spec=spec,
        sql_type="INTEGER",
        n=len(i8),
        values=values,
        marks=None,
        feed=_feed_buffer(i8),
        owner=obj,
        arrow=arrow,
    )


def _encode_datetime(obj: pd.Series | pd.Index, where: str) -> _Part:
    tz = getattr(obj.dtype, "tz", None)
    spec = {"kind": "datetime", "dtype": str(obj.dtype), "tz": None if tz is None else _tz_to_json(tz, where)}
    return _encode_datetimelike(obj, spec)


def _encode_timedelta(obj: pd.Series | pd.Index) -> _Part:
    return _encode_datetimelike(obj, {"kind": "timedelta", "dtype": str(obj.dtype)})


def _encode_category(obj: pd.Series | pd.Index, where: str) -> _Part:
    arr = obj.array
    codes = arr.codes
    categories = arr.categories
    cat_part = _encode_array(categories, f"the categories of {where}")
    # Each row stores its category's own value, readable in SQL; code -1 (missing) -> NULL.
    lookup = np.empty(len(categories) + 1, dtype=object)
    for i, v in enumerate(cat_part.values(0, len(categories))):
        lookup[i] = v
    lookup[-1] = None
    return _Part(
        spec={
            "kind": "category",
            "dtype": "category",
            "ordered": bool(arr.ordered),
            "categories": _embed(cat_part),
        },
        sql_type=cat_part.sql_type,
        n=len(codes),
        values=lambda start, stop: lookup[codes[start:stop]].tolist(),
        marks=None,
        feed=_feed_buffer(codes),
        owner=obj,
        arrow=_category_arrow(cat_part, codes),
    )


def _category_arrow(cat_part: _Part, codes: np.ndarray) -> Callable[[int, int], pa.Array]:
    """Rows of a categorical column as Arrow: the categories' stored values, made once, taken
    by code (code -1, a missing value, takes null)."""
    stored = _arrow_of(cat_part)(0, cat_part.n) if cat_part.n else pa.array([], type=ARROW_TYPES[cat_part.sql_type])
    stored = stored.cast(ARROW_TYPES[cat_part.sql_type])

    def arrow(start: int, stop: int) -> pa.Array:
        chunk = codes[start:stop]
        return stored.take(pa.array(chunk, mask=chunk < 0))

    return arrow


def _embed(part: _Part) -> dict:
    """The part's spec with its values embedded as JSON (for small arrays: labels, categories)."""
    spec = dict(part.spec)
    spec["values"] = _values_to_json(part.values(0, part.n))
    if part.marks is not None:
        spec["marks"] = _marks_to_list(part.marks(0, part.n))
    return spec
