"""Tools for frame round trips, shared by the codec's and the hub's tests.

- Hypothesis strategies for DataFrames of every dtype the codec supports, with random missing
  values, indexes and column labels.
- :func:`assert_identical`: ``assert_frame_equal`` at its strictest, plus the type and repr of
  every object cell and the sign of every float zero, which ``assert_frame_equal`` ignores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from dsnotebook._compat import default_string_dtype

PARIS = "Europe/Paris"

#: pandas 3's default ``str`` dtype, or its pandas 2.2 equivalent (``string[pyarrow_numpy]``).
STR = default_string_dtype()

_finite = st.floats(allow_nan=False, allow_infinity=False)
_text = st.text(max_size=6)


def _with_missing(values: st.SearchStrategy, markers: list) -> st.SearchStrategy:
    return st.one_of(values, st.sampled_from(markers))


@st.composite
def columns(draw, n: int):
    kind = draw(
        st.sampled_from(
            [
                "int64",
                "int8",
                "uint32",
                "float64",
                "float32",
                "bool",
                "Int64",
                "UInt16",
                "Float64",
                "boolean",
                "str",
                "string",
                "category",
                "datetime",
                "datetime-tz",
                "timedelta",
                "object-str",
                "object-decimal",
                "object-json",
                "object-int",
                "object-float",
                "object-bool",
                "object-bytes",
            ]
        )
    )

    def vec(values: st.SearchStrategy) -> list:
        return draw(st.lists(values, min_size=n, max_size=n))

    if kind in ("int64", "int8", "uint32"):
        info = np.iinfo(kind)
        return np.array(vec(st.integers(int(info.min), int(info.max))), dtype=kind)
    if kind in ("float64", "float32"):
        width = 64 if kind == "float64" else 32
        return np.array(vec(st.floats(width=width)), dtype=kind)
    if kind == "bool":
        return np.array(vec(st.booleans()), dtype=bool)
    if kind in ("Int64", "UInt16"):
        low, high = (-(2**63), 2**63 - 1) if kind == "Int64" else (0, 2**16 - 1)
        return pd.array(vec(st.none() | st.integers(low, high)), dtype=kind)
    if kind == "Float64":
        data = np.array(vec(st.floats()), dtype=np.float64)
        mask = np.array(vec(st.booleans()), dtype=bool)
        return pd.arrays.FloatingArray(data, mask)
    if kind == "boolean":
        return pd.array(vec(st.none() | st.booleans()), dtype="boolean")
    if kind in ("str", "string"):
        return pd.array(vec(st.none() | _text), dtype=STR if kind == "str" else kind)
    if kind == "category":
        categories = draw(st.lists(_text, unique=True, max_size=4))
        values = vec(st.none() | st.sampled_from(categories) if categories else st.none())
        return pd.Categorical(values, categories=categories, ordered=draw(st.booleans()))
    if kind in ("datetime", "datetime-tz", "timedelta"):
        unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
        # Nanoseconds within about 1824..2116, scaled to the unit, so time zones apply.
        per_unit = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
        ints = vec(st.none() | st.integers(-(2**62), 2**62))
        i8 = np.array([np.iinfo(np.int64).min if v is None else v // per_unit for v in ints], dtype=np.int64)
        array = pd.array(i8.view(f"{'m' if kind == 'timedelta' else 'M'}8[{unit}]"))
        if kind == "datetime-tz":
            array = array.tz_localize("UTC").tz_convert(
                draw(st.sampled_from(["UTC", PARIS, "America/St_Johns"]))
            )
        return array
    markers = draw(st.lists(st.sampled_from([None, np.nan, pd.NA, pd.NaT]), min_size=1, max_size=3))
    values = {
        "object-str": _text,
        "object-decimal": st.decimals(allow_nan=True, allow_infinity=True).filter(lambda d: not d.is_snan()),
        "object-json": st.recursive(
            st.none() | st.booleans() | st.integers() | _finite | _text,
            lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
            max_leaves=6,
        ).filter(lambda v: isinstance(v, (list, dict))),
        "object-int": st.integers(-(2**63), 2**63 - 1),
        "object-float": st.floats(),
        "object-bool": st.booleans(),
        "object-bytes": st.binary(max_size=5),
    }[kind]
    out = np.empty(n, dtype=object)
    for i, v in enumerate(vec(_with_missing(values, markers))):
        out[i] = v
    return out


@st.composite
def indexes(draw, n: int):
    kind = draw(st.sampled_from(["default", "range", "int", "str", "datetime", "multi", "float"]))
    name = draw(st.none() | _text | st.integers(-5, 5))
    if kind == "default":
        return pd.RangeIndex(n)
    if kind == "range":
        start, step = draw(st.integers(-100, 100)), draw(st.integers(1, 5) | st.integers(-5, -1))
        return pd.RangeIndex(start, start + n * step, step, name=name)
    if kind == "int":
        return pd.Index(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)), dtype="int64", name=name
        )
    if kind == "float":
        return pd.Index(draw(st.lists(st.floats(), min_size=n, max_size=n)), dtype="float64", name=name)
    if kind == "str":
        return pd.Index(draw(st.lists(st.none() | _text, min_size=n, max_size=n)), dtype=STR, name=name)
    if kind == "datetime":
        ints = draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n))
        return pd.DatetimeIndex(np.array(ints, dtype=np.int64).view("M8[ns]"), name=name).tz_localize("UTC")
    first = draw(st.lists(_text, min_size=n, max_size=n))
    second = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    return pd.MultiIndex.from_arrays([pd.Index(first, dtype=STR), second], names=[name, "second"])


@st.composite
def frames(draw):
    n = draw(st.integers(0, 6))
    ncols = draw(st.integers(1, 4))
    label_kind = draw(st.sampled_from(["str", "int", "mixed"]))
    if label_kind == "str":
        labels = draw(st.lists(st.text(max_size=4), min_size=ncols, max_size=ncols, unique=True))
    elif label_kind == "int":
        labels = draw(st.lists(st.integers(-3, 10), min_size=ncols, max_size=ncols, unique=True))
    else:
        labels = draw(
            st.lists(
                st.one_of(st.text(max_size=2), st.integers(0, 3), st.none()),
                min_size=ncols,
                max_size=ncols,
                unique_by=lambda v: (type(v), v),
            )
        )
    index = draw(indexes(n))
    # Series with explicit dtypes: the DataFrame constructor would turn object strings into str.
    data = {
        i: pd.Series(column, index=index, dtype=column.dtype)
        for i, column in enumerate(draw(st.lists(columns(n), min_size=ncols, max_size=ncols)))
    }
    df = pd.DataFrame(data)
    df.columns = pd.Index(labels, dtype=object) if label_kind == "mixed" else pd.Index(labels)
    return df


def cells(values) -> list[tuple[type, str]]:
    return [(type(v), repr(v)) for v in values]


def assert_same_cells(result, expected) -> None:
    if expected.dtype == object:
        assert cells(result) == cells(expected)
    elif expected.dtype.kind == "f":
        # assert_frame_equal treats -0.0 and 0.0 as equal; the codec keeps the sign
        # (of numbers: a NaN's sign bit carries no meaning and is not kept).
        res = np.asarray(result.to_numpy(dtype="float64", na_value=np.nan))
        exp = np.asarray(expected.to_numpy(dtype="float64", na_value=np.nan))
        assert np.array_equal(np.signbit(res) & ~np.isnan(res), np.signbit(exp) & ~np.isnan(exp))


def assert_identical(result: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        result, expected, check_exact=True, check_index_type=True, check_column_type=True
    )
    for i in range(expected.shape[1]):
        assert_same_cells(result.iloc[:, i], expected.iloc[:, i])
    positions = list(range(expected.index.nlevels))
    for k in positions:
        # Positional names, so that an integer level name cannot shadow a level number.
        assert_same_cells(
            result.index.set_names(positions).get_level_values(k),
            expected.index.set_names(positions).get_level_values(k),
        )
    assert cells(result.columns) == cells(expected.columns)
    assert list(result.columns.names) == list(expected.columns.names)
    assert list(result.index.names) == list(expected.index.names)
