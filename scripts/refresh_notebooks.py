"""Re-execute the example notebooks in fresh kernels and save their outputs in place.

Run it from the repository's root after a change that is meant to alter what the notebooks
show, then review the diff and commit it:

    python scripts/refresh_notebooks.py                     # every notebook in notebooks/
    python scripts/refresh_notebooks.py notebooks/01_quickstart.ipynb

The kernel is this interpreter's (as ``pytest --nbval-current-env`` uses). Execution timing and
widget state are not stored, so an unchanged notebook saves unchanged. A cell that raises stops
the run with its traceback, and that notebook is not saved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def refresh(path: Path, *, timeout: int) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        store_widget_state=False,
    )
    client.execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.metadata.pop("execution", None)
    notebook.metadata.pop("widgets", None)
    nbformat.validate(notebook)
    nbformat.write(notebook, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks to refresh (default: all in notebooks/)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        print(f"refreshing {path.relative_to(ROOT) if path.is_absolute() else path} ...", flush=True)
        refresh(path.resolve(), timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
