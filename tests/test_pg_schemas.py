"""Team schemas and roles on the real PostgreSQL server: ``connect(schema=…)`` keeps a hub's
catalog and data in one schema, hubs on two schemas never see each other's datasets, and a role
that may only read a schema lists and pulls there while its pushes are refused up front.

The GRANTs of :data:`WRITER_GRANTS` and :data:`READER_GRANTS` are the ones the README gives
(section "Schemas and roles"); :func:`test_the_documented_grants_give_a_writer_and_a_reader`
runs them as they are written there.

Roles are cluster-wide: every test makes its own with a random name, and drops them (and what
they own or were granted in the test database) at the end, with the schemas it made.
"""

from __future__ import annotations

import asyncio
import decimal
import logging
import secrets
from collections.abc import Callable, Iterator

import pandas as pd
import pytest
from frametools import assert_identical
from sqlalchemy.engine import make_url

import dsnotebook as dsn
from dsnotebook.cli import main
from dsnotebook.errors import ConfigError, ValidationError
from dsnotebook.store.backends import backend_for
from dsnotebook.store.backends import postgresql as pg_backend
from dsnotebook.store.backends._arrow_io import pg_uri

#: The catalog's tables, which every schema a hub uses gets.
CATALOG = {"dsn_meta", "dsn_datasets", "dsn_versions", "dsn_tasks"}

#: A team role with read-write access to its schema, as the README gives it (the schema
#: exists, created by an administrator; {schema} and {writer} are quoted identifiers).
WRITER_GRANTS = (
    "GRANT USAGE, CREATE ON SCHEMA {schema} TO {writer}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {writer}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {writer}",
)
#: A read-only role, as the README gives it: what exists now, and what the writer creates later.
READER_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {reader}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {writer} IN SCHEMA {schema} GRANT SELECT ON TABLES TO {reader}",
)

pytestmark = pytest.mark.postgresql_only


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def admin(url: str, *statements: str, args: tuple = ()) -> list:
    """Run statements as the test server's administrator on the database of ``url``, each on
    its own; returns the rows of the last one (``args`` are its parameters)."""
    import asyncpg

    server = make_url(url).set(drivername="postgresql").difference_update_query(["schema"])

    async def run() -> list:
        conn = await asyncpg.connect(server.render_as_string(hide_password=False), timeout=10)
        try:
            for statement in statements[:-1]:
                await conn.execute(statement)
            return [tuple(r) for r in await conn.fetch(statements[-1], *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def as_role(url: str, role: str, **query: str) -> str:
    """``url`` with ``role`` as its user (trust authentication: no password), and ``query``."""
    return make_url(url).set(username=role).update_query_dict(query).render_as_string(hide_password=False)


@pytest.fixture
def names(db_url) -> Iterator[Callable[..., str]]:
    """``names("schema")`` gives a fresh schema name, ``names("ro")`` a fresh role name (any kind
    but "schema" is a role), ``names("schema", "Odd name")`` takes that schema name as it is.
    Everything named is dropped at the end: the schemas, and the roles with whatever they own
    or were granted here."""
    schemas: list[str] = []
    roles: list[str] = []

    def new(kind: str, name: str | None = None) -> str:
        name = name if name is not None else f"dsn_{kind}_{secrets.token_hex(4)}"
        (schemas if kind == "schema" else roles).append(name)
        return name

    yield new
    # Role names are made here: letters, digits and underscores only.
    statements = []
    if roles:
        statements.append(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN ({', '.join(repr(r) for r in roles)})")
    statements += [f"DROP SCHEMA IF EXISTS {q(name)} CASCADE" for name in schemas]
    statements += [
        f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
        f"DROP OWNED BY {role} CASCADE; DROP ROLE {role}; END IF; END $$"
        for role in roles
    ]
    admin(db_url, *statements, "SELECT 1")


def tables_by_schema(url: str) -> dict[str, set[str]]:
    """The tables and views of the database, by schema (the system's own left out)."""
    rows = admin(
        url,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    found: dict[str, set[str]] = {}
    for schema, table in rows:
        found.setdefault(schema, set()).add(table)
    return found


def tasks_in(url: str, schema: str) -> int:
    return admin(url, f"SELECT count(*) FROM {q(schema)}.dsn_tasks")[0][0]


PLAIN = pd.DataFrame({"units": [1, 2, 3], "price": [1.5, 2.25, 3.0], "region": ["north", "south", "east"]})
DECIMALS = pd.DataFrame({"amount": [decimal.Decimal("1.50"), decimal.Decimal("100.00")], "label": ["a", "b"]})


@pytest.fixture
def paths(monkeypatch) -> dict[str, int]:
    """How many chunks went through each of PostgreSQL's write paths: ADBC's COPY, asyncpg's COPY."""
    counts = {"adbc": 0, "asyncpg": 0}
    ingest, copy = pg_backend._ArrowWriter._ingest, pg_backend._CopyWriter.write

    def counted_ingest(self, start, stop):
        counts["adbc"] += 1
        return ingest(self, start, stop)

    async def counted_copy(self, session, start, stop):
        counts["asyncpg"] += 1
        return await copy(self, session, start, stop)

    monkeypatch.setattr(pg_backend._ArrowWriter, "_ingest", counted_ingest)
    monkeypatch.setattr(pg_backend._CopyWriter, "write", counted_copy)
    return counts


# -- two schemas of one database ---------------------------------------------------------------


def test_two_schemas_of_one_database_never_see_each_others_datasets(backend, db_url, names, paths):
    plain = names("schema")
    # A name that needs quoting everywhere: in SQL, in asyncpg's search path, in libpq's options.
    odd = names("schema", f'Team "{secrets.token_hex(2)}", x\\y')
    with dsn.connect(db_url, schema=odd) as a, dsn.connect(as_role(db_url, "postgres", schema=plain)) as b:
        assert a.writable and b.writable
        assert f"schema={plain}" in repr(b)
        # Each pushes "sales": a through ADBC's COPY (ints, floats, text), b through asyncpg's
        # (decimals keep their scale only there).
        a.push(PLAIN, "sales").wait(timeout=60)
        assert paths == {"adbc": 1, "asyncpg": 0}
        b.push(DECIMALS, "sales").wait(timeout=60)
        assert paths == {"adbc": 1, "asyncpg": 1}
        a.push(PLAIN.head(1), "only_in_a").wait(timeout=60)

        assert a.datasets()["name"].tolist() == ["only_in_a", "sales"]
        assert b.datasets()["name"].tolist() == ["sales"]
        assert_identical(a.pull("sales"), PLAIN)
        assert_identical(b.pull("sales"), DECIMALS)
        with pytest.raises(dsn.DatasetNotFound):
            b.pull("only_in_a")
        assert len(a.versions("sales")) == len(b.versions("sales")) == 1
        assert a.tasks()["dataset"].tolist().count("sales") == 1

        # An append in a schema copies the previous rows there.
        assert a.push(PLAIN.head(2), "sales", if_exists="append").wait(timeout=60).version == 2
        assert_identical(a.pull("sales"), pd.concat([PLAIN, PLAIN.head(2)], ignore_index=True))
        assert_identical(a.pull("sales", version=1), PLAIN)
        assert_identical(b.pull("sales"), DECIMALS)
        assert_identical(pd.concat(a.iter_batches("sales", batch_rows=2), ignore_index=True), a.pull("sales"))
        assert a.status().tables_bytes > 0
        assert a.wait_housekeeping(timeout=30) and b.wait_housekeeping(timeout=30)
        assert a.cleanup() == 0

    tables = tables_by_schema(db_url)
    assert not {t for t in tables.get("public", set()) if t.startswith("dsn_")}, tables.get("public")
    assert tables[odd] == CATALOG | {"dsn_data_1_v1", "dsn_data_1_v2", "dsn_data_2_v1", "dsn_latest_sales_1", "dsn_latest_only_in_a_2"}
    assert tables[plain] == CATALOG | {"dsn_data_1_v1", "dsn_latest_sales_1"}
    # The view shows the latest version, in the schema that holds it.
    assert admin(db_url, f"SELECT count(*) FROM {q(odd)}.dsn_latest_sales_1")[0][0] == 5
    assert admin(db_url, f"SELECT amount::text FROM {q(plain)}.dsn_latest_sales_1 ORDER BY 1") == [("1.50",), ("100.00",)]


def test_a_hub_opened_on_the_url_of_another_finds_the_same_schema(backend, db_url, names):
    schema = names("schema")
    with dsn.connect(db_url, schema=schema) as first:
        first.push(PLAIN, "sales").wait(timeout=60)
        url = first.url
    with dsn.connect(url) as again, dsn.connect(db_url, schema=schema, create=False) as same:
        assert_identical(again.pull("sales"), PLAIN)
        assert same.datasets()["name"].tolist() == ["sales"]
    with dsn.connect(db_url) as default:
        assert default.datasets().empty


# -- creating the schema -----------------------------------------------------------------------


def test_connecting_creates_the_schema_where_allowed(backend, db_url, names):
    schema = names("schema")
    with pytest.raises(ConfigError, match=rf"schema '{schema}' does not exist in database .*create=False.*CREATE SCHEMA"):
        dsn.connect(db_url, schema=schema, create=False)
    assert schema not in tables_by_schema(db_url)
    assert admin(db_url, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", args=(schema,)) == [(0,)]

    # A role without CREATE on the database cannot create it, and is told what to ask for.
    role = names("role")
    admin(db_url, f"CREATE ROLE {q(role)} LOGIN", "SELECT 1")
    with pytest.raises(ConfigError) as caught:
        dsn.connect(as_role(db_url, role), schema=schema)
    message = str(caught.value)
    assert f"schema '{schema}' does not exist" in message
    assert f"role '{role}' may not create it (it lacks CREATE on the database)" in message
    assert f"CREATE SCHEMA {q(schema)} AUTHORIZATION {q(role)}" in message
    assert "GRANT CREATE ON DATABASE" in message
    assert admin(db_url, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", args=(schema,)) == [(0,)]

    # Given CREATE on the database, the role creates it, owns it, and pushes there.
    database = make_url(db_url).database
    admin(db_url, f"GRANT CREATE ON DATABASE {q(database)} TO {q(role)}", "SELECT 1")
    with dsn.connect(as_role(db_url, role), schema=schema) as hub:
        assert hub.writable
        hub.push(PLAIN, "sales").wait(timeout=60)
        assert_identical(hub.pull("sales"), PLAIN)
    assert admin(db_url, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1", args=(schema,)) == [(role,)]
    assert tables_by_schema(db_url)[schema] >= CATALOG | {"dsn_data_1_v1"}


def test_hubs_opening_at_once_create_the_schema_once(backend, db_url, names):
    schema = names("schema")

    async def open_many() -> None:
        hubs = [dsn.AsyncHub(db_url, schema=schema) for _ in range(4)]
        try:
            await asyncio.gather(*(h.open() for h in hubs))
        finally:
            for h in hubs:
                await h.aclose()

    asyncio.run(open_many())
    assert tables_by_schema(db_url)[schema] == CATALOG


def test_a_role_without_a_schema_it_may_use_is_told_to_name_one(backend, db_url, names):
    # The test database's public schema grants nothing to other roles.
    role = names("role")
    admin(db_url, f"CREATE ROLE {q(role)} LOGIN", "SELECT 1")
    with pytest.raises(ConfigError, match=rf"role '{role}' has no schema to use in database .*schema="):
        dsn.connect(as_role(db_url, role))


# -- roles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("readers_granted", ["before-the-first-push", "after-the-first-push"])
def test_the_documented_grants_give_a_writer_and_a_reader(backend, db_url, names, tmp_path, capsys, caplog, readers_granted):
    schema, writer, reader = names("schema"), names("rw"), names("ro")
    ids = {"schema": q(schema), "writer": q(writer), "reader": q(reader)}
    admin(db_url, f"CREATE ROLE {q(writer)} LOGIN", f"CREATE ROLE {q(reader)} LOGIN", f"CREATE SCHEMA {q(schema)}", "SELECT 1")
    admin(db_url, *(grant.format(**ids) for grant in WRITER_GRANTS), "SELECT 1")
    if readers_granted == "before-the-first-push":
        admin(db_url, *(grant.format(**ids) for grant in READER_GRANTS), "SELECT 1")
    caplog.set_level(logging.INFO, logger="dsnotebook")
    with dsn.connect(as_role(db_url, writer), schema=schema) as team:
        assert team.writable
        team.push(PLAIN, "sales", description="Q3").wait(timeout=60)
        tasks_before = tasks_in(db_url, schema)
        if readers_granted == "after-the-first-push":
            admin(db_url, *(grant.format(**ids) for grant in READER_GRANTS), "SELECT 1")

        with dsn.connect(as_role(db_url, reader), schema=schema) as ro:
            assert not ro.writable
            # ls, pull, versions, show
            assert ro.datasets()["name"].tolist() == ["sales"]
            assert_identical(ro.pull("sales"), PLAIN)
            assert ro.versions("sales")["version"].tolist() == [1]
            assert ro.info("sales").description == "Q3"
            assert len(ro.tasks()) == tasks_before

            # Refused before anything is queued, naming the role, the schema and what to ask for.
            with pytest.raises(ConfigError) as caught:
                ro.push(PLAIN, "other")
            message = str(caught.value)
            assert message.startswith(f"role '{reader}' may not write to schema '{schema}' of database ")
            assert "(it lacks CREATE on the schema, INSERT and UPDATE on dsn_tasks, INSERT and UPDATE on dsn_datasets" in message
            assert f"GRANT USAGE, CREATE ON SCHEMA {q(schema)} TO {q(reader)}" in message
            assert "Traceback" not in message
            for refused in (
                lambda: ro.push(PLAIN, "sales", if_exists="append"),
                lambda: ro.check(PLAIN, "other"),
                lambda: ro.delete("sales"),
                lambda: ro.prune("sales", keep=1),
                ro.cleanup,
            ):
                with pytest.raises(ConfigError, match=rf"^role '{reader}' may not write to schema '{schema}'"):
                    refused()
            assert ro.running() == [] and ro.uploads() == []
            assert tasks_in(db_url, schema) == tasks_before
            assert len(team.tasks()) == tasks_before

            # A version pushed after the GRANTs is readable too: default privileges at work.
            team.push(PLAIN.head(2), "sales").wait(timeout=60)
            assert_identical(ro.pull("sales"), PLAIN.head(2))
            assert_identical(ro.pull("sales", version=1), PLAIN)
            assert ro.versions("sales")["version"].tolist() == [1, 2]
            assert ro.wait_housekeeping(timeout=30)

    # A person's own login, made a member of the reader role, reads as the reader does.
    member = names("member")
    admin(db_url, f"CREATE ROLE {q(member)} LOGIN", f"GRANT {q(reader)} TO {q(member)}", "SELECT 1")
    with dsn.connect(as_role(db_url, member), schema=schema) as person:
        assert not person.writable
        assert_identical(person.pull("sales"), PLAIN.head(2))
        with pytest.raises(ConfigError, match=rf"^role '{member}' may not write to schema '{schema}'"):
            person.push(PLAIN, "other")

    # The command line, as the reader.
    url = as_role(db_url, reader, schema=schema)
    assert main(["ls", "--url", url]) == 0
    assert "sales" in capsys.readouterr().out
    assert main(["show", "sales", "--url", url]) == 0
    assert "region" in capsys.readouterr().out
    assert main(["versions", "sales", "--url", url]) == 0
    capsys.readouterr()
    assert main(["pull", "sales", "-o", str(tmp_path / "sales.csv"), "--url", url]) == 0
    assert len(pd.read_csv(tmp_path / "sales.csv")) == 2
    PLAIN.to_csv(tmp_path / "new.csv", index=False)
    assert main(["push", str(tmp_path / "new.csv"), "--url", url]) == 2
    assert f"role '{reader}' may not write to schema '{schema}'" in capsys.readouterr().err
    assert tasks_in(db_url, schema) == tasks_before + 1

    # The reader's housekeeping wrote nothing and complained about nothing.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert tables_by_schema(db_url).get("public", set()) == set()


def test_a_reader_without_default_privileges_is_told_what_it_lacks(backend, db_url, names):
    schema, reader = names("schema"), names("ro")
    with dsn.connect(db_url, schema=schema) as team:
        team.push(PLAIN, "sales").wait(timeout=60)
        # SELECT on the tables there now only, without ALTER DEFAULT PRIVILEGES.
        admin(
            db_url,
            f"CREATE ROLE {q(reader)} LOGIN",
            f"GRANT USAGE ON SCHEMA {q(schema)} TO {q(reader)}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {q(schema)} TO {q(reader)}",
            "SELECT 1",
        )
        team.push(PLAIN.head(1), "sales").wait(timeout=60)
        with dsn.connect(as_role(db_url, reader), schema=schema) as ro:
            assert_identical(ro.pull("sales", version=1), PLAIN)
            with pytest.raises(ConfigError, match=r"^permission denied for .*: the database role lacks SELECT on table dsn_data_1_v2; .*ALTER DEFAULT PRIVILEGES"):
                ro.pull("sales")


def test_a_role_without_usage_on_the_schema_is_refused_at_connect(backend, db_url, names):
    schema, role = names("schema"), names("role")
    with dsn.connect(db_url, schema=schema) as team:
        team.push(PLAIN, "sales").wait(timeout=60)
    admin(db_url, f"CREATE ROLE {q(role)} LOGIN", "SELECT 1")
    with pytest.raises(ConfigError) as caught:
        dsn.connect(as_role(db_url, role), schema=schema)
    message = str(caught.value)
    assert message.startswith(f"role '{role}' may not use schema '{schema}' of database ")
    assert f"GRANT USAGE ON SCHEMA {q(schema)} TO {q(role)}" in message

    # With USAGE but nothing to read and no right to create the catalog: told so at connect.
    empty = names("schema")
    admin(db_url, f"CREATE SCHEMA {q(empty)}", f"GRANT USAGE ON SCHEMA {q(empty)} TO {q(role)}", "SELECT 1")
    with pytest.raises(ConfigError, match=rf"holds no dsnotebook catalog, and role '{role}' may not write to schema '{empty}'"):
        dsn.connect(as_role(db_url, role), schema=empty)
    assert empty not in tables_by_schema(db_url)


def test_a_writer_granted_on_a_catalog_it_did_not_create_needs_the_sequences_and_owns_only_its_own(backend, db_url, names):
    schema, writer = names("schema"), names("rw")
    with dsn.connect(db_url, schema=schema) as admin_hub:
        admin_hub.push(PLAIN, "sales").wait(timeout=60)
    ids = {"schema": q(schema), "writer": q(writer)}
    admin(db_url, f"CREATE ROLE {q(writer)} LOGIN", *(g.format(**ids) for g in WRITER_GRANTS[:2]), "SELECT 1")
    with dsn.connect(as_role(db_url, writer), schema=schema) as hub, pytest.raises(ConfigError) as caught:
        hub.push(PLAIN, "more")
    assert "(it lacks USAGE on dsn_datasets_id_seq, USAGE on dsn_versions_id_seq)" in str(caught.value)
    assert f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {q(schema)} TO {q(writer)}" in str(caught.value)
    admin(db_url, WRITER_GRANTS[2].format(**ids), "SELECT 1")
    with dsn.connect(as_role(db_url, writer), schema=schema) as hub:
        assert hub.writable
        hub.push(PLAIN.head(1), "more").wait(timeout=60)
        assert hub.datasets()["name"].tolist() == ["more", "sales"]
        # What another role created stays its own: PostgreSQL lets only the owner replace the
        # view of "sales" or drop its tables, and says so.
        with pytest.raises(dsn.UploadError, match=r"the database role does not own view dsn_latest_sales_1: .*push and delete as that role"):
            hub.push(PLAIN.head(2), "sales").wait(timeout=60)
        with pytest.raises(ConfigError, match=r"^permission denied for the database at .*: the database role does not own "):
            hub.delete("sales")
        assert_identical(hub.pull("sales"), PLAIN)
    assert not {t for t in tables_by_schema(db_url)[schema] if t.startswith("dsn_stage_")}


# -- the schema's name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "match"),
    [
        ("", r"^schema: '' is empty"),
        ("   ", r"^schema: '   ' is empty"),
        ("x" * 64, r"^schema: 'x{64}' is 64 bytes long, and PostgreSQL cuts names to 63 bytes"),
        ("é" * 32, r"is 64 bytes long"),
        ("pg_team", r"starts with 'pg_'"),
        ("a\x00b", r"NUL"),
        (3, r"^schema: expected a str"),
    ],
    ids=["empty", "blank", "long", "long-in-bytes", "reserved", "nul", "not-text"],
)
def test_a_schema_name_postgresql_would_not_keep_is_refused(schema, match):
    with pytest.raises(ValidationError, match=match):
        dsn.AsyncHub("postgresql+asyncpg://u@db.example/data", schema=schema)


def test_a_schema_of_63_bytes_is_kept():
    name = "s" * 63
    assert backend_for("postgresql+asyncpg://u@db.example/data", schema=name).schema == name


def test_the_schema_given_twice_must_agree():
    url = "postgresql+asyncpg://u:secret@db.example/data?schema=bi"
    assert dsn.AsyncHub(url, schema="bi").backend.schema == "bi"
    with pytest.raises(ConfigError, match=r"^schema: 'sales' differs from the URL's \?schema=bi"):
        dsn.AsyncHub(url, schema="sales")
    with pytest.raises(ConfigError, match=r"gives \?schema= 2 times"):
        dsn.AsyncHub("postgresql+asyncpg://u@db.example/data?schema=a&schema=b")


def test_the_schema_shows_in_the_url_and_never_reaches_the_drivers():
    hub = dsn.AsyncHub("postgresql+asyncpg://u:secret@db.example:5432/data?ssl=require", schema="team bi")
    shown = repr(hub)
    assert "secret" not in shown and "***" in shown and "schema=team+bi" in shown
    assert hub.url.query["schema"] == "team bi"
    uri = pg_uri(hub.url)
    assert "schema" not in uri.split("?", 1)[1].replace("search_path", "")
    conninfo = pytest.importorskip("psycopg.conninfo")
    assert conninfo.conninfo_to_dict(uri) == {
        "user": "u",
        "password": "secret",
        "host": "db.example",
        "port": "5432",
        "dbname": "data",
        "sslmode": "require",
        "options": '-csearch_path="team\\ bi"',
    }


def test_sqlite_has_no_schemas(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    with pytest.raises(ValidationError, match=r"^schema: schemas are postgresql's; .* is a sqlite database"):
        dsn.connect(url, schema="team")
    with pytest.raises(ConfigError, match=r"^url: schemas are postgresql's; .*leave \?schema= out"):
        dsn.connect(url + "?schema=team")
    assert not (tmp_path / "hub.db").exists()
