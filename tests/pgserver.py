"""A private PostgreSQL server that requires a password, for the credential tests.

The shared test server trusts every connection, so a test that connects there with a password
proves nothing about where the password came from. :func:`password_server` starts a second
server from the machine's PostgreSQL binaries (``initdb``, ``pg_ctl``), in a temporary directory:
its TCP connections on 127.0.0.1 must pass SCRAM-SHA-256 authentication, so a connection
succeeds only with the role's password. Only its Unix socket, in that directory, trusts the
administrator role that sets it up.

As root, the server runs as the ``postgres`` OS user (``initdb`` and ``postgres`` refuse root).
Where no binaries are found the caller skips, or with ``DSNOTEBOOK_REQUIRE_POSTGRES=1`` (CI)
fails; see :func:`require_password_server`.
"""

from __future__ import annotations

import asyncio
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest

__all__ = ["PasswordServer", "find_pg_bin", "password_server", "require_password_server"]

_ADMIN = "dsn_admin"
_HBA = """\
# The administrator, on this server's own socket only.
local all dsn_admin trust
# Everyone else, and every TCP connection: the password, checked by SCRAM.
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


@dataclass(frozen=True)
class PasswordServer:
    """A running private server and the role the tests log in as.

    Attributes:
        port: its TCP port on 127.0.0.1.
        socket_dir: the directory of its Unix socket.
        user: a role that logs in with ``password`` only.
        password: that role's password (random per run).
        database: a database owned by ``user``.
    """

    port: int
    socket_dir: str
    user: str
    password: str = field(repr=False)
    database: str = ""
    host: str = "127.0.0.1"

    def url(self, *, password: str | None = None, query: str = "") -> str:
        """The role's ``postgresql+asyncpg://`` URL, with ``password`` in it when given."""
        auth = quote(self.user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql+asyncpg://{auth}@{self.host}:{self.port}/{self.database}{query}"

    def pgpass_line(self, password: str | None = None) -> str:
        """The ``host:port:database:user:password`` line of a password file for the role, with
        ``password`` (default: the right one); a ``:`` or ``\\`` in it is escaped."""
        secret = (self.password if password is None else password).replace("\\", "\\\\").replace(":", "\\:")
        return f"{self.host}:{self.port}:{self.database}:{self.user}:{secret}\n"

    async def admin(self, sql: str, *, database: str = "postgres") -> None:
        """Run ``sql`` (one or more statements) as the administrator on ``database``, over the socket."""
        conn = await _admin_connect(self.socket_dir, self.port, database)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def admin_rows(self, sql: str, *args: object, database: str = "postgres") -> list[tuple]:
        """The rows of the query ``sql`` with ``args``, run as the administrator on ``database``."""
        conn = await _admin_connect(self.socket_dir, self.port, database)
        try:
            return [tuple(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()


async def _admin_connect(socket_dir: str, port: int, database: str = "postgres"):
    import asyncpg

    # The socket trusts the administrator. An explicit empty password keeps asyncpg away from
    # whatever PGPASSWORD or password file a test has set up.
    return await asyncpg.connect(host=socket_dir, port=port, user=_ADMIN, password="", database=database, timeout=10)


def find_pg_bin() -> str | None:
    """The directory of the newest ``initdb`` and ``pg_ctl`` found, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in p.split("/")[-2].split(".") if x.isdigit()])
    for directory in reversed(candidates):
        if os.access(os.path.join(directory, "initdb"), os.X_OK) and os.access(os.path.join(directory, "pg_ctl"), os.X_OK):
            return directory
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return os.path.dirname(initdb)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], *, env: dict[str, str]) -> None:
    done = subprocess.run(_as_server_user(argv), env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout}{done.stderr}")


@contextmanager
def password_server(password: str | None = None) -> Iterator[PasswordServer]:
    """Start a private server whose TCP connections need a password, and stop and remove it after.

    Args:
        password: the role's password; None for a random one.

    Raises:
        FileNotFoundError: no PostgreSQL server binaries were found.
        RuntimeError: the server did not start.
    """
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH")
    root = tempfile.mkdtemp(prefix="dsn-pgserver-")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = os.path.join(root, "data")
    # Nothing of the caller's libpq settings may reach the server's tools.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    started = False
    try:
        _run([f"{bin_dir}/initdb", "-D", data, "-U", _ADMIN, "--auth=trust", "-E", "UTF8", "--no-sync"], env=env)
        with open(os.path.join(data, "pg_hba.conf"), "w") as f:
            f.write(_HBA)
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(
                f"\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
                "password_encryption = 'scram-sha-256'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = 16MB\nmax_connections = 40\n"
            )
        log = os.path.join(root, "server.log")
        for attempt in range(3):
            # Another process may take the free port before the server binds it: then another one.
            port = _free_port()
            with open(os.path.join(data, "postgresql.conf"), "a") as f:
                f.write(f"port = {port}\n")
            try:
                _run([f"{bin_dir}/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start"], env=env)
            except RuntimeError as exc:
                if attempt == 2:
                    with open(log) as f:
                        raise RuntimeError(f"{exc}\nserver log:\n{f.read()}") from None
            else:
                break
        started = True
        if password is None:
            password = "pw-" + secrets.token_hex(12)
        server = PasswordServer(port=port, socket_dir=root, user="dsn_pw_user", password=password, database="dsn_pw_db")

        async def setup() -> None:
            conn = await _admin_connect(root, port)
            try:
                # A literal: CREATE ROLE takes no parameters.
                literal = "'" + password.replace("'", "''") + "'"
                await conn.execute(f"CREATE ROLE {server.user} WITH LOGIN PASSWORD {literal}")
                await conn.execute(f"CREATE DATABASE {server.database} OWNER {server.user}")
            finally:
                await conn.close()

        asyncio.run(setup())
        yield server
    finally:
        if started:
            subprocess.run(
                _as_server_user([f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def require_password_server(password: str | None = None) -> Iterator[PasswordServer]:
    """:func:`password_server` for a fixture: skips where no server binaries are found, or fails
    when ``DSNOTEBOOK_REQUIRE_POSTGRES=1``, as the shared server's fixture does."""
    try:
        context = password_server(password)
        server = context.__enter__()
    except (OSError, RuntimeError, LookupError, ImportError, subprocess.SubprocessError) as exc:
        reason = f"no private PostgreSQL server could be started: {type(exc).__name__}: {exc}"
        if os.environ.get("DSNOTEBOOK_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"DSNOTEBOOK_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        yield server
    finally:
        context.__exit__(None, None, None)
