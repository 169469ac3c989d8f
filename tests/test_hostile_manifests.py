"""A version's manifest rewritten in the catalog, as another user of a shared database could:
malformed or hostile manifests are refused with a DatasetError naming the dataset and the
version, never another exception, a hang or an unbounded allocation.

Named cases run on both backends through a real hub (pull, info, iter_batches, append), and the
catalog's other readers (the dataset list, a replacing push, a delete) keep working. Hypothesis
then mutates real manifests at random (values replaced at random paths, keys deleted and added,
lists cut and grown): without a database, every manifest the check lets through decodes, is
selected from, viewed and appended to without raising anything but a DatasetError; and through a
real pull on SQLite. Every manifest the encoder writes passes the check.
"""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from arrowtools import arrow_frames
from frametools import PARIS, assert_identical, frames
from hubtools import execute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from dsnotebook.errors import (
    DatasetError,
    UploadError,
    ValidationError,
    VersionConflict,
)
from dsnotebook.store import codec, kinds
from dsnotebook.store.append import fit_checks, plan_append
from dsnotebook.store.backends.postgresql import PostgreSQLBackend
from dsnotebook.store.backends.sqlite import SQLiteBackend
from dsnotebook.store.codec import jsontext, manifest_values
from dsnotebook.store.views import view_select

NAME = "sales"


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "qty": np.array([3, 1, 4], dtype=np.int64),
            "price": [1.5, np.nan, -0.0],
            "stock": pd.array([7, None, 9], dtype="Int64"),
            "note": pd.array(["a", None, "c"], dtype="string"),
            "size": pd.Categorical(["S", "L", "S"], categories=["S", "M", "L"], ordered=True),
            "when": pd.date_range("2024-03-31", periods=3, freq="h", tz=PARIS),
        },
        index=pd.Index([10, 20, 30], name="order"),
    )


def _is_sqlite(hub) -> bool:
    return hub.url.get_backend_name() == "sqlite"


def _write(hub, sql: str, **params) -> None:
    async def run() -> None:
        async with hub._async.engine.begin() as conn:
            await conn.execute(sa.text(sql), params)

    hub._portal.run(run())


_WHERE = "dataset_id = (SELECT id FROM dsn_datasets WHERE name = :name) AND version = :version"


def store_manifest(hub, text: str, version: int = 1, name: str = NAME) -> None:
    """Overwrite the manifest of ``version`` with raw text. PostgreSQL's json type takes only
    valid JSON, nested at most some ten thousand deep."""
    value = ":text" if _is_sqlite(hub) else "CAST(CAST(:text AS text) AS json)"
    _write(hub, f"UPDATE dsn_versions SET manifest = {value} WHERE {_WHERE}", text=text, name=name, version=version)


def stored_manifest(hub, version: int = 1, name: str = NAME) -> dict:
    """The manifest of ``version`` as the catalog holds it (``name`` is a plain identifier)."""
    rows = execute(
        hub,
        "SELECT CAST(v.manifest AS TEXT) FROM dsn_versions v JOIN dsn_datasets d ON d.id = v.dataset_id "
        f"WHERE d.name = '{name}' AND v.version = {int(version)}",
    )
    return json.loads(rows[0][0])


def push(hub, df: pd.DataFrame | None = None, name: str = NAME) -> int:
    return hub.push(frame() if df is None else df, name).wait(timeout=60).version


def assert_refused(call, version: int = 1, name: str = NAME, match: str | None = None) -> DatasetError:
    with pytest.raises(DatasetError, match=match) as info:
        call()
    message = str(info.value)
    assert repr(name) in message and f"version {version}" in message, message
    return info.value


def assert_every_reader_refuses(hub, version: int = 1, match: str | None = None) -> None:
    assert_refused(lambda: hub.pull(NAME), version, match=match)
    assert_refused(lambda: hub.pull(NAME, columns=["qty"]), version, match=match)
    assert_refused(lambda: next(iter(hub.iter_batches(NAME, batch_rows=2))), version, match=match)
    assert_refused(lambda: hub.info(NAME), version, match=match)
    # An append reads the latest version's manifest: refused when it is submitted.
    assert_refused(lambda: hub.push(frame(), NAME, if_exists="append"), version, match=match)
    # The list of datasets reads no manifest: it still lists this one.
    listed = hub.datasets()
    assert NAME in set(listed["name"])
    assert list(hub.versions(NAME)["version"]) == [version]


# ---------------------------------------------------------------------------------------
# Named cases
# ---------------------------------------------------------------------------------------


def _edit(change):
    """A case that changes the pushed manifest (a dict) in place."""

    def text(original: dict) -> str:
        edited = copy.deepcopy(original)
        change(edited)
        return json.dumps(edited)

    return text


def _data(i: int, **values):
    return _edit(lambda m: m["data"][i].update(values))


def _range_index(**values):
    spec = {"kind": "range", "start": 0, "stop": 3, "step": 1, "name": None, **values}
    return _edit(lambda m: m.update(index=spec, sql_columns=[c for c in m["sql_columns"] if c[0] != "__dsn_index_0"]))


def _nested(depth: int):
    return lambda original: "[" * depth + "]" * depth


# Each case: the manifest text to store (from the pushed manifest), and a word the message has.
CASES = {
    "json-null": (lambda m: "null", "expected a JSON object, got null"),
    "a-list": (lambda m: "[1, 2, 3]", "expected a JSON object, got a list"),
    "a-string": (lambda m: json.dumps(json.dumps(m)), "expected a JSON object"),
    "nested-100000-deep": (_nested(100_000), "more than 100 deep"),
    "deep-under-an-unknown-key": (_edit(lambda m: m.update(x=json.loads("[" * 150 + "]" * 150))), "more than 100 deep"),
    "format-newer": (_edit(lambda m: m.update(format=2)), "format 2"),
    "format-a-string": (_edit(lambda m: m.update(format="1")), "at format"),
    "format-true": (_edit(lambda m: m.update(format=True)), "at format"),
    "format-missing": (_edit(lambda m: m.pop("format")), "format: missing"),
    "unknown-kind": (_data(0, kind="pickle"), r"data\[0\]\.kind"),
    "void-dtype": (_data(0, dtype="V999999999999"), r"data\[0\]\.dtype"),
    "huge-bytes-dtype": (_data(0, dtype="S1000000000"), r"data\[0\]\.dtype"),
    "dtype-with-code": (_data(0, dtype="object; import os"), r"data\[0\]\.dtype"),
    "category-dtype-on-a-number": (_data(0, dtype="category"), r"data\[0\]\.dtype"),
    "unknown-timezone": (_data(5, tz={"zoneinfo": "Nowhere/Town"}), r"data\[5\]\.tz\.zoneinfo"),
    "timezone-path": (_data(5, tz={"zoneinfo": "../../../etc/passwd"}), r"data\[5\]\.tz\.zoneinfo"),
    "timezone-directory": (_data(5, tz={"zoneinfo": "America"}), r"data\[5\]\.tz\.zoneinfo"),
    "timezone-dtype-from-a-file": (_data(5, dtype="datetime64[us, dateutil//dev/stdin]"), r"data\[5\]\.dtype"),
    "unknown-unit": (_data(5, unit="fortnight"), r"data\[5\]\.unit"),
    "unknown-index-kind": (_edit(lambda m: m["index"].update(kind="interval")), r"index\.kind"),
    "unknown-tag": (_edit(lambda m: m["index"].update(names=[{"$pickle": "gASVAAAAAA=="}])), r"index\.names\[0\]"),
    "tag-with-extra-keys": (_edit(lambda m: m["index"].update(names=[{"$na": True, "os": "system"}])), r"index\.names\[0\]"),
    "numpy-scalar-of-a-void-dtype": (
        _edit(lambda m: m["index"].update(names=[{"$numpy": "V8", "value": 1}])),
        r"index\.names\[0\]\.\$numpy",
    ),
    "a-list-as-a-name": (_edit(lambda m: m["index"].update(names=[[1, 2]])), r"index\.names\[0\]"),
    "too-many-columns-for-the-labels": (
        _edit(lambda m: m["columns"]["levels"][0]["values"].append("extra")),
        r"columns\.levels\[0\]\.values",
    ),
    "a-column-dropped": (_edit(lambda m: m["data"].pop()), "describes 5 columns, but the catalog counts 6"),
    "an-sql-column-dropped": (_edit(lambda m: m["sql_columns"].pop(1)), r"data\[0\]\.sql"),
    "a-column-twice": (_edit(lambda m: m["data"].__setitem__(1, m["data"][0])), r"data\[1\]\.sql"),
    "an-sql-name-too-long": (_edit(lambda m: m["sql_columns"][1].__setitem__(0, "x" * 64)), r"sql_columns\[1\]\[0\]"),
    "text-storage-for-a-float": (_edit(lambda m: m["sql_columns"][2].__setitem__(1, "TEXT")), r"data\[1\]\.sql"),
    "labels-claim-100-million-columns": (
        _edit(lambda m: m.update(columns={"kind": "range", "start": 0, "stop": 10**8, "step": 1, "name": None})),
        "100,000,000 labels",
    ),
    "marks-claim-more-than-the-categories": (
        _edit(lambda m: m["data"][4]["categories"].update(marks=[None] * 1000)),
        r"data\[4\]\.categories\.marks",
    ),
    "categories-repeated": (
        _edit(lambda m: m["data"][4]["categories"].update(values=["S", "S", "L"])),
        r"data\[4\]\.categories",
    ),
    "categories-not-a-list": (_edit(lambda m: m["data"][4]["categories"].update(values="SML")), r"data\[4\]\.categories\.values"),
    "categories-of-lists": (_edit(lambda m: m["data"][4]["categories"].update(values=[[1], [2]])), r"values\[0\]"),
    "a-string-for-an-integer": (_range_index(start="0"), r"index\.start"),
    "true-for-an-integer": (_range_index(step=True), r"index\.step"),
    "an-integer-of-333-digits": (_range_index(start=10**333), r"index\.start"),
    "a-step-of-zero": (_range_index(step=0), r"index\.step"),
    "range-labels-past-64-bits": (_range_index(start=2**63 - 2), "beyond 64-bit"),
    "a-partial-read-manifest": (_edit(lambda m: m.update(columns_taken={"of": 10**9, "at": [0]})), "columns_taken"),
    "bad-arrow-schema": (_data(2, arrow={"dtype": "int64[pyarrow]", "type": "int64", "schema": "!!!!"}), r"data\[2\]\.arrow\.schema"),
    "pushed-of-an-unknown-kind": (_edit(lambda m: m.update(pushed={"kind": "pickle", "data": "gASV"})), r"pushed\.kind"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_hostile_manifest_is_refused_by_every_reader(hub, case):
    version = push(hub)
    make, match = CASES[case]
    text = make(stored_manifest(hub))
    if case == "nested-100000-deep" and not _is_sqlite(hub):
        text = _nested(10_000)(None)  # PostgreSQL's json type refuses deeper text
    store_manifest(hub, text)
    error = assert_refused(lambda: hub.pull(NAME), version, match=match)
    assert isinstance(error, VersionConflict) == (case == "format-newer")
    assert_every_reader_refuses(hub, version, match=match)


@pytest.mark.parametrize(
    "text",
    ['{"format": 1, "columns": [', "{'format': 1}", "", "NaN]", '"unterminated'],
    ids=["truncated", "python-repr", "empty", "not-json", "unterminated-string"],
)
def test_text_that_is_not_json_is_refused(hub, text):
    version = push(hub)
    if _is_sqlite(hub):
        store_manifest(hub, text)
    else:
        # PostgreSQL's json type takes only valid JSON: the column's owner could make it text.
        execute(hub, "ALTER TABLE dsn_versions ALTER COLUMN manifest TYPE text")
        _write(hub, f"UPDATE dsn_versions SET manifest = :text WHERE {_WHERE}", text=text, name=NAME, version=version)
    assert_every_reader_refuses(hub, version)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("value", ["5", "2.5", "X'00FF'"], ids=["an-integer", "a-float", "bytes"])
def test_a_stored_value_that_is_not_text_is_refused(hub, value):
    version = push(hub)
    execute(hub, f"UPDATE dsn_versions SET manifest = {value}")
    assert_every_reader_refuses(hub, version, match="not JSON text|not UTF-8|expected a JSON object")


@pytest.mark.parametrize(
    "rows, columns, match",
    [(-1, 6, "row count"), (2**62, 6, "beyond 64-bit"), (3, 99, "the catalog counts 99")],
    ids=["negative-rows", "rows-past-the-range-index", "column-count"],
)
def test_hostile_counts_in_the_catalog_are_refused(hub, rows, columns, match):
    df = frame().reset_index(drop=True)
    df.index = pd.RangeIndex(0, 12, 4)
    version = push(hub, df)
    _write(hub, f"UPDATE dsn_versions SET rows = :rows, columns = :columns WHERE {_WHERE}", rows=rows, columns=columns, name=NAME, version=version)
    assert_refused(lambda: hub.pull(NAME), version, match=match)
    assert_refused(lambda: hub.info(NAME), version, match=match)


def test_categories_beyond_the_cap_are_refused(hub, monkeypatch):
    version = push(hub)
    # 10**8 categories would be refused alike; a small cap shows it without building them.
    monkeypatch.setattr(manifest_values, "MAX_EMBEDDED_VALUES", 6)
    original = stored_manifest(hub)
    original["data"][4]["categories"]["values"] += ["XL", "XXL", "3XL", "4XL"]
    store_manifest(hub, json.dumps(original))
    assert_every_reader_refuses(hub, version, match=r"data\[4\]\.categories\.values: expected a list of 0 to 6 items, got 7")


def test_a_manifest_whose_table_lacks_a_column_is_refused(hub):
    version = push(hub)
    edited = stored_manifest(hub)
    edited["data"][0]["sql"] = edited["sql_columns"][1][0] = "ghost"
    store_manifest(hub, json.dumps(edited))
    assert_refused(lambda: hub.pull(NAME), version, match="no column 'ghost'")
    # The columns the table has can still be read.
    assert_identical(hub.pull(NAME, columns=["note"]), frame()[["note"]])


def test_a_replacing_push_and_a_delete_work_over_a_hostile_version(hub):
    first = push(hub)
    store_manifest(hub, "[" * 5_000 + "]" * 5_000)
    # Replacing reads no manifest: the new version is readable, the hostile one stays refused.
    second = push(hub, frame().iloc[:2])
    assert_identical(hub.pull(NAME), frame().iloc[:2])
    assert_refused(lambda: hub.pull(NAME, version=first), first)
    # Deleting the newest would make the hostile version the latest: refused, nothing changes.
    assert_refused(lambda: hub.delete(NAME, version=second), first)
    assert list(hub.versions(NAME)["version"]) == [first, second]
    # The hostile version itself can be deleted, and then the dataset.
    assert hub.delete(NAME, version=first) == [first]
    assert_identical(hub.pull(NAME), frame().iloc[:2])
    assert hub.delete(NAME) == [second]


def test_hostile_tags_leave_the_dataset_list_working(hub):
    push(hub)
    if _is_sqlite(hub):
        execute(hub, "UPDATE dsn_datasets SET tags = '" + "[" * 100_000 + "'")
    else:
        execute(hub, "UPDATE dsn_datasets SET tags = CAST('" + "[" * 5_000 + "]" * 5_000 + "' AS json)")
    listed = hub.datasets()
    assert listed.loc[listed["name"] == NAME, "tags"].tolist() == [{}]
    assert hub.info(NAME).tags == {}
    assert_identical(hub.pull(NAME), frame())
    hub.push(frame(), NAME, tags={"team": "bi"}).wait(timeout=60)
    assert hub.info(NAME).tags == {"team": "bi"}


def test_json_cells_deeper_or_longer_than_the_catalogs_limits_round_trip(hub, monkeypatch):
    # PostgreSQL's driver reads json and jsonb cells with the catalog's reader: data keeps no limit.
    monkeypatch.setattr(jsontext, "MAX_JSON_CHARS", 1_000)
    deep: list = [1]
    for _ in range(jsontext.MAX_JSON_DEPTH + 50):
        deep = [deep]
    cells = np.empty(3, dtype=object)
    cells[:] = [deep, {"long": "x" * 5_000}, None]
    df = pd.DataFrame({"doc": cells})
    push(hub, df)
    assert_identical(hub.pull(NAME), df)


# ---------------------------------------------------------------------------------------
# Limits when writing
# ---------------------------------------------------------------------------------------


def test_a_push_whose_manifest_would_be_unreadable_is_refused(hub, monkeypatch):
    many = pd.DataFrame({"c": pd.Categorical([f"value {i}" for i in range(50)])})
    monkeypatch.setattr(manifest_values, "MAX_EMBEDDED_VALUES", 20)
    with pytest.raises(ValidationError, match=r"data\[0\]\.categories\.values: expected a list of 0 to 20 items, got 50"):
        hub.push(many, "many")
    monkeypatch.setattr(manifest_values, "MAX_EMBEDDED_VALUES", 10_000_000)
    monkeypatch.setattr(jsontext, "MAX_JSON_CHARS", 500)
    with pytest.raises(ValidationError, match="characters long, more than the 500 read"):
        hub.push(many, "many")
    monkeypatch.undo()
    name: object = "leaf"
    for _ in range(jsontext.MAX_JSON_DEPTH):
        name = (name,)
    with pytest.raises(ValidationError, match="more than 100 deep"):
        hub.push(pd.DataFrame({"a": [1]}, index=pd.Index([0], name=name)), "deep")
    assert hub.datasets().empty


def test_an_append_whose_combined_manifest_would_be_unreadable_fails_at_publish(hub, monkeypatch):
    df = pd.DataFrame({"c": pd.array(["a", "b"], dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string())))})
    push(hub, df)
    more = pd.DataFrame({"c": pd.array(["c", "d"], dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string())))})
    monkeypatch.setattr(manifest_values, "MAX_EMBEDDED_VALUES", 3)  # each frame's two categories fit; the four united do not
    task = hub.push(more, NAME, if_exists="append")
    with pytest.raises(UploadError, match=r"categories\.values: expected a list of 0 to 3 items, got 4") as info:
        task.wait(timeout=60)
    assert isinstance(info.value.__cause__, ValidationError)
    assert list(hub.versions(NAME)["version"]) == [1]


# ---------------------------------------------------------------------------------------
# The reader and the check, without a database
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, reason",
    [
        ("[" * 101 + "]" * 101, "more than 100 deep"),
        ('{"a": "' + "[" * 500 + '"}', None),  # brackets in a string do not nest
        ("[1,", "not valid JSON"),
        ("1" * 5_000, "not valid JSON"),  # more digits than Python reads
        (b"\xff\xfe", "not UTF-8"),
        (12, "not JSON text"),
    ],
    ids=["deep", "brackets-in-a-string", "truncated", "long-integer", "not-utf8", "an-integer"],
)
def test_the_json_reader_never_raises(text, reason):
    value = codec.load_json(text)
    if reason is None:
        assert value == json.loads(text)
    else:
        assert isinstance(value, codec.UnreadableJSON) and reason in value.reason


def test_the_json_reader_refuses_long_text(monkeypatch):
    monkeypatch.setattr(jsontext, "MAX_JSON_CHARS", 10)
    assert isinstance(codec.load_json('"' + "x" * 10 + '"'), codec.UnreadableJSON)
    assert codec.load_json('"' + "x" * 8 + '"') == "x" * 8


def _check(value, rows=3, native=True):
    return codec.check_manifest(value, dataset=NAME, version=7, rows=rows, native_types=native)


def test_the_check_names_dataset_version_place_and_expectation():
    good = json.loads(json.dumps(codec.encode(frame()).manifest))
    assert _check(good) is good
    bad = copy.deepcopy(good)
    bad["data"][4]["categories"]["values"][1] = {"$float": "1e999"}
    with pytest.raises(DatasetError) as info:
        _check(bad)
    message = str(info.value)
    assert message.startswith("dataset 'sales' version 7 cannot be read: its manifest in the catalog is malformed at ")
    assert "data[4].categories.values[1]" in message and "expected" in message


def test_native_types_are_refused_where_the_database_has_none():
    stored = json.loads(json.dumps(codec.encode(frame(), native_types=True).manifest))
    assert _check(stored, native=True)
    with pytest.raises(DatasetError, match="TIMESTAMPTZ"):
        _check(stored, native=False)


# ---------------------------------------------------------------------------------------
# Hypothesis: valid manifests pass; mutated ones decode or are refused
# ---------------------------------------------------------------------------------------

#: Strings the format uses, with some it refuses: a mutation picks these more often than noise.
WORDS = (
    "numpy", "float", "masked", "string", "category", "datetime", "timedelta", "object", "labels",
    "range", "index", "multi", "int8", "int64", "uint64", "bool", "float16", "float32", "Int64",
    "Float32", "boolean", "str", "python", "pyarrow", "V999999999999", "S1000000000",
    "object; import os", "datetime64[ns, dateutil//dev/stdin]", "ns", "s", "INTEGER", "REAL", "TEXT",
    "BLOB", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL", "JSON", "NUMERIC", "DATE", "BOOLEAN", "nan", "na",
    "none", "nat", "utf-8", "Europe/Paris", "America", "D", "json", "bytes", "decimal", "date", "time",
    "inf", "-inf", "series", "arrow", "<i8", "|b1", "<f2", "__dsn_index_0",
)
#: Values a key of the format takes (and some it refuses), for mutations that keep the shape.
KEY_VALUES = {
    "kind": ["numpy", "float", "masked", "string", "category", "datetime", "timedelta", "object", "labels", "range", "index", "multi", "series", "arrow"],
    "dtype": ["bool", "int8", "int64", "uint64", "float16", "float32", "float64", "Int8", "Int64", "UInt64", "Float32",
              "Float64", "boolean", "str", "string", "category", "object", "datetime64[ns]", "timedelta64[ms]"],
    "unit": ["s", "ms", "us", "ns"],
    "tz": [None, {"zoneinfo": "UTC"}, {"zoneinfo": PARIS}, {"offset_us": 3_600_000_000}, {"offset_us": 1}, {"offset_us": 0, "name": "X"}],
    "null": ["nan", "na", "none", "nat"],
    "na": ["nan", "na"],
    "storage": ["python", "pyarrow"],
    "object": ["str", "bytes", "decimal", "json", "bool", "int", "float", "date", "time", "none"],
    "ordered": [True, False],
    "text_as": ["utf-8"],
    "freq": ["D", "s", "h", "3D"],
    "start": [0, 1, -5, 2**62, -(2**63)],
    "stop": [0, 3, 10**8],
    "step": [1, -1, 3, 2**62],
    "format": [1, 2],
    "name": [None, "x", 3, {"$tuple": [1, "a"]}],
}
STORAGE_TYPES = list(codec.SQL_TYPES)

_ints = st.sampled_from([0, 1, -1, 2, 3, 7, 255, 2**31, 2**63 - 1, -(2**63), 2**63, 2**64, 10**100, -(10**100)])
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    _ints,
    st.sampled_from([0.5, -0.0, float("nan"), float("inf"), 1e300, 65504.0, 1e10]),
    st.sampled_from(WORDS),
    st.text(max_size=4),
)


def _tagged(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.builds(lambda v: {"$float": v}, st.sampled_from(["inf", "-inf", "nan", "1", "x"]) | _leaves),
        st.builds(lambda d, v: {"$numpy": d, "value": v}, st.sampled_from(["<i8", "<i1", "|b1", "<f2", "<U2", "|S2", "<c16", "V8"]) | _leaves, children),
        st.builds(lambda v: {"$tuple": v}, st.lists(children, max_size=3)),
        st.builds(lambda v: {"$bytes": v}, st.sampled_from(["AA==", "!!", "", "QQ"]) | _leaves),
        st.builds(lambda v: {"$decimal": v}, st.sampled_from(["1.5", "NaN", "sNaN", "x", "1e999999"]) | _leaves),
        st.builds(lambda v: {"$na": v}, _leaves),
        st.builds(lambda v: {"$nat": v}, _leaves),
        st.builds(lambda v, u, tz: {"$timestamp": v, "unit": u, "tz": tz}, _ints | st.integers(), st.sampled_from(["s", "ns", "x"]) | _leaves, st.none() | st.just({"zoneinfo": PARIS}) | children),
        st.builds(lambda v, u: {"$timedelta": v, "unit": u}, _ints | st.integers(), st.sampled_from(["s", "ns", "x"]) | _leaves),
    )


json_values = st.recursive(
    _leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=3), children, max_size=3) | _tagged(children),
    max_leaves=8,
)


def _nodes(value, path=()):
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nodes(item, (*path, i))


@st.composite
def mutated(draw, original: dict) -> dict:
    """``original`` with one to three changes at random places: a value replaced (by noise, by
    a value its key takes, by a copy of another part, or a storage type by another), a key or an
    item deleted or added, a list cut, grown or two of its items swapped."""
    m = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        nodes = list(_nodes(m))
        op = draw(st.sampled_from(["noise", "copy", "delete", "add", "length", "keyed", "keyed", "keyed", "storage", "swap"]))
        if op == "keyed":
            keyed = [(node, key) for _, node in nodes if isinstance(node, dict) for key in node if key in KEY_VALUES or key in ("sql", "marks_sql")]
            if keyed:
                node, key = draw(st.sampled_from(keyed))
                if key in ("sql", "marks_sql"):
                    listed = m.get("sql_columns")
                    names = [entry[0] for entry in listed if isinstance(entry, list) and entry] if isinstance(listed, list) else []
                    node[key] = draw(st.sampled_from(names or ["x"]))
                else:
                    node[key] = copy.deepcopy(draw(st.sampled_from(KEY_VALUES[key])))
                continue
        if op == "storage":
            pairs = [node for _, node in nodes if isinstance(node, list) and len(node) == 2 and node[1] in STORAGE_TYPES]
            if pairs:
                draw(st.sampled_from(pairs))[1] = draw(st.sampled_from(STORAGE_TYPES))
                continue
        if op == "swap":
            lists = [node for _, node in nodes if isinstance(node, list) and len(node) >= 2]
            if lists:
                items = draw(st.sampled_from(lists))
                i, j = draw(st.integers(0, len(items) - 1)), draw(st.integers(0, len(items) - 1))
                items[i], items[j] = items[j], items[i]
                continue
        containers = [node for _, node in nodes if isinstance(node, (dict, list))]
        node = draw(st.sampled_from(containers))
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if op in ("noise", "copy", "delete", "keyed", "storage", "swap") and not keys:
            op = "add"
        if op in ("noise", "keyed", "storage", "swap"):
            node[draw(st.sampled_from(keys))] = draw(json_values)
        elif op == "copy":
            node[draw(st.sampled_from(keys))] = copy.deepcopy(draw(st.sampled_from(nodes))[1])
        elif op == "delete":
            del node[draw(st.sampled_from(keys))]
        elif op == "add":
            if isinstance(node, dict):
                node[draw(st.sampled_from(WORDS))] = draw(json_values)
            else:
                node.insert(draw(st.integers(0, len(node))), draw(json_values))
        elif isinstance(node, list) and node:
            if draw(st.booleans()):
                del node[draw(st.integers(0, len(node) - 1)) :]
            else:
                node.extend(copy.deepcopy(node[: draw(st.integers(1, len(node)))]))
    return m


@st.composite
def encoded_frames(draw):
    """A frame drawn as the round-trip tests draw them, pushed as a DataFrame, a Series or a
    pyarrow Table, encoded for either backend's storage."""
    df = draw(frames() | arrow_frames())
    pushed = draw(st.sampled_from(["frame", "series", "table"]))
    obj = df.iloc[:, 0] if pushed == "series" else df
    if pushed == "table" and all(isinstance(dtype, pd.ArrowDtype) for dtype in df.dtypes):
        obj = pa.Table.from_pandas(df.set_axis([f"c{i}" for i in range(df.shape[1])], axis=1), preserve_index=False)
    native = draw(st.booleans())
    try:
        encodable, record = kinds.to_encodable(obj)
        encoded = codec.encode(encodable, native_types=native)
    except ValidationError:
        return None  # a frame the encoder refuses
    kinds.record(encoded.manifest, record)
    return encoded, native


_BACKENDS = {
    False: SQLiteBackend(make_url("sqlite+aiosqlite:///unused.db")),
    True: PostgreSQLBackend(make_url("postgresql+asyncpg://user@host/unused")),
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _use(checked: dict, original: dict, encoded: codec.EncodedFrame, native: bool) -> None:
    """What a pull, a partial pull, a schema, the SQL view and an append do with a manifest."""
    table = encoded.to_arrow(0, encoded.nrows)
    names = [name for name, _ in checked["sql_columns"]]
    if not set(names) <= set(table.schema.names):
        return  # the repository refuses to read columns the table lacks, naming them
    by_name = {c.name: c for c in encoded.columns}
    rows = encoded.rows(0, encoded.nrows)
    values = {c.name: [row[i] for row in rows] for i, c in enumerate(encoded.columns)}
    assert by_name.keys() == values.keys()
    frame_read = codec.decode_arrow(checked, table)
    codec.decode(checked, [values[name] for name in names])
    kinds.convert(frame_read, checked, None)
    labels = [label for label, _ in codec.schema(checked)]
    _, reduced = codec.select(checked, labels[-1:])
    codec.decode_arrow(reduced, table)
    view_select(checked, "t", _quote, native_types=native)
    added, missing, retyped = codec.schema_diff(checked, original)
    if not (added or missing or retyped):
        fit_checks(checked, original, _quote)
        plan_append(checked, original, _quote, _BACKENDS[native])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_mutated_manifest_decodes_or_is_refused(data):
    drawn = data.draw(encoded_frames())
    if drawn is None:
        return
    encoded, native = drawn
    original = json.loads(json.dumps(encoded.manifest))
    text = json.dumps(data.draw(mutated(original)))
    try:
        checked = codec.check_manifest(
            codec.load_json(text), dataset=NAME, version=1, rows=encoded.nrows, columns=len(original["data"]), native_types=native
        )
    except DatasetError:
        return
    try:
        _use(checked, original, encoded, native)
    except DatasetError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(drawn=encoded_frames())
def test_every_manifest_the_encoder_writes_passes(drawn):
    if drawn is None:
        return
    encoded, native = drawn
    stored = codec.load_json(json.dumps(encoded.manifest))
    rows, columns = encoded.nrows, len(encoded.manifest["data"])
    assert codec.check_manifest(stored, dataset=NAME, version=1, rows=rows, columns=columns, native_types=native) is stored
    codec.check_new_manifest(encoded.manifest, rows=rows, native_types=native)


_pulls = itertools.count()


@pytest.mark.sqlite_only
@settings(
    max_examples=40,
    deadline=None,
    # One hub (one database) serves every example; each example pushes a dataset of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_a_mutated_manifest_through_a_pull(hub, data):
    name = f"fuzzed_{next(_pulls)}"
    df = frame() if data.draw(st.booleans()) else data.draw(frames())
    try:
        version = hub.push(df, name).wait(timeout=60).version
    except ValidationError:
        return
    original = stored_manifest(hub, version, name)
    store_manifest(hub, json.dumps(data.draw(mutated(original))), version=version, name=name)
    try:
        hub.pull(name)
    except DatasetError:
        pass
    hub.datasets()
