"""End to end: the upload panel in JupyterLab, driven by a user in headless Chromium.

A JupyterLab server (in its own process group, every Jupyter path under ``tmp_path``) opens a
notebook that builds a DataFrame, lets one upload fail, holds a second one after its second
chunk (so that it is seen running, with its time left), and shows ``hub.panel()``. The test
waits until the kernel has answered and runs all cells. Then, as a user would:

- it reads the held upload's time left and the status strip's "1 running";
- it cancels the held upload in the panel, and retries it from the row in the cell that showed
  it first: that row says by which upload it was retried, and the panel's new row what it retries;
- it checks the form's first line is a neutral hint, and that a name of three spaces shows as
  three spaces;
- it picks the frame, renames it, clicks Upload and waits for 100 % and ``succeeded``;
- in the light and the dark theme, at 1400 and 700 px wide, it takes screenshots of every tab,
  asserts that nothing in the panel overflows sideways (with scrollbars shown: Playwright's
  ``--hide-scrollbars`` is turned off), and that every status colour has a contrast of at least
  4.5:1, computed from the rendered colours against the real background behind them;
- at the end, it pulls the dataset back through the library.

Skipped when Chromium, Playwright or JupyterLab is missing; with ``DSNOTEBOOK_REQUIRE_BROWSER=1``
(as in CI) that is a failure instead. Screenshots go to ``tmp_path`` and, when
``DSNOTEBOOK_ARTIFACTS`` names a directory, are copied there too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
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
#: The viewport widths the panel must fit, in px.
WIDTHS = (1400, 700)
THEMES = ("JupyterLab Light", "JupyterLab Dark")
#: WCAG 2 AA for normal text.
MIN_CONTRAST = 4.5
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
            # Playwright hides scrollbars by default, and with them any sideways overflow.
            self._browser = self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, ignore_default_args=["--hide-scrollbars"]
            )
            self.page = self._browser.new_page(viewport={"width": WIDTHS[0], "height": 1000})
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


# -- what the test measures in the page ----------------------------------------------------------

# Colours are read back through a 1x1 canvas, which turns any CSS colour (rgb(), color(srgb ...)
# from color-mix(), a theme variable's value) into 8-bit sRGB; text and translucent backgrounds
# are composited over what is behind them, as the browser paints them.
PAINT_HELPERS = """
const canvas = document.createElement('canvas');
canvas.width = canvas.height = 1;
const ctx = canvas.getContext('2d', {willReadFrequently: true});
const rgba = (css) => {
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = 'rgba(1, 2, 3, 0.5)';
    const sentinel = ctx.fillStyle;
    ctx.fillStyle = css;
    if (ctx.fillStyle === sentinel && css.replace(/\\s/g, '') !== 'rgba(1,2,3,0.5)') throw new Error(`unreadable colour ${css}`);
    ctx.fillRect(0, 0, 1, 1);
    const d = ctx.getImageData(0, 0, 1, 1).data;
    return [d[0], d[1], d[2], d[3] / 255];
};
const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
const backdrop = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
        const c = rgba(getComputedStyle(e).backgroundColor);
        if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let paint = [255, 255, 255, 1];  // the canvas under the page
    for (let i = layers.length - 1; i >= 0; i--) paint = over(layers[i], paint);
    return paint;
};
const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => {
        v /= 255;
        return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const contrast = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
};
const hex = (c) => '#' + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
"""

# Every visible element whose colour says a state or a level: the rows' statuses, errors and
# notes, the form's line and the status line (but not a message that is fading out), the strip.
STATUS_SELECTORS = (
    ".dsn-task .dsn-status, "
    ".dsn-task .dsn-error .dsn-msg, .dsn-task .dsn-error span, "
    ".dsn-task .dsn-note span, "
    ".dsn-panel .dsn-message .dsn-msg, "
    ".dsn-panel .dsn-notice .dsn-msg:not(.dsn-fades), "
    ".dsn-panel .dsn-strip-item, "
    ".dsn-panel td[class*='dsn-state-']"
)

MEASURE_CONTRAST = (
    "(selectors) => {"
    + PAINT_HELPERS
    + """
    const found = [];
    for (const el of document.querySelectorAll(selectors)) {
        if (!el.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
        const text = el.innerText.trim();
        if (!text) continue;
        let opacity = 1;
        for (let e = el; e; e = e.parentElement) opacity *= parseFloat(getComputedStyle(e).opacity);
        const ink = rgba(getComputedStyle(el).color);
        const ground = backdrop(el);
        const seen = over([ink[0], ink[1], ink[2], ink[3] * opacity], ground);
        found.push({
            classes: [...el.classList].filter((c) => /^dsn-(state|level|strip)-/.test(c)),
            text: text.slice(0, 60),
            color: getComputedStyle(el).color,
            rendered: hex(seen),
            background: hex(ground),
            ratio: Math.round(contrast(seen, ground) * 100) / 100,
        });
    }
    return found;
}"""
)

THEME_IS = (
    "([theme, dark]) => {"
    + PAINT_HELPERS
    + """
    if (document.body.dataset.jpThemeName !== theme) return false;
    const tab = document.querySelector('.dsn-panel .widget-tab-contents');
    return tab !== null && (luminance(backdrop(tab)) < 0.2) === dark;
}"""
)

# Elements of the panel (and the panel itself, and its cell's output area) that overflow
# sideways: wider content than box in an element that clips or scrolls. Only the tables' own
# boxes (.dsn-scroll) may scroll; a label cut short ("succee") counts as overflow too.
SIDEWAYS_OVERFLOW = """() => {
    const name = (el) => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')}`;
    const describe = (el) => {
        // The descendant that reaches furthest right, to tell what sticks out.
        const right = el.getBoundingClientRect().left + el.clientWidth;
        let culprit = null;
        for (const d of el.querySelectorAll('*')) {
            const r = d.getBoundingClientRect().right;
            if (r > right + 1 && (culprit === null || r > culprit.getBoundingClientRect().right)) culprit = d;
        }
        const what = culprit === null ? '' : `; sticking out: ${name(culprit)} (${culprit.getBoundingClientRect().width} px wide)`;
        return `${name(el)} scrollWidth ${el.scrollWidth} > clientWidth ${el.clientWidth}: ` +
            `${(el.innerText || '').trim().slice(0, 40)}${what}`;
    };
    const problems = [];
    const panel = document.querySelector('.dsn-panel');
    const output = panel.closest('.jp-OutputArea-output');
    for (const el of [output, panel, ...panel.querySelectorAll('*')]) {
        if (el.closest('.dsn-scroll')) continue;
        if (!el.checkVisibility() || el.clientWidth === 0) continue;
        if (getComputedStyle(el).overflowX === 'visible' && el !== output && el !== panel) continue;
        if (el.scrollWidth > el.clientWidth + 1) problems.push(describe(el));
    }
    if (panel.getBoundingClientRect().right > output.getBoundingClientRect().right + 1) problems.push('the panel is wider than its output area');
    return problems;
}"""

# Neighbours in a row's groups that sit on one line but nearly touch ("1,500,000 rows3.2k rows/s").
CROWDED_LABELS = """() => {
    const problems = [];
    for (const group of document.querySelectorAll('.dsn-task-group')) {
        const items = [...group.children].filter((e) => e.checkVisibility() && (e.innerText || '').trim());
        for (let i = 1; i < items.length; i++) {
            const a = items[i - 1].getBoundingClientRect(), b = items[i].getBoundingClientRect();
            if (Math.abs(a.top - b.top) < 2 && b.left - a.right < 4) {
                problems.push(`${items[i - 1].innerText} | ${items[i].innerText}: ${b.left - a.right} px apart`);
            }
        }
    }
    return problems;
}"""

# Whether a table fits its box (no sideways scrolling needed).
TABLE_FITS = """(selector) => {
    const box = document.querySelector(`${selector} .dsn-scroll`);
    return box !== null && box.scrollWidth <= box.clientWidth + 1;
}"""

ROW_ID = re.compile(r"\bdsn-task-([0-9a-f]{32})\b")
TIME_LEFT = re.compile(r"^(\d+s|\d+(:\d\d){1,2}) left$")


def row_id(row) -> str:
    match = ROW_ID.search(row.get_attribute("class") or "")
    assert match, row.get_attribute("class")
    return match.group(1)


def check_contrast(page, where: str) -> set[str]:
    """Assert that every visible status colour reaches MIN_CONTRAST; returns the classes seen."""
    measured = page.evaluate(MEASURE_CONTRAST, STATUS_SELECTORS)
    print(f"contrast, {where}:", *(f"  {m['ratio']:5.2f} {m['rendered']} on {m['background']} {m['classes']} {m['text']!r}" for m in measured), sep="\n")
    low = [m for m in measured if m["ratio"] < MIN_CONTRAST]
    assert not low, f"contrast below {MIN_CONTRAST}:1 in {where}: {low}"
    return {c for m in measured for c in m["classes"]}


def use_theme(page, theme: str) -> None:
    page.evaluate("async (theme) => { await window.jupyterapp.commands.execute('apputils:change-theme', {theme}); }", theme)
    page.wait_for_function(THEME_IS, arg=[theme, theme.endswith("Dark")])


def select_tab(panel, title: str) -> None:
    from playwright.sync_api import expect

    panel.locator(".lm-TabBar-tab", has_text=title).click()
    expect(panel.locator(".lm-TabBar-tab.lm-mod-current")).to_have_text(title)


# -- the notebook --------------------------------------------------------------------------------

#: The held upload: its retry shows the widest figures, "1,500,000 / 1,500,000 rows".
HELD_ROWS = 1_500_000


def notebook_cells(db_path: Path) -> list[str]:
    db_url = f"sqlite+aiosqlite:///{db_path}"
    return [
        kernel_check_cell(),
        "import contextlib, sqlite3\nimport dsnotebook as dsn\nimport numpy as np\nimport pandas as pd\nfrom dsnotebook import _faults",
        f"hub = dsn.connect({db_url!r})",
        FRAME_SOURCE,
        # An upload that fails: the database refuses its progress past its first chunk.
        f"""\
with contextlib.closing(sqlite3.connect({str(db_path)!r})) as con:
    con.execute(
        "CREATE TRIGGER refuse_doomed BEFORE UPDATE OF rows_done ON dsn_tasks "
        "WHEN NEW.dataset = 'doomed' AND NEW.rows_done >= 1000 "
        "BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END"
    )
    con.commit()
doomed = hub.push(pd.DataFrame({{"x": np.arange(5_000)}}), "doomed", chunk_size=1_000)
try:
    doomed.wait(timeout=60)
except dsn.UploadError as exc:
    print(exc)""",
        # An upload held after its second chunk until it is cancelled, shown by this cell.
        f"""\
_faults.arm("between_chunks@2:pause")
held = hub.push(pd.DataFrame({{"x": np.arange({HELD_ROWS:_})}}), "held", chunk_size=100_000)
held""",
        "hub.panel()",
    ]


# -- the test ------------------------------------------------------------------------------------


def test_the_panel_in_jupyterlab(lab, tmp_path, artifacts):
    from playwright.sync_api import expect

    db_path = tmp_path / "e2e.db"
    write_notebook(lab.root, notebook_cells(db_path))

    with Browser(lab, tmp_path, artifacts) as browser:
        page = browser.page
        browser.open_and_run(".dsn-panel .dsn-task")
        panel = page.locator(".dsn-panel")
        expect(panel).to_be_visible()
        expect(panel.locator(".lm-TabBar-tab")).to_have_text(["Upload", "Tasks", "Datasets"])
        expect(panel.locator(".lm-TabBar-tab.lm-mod-current")).to_have_text("Upload")
        seen: dict[str, set[str]] = {theme: set() for theme in THEMES}

        # -- the form: a neutral hint first, then what Upload would do, then the problem
        message = panel.locator(".dsn-message")
        expect(message.locator(".dsn-level-hint")).to_have_text("Choose one of the notebook's frames to upload.")
        seen[THEMES[0]] |= check_contrast(page, "the form's hint")
        frame = panel.locator(".dsn-frame select")
        labels = frame.locator("option").all_inner_texts()
        sales = [label for label in labels if label.startswith("sales")]
        # ipywidgets shows an option's spaces as no-break spaces.
        assert [label.replace("\xa0", " ") for label in sales] == [f"sales ({ROWS:,} × 4)"], labels
        frame.select_option(label=sales[0])
        name = panel.locator(".dsn-name input")
        expect(name).to_have_value("sales")
        expect(message.locator(".dsn-level-success")).to_contain_text(f"Ready to upload {ROWS:,} rows as 'sales'")
        seen[THEMES[0]] |= check_contrast(page, "the form ready")
        name.fill("   ")
        # Three spaces stay three spaces on the page.
        expect(message.locator(".dsn-level-error")).to_contain_text("name: '   ' is empty or whitespace only", use_inner_text=True)
        browser.mark("the form checked")

        # -- the held upload: running, with its time left; the strip counts it
        select_tab(panel, "Tasks")
        held = panel.locator(".dsn-task").filter(has=page.locator(".dsn-title", has_text=re.compile(r"^held$")))
        expect(held).to_have_count(1)
        expect(held.locator(".dsn-status")).to_have_text("running")
        expect(held.locator(".dsn-eta")).to_have_text(TIME_LEFT)
        expect(held.locator(".dsn-rows")).to_have_text(f"200,000 / {HELD_ROWS:,} rows")
        expect(panel.locator(".dsn-strip-queue")).to_have_text("0 queued · 1 running")
        expect(panel.locator(".dsn-strip-memory")).to_have_text(re.compile(r"^RSS \S+ \w+ of \S+ \w+$"))
        doomed = panel.locator(".dsn-task").filter(has=page.locator(".dsn-title", has_text=re.compile(r"^doomed$")))
        expect(doomed.locator(".dsn-status")).to_have_text("failed")
        expect(doomed.locator(".dsn-error")).to_contain_text("simulated storage failure")
        browser.mark("the held upload shows its time left")
        for theme in THEMES:
            use_theme(page, theme)
            seen[theme] |= check_contrast(page, f"{theme}, an upload running")
            browser.screenshot(f"{theme.split()[-1].lower()}-{WIDTHS[0]}-running", panel)
            select_tab(panel, "Upload")
            name.fill("sales")
            expect(message.locator(".dsn-level-success")).to_contain_text("Ready to upload")
            seen[theme] |= check_contrast(page, f"{theme}, the form ready")
            name.fill("   ")
            expect(message.locator(".dsn-level-error")).to_contain_text("is empty or whitespace only")
            seen[theme] |= check_contrast(page, f"{theme}, the form's problem")
            select_tab(panel, "Tasks")
        use_theme(page, THEMES[0])
        browser.mark("contrast while running")

        # -- cancel it in the panel; retry it from the row in the cell that showed it first
        held_id = row_id(held)
        held.locator("button.dsn-cancel").click()
        expect(held.locator(".dsn-status")).to_have_text("cancelled", timeout=UPLOAD_TIMEOUT_MS)
        in_cell = page.locator(f".jp-Cell:not(:has(.dsn-panel)) .dsn-task-{held_id}")
        expect(in_cell).to_have_count(1)
        expect(in_cell.locator(".dsn-status")).to_have_text("cancelled")
        in_cell.locator("button.dsn-retry").click()
        # The click shows where it was made: this row names the retry and follows it to its end.
        expect(in_cell.locator(".dsn-note")).to_have_text(
            re.compile(r"^Retried as upload [0-9a-f]{8}: succeeded, v1$"), timeout=UPLOAD_TIMEOUT_MS
        )
        expect(in_cell.locator("button.dsn-retry")).to_be_hidden()
        retry = panel.locator(".dsn-task.dsn-retry-of")
        expect(retry).to_have_count(1)
        expect(retry.locator(".dsn-note")).to_have_text(f"Retry of upload {held_id[:8]}")
        expect(retry.locator(".dsn-title")).to_have_text("held v1")
        expect(retry.locator(".dsn-rows")).to_have_text(f"{HELD_ROWS:,} / {HELD_ROWS:,} rows")
        retry_id = row_id(retry)
        assert retry_id != held_id
        expect(in_cell.locator(".dsn-note")).to_contain_text(f"Retried as upload {retry_id[:8]}")
        expect(held.locator(".dsn-note")).to_contain_text(f"Retried as upload {retry_id[:8]}")
        browser.mark("retried from the cell")

        # -- upload the frame from the panel
        select_tab(panel, "Upload")
        name.fill("")
        name.press_sequentially(DATASET, delay=20)
        expect(name).to_have_value(DATASET)
        # The kernel has seen the new name once the message repeats it.
        expect(message).to_contain_text(f"Ready to upload {ROWS:,} rows as '{DATASET}'")
        upload = panel.locator("button.dsn-upload")
        expect(upload).to_be_enabled()
        upload.click()
        browser.mark("upload clicked")
        expect(panel.locator(".lm-TabBar-tab.lm-mod-current")).to_have_text("Tasks")
        row = panel.locator(".dsn-task").filter(has=page.locator(".dsn-title", has_text=DATASET))
        expect(row).to_have_count(1)
        expect(row.locator(".dsn-percent")).to_have_text("100%", timeout=UPLOAD_TIMEOUT_MS)
        expect(row.locator(".dsn-status")).to_have_text("succeeded", timeout=UPLOAD_TIMEOUT_MS)
        expect(row.locator(".dsn-title")).to_have_text(f"{DATASET} v1")
        expect(row.locator(".dsn-eta")).to_have_text("")
        browser.mark("upload succeeded")

        # -- the Datasets tab with a version selected
        select_tab(panel, "Datasets")
        expect(panel.locator(".dsn-datasets-table")).to_contain_text(DATASET)
        panel.locator(".dsn-dataset-select select").select_option(DATASET)
        versions = panel.locator(".dsn-versions")
        expect(versions.locator("th")).to_contain_text(["Version", "Latest", "Rows"])
        expect(versions.locator("td", has_text=re.compile(rf"^{ROWS:,}$"))).to_have_count(1)

        # -- every tab, in both themes, at both widths: it fits, and its colours read well
        for theme in THEMES:
            use_theme(page, theme)
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 1000})
                for tab in ("Tasks", "Datasets", "Upload"):
                    select_tab(panel, tab)
                    page.wait_for_function(
                        "(width) => window.innerWidth === width && document.querySelector('.dsn-panel').getBoundingClientRect().width > 0",
                        arg=width,
                    )
                    overflow = page.evaluate(SIDEWAYS_OVERFLOW)
                    crowded = page.evaluate(CROWDED_LABELS)
                    browser.screenshot(f"{theme.split()[-1].lower()}-{width}-{tab.lower()}", panel)
                    assert overflow == [], f"{theme}, {width} px, {tab} tab: {overflow}"
                    assert crowded == [], f"{theme}, {width} px, {tab} tab: {crowded}"
                    seen[theme] |= check_contrast(page, f"{theme}, {width} px, {tab} tab")
                    if tab == "Datasets" and width == WIDTHS[0]:
                        # At full width the versions table fits, its 'Latest' column included.
                        assert page.evaluate(TABLE_FITS, ".dsn-versions"), "the versions table does not fit at 1400 px"
            browser.mark(f"{theme} checked")

        # Every colour was measured in both themes. (The strip's amber and red are the rules of
        # "cancelled" and "failed"; the widget tests check that the strip uses them.)
        for theme, classes in seen.items():
            expected = {f"dsn-state-{s}" for s in ("running", "succeeded", "failed", "cancelled")}
            expected |= {f"dsn-level-{level}" for level in ("error", "success", "info")}
            assert expected <= classes, f"{theme}: no {sorted(expected - classes)} was measured"
        assert "dsn-level-hint" in seen[THEMES[0]]

    # What the panel stored is what the notebook built. Checked once the browser is closed: while
    # Playwright's sync API is active, the main thread looks as if an event loop were running in it.
    expected = expected_frame()
    with dsn.connect(f"sqlite+aiosqlite:///{db_path}") as hub:
        info = hub.info(DATASET)
        assert (info.latest.version, info.latest.rows, info.latest.columns) == (1, ROWS, 4)
        pulled = hub.pull(DATASET)
        assert hub.info("held").latest.rows == HELD_ROWS
    assert len(pulled) == ROWS
    pd.testing.assert_frame_equal(pulled, expected)
