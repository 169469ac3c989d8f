"""SQLite's bulk path: private hand-off files that ADBC writes or reads, one copy at a time.

ADBC transfer primitives: Arrow record batches in and out of SQLite and PostgreSQL.

Everything here is synchronous. Callers run these functions in a worker thread
(``loop.run_in_executor``); ADBC releases the GIL while it works. Nothing here touches asyncio,
SQLAlchemy sessions or the catalog.

SQLite: only through private hand-off files
-------------------------------------------
``adbc-driver-sqlite`` links its own SQLite (3.53) statically, while ``sqlite3``/aiosqlite use the
system's (3.40). Two SQLite copies in one process that open the same file break POSIX locking and
lose committed rows. So ADBC never opens the hub's database. It only opens a private hand-off file
(one per chunk, in :func:`handoff_dir`), and the caller's own connection moves rows between that
file and the hub with ``ATTACH``:

* push: :func:`write_handoff` ingests a batch into a new file. The caller then, on its aiosqlite
  connection, runs ``ATTACH ? AS h``, ``BEGIN IMMEDIATE``, ``INSERT INTO main.staging (...)
  SELECT ... FROM h.<table>``, ``COMMIT``, ``DETACH h`` (DETACH inside the transaction fails
  with "database h is locked"), and :func:`remove_handoff`.
* pull: the caller runs ``ATTACH ? AS h``, ``CREATE TABLE h.r AS SELECT <cols> FROM main.<t>
  ORDER BY __dsn_row [LIMIT n]``, commits, ``DETACH h``; then :func:`read_handoff` reads it.

No other connection of this process may have the file open while a function here runs on it.

What ADBC's create mode declares (``adbc_ingest(mode="create")``), and what comes out of an
``INSERT ... SELECT`` into INTEGER / REAL / TEXT / BLOB columns (checked with ``typeof()``):

==================================  ===============  ========================================
Arrow type                          declared type    stored value
==================================  ===============  ========================================
int8..int64, uint8..uint64, bool    INTEGER          integer; int64 extremes exact; bool 0/1;
                                                     uint64 above 2**63-1 is refused by ADBC
float16, float32, float64           REAL             real; NaN becomes NULL and -0.0 becomes
                                                     0.0 (SQLite does both in any REAL column)
string, large_string                TEXT             text, byte for byte: empty strings stay
                                                     '' (not NULL), NUL characters are kept
string_view, dictionary<string>     (none)           text
binary                              BLOB             blob, byte for byte, empty stays x''
large_binary, binary_view           (none: BLOB      blob, byte for byte
                                    affinity)
date32                              TEXT             ISO text -- refused here
timestamp                           (none)           ISO text -- refused here
==================================  ===============  ========================================

Temporal fields of every kind are refused (``ValueError``): the codec stores them as int64.

How ADBC's SQLite reader types a result, and how :func:`read_handoff` makes it exact
-------------------------------------------------------------------------------------
The reader ignores declared types. Every column starts as int64, and the first batch
(``adbc.sqlite.query.batch_rows`` rows, 1024 by default) decides its type: a REAL value widens it to
double, a TEXT value to string, a BLOB value to binary (earlier numbers are turned into text,
doubles as ``printf("%e")``). Later batches must fit that type: a column whose first batch was all
NULL stays int64, and a later REAL, TEXT or BLOB value fails the read ("Type mismatch in column
N: expected INT64 but got DOUBLE"). Later integers in a double column are converted; later numbers
in a string column are converted to text by SQLite.

:func:`read_handoff` therefore puts a typed sentinel row first (``UNION ALL`` with 0, 0.0, '' and
x'' for int64, float64, string and binary fields), so that every column's type comes from the
declared schema whatever its first rows hold, then drops that row and casts string to
large_string and binary to large_binary. Any column that still comes out with another type, or a
mismatch the reader reports later, raises :class:`HandoffTypeError`, and the caller falls back.

Exactness then rests on the hand-off columns holding one storage class each. That holds for
columns with INTEGER, REAL or TEXT affinity filled from like-typed columns, and for BLOB-affinity
columns that hold only blobs. ``CREATE TABLE h.r AS SELECT`` keeps the affinity: it declares INT,
REAL, TEXT, NUM and "" (BLOB affinity). A column that can hold mixed classes (a BLOB-affinity
column with text or numbers in it) is only safe with ``strict=True``, which checks every value's
``typeof()`` first, in one more pass over the file.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pyarrow as pa

__all__ = [
    "HandoffTypeError",
    "handoff_dir",
    "new_handoff_path",
    "read_handoff",
    "read_handoff_table",
    "remove_handoff",
    "write_handoff",
]


class HandoffTypeError(ValueError):
    """A hand-off file's values cannot come out exactly in the declared Arrow schema.

    Attributes:
        column: the field's name (None when the reader's message names no field).
    """

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


# /dev/shm is used only with this much room: a container's default /dev/shm is 64 MiB, and a
# pull's hand-off holds a whole table.
_SHM_MIN_FREE = 256 * 2**20
_SQLITE_SUFFIXES = ("", "-journal", "-wal", "-shm")
_DIR_PREFIX = "dsnotebook-handoff-"  # then the owner's pid, so that dead owners' leftovers can go

_dir_lock = threading.Lock()
_dir: str | None = None
_dir_pid: int | None = None
_counter = itertools.count()


def _shm_usable() -> bool:
    base = "/dev/shm"
    if not (os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK)):
        return False
    try:
        st = os.statvfs(base)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= _SHM_MIN_FREE


def _remove_dir(path: str, pid: int) -> None:
    # A forked child inherits this hook; only the process that made the directory removes it.
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)


def _sweep_stale(base: str) -> None:
    """Remove hand-off directories of dead processes (killed before their exit hook ran)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    uid = os.getuid()
    for name in names:
        if not name.startswith(_DIR_PREFIX):
            continue
        pid_text = name[len(_DIR_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        path = os.path.join(base, name)
        try:
            if os.lstat(path).st_uid != uid or not os.path.isdir(path):
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # alive (perhaps another user's process with that pid), or gone already
            continue


def handoff_dir() -> str:
    """This process's private directory for hand-off files.

    Created on first use with mode 0700, on ``/dev/shm`` when it is a writable directory with at
    least 256 MiB free, else in the system's temporary directory, and removed at interpreter exit.
    A forked child gets a directory of its own. The name holds the process id; creating one also
    removes those that processes no longer alive left behind (killed before their exit hook).

    Returns:
        The directory's absolute path.

    Raises:
        OSError: no directory could be created.
    """
    global _dir, _dir_pid
    with _dir_lock:
        pid = os.getpid()
        if _dir is not None and _dir_pid == pid and os.path.isdir(_dir):
            return _dir
        bases = (["/dev/shm"] if _shm_usable() else []) + [tempfile.gettempdir()]
        error: OSError | None = None
        for base in bases:
            _sweep_stale(base)
            try:
                path = tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{pid}-", dir=base)
            except OSError as exc:
                error = exc
                continue
            _dir, _dir_pid = path, pid
            atexit.register(_remove_dir, path, pid)
            return path
        assert error is not None
        raise error


def new_handoff_path(stem: str = "handoff") -> str:
    """A new, empty hand-off file (mode 0600) in :func:`handoff_dir`.

    SQLite takes an empty file as an empty database, so the caller may ``ATTACH`` it (a pull) or
    pass it to :func:`write_handoff` (a push).

    Args:
        stem: a readable part of the file name.

    Returns:
        The file's path.
    """
    directory = handoff_dir()
    path = os.path.join(directory, f"{stem}-{os.getpid()}-{next(_counter)}.db")
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    return path


def remove_handoff(path: str) -> None:
    """Delete a hand-off file and any journal SQLite left beside it. Missing files are fine."""
    for suffix in _SQLITE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


def _sqlite_uri(path: str, mode: str) -> str:
    return f"file:{quote(os.path.abspath(path))}?mode={mode}"


def _refuse_temporal(schema: pa.Schema) -> None:
    for field in schema:
        kind = field.type.storage_type if isinstance(field.type, pa.BaseExtensionType) else field.type
        if pa.types.is_temporal(kind) or pa.types.is_interval(kind):
            raise ValueError(
                f"column {field.name!r} has Arrow type {field.type}: ADBC would store it as ISO text; "
                "encode times as int64 before the hand-off"
            )


def write_handoff(path: str, table_name: str, batch: pa.RecordBatch | pa.Table) -> None:
    """Write ``batch`` into a new private SQLite file as table ``table_name``.

    The file must not exist or be empty (see :func:`new_handoff_path`); a missing one is created
    with mode 0600. ADBC opens it with ``journal_mode=OFF`` and ``synchronous=OFF``, creates the
    table (declared types in the module docstring), inserts every row in one transaction,
    commits and closes. On failure the file is removed.

    Args:
        path: the hand-off file, in a private directory.
        table_name: the table to create in it (quoted by ADBC; any name without NUL).
        batch: the rows, with storage types (int64, float64, large_string, large_binary, ...).

    Raises:
        ValueError: a field is a timestamp, date, time, duration or interval.
        FileExistsError: the file exists and is not empty.
        adbc_driver_manager.Error: ADBC refused the data.
    """
    _refuse_temporal(batch.schema)
    created = False
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        if os.path.getsize(path) != 0:
            raise FileExistsError(f"hand-off file {path!r} already holds data") from None
    else:
        os.close(fd)
        created = True
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    try:
        with adbc_sqlite.connect(_sqlite_uri(path, "rw"), autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("PRAGMA journal_mode=OFF")
            cur.fetchall()
            cur.execute("PRAGMA synchronous=OFF")
            # In autocommit mode ADBC wraps all inserts in one BEGIN ... COMMIT.
            cur.adbc_ingest(table_name, batch, mode="create")
    except BaseException:
        if created:
            remove_handoff(path)
        raise


# The reader's own type for each storage type, and the sentinel that forces it.
_READ_TYPES: dict[pa.DataType, tuple[pa.DataType, str]] = {
    pa.int64(): (pa.int64(), "0"),
    pa.float64(): (pa.float64(), "0.0"),
    pa.string(): (pa.string(), "''"),
    pa.large_string(): (pa.string(), "''"),
    pa.binary(): (pa.binary(), "x''"),
    pa.large_binary(): (pa.binary(), "x''"),
}
_TYPEOF = {pa.int64(): "integer", pa.float64(): "real", pa.string(): "text", pa.binary(): "blob"}
_MARK = "__dsn_handoff_first"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_read_schema(schema: pa.Schema) -> None:
    for field in schema:
        if field.type not in _READ_TYPES:
            raise ValueError(
                f"column {field.name!r}: read_handoff gives int64, float64, string, large_string, binary "
                f"or large_binary, not {field.type}"
            )


def _strict_check(cur: Any, sql: str, schema: pa.Schema) -> None:
    cur.execute(_strict_sql(sql, schema))
    (row,) = cur.fetchall()
    for field, bad in zip(schema, row, strict=True):
        if bad:
            raise HandoffTypeError(
                f"column {field.name!r} holds {bad} value(s) that are not {_TYPEOF[_READ_TYPES[field.type][0]]} or NULL",
                field.name,
            )


def _strict_sql(sql: str, schema: pa.Schema) -> str:
    # Column names of a subquery are whatever the caller's SQL made them, so the check goes by
    # position: a CTE with a column list renames them.
    names = ", ".join(f"c{i}" for i in range(len(schema)))
    sums = ", ".join(
        f"coalesce(sum(typeof(c{i}) NOT IN ('null', '{_TYPEOF[_READ_TYPES[f.type][0]]}')), 0)" for i, f in enumerate(schema)
    )
    return f"WITH q({names}) AS ({sql}) SELECT {sums} FROM q"


def _sentinel_sql(sql: str, schema: pa.Schema) -> str:
    first = ", ".join(f"{_READ_TYPES[f.type][1]} AS {_quote_ident(f.name)}" for f in schema)
    return f"SELECT 1 AS {_MARK}, {first} UNION ALL SELECT NULL, * FROM ({sql})"


def _mismatch(exc: BaseException, schema: pa.Schema) -> HandoffTypeError | None:
    # "[SQLite] Type mismatch in column 3: expected INT64 but got DOUBLE"; column 0 is the mark.
    found = re.search(r"Type mismatch in column (\d+)", str(exc))
    if found is None:
        return None
    index = int(found.group(1)) - 1
    name = schema.field(index).name if 0 <= index < len(schema) else None
    return HandoffTypeError(f"column {name!r} holds values of another storage class: {exc}", name)


def read_handoff(
    path: str,
    sql: str,
    schema: pa.Schema,
    *,
    batch_rows: int = 65_536,
    strict: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Run ``sql`` on a private hand-off file with ADBC and yield its rows in ``schema``.

    Each batch comes out with exactly ``schema``'s names and types, whatever the first rows hold
    (see the module docstring for how). The file is opened read-only and closed when the
    iterator ends or is closed.

    Args:
        path: an existing hand-off file that no other connection of this process has open.
        sql: one SELECT over it whose columns match ``schema`` in number and order, with each
            column's values of one storage class (or NULL).
        schema: int64, float64, string, large_string, binary or large_binary fields.
        batch_rows: rows per batch. A batch's text or blob bytes in one column must stay below
            2 GiB (the reader uses 32-bit offsets).
        strict: first check every value's ``typeof()`` in one more pass; for columns whose
            affinity does not pin the storage class (a BLOB-affinity column holding text).

    Yields:
        Record batches of at most ``batch_rows`` rows (the first one row fewer; none for an
        empty result).

    Raises:
        ValueError: ``schema`` has another type, or ``sql`` gives another number of columns.
        FileNotFoundError: the file does not exist.
        HandoffTypeError: a column's values do not fit its declared type (the caller falls back).
        adbc_driver_manager.Error: the SQL is invalid.
    """
    _check_read_schema(schema)
    if batch_rows <= 0:
        raise ValueError(f"batch_rows must be positive, not {batch_rows}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"hand-off file {path!r} does not exist")
    import adbc_driver_manager
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    sql = sql.strip().rstrip(";")
    targets = [f.type for f in schema]
    raw = [_READ_TYPES[t][0] for t in targets]
    first = True
    with adbc_sqlite.connect(_sqlite_uri(path, "ro")) as conn, conn.cursor() as cur:
        if strict:
            _strict_check(cur, sql, schema)
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
        try:
            cur.execute(_sentinel_sql(sql, schema))
            reader = cur.fetch_record_batch()
        except adbc_driver_manager.Error as exc:
            if "SELECTs to the left and right of UNION ALL" in str(exc):
                raise ValueError(f"the SQL does not give {len(schema)} columns: {exc}") from exc
            if (error := _mismatch(exc, schema)) is not None:
                raise error from exc
            raise
        got = reader.schema
        for i, want in enumerate(raw):
            have = got.field(i + 1).type
            if have != want:
                name = schema.field(i).name
                raise HandoffTypeError(
                    f"column {name!r} came out as {have}, not {want}: it holds values of another storage class",
                    name,
                )
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (OSError, pa.ArrowException) as exc:
                if (error := _mismatch(exc, schema)) is not None:
                    raise error from exc
                raise
            if first:
                first = False
                mark = batch.column(0)
                if batch.num_rows == 0 or mark[0].as_py() != 1:
                    raise HandoffTypeError("the sentinel row did not come first")
                batch = batch.slice(1)
                if batch.num_rows == 0:
                    continue
            arrays = [
                col if col.type == target else col.cast(target) for col, target in zip(batch.columns[1:], targets, strict=True)
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def read_handoff_table(path: str, sql: str, schema: pa.Schema, *, batch_rows: int = 65_536, strict: bool = False) -> pa.Table:
    """All of :func:`read_handoff`'s batches as one table (an empty one for no rows).

    Raises:
        The same as :func:`read_handoff`.
    """
    batches = list(read_handoff(path, sql, schema, batch_rows=batch_rows, strict=strict))
    return pa.Table.from_batches(batches, schema=schema)
