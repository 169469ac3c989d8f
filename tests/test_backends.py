"""The backend seam: ``backend_for``, the contract every backend keeps on a real database, and
the rule that nothing outside ``dsnotebook/store/backends/`` asks which database it talks to."""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import pathlib

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from dsnotebook.errors import ConfigError
from dsnotebook.store import codec
from dsnotebook.store.backends import BACKENDS, ROW_ID, Backend, Rows, backend_for
from dsnotebook.store.catalog import datasets, ensure_schema, utcnow

from testenv import BACKENDS as TESTED_BACKENDS
from frametools import STR, assert_identical

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dsnotebook"
SEAM = PACKAGE / "store" / "backends"

# What only a backend may ask: the database's or driver's name.
_NAMES = {"sqlite", "postgresql", "postgres", "asyncpg", "aiosqlite", "psycopg", "psycopg2", "pysqlite", "mysql"}
_ATTRIBUTES = {"get_backend_name", "get_driver_name", "paramstyle"}


def _dialect_branches(path: pathlib.Path, root: pathlib.Path = PACKAGE.parent) -> list[str]:
    """Places in a module that compare with a database or driver name, or read the dialect's or
    URL's name: each one is a branch on the database."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                if any(isinstance(v, ast.Constant) and v.value in _NAMES for v in values):
                    found.append(f"{where}: compares with a database or driver name")
        elif isinstance(node, ast.Attribute):
            if node.attr in _ATTRIBUTES:
                found.append(f"{where}: reads .{node.attr}")
            elif node.attr in ("name", "driver") and isinstance(node.value, ast.Attribute) and node.value.attr == "dialect":
                found.append(f"{where}: reads .dialect.{node.attr}")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value in _NAMES:
            found.append(f"{where}: looks up by a database name")
    return found


def test_no_module_outside_the_backends_branches_on_the_database():
    modules = [p for p in PACKAGE.rglob("*.py") if SEAM not in p.parents]
    assert len(modules) > 20
    branches = [b for p in modules for b in _dialect_branches(p)]
    assert branches == []


def test_the_branch_finder_finds_branches(tmp_path):
    """The rule above would pass on any code if it found nothing: it finds each form."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(conn, url, d):\n"
        "    if conn.dialect.name == 'postgresql':\n"
        "        pass\n"
        "    if url.get_backend_name() in ('sqlite', 'x'):\n"
        "        pass\n"
        "    return d['sqlite'], conn.dialect.driver\n"
    )
    found = _dialect_branches(sample, tmp_path)
    # Line 2 reads .dialect.name and compares; line 4 reads the URL's name and compares;
    # line 6 looks up by a name and reads .dialect.driver.
    assert sorted(f.split(": ", 1)[0] for f in found) == ["sample.py:2", "sample.py:2", "sample.py:4", "sample.py:4", "sample.py:6", "sample.py:6"]


# -- backend_for -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "drivername"),
    [
        pytest.param("sqlite:///x.db", "sqlite+aiosqlite", id="sqlite-no-driver"),
        pytest.param("sqlite+pysqlite:///x.db", "sqlite+aiosqlite", id="sqlite-sync-driver"),
        pytest.param("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite", id="sqlite"),
        pytest.param("postgresql://u@h/db", "postgresql+asyncpg", id="postgresql-no-driver"),
        pytest.param("postgres://u@h/db", "postgresql+asyncpg", id="postgres-alias"),
        pytest.param("postgresql+psycopg2://u@h/db", "postgresql+asyncpg", id="postgresql-sync-driver"),
        pytest.param("postgresql+asyncpg://u@h/db", "postgresql+asyncpg", id="postgresql"),
    ],
)
def test_backend_for_picks_the_module_and_the_async_driver(url, drivername):
    backend = backend_for(url)
    assert backend.url.drivername == drivername
    assert isinstance(backend, BACKENDS[drivername.split("+")[0]])


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("mysql+aiomysql://u:secret@h/db", id="mysql"),
        pytest.param("mssql+aioodbc://u:secret@h/db", id="mssql"),
        pytest.param("postgresql+psycopg://u:secret@h/db", id="psycopg"),
        pytest.param("sqlite+pysqlcipher:///x.db", id="unknown-sqlite-driver"),
    ],
)
def test_backend_for_refuses_what_no_module_supports_and_names_the_supported_forms(url):
    with pytest.raises(ConfigError) as err:
        backend_for(url)
    message = str(err.value)
    assert "does not support" in message
    for cls in BACKENDS.values():
        for form in cls.url_forms:
            assert form in message
    assert "secret" not in message


def test_every_registered_backend_is_tested():
    """A new backend module needs a database to run the contract test on."""
    assert set(BACKENDS) <= set(TESTED_BACKENDS) | {"postgresql"}  # PostgreSQL may be left out locally
    assert set(BACKENDS) == {"sqlite", "postgresql"}


# -- the contract, on a real database -----------------------------------------------------------


def _frame(n: int = 1_000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ints = pd.array(rng.integers(-5, 5, n), dtype="Int64")
    ints[::7] = pd.NA
    floats = rng.normal(size=n)
    floats[::11] = np.nan
    return pd.DataFrame(
        {
            "i": np.arange(n) * 3,
            "f": floats,
            "s": pd.array([f"w{i % 13}" if i % 5 else None for i in range(n)], dtype=STR),
            "c": pd.Categorical.from_codes(rng.integers(0, 3, n), categories=["a", "b", "c"]),
            "b": rng.random(n) < 0.5,
            "t": pd.date_range("2024-03-30", periods=n, freq="37min", tz="Europe/Paris"),
            "na": ints,
            "bytes": [bytes([i % 256]) * (i % 4) for i in range(n)],
        },
        index=pd.Index(np.arange(n) * 2, name="key"),
    )


async def _contract(backend: Backend) -> None:
    engine = await backend.open_engine()
    io = concurrent.futures.ThreadPoolExecutor(backend.io_workers(), thread_name_prefix="dsnotebook-io")
    try:
        caps = backend.capabilities
        assert caps.max_columns > 100 and caps.default_concurrency >= 1
        write = async_sessionmaker(engine.execution_options(dsn_write=True), expire_on_commit=False)
        read = async_sessionmaker(engine, expire_on_commit=False)

        # The catalog: created under the backend's lock, twice without harm.
        for _ in range(2):
            async with engine.execution_options(dsn_write=True).begin() as conn:
                await ensure_schema(conn, backend)
        # An insert that gives way to an existing key.
        now = utcnow()
        values = dict(name="x", description="", tags={}, created_at=now, updated_at=now, next_version=1, view_name="")
        for _ in range(2):
            async with write() as session, session.begin():
                await session.execute(backend.insert_if_absent(datasets, [datasets.c.name], **values))
        async with read() as session:
            assert (await session.execute(select(datasets.c.name))).scalars().all() == ["x"]

        # Staging, writing in chunks, locking, sealing: a table that reads back identical.
        df = _frame()
        encoded = codec.encode(df, native_types=caps.native_types)
        assert backend.row_bytes(encoded.columns) >= 0
        for column in encoded.columns:
            backend.column_type(column.sql_type)  # every storage type the codec uses has one
        stage = "dsn_stage_contract"
        table = backend.staging_table(stage, encoded.columns)
        assert [c.name for c in table.columns] == [ROW_ID, *(c.name for c in encoded.columns)]
        async with write() as session, session.begin():
            conn = await session.connection()
            await conn.run_sync(lambda sync: table.create(sync))
        writer = backend.open_writer(stage, encoded, io=io)
        try:
            for start in range(0, encoded.nrows, 300):
                async with write() as session, session.begin():
                    await writer.write(session, start, min(start + 300, encoded.nrows))
        finally:
            await writer.aclose()
        async with write() as session, session.begin():
            conn = await session.connection()
            await backend.lock_staging(conn, stage)
            count, last = (await conn.exec_driver_sql(f'SELECT COUNT(*), MAX("{ROW_ID}") FROM "{stage}"')).one()
            assert (count, last) == (len(df), len(df))
            await backend.seal(conn, stage, "dsn_data_contract")
            await conn.exec_driver_sql(f'ALTER TABLE "{stage}" RENAME TO "dsn_data_contract"')
        if backend.has_after_chunk:
            await backend.after_chunk(engine)
        async with read() as session:
            back = await backend.read(session, "dsn_data_contract", encoded.manifest, Rows(), io=io)
        assert_identical(back, df)
        async with read() as session:
            part = await backend.read(session, "dsn_data_contract", encoded.manifest, Rows(limit=10), io=io)
        assert_identical(part, df.iloc[:10])
        async with read() as session:
            middle = await backend.read(session, "dsn_data_contract", encoded.manifest, Rows(after=100, upto=350), io=io)
        assert_identical(middle, df.iloc[100:350])
        async with read() as session:
            none = await backend.read(session, "dsn_data_contract", encoded.manifest, Rows(after=len(df)), io=io)
        assert_identical(none, df.iloc[:0])

        # Appending's conversions: text to its UTF-8 bytes.
        async with write() as session, session.begin():
            conn = await session.connection()
            await conn.exec_driver_sql('CREATE TABLE "dsn_text" (v TEXT)')
            await conn.exec_driver_sql("INSERT INTO \"dsn_text\" VALUES ('é')")
            expression = backend.utf8_bytes("v")
            assert bytes((await conn.exec_driver_sql(f'SELECT {expression} FROM "dsn_text"')).scalar()) == "é".encode()
            await backend.to_bytes(conn, "dsn_text", "v")
            value = (await conn.exec_driver_sql('SELECT v FROM "dsn_text"')).scalar()
            assert bytes(value) == "é".encode()
            has = await conn.run_sync(lambda sync: sa_inspect(sync).has_table("dsn_data_contract"))
            assert has
    finally:
        await engine.dispose()
        io.shutdown(wait=True)


def test_each_backend_keeps_the_contract_on_a_real_database(db_url):
    asyncio.run(_contract(backend_for(db_url)))
