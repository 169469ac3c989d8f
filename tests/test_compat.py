"""The pandas compatibility module: what it gives on the running pandas, and the rule that no
other module of the package asks which pandas it runs on."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pandas as pd
import pytest

from dsnotebook import _compat as compat
from dsnotebook.store.codec import decode, encode

from frametools import STR, assert_identical

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dsnotebook"
COMPAT = PACKAGE / "_compat.py"

# Names whose use is a question about the pandas version or its optional modes.
_VERSION_NAMES = {"PANDAS_3", "PANDAS_VERSION"}
_VERSION_STRINGS = {"pyarrow_numpy", "mode.copy_on_write", "future.infer_string"}
_VERSION_ATTRIBUTES = {"copy_on_write", "infer_string"}


def _pandas_branches(path: pathlib.Path, root: pathlib.Path = PACKAGE.parent) -> list[str]:
    """Places in a module that read pandas' version or version-dependent modes, or use what
    only one pandas line has: each one is a branch on the pandas version."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and (
            node.attr in _VERSION_NAMES | _VERSION_ATTRIBUTES
            or (node.attr == "__version__" and isinstance(node.value, ast.Name) and node.value.id in ("pd", "pandas"))
        ):
            found.append(f"{where}: reads .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in _VERSION_NAMES:
            found.append(f"{where}: uses {node.id}")
        elif isinstance(node, ast.alias) and node.name in _VERSION_NAMES:
            found.append(f"{where}: imports {node.name}")
        elif isinstance(node, ast.Constant) and node.value in _VERSION_STRINGS:
            found.append(f"{where}: names {node.value!r}")
        elif isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called == "StringDtype" and any(k.arg == "na_value" for k in node.keywords):
                found.append(f"{where}: StringDtype(na_value=...) exists in pandas 3 only")
            elif called == "version" and any(isinstance(a, ast.Constant) and a.value == "pandas" for a in node.args):
                found.append(f"{where}: asks for the installed pandas' version")
            elif called in ("hasattr", "getattr") and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in ("pd", "pandas"):
                found.append(f"{where}: probes pandas for a name")
    return found


def test_no_module_but_compat_branches_on_the_pandas_version():
    modules = [p for p in PACKAGE.rglob("*.py") if p != COMPAT]
    assert len(modules) > 20
    assert [b for p in modules for b in _pandas_branches(p)] == []


def test_the_branch_finder_finds_branches(tmp_path):
    """The rule above would pass on any code if it found nothing: it finds each form, and the
    compatibility module itself is full of them."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import pandas as pd\n"
        "from importlib.metadata import version\n"
        "if pd.__version__ >= '3':\n"
        "    d = pd.StringDtype('python', na_value=float('nan'))\n"
        "cow = pd.options.mode.copy_on_write\n"
        "x = pd.StringDtype('pyarrow_numpy') if version('pandas') < '3' else hasattr(pd, 'col')\n"
        "from dsnotebook._compat import PANDAS_3\n"
    )
    found = sorted(f.split(": ", 1)[0] for f in _pandas_branches(sample, tmp_path))
    assert found == ["sample.py:3", "sample.py:4", "sample.py:5", "sample.py:6", "sample.py:6", "sample.py:6", "sample.py:7"]
    assert len(_pandas_branches(COMPAT)) >= 5


@pytest.mark.parametrize("storage", ["python", "pyarrow"])
@pytest.mark.parametrize("na", ["nan", "na"])
def test_string_dtype_keeps_the_missing_value_and_the_manifest_records_it_alike(storage, na):
    dtype = compat.string_dtype(storage, na)
    values = pd.Series(["a", None, ""], dtype=dtype)
    assert (values.iloc[1] is pd.NA) == (na == "na")
    assert (isinstance(values.iloc[1], float) and np.isnan(values.iloc[1])) == (na == "nan")
    kind = compat.string_kind(dtype)
    # pandas 2.2 has no Python-backed NaN string dtype: Arrow storage stands in for it.
    assert kind == (storage if compat.PANDAS_3 or na == "na" else "pyarrow", na)
    assert compat.string_dtype(*kind) == dtype
    # The label tells NaN from NA strings apart on both lines (str() does not under pandas 2.2).
    assert compat.dtype_label(dtype) == ("string" if na == "na" else str(compat.default_string_dtype()) if compat.PANDAS_3 else "string[pyarrow_numpy]")
    spec = encode(pd.DataFrame({"s": values})).manifest["data"][0]
    assert (spec["dtype"], spec["storage"], spec["na"]) == (compat.string_dtype_name(na), kind[0], na)


def test_the_default_string_dtype_is_pandas_3s_str():
    assert compat.string_kind(STR) == ("pyarrow", "nan")
    if compat.PANDAS_3:
        assert STR == "str" and pd.Series(["a"]).dtype == STR


def test_a_snapshot_keeps_the_frame_as_it_was():
    df = pd.DataFrame({"a": [1, 2], "b": [1.5, 2.5], "s": pd.Series(["x", "y"], dtype=STR)})
    before = df.copy(deep=True)
    snapshot = compat.snapshot(df)
    df.iloc[0, 0] = 100
    df.loc[1, "b"] = -1.0
    df.loc[0, "s"] = "changed"
    assert_identical(snapshot, before)
    series = pd.Series([1.0, 2.0], name="x")
    kept = compat.snapshot(series)
    series.iloc[0] = 9.0
    assert kept.tolist() == [1.0, 2.0]


def test_a_nan_string_column_decodes_to_this_pandas_equivalent():
    """A manifest written under either pandas line names a NaN string column the same way."""
    spec_free = encode(pd.DataFrame({"s": pd.Series(["a", None], dtype=STR)}))
    manifest = spec_free.manifest
    assert manifest["data"][0]["dtype"] == "str"
    back = decode(manifest, [list(c) for c in zip(*spec_free.rows(0, 2))])
    assert back["s"].dtype == compat.default_string_dtype()
    assert back["s"].iloc[0] == "a" and np.isnan(back["s"].iloc[1])
