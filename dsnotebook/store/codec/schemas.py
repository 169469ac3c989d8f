"""Partial reads and schemas: :func:`select` plans a read of some columns, :func:`schema` lists
the columns' dtypes, and :func:`schema_diff` compares two versions' schemas for appends, with
the label keys and object-kind rules :mod:`dsnotebook.store.append` shares."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dsnotebook._compat import dtype_label, string_dtype
from dsnotebook.errors import ValidationError

from .arrow_dtypes import _type_from_json
from .decoding import _check_format, _decode_columns, _decode_embedded
from .values import _repr, _scalar_from_json, _short, _tz_from_json


def _describe_labels(labels: list, limit: int = 50) -> str:
    shown = ", ".join(_short(label, 40) for label in labels[:limit])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > limit else "")


def select(manifest: dict, labels: Sequence | None) -> tuple[list[str], dict]:
    """Plan a read of some columns.

    Args:
        manifest: a version's manifest.
        labels: the column labels to read, in the order wanted; None reads all columns.

    Returns:
        The SQL column names to select (index columns and hidden companions included),
        and a manifest that :func:`decode` accepts with exactly those columns, in that
        order. The decoded frame equals ``df[labels]``. An empty ``labels`` with a
        RangeIndex needs no SQL column at all: then give :func:`decode` the row count as
        ``manifest["nrows"]``.

    Raises:
        ValidationError: a label is unknown (the message lists the available labels), is
            repeated, or ``labels`` is a single string.
    """
    _check_format(manifest)
    if labels is None:
        return [name for name, _ in manifest["sql_columns"]], dict(manifest)
    if isinstance(labels, (str, bytes)):
        raise ValidationError(
            f"columns must be a list of column labels, got the single string {labels!r}; "
            f"pass [{labels!r}]"
        )
    labels = list(labels)
    available = _decode_columns(manifest)
    positions = []
    for label in labels:
        try:
            loc = available.get_loc(label)
        except (KeyError, TypeError, ValueError, pd.errors.InvalidIndexError):
            loc = None
        if not isinstance(loc, (int, np.integer)):
            raise ValidationError(
                f"unknown column {_short(label)}; available columns: {_describe_labels(available.tolist())}"
            )
        if int(loc) in positions:
            raise ValidationError(f"column {_short(label)} is requested twice; list each column once")
        positions.append(int(loc))
    data = [manifest["data"][p] for p in positions]
    level_specs = [] if manifest["index"]["kind"] == "range" else manifest["index"]["levels"]
    specs = level_specs + data
    wanted = [spec["sql"] for spec in specs] + [spec["marks_sql"] for spec in specs if "marks_sql" in spec]
    types = dict((name, sql_type) for name, sql_type in manifest["sql_columns"])
    reduced = dict(manifest)
    # Labels are decoded whole and then indexed (see _decode_columns); a second selection
    # indexes the first one's positions.
    taken = manifest.get("columns_taken") or {"of": len(manifest["data"]), "at": list(range(len(manifest["data"])))}
    reduced["columns_taken"] = {"of": taken["of"], "at": [taken["at"][p] for p in positions]}
    reduced["data"] = data
    reduced["sql_columns"] = [[name, types[name]] for name in wanted]
    return wanted, reduced


def schema(manifest: dict) -> list[tuple[object, str]]:
    """Return ``(label, pandas dtype string)`` for each data column, in column order.

    For example ``[("amount", "Int64"), ("when", "datetime64[ns, Europe/Paris]")]``.
    """
    _check_format(manifest)
    labels = _decode_columns(manifest).tolist()
    return [(label, _dtype(spec)) for label, spec in zip(labels, manifest["data"])]


def _dtype(spec: dict) -> str:
    """The pandas dtype's name: an Arrow-backed one's (``int64[pyarrow]``), not its storage's,
    and a string column's as this pandas names what :func:`decode` gives."""
    if "arrow" in spec:
        return spec["arrow"]["dtype"]
    if spec["kind"] == "string":
        return dtype_label(string_dtype(spec["storage"], spec["na"]))
    return spec["dtype"]


_STORAGE_KEYS = {"sql", "marks_sql", "null", "storage", "freq", "text_as"}


def _identity(spec: dict) -> str:
    """What must match for old and new values to decode alike (storage details excluded)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _STORAGE_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    if spec.get("kind") == "category" and "arrow" in spec:
        # An Arrow dictionary type does not name its values: each batch of a column may bring
        # its own dictionary, and appended rows add theirs (see :func:`united_categories`).
        spec = {k: v for k, v in spec.items() if k != "categories"}
    return json.dumps(strip(spec), sort_keys=True)


def united_categories(old: dict, new: dict) -> dict | None:
    """For two Arrow dictionary columns, the categories spec holding ``old``'s values and then
    those of ``new`` it lacks, in order (as Arrow unifies dictionaries); None for other columns.
    The rows store values, not codes, so the union only changes the manifest."""
    if not (old.get("kind") == new.get("kind") == "category" and "arrow" in old and "arrow" in new):
        return None
    a, b = old["categories"], new["categories"]
    united = dict(a)
    # A value's identity is its stored value and its mark (SQLite stores -0.0 as 0, marked).
    old_marks = a.get("marks") or [None] * len(a["values"])
    new_marks = b.get("marks") or [None] * len(b["values"])
    seen = {json.dumps([v, m], sort_keys=True) for v, m in zip(a["values"], old_marks)}
    added = [(v, m) for v, m in zip(b["values"], new_marks) if json.dumps([v, m], sort_keys=True) not in seen]
    united["values"] = [*a["values"], *(v for v, _ in added)]
    if "marks" in a or "marks" in b:
        united["marks"] = [*old_marks, *(m for _, m in added)]
    return united


def _describe_type(spec: dict) -> str:
    if "arrow" in spec:
        return spec["arrow"]["dtype"]
    if spec["kind"] == "object":
        return f"object ({spec['object']} values)"
    if spec["kind"] == "category":
        categories = _decode_embedded(spec["categories"], "categories").tolist()
        shown = _describe_labels(categories, limit=10)
        # The categories' own dtype tells apart what the values alone do not (str and object text).
        return f"category ([{shown}] as {_describe_type(spec['categories'])}, ordered={spec['ordered']})"
    return _dtype(spec)


def _describe_index(spec: dict) -> str:
    if spec["kind"] == "range":
        name = _scalar_from_json(spec["name"])
        return "RangeIndex" + ("" if name is None else f" (name {name!r})")
    names = [_scalar_from_json(name) for name in spec["names"]]
    levels = ", ".join(f"{name!r}: {_describe_type(level)}" for name, level in zip(names, spec["levels"]))
    return f"{'MultiIndex' if spec['kind'] == 'multi' else 'Index'}({levels})"


def _without_numpy_tags(value: Any) -> Any:
    """A name's JSON form with NumPy scalar tags dropped: np.int64(7) names what 7 names."""
    if isinstance(value, dict):
        if "$numpy" in value:
            return _without_numpy_tags(value["value"])
        return {k: _without_numpy_tags(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_numpy_tags(v) for v in value]
    return value


def _index_identity(spec: dict) -> str:
    if spec["kind"] == "range":
        return json.dumps(["range", _without_numpy_tags(spec["name"])])
    names = _without_numpy_tags(spec["names"])
    return json.dumps([spec["kind"], names, [_identity(level) for level in spec["levels"]]])


def _label_key(label: Any) -> tuple[str, str]:
    # Labels 1, 1.0 and True compare equal in Python but are different columns here; a NumPy
    # scalar is the same column as its Python value (np.int64(1) and 1).
    def plain(value: Any) -> Any:
        if type(value) is tuple:
            return tuple(plain(v) for v in value)
        if isinstance(value, np.generic) and not isinstance(value, (np.datetime64, np.timedelta64)):
            return value.item()
        return value

    label = plain(label)
    return type(label).__name__, _repr(label)


def _columns_by_label(manifest: dict) -> dict[tuple[str, str], tuple[Any, dict]]:
    labels = _decode_columns(manifest).tolist()
    return {_label_key(label): (label, spec) for label, spec in zip(labels, manifest["data"])}


def _compatible_objects(a: dict, b: dict) -> bool:
    """Object columns whose values are all missing take on the other side's kind of value."""
    return a["kind"] == b["kind"] == "object" and "none" in (a["object"], b["object"])


#: Storage kinds whose pandas dtype has one Arrow type (``pa.array`` of an empty array of it).
_ARROW_MAPPED_KINDS = ("numpy", "float", "masked", "datetime", "timedelta")


def arrow_type(spec: dict) -> str | None:
    """The Arrow type a data column's values take, for matching appends across kinds, or None
    where only the same dtype matches (categories, object values other than strings, ...).

    ``int64``, ``Int64`` and ``int64[pyarrow]`` give ``"int64"``; ``float64``, ``Float64`` and
    ``double[pyarrow]`` ``"double"``; ``datetime64[ns, UTC]`` ``"timestamp[ns, tz=UTC]"``; all
    strings (``str``, ``string``, an object column of strings, Arrow ``string`` and
    ``large_string``) ``"string"``.
    """
    if "arrow" in spec:
        # The type itself, not its text: that is for reading, and a catalog may say otherwise.
        name = str(_type_from_json(spec["arrow"]["schema"]))
        return "string" if name in ("string", "large_string") else name
    kind = spec["kind"]
    if kind == "string" or (kind == "object" and spec.get("object") == "str"):
        return "string"
    if kind not in _ARROW_MAPPED_KINDS:
        return None
    try:
        return str(pa.array(pd.array([], dtype=_pandas_dtype(spec))).type)
    except (TypeError, ValueError, pa.ArrowException):
        return None  # a time zone Arrow cannot name: only the same dtype matches


def _pandas_dtype(spec: dict) -> Any:
    """The dtype of a NumPy, float, masked, datetime or timedelta array. A datetime's is made of
    its unit and time zone, never parsed from its name: a time zone named in text may be looked
    up on the file system."""
    if spec["kind"] == "datetime":
        if spec["tz"] is None:
            return np.dtype(f"M8[{spec['unit']}]")
        return pd.DatetimeTZDtype(spec["unit"], _tz_from_json(spec["tz"]))
    if spec["kind"] == "timedelta":
        return np.dtype(f"m8[{spec['unit']}]")
    return pd.api.types.pandas_dtype(spec["dtype"])


def same_arrow_type(a: dict, b: dict) -> bool:
    """Whether two columns of different dtypes store values of one Arrow type (:func:`arrow_type`)."""
    kind = arrow_type(a)
    return kind is not None and kind == arrow_type(b)


def merged_object_kind(a: dict, b: dict) -> str:
    """The value kind of two compatible object columns: the one that holds values, if any."""
    return b["object"] if a["object"] == "none" else a["object"]


def schema_diff(old_manifest: dict, new_manifest: dict) -> tuple[list, list, list]:
    """Compare two versions' schemas, for appends.

    Returns:
        ``(added, missing, retyped)``: labels only in the new manifest, labels only in the
        old one, and ``(label, old dtype, new dtype)`` for columns whose stored type
        differs (dtype, object value kind unless one side holds only missing values,
        categories and their order; not the string
        storage, missing-value kinds or SQL names). Columns of different dtypes whose values
        are of one Arrow type (:func:`arrow_type`: ``int64``, ``Int64`` and ``int64[pyarrow]``,
        say) match. A different index (kind, names or level types) is reported as a retyped
        entry labelled ``"<index>"``.
    """
    _check_format(old_manifest)
    _check_format(new_manifest)
    old = _columns_by_label(old_manifest)
    new = _columns_by_label(new_manifest)
    added = [label for key, (label, _) in new.items() if key not in old]
    missing = [label for key, (label, _) in old.items() if key not in new]
    retyped = []
    for key, (label, old_spec) in old.items():
        if key in new:
            new_spec = new[key][1]
            if (
                _identity(old_spec) != _identity(new_spec)
                and not _compatible_objects(old_spec, new_spec)
                and not same_arrow_type(old_spec, new_spec)
            ):
                retyped.append((label, _describe_type(old_spec), _describe_type(new_spec)))
    if _index_identity(old_manifest["index"]) != _index_identity(new_manifest["index"]):
        old_index, new_index = old_manifest["index"], new_manifest["index"]
        retyped.append(("<index>", _describe_index(old_index), _describe_index(new_index)))
    return added, missing, retyped
