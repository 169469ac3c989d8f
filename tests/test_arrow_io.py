"""The ADBC transfer primitives (dsnotebook.store.backends._arrow_io), on real databases.

SQLite files live under pytest's tmp_path and the private hand-off directory. PostgreSQL tests
run in a database of this module's own on the server at ``DSNOTEBOOK_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``), dropped at the end; they skip where no server
answers, and fail instead under ``DSNOTEBOOK_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import math
import os
import secrets
import sqlite3
import stat
import threading
import time

import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("adbc_driver_sqlite")

from sqlalchemy.engine import make_url

from dsnotebook.store.backends import _arrow_io as aio

PG_SERVER = os.environ.get("DSNOTEBOOK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


# ------------------------------------------------------------------------------------------
# SQLite hand-off
# ------------------------------------------------------------------------------------------


def test_handoff_dir_is_private_and_stable():
    d = aio.handoff_dir()
    assert os.path.isabs(d) and os.path.isdir(d)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert aio.handoff_dir() == d
    if aio.handoff._shm_usable():
        assert d.startswith("/dev/shm/")
    path = aio.new_handoff_path("x")
    assert os.path.dirname(path) == d
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.path.getsize(path) == 0
    other = aio.new_handoff_path("x")
    assert other != path
    aio.remove_handoff(other)
    aio.remove_handoff(path)
    aio.remove_handoff(path)  # a missing file is fine
    assert not os.path.exists(path)


def test_handoff_dir_sweeps_dead_processes_leftovers(tmp_path, monkeypatch):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    stale = tmp_path / f"dsnotebook-handoff-{pid}-abc"
    stale.mkdir()
    (stale / "push-1.db").write_bytes(b"x")
    alive = tmp_path / f"dsnotebook-handoff-{os.getpid()}-def"
    alive.mkdir()
    other = tmp_path / "dsnotebook-handoff-notapid"
    other.mkdir()
    aio.handoff._sweep_stale(str(tmp_path))
    assert not stale.exists() and alive.exists() and other.exists()


def _main_db(tmp_path, ddl: str) -> sqlite3.Connection:
    con = sqlite3.connect(tmp_path / "main.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(ddl)
    return con


def _copy_in(con: sqlite3.Connection, path: str, sql: str) -> None:
    # The caller's protocol: ATTACH outside the transaction, copy inside BEGIN IMMEDIATE.
    con.execute("ATTACH ? AS h", (path,))
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute(sql)
        con.execute("COMMIT")
    finally:
        con.execute("DETACH h")


def _copy_out(con: sqlite3.Connection, path: str, sql: str) -> None:
    con.execute("ATTACH ? AS h", (path,))
    try:
        con.execute("BEGIN")
        con.execute(sql)
        con.execute("COMMIT")
    finally:
        con.execute("DETACH h")


def test_detach_waits_for_the_end_of_the_transaction(tmp_path):
    # The system SQLite (3.40) lets ATTACH run inside a transaction, but not DETACH of a file the
    # transaction has used: the caller detaches after COMMIT.
    con = _main_db(tmp_path, "CREATE TABLE t(x)")
    path = aio.new_handoff_path()
    aio.remove_handoff(path)
    aio.write_handoff(path, "chunk", pa.table({"x": [1, 2]}))
    con.execute("BEGIN IMMEDIATE")
    con.execute("ATTACH ? AS h", (path,))
    con.execute("INSERT INTO main.t SELECT x FROM h.chunk")
    with pytest.raises(sqlite3.OperationalError, match="database h is locked"):
        con.execute("DETACH h")
    con.execute("COMMIT")
    con.execute("DETACH h")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)
    con.close()
    aio.remove_handoff(path)


def test_create_mode_declared_types(tmp_path):
    path = str(tmp_path / "h.db")
    batch = pa.record_batch(
        {
            "i": pa.array([1], pa.int64()),
            "i32": pa.array([1], pa.int32()),
            "flag": pa.array([True]),
            "f": pa.array([1.0], pa.float64()),
            "s": pa.array(["a"], pa.string()),
            "ls": pa.array(["a"], pa.large_string()),
            "b": pa.array([b"a"], pa.binary()),
            "lb": pa.array([b"a"], pa.large_binary()),
            "d": pa.array(["a"]).dictionary_encode(),
        }
    )
    aio.write_handoff(path, "chunk", batch)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p != "h.db"]  # no journal left behind
    con = sqlite3.connect(path)
    declared = {row[1]: row[2] for row in con.execute("PRAGMA table_info(chunk)")}
    con.close()
    assert declared == {
        "i": "INTEGER",
        "i32": "INTEGER",
        "flag": "INTEGER",
        "f": "REAL",
        "s": "TEXT",
        "ls": "TEXT",
        "b": "BLOB",
        "lb": "",
        "d": "",
    }


EDGE = pa.record_batch(
    {
        "i": pa.array([I64_MIN, I64_MAX, 0, None, -1, 7], pa.int64()),
        "f": pa.array([float("nan"), -0.0, math.inf, None, -math.inf, 5e-324], pa.float64()),
        "s": pa.array(["", "a\x00b", "\u00e9\u2028\U0001f600\ufeff\uffff\U0010ffff", None, "007", "1e5"], pa.large_string()),
        "e": pa.array(["", "", "", "", "", ""], pa.large_string()),
        "b": pa.array([b"", b"\x00\xff\xfe", b"y" * 5_000_000, None, b"\x80", b"12"], pa.large_binary()),
        "flag": pa.array([1, 0, None, 1, 0, 1], pa.int64()),
        "absent": pa.array([None] * 6, pa.float64()),
    }
)
STAGING = "CREATE TABLE staging(i INTEGER, f REAL, s TEXT, e TEXT, b BLOB, flag INTEGER, absent REAL)"


def test_write_handoff_then_insert_select_stores_the_same_values(tmp_path):
    con = _main_db(tmp_path, STAGING)
    path = aio.new_handoff_path()
    aio.write_handoff(path, "chunk", EDGE)
    _copy_in(con, path, "INSERT INTO main.staging (i, f, s, e, b, flag, absent) SELECT i, f, s, e, b, flag, absent FROM h.chunk")
    aio.remove_handoff(path)
    assert not os.path.exists(path)
    types = con.execute(
        "SELECT typeof(i), typeof(f), typeof(s), typeof(e), typeof(b), typeof(flag), typeof(absent) FROM staging ORDER BY rowid"
    ).fetchall()
    rows = con.execute("SELECT i, f, s, e, b, flag, absent FROM staging ORDER BY rowid").fetchall()
    con.close()
    assert [t[0] for t in types] == ["integer", "integer", "integer", "null", "integer", "integer"]
    assert [t[1] for t in types] == ["null", "real", "real", "null", "real", "real"]  # NaN -> NULL
    assert [t[2] for t in types] == ["text", "text", "text", "null", "text", "text"]
    assert {t[3] for t in types} == {"text"}  # empty strings stay '' and text
    assert [t[4] for t in types] == ["blob", "blob", "blob", "null", "blob", "blob"]
    assert {t[6] for t in types} == {"null"}
    assert [r[0] for r in rows] == EDGE.column("i").to_pylist()
    floats = [r[1] for r in rows]
    assert floats[0] is None and floats[1] == 0.0 and math.copysign(1, floats[1]) == 1.0  # SQLite: -0.0 -> 0.0
    assert floats[2:] == [math.inf, None, -math.inf, 5e-324]
    assert [r[2] for r in rows] == EDGE.column("s").to_pylist()  # NUL kept, every code point kept
    assert [r[3] for r in rows] == [""] * 6
    assert [r[4] for r in rows] == EDGE.column("b").to_pylist()
    assert [r[5] for r in rows] == EDGE.column("flag").to_pylist()


@pytest.mark.parametrize(
    "arr",
    [
        pa.array([0], pa.timestamp("us")),
        pa.array([0], pa.timestamp("ns", "UTC")),
        pa.array([0], pa.duration("us")),
        pa.array([0], pa.date32()),
        pa.array([0], pa.time64("us")),
        pa.array([pa.MonthDayNano([1, 2, 3])], pa.month_day_nano_interval()),
    ],
    ids=["timestamp", "timestamp_tz", "duration", "date32", "time64", "interval"],
)
def test_write_handoff_refuses_temporal_fields(tmp_path, arr):
    path = str(tmp_path / "h.db")
    with pytest.raises(ValueError, match="column 't'"):
        aio.write_handoff(path, "chunk", pa.table({"x": [1], "t": arr}))
    assert not os.path.exists(path)


def test_write_handoff_refuses_a_file_with_data(tmp_path):
    path = str(tmp_path / "h.db")
    aio.write_handoff(path, "chunk", pa.table({"x": [1]}))
    with pytest.raises(FileExistsError):
        aio.write_handoff(path, "chunk2", pa.table({"x": [1]}))
    assert os.path.exists(path)  # the caller's file is left alone


def test_write_handoff_removes_its_file_when_adbc_fails(tmp_path):
    path = str(tmp_path / "h.db")
    with pytest.raises(Exception, match="out of range|unsigned"):
        aio.write_handoff(path, "chunk", pa.table({"x": pa.array([2**64 - 1], pa.uint64())}))
    assert not os.path.exists(path)


READ_SCHEMA = pa.schema(
    [
        ("i", pa.int64()),
        ("r", pa.float64()),
        ("t", pa.large_string()),
        ("b", pa.large_binary()),
        ("digits", pa.large_string()),
        ("whole", pa.float64()),
    ]
)


def _late_values_table(tmp_path, n: int, first_null: int) -> tuple[sqlite3.Connection, list[tuple]]:
    """A staging table whose first ``first_null`` rows are NULL in i, r, t and b."""
    con = _main_db(tmp_path, "CREATE TABLE s(__dsn_row INTEGER, i INTEGER, r REAL, t TEXT, b BLOB, digits TEXT, whole REAL)")
    rows = []
    for k in range(n):
        late = k >= first_null
        rows.append(
            (
                k,
                k - n // 2 if late else None,
                k + 0.5 if late else None,
                f"x{k}" if late else None,
                bytes([k % 256]) * (k % 3) if late else None,
                f"{k:05d}",
                k if k % 2 else k + 0.25,  # ints and floats in a REAL column: REAL affinity makes them all REAL
            )
        )
    con.execute("BEGIN")
    con.executemany("INSERT INTO s VALUES (?, ?, ?, ?, ?, ?, ?)", reversed(rows))
    con.execute("COMMIT")
    return con, [r[1:] for r in rows]


@pytest.mark.parametrize("batch_rows", [1, 100, 65_536])
def test_read_handoff_gives_the_declared_schema_when_first_rows_are_null(tmp_path, batch_rows):
    con, expected = _late_values_table(tmp_path, 2_500, first_null=2_000)
    path = aio.new_handoff_path("r")
    _copy_out(con, path, "CREATE TABLE h.r AS SELECT i, r, t, b, digits, whole FROM main.s ORDER BY __dsn_row")
    con.close()
    batches = list(aio.read_handoff(path, "SELECT * FROM r", READ_SCHEMA, batch_rows=batch_rows))
    assert all(b.schema == READ_SCHEMA for b in batches)
    assert all(0 < b.num_rows <= batch_rows for b in batches)
    table = pa.Table.from_batches(batches, schema=READ_SCHEMA)
    assert [tuple(r.values()) for r in table.to_pylist()] == expected
    aio.remove_handoff(path)


def test_create_table_as_declares_affinity_types(tmp_path):
    con = _main_db(tmp_path, "CREATE TABLE s(__dsn_row INTEGER, i INTEGER, r REAL, t TEXT, b BLOB, n NUMERIC)")
    path = aio.new_handoff_path("r")
    _copy_out(con, path, "CREATE TABLE h.r AS SELECT i, r, t, b, n FROM main.s ORDER BY __dsn_row")
    declared = [row[2] for row in con.execute("ATTACH ? AS h2", (path,)) and con.execute("PRAGMA h2.table_info(r)")]
    con.execute("DETACH h2")
    con.close()
    assert declared == ["INT", "REAL", "TEXT", "", "NUM"]
    aio.remove_handoff(path)


def test_explicitly_typed_handoff_reads_the_same(tmp_path):
    con, expected = _late_values_table(tmp_path, 300, first_null=200)
    path = aio.new_handoff_path("r")
    con.execute("ATTACH ? AS h", (path,))
    con.execute("CREATE TABLE h.r (i INTEGER, r REAL, t TEXT, b BLOB, digits TEXT, whole REAL)")
    con.execute("BEGIN")
    con.execute("INSERT INTO h.r SELECT i, r, t, b, digits, whole FROM main.s ORDER BY __dsn_row")
    con.execute("COMMIT")
    con.execute("DETACH h")
    con.close()
    table = aio.read_handoff_table(path, "SELECT * FROM r", READ_SCHEMA)
    aio.remove_handoff(path)
    assert table.schema == READ_SCHEMA
    assert [tuple(r.values()) for r in table.to_pylist()] == expected


def test_push_then_pull_round_trip(tmp_path):
    con = _main_db(
        tmp_path,
        "CREATE TABLE staging(__dsn_row INTEGER PRIMARY KEY, i INTEGER, f REAL, s TEXT, e TEXT, b BLOB, flag INTEGER, absent REAL)",
    )
    for start in (0, 3):
        path = aio.new_handoff_path()
        chunk = EDGE.slice(start, 3)
        chunk = chunk.add_column(0, "__dsn_row", pa.array(range(start, start + 3), pa.int64()))
        aio.write_handoff(path, "chunk", chunk)
        _copy_in(con, path, "INSERT INTO main.staging SELECT * FROM h.chunk")
        aio.remove_handoff(path)
    path = aio.new_handoff_path("r")
    _copy_out(con, path, "CREATE TABLE h.r AS SELECT i, f, s, e, b, flag, absent FROM main.staging ORDER BY __dsn_row")
    con.close()
    schema = pa.schema([(f.name, pa.float64() if f.name == "absent" else f.type) for f in EDGE.schema])
    got = aio.read_handoff_table(path, "SELECT * FROM r", schema)
    aio.remove_handoff(path)
    assert got.schema == schema
    for name in ("i", "s", "e", "b", "flag"):
        assert got.column(name).to_pylist() == EDGE.column(name).to_pylist(), name
    assert got.column("f").to_pylist() == [None, 0.0, math.inf, None, -math.inf, 5e-324]  # SQLite's NaN and -0.0
    assert got.column("absent").null_count == 6


def test_read_handoff_empty_result(tmp_path):
    path = str(tmp_path / "h.db")
    aio.write_handoff(path, "r", pa.table({"i": pa.array([], pa.int64()), "s": pa.array([], pa.large_string())}))
    schema = pa.schema([("i", pa.int64()), ("s", pa.large_string())])
    assert list(aio.read_handoff(path, "SELECT * FROM r", schema)) == []
    table = aio.read_handoff_table(path, "SELECT * FROM r", schema)
    assert table.schema == schema and table.num_rows == 0


def _mixed_file(tmp_path, values: list, declared: str = "") -> str:
    path = str(tmp_path / "mixed.db")
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE r(x {declared})")
    con.executemany("INSERT INTO r VALUES (?)", [(v,) for v in values])
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize(
    ("values", "declared", "arrow_type"),
    [
        ([1.5] * 5, "REAL", pa.int64()),  # first batch: widened to double
        ([None] * 300 + [1.5], "REAL", pa.int64()),  # later batch: the reader's own mismatch error
        (["a"] * 5, "TEXT", pa.float64()),
        ([None] * 300 + ["a"], "TEXT", pa.int64()),
        ([b"a"] * 5, "", pa.large_string()),  # a blob in the first batch widens string to binary
        ([None] * 300 + [1], "", pa.large_binary()),
        (["a"] * 5, "", pa.int64()),
    ],
    ids=[
        "real-as-int",
        "late-real-as-int",
        "text-as-float",
        "late-text-as-int",
        "blob-as-string",
        "late-int-as-binary",
        "text-as-int",
    ],
)
def test_read_handoff_detects_values_that_do_not_fit(tmp_path, values, declared, arrow_type):
    path = _mixed_file(tmp_path, values, declared)
    schema = pa.schema([("x", arrow_type)])
    with pytest.raises(aio.HandoffTypeError) as info:
        list(aio.read_handoff(path, "SELECT x FROM r;", schema, batch_rows=100))
    assert info.value.column == "x"


@pytest.mark.parametrize(
    ("values", "arrow_type"),
    [
        ([None] * 300 + [b"\x00\xff"], pa.large_string()),
        ([None] * 300 + ["a"], pa.large_binary()),
        ([None] * 300 + [2], pa.float64()),
        ([None, 7], pa.large_binary()),  # in the first batch, numbers become their digits
    ],
    ids=["late-blob-in-string", "late-text-in-binary", "late-int-in-float", "int-in-binary"],
)
def test_strict_catches_what_the_reader_converts_silently(tmp_path, values, arrow_type):
    path = _mixed_file(tmp_path, values)  # BLOB affinity: the values keep their classes
    schema = pa.schema([("x", arrow_type)])
    list(aio.read_handoff(path, "SELECT x FROM r", schema, batch_rows=100))  # no error without strict
    with pytest.raises(aio.HandoffTypeError, match="'x' holds 1 value"):
        list(aio.read_handoff(path, "SELECT x FROM r", schema, batch_rows=100, strict=True))


def test_read_handoff_refuses_bad_arguments(tmp_path):
    path = _mixed_file(tmp_path, [1, 2])
    with pytest.raises(ValueError, match="1 columns|does not give"):
        list(aio.read_handoff(path, "SELECT x, x FROM r", pa.schema([("x", pa.int64())])))
    with pytest.raises(ValueError, match="not bool"):
        list(aio.read_handoff(path, "SELECT x FROM r", pa.schema([("x", pa.bool_())])))
    with pytest.raises(FileNotFoundError):
        list(aio.read_handoff(str(tmp_path / "missing.db"), "SELECT 1", pa.schema([("x", pa.int64())])))
    assert not os.path.exists(tmp_path / "missing.db")


# ------------------------------------------------------------------------------------------
# PostgreSQL: the URI (no server needed)
# ------------------------------------------------------------------------------------------

URI_CASES = [
    (
        "postgresql+asyncpg://u:pw@db.example:5433/sales",
        {"user": "u", "password": "pw", "host": "db.example", "port": "5433", "dbname": "sales"},
    ),
    (
        "postgresql+asyncpg://us%40er:p%40ss%3Aw%2Fo%3Frd%23%25+%20%26%3D%C3%A9@h/d%20b",
        {"user": "us@er", "password": "p@ss:w/o?rd#%+ &=\u00e9", "host": "h", "dbname": "d b"},
    ),
    ("postgresql+asyncpg://u@[::1]:5432/d", {"user": "u", "host": "::1", "port": "5432", "dbname": "d"}),
    ("postgresql+asyncpg://u@/d?host=/var/run/postgresql", {"user": "u", "host": "/var/run/postgresql", "dbname": "d"}),
    ("postgresql+asyncpg://u@/d?host=h1:5432&host=h2:5433", {"user": "u", "host": "h1,h2", "port": "5432,5433", "dbname": "d"}),
    (
        "postgresql+asyncpg://u@h/d?ssl=verify-full&timeout=2.5&command_timeout=9&prepared_statement_cache_size=0&target_session_attrs=read-write",
        {
            "user": "u",
            "host": "h",
            "dbname": "d",
            "sslmode": "verify-full",
            "connect_timeout": "3",
            "target_session_attrs": "read-write",
        },
    ),
    (
        "postgresql+asyncpg://u@h/d?ssl=require&direct_tls=true",
        {"user": "u", "host": "h", "dbname": "d", "sslmode": "require", "sslnegotiation": "direct"},
    ),
    (
        "postgresql://u@h/d?sslmode=disable&passfile=/x&service=svc",
        {"user": "u", "host": "h", "dbname": "d", "sslmode": "disable", "passfile": "/x", "service": "svc"},
    ),
    ("postgresql+psycopg://h/d", {"host": "h", "dbname": "d"}),
]


@pytest.mark.parametrize(
    ("url", "expected"),
    URI_CASES,
    ids=["plain", "special-chars", "ipv6", "socket-dir", "multi-host", "params", "direct-tls", "libpq-names", "no-user"],
)
def test_pg_uri_is_parsed_back_by_libpq(url, expected):
    conninfo = pytest.importorskip("psycopg.conninfo")
    uri = aio.pg_uri(make_url(url))
    assert uri.startswith("postgresql://")
    assert conninfo.conninfo_to_dict(uri) == expected


def test_pg_uri_keeps_the_password_the_url_holds():
    conninfo = pytest.importorskip("psycopg.conninfo")
    url = make_url("postgresql+asyncpg://u@h/d").set(password="a b+c%d/e:f@g?h#i&j=k'l\"m\\n\u00e9")
    assert conninfo.conninfo_to_dict(aio.pg_uri(url))["password"] == url.password


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///x.db", "postgresql+asyncpg://u@h/d?ssl=true"], ids=["sqlite", "bad-ssl"])
def test_pg_uri_refuses(url):
    with pytest.raises(ValueError):
        aio.pg_uri(make_url(url))


# ------------------------------------------------------------------------------------------
# PostgreSQL: against the server
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_db():
    """A database of this module's own; yields its libpq URI."""
    psycopg = pytest.importorskip("psycopg")
    pytest.importorskip("adbc_driver_postgresql")
    name = f"dsn_arrowio_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL does not answer at {PG_SERVER}: {exc}"
        if os.environ.get("DSNOTEBOOK_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"DSNOTEBOOK_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    uri = str(make_url(PG_SERVER).set(database=name))
    yield uri
    with psycopg.connect(PG_SERVER, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sql(pg_db):
    """Run statements on a psycopg autocommit connection; returns all rows of the last one."""
    import psycopg

    conn = psycopg.connect(pg_db, autocommit=True)

    def run(*statements: str, params: tuple = ()) -> list[tuple]:
        cur = None
        for statement in statements:
            cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur is not None and cur.description else []

    yield run
    conn.close()


@pytest.fixture
def adbc_conn(pg_db):
    conn = aio.pg_connect(pg_db)
    yield conn
    conn.close()


def test_pg_connect_from_an_sqlalchemy_url(pg_db):
    url = make_url(pg_db).set(drivername="postgresql+asyncpg").update_query_dict({"ssl": "disable", "command_timeout": "5"})
    conn = aio.pg_connect(aio.pg_uri(url))
    try:
        assert aio.pg_fetch(conn, "SELECT current_database() AS d").column("d").to_pylist() == [make_url(pg_db).database]
    finally:
        conn.close()


UTC = dt.UTC
# (column type as SQLAlchemy creates it, Arrow values, the column's ::text afterwards)
ACCEPTED = [
    ("BIGINT", pa.array([I64_MIN, I64_MAX, None], pa.int64()), ["-9223372036854775808", "9223372036854775807", None]),
    (
        "DOUBLE PRECISION",
        pa.array([float("nan"), -0.0, None, math.inf, 5e-324], pa.float64()),
        ["NaN", "-0", None, "Infinity", "5e-324"],
    ),
    ("TEXT", pa.array(["", "\u00e9\U0001f600", None], pa.large_string()), ["", "\u00e9\U0001f600", None]),
    ("TEXT", pa.array(["a", None], pa.string()), ["a", None]),
    ("TEXT", pa.array(["a", None, "a"]).dictionary_encode(), ["a", None, "a"]),
    ("BYTEA", pa.array([b"\x00\xff", b"", None], pa.large_binary()), ["\\x00ff", "\\x", None]),
    ("BYTEA", pa.array([b"\x01", None], pa.binary()), ["\\x01", None]),
    ("BOOLEAN", pa.array([True, False, None]), ["true", "false", None]),
    ("NUMERIC", pa.array([I64_MIN, 0, None], pa.int64()), ["-9223372036854775808", "0", None]),
    ("JSON", pa.array(['{"a":  1.50}', "[1, 2]", None], pa.large_string()), ['{"a":  1.50}', "[1, 2]", None]),
    ("JSONB", pa.array(['{"b": 1, "a":  1.50}', "null", None], pa.large_string()), ['{"a": 1.50, "b": 1}', "null", None]),
    ("JSONB", pa.ExtensionArray.from_storage(pa.json_(pa.string()), pa.array(["[1]", None])), ["[1]", None]),
    (
        "TIMESTAMP WITHOUT TIME ZONE",
        pa.array([dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None], pa.timestamp("us")),
        ["0001-01-01 00:00:00", "9999-12-31 23:59:59.999999", None],
    ),
    ("TIMESTAMP WITHOUT TIME ZONE", pa.array([1, None], pa.timestamp("s")), ["1970-01-01 00:00:01", None]),
    (
        "TIMESTAMP WITH TIME ZONE",
        pa.array(
            [dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), None],
            pa.timestamp("us", "UTC"),
        ),
        ["0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00", None],
    ),
    ("TIMESTAMP WITH TIME ZONE", pa.array([0, None], pa.timestamp("ms", "Europe/Paris")), ["1970-01-01 00:00:00+00", None]),
    (
        "INTERVAL",
        pa.array(
            [
                dt.timedelta(days=3),
                dt.timedelta(days=-2, microseconds=1),
                dt.timedelta(days=1000, seconds=5),
                None,
                dt.timedelta(0),
            ],
            pa.duration("us"),
        ),
        ["3 days", "-2 days +00:00:00.000001", "1000 days 00:00:05", None, "00:00:00"],
    ),
    ("INTERVAL", pa.array([-1, None], pa.duration("s")), ["-1 days +23:59:59", None]),
    (
        "INTERVAL",
        pa.array([pa.MonthDayNano([1, 2, 3000]), None], pa.month_day_nano_interval()),
        ["1 mon 2 days 00:00:00.000003", None],
    ),
    ("DATE", pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), None], pa.date32()), ["0001-01-01", "9999-12-31", None]),
    (
        "TIME WITHOUT TIME ZONE",
        pa.array([dt.time(0), dt.time(23, 59, 59, 999999), dt.time(10, 0, 0, 250000), None], pa.time64("us")),
        ["00:00:00", "23:59:59.999999", "10:00:00.25", None],
    ),
    ("BIGINT", pa.array([None, None], pa.null()), [None, None]),
]


def _accepted_id(case) -> str:
    return f"{case[0].split()[0].lower()}-{case[1].type}".replace(" ", "")


@pytest.mark.parametrize(("pg_type", "arr", "expected"), ACCEPTED, ids=[_accepted_id(c) for c in ACCEPTED])
def test_pg_ingest_writes_each_accepted_type_exactly(sql, adbc_conn, pg_type, arr, expected):
    sql("DROP TABLE IF EXISTS acc", f"CREATE TABLE acc (__dsn_row BIGINT, v {pg_type})")
    table = pa.table({"__dsn_row": pa.array(range(len(arr)), pa.int64()), "v": arr})
    assert aio.pg_ingest(adbc_conn, "acc", table) == len(arr)
    assert [r[0] for r in sql("SELECT v::text FROM acc ORDER BY __dsn_row")] == expected


REFUSED = [
    ("BIGINT", pa.array([1.0])),
    ("BIGINT", pa.array([1], pa.int32())),
    ("BIGINT", pa.array([0], pa.timestamp("us"))),
    ("DOUBLE PRECISION", pa.array([1])),
    ("DOUBLE PRECISION", pa.array([1.0], pa.float32())),
    ("TEXT", pa.array([b"a"])),
    ("BYTEA", pa.array(["a"])),
    ("BYTEA", pa.array([1])),
    ("BOOLEAN", pa.array([1])),
    ("NUMERIC", pa.array(["1.50"])),
    ("NUMERIC", pa.array([decimal.Decimal("1.50")], pa.decimal128(10, 2))),
    ("NUMERIC", pa.array([1.5])),
    ("JSONB", pa.array(["a"]).dictionary_encode()),
    ("TIMESTAMP WITHOUT TIME ZONE", pa.array([0])),
    ("TIMESTAMP WITHOUT TIME ZONE", pa.array([0], pa.timestamp("us", "UTC"))),
    ("TIMESTAMP WITHOUT TIME ZONE", pa.array([0], pa.timestamp("ns"))),
    ("TIMESTAMP WITH TIME ZONE", pa.array([0], pa.timestamp("us"))),
    ("INTERVAL", pa.array([0])),
    ("INTERVAL", pa.array([0], pa.duration("ns"))),
    ("INTEGER", pa.array([1], pa.int32())),
    ("DATE", pa.array([0], pa.date64())),
    ("DATE", pa.array(["2024-01-01"])),
    ("TIME WITHOUT TIME ZONE", pa.array([0], pa.time64("ns"))),
    ("TIME WITH TIME ZONE", pa.array([0], pa.time64("us"))),
]


@pytest.mark.parametrize(("pg_type", "arr"), REFUSED, ids=[_accepted_id(c) for c in REFUSED])
def test_pg_ingest_refuses_types_copy_would_misread(sql, adbc_conn, pg_type, arr):
    sql("DROP TABLE IF EXISTS ref", f"CREATE TABLE ref (v {pg_type})")
    with pytest.raises(aio.CopyTypeError) as info:
        aio.pg_ingest(adbc_conn, "ref", pa.table({"v": arr}))
    assert info.value.column == "v" and info.value.arrow_type == arr.type and info.value.pg_type
    assert sql("SELECT count(*) FROM ref") == [(0,)]
    assert aio.pg_fetch(adbc_conn, "SELECT 1 AS one").num_rows == 1  # the connection is still usable


def test_pg_ingest_refuses_a_field_without_column(sql, adbc_conn):
    sql("DROP TABLE IF EXISTS few", "CREATE TABLE few (a BIGINT)")
    with pytest.raises(aio.CopyTypeError, match="no column 'b'"):
        aio.pg_ingest(adbc_conn, "few", pa.table({"a": [1], "b": [2]}))


def test_pg_ingest_intervals_read_like_asyncpg_writes_them(sql, adbc_conn, pg_db):
    asyncpg = pytest.importorskip("asyncpg")
    deltas = [
        dt.timedelta(days=3),
        dt.timedelta(days=-2, microseconds=1),
        dt.timedelta(days=-1, seconds=86399),
        dt.timedelta(microseconds=-1),
    ]
    sql("DROP TABLE IF EXISTS iv", "CREATE TABLE iv (src TEXT, k BIGINT, v INTERVAL)")
    aio.pg_ingest(adbc_conn, "iv", pa.table({"src": ["adbc"] * 4, "k": range(4), "v": pa.array(deltas, pa.duration("us"))}))

    async def with_asyncpg():
        conn = await asyncpg.connect(pg_db)
        try:
            await conn.copy_records_to_table(
                "iv", records=[("asyncpg", k, d) for k, d in enumerate(deltas)], columns=["src", "k", "v"]
            )
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())
    by = {}
    for src, k, text in sql("SELECT src, k, v::text FROM iv ORDER BY k"):
        by.setdefault(src, []).append(text)
    assert by["adbc"] == by["asyncpg"]


def test_pg_ingest_takes_every_input_form(sql, adbc_conn):
    sql("DROP TABLE IF EXISTS forms", "CREATE TABLE forms (x BIGINT, s TEXT)")
    table = pa.table({"x": pa.array(range(10), pa.int64()), "s": pa.array([str(i) for i in range(10)], pa.large_string())})
    assert aio.pg_ingest(adbc_conn, "forms", table) == 10
    assert aio.pg_ingest(adbc_conn, "forms", table.to_batches(max_chunksize=3)) == 10
    assert aio.pg_ingest(adbc_conn, "forms", iter(table.to_batches(max_chunksize=4))) == 10
    assert aio.pg_ingest(adbc_conn, "forms", table.to_batches()[0]) == 10
    assert aio.pg_ingest(adbc_conn, "forms", pa.RecordBatchReader.from_batches(table.schema, table.to_batches())) == 10
    assert aio.pg_ingest(adbc_conn, "forms", []) == 0
    assert aio.pg_ingest(adbc_conn, "forms", table.select(["s"])) == 10  # the other column gets its default
    assert sql("SELECT count(*), count(x) FROM forms") == [(60, 50)]


def test_pg_ingest_converts_big_batches_piece_by_piece(sql, adbc_conn):
    n = 40_000  # more than one 16,384-row piece, with nulls across the pieces' edges
    sql("DROP TABLE IF EXISTS pieces", "CREATE TABLE pieces (k BIGINT, v INTERVAL, j JSONB)")
    us = pa.array([None if i % 7 == 0 else (i - n // 2) * 3_600_000_001 for i in range(n)], pa.int64())
    table = pa.table(
        {
            "k": pa.array(range(n), pa.int64()),
            "v": us.cast(pa.duration("us")),
            "j": pa.array([None if i % 5 == 0 else f'{{"i": {i}}}' for i in range(n)], pa.large_string()),
        }
    )
    assert aio.pg_ingest(adbc_conn, "pieces", table.slice(1)) == n - 1
    got = sql("SELECT k, (extract(epoch FROM v) * 1000000)::bigint, (j->>'i')::bigint FROM pieces ORDER BY k")
    assert [r[1] for r in got] == us.to_pylist()[1:]
    assert [r[2] for r in got] == [None if i % 5 == 0 else i for i in range(1, n)]


def test_pg_ingest_rolls_back_batches_with_differing_schemas(sql, adbc_conn):
    sql("DROP TABLE IF EXISTS mixed", "CREATE TABLE mixed (x BIGINT)")
    good = pa.record_batch({"x": pa.array([1], pa.int64())})
    bad = pa.record_batch({"y": pa.array([1], pa.int64())})
    with pytest.raises(ValueError, match="differs"):
        aio.pg_ingest(adbc_conn, "mixed", [good, good, bad])
    assert sql("SELECT count(*) FROM mixed") == [(0,)]


def test_pg_ingest_into_a_named_schema(sql, adbc_conn):
    sql(
        'DROP SCHEMA IF EXISTS "Odd ""schema""" CASCADE',
        'CREATE SCHEMA "Odd ""schema"""',
        'CREATE TABLE "Odd ""schema"""."T x" ("Col A" BIGINT)',
    )
    assert aio.pg_ingest(adbc_conn, "T x", pa.table({"Col A": [1, 2]}), schema='Odd "schema"') == 2
    assert sql('SELECT sum("Col A") FROM "Odd ""schema"""."T x"') == [(3,)]
    with pytest.raises(aio.TableMissingError):
        aio.pg_ingest(adbc_conn, "T x", pa.table({"Col A": [1]}))  # not in current_schema()


def test_pg_ingest_missing_table(adbc_conn):
    with pytest.raises(aio.TableMissingError):
        aio.pg_ingest(adbc_conn, "no_such_table", pa.table({"x": [1]}))
    assert aio.pg_fetch(adbc_conn, "SELECT 1 AS one").num_rows == 1


class _Ingest(threading.Thread):
    def __init__(self, conn, table, data, cancel=None):
        super().__init__(name="test-ingest")
        self.args_ = (conn, table, data)
        self.cancel = cancel
        self.rows = None
        self.error = None

    def run(self):
        try:
            self.rows = aio.pg_ingest(*self.args_, cancel=self.cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc


def _locked(pg_db, table: str):
    import psycopg

    locker = psycopg.connect(pg_db)
    locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    return locker


def test_pg_ingest_waits_for_a_table_lock(sql, adbc_conn, pg_db):
    sql("DROP TABLE IF EXISTS lk", "CREATE TABLE lk (x BIGINT)")
    locker = _locked(pg_db, "lk")
    worker = _Ingest(adbc_conn, "lk", pa.table({"x": [1, 2, 3]}))
    worker.start()
    try:
        time.sleep(0.5)
        assert worker.is_alive() and worker.error is None
        waits = sql("SELECT wait_event_type FROM pg_stat_activity WHERE query LIKE 'COPY %%lk%%' AND state = 'active'")
        assert waits == [("Lock",)]
    finally:
        locker.commit()
        worker.join(10)
        locker.close()
    assert worker.error is None and worker.rows == 3
    assert sql("SELECT count(*) FROM lk") == [(3,)]


def test_pg_cancel_ends_a_lock_wait(sql, adbc_conn, pg_db):
    sql("DROP TABLE IF EXISTS lk", "CREATE TABLE lk (x BIGINT)")
    locker = _locked(pg_db, "lk")
    cancel = threading.Event()
    worker = _Ingest(adbc_conn, "lk", pa.table({"x": [1, 2, 3]}), cancel)
    worker.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        aio.pg_cancel(adbc_conn, cancel)
        worker.join(10)
        assert time.monotonic() - started < 2
    finally:
        locker.rollback()
        locker.close()
        worker.join(10)
    assert isinstance(worker.error, aio.IngestCancelled)
    cause = worker.error.__cause__
    assert getattr(cause, "sqlstate", None) == "57014" and "canceling statement due to user request" in str(cause)
    assert sql("SELECT count(*) FROM lk") == [(0,)]
    assert aio.pg_fetch(adbc_conn, "SELECT 1 AS one").num_rows == 1


def test_pg_cancel_stops_a_long_stream(sql, adbc_conn):
    sql("DROP TABLE IF EXISTS big", "CREATE TABLE big (x BIGINT)")
    batch = pa.record_batch({"x": pa.array(range(100_000), pa.int64())})
    sent = threading.Event()

    def endless():
        while True:
            yield batch
            sent.set()

    cancel = threading.Event()
    worker = _Ingest(adbc_conn, "big", endless(), cancel)
    worker.start()
    assert sent.wait(10)
    started = time.monotonic()
    aio.pg_cancel(adbc_conn, cancel)
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - started < 5
    assert isinstance(worker.error, aio.IngestCancelled)
    assert sql("SELECT count(*) FROM big") == [(0,)]
    assert aio.pg_fetch(adbc_conn, "SELECT 1 AS one").num_rows == 1


@pytest.mark.parametrize("action", ["ALTER TABLE lk RENAME TO lk_renamed", "DROP TABLE lk"], ids=["renamed", "dropped"])
def test_pg_ingest_table_renamed_or_dropped_while_waiting(sql, adbc_conn, pg_db, action):
    sql("DROP TABLE IF EXISTS lk", "DROP TABLE IF EXISTS lk_renamed", "CREATE TABLE lk (x BIGINT)")
    locker = _locked(pg_db, "lk")
    worker = _Ingest(adbc_conn, "lk", pa.table({"x": [1]}))
    worker.start()
    try:
        time.sleep(0.3)
        locker.execute(action)
        locker.commit()
        worker.join(10)
    finally:
        locker.close()
        worker.join(10)
    assert isinstance(worker.error, aio.TableMissingError)
    assert getattr(worker.error.__cause__, "sqlstate", None) == "42P01"


FETCHED = [
    ("BIGINT", "1", pa.int64()),
    ("DOUBLE PRECISION", "'NaN'", pa.float64()),
    ("TEXT", "'x'", pa.string()),
    ("BYTEA", "'\\x00ff'", pa.binary()),
    ("BOOLEAN", "true", pa.bool_()),
    ("TIMESTAMP WITHOUT TIME ZONE", "'0001-01-01'", pa.timestamp("us")),
    ("TIMESTAMP WITH TIME ZONE", "'9999-12-31 23:59:59.999999+00'", pa.timestamp("us", "UTC")),
    ("INTERVAL", "'1 mon 2 days 3 us'", pa.month_day_nano_interval()),
    ("NUMERIC", "12.3400", "arrow.opaque"),
    ("JSON", "'{\"a\":  1.50}'", "arrow.json"),
    ("JSONB", "'{\"a\": 1.50}'", "arrow.json"),
]


def test_pg_fetch_types(sql, adbc_conn):
    columns = ", ".join(f"c{i} {t}" for i, (t, _, _) in enumerate(FETCHED))
    values = ", ".join(v for _, v, _ in FETCHED)
    sql(
        "DROP TABLE IF EXISTS ft",
        f"CREATE TABLE ft ({columns})",
        f"INSERT INTO ft VALUES ({values}), ({', '.join(['NULL'] * len(FETCHED))})",
    )
    table = aio.pg_fetch(adbc_conn, "SELECT * FROM ft")
    adbc_conn.rollback()
    for i, (pg_type, _, want) in enumerate(FETCHED):
        got = table.schema.field(i)
        if isinstance(want, str):
            assert isinstance(got.type, pa.BaseExtensionType) and got.type.extension_name == want, pg_type
            assert got.type.storage_type == pa.string()
        else:
            assert got.type == want, pg_type
        assert table.column(i).null_count == 1
    assert table.column(8).to_pylist()[0] == "12.3400"  # NUMERIC's exact text
    assert table.column(10).to_pylist()[0] == '{"a": 1.50}'
    assert table.column(7)[0].as_py() == pa.MonthDayNano([1, 2, 3000])
    assert math.isnan(table.column(1)[0].as_py())


def test_pg_fetch_batches(sql, adbc_conn):
    sql("DROP TABLE IF EXISTS fb", "CREATE TABLE fb AS SELECT g AS x, repeat('y', 100) AS s FROM generate_series(1, 300000) g")
    batches = list(aio.pg_fetch_batches(adbc_conn, "SELECT x, s FROM fb ORDER BY x"))
    assert len(batches) > 1
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 300_000 and table.column("x").to_pylist()[:3] == [1, 2, 3]
    assert table.equals(aio.pg_fetch(adbc_conn, "SELECT x, s FROM fb ORDER BY x"))
    adbc_conn.rollback()
