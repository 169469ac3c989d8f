"""Arrow-backed pandas columns (``pd.ArrowDtype``): each Arrow type is stored as the pandas
array that holds its values exactly, and rebuilt as the same ``ArrowDtype`` when decoded.

:func:`to_codec_form` gives the array the codec already stores (masked integers, floats and
bools; pyarrow-backed strings; datetime64 and timedelta64 counts; object columns of bytes,
Decimals, dates, times or JSON values) and the manifest entry that names the Arrow type;
:func:`from_codec_form` turns the decoded array back into the Arrow-backed one. The manifest
entry (an array spec's ``"arrow"``) holds the pandas dtype (``"int64[pyarrow]"``), the Arrow
type as text, for reading, and as a serialised Arrow schema, from which it is rebuilt exactly.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dsnotebook._compat import string_dtype
from dsnotebook.errors import DatasetError, ValidationError

from .values import _INT64_MAX, _NAT, _first_value, _short

ARROW_ACCEPTED = (
    "int8..int64, uint8..uint64 (values up to 2**63-1), float32, float64, bool, string, "
    "large_string, binary, large_binary, timestamp (s/ms/us/ns, naive or with a time zone), "
    "duration, date32, date64, time32, time64, decimal128, decimal256, dictionary of those, and "
    "list, large_list, fixed_size_list or struct of integers, floats, bools and strings"
)
_MS_PER_DAY = 86_400_000
_T = pa.types


def _is_json_leaf(t: pa.DataType) -> bool:
    return (
        _T.is_integer(t)
        or (_T.is_floating(t) and not _T.is_float16(t))
        or _T.is_boolean(t)
        or _T.is_string(t)
        or _T.is_large_string(t)
        or _T.is_null(t)
    )


def _is_json_type(t: pa.DataType) -> bool:
    """A list or struct whose values JSON text holds and gives back as pyarrow reads them."""
    if _T.is_list(t) or _T.is_large_list(t) or _T.is_fixed_size_list(t):
        return _is_json_type(t.value_type) or _is_json_leaf(t.value_type)
    if _T.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        if len(set(names)) != len(names):
            return False  # a dict cannot hold two fields of one name
        return all(
            _is_json_type(t.field(i).type) or _is_json_leaf(t.field(i).type)
            for i in range(t.num_fields)
        )
    return False


def _kind(t: pa.DataType) -> str | None:
    """How values of Arrow type ``t`` are stored, or None where they cannot be."""
    if _T.is_integer(t):
        return "int"
    if _T.is_float32(t) or _T.is_float64(t):
        return "float"
    if _T.is_boolean(t):
        return "bool"
    if _T.is_string(t) or _T.is_large_string(t):
        return "string"
    if _T.is_binary(t) or _T.is_large_binary(t):
        return "objects"
    if _T.is_timestamp(t):
        return "timestamp"
    if _T.is_duration(t) or (_T.is_time64(t) and t.unit == "ns"):
        # time64[ns] as nanoseconds since midnight: datetime.time holds only microseconds.
        return "duration"
    if (
        _T.is_date32(t)
        or _T.is_date64(t)
        or _T.is_time(t)
        or _T.is_decimal128(t)
        or _T.is_decimal256(t)
    ):
        return "objects"
    if _is_json_type(t):
        return "json"
    if (
        _T.is_dictionary(t)
        and not _T.is_dictionary(t.value_type)
        and _kind(t.value_type) is not None
    ):
        return "dictionary"
    return None


def storable(t: pa.DataType) -> bool:
    """Whether an Arrow-backed column of type ``t`` can be stored (see :data:`ARROW_ACCEPTED`)."""
    return _kind(t) is not None


def _refuse(where: str, dtype: Any, first: Any, reason: str = "") -> ValidationError:
    return ValidationError(
        f"{where} has dtype {dtype} (first value {_short(first)}), which dsnotebook cannot store"
        f"{reason}; accepted Arrow-backed dtypes: {ARROW_ACCEPTED}"
    )


def _type_to_json(t: pa.DataType) -> str:
    return base64.b64encode(
        pa.schema([pa.field("values", t)]).serialize().to_pybytes()
    ).decode("ascii")


def _type_from_json(text: str) -> pa.DataType:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text))).field(0).type


def _filled(column: pa.ChunkedArray, fill: Any) -> np.ndarray:
    """The values as a NumPy array, ``fill`` where null: without a copy where the column is one
    chunk without nulls (the array is then read-only; nothing downstream writes to it)."""
    if column.null_count == 0:
        return column.to_numpy()
    return column.fill_null(fill).to_numpy()


def _null_mask(column: pa.ChunkedArray) -> np.ndarray:
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    return np.require(column.is_null().to_numpy(), requirements="W")


def _counts(column: pa.ChunkedArray, where: str, t: pa.DataType) -> np.ndarray:
    """Timestamps, durations or times as int64 counts of their unit, NaT's value where null.

    Raises:
        ValidationError: a value (not a null) is int64's smallest, which Arrow holds but pandas
            reserves for NaT: stored, it would come back as a null.
    """
    counts = _filled(column.cast(pa.int64()), _NAT)
    taken = (counts == _NAT) & ~_null_mask(column)
    if np.any(taken):
        i = int(np.argmax(taken))
        raise ValidationError(
            f"{where} holds the {t} value {_NAT} at position {i}, which pandas reserves for NaT "
            f"(a null); accepted: {t} values from {_NAT + 1} to {_INT64_MAX}"
        )
    return counts


def _objects(values: list) -> pd.Series:
    # Filled one by one: lists of equal length would otherwise become rows of a 2-D array.
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return pd.Series(out, dtype=object, copy=False)


def to_codec_form(obj: pd.Series | pd.Index, where: str) -> tuple[pd.Series, dict]:
    """The Arrow-backed ``obj`` as a Series the codec stores, and its manifest entry.

    Raises:
        ValidationError: the Arrow type has no storage here, or a value does not fit it
            (uint64 above 2**63-1, a date64 that is not a whole day, a date beyond year 9999).
    """
    dtype = obj.dtype
    t = dtype.pyarrow_dtype
    column = obj.array.__arrow_array__()
    first = _first_value(obj)
    kind = _kind(t)
    if kind is None:
        raise _refuse(where, dtype, first)
    if kind in ("int", "float", "bool"):
        mask = _null_mask(column)
        if kind == "bool":
            array: Any = pd.arrays.BooleanArray(_filled(column, False), mask)
        elif kind == "float":
            array = pd.arrays.FloatingArray(_filled(column, 0.0), mask)
        else:
            values = _filled(column, 0)
            if values.dtype == np.uint64 and np.any((values > _INT64_MAX) & ~mask):
                i = int(np.argmax((values > _INT64_MAX) & ~mask))
                raise ValidationError(
                    f"{where} holds the uint64 value {int(values[i])} at position {i}, above the largest "
                    f"value SQL INTEGER holds ({_INT64_MAX}); accepted: values up to 2**63-1 "
                    "(convert larger ones to float64 or string first)"
                )
            array = pd.arrays.IntegerArray(values, mask)
    elif kind == "string":
        array = string_dtype("pyarrow", "na").__from_arrow__(
            column.cast(pa.large_string())
        )
    elif kind == "timestamp":
        array = pd.array(_counts(column, where, t).view(f"M8[{t.unit}]"))
        if t.tz is not None:
            try:
                array = array.tz_localize("UTC").tz_convert(t.tz)
            except (ValueError, KeyError) as exc:
                raise _refuse(
                    where,
                    dtype,
                    first,
                    f" (pandas does not know the time zone {t.tz!r})",
                ) from exc
    elif kind == "dictionary":
        array = _categorical(column, t, where, dtype, first)
    elif kind == "duration":
        array = pd.array(_counts(column, where, t).view(f"m8[{t.unit}]"))
    else:
        if _T.is_date64(t):
            ms = _filled(column.cast(pa.int64()), 0)
            if np.any(ms % _MS_PER_DAY != 0):
                i = int(np.argmax(ms % _MS_PER_DAY != 0))
                raise ValidationError(
                    f"{where} holds the date64 value {int(ms[i])} ms at position {i}, which is not a whole "
                    "day; accepted: date64 values that are whole days, as Arrow requires"
                )
        try:
            values = column.to_pylist()
        except (ValueError, OverflowError) as exc:
            raise _refuse(
                where, dtype, first, f" (a value has no Python equivalent: {exc})"
            ) from exc
        return _objects(values), _spec(dtype, t)
    return pd.Series(array, copy=False), _spec(dtype, t)


def _categorical(
    column: pa.ChunkedArray, t: pa.DictionaryType, where: str, dtype: Any, first: Any
) -> pd.Categorical:
    """A dictionary column as a Categorical: its dictionary (Arrow-backed) as the categories."""
    combined = (
        column.unify_dictionaries().combine_chunks()
        if column.num_chunks
        else pa.array([], type=t)
    )
    dictionary = combined.dictionary
    if dictionary.null_count or len(dictionary.unique()) != len(dictionary):
        raise _refuse(
            where,
            dtype,
            first,
            " (its dictionary holds a null or a value twice, which categories cannot)",
        )
    categories = pd.Index(pd.arrays.ArrowExtensionArray(dictionary))
    codes = _filled(pa.chunked_array([combined.indices]).cast(pa.int64()), -1)
    try:
        categorical = pd.CategoricalDtype(categories, ordered=t.ordered)
    except ValueError as exc:  # 0.0 and -0.0: two values to Arrow, one to pandas
        raise _refuse(where, dtype, first, f" (pandas cannot make categories of its dictionary: {exc})") from exc
    return pd.Categorical.from_codes(codes, dtype=categorical)


def _dictionary_arrow(array: pd.Categorical) -> pa.Array:
    codes = np.asarray(array.codes, dtype=np.int64)
    dictionary = array.categories.array.__arrow_array__().combine_chunks()
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, mask=codes < 0), dictionary, ordered=array.ordered
    )


def _spec(dtype: pd.ArrowDtype, t: pa.DataType) -> dict:
    return {"dtype": str(dtype), "type": str(t), "schema": _type_to_json(t)}


def _masked_arrow(array: Any) -> pa.Array:
    return pa.array(
        array
    )  # masked arrays hand over their values and mask (NaN stays a value)


def _time_arrow(array: Any) -> pa.Array:
    counts = array.asi8
    return pa.array(counts, mask=counts == _NAT)


_BACK: dict[str, Callable[[Any], pa.Array]] = {
    "masked": _masked_arrow,
    "string": lambda array: array.__arrow_array__(),
    "datetime": _time_arrow,
    "timedelta": _time_arrow,
    "category": _dictionary_arrow,
}


def from_codec_form(spec: dict, array: Any) -> pd.api.extensions.ExtensionArray:
    """The Arrow-backed array of ``spec["arrow"]``'s type from the decoded ``array``.

    Raises:
        DatasetError: a value does not fit the type (a stored Decimal with more digits than
            its precision, say).
    """
    t = _type_from_json(spec["arrow"]["schema"])
    back = _BACK.get(spec["kind"])
    try:
        if back is None:
            # Objects (and the NULLs of a column that held none): pyarrow converts them to ``t``.
            values = pa.array(list(array), type=t, from_pandas=True)
        else:
            values = back(array)
            values = (
                values.view(t)
                if spec["kind"] in ("datetime", "timedelta")
                else values.cast(t)
            )
    except (pa.ArrowException, OverflowError) as exc:
        raise DatasetError(f"stored values do not fit the Arrow type {t} ({exc})") from exc
    return pd.arrays.ArrowExtensionArray(pa.chunked_array([values], type=t))
