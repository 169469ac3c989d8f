"""PostgreSQL schemas and the rights of the connecting role: which schema a hub uses
(``connect(schema=…)`` or ``?schema=``), creating it where allowed, and whether the role may
write there, found once when the hub opens.

A role that may only read a schema (USAGE, and SELECT on its tables) can list and pull; what it
lacks for writing is kept as a message naming the rights and the GRANTs to ask for, which pushes,
deletes and cleanups raise as a ``ConfigError`` before anything is queued.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...errors import ConfigError, ValidationError
from ..catalog import datasets, tasks, versions
from ..engine import mask_url
from ._arrow_io.pg import quote_ident

__all__ = ["CATALOG_LOCK_KEY", "check_schema", "pick_schema", "schema_rights"]

# Any key: only dsnotebook takes it, around creating or migrating the catalog (or its schema).
CATALOG_LOCK_KEY = 7369737
# PostgreSQL's longest name in bytes (NAMEDATALEN - 1): it cuts longer ones without a word.
_MAX_NAME_BYTES = 63
# What a push writes in the catalog (the schema's CREATE aside, for the staging and version
# tables and the views), by table.
_WRITES = ((tasks.name, "INSERT"), (tasks.name, "UPDATE"), (datasets.name, "INSERT"), (datasets.name, "UPDATE"), (versions.name, "INSERT"))
# The rights among _WRITES that the role lacks on the catalog's tables that exist, and USAGE on
# the sequences of their serial ids (an INSERT by a role that does not own them needs it): rows
# of (kind, privilege, table or sequence).
_LACKING_SQL = (
    "SELECT 'table', w.privilege, w.relname FROM (VALUES "
    + ", ".join(f"('{table}', '{privilege}')" for table, privilege in _WRITES)
    + ") AS w(relname, privilege) "
    "JOIN pg_namespace n ON n.nspname = :schema "
    "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.relname AND c.relkind = 'r' "
    "WHERE NOT has_table_privilege(c.oid, w.privilege) "
    "UNION ALL "
    "SELECT 'sequence', 'USAGE', q.relname FROM ("
    "SELECT pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), 'id')::regclass AS seq "
    "FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid "
    f"WHERE n.nspname = :schema AND c.relname IN ('{datasets.name}', '{versions.name}') AND c.relkind = 'r'"
    ") AS s JOIN pg_class q ON q.oid = s.seq WHERE NOT has_sequence_privilege(s.seq, 'USAGE')"
)


def pick_schema(url: URL, schema: str | None) -> str | None:
    """The schema of ``connect(schema=…)`` or of the URL's ``?schema=``, checked; None if neither.

    Raises:
        ConfigError: both are given and differ, or the URL gives it more than once.
        ValidationError: not a name PostgreSQL keeps as it is.
    """
    in_url = url.query.get("schema")
    if isinstance(in_url, tuple) and len(in_url) == 1:
        in_url = in_url[0]
    if isinstance(in_url, tuple):
        raise ConfigError(f"url: {mask_url(url)!r} gives ?schema= {len(in_url)} times; give it once")
    if schema is not None and in_url is not None and schema != in_url:
        raise ConfigError(
            f"schema: {schema!r} differs from the URL's ?schema={in_url}; give the schema once, as schema= or in the URL"
        )
    name = schema if schema is not None else in_url
    if name is None:
        return None
    if not isinstance(name, str):
        raise ValidationError(f"schema: expected a str, the name of a PostgreSQL schema, got {type(name).__name__} {name!r}")
    if not name.strip():
        raise ValidationError(
            f"schema: {name!r} is empty; give a schema name such as 'analytics_bi', or leave it out for the database's default"
        )
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(f"schema: {name!r} is not valid Unicode text (it holds a lone surrogate)") from None
    if size > _MAX_NAME_BYTES:
        raise ValidationError(
            f"schema: {name!r} is {size} bytes long, and PostgreSQL cuts names to {_MAX_NAME_BYTES} bytes; give a shorter name"
        )
    if "\x00" in name:
        raise ValidationError(f"schema: {name!r} contains a NUL character, which PostgreSQL names cannot hold")
    if name.startswith("pg_"):
        raise ValidationError(f"schema: {name!r} starts with 'pg_', which PostgreSQL keeps for its own schemas")
    return name


async def schema_rights(conn: AsyncConnection, schema: str) -> tuple[bool, bool] | None:
    """Whether the role has USAGE and CREATE on ``schema``; None if it does not exist."""
    sql = "SELECT has_schema_privilege(oid, 'USAGE'), has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = :schema"
    row = (await conn.execute(text(sql), {"schema": schema})).first()
    return None if row is None else (bool(row[0]), bool(row[1]))


async def check_schema(engine: AsyncEngine, schema: str | None, *, create: bool) -> tuple[bool, str | None]:
    """Make sure ``schema`` (None: the role's current schema) exists, creating it where
    ``create`` allows and the role may, and may be used; find out whether this role may write
    there. Returns whether the schema was created here, and why the role may not write there
    (None: it may).

    Raises:
        ConfigError: the schema does not exist and cannot be created; the role lacks USAGE on
            it; or no schema is given and none on the role's search path can be used.
    """
    async with engine.connect() as conn:
        role, database, current, search_path = (
            await conn.exec_driver_sql("SELECT current_user, current_database(), current_schema(), current_setting('search_path')")
        ).one()
        schema = schema if schema is not None else current
        if schema is None:
            raise ConfigError(
                f"role {role!r} has no schema to use in database {database!r}: none on its search path "
                f"({search_path}) exists and grants it USAGE; connect with schema='…' (or ?schema= in "
                f"the URL), or ask the owner of public for: GRANT USAGE ON SCHEMA public TO {quote_ident(role)}"
            )
        rights = await schema_rights(conn, schema)
    created = False
    if rights is None:
        created = await _create_schema(engine, schema, role, database, create=create)
    qs, qr = quote_ident(schema), quote_ident(role)
    async with engine.connect() as conn:
        usage, may_create = rights or await schema_rights(conn, schema)
        if not usage:
            raise ConfigError(
                f"role {role!r} may not use schema {schema!r} of database {database!r} (it lacks USAGE on "
                f"it); ask the schema's owner for: GRANT USAGE ON SCHEMA {qs} TO {qr}; "
                f"GRANT SELECT ON ALL TABLES IN SCHEMA {qs} TO {qr}"
            )
        rows = (await conn.execute(text(_LACKING_SQL), {"schema": schema})).all()
    # The privileges each object lacks, in the order a push needs them.
    lacking: dict[str, list[str]] = {} if may_create else {"the schema": ["CREATE"]}
    for _, privilege, name in sorted(rows, key=lambda r: (r[0] == "sequence", _WRITES.index((r[2], r[1])) if r[0] == "table" else 0, r[2])):
        lacking.setdefault(name, []).append(privilege)
    kinds = {kind for kind, _, _ in rows}
    grants = [] if may_create else [f"GRANT USAGE, CREATE ON SCHEMA {qs} TO {qr}"]
    if "table" in kinds:
        grants.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {qs} TO {qr}")
    if "sequence" in kinds:
        grants.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {qs} TO {qr}")
    wanted = ", ".join(f"{' and '.join(privileges)} on {name}" for name, privileges in lacking.items())
    refusal = (
        f"role {role!r} may not write to schema {schema!r} of database {database!r} (it lacks {wanted}); "
        f"ask the schema's owner for: {'; '.join(grants)}"
        if lacking
        else None
    )
    return created, refusal

async def _create_schema(engine: AsyncEngine, schema: str, role: str, database: str, *, create: bool) -> bool:
    """Create the missing schema; False if another connection created it meanwhile.

    Raises:
        ConfigError: ``create`` is False, or the role may not create schemas.
    """
    qs, qr = quote_ident(schema), quote_ident(role)
    admin = f"CREATE SCHEMA {qs} AUTHORIZATION {qr} (which makes this role its owner)"
    if not create:
        raise ConfigError(
            f"schema {schema!r} does not exist in database {database!r}, and this connection does not "
            f"create it (create=False); a push creates it, or an administrator can: {admin}"
        )
    async with engine.begin() as conn:
        # Hubs opening at once must not race to create it.
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CATALOG_LOCK_KEY})")
        if await schema_rights(conn, schema) is not None:
            return False
        if not (await conn.exec_driver_sql("SELECT has_database_privilege(current_database(), 'CREATE')")).scalar_one():
            raise ConfigError(
                f"schema {schema!r} does not exist in database {database!r}, and role {role!r} may not "
                f"create it (it lacks CREATE on the database); ask an administrator for: {admin}, "
                f"or for: GRANT CREATE ON DATABASE {quote_ident(database)} TO {qr}"
            )
        await conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {qs}")
    return True
