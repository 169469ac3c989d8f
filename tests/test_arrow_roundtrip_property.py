"""Arrow-backed frames drawn by hypothesis (random Arrow types, with nulls, and a random index)
round-trip exactly through a hub on both backends: the dtype, the values, the nulls and the
index; and, more of them, through the codec alone. See arrowtools.py for what is drawn."""

from __future__ import annotations

import itertools

import pandas as pd
from arrowtools import arrow_frames
from frametools import assert_identical
from hypothesis import HealthCheck, given, settings
from test_arrow_dtypes import _codec_roundtrips

#: Enough to meet every Arrow type family on each backend many times, in well under a minute.
EXAMPLES = 60


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # One hub (one database) serves every example; each example pushes a dataset of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(df=arrow_frames())
def test_arrow_frames_round_trip_exactly_through_a_hub(hub, df):
    name = f"arrow_{next(_numbers)}"
    hub.push(df, name).wait(timeout=60)
    back = hub.pull(name)
    assert_identical(back, df)
    assert [str(t) for t in back.dtypes] == [str(t) for t in df.dtypes]
    assert all(isinstance(t, pd.ArrowDtype) for t in back.dtypes)
    # Nulls by position, apart from NaN (a value, which assert_frame_equal treats as null too).
    for label in df.columns:
        assert _nulls(back[label]) == _nulls(df[label])
    assert type(back.index) is type(df.index) and back.index.dtype == df.index.dtype
    if isinstance(df.index.dtype, pd.ArrowDtype):
        assert _nulls(back.index) == _nulls(df.index)


def _nulls(obj: pd.Series | pd.Index) -> list[bool]:
    return obj.array.__arrow_array__().is_null().to_pylist()


_numbers = itertools.count()


@settings(max_examples=100, deadline=None)
@given(df=arrow_frames())
def test_arrow_frames_round_trip_exactly_through_the_codec(df):
    # Without a database: generic and native storage, read back as rows and as Arrow batches.
    _codec_roundtrips(df)
