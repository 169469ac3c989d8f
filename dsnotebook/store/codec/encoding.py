"""Encoding a frame: the checks of its column labels, the specs of its index and column labels,
the SQL column names, and :func:`encode`, which assembles the :class:`EncodedFrame`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from dsnotebook.errors import ValidationError

from .arrays import _embed, _encode_array
from .encoded import (
    EncodedFrame,
    SqlColumn,
    _arrow_of,
    _marks_arrow,
    _marks_to_list,
    _Part,
    _TableColumn,
)
from .native import _go_native, _is_text_part, _store_text_with_nul_as_bytes
from .values import (
    _LABELS_ACCEPTED,
    HIDDEN_PREFIX,
    MANIFEST_FORMAT,
    _repr,
    _scalar_to_json,
    _short,
)


def _where_column(label: Any) -> str:
    return f"column {label!r}"


# ---------------------------------------------------------------------------------------
# Indexes (the row index in SQL, the column labels in JSON)
# ---------------------------------------------------------------------------------------


def _encode_index(index: pd.Index, where: str, *, embed: bool) -> tuple[dict, list[_Part]]:
    """Describe an index; return its spec and, unless embedded, one part per level."""
    if type(index) is pd.RangeIndex:
        spec = {
            "kind": "range",
            "start": index.start,
            "stop": index.stop,
            "step": index.step,
            "name": _scalar_to_json(index.name, f"the name of {where}"),
        }
        return spec, []
    multi = isinstance(index, pd.MultiIndex)
    if multi:
        # get_level_values(k) looks k up among the names first; make names positional.
        positional = index.set_names(list(range(index.nlevels)))
        levels = [positional.get_level_values(k) for k in range(index.nlevels)]
    else:
        levels = [index]
    names = [_scalar_to_json(name, f"the names of {where}") for name in index.names]
    specs: list[dict] = []
    parts: list[_Part] = []
    for k, level in enumerate(levels):
        level_where = f"{where} (level {k}, name {index.names[k]!r})" if multi else where
        if embed and level.dtype == object:
            # Column labels of an object Index may legitimately mix kinds ('a', 1, None).
            values = [_scalar_to_json(v, level_where) for v in level]
            spec = {"kind": "labels", "dtype": "object", "values": values}
        else:
            part = _encode_array(level, level_where)
            spec = _embed(part) if embed else part.spec
            parts.append(part)
        freq = getattr(level, "freqstr", None) if not multi else None
        if freq is not None:
            spec["freq"] = freq
        specs.append(spec)
    return {"kind": "multi" if multi else "index", "names": names, "levels": specs}, parts


MAX_NAME_BYTES = 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1)

#: PostgreSQL's system columns: every table has them, so no column of its own may take these
#: names (quoted identifiers are case-sensitive, so "CTID" is free).
_PG_SYSTEM_COLUMNS = frozenset({"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})


def _sql_names(labels: Sequence) -> list[str]:
    """Readable, unique (case-insensitively) SQL names of at most 63 UTF-8 bytes, none of them
    a PostgreSQL system column's."""

    def cut(text: str, limit: int) -> str:
        return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")

    used: set[str] = set()
    names = []
    for i, label in enumerate(labels):
        base = str(label).replace("\x00", "")
        if base.lower().startswith(HIDDEN_PREFIX):
            base = "_" + base
        if not base:
            base = f"column_{i}"
        name = cut(base, MAX_NAME_BYTES)
        suffix_no = 2
        while name.lower() in used or name in _PG_SYSTEM_COLUMNS:
            suffix = f"_{suffix_no}"
            name = cut(base, MAX_NAME_BYTES - len(suffix)) + suffix
            suffix_no += 1
        used.add(name.lower())
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------
# encode
# ---------------------------------------------------------------------------------------


def _check_hashable(labels: pd.Index) -> None:
    """Refuse, naming it, a label pandas cannot hash (a list, a signalling NaN), before pandas
    itself fails on it with a TypeError."""
    if labels.dtype != object or isinstance(labels, pd.MultiIndex):
        return  # a MultiIndex hashed its labels when it was made
    for label in labels:
        try:
            hash(label)
        except TypeError:
            raise ValidationError(
                f"the column labels include {_short(label)} of type {type(label).__name__}, which "
                f"cannot be hashed, so no column can be looked up by it; accepted labels: {_LABELS_ACCEPTED}"
            ) from None


def _duplicate_labels(labels: pd.Index) -> list:
    """Every label pandas counts as equal to another, each shown once: True, 1 and 1.0 are one
    label to pandas, and all three are named."""
    try:
        with warnings.catch_warnings():
            # pandas checks float32 labels near their largest value through a narrowing cast,
            # which warns of an overflow without changing the answer.
            warnings.simplefilter("ignore", RuntimeWarning)
            if labels.is_unique:
                return []
            equal = labels.duplicated(keep=False)
    except OverflowError:
        # pandas first checks whether the labels are sorted, and comparing np.float64(1.0) with
        # 2**1100 overflows; Series.duplicated only hashes them.
        equal = pd.Series(labels.to_numpy(), dtype=object).duplicated(keep=False).to_numpy()
    return list({(type(d), _repr(d)): d for d in labels[equal].tolist()}.values())


def encode(obj: pd.DataFrame | pd.Series, *, native_types: bool = False) -> EncodedFrame:
    """Validate a frame and prepare it for storage as a typed SQL table.

    Args:
        obj: the DataFrame to store. A Series is stored as the one-column frame
            ``obj.to_frame()``: its column label is the Series' name, or ``0`` (with
            RangeIndex column labels) when the name is None, and it is pulled back as
            that DataFrame.

        native_types: store for a database with native types (PostgreSQL; see the backend's
            capabilities): besides the generic types INTEGER, REAL, TEXT and BLOB, use the
            native types where they hold the values exactly (see :func:`_go_native`), and store
            a text column holding NUL characters, which such text cannot hold, as its UTF-8
            bytes (BLOB), losslessly. Without, only the generic types.

    Returns:
        An :class:`EncodedFrame`: the table's columns, the manifest, and lazily
        converted row chunks (Python tuples, or Arrow record batches).

    Raises:
        ValidationError: the input is not a DataFrame or Series; it has no columns, or
            duplicate, unhashable or unstorable column labels or names; or a column holds
            something that cannot come back identical (complex numbers, arbitrary Python
            objects, mixed kinds in an object column, integers outside the 64-bit range,
            unsupported dtypes). The message names the column (or label) and the first
            offending value. All rows are checked before this returns.
    """
    if isinstance(obj, pd.Series):
        frame = obj.to_frame()
    elif isinstance(obj, pd.DataFrame):
        frame = obj
    else:
        raise ValidationError(
            f"expected a pandas DataFrame or Series, got {type(obj).__name__}; "
            "a pandas DataFrame or Series is accepted"
        )
    labels = frame.columns
    if len(labels) == 0:
        raise ValidationError(
            "the DataFrame has no columns; a DataFrame with at least one column is accepted"
        )
    _check_hashable(labels)
    duplicates = _duplicate_labels(labels)
    if duplicates:
        raise ValidationError(
            f"duplicate column labels {', '.join(_short(d) for d in duplicates)} "
            "(pandas counts these as equal); column labels must be unique (rename the columns first)"
        )
    columns_spec, _ = _encode_index(labels, "the column labels", embed=True)
    index_spec, index_parts = _encode_index(frame.index, "the index", embed=False)
    label_list = labels.tolist()
    data_parts = [_encode_array(frame.iloc[:, i], _where_column(label)) for i, label in enumerate(label_list)]
    if native_types:
        for k, part in enumerate(index_parts):
            _go_native(part, f"the index (level {k})")
        for label, part in zip(label_list, data_parts):
            _go_native(part, _where_column(label))
        for part in [*index_parts, *data_parts]:
            if _is_text_part(part):
                _store_text_with_nul_as_bytes(part)

    # Index levels first (a key for SQL users), data in column order, marks at the end.
    value_cols: list[_TableColumn] = []
    mark_cols: list[_TableColumn] = []
    named = [
        (f"{HIDDEN_PREFIX}index_{k}", f"{HIDDEN_PREFIX}index_{k}_missing", part)
        for k, part in enumerate(index_parts)
    ]
    named += [
        (name, f"{HIDDEN_PREFIX}missing_{i}", part)
        for i, (name, part) in enumerate(zip(_sql_names(label_list), data_parts))
    ]
    for name, marks_name, part in named:
        part.spec["sql"] = name
        value_cols.append(_TableColumn(name, part.sql_type, part.values, part.wire or part.values, _arrow_of(part)))
        if part.marks is not None:
            part.spec["marks_sql"] = marks_name

            def mark_values(start: int, stop: int, marks: Callable = part.marks) -> list:
                return _marks_to_list(marks(start, stop))

            def mark_arrow(start: int, stop: int, marks: Callable = part.marks) -> pa.Array:
                return _marks_arrow(marks(start, stop))

            mark_cols.append(_TableColumn(marks_name, "INTEGER", mark_values, mark_values, mark_arrow))
    table = value_cols + mark_cols
    manifest = {
        "format": MANIFEST_FORMAT,
        "columns": columns_spec,
        "index": index_spec,
        "data": [part.spec for part in data_parts],
        "sql_columns": [[c.name, c.sql_type] for c in table],
    }
    parts = index_parts + data_parts
    return EncodedFrame(
        columns=[SqlColumn(c.name, c.sql_type) for c in table],
        manifest=manifest,
        nrows=len(frame),
        producers=[c.values for c in table],
        feeders=[part.feed for part in parts if part.feed is not None],
        owners=[part.owner for part in parts],
        wire_producers=[c.wire for c in table],
        arrow_producers=[c.arrow for c in table],
    )
