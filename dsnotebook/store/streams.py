"""Pushing a stream of Arrow record batches: a ``pyarrow.RecordBatchReader``, any object with the
Arrow PyCapsule stream interface (``__arrow_c_stream__``), or a polars ``LazyFrame``.

A stream can be larger than memory, and can be read only once. Its push is validated on its
schema before anything is queued (:func:`open_stream`, :meth:`StreamedFrame.template`); the
upload task then reads it to the end (:meth:`StreamedFrame.spool`), a slice at a time, into a
private Arrow IPC file on disk, encoding each slice as the codec would encode it on its own.
The slices' manifests are merged as an append merges two versions' (a float column gets its
marks column once any slice holds both NaN and null, a dictionary column the union of the
slices' dictionaries, and so on), which gives the version's manifest. The rows are then written
chunk by chunk from the file (:meth:`StreamedFrame.to_arrow`, :meth:`StreamedFrame.iter_rows`):
each chunk is encoded again and brought to the merged layout. So memory holds a slice or a chunk
at a time, never the stream.

A :class:`StreamedFrame` stands in for the :class:`~dsnotebook.store.codec.EncodedFrame` of a
frame: once spooled it has the same ``columns``, ``manifest``, ``nrows`` and row producers.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError
from . import codec, kinds
from .append import _unit, plan_append
from .codec.values import _MARK_CODES, ARROW_TYPES, ROW_ID, TIME_TYPES

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["Stream", "StreamedFrame", "is_stream", "open_stream"]

#: The most rows the spool reads and encodes at a time; a reader's larger batches are sliced.
SLICE_ROWS = 65_536
#: Microseconds per unit of a count stored as INTEGER (see :func:`_time_to_counts`).
_US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}


@dataclass
class Stream:
    """A pushed stream: its Arrow schema, its ``"pushed"`` record, and its batches (one pass)."""

    schema: pa.Schema
    pushed: dict
    batches: Callable[[], Iterator[pa.RecordBatch]]


def _is_polars(obj: Any, name: str) -> bool:
    cls = type(obj)
    return cls.__module__.split(".")[0] == "polars" and cls.__name__ == name


def is_stream(obj: Any) -> bool:
    """Whether ``obj`` is pushed as a stream (see the module's docstring)."""
    if isinstance(obj, pa.RecordBatchReader) or _is_polars(obj, "LazyFrame"):
        return True
    if isinstance(obj, (pa.Table, pa.RecordBatch)) or _is_polars(obj, "DataFrame"):
        return False
    # A pandas DataFrame offers the interface too, but is pushed as itself.
    import pandas as pd

    return not isinstance(obj, (pd.DataFrame, pd.Series)) and hasattr(obj, "__arrow_c_stream__")


def open_stream(obj: Any) -> Stream:
    """The :class:`Stream` of a reader, a capsule stream or a polars LazyFrame.

    Raises:
        ValidationError: the object's stream cannot be opened.
    """
    if _is_polars(obj, "LazyFrame"):
        return _polars_stream(obj)
    try:
        reader = obj if isinstance(obj, pa.RecordBatchReader) else pa.RecordBatchReader.from_stream(obj)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise ValidationError(f"df: cannot read the Arrow stream of the {type(obj).__name__}: {exc}") from exc
    return Stream(reader.schema, kinds.arrow_record("arrow", reader.schema), lambda: iter(reader))


def _polars_stream(lazy: Any) -> Stream:
    """A LazyFrame's stream: its batches as polars' streaming engine produces them."""
    try:
        empty = lazy.head(0).collect()
    except Exception as exc:  # noqa: BLE001 - polars raises its own errors for a plan that fails
        raise ValidationError(f"df: the polars LazyFrame's plan fails: {exc}") from exc
    schema = kinds._polars_to_arrow(empty).schema  # refuses the dtypes that cannot be stored

    def batches() -> Iterator[pa.RecordBatch]:
        # polars' streaming engine hands the result over a part at a time; a polars without
        # LazyFrame.collect_batches (older releases) collects it whole.
        collect_batches = getattr(lazy, "collect_batches", None)
        frames = collect_batches() if collect_batches is not None else iter([lazy.collect()])
        for frame in frames:
            yield from kinds._polars_to_arrow(frame).cast(schema).to_batches()

    return Stream(schema, kinds.arrow_record("polars", schema), batches)


def _is_marks(name: str, manifest: dict) -> dict | None:
    """The spec whose marks column ``name`` is, if it is one."""
    levels = manifest["index"]["levels"] if manifest["index"]["kind"] != "range" else []
    return next((spec for spec in [*levels, *manifest["data"]] if spec.get("marks_sql") == name), None)


def _specs_by_sql(manifest: dict) -> dict[str, dict]:
    levels = manifest["index"]["levels"] if manifest["index"]["kind"] != "range" else []
    return {spec["sql"]: spec for spec in [*levels, *manifest["data"]]}


def _time_to_counts(array: pa.Array, unit: str | None) -> pa.Array:
    """TIMESTAMP, TIMESTAMPTZ or INTERVAL values (microseconds) as the INTEGER counts of ``unit``,
    which a column stored as INTEGER holds."""
    micros = array.cast(pa.int64())
    if unit == "ns":
        return pc.multiply_checked(micros, 1000)
    return pc.divide(micros, _US_PER_UNIT[unit or "us"])


def _layout(manifest: dict) -> tuple:
    """What decides a chunk's SQL rows: the columns and how each spec stores its values."""

    def strip(spec: dict) -> dict:
        spec = {k: v for k, v in spec.items() if k not in ("categories", "values", "marks")}
        return spec

    levels = manifest["index"]["levels"] if manifest["index"]["kind"] != "range" else []
    return (
        [tuple(c) for c in manifest["sql_columns"]],
        [strip(s) for s in levels],
        [strip(s) for s in manifest["data"]],
    )


class StreamedFrame:
    """A stream being pushed: before :meth:`spool` only its schema is known (``nrows`` is 0);
    after, it offers what an :class:`~dsnotebook.store.codec.EncodedFrame` offers.

    ``backend`` and ``native_types`` are those the rows are encoded for.
    """

    def __init__(self, stream: Stream, backend: Backend, *, native_types: bool) -> None:
        self.stream = stream
        self._backend = backend
        self._native = native_types
        self.template = self._encode(stream.schema.empty_table())
        kinds.record(self.template.manifest, stream.pushed)
        self.columns = list(self.template.columns)
        self.manifest = self.template.manifest
        self.nrows = 0
        self.spooled = False
        self._path: str | None = None
        self._offsets: list[int] = []  # the first row of each batch in the spool file
        self._hash: str | None = None
        self._nbytes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<StreamedFrame {self.nrows} rows x {len(self.columns)} SQL columns{'' if self.spooled else ', not read yet'}>"

    def _encode(self, table: pa.Table) -> codec.EncodedFrame:
        return codec.encode(kinds._arrow_to_pandas(table), native_types=self._native)

    # -- reading the stream ---------------------------------------------------------------------

    def spool(self, on_rows: Callable[[int], None] | None = None, cancelled: Callable[[], bool] | None = None) -> None:
        """Read the stream to its end into the spool file, validating and hashing each slice,
        and work out the version's manifest. Blocking: run it in a worker thread.

        ``on_rows`` hears the rows read so far after each slice; ``cancelled`` is asked between
        slices, and reading stops (with :class:`InterruptedError`) once it says so.

        Raises:
            ValidationError: a slice holds a value the codec refuses, naming its column.
            InterruptedError: ``cancelled`` said so.
        """
        fd, self._path = tempfile.mkstemp(prefix="dsnotebook-stream-", suffix=".arrow")
        os.close(fd)
        h = hashlib.sha256()
        merged: dict | None = None
        rows = 0
        schema = self.stream.schema
        # The file holds dictionary columns as their values: an IPC file takes one dictionary per
        # column, where a stream's batches may each bring their own.
        stored = self._spool_schema()
        with pa.OSFile(self._path, "wb") as sink, pa.ipc.new_file(sink, stored) as writer:
            for batch in self.stream.batches():
                if batch.schema != schema:
                    batch = batch.cast(schema)
                for start in range(0, batch.num_rows, SLICE_ROWS):
                    if cancelled is not None and cancelled():
                        raise InterruptedError("the push was cancelled while its stream was read")
                    piece = batch.slice(start, SLICE_ROWS)
                    table = pa.Table.from_batches([piece])
                    encoded = self._encode(table)
                    h.update(encoded.content_hash().encode())
                    # Merged as appends merge: a dictionary column's categories become the union
                    # of the slices' dictionaries, in order of appearance.
                    merged = encoded.manifest if merged is None else self._merge(merged, encoded.manifest)
                    writer.write_batch(piece.cast(stored) if stored != schema else piece)
                    self._offsets.append(rows)
                    rows += piece.num_rows
                    self._nbytes += piece.nbytes
                    if on_rows is not None:
                        on_rows(rows)
        self.nrows = rows
        manifest = copy.deepcopy(merged if merged is not None else self.template.manifest)
        manifest["index"] = {"kind": "range", "start": 0, "stop": rows, "step": 1, "name": None}
        kinds.record(manifest, self.stream.pushed)
        self.manifest = manifest
        self.columns = [codec.SqlColumn(name, sql_type) for name, sql_type in manifest["sql_columns"]]
        h.update(b"rows=%d" % rows)
        self._hash = h.hexdigest()
        self.spooled = True

    def _spool_schema(self) -> pa.Schema:
        """The spool file's schema: the stream's, with each dictionary type as its value type."""
        schema = self.stream.schema
        return pa.schema(
            [f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema], metadata=schema.metadata
        )

    def _merge(self, merged: dict, new: dict) -> dict:
        """The manifest of a table holding the rows of ``merged`` and then those of ``new``."""
        quote = lambda name: f'"{name}"'  # noqa: E731 - only the manifest of the plan is used
        return plan_append(merged, new, quote, self._backend).manifest

    # -- what an EncodedFrame offers -------------------------------------------------------------

    def content_hash(self) -> str:
        """A sha256 digest of the stream's content: of its slices' encodings in order, and the
        number of rows. The same stream read again (in slices of the same sizes) gives the same."""
        if self._hash is None:
            raise RuntimeError("the stream has not been read yet")
        return self._hash

    def estimated_nbytes(self, sample: int = 4096) -> int:  # noqa: ARG002 - the EncodedFrame's signature
        """The Arrow size of the rows read (0 before the stream is read)."""
        return self._nbytes

    @property
    def time_types(self) -> set[str]:
        return {c.sql_type for c in self.columns if c.sql_type in TIME_TYPES}

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.sql_type]) for c in self.columns])

    def _chunk(self, start: int, stop: int) -> codec.EncodedFrame:
        """Rows ``[start, stop)`` read back from the spool file and encoded on their own."""
        first = bisect.bisect_right(self._offsets, start) - 1
        last = bisect.bisect_left(self._offsets, stop)
        with pa.OSFile(self._path, "rb") as source:
            reader = pa.ipc.open_file(source)
            batches = [reader.get_batch(i) for i in range(first, last)]
        table = pa.Table.from_batches(batches, schema=self._spool_schema())
        table = table.slice(start - self._offsets[first], stop - start)
        columns = []
        for field, column in zip(self.stream.schema, table.columns):
            if pa.types.is_dictionary(field.type):
                column = pc.dictionary_encode(column.combine_chunks()).cast(field.type)
            columns.append(column)
        return self._encode(pa.Table.from_arrays(columns, schema=self.stream.schema))

    def to_arrow(self, start: int, stop: int, *, row_ids: bool = False) -> pa.RecordBatch:
        """Rows ``[start, stop)`` as :meth:`EncodedFrame.to_arrow` gives them, in the version's
        layout. Safe to call from several threads."""
        start, stop = max(0, start), min(self.nrows, stop)
        schema = self.arrow_schema()
        if start >= stop:
            arrays = [pa.array([], type=field.type) for field in schema]
        else:
            chunk = self._chunk(start, stop)
            arrays = self._reconcile(chunk, chunk.to_arrow(0, stop - start))
        if row_ids:
            schema = schema.insert(0, pa.field(ROW_ID, pa.int64()))
            arrays.insert(0, pa.array(np.arange(start + 1, max(start, stop) + 1, dtype=np.int64)))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _reconcile(self, chunk: codec.EncodedFrame, batch: pa.RecordBatch) -> list[pa.Array]:
        """The chunk's Arrow columns brought to the version's layout: a marks column the chunk
        did without is set from its values' missing marker, and a column stored in another
        type is converted to the version's (see :func:`~dsnotebook.store.append.plan_append`)."""
        mine = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
        chunk_types = dict((name, sql_type) for name, sql_type in chunk.manifest["sql_columns"])
        chunk_specs = _specs_by_sql(chunk.manifest)
        final_specs = _specs_by_sql(self.manifest)
        arrays = []
        for column in self.columns:
            target = ARROW_TYPES[column.sql_type]
            if column.name in mine:
                array = mine[column.name]
                old = chunk_types[column.name]
                if old != column.sql_type and old in TIME_TYPES and column.sql_type == "INTEGER":
                    array = _time_to_counts(array, _unit(final_specs[column.name]))
                elif chunk_specs.get(column.name, {}).get("object") == "none":
                    array = pa.nulls(len(array), type=target)
            else:
                spec = _is_marks(column.name, self.manifest)
                if spec is None:
                    raise RuntimeError(f"the stream's chunk has no column {column.name!r}")
                own = chunk_specs[spec["sql"]]
                if "marks_sql" in own:  # the chunk's marks column, under another name
                    array = mine[own["marks_sql"]]
                else:
                    # Every missing value of the chunk is of its one kind.
                    code = pa.scalar(_MARK_CODES[own["null"]], pa.int64())
                    array = pc.if_else(mine[spec["sql"]].is_null(), code, pa.scalar(None, pa.int64()))
            arrays.append(array if array.type == target else array.cast(target))
        return arrays

    def iter_rows(self, start: int, stop: int, *, wire: bool = False, row_ids: bool = False) -> Iterator[tuple]:
        """Rows ``[start, stop)`` as :meth:`EncodedFrame.iter_rows` gives them, in the version's
        layout."""
        start, stop = max(0, start), min(self.nrows, stop)
        if start >= stop:
            return iter(())
        chunk = self._chunk(start, stop)
        if _layout(chunk.manifest) == _layout(self.manifest):
            columns: list[Any] = list(zip(*chunk.iter_rows(0, stop - start, wire=wire)))
        else:
            own = dict(zip((c.name for c in chunk.columns), zip(*chunk.iter_rows(0, stop - start, wire=wire))))
            chunk_types = dict((name, sql_type) for name, sql_type in chunk.manifest["sql_columns"])
            reconciled = self._reconcile(chunk, chunk.to_arrow(0, stop - start))
            columns = []
            for column, array in zip(self.columns, reconciled):
                same = column.name in own and chunk_types[column.name] == column.sql_type
                columns.append(own[column.name] if same else array.to_pylist())
        if row_ids:
            columns.insert(0, range(start + 1, stop + 1))
        return zip(*columns)

    def rows(self, start: int, stop: int) -> list[tuple]:
        return list(self.iter_rows(start, stop))

    def close(self) -> None:
        """Delete the spool file."""
        with self._lock:
            path, self._path = self._path, None
        if path is not None:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
