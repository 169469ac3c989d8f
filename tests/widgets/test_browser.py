"""End to end: the upload panel in JupyterLab, driven by a user in headless Chromium.

A JupyterLab server (in its own process group, every Jupyter path under ``tmp_path``) opens a
notebook that builds a DataFrame and shows ``hub.panel()``. The test waits until the kernel has
answered, runs all cells, picks the frame in the panel, renames it, clicks Upload, waits for the
task row to reach 100 % and ``succeeded``, and then pulls the dataset back through the library.

Skipped when Chromium, Playwright or JupyterLab is missing; with ``DSNOTEBOOK_REQUIRE_BROWSER=1``
(as in CI) that is a failure instead. Screenshots go to ``tmp_path`` and, when
``DSNOTEBOOK_ARTIFACTS`` names a directory, are copied there too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dsnotebook as dsn

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-default-browser-check",
    # The same page with or without internet: nothing but the local server resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
NOTEBOOK = "e2e.ipynb"
DATASET = "e2e_sales"
ROWS = 25_000
SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 10.0
UPLOAD_TIMEOUT_MS = 60_000
#: For every other wait on the page (the default of 5 s is tight on a busy CI machine).
PAGE_TIMEOUT_MS = 30_000

# Runs in the kernel and in the test, so that both build the very same frame.
FRAME_SOURCE = f"""\
n = {ROWS:_}
sales = pd.DataFrame({{
    "order_id": np.arange(n, dtype="int64"),
    "amount": np.round(np.random.default_rng(20260101).gamma(2.0, 30.0, n), 2),
    "region": np.array(["north", "south", "east", "west", "central"], dtype=object)[np.arange(n) % 5],
    "ordered_at": pd.date_range("2026-01-01", periods=n, freq="37min"),
}})
sales.shape"""


def expected_frame() -> pd.DataFrame:
    namespace = {"np": np, "pd": pd}
    exec(FRAME_SOURCE, namespace)  # noqa: S102 - the test's own constant, also run in the kernel
    return namespace["sales"]


# -- availability ----------------------------------------------------------------------------


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    for module in ("playwright", "jupyterlab"):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is missing (pip install -e '.[dev]' installs it)"
    return None


@pytest.fixture
def browser_available() -> None:
    """Skip when the browser stack is missing; fail instead when DSNOTEBOOK_REQUIRE_BROWSER=1."""
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("DSNOTEBOOK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DSNOTEBOOK_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# -- the JupyterLab server -------------------------------------------------------------------


@dataclass
class Lab:
    port: int
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no server log: {exc})"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_", "IPYTHON"))}
    dirs = {
        "HOME": tmp_path / "home",
        "JUPYTER_CONFIG_DIR": tmp_path / "jupyter" / "config",
        "JUPYTER_DATA_DIR": tmp_path / "jupyter" / "data",
        "JUPYTER_RUNTIME_DIR": tmp_path / "jupyter" / "runtime",
        "IPYTHONDIR": tmp_path / "ipython",
        "JUPYTERLAB_SETTINGS_DIR": tmp_path / "jupyter" / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": tmp_path / "jupyter" / "lab-workspaces",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env.update({name: str(path) for name, path in dirs.items()})
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["DSNOTEBOOK_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'home' / 'default.db'}"
    # No news or update toasts over the panel; every cell in the DOM (no virtual scrolling).
    settings = dirs["JUPYTERLAB_SETTINGS_DIR"]
    for plugin, values in {
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    }.items():
        file = settings / f"{plugin}.jupyterlab-settings"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(values))
    return env


def _status(lab: Lab) -> bool:
    request = urllib.request.Request(f"{lab.base}/api/status", headers={"Authorization": f"token {lab.token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (it shuts its kernels down), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=SERVER_STOP_TIMEOUT)


@pytest.fixture
def lab(browser_available, tmp_path) -> Iterator[Lab]:
    root = tmp_path / "notebooks"
    root.mkdir()
    env = _lab_environment(tmp_path)
    log = tmp_path / "jupyter-server.log"
    port, token = _free_port(), secrets.token_hex(16)
    # `python -m jupyterlab` from this interpreter: the python3 kernelspec's "python" resolves to
    # sys.executable, so the kernel runs in this environment (the notebook asserts it).
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--ip=127.0.0.1", "--allow-root",
        f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            env=env, cwd=root, start_new_session=True,
        )  # fmt: skip
    lab = Lab(port=port, token=token, root=root, log=log, process=process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _status(lab):
            if process.poll() is not None:
                pytest.fail(f"jupyter-lab exited with {process.returncode}:\n{lab.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter-lab did not answer /api/status in {SERVER_START_TIMEOUT:.0f} s:\n{lab.log_tail()}", pytrace=False)
            time.sleep(0.1)
        yield lab
    finally:
        _stop(process)


# -- the browser -----------------------------------------------------------------------------


@dataclass
class PageLog:
    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}: {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.request.method} {r.url}: HTTP {r.status}"))

    def report(self) -> str:
        return "\n".join(
            ["--- browser console ---", *self.console[-100:], "--- failed requests ---", *self.failed[-50:]]
        )


# Resolves when the notebook's context and kernel session are ready and the kernel has answered
# its kernel_info request. Before that the toolbar may already say "idle", but a "run all"
# sent then is silently lost (browser-testing.md: 3 failures in 8 runs without this wait).
WAIT_FOR_KERNEL = """async (path) => {
    const app = window.jupyterapp;
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    let panel = null;
    for (let i = 0; i < 600 && !panel; i++) {
        for (const w of app.shell.widgets('main')) {
            if (w.context && w.context.path === path && w.sessionContext) { panel = w; break; }
        }
        if (!panel) await sleep(50);
    }
    if (!panel) throw new Error(`no notebook panel for ${path}`);
    await panel.context.ready;
    await panel.sessionContext.ready;
    let kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    for (let i = 0; i < 600 && !kernel; i++) {
        await sleep(50);
        kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    }
    if (!kernel) throw new Error('the notebook has no kernel');
    const info = await kernel.info;
    app.shell.activateById(panel.id);
    return {kernel: kernel.name, status: kernel.status, language: info.language_info.name};
}"""

RUN_ALL = """async () => { await window.jupyterapp.commands.execute('notebook:run-all-cells'); }"""

# Truthy once `selector` is in the page, or as soon as a cell has an error output.
RENDERED_OR_ERROR = """([path, selector]) => {
    for (const w of window.jupyterapp.shell.widgets('main')) {
        if (!(w.context && w.context.path === path && w.model)) continue;
        const errors = [];
        for (const cell of w.model.cells) {
            if (cell.type !== 'code') continue;
            for (const out of cell.outputs.toJSON()) {
                if (out.output_type === 'error') errors.push(`${out.ename}: ${out.evalue}\\n${out.traceback.join('\\n')}`);
            }
        }
        if (errors.length) return {errors};
    }
    return document.querySelector(selector) ? {errors: []} : null;
}"""


def write_notebook(root: Path, cells: list[str]) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    path = root / NOTEBOOK
    nbformat.write(nb, path)
    return path


def kernel_check_cell() -> str:
    return f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable"


@pytest.fixture
def artifacts(request) -> Iterator[list[Path]]:
    """Screenshot paths (under tmp_path); at the end, also copied to $DSNOTEBOOK_ARTIFACTS if set."""
    shots: list[Path] = []
    yield shots
    target = os.environ.get("DSNOTEBOOK_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            if shot.exists():
                print(f"screenshot copied to {shutil.copy2(shot, Path(target) / f'{request.node.name}-{shot.name}')}")


class Browser:
    """Playwright's sync API, Debian's Chromium, one page; stopped completely on exit."""

    def __init__(self, lab: Lab, tmp_path: Path, shots: list[Path]) -> None:
        self.lab, self.tmp_path, self.shots = lab, tmp_path, shots
        self.log = PageLog()
        self._started = time.monotonic()
        self.phases: list[str] = []

    def mark(self, phase: str) -> None:
        """Note how long the test took to get here (printed at the end, to tell slow steps apart)."""
        self.phases.append(f"{time.monotonic() - self._started:5.1f} s  {phase}")

    def __enter__(self):
        from playwright.sync_api import expect, sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            self.page = self._browser.new_page(viewport={"width": 1280, "height": 900})
            self.page.set_default_timeout(PAGE_TIMEOUT_MS)
            expect.set_options(timeout=PAGE_TIMEOUT_MS)
            self.log.attach(self.page)
            self.mark("browser started")
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        print("--- phases ---", *self.phases, sep="\n")
        try:
            if exc_type is not None:
                try:
                    self.screenshot("failure", full_page=True)
                except Exception as shot_error:  # noqa: BLE001 - the page may be gone; report the real failure
                    print(f"no failure screenshot: {shot_error}")
                print(self.log.report())
                print(f"--- jupyter server log (tail) ---\n{self.lab.log_tail()}")
            self._browser.close()
        finally:
            self._playwright.stop()

    def screenshot(self, name: str, locator=None, *, full_page: bool = False) -> Path:
        path = self.tmp_path / f"{name}.png"
        if locator is not None:
            locator.scroll_into_view_if_needed()
            locator.screenshot(path=path)
        else:
            self.page.screenshot(path=path, full_page=full_page)
        self.shots.append(path)
        print(f"screenshot: {path}")
        return path

    def open_and_run(self, selector: str, timeout_ms: int = 60_000) -> None:
        """Open the notebook, wait for the kernel to answer, run all cells, wait for `selector`."""
        page = self.page
        page.goto(self.lab.url(f"/lab/tree/{NOTEBOOK}"))
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined")
        page.evaluate("() => window.jupyterapp.started")
        page.evaluate("() => window.jupyterapp.restored")
        self.mark("JupyterLab restored")
        kernel = page.evaluate(WAIT_FOR_KERNEL, NOTEBOOK)
        assert kernel["language"] == "python", kernel
        self.mark("kernel answered")
        page.evaluate(RUN_ALL)
        state = page.wait_for_function(RENDERED_OR_ERROR, arg=[NOTEBOOK, selector], timeout=timeout_ms).json_value()
        self.mark("cells ran")
        if state["errors"]:
            pytest.fail("a notebook cell failed:\n" + "\n\n".join(state["errors"]), pytrace=False)


# -- the tests -------------------------------------------------------------------------------


def test_upload_a_frame_from_the_panel(lab, tmp_path, artifacts):
    from playwright.sync_api import expect

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
    write_notebook(
        lab.root,
        [
            kernel_check_cell(),
            "import dsnotebook as dsn\nimport numpy as np\nimport pandas as pd",
            f"hub = dsn.connect({db_url!r})",
            FRAME_SOURCE,
            "hub.panel()",
        ],
    )

    with Browser(lab, tmp_path, artifacts) as browser:
        page = browser.page
        browser.open_and_run(".dsn-panel")
        panel = page.locator(".dsn-panel")
        expect(panel).to_be_visible()
        tabs = panel.locator(".lm-TabBar-tab")
        expect(tabs).to_have_text(["Upload", "Tasks", "Datasets"])
        expect(panel.locator(".lm-TabBar-tab.lm-mod-current")).to_have_text("Upload")

        # Upload tab: pick the frame, rename it, upload.
        frame = panel.locator(".dsn-frame select")
        # ipywidgets shows an option's spaces as no-break spaces.
        labels = frame.locator("option").all_inner_texts()
        sales = [label for label in labels if label.startswith("sales")]
        assert [label.replace("\xa0", " ") for label in sales] == [f"sales ({ROWS:,} × 4)"], labels
        frame.select_option(label=sales[0])
        name = panel.locator(".dsn-name input")
        expect(name).to_have_value("sales")
        name.fill("")
        name.press_sequentially(DATASET, delay=20)
        expect(name).to_have_value(DATASET)
        # The kernel has seen the new name once the message repeats it.
        message = panel.locator(".dsn-message")
        expect(message).to_contain_text(f"Ready to upload {ROWS:,} rows as '{DATASET}'")
        upload = panel.locator("button.dsn-upload, .dsn-upload button").first
        expect(upload).to_be_enabled()
        browser.screenshot("1-before-upload", panel)
        upload.click()
        browser.mark("upload clicked")

        # Tasks tab: the panel switches to it; the row reaches 100 % and "succeeded".
        expect(panel.locator(".lm-TabBar-tab.lm-mod-current")).to_have_text("Tasks")
        row = panel.locator(".dsn-task").filter(has=page.locator(".dsn-title", has_text=DATASET))
        expect(row).to_have_count(1)
        expect(row.locator(".dsn-percent")).to_have_text("100%", timeout=UPLOAD_TIMEOUT_MS)
        expect(row.locator(".dsn-status")).to_have_text("succeeded", timeout=UPLOAD_TIMEOUT_MS)
        expect(row.locator(".dsn-title")).to_have_text(f"{DATASET} v1")
        browser.mark("upload succeeded")
        browser.screenshot("2-after-upload", panel)

    # What the panel stored is what the notebook built. Checked once the browser is closed: while
    # Playwright's sync API is active, the main thread looks as if an event loop were running in it.
    expected = expected_frame()
    with dsn.connect(db_url) as hub:
        info = hub.info(DATASET)
        assert (info.latest.version, info.latest.rows, info.latest.columns) == (1, ROWS, 4)
        pulled = hub.pull(DATASET)
    assert len(pulled) == ROWS
    pd.testing.assert_frame_equal(pulled, expected)
