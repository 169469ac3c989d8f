"""No password in sight: after a failed connect and a failed upload, the password is nowhere that
dsnotebook shows or keeps something.

The role of a private server (``tests/pgserver.py``, which wants a password on every TCP
connection) gets a recognisable password, ``s3cr3t-<random hex>`` with characters that URLs must
percent-encode. The tests then fail on purpose, with that password in the URL:

- connects: with a wrong password (the right one plus a letter, so it holds the same random
  part) and with the password to a port where nothing listens;
- uploads the database refuses mid-way: an event trigger on the server makes every new table
  with a column ``refused`` refuse its rows, so the staging table's COPY fails, through ADBC
  (libpq, whose connection URI holds the password) and through asyncpg's COPY (NUMERIC columns);
  and an upload whose bulk connection is turned away, because the role's password changed after
  the hub opened;
- and connects with the password in every form a URL may hold it: after the user name, as
  ``?password=``, typed unencoded with an ``@`` or a ``/`` in it, and in malformed URLs.

And they search for the random part of the password, which any leak shows whether raw,
percent-encoded or cut at an ``@``, in: the reprs and strings of the hub, the AsyncHub, the
backend and the URL; the task handles, their errors and the formatted tracebacks of every error
with its ``__cause__`` and ``__context__`` chain; every log record of every logger at DEBUG with
its traceback; what reached stdout and stderr (at the file descriptors, so libpq's own lines are
seen too); the task rows, as ``hub.tasks()`` gives them and as the catalog tables hold them;
``hub.status()``; the CLI's output; the state of every widget of the panel and of the tasks'
progress rows; and every output of a notebook run in a real Jupyter kernel. Each search also
checks that what it searched holds the failure it is about, so that an empty search cannot pass.

Still shown: the reprs of the backend and of SQLAlchemy's URL object (``hub.url``) show a
``?password=`` and the part of a password after an unencoded ``@``;
``test_no_password_in_the_reprs_of_the_url_and_the_backend`` fails on them as expected, strictly,
so that the fix is noticed.
"""

from __future__ import annotations

import asyncio
import decimal
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from hubtools import execute, wait_until
from pgserver import PasswordServer, require_password_server

import dsnotebook as dsn
from dsnotebook.cli import main as cli_main
from dsnotebook.errors import ConfigError, UploadError

#: The random part of the password: every leak shows it, whatever the encoding.
MARK = secrets.token_hex(8)
SECRET = f"s3cr3t-{MARK}/@:%"
WRONG = SECRET + "x"

# Every new table with this column refuses its rows: the staging table of an upload of a frame
# with a column of that name is created, and its COPY then fails at the database.
REFUSE_ROWS = """
CREATE FUNCTION refuse_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the test database refuses these rows'; END $$;
CREATE FUNCTION refuse_rows_of_new_tables() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE created record;
BEGIN
  FOR created IN SELECT objid, object_identity FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = created.objid AND attname = 'refused') THEN
      EXECUTE format('CREATE TRIGGER refuse_rows BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION refuse_rows()',
                     created.object_identity);
    END IF;
  END LOOP;
END $$;
CREATE EVENT TRIGGER refuse_rows ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION refuse_rows_of_new_tables();
"""
REFUSED = "the test database refuses these rows"


@pytest.fixture(scope="module")
def server() -> Iterator[PasswordServer]:
    with require_password_server(SECRET) as s:
        asyncio.run(s.admin(REFUSE_ROWS, database=s.database))
        yield s


@pytest.fixture(autouse=True)
def no_password_from_elsewhere(monkeypatch):
    for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every error in its ``__cause__`` / ``__context__`` chain."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, *getattr(current, "exceptions", ())]


class Sightings:
    """Everything a test saw, by where it saw it."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: object) -> None:
        self.texts.append((where, text if isinstance(text, str) else repr(text)))

    def add_error(self, where: str, exc: BaseException) -> None:
        self.add(f"{where}: formatted with its chain", "".join(traceback.format_exception(exc)))
        for i, linked in enumerate(chain(exc)):
            self.add(f"{where}: error {i} of the chain, str and repr", f"{linked}\n{linked!r}\n{linked.args!r}")

    def add_logs(self, caplog) -> None:
        formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
        for record in caplog.records:
            self.add(f"log record of {record.name} ({record.levelname})", formatter.format(record))

    def add_output(self, where: str, capfd) -> None:
        out, err = capfd.readouterr()
        self.add(f"{where}: stdout", out)
        self.add(f"{where}: stderr", err)

    def holding(self, fragment: str) -> list[str]:
        return [where for where, text in self.texts if fragment in text]

    def assert_no_password(self) -> None:
        leaks = []
        for where, text in self.texts:
            at = text.find(MARK)
            if at >= 0:
                excerpt = text[max(0, at - 80) : at + 60].replace(MARK, "<PASSWORD>")
                leaks.append(f"{where}: ...{excerpt}...")
        assert not leaks, "the password appeared in:\n" + "\n".join(leaks)


@pytest.fixture
def seen(caplog) -> Sightings:
    caplog.set_level(logging.DEBUG)
    return Sightings()


def test_no_password_in_what_a_failed_connect_shows(server, seen, caplog, capfd):
    nowhere = f"postgresql+asyncpg://{server.user}:{quote(SECRET, safe='')}@127.0.0.1:{closed_port()}/{server.database}"
    for label, url, expected in [
        ("a wrong password", server.url(password=WRONG), "password authentication failed"),
        ("a server that is not there", nowhere, "onnect"),
    ]:
        with pytest.raises(ConfigError) as err:
            dsn.connect(url)
        assert expected in str(err.value)
        seen.add_error(f"dsn.connect with {label}", err.value)

        ahub = dsn.AsyncHub(url)
        seen.add(f"repr of an AsyncHub with {label}, not opened", repr(ahub))
        seen.add(f"the AsyncHub's backend with {label}", f"{ahub.backend!r} {ahub.backend}")
        seen.add(f"the AsyncHub's URL with {label}", f"{ahub.url!r} {ahub.url}")
        with pytest.raises(ConfigError) as err:
            asyncio.run(ahub.open())
        seen.add_error(f"AsyncHub.open with {label}", err.value)
        seen.add(f"repr of an AsyncHub with {label}, after the failed open", repr(ahub))

    seen.add_logs(caplog)
    seen.add_output("the test's own output", capfd)
    assert len(seen.holding("password authentication failed")) >= 2
    assert len(seen.holding(":***@127.0.0.1")) >= 4
    seen.assert_no_password()


# The forms a password takes in a URL, right or wrong; none may show anywhere.
URL_FORMS = [
    pytest.param("postgresql+asyncpg://me:{encoded}@127.0.0.1:{port}/db", id="after-the-user-name"),
    pytest.param("postgresql+asyncpg://me@127.0.0.1:{port}/db?ssl=disable&password={encoded}", id="query-parameter"),
    pytest.param("postgresql+asyncpg://me:pre@{mark}@127.0.0.1:{port}/db", id="unencoded-at-sign"),
    pytest.param("postgresql+asyncpg://me:pre/{mark}@127.0.0.1:{port}/db", id="unencoded-slash"),
    pytest.param("postgresql+asyncpg:/me:{mark}@127.0.0.1:{port}/db", id="malformed-one-slash"),
    pytest.param("me:{mark}@127.0.0.1:{port}/db", id="malformed-no-scheme"),
]


@pytest.mark.parametrize("form", URL_FORMS)
def test_no_password_in_what_a_url_of_any_form_shows(form, seen, caplog, capfd):
    url = form.format(encoded=quote(SECRET, safe=""), mark=MARK, port=closed_port())
    # On a loop of its own (asyncio.run), whose resolver thread ends with it: some of these
    # URLs name a host that must be looked up.
    try:
        ahub = dsn.AsyncHub(url)
    except ConfigError as exc:
        seen.add_error("dsn.AsyncHub", exc)
    else:
        seen.add("repr of the AsyncHub", repr(ahub))
        with pytest.raises(ConfigError) as err:
            asyncio.run(ahub.open())
        seen.add_error("AsyncHub.open", err.value)
        seen.add("repr of the AsyncHub after the failed open", repr(ahub))
    seen.add_logs(caplog)
    seen.add_output("the test's own output", capfd)
    assert seen.holding("***")
    seen.assert_no_password()


def test_no_password_in_what_the_cli_shows_for_a_url_of_any_form(seen):
    urls = [form.values[0].format(encoded=quote(SECRET, safe=""), mark=MARK, port=closed_port()) for form in URL_FORMS]
    # One process for all of them (the import is what takes time); a process of its own, since
    # the CLI's hub looks host names up in a thread that lives as long as the process.
    script = (
        "import sys\n"
        "from dsnotebook.cli import main\n"
        "for url in sys.argv[1:]:\n"
        "    print('-----', flush=True)\n"
        "    print('-----', file=sys.stderr, flush=True)\n"
        "    print(main(['--url', url, 'ls']), flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *urls], capture_output=True, text=True, timeout=120, check=False)
    outs, errs = done.stdout.split("-----\n")[1:], done.stderr.split("-----\n")[1:]
    assert len(outs) == len(errs) == len(urls), (done.stdout, done.stderr)
    for form, out, err in zip(URL_FORMS, outs, errs, strict=True):
        assert out == "2\n", out
        warning, error = err.splitlines()
        assert warning.startswith("dsnotebook: warning: the password in --url") and error.startswith("dsnotebook: error: ")
        seen.add(f"dsnotebook --url <{form.id}> ls: stdout and stderr", out + err)
    seen.assert_no_password()


@pytest.mark.parametrize("form", [p for p in URL_FORMS if p.id in ("query-parameter", "unencoded-at-sign")])
@pytest.mark.parametrize(
    "shown",
    [
        pytest.param(
            lambda ahub: repr(ahub.backend),
            id="backend-repr",
        ),
        pytest.param(
            lambda ahub: f"{ahub.url!r} {ahub.url}",
            id="url-object",
        ),
    ],
)
def test_no_password_in_the_reprs_of_the_url_and_the_backend(form, shown):
    url = form.format(encoded=quote(SECRET, safe=""), mark=MARK, port=closed_port())
    assert MARK not in shown(dsn.AsyncHub(url))


def frames() -> dict[str, pd.DataFrame]:
    return {
        # int64, float64 and text: the bulk path (ADBC over libpq).
        "bulk": pd.DataFrame({"refused": [1, 2, 3], "x": [0.5, 1.5, 2.5], "s": ["a", "b", "c"]}),
        # NUMERIC: asyncpg's COPY.
        "numeric": pd.DataFrame({"refused": [decimal.Decimal("1.50"), decimal.Decimal(2)]}),
    }


def test_no_password_in_what_a_failed_upload_leaves(server, seen, caplog, capfd):
    from dsnotebook.widgets import TaskProgress

    url = server.url(password=SECRET)
    tasks = []
    with dsn.connect(url) as hub:
        seen.add("repr and str of the hub", f"{hub!r} {hub}")
        seen.add("repr of the AsyncHub", repr(hub._async))
        seen.add("repr of the backend", repr(hub._async.backend))
        seen.add("the hub's URL", f"{hub.url!r} {hub.url}")
        seen.add("the repr of the hub's engine", repr(hub._async.engine))

        for path, df in frames().items():
            task = hub.push(df, f"refused {path}")
            with pytest.raises(UploadError) as err:
                task.wait(timeout=60)
            assert REFUSED in str(err.value), err.value
            seen.add_error(f"wait() on the {path} upload", err.value)
            tasks.append(task)

        # The bulk path opens its connection when the upload starts: turned away, since the
        # role's password has changed since the hub opened.
        asyncio.run(server.admin(f"ALTER ROLE {server.user} PASSWORD 'changed-{secrets.token_hex(4)}'"))
        try:
            task = hub.push(pd.DataFrame({"n": [1, 2, 3]}), "turned away")
            with pytest.raises(UploadError) as err:
                task.wait(timeout=60)
            assert "password authentication failed" in str(err.value), err.value
            seen.add_error("wait() on the upload whose bulk connection was turned away", err.value)
            tasks.append(task)
        finally:
            literal = "'" + SECRET.replace("'", "''") + "'"
            asyncio.run(server.admin(f"ALTER ROLE {server.user} PASSWORD {literal}"))

        # The panel, uploading the refused frame itself.
        panel = hub.panel(namespace=frames())
        try:
            panel.frame_dropdown.value = "bulk"
            panel.name_text.value = "refused from the panel"
            panel.upload_button.click()
            task = panel.controller.tasks[0]
            with pytest.raises(UploadError):
                task.wait(timeout=60)
            tasks.append(task)
            wait_until(lambda: "failed" in panel.status.value, what="the panel's status line")
            rows = [TaskProgress.for_task(t) for t in tasks]
            for row in rows:
                wait_until(lambda row=row: row.status_badge.value == "failed", what="the row's final render")
            panel.controller.refresh_history()
            seen.add("the panel's repr", repr(panel))
            seen.add("the panel's mime bundle", json.dumps(panel._repr_mimebundle_(), default=str))
            for where, state in widget_states(panel, *rows):
                seen.add(where, state)
            assert len(seen.holding(REFUSED)) >= 3, "the widgets do not show the refusal"
        finally:
            panel.close()

        for task in tasks:
            assert task.status == "failed"
            seen.add(f"repr and str of task {task.id}", f"{task!r} {task}")
            seen.add(f"the error of task {task.id}", f"{task.error} {task.error!r}")
            seen.add_error(f"the error of task {task.id}", task.error)
            seen.add(f"the snapshot of task {task.id}", repr(task.snapshot()))

        history = hub.tasks()
        assert (history["status"] == "failed").sum() == len(tasks)
        seen.add("hub.tasks()", history.to_csv())
        tables = execute(hub, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'dsn\\_%' ORDER BY 1")
        catalog = [name for (name,) in tables if not name.startswith(("dsn_data_", "dsn_stage_"))]
        assert "dsn_tasks" in catalog
        for name in catalog:
            seen.add(f"the rows of the catalog table {name}", repr(execute(hub, f'SELECT * FROM "{name}"')))
        status = hub.status()
        seen.add("hub.status()", f"{status!r} {json.dumps(status.to_dict(), default=str)}")

    seen.add_logs(caplog)
    seen.add_output("the test's own output", capfd)
    assert any(REFUSED in text for where, text in seen.texts if where.startswith("the rows of the catalog table dsn_tasks"))
    assert any(where.startswith("log record") for where, _ in seen.texts)
    seen.assert_no_password()


def widget_states(*roots) -> Iterator[tuple[str, str]]:
    """The synced state of every widget under ``roots`` (what a frontend would receive), found
    through the children, and any other widget-valued trait, of each."""
    import ipywidgets as w

    todo = list(roots)
    done: set[str] = set()
    while todo:
        widget = todo.pop()
        if widget.model_id in done:
            continue
        done.add(widget.model_id)
        state = widget.get_state()
        for name in widget.keys:
            value = getattr(widget, name, None)
            for item in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(item, w.Widget):
                    todo.append(item)
        yield f"the state of {type(widget).__name__} {widget.model_id}", json.dumps(state, default=str) + repr(widget)


def run_cli(capfd, *argv: str) -> tuple[int, str]:
    code = cli_main(list(argv))
    out, err = capfd.readouterr()
    return code, out + err


def test_no_password_in_the_cli_output(server, seen, caplog, capfd, tmp_path):
    url = server.url(password=SECRET)
    csv = tmp_path / "refused.csv"
    frames()["bulk"].to_csv(csv, index=False)
    runs = [
        (["--url", server.url(password=WRONG), "ls"], 2, "password authentication failed"),
        (["--url", url, "push", str(csv), "--name", "refused from the cli"], 2, REFUSED),
        (["--url", url, "ls"], 0, ""),
        (["--url", url, "tasks", "--all"], 0, "refused from the cli failed"),
        (["--url", url, "tasks", "--all", "--json"], 0, REFUSED),
        (["--url", url, "status"], 0, "dsnotebook status of postgresql+asyncpg://dsn_pw_user:***@"),
        (["ls", "--url", url, "--json"], 0, ""),
        (["ls", url], 2, "unrecognized arguments: postgresql+asyncpg://dsn_pw_user:***@"),
    ]
    for argv, expected_code, expected in runs:
        code, output = run_cli(capfd, *argv)
        assert code == expected_code and expected in " ".join(output.split()), output
        seen.add(f"dsnotebook {' '.join(a if a not in (url, server.url(password=WRONG)) else '<url>' for a in argv)}", output)
    seen.add_logs(caplog)
    assert len(seen.holding("dsnotebook: warning: the password in --url")) == len(runs) - 1
    seen.assert_no_password()


NOTEBOOK = [
    # A failed connect, caught and shown.
    """\
import os, traceback
import pandas as pd
import dsnotebook as dsn
try:
    dsn.connect(os.environ["DSN_TEST_WRONG_URL"])
except dsn.ConfigError as exc:
    print(exc)
    traceback.print_exc()
""",
    # The same, not caught: the kernel shows the error with its chain.
    'dsn.connect(os.environ["DSN_TEST_WRONG_URL"])',
    """\
hub = dsn.connect(os.environ["DSN_TEST_URL"])
print(hub, hub.url)
hub""",
    """\
task = hub.push(pd.DataFrame({"refused": [1, 2, 3]}), "refused in a notebook")
task""",
    # A failed upload, not caught.
    "task.wait(timeout=60)",
    """\
print(repr(task))
print(task.error)
traceback.print_exception(task.error)
hub.tasks()""",
    """\
from dsnotebook.widgets import TaskProgress
TaskProgress.for_task(task)""",
    """\
panel = hub.panel()
panel""",
    """\
panel.close()
hub.close()
print("closed")""",
]


def test_no_password_in_notebook_outputs(server, seen, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    # Everything the kernel (and jupyter_client here) might write stays under tmp_path.
    for key in ("HOME", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        path = tmp_path / key.lower()
        path.mkdir()
        monkeypatch.setenv(key, str(path))
    monkeypatch.setenv("DSNOTEBOOK_URL", f"sqlite+aiosqlite:///{tmp_path / 'default.db'}")
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    monkeypatch.delenv("JUPYTER_CONFIG_PATH", raising=False)
    # The URLs reach the kernel through its environment: the cells' sources hold no password, so
    # whatever shows one in an output is dsnotebook's doing.
    monkeypatch.setenv("DSN_TEST_URL", server.url(password=SECRET))
    monkeypatch.setenv("DSN_TEST_WRONG_URL", server.url(password=WRONG))

    nb = new_notebook(cells=[new_code_cell(source) for source in NOTEBOOK])

    async def run() -> None:
        client = NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=60, allow_errors=True)
        client.km = client.create_kernel_manager()
        client.km.connection_file = str(Path(os.environ["JUPYTER_RUNTIME_DIR"]) / "kernel-secrets.json")
        await client.async_execute(cwd=str(tmp_path))

    asyncio.run(run())

    for index, cell in enumerate(nb.cells):
        for number, output in enumerate(cell.outputs):
            seen.add(f"cell {index}, output {number} ({output.output_type})", json.dumps(output))
    seen.add("the notebook's metadata (the widgets' state)", json.dumps(nb.metadata))
    errors = {index: output for index, cell in enumerate(nb.cells) for output in cell.outputs if output.output_type == "error"}
    assert errors.keys() == {1, 4}, errors
    assert errors[1].ename == "ConfigError" and "password authentication failed" in errors[1].evalue
    assert errors[4].ename == "UploadError" and REFUSED in errors[4].evalue
    assert seen.holding("dsn_pw_user:***@127.0.0.1")
    assert nb.cells[-1].outputs[-1].text == "closed\n"
    seen.assert_no_password()
