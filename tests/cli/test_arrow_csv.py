"""Reading CSV through pyarrow gives what ``pandas.read_csv`` gives: the same dtypes and values,
or None (the file is then read with pandas) where pyarrow cannot match it."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsnotebook as dsn
from dsnotebook.cli import arrow_csv, files


def read_both(data: bytes, *, sep: str = ",", header: bool = True, text_columns=()) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    fast = arrow_csv.read_csv(
        io.BytesIO(data), sep=sep, header=header, text_columns=text_columns, reopen=lambda: io.BytesIO(data)
    )
    slow = pd.read_csv(
        io.BytesIO(data), sep=sep, encoding="utf-8", header=0 if header else None,
        dtype={label: "str" for label in text_columns}, low_memory=False,
    )
    return fast, slow


def assert_same(data: bytes, **kwargs) -> pd.DataFrame | None:
    fast, slow = read_both(data, **kwargs)
    if fast is not None:
        pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    return fast


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('a,b\n"x, y",1\n"say ""hi""",2\n"two\nlines",3\n', id="quoting"),
        pytest.param("a,b,c\n1,,x\n,2.5,\nNA,null,n/a\n", id="missing-values"),
        pytest.param('a,b\n"",1\nx,2\n', id="empty-strings"),
        pytest.param("name,n\nCafé,1\n日本,2\n🙂,3\n", id="unicode"),
        pytest.param("\ufeffname,n\nx,1\n", id="byte-order-mark"),
        pytest.param("a,b\n1,4\n,5\n3,\n", id="ints-with-blanks"),
        pytest.param("a,b,c\nTrue,true,FALSE\nFalse,,True\n", id="booleans"),
        pytest.param("a,b\nTrue,1\n0,False\n", id="booleans-beside-numbers"),
        pytest.param("d,t\n2026-01-01,2026-01-01 10:00:00\n2026-01-02,2026-01-02T11:30:00+01:00\n", id="dates-stay-text"),
        pytest.param("a,b,c\n1.5,inf,1e5\n-.5,-Infinity,2E-3\n", id="floats"),
        pytest.param("a,b\n0x1F,007\n0x20,010\n", id="hex-is-text-leading-zeros-are-numbers"),
        pytest.param("a,b\nNAN,9007199254740993\n+nan,\n", id="nan-spellings-and-big-ints"),
        pytest.param("a,b\r\n1,x\r\n2,y\r\n", id="crlf"),
        pytest.param("a\n\n1\n\n2\n", id="blank-lines"),
        pytest.param("a,b\n,\n,\n", id="all-empty-columns"),
    ],
)
def test_the_same_frame_as_pandas(text):
    assert assert_same(text.encode("utf-8")) is not None


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a\n+5\n6\n", id="plus-sign"),
        pytest.param("a,b\n 1,x\n2 ,y\n", id="blanks-around-numbers"),
        pytest.param("a\n18446744073709551615\n", id="beyond-int64"),
        pytest.param("a,a\n1,2\n", id="duplicate-names"),
        pytest.param("a,\n1,2\n", id="empty-name"),
        pytest.param("a,b\n1,2,3\n", id="more-fields-than-names"),
        pytest.param("a,b\n1\n", id="fewer-fields"),
        pytest.param("a,b\n", id="no-rows"),
        pytest.param("", id="empty"),
        pytest.param("a\n1\n  \n2\n", id="line-of-blanks"),
    ],
)
def test_what_pyarrow_cannot_match_is_left_to_pandas(text):
    fast = arrow_csv.read_csv(io.BytesIO(text.encode()), sep=",", header=True, text_columns=(), reopen=lambda: io.BytesIO(text.encode()))
    assert fast is None


def test_invalid_utf_8_is_left_to_pandas():
    data = "a\nCafé\n".encode("latin-1")
    assert arrow_csv.read_csv(io.BytesIO(data), sep=",", header=True, text_columns=(), reopen=lambda: io.BytesIO(data)) is None


def test_options_no_header_separator_and_text_columns():
    data = b"007;1.5;True\n010;;False\n"
    fast = assert_same(data, sep=";", header=False, text_columns=[0])
    assert fast is not None and fast[0].tolist() == ["007", "010"]
    fast = assert_same(b"zip|n\n01234|1\n|2\n", sep="|", text_columns=["zip"])
    assert fast is not None and fast["zip"].isna().tolist() == [False, True]


CELLS = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(-1000, 1000).map(str),
    st.floats(allow_nan=False).map(repr),
    st.sampled_from(["", "NA", "null", "nan", "NaN", "None", "<NA>", "True", "false", "TRUE", "0", "1", "-0", "007", "inf"]),
    st.sampled_from(["2026-01-01", "2026-01-01 10:00:00", "10:30", "1e5", ".5", "+3", " 4", "0x1A", "a b", 'say "hi"']),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
)


@st.composite
def csv_files(draw) -> tuple[bytes, str]:
    width = draw(st.integers(1, 4))
    # Each column draws from one kind of cell, so that typed columns come up often.
    kinds = [draw(st.sampled_from(["int", "float", "bool", "mixed"])) for _ in range(width)]
    by_kind = {
        "int": st.one_of(st.integers(-(10**12), 10**12).map(str), st.just("")),
        "float": st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr), st.just("")),
        "bool": st.sampled_from(["True", "False", "true", "FALSE", ""]),
        "mixed": CELLS,
    }
    rows = draw(st.lists(st.tuples(*(by_kind[k] for k in kinds)), min_size=1, max_size=12))
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    out = io.StringIO()
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    writer = csv.writer(out, delimiter=sep, lineterminator=draw(st.sampled_from(["\n", "\r\n"])), quoting=quoting)
    writer.writerow([f"c{i}" for i in range(width)])
    writer.writerows(rows)
    return out.getvalue().encode("utf-8"), sep


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files())
def test_property_the_same_frame_as_pandas_or_none(drawn):
    data, sep = drawn
    try:
        slow_error = None
        read_both(data, sep=sep)
    except (ValueError, pd.errors.ParserError) as exc:  # pandas refuses it: pyarrow must not read it
        slow_error = exc
    fast = arrow_csv.read_csv(io.BytesIO(data), sep=sep, header=True, text_columns=(), reopen=lambda: io.BytesIO(data))
    if slow_error is not None:
        assert fast is None
    else:
        assert_same(data, sep=sep)


@pytest.fixture
def pyarrow_cpus():
    """pyarrow's CPU count raised to :data:`arrow_csv.MIN_CPUS`, so that ``push`` takes the fast path."""
    before = pa.cpu_count()
    pa.set_cpu_count(max(before, arrow_csv.MIN_CPUS))
    yield
    pa.set_cpu_count(before)


def test_the_fast_path_is_taken_with_enough_cpus(pyarrow_cpus):
    assert arrow_csv.faster()


def test_push_reads_csv_through_pyarrow_with_the_same_result(cli, url, tmp_path, pyarrow_cpus):
    path = tmp_path / "mixed.csv"
    path.write_text("id;qty;price;name;ok;day\n1;3;1.5;Café;True;2026-01-01\n2;;2.25;;False;2026-01-02\n", encoding="utf-8")
    pa.set_cpu_count(1)  # the pandas path, for the expected frame
    assert not arrow_csv.faster()
    expected = files.read(path, files.read_options(sep=";", parse_dates=["day"]))
    pa.set_cpu_count(arrow_csv.MIN_CPUS)
    with open(path, "rb") as f:
        data = f.read()
    assert assert_same(data, sep=";") is not None  # the fast path reads this file
    code, _, err = cli("--url", url, "push", str(path), "--parse-dates", "day")
    assert code == 0, err
    with dsn.connect(url) as hub:
        pd.testing.assert_frame_equal(hub.pull("mixed"), expected, check_exact=True)
