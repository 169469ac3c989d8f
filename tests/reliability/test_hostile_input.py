"""Hostile input to ``push``: every frame and name either comes back identical or is refused at
once, by a ``ValidationError`` that names the culprit, with nothing written.

Hypothesis draws column labels (unicode, lone surrogates, empty, whitespace, SQL keywords,
quotes, 300 characters, labels that collide after case folding, mixed types, NumPy scalars),
values (NaN/NA/NaT everywhere, infinities, the extreme datetimes with and without a time zone,
huge Decimals, emoji and NUL characters) and dataset names (unicode, whitespace, quotes, control
characters, 255 and 256 characters, non-str). Some examples also carry one input that cannot be
stored, together with what its error must show. For every example:

- accepted: the upload succeeds (it never fails later in the background) and ``pull`` gives the
  frame back identical (``assert_identical``);
- refused: ``push`` raises ``ValidationError`` naming the culprit, and nothing was written: the
  datasets are as they were, no task row was added and no staging table is left.

The plain tests at the end replay the exact inputs that once broke one of these rules.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import itertools
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import dateutil.tz
import numpy as np
import pandas as pd
import pytest
from frametools import assert_identical, columns, indexes
from hubtools import staging_tables
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from dsnotebook.errors import UploadError, ValidationError
from dsnotebook.upload import MAX_NAME_LENGTH

D = decimal.Decimal
_datasets = itertools.count()

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the property ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Culprit:
    """An input that cannot be stored, and the fragments its error message must contain."""

    what: str
    fragments: tuple[str, ...]


def shown(value: object) -> str:
    """The part of ``repr(value)`` an error message is sure to show (long reprs are cut there)."""
    return repr(value)[:60]


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_datasets)}"


def _written(hub) -> tuple[pd.DataFrame, int]:
    return hub.datasets(), len(hub.tasks())


#: Every refusal also says what would be accepted, in one of these words.
ADVICE = ("accept", "expected", "use ", "must", "supported", "may hold", "convert", "give ", "store it as")


def assert_refusal_explains(message: str, fragments: tuple[str, ...], what: str) -> None:
    missing = [fragment for fragment in fragments if fragment not in message]
    assert not missing, f"the error for {what} does not show {missing}: {message}"
    assert any(word in message for word in ADVICE), f"the error for {what} does not say what would be accepted: {message}"


def _count(outcome: str) -> None:
    """Tally the outcome in Hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(outcome)


def check_push(hub, df: pd.DataFrame, name: object, culprit: Culprit | None, **options) -> bool:
    """Push ``df`` as ``name`` and check the property; returns whether the push was accepted."""
    datasets_before, tasks_before = _written(hub)
    try:
        task = hub.push(df, name, **options)
    except ValidationError as err:
        message = str(err)
        if culprit is None:
            raise AssertionError(f"a storable input was refused: {message}") from err
        _count(f"refused: {culprit.what}")
        assert_refusal_explains(message, culprit.fragments, culprit.what)
        datasets_after, tasks_after = _written(hub)
        pd.testing.assert_frame_equal(datasets_after, datasets_before)
        assert tasks_after == tasks_before, "a refused push recorded a task"
        assert staging_tables(hub) == [], "a refused push left a staging table"
        return False
    try:
        task.wait(timeout=120)
    except UploadError as err:
        raise AssertionError(f"an accepted push failed in the background: {err}") from err
    assert culprit is None, f"{culprit.what} was accepted and stored"
    _count("accepted")
    assert_identical(hub.pull(name), df)
    return True


def assemble(data: list, index: pd.Index, labels: pd.Index) -> pd.DataFrame:
    # Series with explicit dtypes: the DataFrame constructor would turn object strings into str.
    frame = pd.DataFrame({i: pd.Series(column, index=index, dtype=column.dtype) for i, column in enumerate(data)})
    frame.columns = labels
    return frame


# -- hostile text ------------------------------------------------------------------------------

SQL_WORDS = [
    "select", "SELECT", "from", "where", "table", "order", "group", "index", "null", "NULL", "default",
    "rowid", "_rowid_", "oid", "ctid", "xmin", "__dsn_row", "__DSN_ROW", "__dsn_index_0",
    "__dsn_missing_0", "__dsn_index_0_missing", "column_0", "column_1", "dsn_datasets",
    'x"; DROP TABLE dsn_datasets; --', "'; DELETE FROM dsn_tasks; --", "?", "?1", "%s", "%(x)s",
    ":1", ":name", "$1", "\\", "[a]", "`b`", "a.b", "*",
]  # fmt: skip
PIECES = [
    "\x00", "'", '"', "''", '""', "`", " ", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\u00a0", "\u2028", "\u3000",
    "\u200b", "\u200d", "\u202e", "\ufeff", "ß", "ẞ", "ss", "SS", "İ", "i\u0307", "ı", "ﬀ", "Σ", "σ", "ς",
    "\u212a", "k", "é", "e\u0301", "🎉", "👨\u200d👩\u200d👧", "𝕏", "中文", "\U0010fffd", "a", "A", "_2",
]  # fmt: skip
_pieces = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), min_size=1, max_size=6).map("".join)
_long = st.tuples(st.sampled_from(["x", "X", "é", "🎉", "aB", "\x00z", "ß"]), st.sampled_from([21, 32, 62, 63, 64, 255, 300]), st.text(max_size=2)).map(
    lambda t: (t[0] * t[1])[: t[1]] + t[2]
)
_whitespace = st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000", min_size=1, max_size=4)
_surrogates = st.lists(st.characters(categories=["Cs"]) | st.sampled_from(["a", "\x00", "é"]), min_size=1, max_size=3).map("".join)
#: Text a column label, index value or string cell may hold: anything encodable as UTF-8.
hostile_text = st.one_of(st.just(""), _whitespace, st.sampled_from(SQL_WORDS), _pieces, _long, st.text(max_size=8))


def case_twins(text: str) -> list[str]:
    """Other spellings of ``text`` that case-insensitive SQL could take for the same name."""
    return [t for t in dict.fromkeys([text.upper(), text.lower(), text.casefold(), text.swapcase(), text.title()]) if t != text]


# -- column labels -----------------------------------------------------------------------------


class Label(str):
    """A str subclass: refused as a label, since it would come back as plain str."""


_other_labels = st.one_of(
    st.integers(-(2**70), 2**70) | st.sampled_from([2**64, -(2**63) - 1, 2**1100]),
    st.floats(),
    st.none(),
    st.booleans(),
    st.binary(max_size=4),
    st.decimals(allow_nan=True, allow_infinity=True).filter(lambda d: not d.is_snan()),
    st.tuples(hostile_text, st.integers(-3, 3) | st.none()),
    st.sampled_from(
        [
            pd.NA,
            pd.NaT,
            pd.Timestamp.min,
            pd.Timestamp.max,
            pd.Timestamp("2020-03-29 01:30", tz="UTC").tz_convert("Europe/Paris"),
            pd.Timedelta.max,
            pd.Timedelta(0),
        ]
    ),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.str_, st.text(max_size=4)),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.bool_, st.booleans()),
    st.builds(np.uint8, st.integers(0, 255)),
)
#: Labels that cannot be stored: (what, the label, what the error must show).
BAD_LABELS: list[tuple[str, object, str]] = [
    ("a datetime", dt.datetime(2020, 1, 1), shown(dt.datetime(2020, 1, 1))),
    ("a date", dt.date(2020, 1, 1), shown(dt.date(2020, 1, 1))),
    ("a complex", 1 + 2j, shown(1 + 2j)),
    ("a frozenset", frozenset({1}), shown(frozenset({1}))),
    ("a str subclass", Label("x"), "Label"),
    ("a NumPy datetime", np.datetime64("2020-01-01"), shown(np.datetime64("2020-01-01"))),
    ("an int too long for text", 10**5000, "5001 digits"),
    ("a list, which cannot be hashed", [1, 2], shown([1, 2])),
    ("a signalling NaN, which cannot be hashed", D("sNaN"), shown(D("sNaN"))),
]


def _hashable(label: object) -> bool:
    try:
        hash(label)
    except TypeError:
        return False
    return True


def _has_nan(value: object) -> bool:
    if isinstance(value, tuple):
        return any(_has_nan(v) for v in value)
    return isinstance(value, (float, np.floating, D)) and value != value


# assert_frame_equal compares names as lists, where two NaN objects are never equal: a NaN name
# cannot be checked, so names are drawn without one (NaN labels are checked as values).
_names = _other_labels.filter(lambda v: not _has_nan(v))


def _utf8(labels: list) -> bool:
    return all(not isinstance(v, str) or not any(unicodedata.category(c) == "Cs" for c in v) for v in labels)


def _label_culprit(labels: list, label_index: pd.Index, bad: tuple[str, object, str] | None) -> Culprit | None:
    """What push must refuse among these labels, in the order it checks them: labels it cannot
    hash, then labels pandas counts as equal, then the first label it cannot store."""
    if bad is not None and not _hashable(bad[1]):
        return Culprit(f"the label {bad[0]}", ("column labels", bad[2]))
    # pandas counts some distinct labels as equal (1, 1.0 and True; "a" and np.str_("a")). Not
    # Index.is_unique: it compares the labels too, which overflows for np.float64(1.0) and 2**1100.
    equal = pd.Series(label_index.to_numpy(), dtype=object).duplicated(keep=False).to_numpy()
    if equal.any():
        return Culprit("labels pandas counts as equal", ("duplicate", *(shown(v) for v in label_index[equal].tolist())))
    for label in labels:
        if bad is not None and label is bad[1]:
            return Culprit(f"the label {bad[0]}", ("column labels", bad[2]))
        if not _utf8([label]):
            return Culprit("a label with a lone surrogate", ("column labels", shown(label), "not valid Unicode"))
    return None


@st.composite
def labelled_frames(draw) -> tuple[pd.DataFrame, Culprit | None]:
    n = draw(st.integers(0, 4))
    ncols = draw(st.integers(1, 5))
    kind = draw(st.sampled_from(["str", "object", "multi"]))
    texts = st.one_of(hostile_text, _surrogates) if kind != "multi" else hostile_text
    if kind == "str" or kind == "multi":
        labels = draw(st.lists(texts, min_size=1, max_size=ncols, unique=True))
        # Labels that case-insensitive SQL would take for one name: "A" and "a", "ß" and "SS".
        for label in draw(st.lists(st.sampled_from(labels), max_size=2)):
            labels += [t for t in case_twins(label) if t not in labels][:2]
    else:
        labels = draw(st.lists(texts | _other_labels, min_size=1, max_size=ncols, unique_by=lambda v: (type(v), repr(v))))
    bad = draw(st.none() | st.sampled_from(BAD_LABELS)) if kind == "object" else None
    if bad is not None:
        labels.insert(draw(st.integers(0, len(labels))), bad[1])
    if kind == "multi":
        second = draw(st.lists(st.integers(-2, 2) | st.none(), min_size=len(labels), max_size=len(labels)))
        label_index = pd.MultiIndex.from_arrays(
            [pd.Index(labels, dtype=object), pd.Index(second, dtype=object)], names=draw(st.lists(hostile_text | st.none(), min_size=2, max_size=2))
        )
    else:
        dtype = "str" if kind == "str" and _utf8(labels) else object
        label_index = pd.Index(labels, dtype=dtype, name=draw(hostile_text | _names), tupleize_cols=False)
    data = [draw(columns(n)) for _ in range(len(label_index))]
    return assemble(data, pd.RangeIndex(n), label_index), _label_culprit(labels, label_index, bad)


@FUZZ
@given(case=labelled_frames(), data=st.data())
def test_hostile_column_labels_round_trip_or_are_refused(hub, case, data):
    """Labels of every kind, with values of every dtype: back identical, also after an append."""
    df, culprit = case
    name = fresh("labels")
    split = data.draw(st.integers(0, len(df)), label="split")
    if check_push(hub, df.iloc[:split], name, culprit) and split < len(df):
        # The new rows go through an INSERT ... SELECT by SQL column name.
        hub.push(df.iloc[split:], name, if_exists="append").wait(timeout=120)
        assert_identical(hub.pull(name), df)


# -- values ------------------------------------------------------------------------------------

_INT64 = np.iinfo(np.int64)
_NS_EXTREMES = [_INT64.min + 1, _INT64.max, pd.Timestamp.min.ceil("us").value, pd.Timestamp.max.floor("us").value, -1, 0, 1]
# PostgreSQL's timestamps and Python's datetime hold years 1 to 9999; just inside and outside.
_US_EDGES = [-62_135_596_800_000_000, -62_135_596_800_000_001, 253_402_300_799_999_999, 253_402_300_800_000_000]
_US_PER = {"s": 10**6, "ms": 10**3, "us": 1}
ZONES = [
    None,
    "UTC",
    "Europe/Paris",
    "America/St_Johns",
    "Pacific/Kiritimati",
    dt.timezone(dt.timedelta(hours=-12)),
    dt.timezone(dt.timedelta(hours=5, minutes=45), "NPT"),
]
_markers = st.sampled_from([None, np.nan, pd.NA, pd.NaT])
_huge_decimals = st.one_of(
    st.builds(
        lambda sign, digits, exponent: D((sign, tuple(int(c) for c in digits), exponent)),
        st.integers(0, 1),
        st.text(alphabet="0123456789", min_size=1, max_size=400),
        st.integers(-40_000, 40_000),
    ),
    st.decimals(allow_nan=True, allow_infinity=True).filter(lambda d: not d.is_snan()),
    # Around what PostgreSQL's numeric holds: 16383 digits after the point, 131072 before.
    st.sampled_from([D("1E-16383"), D("1E-16384"), D("-0"), D("-0E-5"), D("0E+3"), D("12.3400"), D("9" * 131_072), D("9" * 131_073)]),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**200), 2**200) | st.floats(allow_nan=False, allow_infinity=False) | hostile_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3),
    max_leaves=8,
).filter(lambda v: isinstance(v, (list, dict)))


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


@st.composite
def hostile_columns(draw, n: int):
    """One column of hostile but storable values."""
    kind = draw(
        st.sampled_from(["ordinary", "float", "Float64", "missing", "datetime", "timedelta", "decimal", "text", "json", "bytes"])
    )

    def vec(values: st.SearchStrategy) -> list:
        return draw(st.lists(values, min_size=n, max_size=n))

    if kind == "ordinary":
        return draw(columns(n))
    if kind == "float":
        dtype = draw(st.sampled_from(["float64", "float32", "object"]))
        info = np.finfo(np.float32 if dtype == "float32" else np.float64)
        specials = st.sampled_from([np.nan, np.inf, -np.inf, -0.0, float(info.smallest_subnormal), float(info.max), float(info.min)])
        values = vec(specials | st.floats(width=32 if dtype == "float32" else 64))
        return _objects(values) if dtype == "object" else np.array(values, dtype=dtype)
    if kind == "Float64":
        data = np.array(vec(st.sampled_from([np.nan, np.inf, -np.inf, -0.0]) | st.floats()), dtype=np.float64)
        return pd.arrays.FloatingArray(data, np.array(vec(st.booleans()), dtype=bool))
    if kind == "missing":
        return _objects(vec(_markers))
    if kind in ("datetime", "timedelta"):
        unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
        if unit == "ns":
            ints = st.sampled_from(_NS_EXTREMES) | st.integers(_INT64.min + 1, _INT64.max)
        else:
            edges = [_INT64.min + 1, _INT64.max, *(e // _US_PER[unit] for e in _US_EDGES)]
            ints = st.sampled_from(edges) | st.integers(_INT64.min + 1, _INT64.max)
        i8 = np.array([_INT64.min if v is None else v for v in vec(st.none() | ints)], dtype=np.int64)
        array = pd.array(i8.view(f"{'M' if kind == 'datetime' else 'm'}8[{unit}]"))
        zone = draw(st.sampled_from(ZONES)) if kind == "datetime" else None
        return array if zone is None else array.tz_localize("UTC").tz_convert(zone)
    if kind == "decimal":
        return _objects(vec(_huge_decimals | _markers))
    if kind == "text":
        dtype = draw(st.sampled_from(["object", "str", "string[python]", "string[pyarrow]", "category"]))
        values = vec(hostile_text | st.none())
        if dtype == "object":
            return _objects([v if v is not None else draw(_markers) for v in values])
        if dtype == "category":
            return pd.Categorical(values, ordered=draw(st.booleans()))
        return pd.array(values, dtype=dtype)
    if kind == "json":
        return _objects(vec(_json | _markers))
    return _objects(vec(st.binary(max_size=6) | _markers))


_SURROGATE = "a\ud800b"
#: Columns that cannot be stored: (what, a column of n >= 2 rows, what the error must show).
BAD_COLUMNS: list[tuple[str, Callable[[int], object], tuple[str, ...]]] = [
    ("a complex value", lambda n: _objects(["x"] * (n - 1) + [1 + 2j]), (shown(1 + 2j),)),
    ("a complex dtype", lambda n: np.full(n, 1 + 2j), ("complex",)),
    ("a lone surrogate", lambda n: _objects([None] * (n - 1) + [_SURROGATE]), (shown(_SURROGATE),)),
    ("a lone surrogate in string[python]", lambda n: pd.array([_SURROGATE] * n, dtype="string[python]"), (shown(_SURROGATE),)),
    ("a NumPy scalar", lambda n: _objects([np.int64(5)] * n), (shown(np.int64(5)),)),
    ("an int beyond 64 bits", lambda n: _objects([1] * (n - 1) + [2**64]), (str(2**64),)),
    ("a uint64 beyond int64", lambda n: np.full(n, 2**64 - 1, dtype=np.uint64), (str(2**64 - 1),)),
    ("mixed kinds", lambda n: _objects(["a"] * (n - 1) + [1]), ("mixes str and int", shown("a"), shown(1))),
    ("a JSON NaN", lambda n: _objects([[float("nan")]] * n), ("nan",)),
    ("a JSON int too long for text", lambda n: _objects([{"k": 10**5000}] * n), ("5001 digits",)),
    ("a datetime object", lambda n: _objects([dt.datetime(2020, 1, 1)] * n), (shown(dt.datetime(2020, 1, 1)),)),
    ("a time with a time zone", lambda n: _objects([dt.time(1, tzinfo=dt.UTC)] * n), (shown(dt.time(1, tzinfo=dt.UTC)), "time zone")),
    ("a period dtype", lambda n: pd.period_range("2020", periods=n, freq="D").array, ("period",)),
    ("an interval dtype", lambda n: pd.interval_range(0, n).array, ("interval",)),
    ("a sparse dtype", lambda n: pd.arrays.SparseArray(np.zeros(n)), ("Sparse",)),
    ("a dateutil time zone", lambda n: pd.array(np.zeros(n, dtype="M8[ns]")).tz_localize(dateutil.tz.gettz("Europe/Paris")), ("tzfile",)),
]


@st.composite
def valued_frames(draw) -> tuple[pd.DataFrame, Culprit | None]:
    inject = draw(st.integers(0, 4)) == 0
    n = draw(st.integers(2 if inject else 0, 5))
    data = draw(st.lists(hostile_columns(n), min_size=1, max_size=4))
    labels: list = [f"c{i}" for i in range(len(data))]
    culprit = None
    if inject:
        label = draw(hostile_text.filter(lambda t: t not in labels))
        what, make, fragments = draw(st.sampled_from(BAD_COLUMNS))
        at = draw(st.integers(0, len(data)))
        data.insert(at, make(n))
        labels.insert(at, label)
        culprit = Culprit(what, (f"column {label!r}", *fragments))
    kind = draw(st.sampled_from(["frametools", "text", "datetime"]))
    if kind == "frametools":
        index = draw(indexes(n))
    elif kind == "text":
        index = pd.Index(draw(st.lists(hostile_text, min_size=n, max_size=n)), dtype=draw(st.sampled_from(["str", object])), name=draw(hostile_text))
    else:
        ints = draw(st.lists(st.sampled_from(_NS_EXTREMES) | st.none(), min_size=n, max_size=n))
        i8 = np.array([_INT64.min if v is None else v for v in ints], dtype=np.int64)
        index = pd.DatetimeIndex(pd.array(i8.view("M8[ns]")).tz_localize("UTC"), name="\x00🎉")
    return assemble(data, index, pd.Index(labels, dtype=object)), culprit


@FUZZ
@given(case=valued_frames())
def test_hostile_values_round_trip_or_are_refused(hub, case):
    df, culprit = case
    check_push(hub, df, fresh("values"), culprit)


# -- dataset names -----------------------------------------------------------------------------

_BAD_NAME_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")


def _blank(ch: str) -> bool:
    """Whitespace or an invisible format character: not allowed at either end of a name."""
    return ch.isspace() or unicodedata.category(ch) == "Cf"


def name_problem(name: object) -> Culprit | None:
    """Why a dataset name must be refused, or None for a good name.

    The documented rule: names are data, so any str of 1 to 255 printable characters goes
    (not only whitespace, no whitespace or invisible character at either end, no control
    characters, line or paragraph separators, or lone surrogates).
    """
    if not isinstance(name, str):
        return Culprit(f"a name of type {type(name).__name__}", ("name", type(name).__name__, shown(name)))
    if all(map(_blank, name)):
        return Culprit("an empty or whitespace name", ("name", repr(name), "empty or whitespace"))
    if _blank(name[0]) or _blank(name[-1]):
        return Culprit("a name with a blank end", ("name", repr(name), "whitespace or an invisible character"))
    if len(name) > MAX_NAME_LENGTH:
        return Culprit("a name too long", ("name", f"{len(name)} characters", str(MAX_NAME_LENGTH)))
    bad = next((ch for ch in name if unicodedata.category(ch) in _BAD_NAME_CATEGORIES), None)
    if bad is not None:
        return Culprit(f"a name with a {unicodedata.category(bad)} character", ("name", repr(name), repr(bad)))
    return None


_long_names = st.tuples(st.sampled_from(["n", "é", "🎉", "'", " x", "\u200b", "ß"]), st.sampled_from([1, 254, 255, 256, 300])).map(
    lambda t: (t[0] * t[1])[: t[1]]
)
_with_bad_char = st.tuples(_pieces, st.characters(categories=list(_BAD_NAME_CATEGORIES)), _pieces).map("".join)
_good_names = st.one_of(hostile_text, st.sampled_from(SQL_WORDS), _long_names, st.builds(np.str_, _pieces)).filter(
    lambda name: name_problem(name) is None
)
_bad_names = st.one_of(
    _whitespace,
    _long_names,
    _with_bad_char,
    _surrogates,
    st.integers() | st.none() | st.binary(max_size=3) | st.floats() | st.booleans() | st.builds(np.int64, st.integers(-5, 5)),
    st.lists(st.text(max_size=2), max_size=2) | st.tuples(st.text(max_size=2)),
)
#: Mostly names that must be stored as given; some that must be refused.
dataset_names = st.one_of(_good_names, _good_names, _bad_names)


@FUZZ
@given(name=dataset_names)
def test_hostile_dataset_names_are_stored_as_given_or_refused(hub, name):
    df = pd.DataFrame({"v": [1, 2]})
    if not check_push(hub, df, name, name_problem(name)):
        return
    assert name in hub.datasets()["name"].tolist()
    # Names equal after case folding are different datasets ("A" and "a", "ß" and "SS").
    for twin in case_twins(name):
        if name_problem(twin) is None:
            check_push(hub, pd.DataFrame({"v": [len(twin)]}), twin, None)
            assert_identical(hub.pull(name), df)


# -- the inputs that once broke the property ---------------------------------------------------


def _refused(hub, df, name, *fragments: str, **options) -> str:
    before = _written(hub)
    with pytest.raises(ValidationError) as err:
        hub.push(df, name, **options)
    assert_refusal_explains(str(err.value), fragments, "this input")
    pd.testing.assert_frame_equal(hub.datasets(), before[0])
    assert len(hub.tasks()) == before[1]
    assert staging_tables(hub) == []
    return str(err.value)


@pytest.mark.parametrize(
    ("labels", "culprit"),
    [
        # Its SQL column name was cut to nothing with the surrogate: the upload failed later.
        pytest.param(["\ud800"], "\ud800", id="lone-surrogate"),
        # Escaped in the manifest's JSON, the pair read back as the one character U+10000.
        pytest.param(["\ud800\udc00"], "\ud800\udc00", id="surrogate-pair"),
        pytest.param(["ok", ("t", "a\udfff")], "a\udfff", id="in-a-tuple"),
    ],
)
def test_labels_with_lone_surrogates_are_refused_up_front(hub, labels, culprit):
    df = pd.DataFrame([range(len(labels))], columns=pd.Index(_objects(labels), dtype=object, tupleize_cols=False))
    _refused(hub, df, "surrogate labels", "column labels", repr(culprit), "not valid Unicode", "UTF-8")


def test_index_and_column_names_with_lone_surrogates_are_refused_up_front(hub):
    df = pd.DataFrame({"a": [1]}).rename_axis(index="i\udc80", columns="c\ud800")
    _refused(hub, df, "surrogate names", "the name", "not valid Unicode")


def test_labels_named_like_postgresql_system_columns_round_trip(hub):
    # "ctid" became the SQL column ctid, which PostgreSQL refuses: the upload failed later.
    names = ["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "CTID", "ctid_2", "ctid\x00", "oid", "rowid"]
    df = pd.DataFrame([range(len(names)), range(len(names))], columns=names)
    check_push(hub, df.iloc[:1], "system columns", None)
    hub.push(df.iloc[1:], "system columns", if_exists="append").wait(timeout=30)
    assert_identical(hub.pull("system columns"), df)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([[1], [2]], id="lists-of-one-item"),
        pytest.param([[], []], id="empty-lists"),
        pytest.param([[5e-324, 1e-7, 0.1, 1.7976931348623157e308]], id="one-row-list"),
        pytest.param([functools.reduce(lambda inner, _: [inner], range(70), [])], id="nested-past-64-levels"),
    ],
)
def test_json_lists_come_back_as_cells_not_as_a_2d_array(hub, values):
    # PostgreSQL's driver returns JSON parsed; reading equal-length lists made a 2-D array.
    df = pd.DataFrame({"j": pd.Series(_objects(values), dtype=object)})
    check_push(hub, df, "json lists", None)
    indexed = pd.DataFrame({"x": range(len(values))}, index=pd.Index(_objects(values), dtype=object))
    check_push(hub, indexed, "json index", None)


def test_a_dataset_name_with_a_lone_surrogate_is_refused_up_front(hub):
    # It reached the database driver, which could not encode it: an UploadError, not a ValidationError.
    _refused(hub, pd.DataFrame({"v": [1]}), "a\udfff", "name", "'a\\udfff'", "U+DFFF", "surrogate", "printable characters")


def test_a_description_with_a_lone_surrogate_is_refused_up_front(hub):
    _refused(hub, pd.DataFrame({"v": [1]}), "d", "description", "surrogate", description="a\udfff")


@pytest.mark.parametrize("tags", [{"k": "\ud800\udc00"}, {"\udfff": 1}, {"k": ["a", {"b": "\ud800"}]}])
def test_tags_with_a_lone_surrogate_are_refused_up_front(hub, tags):
    _refused(hub, pd.DataFrame({"v": [1]}), "d", "tags", "surrogate", tags=tags)


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        pytest.param(lambda: pd.DataFrame({"j": _objects([[10**5000]])}), ["column 'j'", "5001 digits", "decimal.Decimal or str"], id="json-cell"),
        pytest.param(lambda: pd.DataFrame({"o": _objects([10**5000])}), ["column 'o'", "5001 digits", "64-bit"], id="object-int"),
        pytest.param(lambda: pd.DataFrame([[1]], columns=pd.Index([10**5000], dtype=object)), ["column labels", "5001 digits", "decimal.Decimal or str"], id="label"),
        pytest.param(lambda: pd.DataFrame({"a": [1]}).rename_axis(index=10**5000), ["the index", "5001 digits", "decimal.Decimal or str"], id="index-name"),
    ],
)
def test_ints_too_long_for_text_are_refused_up_front(hub, make, fragments):
    # Python writes at most 4300 digits of an int as text: a ValueError escaped push, or the
    # upload failed in the background once it wrote the manifest.
    _refused(hub, make(), "long ints", *fragments)


def test_numpy_scalar_labels_and_names_keep_their_type(hub):
    # They came back as the Python values: np.int64(1) as 1, np.str_("a") as "a".
    labels = pd.Index([np.int64(1), "x", np.str_("a"), np.float32(0.1), np.bool_(False), (np.int8(3), "t")], dtype=object)
    df = pd.DataFrame([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]], columns=labels).rename_axis(index=np.int64(7), columns=np.str_("c"))
    check_push(hub, df.iloc[:1], "numpy labels", None)
    # The same columns and index with plain Python labels and names still append: they name the
    # same columns, and the rows join the version's columns as labelled there.
    plain = df.set_axis(pd.Index([1, "x", "a", float(np.float32(0.1)), False, (3, "t")], dtype=object), axis=1).rename_axis(index=7, columns="c")
    hub.push(plain.iloc[1:], "numpy labels", if_exists="append").wait(timeout=30)
    assert_identical(hub.pull("numpy labels"), df)


def test_duplicate_labels_error_names_every_label_pandas_counts_as_equal(hub):
    # It named only the later ones ("duplicate column labels 1"), not the True it collides with.
    df = pd.DataFrame([[1, 2, 3, 4, 5, 6]], columns=pd.Index([True, "x", 1, 1.0, np.int64(2), 2], dtype=object))
    message = _refused(hub, df, "duplicates", "duplicate")
    assert "True, 1, 1.0, np.int64(2), 2 " in message


def test_labels_pandas_cannot_sort_are_checked_for_duplicates(hub):
    # Index.is_unique compares the labels first, and comparing np.float64(1.0) with 2**1100
    # overflows: an OverflowError escaped push.
    df = pd.DataFrame([[1, 2, 3]], columns=pd.Index([2**1100, np.float64(1.0), "x"], dtype=object))
    check_push(hub, df, "unsortable labels", None)
    _refused(hub, df.set_axis([2**1100, np.float64(1.0), 1], axis=1), "unsortable labels", "duplicate", "np.float64(1.0), 1 ")
    _refused(hub, df.set_axis([10**5000, np.float32(1.0), "x"], axis=1), "unsortable labels", "column labels", "5001 digits")


@pytest.mark.parametrize("label", [pytest.param([1, 2], id="list"), pytest.param(D("sNaN"), id="signalling-NaN")])
def test_unhashable_labels_are_refused_up_front(hub, label):
    # pandas' uniqueness check raised TypeError out of push.
    df = pd.DataFrame([[1, 2]], columns=pd.Index(["a", label], dtype=object))
    _refused(hub, df, "unhashable", "column labels", repr(label), "cannot be hashed")


def test_a_float_label_beyond_float32_beside_a_float32_label(hub):
    """Found by the label fuzzing: pandas checks such labels through a narrowing cast that warns
    of an overflow (an error under the test suite's warning filter) without changing the answer."""
    labels = pd.Index([3.4028235677973366e38, np.float32(0.0)], dtype=object)  # just above float32
    df = pd.DataFrame([[1, 2]], columns=labels)
    name = fresh("float32 labels")
    hub.push(df, name).wait(timeout=60)
    assert_identical(hub.pull(name), df)
