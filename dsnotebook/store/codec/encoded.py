"""The encoded form of a frame: :class:`SqlColumn`, the prepared arrays (``_Part``) and
:class:`EncodedFrame`, which hands out their rows as Python tuples or Arrow record batches; with
the producers and hash feeders the array encoders build parts from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .values import _CHUNK, ARROW_TYPES, ROW_ID, TIME_TYPES, _arrow_from_values, _chunks


@dataclass(frozen=True)
class SqlColumn:
    """One column of a version's SQL table.

    ``name`` is readable and derived from the column label (see the package docstring);
    hidden columns (index levels, missing-value marks) start with ``__dsn_``.
    ``sql_type`` is one of :data:`SQL_TYPES`.
    """

    name: str
    sql_type: str


@dataclass
class _Part:
    """One pandas array, prepared for storage.

    ``values(start, stop)`` returns the DB values of rows ``[start, stop)`` as Python
    objects, and ``arrow(start, stop)`` the same values as one Arrow array, made without a
    Python object per value (its type may be a narrower relative of the storage type, such
    as int8 or bool for INTEGER: :meth:`EncodedFrame.to_arrow` widens it). ``marks(start,
    stop)`` returns the companion column's codes as an int8 array, 0 where a row has no
    mark. ``feed`` adds the array's content to a hash. ``owner`` keeps the pandas object
    alive: with copy-on-write, a live reference makes later in-place edits of the user's
    frame copy instead of changing the data we still have to write.
    """

    spec: dict[str, Any]
    sql_type: str
    n: int
    values: Callable[[int, int], list]
    marks: Callable[[int, int], np.ndarray] | None
    feed: Callable[[Any], None] | None
    owner: Any = None
    wire: Callable[[int, int], list] | None = None
    arrow: Callable[[int, int], pa.Array] | None = None


def _arrow_of(part: _Part) -> Callable[[int, int], pa.Array]:
    """The part's Arrow producer, or one made from its Python values (for kinds too rare to
    vectorise). The values producer is taken now: a later change of ``part.values`` (as
    :func:`_store_text_with_nul_as_bytes` makes) must not change what this returns."""
    if part.arrow is not None:
        return part.arrow
    return _arrow_from_producer(part.values, ARROW_TYPES[part.sql_type])


def _arrow_from_producer(values: Callable[[int, int], list], arrow_type: pa.DataType) -> Callable[[int, int], pa.Array]:
    return lambda start, stop: _arrow_from_values(values(start, stop), arrow_type)


def _marks_arrow(codes: np.ndarray) -> pa.Array:
    """A marks column as Arrow int64: the code, or null where the row has none."""
    return pa.array(codes.astype(np.int64), mask=codes == 0)


def _chunked_slice(chunked: pa.ChunkedArray, start: int, stop: int) -> pa.Array:
    """Rows ``[start, stop)`` of a chunked array as one array, without copying when they lie
    in one chunk (the usual case: pandas keeps one chunk per column)."""
    part = chunked.slice(start, stop - start)
    if part.num_chunks == 1:
        return part.chunk(0)
    if part.num_chunks == 0:
        return pa.array([], type=chunked.type)
    return pa.concat_arrays(part.chunks)


@dataclass(frozen=True)
class _TableColumn:
    """One column of the SQL table being built, with its producers (see :class:`_Part`)."""

    name: str
    sql_type: str
    values: Callable[[int, int], list]
    wire: Callable[[int, int], list]
    arrow: Callable[[int, int], pa.Array]


class EncodedFrame:
    """A validated frame, ready to be written as rows of an SQL table.

    Rows come out in chunks, as Python tuples (:meth:`rows`, :meth:`iter_rows`) or as Arrow
    record batches (:meth:`to_arrow`), converted only when asked for.

    Attributes:
        columns: the table's columns, in table order.
        manifest: JSON-serialisable description that :func:`decode` and
            :func:`decode_arrow` need.
        nrows: number of rows.
    """

    def __init__(
        self,
        columns: list[SqlColumn],
        manifest: dict,
        nrows: int,
        producers: list[Callable[[int, int], list]],
        feeders: list[Callable[[Any], None]],
        owners: list[Any],
        wire_producers: list[Callable[[int, int], list]] | None = None,
        arrow_producers: list[Callable[[int, int], pa.Array]] | None = None,
    ) -> None:
        self.columns = columns
        self.manifest = manifest
        self.nrows = nrows
        self._producers = producers
        self._wire_producers = wire_producers or producers
        self._arrow_producers = arrow_producers or [
            _arrow_from_producer(produce, ARROW_TYPES[c.sql_type]) for produce, c in zip(producers, columns)
        ]
        self._feeders = feeders
        self._owners = owners
        self._hash: str | None = None
        self._nbytes: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"<EncodedFrame {self.nrows} rows x {len(self.columns)} SQL columns>"

    def estimated_nbytes(self, sample: int = 4096) -> int:
        """About how many bytes the rows take once encoded, the row ids included: the Arrow size
        of the first ``sample`` rows, scaled to all of them. Cheap at any size."""
        if self.nrows == 0:
            return 0
        if self._nbytes is None or self._nbytes[0] != sample:
            head = min(self.nrows, sample)
            self._nbytes = (sample, int(self.to_arrow(0, head, row_ids=True).nbytes * self.nrows / head))
        return self._nbytes[1]

    def rows(self, start: int, stop: int) -> list[tuple]:
        """Return the DB row tuples of rows ``[start, stop)``, matching :attr:`columns`.

        Values are plain ``int``, ``float``, ``str``, ``bytes`` or ``None``. Only the
        requested rows are converted, so writing in chunks keeps memory flat. Bounds are
        clipped to ``[0, nrows]``.
        """
        return list(self.iter_rows(start, stop))

    def iter_rows(self, start: int, stop: int, *, wire: bool = False, row_ids: bool = False) -> Iterator[tuple]:
        """Like :meth:`rows`, but each tuple is made only when the consumer takes it.

        The columns of the chunk are converted at once; a driver's ``executemany`` then
        builds and drops the tuples one by one, which is faster and holds less memory than
        a list of them.

        With ``wire``, columns of the :data:`TIME_TYPES` hold the tuples of asyncpg's
        ``tuple`` codec format instead of datetime objects: ``(microseconds since
        2000-01-01,)`` for TIMESTAMP and TIMESTAMPTZ, ``(0, 0, microseconds)`` for INTERVAL.
        Making a million datetime objects takes about a second; these take a few
        milliseconds. See :attr:`time_types`.

        With ``row_ids``, each tuple starts with its row's number, counted from 1.
        """
        start = max(0, start)
        stop = min(self.nrows, stop)
        if start >= stop:
            return iter(())
        producers = self._wire_producers if wire else self._producers
        columns = [produce(start, stop) for produce in producers]
        if row_ids:
            columns.insert(0, range(start + 1, stop + 1))
        return zip(*columns)

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of :meth:`to_arrow`'s batches (without the row numbers): one
        field per entry of :attr:`columns`, in that order, named by :attr:`SqlColumn.name`,
        of the storage type's Arrow type (:data:`ARROW_TYPES`)."""
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.sql_type]) for c in self.columns])

    def to_arrow(self, start: int, stop: int, *, row_ids: bool = False) -> pa.RecordBatch:
        """Return rows ``[start, stop)`` as an Arrow record batch of storage types.

        The batch holds the values :meth:`rows` gives, column for column, in the Arrow types
        of :data:`ARROW_TYPES`: None and a float NaN are null (the manifest or the marks tell
        NaN from pd.NA), bools stored as INTEGER are 0 and 1, datetimes and timedeltas
        stored as INTEGER are their counts, TIMESTAMP and TIMESTAMPTZ hold microseconds
        since the Unix epoch, INTERVAL microseconds, DATE and TIME the dates and times
        themselves (date32, time64[us]), and NUMERIC, JSON and JSONB their text.
        The common dtypes are converted without a Python object per value: NumPy and masked
        arrays hand over their buffers and masks, Arrow-backed strings their Arrow arrays,
        categories take their stored categories by code. Bounds are clipped to
        ``[0, nrows]``.

        Args:
            start: the first row, counted from 0.
            stop: the row after the last one.
            row_ids: put first an int64 column :data:`ROW_ID` holding the rows' numbers,
                counted from 1 (``start + 1`` to ``stop``).

        Returns:
            A record batch with the schema :meth:`arrow_schema` (after :data:`ROW_ID`).
        """
        start = max(0, start)
        stop = max(start, min(self.nrows, stop))
        schema = self.arrow_schema()
        if start == stop:
            arrays = [pa.array([], type=field.type) for field in schema]
        else:
            arrays = []
            for produce, field in zip(self._arrow_producers, schema):
                array = produce(start, stop)
                # Widening only (int8 or bool to int64, float32 to float64, string to
                # large_string); a safe cast refuses anything that would change a value.
                arrays.append(array if array.type == field.type else array.cast(field.type))
        if row_ids:
            schema = schema.insert(0, pa.field(ROW_ID, pa.int64()))
            arrays.insert(0, pa.array(np.arange(start + 1, stop + 1, dtype=np.int64)))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    @property
    def time_types(self) -> set[str]:
        """The :data:`TIME_TYPES` among the table's columns."""
        return {c.sql_type for c in self.columns if c.sql_type in TIME_TYPES}

    def content_hash(self) -> str:
        """Return a sha256 hex digest of the manifest and all values.

        Equal frames (same values, dtypes, labels and index) give equal digests. Numeric
        and datetime data are hashed straight from their NumPy buffers; other columns from
        their encoded values, chunk by chunk. The result is cached.
        """
        if self._hash is None:
            h = hashlib.sha256()
            h.update(json.dumps(self.manifest, sort_keys=True, separators=(",", ":")).encode())
            h.update(b"rows=%d" % self.nrows)
            for i, feed in enumerate(self._feeders):
                h.update(b"|part=%d|" % i)
                feed(h)
            self._hash = h.hexdigest()
        return self._hash


# ---------------------------------------------------------------------------------------
# Hash feeders (a part's ``feed``)
# ---------------------------------------------------------------------------------------


def _marks_to_list(codes: np.ndarray) -> list:
    out = codes.astype(object)
    out[codes == 0] = None
    return out.tolist()


def _feed_buffer(array: np.ndarray) -> Callable[[Any], None]:
    def feed(h: Any) -> None:
        h.update(np.ascontiguousarray(array))

    return feed


def _feed_floats(array: np.ndarray) -> Callable[[Any], None]:
    def feed(h: Any) -> None:
        nan = np.isnan(array)
        # NaN payloads can differ bit for bit between equal frames; hash one canonical NaN.
        h.update(np.ascontiguousarray(np.where(nan, np.nan, array) if nan.any() else array))

    return feed


def _feed_encoded(
    n: int, values: Callable[[int, int], list], marks: Callable[[int, int], np.ndarray] | None
) -> Callable[[Any], None]:
    def feed(h: Any) -> None:
        # repr of a list of str/bytes/int/float/None is unambiguous and computed in C.
        for start in _chunks(n):
            stop = min(n, start + _CHUNK)
            h.update(repr(values(start, stop)).encode("utf-8", "surrogatepass"))
            if marks is not None:
                h.update(repr(_marks_to_list(marks(start, stop))).encode())

    return feed
