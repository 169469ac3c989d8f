"""Check a built wheel, or the installed package, the way a user would meet it.

    python .ci/check_wheel.py contents dist/dsnotebook-X-py3-none-any.whl
        The wheel holds every module of dsnotebook/ in the checkout, py.typed and the console
        script, and nothing else: no tests, notebooks, benchmarks or scripts.

    python .ci/check_wheel.py imports
        Run inside the venv the wheel was installed into, from outside the checkout: dsnotebook
        comes from site-packages (not the checkout), and every module imports and has every name
        its ``__all__`` promises.
"""

from __future__ import annotations

import configparser
import importlib
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def check_contents(wheel: Path) -> list[str]:
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = [n for n in names if n.split("/", 1)[0].endswith(".dist-info")]
    package = [n for n in names if n.startswith("dsnotebook/")]
    problems = [f"{n}: outside the package and its .dist-info" for n in sorted(set(names) - set(dist_info) - set(package))]

    tracked = subprocess.run(["git", "ls-files", "dsnotebook"], cwd=ROOT, capture_output=True, text=True, check=True)
    expected = {n for n in tracked.stdout.split() if n.endswith(".py") or n.endswith("py.typed")}
    if not expected:
        problems.append("git ls-files found no package files to compare with")
    problems += [f"{n}: in the checkout, missing from the wheel" for n in sorted(expected - set(package))]
    problems += [f"{n}: in the wheel, not a tracked package file" for n in sorted(set(package) - expected)]
    if "dsnotebook/py.typed" not in package:
        problems.append("dsnotebook/py.typed is missing: type checkers would ignore the annotations")
    for part in ("tests/", "notebooks/", "benchmarks/", "scripts/", ".ci/"):
        problems += [f"{n}: {part} must not ship" for n in names if f"/{part}" in f"/{n}"]

    entry_points = [n for n in dist_info if n.endswith("/entry_points.txt")]
    scripts = configparser.ConfigParser()
    if entry_points:
        scripts.read_string(zipfile.ZipFile(wheel).read(entry_points[0]).decode())
    if not scripts.has_option("console_scripts", "dsnotebook"):
        problems.append("no 'dsnotebook' console script in entry_points.txt")
    print(f"{wheel.name}: {len(package)} package files, {len(dist_info)} metadata files")
    return problems


def check_imports() -> list[str]:
    import dsnotebook

    where = Path(dsnotebook.__file__).resolve()
    problems = []
    if where.parent == ROOT / "dsnotebook" or "site-packages" not in where.parts:
        problems.append(f"dsnotebook was imported from {where}, not from an installed wheel")
    modules = [dsnotebook.__name__] + [m.name for m in pkgutil.walk_packages(dsnotebook.__path__, "dsnotebook.")]
    names = 0
    for name in modules:
        if name == "dsnotebook.__main__":
            continue  # running it is running the CLI, which CI does
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):
            names += 1
            if not hasattr(module, public):
                problems.append(f"{name}.__all__ names {public!r}, which the module does not define")
    print(f"imported {len(modules)} modules from {where.parent}; {names} public names resolved")
    return problems


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    found = check_contents(Path(rest[0])) if command == "contents" else check_imports()
    for problem in found:
        print(f"  {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
