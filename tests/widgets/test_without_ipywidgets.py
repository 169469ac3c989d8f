"""The engine, the CLI and the panel's controller work with ipywidgets and IPython absent."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys
import textwrap

import dsnotebook

PACKAGE = pathlib.Path(dsnotebook.__file__).parent

BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ipywidgets", "IPython", "ipykernel", "comm"):
                raise ImportError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Block())

    import pandas as pd
    import dsnotebook as dsn
    from dsnotebook.widgets.controller import PanelController

    df = pd.DataFrame({"a": range(1000), "b": ["x"] * 1000})
    with dsn.connect(sys.argv[1]) as hub:
        task = hub.push(df, "plain")
        task._ipython_display_()            # falls back to the text repr
        assert task.wait(timeout=60).rows == 1000
        pd.testing.assert_frame_equal(hub.pull("plain"), df)

        controller = PanelController(hub, {"df": df})
        controller.select_frame("df")
        assert controller.name == "df" and controller.problem is None, controller.problem
        controller.set_name("")
        assert "empty" in controller.problem
        controller.set_name("from the controller")
        second = controller.upload()
        second.wait(timeout=60)
        controller.refresh_datasets()
        assert sorted(controller.datasets["name"]) == ["from the controller", "plain"]
        controller.select_dataset("plain")
        assert controller.schema.values.tolist() == [["a", "int64"], ["b", "str"]]
        controller.close()

        try:
            dsn.UploadPanel
        except ImportError as exc:
            print("panel refused:", exc)
        else:
            raise AssertionError("UploadPanel imported without ipywidgets")

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("ipywidgets", "IPython", "ipykernel", "comm"))
    assert not loaded, loaded
    print("ok")
    """
)


def test_push_pull_and_the_controller_work_without_ipywidgets(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("<UploadTask 'plain'")
    assert lines[1].startswith("panel refused: No module named 'ipywidgets'")
    assert lines[-1] == "ok"


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_widgets_package_imports_ipywidgets_or_ipython():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_imports(path) & {"ipywidgets", "IPython"})
        for path in PACKAGE.rglob("*.py")
        if path.parent.name != "widgets" or path.name == "controller.py"
    }
    assert {name: found for name, found in offenders.items() if found} == {}
    # The widgets really are there (this test would pass vacuously on an empty package otherwise).
    assert "ipywidgets" in _imports(PACKAGE / "widgets" / "progress.py")
    assert "ipywidgets" in _imports(PACKAGE / "widgets" / "panel.py")
