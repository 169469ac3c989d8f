"""Print a pip constraints file that pins every runtime dependency of dsnotebook, and of the
extras named on the command line, to the lower bound that pyproject.toml gives it.

CI installs with it to test the oldest versions the package claims to support:

    python .ci/lower_bounds.py postgres polars > lowest.txt
    pip install -e ".[dev,postgres]" -c lowest.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_BOUND = re.compile(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)\s*$")


def lower_bounds(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins = []
    for requirement in requirements:
        match = _BOUND.match(requirement)
        if match is None:
            raise SystemExit(f"{requirement!r} has no single lower bound ('name>=X'); pin it by hand")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    print("\n".join(lower_bounds(root / "pyproject.toml", sys.argv[1:])))
