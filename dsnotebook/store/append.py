"""Appending: how the previous version's rows join a staged frame in one SQL table.

Two versions with the same schema can still differ in storage details: a column needs a hidden
marks column only when its values hold more than one kind of missing marker (see
:mod:`dsnotebook.store.codec`), and column order may differ. :func:`plan_append` works out the
combined table's manifest, the marks columns the staged rows need, and the SQL expression that
reads each combined column from the previous version's table.

A column may also be appended in another dtype of the same Arrow type (see
:func:`dsnotebook.store.codec.schema_diff`: a polars ``Int64`` onto a NumPy ``int64``, say). The
combined column keeps the previous version's dtype where the staged values fit it exactly, and
takes the staged dtype where they do not: :func:`fit_checks` gives the SQL conditions that find a
staged value the previous dtype cannot hold (a NULL for NumPy integers and bools, a NULL that is
not a NaN for NumPy floats), and :func:`plan_append` takes the columns where one was found.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import SchemaMismatch
from . import kinds
from .codec import _MARK_CODES, HIDDEN_PREFIX, _label_key, merged_object_kind, schema
from .codec.schemas import _compatible_objects, _identity, united_categories

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["AppendPlan", "fit_checks", "plan_append"]


@dataclass
class AppendPlan:
    """What publishing an append has to do, in order.

    Attributes:
        manifest: the manifest of the combined table.
        add_marks: ``(marks column, value column, code)``: add this INTEGER column to the staged
            table and set it to ``code`` where the value column is NULL.
        select_old: ``(staged column, SQL expression over the previous table)`` for each column
            of the combined table, in the staged table's order.
        retype: ``(staged column, SQL type, SQL expression)``: change the staged column to this
            type, converting its values with the expression. A staged column that holds only
            NULLs (an object column without values) takes the previous version's type; a column
            stored in a native type one side and a more general one the other (see
            :func:`combined_type`) takes the general one.
        to_bytes: staged text columns to convert to their UTF-8 bytes, because the previous
            version stored that column as bytes (its strings hold NUL characters).
    """

    manifest: dict
    add_marks: list[tuple[str, str, int]] = field(default_factory=list)
    retype: list[tuple[str, str, str]] = field(default_factory=list)
    select_old: list[tuple[str, str]] = field(default_factory=list)
    to_bytes: list[str] = field(default_factory=list)


def _pairs(old: dict, new: dict) -> list[tuple[dict, dict, str]]:
    """(old spec, new spec, default marks name) for every stored array, index levels first."""
    pairs = []
    if new["index"]["kind"] != "range":
        for k, (o, n) in enumerate(zip(old["index"]["levels"], new["index"]["levels"], strict=True)):
            pairs.append((o, n, f"{HIDDEN_PREFIX}index_{k}_missing"))
    old_by_label = {_label_key(label): spec for (label, _), spec in zip(schema(old), old["data"], strict=True)}
    for i, ((label, _), spec) in enumerate(zip(schema(new), new["data"], strict=True)):
        pairs.append((old_by_label[_label_key(label)], spec, f"{HIDDEN_PREFIX}missing_{i}"))
    return pairs


# Where two versions store one column in different types (PostgreSQL's native type one side, and
# either an older dsnotebook's generic type or a value the native type could not hold exactly the
# other), the combined table uses the type that holds both sides' values exactly.
_COMBINED_TYPES = {
    frozenset({"INTEGER", "BOOLEAN"}): "BOOLEAN",
    frozenset({"INTEGER", "TIMESTAMP"}): "INTEGER",
    frozenset({"INTEGER", "TIMESTAMPTZ"}): "INTEGER",
    frozenset({"INTEGER", "INTERVAL"}): "INTEGER",
    frozenset({"TEXT", "NUMERIC"}): "TEXT",
    frozenset({"JSON", "JSONB"}): "JSON",
    frozenset({"TEXT", "JSON"}): "TEXT",
    frozenset({"TEXT", "JSONB"}): "TEXT",
}


def combined_type(a: str, b: str) -> str:
    """The storage type that holds exactly the values of both of these (equal dtypes).

    Raises:
        SchemaMismatch: no storage type holds both (only a manifest changed in the catalog
            stores one dtype so).
    """
    if a == b:
        return a
    combined = _COMBINED_TYPES.get(frozenset({a, b}))
    if combined is None:
        raise SchemaMismatch(f"values stored as {a} and as {b} have no storage type in common")
    return combined


def _unit(spec: dict) -> str | None:
    if spec.get("kind") == "category":
        return spec["categories"].get("unit")
    return spec.get("unit")


def _retyped(o: dict, n: dict) -> bool:
    """Whether a column is appended in another dtype (of the same Arrow type, schema_diff saw to it).

    A string column's storage counts: text pushed as ``string[python]`` and appended as
    ``string[pyarrow]`` keeps its first storage. (Under pandas 2.2 every NaN string column is
    Arrow-backed, so this also keeps a pandas 3 Python-backed ``str`` column as it was.)"""
    if o.get("kind") == n.get("kind") == "string" and o.get("storage") != n.get("storage"):
        return True
    return _identity(o) != _identity(n) and not _compatible_objects(o, n)


def _unheld(o: dict, n: dict, quote: Callable[[str], str]) -> str | None:
    """SQL condition on the staged table, true on a staged value of ``n`` that the dtype of
    ``o`` cannot hold; None where it holds them all (nullable, Arrow-backed, string and
    datetime dtypes)."""
    value = quote(n["sql"])
    if o["kind"] == "numpy":  # NumPy integers and bools have no missing value
        return f"{value} IS NULL"
    if o["kind"] == "float":  # a NumPy float's one missing value is NaN, which a null is not
        if "marks_sql" in n:
            return f"{value} IS NULL AND COALESCE({quote(n['marks_sql'])}, 0) <> {_MARK_CODES['nan']}"
        return None if n.get("null") == "nan" else f"{value} IS NULL"
    return None


def fit_checks(old: dict, new: dict, quote: Callable[[str], str]) -> list[tuple[str, str]]:
    """``(staged column, SQL condition)`` for each column appended in another dtype that the
    previous version's dtype may not hold: a staged row where the condition holds has a value
    it cannot. Pass the columns where one does as :func:`plan_append`'s ``unfit``."""
    checks = []
    for o, n, _ in _pairs(old, new):
        condition = _unheld(o, n, quote) if _retyped(o, n) else None
        if condition is not None:
            checks.append((n["sql"], condition))
    return checks


# Where the stored values live: the rest of a spec is its dtype.
_LOCATION_KEYS = {"sql", "marks_sql", "null", "text_as"}


def _take_dtype(combined: dict, o: dict) -> None:
    """Give the combined column (the staged one's spec) the dtype of the previous version's ``o``."""
    location = {key: value for key, value in combined.items() if key in _LOCATION_KEYS}
    combined.clear()
    combined.update({key: value for key, value in o.items() if key not in _LOCATION_KEYS})
    combined.update(location)
    if "null" not in o:
        combined.pop("null", None)
    elif o["kind"] == "float":
        combined["null"] = "nan"  # the staged values fit: their NULLs are NaN
    else:
        combined.setdefault("null", o["null"])


def plan_append(
    old: dict, new: dict, quote: Callable[[str], str], backend: Backend, *, unfit: Collection[str] = ()
) -> AppendPlan:
    """Plan appending a staged frame (manifest ``new``) to a version (manifest ``old``).

    The schemas must already match (:func:`dsnotebook.store.codec.schema_diff` empty). The
    combined table keeps the staged frame's layout; the previous version's rows are mapped onto
    it. ``quote`` quotes an identifier for the target database, and ``backend`` gives its
    conversions (UTF-8 bytes of text, and between native and generic types). A column
    appended in another dtype of the same Arrow type keeps the previous version's dtype, unless
    it is in ``unfit`` (staged columns with a value that dtype cannot hold, see
    :func:`fit_checks`): then it takes the staged dtype.
    """
    manifest = copy.deepcopy(new)
    plan = AppendPlan(manifest=manifest)
    combined_specs = _combined_specs(manifest)
    expressions: dict[str, str] = {}
    old_types = dict((name, sql_type) for name, sql_type in old["sql_columns"])
    new_types = dict((name, sql_type) for name, sql_type in new["sql_columns"])
    for (o, n, marks_name), combined in zip(_pairs(old, new), combined_specs, strict=True):
        if _retyped(o, n) and n["sql"] not in unfit:
            _take_dtype(combined, o)
        # A previous column without any value (object kind "none", stored untyped) contributes
        # plain NULLs: typed databases refuse to copy its type into the staged column's.
        old_is_empty = o.get("kind") == "object" and o.get("object") == "none"
        # A float NaN is stored as NULL, but versions written by earlier releases on PostgreSQL
        # may hold NaN values: the combined table gets NULL for them too.
        old_value = backend.nan_to_null(quote(o["sql"])) if old_types[o["sql"]] == "REAL" else quote(o["sql"])
        expressions[n["sql"]] = "NULL" if old_is_empty and n.get("object") != "none" else old_value
        # Text holding NUL characters is stored as UTF-8 bytes (see codec.encode); the combined
        # column is bytes if either side is.
        old_bytes, new_bytes = o.get("text_as") == "utf-8", n.get("text_as") == "utf-8"
        if new_bytes and not old_bytes and not old_is_empty:
            expressions[n["sql"]] = backend.utf8_bytes(quote(o["sql"]))
        elif old_bytes and not new_bytes:
            plan.to_bytes.append(n["sql"])
            combined["text_as"] = "utf-8"
        elif not old_is_empty and not old_bytes and n.get("object") != "none":
            old_type, new_type = old_types[o["sql"]], new_types[n["sql"]]
            if old_type != new_type:
                try:
                    target = combined_type(old_type, new_type)
                except SchemaMismatch as exc:
                    raise SchemaMismatch(
                        f"cannot append to column {n['sql']!r}: {exc}", retyped=[(n["sql"], old_type, new_type)]
                    ) from None
                if target != old_type:
                    expressions[n["sql"]] = backend.convert(quote(o["sql"]), old_type, target, _unit(o))
                if target != new_type:
                    plan.retype.append((n["sql"], target, backend.convert(quote(n["sql"]), new_type, target, _unit(n))))
        combined.pop("freq", None)  # a frequency rarely survives an append; pandas infers none
        categories = united_categories(o, n)
        if categories is not None:
            combined["categories"] = categories
        if o["kind"] == n["kind"] == "object":
            combined["object"] = merged_object_kind(o, n)
            if n["object"] == "none" and o["object"] != "none":
                plan.retype.append((n["sql"], _sql_type(old, o["sql"]), "NULL"))
        # A side without a "null" has no NULL to tell apart (NumPy integers, strings, datetimes).
        new_null = combined.get("null", o.get("null"))
        old_null = o.get("null", new_null)
        if "marks_sql" not in o and "marks_sql" not in n and old_null == new_null:
            continue
        name = n.get("marks_sql", marks_name)
        if "marks_sql" not in n:
            plan.add_marks.append((name, n["sql"], _MARK_CODES[new_null]))
            manifest["sql_columns"].append([name, "INTEGER"])
            combined["marks_sql"] = name
        if "marks_sql" in o:
            expressions[name] = quote(o["marks_sql"])
        else:
            # A previous dtype without a "null" (strings) has no NULL to mark.
            code = _MARK_CODES.get(old_null)
            expressions[name] = "NULL" if code is None else f"CASE WHEN {old_value} IS NULL THEN {code} END"
    # Columns come back in the previous version's order, as pd.concat would give them.
    by_label = {_label_key(label): spec for (label, _), spec in zip(schema(manifest), manifest["data"], strict=True)}
    manifest["data"] = [by_label[_label_key(label)] for label, _ in schema(old)]
    manifest["columns"] = copy.deepcopy(old["columns"])
    kinds.inherit(old, manifest)  # the version keeps the kind of its first push
    if old["index"]["kind"] == "range":
        # The appended rows continue the previous version's range, as pd.concat numbers them.
        manifest["index"] = copy.deepcopy(old["index"])
    types = {column: sql_type for column, sql_type, _ in plan.retype}
    types.update({column: "BLOB" for column in plan.to_bytes})
    manifest["sql_columns"] = [[column, types.get(column, sql_type)] for column, sql_type in manifest["sql_columns"]]
    for column, _ in manifest["sql_columns"]:
        plan.select_old.append((column, expressions.get(column, "NULL")))
    return plan


def _sql_type(manifest: dict, column: str) -> str:
    return next(sql_type for name, sql_type in manifest["sql_columns"] if name == column)


def _combined_specs(manifest: dict) -> list[dict]:
    levels = manifest["index"]["levels"] if manifest["index"]["kind"] != "range" else []
    return [*levels, *manifest["data"]]
