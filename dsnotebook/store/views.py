"""The SQL view of a dataset's latest version (``dsn_latest_<name>_<id>``), for people who query
the data with SQL.

A version's table is built for the exact round trip: a row-order column (``__dsn_row``), index
levels as ``__dsn_index_<k>``, hidden marks columns, and on SQLite datetimes and timedeltas as
integer counts. :func:`view_select` builds, from the version's manifest, the SELECT that shows
the same rows as people expect them:

- Each index level first, under its own name. Unnamed levels are named as
  ``DataFrame.to_sql`` names them: a single one ``index`` (``level_0`` if a column is labelled
  ``"index"``), several ``level_0``, ``level_1``, ... A range index, which the table does not
  store, is computed from the row order: ``start + step * (row_number() - 1)`` over the rows in
  order, so its labels are those ``pull`` gives, also after appends. The default RangeIndex
  (0, 1, 2, ...) is shown too, as ``to_sql`` writes it.
- Then the data columns, in column order, named ``str(label)``. The index names and the labels
  are made unique together and cut to 63 bytes as the codec names SQL columns (see
  :mod:`dsnotebook.store.codec`): an index level keeps its name, and a column whose name an
  index level already took gets a suffix (``_2``).
- The row-order column and the marks columns are left out.
- On a database without native time types (SQLite), datetimes are ISO-8601 text
  (``2024-03-31T10:00:00``, with the fraction of a second at the dtype's precision when it is
  not zero, ``2024-03-31T10:00:00.250000`` for microseconds), tz-aware ones in UTC with the
  offset ``+00:00`` (SQLite cannot convert between time zones); datetimes outside the years
  0000 to 9999, which SQLite's date functions do not cover, show the stored count. Timedeltas
  are seconds (REAL). Booleans are already stored as 0 and 1. ``datetime.date`` and
  ``datetime.time`` objects are stored as ISO text (``2024-03-31``, ``10:00:00.250000``) and
  shown as they are. Categories hold their values already; categories of datetimes or
  timedeltas are shown like those.
- On a database with native types (PostgreSQL), every column is shown as stored: booleans,
  timestamps, intervals, dates and times are native there, and the datetimes and timedeltas the codec keeps
  as integer counts (nanoseconds, or years outside 1 to 9999) stay counts in the dtype's unit.

The version table itself is never changed; only the view differs from it. The text is written
with SQLite's ``strftime`` and ``printf``: the backend's ``native_types`` capability chooses, and
SQLite is the one database without native time types.
"""

from __future__ import annotations

from collections.abc import Callable

from .codec import ROW_ID, _sql_names, schema
from .codec.values import _scalar_from_json

__all__ = ["index_names", "view_select"]

_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
#: The first and last second SQLite's date functions write (0000-01-01 and 9999-12-31 UTC).
_FIRST_SECOND = -62_167_219_200
_LAST_SECOND = 253_402_300_799
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def index_names(manifest: dict) -> list:
    """The names of the index levels as ``DataFrame.to_sql`` writes them: a level's own name,
    else ``index`` for a single level (``level_0`` if a column is labelled ``"index"``), else
    ``level_<k>``."""
    spec = manifest["index"]
    raw = [spec["name"]] if spec["kind"] == "range" else spec["names"]
    names = [_scalar_from_json(name) for name in raw]
    labels = [label for label, _ in schema(manifest)]
    if len(names) == 1 and names[0] is None and not any(isinstance(label, str) and label == "index" for label in labels):
        return ["index"]
    return [f"level_{k}" if name is None else name for k, name in enumerate(names)]


def view_select(manifest: dict, table: str, quote: Callable[[str], str], *, native_types: bool) -> str:
    """The SELECT of the view of ``table``, a version's table, described by ``manifest``.

    Args:
        manifest: the version's manifest.
        table: the version's table.
        quote: quotes an identifier for the database.
        native_types: whether the database stores native times (see the backend's
            capabilities); without, datetimes and timedeltas stored as counts are shown as ISO
            text and seconds.

    Returns:
        SQL text of a SELECT; see the module docstring for its columns.
    """
    levels = index_names(manifest)
    labels = [label for label, _ in schema(manifest)]
    # Names that would be empty take the codec's fallback, by level or column position.
    texts = [_text(name, f"level_{k}") for k, name in enumerate(levels)]
    texts += [_text(label, f"column_{i}") for i, label in enumerate(labels)]
    aliases = _sql_names(texts)
    types = {name: sql_type for name, sql_type in manifest["sql_columns"]}
    index = manifest["index"]
    if index["kind"] == "range":
        position = f"(row_number() OVER (ORDER BY {quote(ROW_ID)}) - 1)"
        expressions = [f"{int(index['start'])} + {int(index['step'])} * {position}"]
    else:
        expressions = [_expression(spec, types[spec["sql"]], quote, native_types) for spec in index["levels"]]
    expressions += [_expression(spec, types[spec["sql"]], quote, native_types) for spec in manifest["data"]]
    shown = ", ".join(f"{expression} AS {quote(alias)}" for expression, alias in zip(expressions, aliases, strict=True))
    return f"SELECT {shown} FROM {quote(table)}"


def _text(name: object, fallback: str) -> str:
    text = str(name)
    return text if text.replace("\x00", "") else fallback


def _expression(spec: dict, sql_type: str, quote: Callable[[str], str], native_types: bool) -> str:
    """The view's expression of one stored array (an index level or a data column)."""
    column = quote(spec["sql"])
    # A category column stores its categories' own values: show them as those would be shown.
    values = spec["categories"] if spec["kind"] == "category" else spec
    if native_types or sql_type != "INTEGER":
        return column
    if values["kind"] == "datetime":
        return _iso_text(column, values["unit"], aware=values["tz"] is not None)
    if values["kind"] == "timedelta":
        per_second = _UNITS_PER_SECOND[values["unit"]]
        return f"CAST({column} AS REAL)" + (f" / {per_second}" if per_second != 1 else "")
    return column


def _iso_text(column: str, unit: str, *, aware: bool) -> str:
    """SQLite's ISO-8601 text of a count of ``unit`` since 1970-01-01 UTC; NULL stays NULL."""
    per_second = _UNITS_PER_SECOND[unit]
    stamp = "strftime('%Y-%m-%dT%H:%M:%S', {}, 'unixepoch')"
    if per_second == 1:
        text = stamp.format(column)
    else:
        # SQLite's % keeps the sign of the dividend: this is the remainder of floor division,
        # so that times before 1970 get the second before and a positive fraction.
        fraction = f"(({column} % {per_second}) + {per_second}) % {per_second}"
        seconds = f"({column} - {fraction}) / {per_second}"
        digits = len(str(per_second)) - 1
        text = (
            f"{stamp.format(seconds)} || CASE WHEN {column} % {per_second} = 0 THEN '' "
            f"ELSE printf('.%0{digits}d', {fraction}) END"
        )
    if aware:
        text += " || '+00:00'"
    low, high = _FIRST_SECOND * per_second, (_LAST_SECOND + 1) * per_second - 1
    if low <= _INT64_MIN and high >= _INT64_MAX:
        return text
    return f"CASE WHEN {column} BETWEEN {max(low, _INT64_MIN)} AND {min(high, _INT64_MAX)} THEN {text} ELSE {column} END"
