"""``dsnotebook push`` on real files written under tmp_path: separators, encodings, compression,
JSON, Excel, Parquet and Feather, the reading options, and appends whose types pandas re-infers."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from frametools import STR
from hubtools import occupy_the_slot

import dsnotebook as dsn
from dsnotebook.cli.push import _in_cli_terms
from dsnotebook.errors import SchemaMismatch, UploadError


def pulled(url: str, name: str, version: int | None = None) -> pd.DataFrame:
    with dsn.connect(url) as hub:
        return hub.pull(name, version)


def assert_stored(url: str, name: str, expected: pd.DataFrame, version: int | None = None) -> None:
    pd.testing.assert_frame_equal(pulled(url, name, version), expected, check_exact=True)


def versions(url: str, name: str) -> list[int]:
    with dsn.connect(url) as hub:
        return hub.versions(name)["version"].tolist()


def one_error_line(code: int, err: str) -> str:
    """The command failed with one ``dsnotebook: error: ...`` line; returns that line."""
    lines = [line for line in err.splitlines() if line.startswith("dsnotebook: error: ")]
    assert code == 2 and len(lines) == 1, (code, err)
    return lines[0]


def text(values) -> pd.Series:
    return pd.Series(values, dtype=STR)


SALES = pd.DataFrame({"name": text(["Café", "bar"]), "price": [1.5, 2.0], "qty": [2, 3]})


# -- separators ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sep", "shown"),
    [pytest.param(";", "';'", id="semicolon"), pytest.param("\t", "tabs", id="tab"), pytest.param("|", "'|'", id="pipe")],
)
def test_a_csv_file_s_separator_is_detected_and_reported(cli, url, tmp_path, sep, shown):
    path = tmp_path / "sales.csv"
    path.write_text(f"name{sep}price{sep}qty\nCafé{sep}1.5{sep}2\nbar{sep}2{sep}3\n", encoding="utf-8")
    code, out, err = cli("--url", url, "push", str(path))
    assert code == 0, err
    assert "'sales' version 1: 2 rows × 3 columns" in out  # the name defaults to the file's stem
    assert f"sales.csv: the columns are separated by {shown} (detected; --sep sets the separator)" in err
    assert_stored(url, "sales", SALES)


def test_a_comma_separated_file_reads_without_a_note(cli, url, tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text('name,price,qty\nCafé,1.5,2\n"bar",2,3\n', encoding="utf-8")
    code, _, err = cli("--url", url, "push", str(path))
    assert code == 0 and "separated" not in err
    assert_stored(url, "sales", SALES)


def test_a_tsv_file_and_an_explicit_separator(cli, url, tmp_path):
    (tmp_path / "sales.tsv").write_text("name\tprice\tqty\nCafé\t1.5\t2\nbar\t2\t3\n", encoding="utf-8")
    code, _, err = cli("--url", url, "push", str(tmp_path / "sales.tsv"))
    assert code == 0 and "separated" not in err
    assert_stored(url, "sales", SALES)
    # One column whose text holds semicolons: the sniffer could take it for separated values.
    (tmp_path / "notes.csv").write_text("note\na;b\nc;d\n", encoding="utf-8")
    code, _, err = cli("--url", url, "push", str(tmp_path / "notes.csv"), "--sep", ",")
    assert code == 0 and "separated" not in err
    assert_stored(url, "notes", pd.DataFrame({"note": text(["a;b", "c;d"])}))


# -- encodings and compression -------------------------------------------------------------------


def test_a_latin_1_file_is_refused_with_the_option_that_reads_it(cli, url, tmp_path):
    path = tmp_path / "sales.csv"
    path.write_bytes("name;price;qty\nCafé;1.5;2\nbar;2;3\n".encode("latin-1"))
    code, out, err = cli("--url", url, "push", str(path))
    line = one_error_line(code, err)
    assert out == ""
    assert "sales.csv is not valid utf-8 text: byte 0xe9 on line 2 (byte offset 18)" in line
    assert "pass --encoding latin-1" in line and "codec can't decode" not in line
    code, _, err = cli("--url", url, "push", str(path), "--encoding", "latin-1")
    assert code == 0, err
    assert_stored(url, "sales", SALES)


def test_a_utf_16_file_is_recognised_by_its_byte_order_mark(cli, url, tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text("name;price;qty\nCafé;1.5;2\nbar;2;3\n", encoding="utf-16")
    line = one_error_line(*cli("--url", url, "push", str(path))[::2])
    assert "sales.csv is not valid utf-8 text: byte 0xff on line 1 (byte offset 0)" in line
    assert "UTF-16 byte-order mark: pass --encoding utf-16" in line
    code, _, err = cli("--url", url, "push", str(path), "--encoding", "utf-16")
    assert code == 0, err
    assert_stored(url, "sales", SALES)


def test_gzip_and_zstd_files(cli, url, tmp_path):
    csv_text = "name;price;qty\nCafé;1.5;2\nbar;2;3\n"
    with gzip.open(tmp_path / "sales.csv.gz", "wt", encoding="utf-8") as f:
        f.write(csv_text)
    with pa.output_stream(str(tmp_path / "orders.csv.zst"), compression="zstd") as f:
        f.write(csv_text.encode("utf-8"))
    assert cli("--url", url, "push", str(tmp_path / "sales.csv.gz"))[0] == 0
    assert cli("--url", url, "push", str(tmp_path / "orders.csv.zst"))[0] == 0
    assert_stored(url, "sales", SALES)
    assert_stored(url, "orders", SALES)


def test_a_compressed_latin_1_file_names_the_line_of_the_bad_byte(cli, url, tmp_path):
    lines = "".join(f"row {i};{i}\n" for i in range(100_000))
    with gzip.open(tmp_path / "big.csv.gz", "wb") as f:
        f.write(("name;n\n" + lines + "Zoë;7\n").encode("latin-1"))
    line = one_error_line(*cli("--url", url, "push", str(tmp_path / "big.csv.gz"))[::2])
    offset = len(("name;n\n" + lines + "Zo").encode())
    assert f"big.csv.gz is not valid utf-8 text: byte 0xeb on line 100002 (byte offset {offset:,} of the uncompressed text)" in line


@pytest.mark.parametrize(
    ("name", "content", "args", "expected"),
    [
        pytest.param("sales", b"a\n1\n", [], "sales: no file type suffix; use one of .csv, .tsv", id="no-suffix"),
        pytest.param("sales.txt", b"a\n1\n", [], "sales.txt: unknown file type '.txt'; use one of .csv", id="unknown-suffix"),
        pytest.param("sales.parquet.gz", b"", [], "sales.parquet.gz: a compressed Parquet file is not read", id="compressed-parquet"),
        pytest.param("sales.csv", None, [], "sales.csv: no such file", id="missing"),
        pytest.param("sales.json", b"[]", ["--no-header"], "--no-header applies to CSV, TSV and Excel files", id="no-header-json"),
    ],
)
def test_files_that_cannot_be_read_are_refused_before_the_database_is_opened(cli, url, tmp_path, name, content, args, expected):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    code, out, err = cli("--url", url, "push", str(tmp_path / name), *args)
    assert out == "" and expected in one_error_line(code, err)
    assert not (tmp_path / "cli.db").exists()


def test_an_empty_file_is_refused(cli, url, tmp_path):
    (tmp_path / "sales.csv").write_bytes(b"")
    code, out, err = cli("--url", url, "push", str(tmp_path / "sales.csv"))
    assert out == "" and "sales.csv is empty: it has no header line or data" in one_error_line(code, err)


# -- other formats -------------------------------------------------------------------------------


def test_json_and_json_lines(cli, url, tmp_path):
    (tmp_path / "a.json").write_text('[{"code": "007", "n": 1, "note": null}, {"code": "x", "n": 2, "note": null}]')
    (tmp_path / "b.jsonl").write_text('{"code": "007", "n": 1, "note": null}\n{"code": "x", "n": 2, "note": null}\n')
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write('{"code": "007", "n": 1.5}\n')
    for name in ("a.json", "b.jsonl", "c.jsonl.gz"):
        code, _, err = cli("--url", url, "push", str(tmp_path / name))
        assert code == 0, err
    # JSON's own types: "007" stays text, and an all-null column stays all missing.
    expected = pd.DataFrame({"code": text(["007", "x"]), "n": [1, 2], "note": pd.Series([None, None], dtype=object)})
    assert_stored(url, "a", expected)
    assert_stored(url, "b", expected)
    assert_stored(url, "c", pd.DataFrame({"code": text(["007"]), "n": [1.5]}))
    (tmp_path / "lines.json").write_text('{"n": 1}\n{"n": 2}\n')
    line = one_error_line(*cli("--url", url, "push", str(tmp_path / "lines.json"))[::2])
    assert "lines.json: cannot read it as JSON" in line and "name it .jsonl" in line


def test_a_json_lines_append_takes_the_stored_dtypes(cli, url, tmp_path):
    (tmp_path / "a.jsonl").write_text('{"code": "007", "amount": 1.5}\n')
    (tmp_path / "b.jsonl").write_text('{"code": "008", "amount": 2}\n')  # amount: int64 here
    (tmp_path / "c.jsonl").write_text('{"code": 9, "amount": 3.5}\n')  # code: a number, not text
    assert cli("--url", url, "push", str(tmp_path / "a.jsonl"), "--name", "j")[0] == 0
    assert cli("--url", url, "push", str(tmp_path / "b.jsonl"), "--name", "j", "--if-exists", "append")[0] == 0
    assert_stored(url, "j", pd.DataFrame({"code": text(["007", "008"]), "amount": [1.5, 2.0]}))
    line = one_error_line(*cli("--url", url, "push", str(tmp_path / "c.jsonl"), "--name", "j", "--if-exists", "append")[::2])
    assert "c.jsonl: column 'code': row 1 holds 9, which is not text (the file's column is int64); str holds text only" in line


def test_parquet_and_feather(cli, url, tmp_path):
    df = pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "t": pd.to_datetime(["2026-01-01", None]).tz_localize("UTC")})
    df.to_parquet(tmp_path / "events.parquet")
    df.to_feather(tmp_path / "events2.feather")
    assert cli("--url", url, "push", str(tmp_path / "events.parquet"))[0] == 0
    assert cli("--url", url, "push", str(tmp_path / "events2.feather"))[0] == 0
    assert_stored(url, "events", pd.read_parquet(tmp_path / "events.parquet"))
    assert_stored(url, "events2", pd.read_feather(tmp_path / "events2.feather"))
    # The text-file options do not apply.
    line = one_error_line(*cli("--url", url, "push", str(tmp_path / "events.parquet"), "--sep", ";")[::2])
    assert "events.parquet: --sep applies to CSV and TSV files, not to Parquet files" in line


def test_excel(cli, url, tmp_path):
    import openpyxl  # noqa: F401 - a dev dependency; the next test runs without it

    pd.DataFrame({"name": ["Café", "bar"], "price": [1.5, 2.0], "qty": [2, 3]}).to_excel(tmp_path / "sales.xlsx", index=False)
    code, _, err = cli("--url", url, "push", str(tmp_path / "sales.xlsx"))
    assert code == 0, err
    stored = pulled(url, "sales")
    assert stored["name"].tolist() == ["Café", "bar"] and stored["price"].tolist() == [1.5, 2.0]
    assert stored["qty"].tolist() == [2, 3] and stored["qty"].dtype == np.int64


def test_excel_without_openpyxl_says_what_to_install(url, tmp_path):
    pd.DataFrame({"n": [1]}).to_excel(tmp_path / "sales.xlsx", index=False)
    script = (
        "import sys; sys.modules['openpyxl'] = None\n"  # as if it were not installed
        "from dsnotebook.cli import main\n"
        f"sys.exit(main(['--url', {url!r}, 'push', {str(tmp_path / 'sales.xlsx')!r}]))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    line = one_error_line(run.returncode, run.stderr)
    assert "sales.xlsx: reading Excel files needs the openpyxl package; install it with: pip install openpyxl" in line


def test_python_dash_m_dsnotebook_push(url, tmp_path):
    path = tmp_path / "sales.csv"
    path.write_bytes("name;price;qty\nCafé;1.5;2\nbar;2;3\n".encode("latin-1"))
    run = subprocess.run(
        [sys.executable, "-m", "dsnotebook", "push", str(path), "--encoding", "latin-1", "--url", url],
        capture_output=True, text=True, timeout=120, env={**os.environ, "DSNOTEBOOK_URL": "sqlite+aiosqlite:///unused.db"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "'sales' version 1: 2 rows × 3 columns"
    assert "sales.csv: the columns are separated by ';'" in run.stderr
    assert_stored(url, "sales", SALES)


# -- reading options -----------------------------------------------------------------------------


def test_an_empty_column_and_no_header(cli, url, tmp_path):
    (tmp_path / "notes.csv").write_text("id,comment\n1,\n2,\n")
    assert cli("--url", url, "push", str(tmp_path / "notes.csv"))[0] == 0
    assert_stored(url, "notes", pd.DataFrame({"id": [1, 2], "comment": [np.nan, np.nan]}))
    (tmp_path / "raw.csv").write_text("foo;1;007\nbar;2;010\n")
    code, _, err = cli("--url", url, "push", str(tmp_path / "raw.csv"), "--no-header", "--dtype", "1=float64", "2=str")
    assert code == 0, err
    assert_stored(url, "raw", pd.DataFrame({0: text(["foo", "bar"]), 1: [1.0, 2.0], 2: text(["007", "010"])}))


def test_dtype_and_parse_dates(cli, url, tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "zip,qty,seen,paid\n"
        "01234,1,2026-01-01 10:00:00,2026-01-01T10:00:00+01:00\n"
        "10115,,2026-07-01 11:30:00,2026-07-01T10:00:00+02:00\n"
    )
    code, _, err = cli(
        "--url", url, "push", str(path), "--name", "o", "--dtype", "zip=str", "qty=Int64", "--parse-dates", "seen", "paid"
    )
    assert code == 0, err
    expected = pd.DataFrame(
        {
            "zip": text(["01234", "10115"]),
            "qty": pd.array([1, None], dtype="Int64"),
            "seen": pd.to_datetime(["2026-01-01 10:00:00", "2026-07-01 11:30:00"]).as_unit("us"),
            # Different UTC offsets: converted to UTC.
            "paid": pd.to_datetime(["2026-01-01 09:00:00", "2026-07-01 08:00:00"]).as_unit("us").tz_localize("UTC"),
        }
    )
    assert_stored(url, "o", expected)
    code, _, err = cli("--url", url, "push", str(path), "--name", "o2", "--dtype", "seen=datetime64[s, Europe/Paris]")
    assert code == 0, err
    assert pulled(url, "o2")["seen"].tolist() == [
        pd.Timestamp("2026-01-01 10:00:00", tz="Europe/Paris"),
        pd.Timestamp("2026-07-01 11:30:00", tz="Europe/Paris"),
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--dtype", "qty=notatype"],
            "--dtype qty=notatype: 'notatype' is not a pandas dtype; use one such as int64, Int64",
            id="unknown-dtype",
        ),
        pytest.param(["--dtype", "qty"], "--dtype 'qty': expected COL=TYPE, such as amount=float64", id="no-type"),
        pytest.param(["--dtype", "when=datetime64"], "--dtype when=datetime64: give the unit, such as datetime64[us]", id="no-unit"),
        pytest.param(
            ["--dtype", "qtty=int64"],
            "sales.csv: --dtype qtty=int64: the file has no column 'qtty'; its columns are 'name', 'price', 'qty'",
            id="dtype-of-a-missing-column",
        ),
        pytest.param(
            ["--parse-dates", "when"],
            "sales.csv: --parse-dates when: the file has no column 'when'; its columns are 'name', 'price', 'qty'",
            id="parse-dates-of-a-missing-column",
        ),
        pytest.param(
            ["--dtype", "price=int64"],
            "sales.csv: --dtype price=int64: row 1 holds 1.5, which int64 cannot hold exactly",
            id="a-value-that-does-not-fit",
        ),
        pytest.param(
            ["--parse-dates", "name"],
            "sales.csv: --parse-dates name: row 1 holds 'Café', which is not a date and time pandas can read",
            id="not-a-date",
        ),
        pytest.param(["--dtype", "qty=int64", "--parse-dates", "qty"], "column 'qty' is given more than once", id="twice"),
        pytest.param(["--sep", ";;"], "--sep ';;': give one character", id="long-separator"),
        pytest.param(["--encoding", "latin-9x"], "--encoding 'latin-9x': unknown encoding; use one such as utf-8", id="encoding"),
        pytest.param(
            ["--no-header", "--dtype", "qty=int64"], "with --no-header the columns are numbered from 0", id="no-header-names"
        ),
    ],
)
def test_bad_option_values_are_refused_in_one_line(cli, url, tmp_path, args, expected):
    path = tmp_path / "sales.csv"
    path.write_text("name;price;qty\nCafé;1.5;2\nbar;2;3\n", encoding="utf-8")
    code, out, err = cli("--url", url, "push", str(path), *args)
    assert out == "" and expected in one_error_line(code, err)


# -- appends whose types pandas re-infers (both backends) ----------------------------------------


def test_append_reads_the_file_with_the_stored_schema(cli, db_url, tmp_path):
    first, second = tmp_path / "day1.csv", tmp_path / "day2.csv"
    first.write_text("id,amount,units,comment,when\n1,1.5,1,late,2026-01-01 10:00:00\n2,2.5,2,,2026-01-02 11:00:00\n")
    # pandas reads amount as int64 and units as float64 here, comment as an all-empty float64 column
    # and when as text: each differs from the stored dtype, and each value fits it exactly.
    second.write_text("id,amount,units,comment,when\n3,4,3.0,,2026-01-03 12:00:00.250\n4,5,4.0,,2026-01-04 00:00:00\n")
    assert cli("--url", db_url, "push", str(first), "--name", "s", "--parse-dates", "when")[0] == 0
    code, out, err = cli("--url", db_url, "push", str(second), "--name", "s", "--if-exists", "append")
    assert code == 0, err
    assert "'s' version 2: 4 rows × 5 columns" in out
    expected = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "amount": [1.5, 2.5, 4.0, 5.0],
            "units": [1, 2, 3, 4],
            "comment": text(["late", None, None, None]),
            "when": pd.to_datetime(
                ["2026-01-01 10:00:00", "2026-01-02 11:00:00", "2026-01-03 12:00:00.250", "2026-01-04 00:00:00"],
                format="ISO8601",
            ).as_unit("us"),
        }
    )
    assert_stored(db_url, "s", expected)


def test_append_casts_to_a_python_pushed_schema(cli, db_url, tmp_path):
    start = pd.DataFrame(
        {
            "code": text(["007"]),
            "n": pd.array([1], dtype="Int64"),
            "size": pd.Categorical(["S"], categories=["S", "M", "L"], ordered=True),
            "at": pd.to_datetime(["2026-03-01 09:00"]).tz_localize("Europe/Paris").as_unit("ms"),
        }
    )
    with dsn.connect(db_url) as hub:
        hub.push(start, "p").wait(timeout=60)
    # pandas alone would read n as float64 here, and 2**53 + 1 would lose its last digit.
    (tmp_path / "more.csv").write_text("code;n;size;at\n010;;L;2026-03-02 10:00\n012;9007199254740993;L;2026-03-02 10:30\n")
    (tmp_path / "more2.csv").write_text("code;n;size;at\n011;3;M;2026-03-02T10:00:00.5+00:00\n")
    for name in ("more.csv", "more2.csv"):
        code, _, err = cli("--url", db_url, "push", str(tmp_path / name), "--name", "p", "--if-exists", "append")
        assert code == 0, err
    expected = pd.DataFrame(
        {
            "code": text(["007", "010", "012", "011"]),  # text stays as written: leading zeros and all
            "n": pd.array([1, None, 2**53 + 1, 3], dtype="Int64"),
            "size": pd.Categorical(["S", "L", "L", "M"], categories=["S", "M", "L"], ordered=True),
            # A time without an offset is in the stored zone; one with an offset is converted to it.
            "at": pd.to_datetime(
                ["2026-03-01 09:00", "2026-03-02 10:00", "2026-03-02 10:30", "2026-03-02 11:00:00.5"], format="ISO8601"
            )
            .tz_localize("Europe/Paris")
            .as_unit("ms"),
        }
    )
    assert_stored(db_url, "p", expected)
    # 02:30 on the night clocks go forward does not exist in Paris; XL is not a category.
    (tmp_path / "gap.csv").write_text("code;n;size;at\n013;4;S;2026-03-29 02:30\n")
    (tmp_path / "xl.csv").write_text("code;n;size;at\n013;4;XL;2026-03-29 03:30\n")
    for name, message in [
        ("gap.csv", "column 'at': row 1 holds '2026-03-29 02:30', a time that does not exist, or is ambiguous, in Europe/Paris"),
        ("xl.csv", "column 'size': row 1 holds 'XL', which is not one of the categories of category ['S', 'M', 'L'] (ordered)"),
    ]:
        line = one_error_line(*cli("--url", db_url, "push", str(tmp_path / name), "--name", "p", "--if-exists", "append")[::2])
        assert f"{name}: {message}" in line, line
    assert sorted(versions(db_url, "p")) == [1, 2, 3]  # nothing published by the refusals


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param("3,2.5,,", "column 'units': row 2 holds 2.5, which int64 cannot hold exactly", id="fraction-into-int64"),
        pytest.param("3,,,", "column 'units': row 2 is empty, and int64 holds no missing values", id="empty-into-int64"),
        pytest.param("3,4,,soon", "column 'when': row 2 holds 'soon', which is not a date and time pandas can read", id="not-a-date"),
        pytest.param("x,4,,", "column 'id': row 2 holds 'x', which is not a number", id="text-into-int64"),
    ],
)
def test_append_refuses_a_value_that_does_not_fit(cli, db_url, tmp_path, row, expected):
    (tmp_path / "a.csv").write_text("id,units,comment,when\n1,1,x,2026-01-01\n")
    (tmp_path / "b.csv").write_text(f"id,units,comment,when\n2,2,,2026-01-02\n{row}\n")
    assert cli("--url", db_url, "push", str(tmp_path / "a.csv"), "--name", "s", "--parse-dates", "when")[0] == 0
    code, out, err = cli("--url", db_url, "push", str(tmp_path / "b.csv"), "--name", "s", "--if-exists", "append")
    line = one_error_line(code, err)
    assert out == ""
    assert f"b.csv: {expected}" in line
    assert "'s' version 1 stores this column as" in line and "use --if-exists replace to publish a new schema" in line
    assert versions(db_url, "s") == [1]


def test_append_with_other_columns_gives_the_hint_in_cli_syntax(cli, db_url, tmp_path):
    (tmp_path / "a.csv").write_text("id,x\n1,2\n")
    (tmp_path / "b.csv").write_text("id,x,extra\n2,3,4\n")
    assert cli("--url", db_url, "push", str(tmp_path / "a.csv"), "--name", "s")[0] == 0
    line = one_error_line(*cli("--url", db_url, "push", str(tmp_path / "b.csv"), "--name", "s", "--if-exists", "append")[::2])
    assert "cannot append to 's': the frame's schema differs from the latest version: added 'extra'" in line
    assert line.endswith("Use --if-exists replace to publish a new schema") and "if_exists" not in line
    # Python users still see Python.
    with dsn.connect(db_url) as hub, pytest.raises(SchemaMismatch, match=r"Use if_exists='replace' to publish a new schema$"):
        hub.push(pd.DataFrame({"id": [2], "x": [3], "extra": [4]}), "s", if_exists="append")


def test_a_mismatch_found_at_publish_time_also_gets_the_cli_hint(db_url):
    # The publish checks the schema again, for another push may have published meanwhile; a
    # mismatch found there reaches the command inside an UploadError.
    with dsn.connect(db_url, concurrency=1) as hub:
        release = occupy_the_slot(hub)
        first = hub.push(pd.DataFrame({"id": [1]}), "s", priority=2)
        appended = hub.push(pd.DataFrame({"id": [2]}), "s", if_exists="append", priority=0)
        other = hub.push(pd.DataFrame({"z": [1]}), "s", priority=1)
        release()
        assert first.wait(timeout=60).version == 1 and other.wait(timeout=60).version == 2
        with pytest.raises(UploadError) as caught:
            appended.wait(timeout=60)
    assert str(caught.value).endswith("Use if_exists='replace' to publish a new schema")
    cli_error = _in_cli_terms(caught.value)
    assert str(cli_error) == str(caught.value).replace("if_exists='replace'", "--if-exists replace")
    assert isinstance(cli_error, SchemaMismatch) and cli_error.added == ["id"] and cli_error.missing == ["z"]
