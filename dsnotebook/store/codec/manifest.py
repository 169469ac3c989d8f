"""Checking a manifest before anything decodes it.

A version's manifest is read from the catalog, where anyone who can write to the database may
have changed it. :func:`check_manifest` holds it to the format the encoder writes (see the
package docstring) before any of it is used, and refuses anything else with a
:class:`~dsnotebook.errors.DatasetError` naming the dataset, the version, the place in the
manifest (``data[3].categories.values[7]``) and what was expected. Once a manifest has passed,
decoding it raises nothing but a ``DatasetError`` (for stored values that do not fit it), builds
nothing larger than what the manifest and the table hold, and never imports or evaluates what
it names. :func:`check_new_manifest` holds a manifest about to be published to the same rules,
so that nothing is written that could not be read back.

What is accepted:

- The format number. A newer one is refused with :class:`~dsnotebook.errors.VersionConflict`,
  as a newer catalog is.
- Known kinds, dtypes, units, time zones and tagged values only: dtypes come from fixed sets (no
  text reaches ``np.dtype`` or ``pandas_dtype`` unchecked), and an Arrow type must be one the
  codec stores, matching how its column is stored.
- Keys a release does not know are ignored, as releases have always ignored the keys later ones
  added (``"pushed"``, an array's ``"arrow"``); every key that decoding reads is checked.
- Sizes: at most :data:`MAX_TABLE_COLUMNS` columns and :data:`MAX_EMBEDDED_VALUES` values in
  any embedded list (column labels, categories, marks), marks as long as their values, labels
  as many as the columns, integers within 64 bits where they count or index anything, and a
  range index whose labels stay within 64 bits for the version's row count.
- Consistency: each array names one of the table's columns (``sql_columns``), of a storage type
  that holds its kind (natives only where the database has them), and each of those columns is
  named once.
- What pandas must accept: the column labels and the categories (unique, not null, of one dtype)
  are built once here, as decoding builds them, and pandas' refusal is reported by its path.

:mod:`.manifest_values` checks the values a manifest holds (shapes, scalars and their tags, time
zones) and :mod:`.manifest_arrays` its array specs; this module checks the index specs, what was
pushed, and the manifest as a whole.
"""

from __future__ import annotations

import json
from typing import Any

from dsnotebook.errors import DatasetError, ValidationError, VersionConflict

from .decoding import _decode_columns
from .encoding import _duplicate_labels
from .jsontext import UnreadableJSON, json_text_problem
from .manifest_arrays import (
    MAX_TABLE_COLUMNS,
    _array,
    _arrow_schema,
    _arrow_type,
    _Table,
)
from .manifest_values import (
    MAX_EMBEDDED_VALUES,
    _built,
    _choice,
    _describe,
    _dict,
    _fail,
    _get,
    _int,
    _key,
    _list,
    _Refused,
    _scalar,
)
from .values import _INT64_MAX, _INT64_MIN, MANIFEST_FORMAT, _short

__all__ = ["MAX_EMBEDDED_VALUES", "MAX_TABLE_COLUMNS", "check_manifest", "check_new_manifest"]


def _index(spec: Any, at: str, *, table: _Table | None, labels: int | None, rows: int) -> dict:
    """An index spec: the row index (levels in ``table``), or the column labels (embedded,
    ``labels`` of them)."""
    spec = _dict(spec, at)
    kind = _choice(_get(spec, "kind", at), _key(at, "kind"), ("range", "index", "multi"))
    if kind == "range":
        start = _int(_get(spec, "start", at), _key(at, "start"))
        stop = _int(_get(spec, "stop", at), _key(at, "stop"))
        step = _int(_get(spec, "step", at), _key(at, "step"))
        if step == 0:
            _fail(_key(at, "step"), "expected a step other than 0")
        _scalar(_get(spec, "name", at), _key(at, "name"))
        if labels is not None and len(range(start, stop, step)) != labels:
            _fail(at, f"a range of {len(range(start, stop, step)):,} labels, but the manifest has {labels:,} columns")
        if labels is None and rows and not _INT64_MIN <= start + (rows - 1) * step <= _INT64_MAX:
            _fail(at, f"its labels for the version's {rows:,} rows go beyond 64-bit integers")
        return spec
    names = _list(_get(spec, "names", at), _key(at, "names"), most=MAX_TABLE_COLUMNS, least=1)
    levels = _list(_get(spec, "levels", at), _key(at, "levels"), most=MAX_TABLE_COLUMNS, least=1)
    if len(names) != len(levels) or (kind == "index" and len(levels) != 1):
        _fail(at, f"expected {'one level' if kind == 'index' else 'one name per level'}, got {len(names)} names and {len(levels)} levels")
    for k, name in enumerate(names):
        _scalar(name, _key(_key(at, "names"), k))
    for k, level in enumerate(levels):
        level_at = _key(_key(at, "levels"), k)
        level = _array(level, level_at, table=table, labels=labels is not None)
        if kind == "multi" and "freq" in level:
            _fail(_key(level_at, "freq"), "a level of a MultiIndex has no frequency")
        if labels is not None and len(level["values"]) != labels:
            _fail(_key(level_at, "values"), f"expected one label per column ({labels:,}), got {len(level['values']):,}")
    return spec


def _pushed(manifest: dict, labels: list) -> None:
    """What was pushed (see :mod:`dsnotebook.store.kinds`); a Table's or polars frame's schema
    must name the columns and give each the Arrow type it is stored as."""
    pushed = manifest.get("pushed")
    if pushed is None:
        return
    pushed = _dict(pushed, "pushed")
    kind = _choice(_get(pushed, "kind", "pushed"), "pushed.kind", ("series", "arrow", "polars"))
    if kind == "series":
        _scalar(_get(pushed, "name", "pushed"), "pushed.name")
        return
    schema = _arrow_schema(_get(pushed, "schema", "pushed"), "pushed.schema", fields=len(labels))
    if len(set(schema.names)) != len(schema.names):
        _fail("pushed.schema", "names a field twice")
    for i, (field, label, spec) in enumerate(zip(schema, labels, manifest["data"])):
        at = f"pushed.schema (field {i})"
        if type(label) is not str or field.name != label:
            _fail(at, f"is named {field.name!r}, but column {i} is labelled {_short(label)}")
        stored = _arrow_type(spec["arrow"]["schema"], "") if "arrow" in spec else None
        if stored != field.type:
            _fail(at, f"has the type {field.type}, but column {i} is stored as {stored or spec['dtype']}")


def _check(manifest: Any, *, rows: int, columns: int | None, native_types: bool) -> dict:
    manifest = _dict(manifest, "")
    version = manifest.get("format")
    if type(version) is int and version > MANIFEST_FORMAT:
        raise VersionConflict(
            f"its manifest has format {version}, but this dsnotebook reads format {MANIFEST_FORMAT}; "
            "upgrade dsnotebook to read it"
        )
    _choice(_get(manifest, "format", ""), "format", (MANIFEST_FORMAT,))
    for key in ("nrows", "columns_taken"):
        if key in manifest:
            _fail(key, "only the manifest of a partial read holds it, never a stored one")
    table = _Table(_get(manifest, "sql_columns", ""), native_types)
    _index(_get(manifest, "index", ""), "index", table=table, labels=None, rows=rows)
    data = _list(_get(manifest, "data", ""), "data", most=MAX_TABLE_COLUMNS, least=1)
    if columns is not None and columns != len(data):
        _fail("data", f"describes {len(data):,} columns, but the catalog counts {_describe(columns)}")
    for i, spec in enumerate(data):
        _array(spec, _key("data", i), table=table)
    table.all_named()
    _index(_get(manifest, "columns", ""), "columns", table=None, labels=len(data), rows=rows)
    with _built("columns", "the column labels"):
        labels = _decode_columns(manifest)
        duplicates = _duplicate_labels(labels)
    if duplicates:
        _fail("columns", f"labels two columns alike: {', '.join(_short(d) for d in duplicates)}")
    _pushed(manifest, labels.tolist())
    return manifest


def check_manifest(
    manifest: object, *, dataset: str, version: int, rows: object, columns: object = None, native_types: bool = True
) -> dict:
    """Check a manifest read from the catalog before anything uses it.

    Args:
        manifest: the value read: a dict, or whatever the catalog held instead (an
            :class:`~dsnotebook.store.codec.jsontext.UnreadableJSON` marker, a list, ...).
        dataset, version: the dataset's name and the version's number, for the message.
        rows: the version's row count in the catalog.
        columns: the version's column count in the catalog (None: not compared).
        native_types: whether the database stores native types (see the backend's
            capabilities); without, only the generic storage types are accepted.

    Returns:
        ``manifest``, unchanged.

    Raises:
        DatasetError: the row count is not a count, or the manifest is malformed or describes
            what dsnotebook does not store; the message names the dataset, the version, the
            place in the manifest and what was expected there.
        VersionConflict: the manifest has a newer format than this dsnotebook reads.
    """
    name = f"dataset {dataset!r} version {version}"
    if type(rows) is not int or not 0 <= rows <= _INT64_MAX:
        raise DatasetError(f"{name} cannot be read: its row count in the catalog is {_describe(rows)}, not a count of rows")
    if isinstance(manifest, UnreadableJSON):
        raise DatasetError(
            f"{name} cannot be read: its manifest in the catalog cannot be read: {manifest.reason}; "
            "push the data again, or delete this version"
        )
    try:
        return _check(manifest, rows=rows, columns=columns, native_types=native_types)
    except _Refused as exc:
        where = f" at {exc.at}" if exc.at else ""
        raise DatasetError(
            f"{name} cannot be read: its manifest in the catalog is malformed{where}: {exc.problem}; "
            "push the data again, or delete this version"
        ) from None
    except VersionConflict as exc:
        raise VersionConflict(f"{name} cannot be read: {exc}") from None


def check_new_manifest(manifest: dict, *, rows: int, native_types: bool = True) -> None:
    """Refuse a manifest about to be published that :func:`check_manifest` would refuse when read
    back: its JSON text too long or nested too deep, or a part over its limit.

    Args:
        manifest: the manifest of an encoded frame (or of an append's or a stream's version).
        rows: the version's row count.
        native_types: whether the database stores native types (as for :func:`check_manifest`).

    Raises:
        ValidationError: naming the part and the limit.
    """
    text = json.dumps(manifest)  # as SQLAlchemy's JSON type writes it
    problem = json_text_problem(text)
    if problem is not None:
        raise ValidationError(
            f"the frame cannot be stored: {problem.replace('its JSON', 'its manifest (dtypes, labels, categories) as JSON')}; "
            "store fewer or shorter column labels or categories"
        )
    try:
        _check(json.loads(text), rows=rows, columns=None, native_types=native_types)
    except _Refused as exc:
        where = f" at {exc.at}" if exc.at else ""
        raise ValidationError(f"the frame cannot be stored: its manifest could not be read back{where}: {exc.problem}") from None
