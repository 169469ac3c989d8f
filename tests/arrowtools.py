"""Hypothesis strategies for Arrow-backed pandas frames (``pd.ArrowDtype`` columns).

:func:`arrow_types` draws an Arrow type from the set dsnotebook stores (see
``dsnotebook.store.codec.arrow_dtypes.ARROW_ACCEPTED``); :func:`arrow_arrays` draws a column of
that type, with nulls, whose values span what the type holds: every integer width (uint64 up to
2**63-1), floats with NaN, infinities and -0.0, any Unicode text including NUL characters,
timestamps over the whole range of their unit (with and without a time zone), whole-day dates,
times within a day, durations, decimals of any precision and scale, dictionaries, lists and
structs. :func:`arrow_frames` puts 1-5 of them in a frame with a random index.
"""

from __future__ import annotations

import decimal

import pandas as pd
import pyarrow as pa
from hypothesis import strategies as st

TIME_ZONES = ("UTC", "Europe/Paris", "America/New_York", "+05:30")
UNITS = ("s", "ms", "us", "ns")
_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}
# int64's smallest value is pandas' NaT (refused, tested apart).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_RULED_ZONES = ("Europe/Paris", "America/New_York")
_YEAR_10000_S = 253_402_300_800  # 10000-01-01 in seconds since the epoch

#: Any Unicode scalar value (no lone surrogates, which UTF-8 cannot hold), NUL included.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8) | st.sampled_from(
    ["", "\x00", "a\x00b", "é\U0001f600", " "]
)


def _leaf_types() -> st.SearchStrategy[pa.DataType]:
    return st.sampled_from(
        [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
        + [pa.float32(), pa.float64(), pa.bool_(), pa.string(), pa.large_string()]
    )


@st.composite
def arrow_types(draw) -> pa.DataType:
    """One Arrow type of those dsnotebook stores."""
    family = draw(
        st.sampled_from(
            [
                "leaf",
                "binary",
                "timestamp",
                "date",
                "time",
                "duration",
                "decimal",
                "dictionary",
                "list",
                "struct",
            ]
        )
    )
    if family == "leaf":
        return draw(_leaf_types())
    if family == "binary":
        return draw(st.sampled_from([pa.binary(), pa.large_binary()]))
    if family == "timestamp":
        return pa.timestamp(draw(st.sampled_from(UNITS)), draw(st.none() | st.sampled_from(TIME_ZONES)))
    if family == "date":
        return draw(st.sampled_from([pa.date32(), pa.date64()]))
    if family == "time":
        return draw(st.sampled_from([pa.time32("s"), pa.time32("ms"), pa.time64("us"), pa.time64("ns")]))
    if family == "duration":
        return pa.duration(draw(st.sampled_from(UNITS)))
    if family == "decimal":
        if draw(st.booleans()):
            precision = draw(st.integers(1, 38))
            return pa.decimal128(precision, draw(st.integers(0, precision)))
        precision = draw(st.integers(1, 76))
        return pa.decimal256(precision, draw(st.integers(0, precision)))
    if family == "dictionary":
        return pa.dictionary(pa.int32(), pa.string(), ordered=draw(st.booleans()))
    if family == "list":
        item = draw(st.sampled_from([pa.int64(), pa.int32(), pa.string(), pa.float64(), pa.bool_()]))
        return draw(st.sampled_from([pa.list_(item), pa.large_list(item)]))
    return pa.struct([("i", draw(st.sampled_from([pa.int64(), pa.int16()]))), ("s", pa.string())])


def _integers(t: pa.DataType) -> st.SearchStrategy[int]:
    low = 0 if pa.types.is_unsigned_integer(t) else -(2 ** (t.bit_width - 1))
    high = 2**63 - 1 if t == pa.uint64() else (2 ** (t.bit_width - (0 if low == 0 else 1))) - 1
    return st.integers(low, high)


def _floats(width: int) -> st.SearchStrategy[float]:
    return st.floats(width=width) | st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 0.0])


def _decimal(unscaled: int, scale: int) -> decimal.Decimal:
    return decimal.Decimal((int(unscaled < 0), tuple(int(d) for d in str(abs(unscaled))), -scale))


def _values(t: pa.DataType, n: int, draw, *, finite: bool = False) -> pa.Array:
    """``n`` values of type ``t``, each null or not."""

    def vec(values: st.SearchStrategy) -> list:
        return draw(st.lists(st.none() | values, min_size=n, max_size=n))

    if pa.types.is_integer(t):
        return pa.array(vec(_integers(t)), type=t)
    if pa.types.is_floating(t):
        floats = st.floats(width=t.bit_width, allow_nan=False, allow_infinity=False) if finite else _floats(t.bit_width)
        return pa.array(vec(floats), type=t, from_pandas=False)
    if pa.types.is_boolean(t):
        return pa.array(vec(st.booleans()), type=t)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.array(vec(text), type=t)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.array(vec(st.binary(max_size=8)), type=t)
    if pa.types.is_timestamp(t) or pa.types.is_duration(t):
        # The whole range of the unit, but a day inside it, so that a zone's offset still fits.
        margin = _PER_DAY[t.unit]
        high = _INT64_MAX - margin
        if getattr(t, "tz", None) in _RULED_ZONES:
            # pandas cannot show, compare or iterate over a time after year 9999 in a zone with
            # daylight-saving rules (it asks Python's datetime for the offset): up to a day
            # before, in UTC. test_arrow_dtypes checks later ones, comparing them as Arrow.
            high = min(high, (_YEAR_10000_S - 86_400) * (_PER_DAY[t.unit] // 86_400))
        low = _INT64_MIN + margin
        near = st.integers(max(low, -(10**12)), min(high, 10**12))
        counts = st.integers(low, high) | near | st.sampled_from([low, high, -1, 0])
        return pa.array(vec(counts), type=pa.int64()).cast(t)
    if pa.types.is_date32(t) or pa.types.is_date64(t):
        return pa.array(vec(st.dates()), type=t)
    if pa.types.is_time32(t) or pa.types.is_time64(t):
        per_day = _PER_DAY[t.unit]
        counts = pa.array(vec(st.integers(0, per_day - 1)), type=pa.int64())
        return counts.cast(pa.int32() if pa.types.is_time32(t) else pa.int64()).view(t)
    if pa.types.is_decimal(t):
        digits = st.integers(-(10**t.precision) + 1, 10**t.precision - 1)
        # Built from its digits: Decimal arithmetic would round to the context's 28 digits.
        return pa.array([None if v is None else _decimal(v, t.scale) for v in vec(digits)], type=t)
    if pa.types.is_dictionary(t):
        dictionary = draw(st.lists(text, unique=True, max_size=5))
        codes = vec(st.integers(0, len(dictionary) - 1)) if dictionary else [None] * n
        return pa.DictionaryArray.from_arrays(
            pa.array(codes, type=t.index_type), pa.array(dictionary, type=t.value_type), ordered=t.ordered
        )
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        # Lists are stored as JSON, which has no NaN or infinity: those are refused (tested apart).
        item_type = t.value_type
        items = [_values(item_type, draw(st.integers(0, 3)), draw, finite=True).to_pylist() for _ in range(n)]
        present = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        return pa.array([v if p else None for v, p in zip(items, present)], type=t, from_pandas=False)
    if pa.types.is_struct(t):
        fields = [_values(t.field(i).type, n, draw) for i in range(t.num_fields)]
        present = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        return pa.StructArray.from_arrays(
            fields, fields=list(t), mask=pa.array([not p for p in present], type=pa.bool_())
        )
    raise AssertionError(f"no values for {t}")


@st.composite
def arrow_arrays(draw, n: int, t: pa.DataType | None = None) -> pd.arrays.ArrowExtensionArray:
    """An Arrow-backed pandas array of ``n`` values of type ``t`` (drawn when None)."""
    t = draw(arrow_types()) if t is None else t
    return pd.arrays.ArrowExtensionArray(_values(t, n, draw))


@st.composite
def arrow_indexes(draw, n: int) -> pd.Index:
    """A RangeIndex (default, or with a start, a step and a name), or a named Arrow-backed
    integer or string index, nulls allowed."""
    kind = draw(st.sampled_from(["default", "range", "int", "string"]))
    name = draw(st.none() | text)
    if kind == "default":
        return pd.RangeIndex(n)
    if kind == "range":
        start, step = draw(st.integers(-100, 100)), draw(st.integers(1, 5) | st.integers(-5, -1))
        return pd.RangeIndex(start, start + n * step, step, name=name)
    t = draw(st.sampled_from([pa.int64(), pa.int32(), pa.uint16()]) if kind == "int" else st.sampled_from([pa.string(), pa.large_string()]))
    return pd.Index(draw(arrow_arrays(n, t)), name=name)


@st.composite
def arrow_frames(draw) -> pd.DataFrame:
    """A frame of 1-5 Arrow-backed columns of random types, 0-6 rows, and a random index."""
    n = draw(st.integers(0, 6))
    types = draw(st.lists(arrow_types(), min_size=1, max_size=5))
    index = draw(arrow_indexes(n))
    columns = {f"c{i}": pd.Series(draw(arrow_arrays(n, t)), index=index, copy=False) for i, t in enumerate(types)}
    return pd.DataFrame(columns, index=index)
