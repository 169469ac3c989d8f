"""Reading the catalog and the stored rows, and removing versions.

Each public method opens its own short session; nothing here is shared with a running upload.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from ..errors import DatasetError, DatasetNotFound, ValidationError
from ..models import DatasetInfo, DatasetVersion
from . import codec, kinds
from .backends.base import ROW_ID, Backend, Rows, Sizes
from .catalog import datasets, tasks, versions
from .engine import WriteGate, write_transaction
from .views import view_select

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "DATASET_COLUMNS",
    "ROW_ID",
    "TASK_COLUMNS",
    "VERSION_COLUMNS",
    "Repository",
    "drop_table",
    "find_dataset",
    "find_version",
    "is_blank_edge",
    "point_latest",
    "quote",
    "require_dataset",
    "strip_blank_edges",
    "to_version",
]

DATASET_COLUMNS = ["name", "latest_version", "rows", "columns", "updated_at", "description", "versions", "tags", "created_at"]
VERSION_COLUMNS = ["version", "rows", "columns", "created_at", "created_by", "content_hash", "table_name", "task_id", "latest"]
TASK_COLUMNS = [
    "id", "name", "dataset", "status", "priority", "rows_done", "rows_total", "attempts", "version",
    "deduplicated", "error", "queued_at", "started_at", "finished_at", "elapsed_s", "owner_host", "owner_pid",
    # The table of rows staged so far, while the upload runs, and after it was interrupted for as
    # long as its rows are kept for a resume; None otherwise.
    "staging_table",
    # The encoded bytes written so far, and the fastest rate over any second of the upload.
    "bytes_written", "peak_rows_per_s",
]


def quote(conn: AsyncConnection | AsyncSession, name: str) -> str:
    """Quote an identifier for the connection's dialect."""
    dialect = conn.bind.dialect if isinstance(conn, AsyncSession) else conn.dialect
    return dialect.identifier_preparer.quote(name)


def to_version(row, name: str, *, deduplicated: bool = False) -> DatasetVersion:
    return DatasetVersion(
        name=name,
        version=row.version,
        rows=row.rows,
        columns=row.columns,
        created_at=row.created_at,
        content_hash=row.content_hash,
        table_name=row.table_name,
        task_id=row.task_id,
        created_by=row.created_by,
        deduplicated=deduplicated,
    )


async def find_dataset(conn: AsyncConnection | AsyncSession, name: str, *, for_update: bool = False):
    """The dataset's catalog row, or None.

    ``for_update=True`` locks the row until the transaction ends (``SELECT … FOR UPDATE``), so
    that concurrent publishers of one dataset take turns; SQLite's write transaction already
    serialises them and ignores it.
    """
    query = select(datasets).where(datasets.c.name == name)
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).one_or_none()


def is_blank_edge(ch: str) -> bool:
    """Whether ``ch`` cannot be seen at either end of a name: whitespace (a space, a no-break
    space, a tab ...) or an invisible format character (a zero-width space, a byte-order mark ...)."""
    return ch.isspace() or unicodedata.category(ch) == "Cf"


def strip_blank_edges(name: str) -> str:
    """``name`` without the characters :func:`is_blank_edge` finds at its ends; dataset names
    never start or end with one (see :func:`dsnotebook.upload.validate.validate_name`)."""
    start, stop = 0, len(name)
    while start < stop and is_blank_edge(name[start]):
        start += 1
    while stop > start and is_blank_edge(name[stop - 1]):
        stop -= 1
    return name[start:stop]


async def require_dataset(conn: AsyncConnection | AsyncSession, name: str):
    """The dataset's catalog row.

    Raises:
        DatasetNotFound: no such dataset; the message suggests close names.
    """
    row = await find_dataset(conn, name)
    if row is not None:
        return row  # also a name with blank ends, stored before such names were refused
    names = (await conn.execute(select(datasets.c.name))).scalars().all()
    stripped = strip_blank_edges(name) if isinstance(name, str) else name
    note = ""
    if stripped != name:
        # Most likely whitespace copied along with the name: point at the name without it.
        note = " (it starts or ends with whitespace or an invisible character, which new dataset names cannot)"
        if stripped in names:
            raise DatasetNotFound(f"no dataset named {name!r}{note}; did you mean {stripped!r}?")
    close = difflib.get_close_matches(str(stripped), names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
        f"; the stored datasets are {', '.join(repr(n) for n in sorted(names)[:10])}" if names else "; no datasets are stored yet"
    )
    raise DatasetNotFound(f"no dataset named {name!r}{note}{hint}")


async def find_version(conn: AsyncConnection | AsyncSession, dataset, version: int | None = None, *, reader: Backend | None):
    """The catalog row of ``version`` (default: latest) of ``dataset``.

    Args:
        reader: the backend that is to read the version's rows or its manifest: the manifest
            and the row count are checked for it first (see
            :func:`dsnotebook.store.codec.check_manifest`). None takes the row as it is, for
            what needs neither, such as deleting the version.

    Raises:
        DatasetNotFound: the version does not exist; the message lists those that do.
        DatasetError: (with ``reader``) the catalog holds a manifest or row count that cannot be
            read, naming the dataset and the version.
    """
    wanted = dataset.latest_version if version is None else version
    row = None
    if wanted is not None:
        row = (
            await conn.execute(
                select(versions).where(versions.c.dataset_id == dataset.id, versions.c.version == wanted)
            )
        ).one_or_none()
    if row is None:
        have = (
            await conn.execute(
                select(versions.c.version).where(versions.c.dataset_id == dataset.id).order_by(versions.c.version)
            )
        ).scalars().all()
        listing = ", ".join(map(str, have)) if have else "none"
        raise DatasetNotFound(f"dataset {dataset.name!r} has no version {wanted}; its versions are: {listing}")
    if reader is not None:
        codec.check_manifest(
            row.manifest,
            dataset=dataset.name,
            version=row.version,
            rows=row.rows,
            columns=row.columns,
            native_types=reader.capabilities.native_types,
        )
    return row


def _tags(value: Any) -> dict:
    """A dataset's tags as stored: a JSON object, or, where the catalog holds something else
    (an unreadable value, see :func:`dsnotebook.store.codec.load_json`), none."""
    return dict(value) if isinstance(value, dict) else {}


async def drop_table(conn: AsyncConnection | AsyncSession, name: str) -> None:
    await conn.execute(text(f"DROP TABLE IF EXISTS {quote(conn, name)}"))


async def point_latest(
    conn: AsyncConnection | AsyncSession, dataset, table_name: str | None, manifest: dict | None, backend: Backend
) -> None:
    """Point the dataset's SQL view at the version stored in ``table_name`` with ``manifest``
    (or remove the view when ``table_name`` is None); see :mod:`dsnotebook.store.views` for what
    the view shows on ``backend``'s database."""
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    view = quote(conn, dataset.view_name)
    # Driver SQL: quoted column labels may hold what text() would take for bind parameters.
    await conn.exec_driver_sql(f"DROP VIEW IF EXISTS {view}")
    if table_name is not None:
        select_sql = view_select(
            manifest, table_name, lambda name: quote(conn, name), native_types=backend.capabilities.native_types
        )
        await conn.exec_driver_sql(f"CREATE VIEW {view} AS {select_sql}")


#: How many version tables' columns a repository remembers (see Repository._check_columns).
_TABLES_REMEMBERED = 1_024


def _check_version_arg(version) -> None:
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise ValidationError(f"version: expected a positive int or None for the latest, got {version!r}")


class Repository:
    """Reads and deletes; each call uses a session of its own.

    Args:
        backend: the database's backend, which reads the stored rows.
        io: the hub's executor for driver calls made off the event loop.
    """

    def __init__(
        self,
        read_sessions: async_sessionmaker,
        write_sessions: async_sessionmaker,
        gate: WriteGate | None = None,
        *,
        backend: Backend,
        io: Any = None,
    ) -> None:
        self._read = read_sessions
        self._write = write_sessions
        self._gate = gate or WriteGate(exclusive=False)
        self._backend = backend
        self._io = io
        # Bytes of kept staging tables, by (table, rows kept); see storage().
        self._staging_sizes: dict[tuple[str, int], int] = {}
        # The columns found in version tables, by table; see _check_columns().
        self._table_columns: dict[str, frozenset[str]] = {}

    async def pull(
        self,
        name: str,
        version: int | None = None,
        *,
        columns: Sequence | None = None,
        limit: int | None = None,
        to: kinds.To | None = None,
    ) -> pd.DataFrame | pd.Series | pa.Table | pl.DataFrame:
        """Rebuild a stored version as the identical object pushed (or part of it), or as the
        kind ``to`` (see :mod:`dsnotebook.store.kinds`).

        Only the SQL columns of the requested labels (and the index) are read.

        Raises:
            DatasetNotFound: unknown dataset or version.
            DatasetError: the catalog holds a manifest that cannot be read (see
                :func:`dsnotebook.store.codec.check_manifest`), or the version's table lacks a
                column it lists; the message names the dataset and the version.
            ValidationError: unknown column labels, a bad ``limit`` or ``to``.
        """
        _check_version_arg(version)
        kinds.check_to(to)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValidationError(f"limit: expected a non-negative int or None for all rows, got {limit!r}")
        async with self._read() as session:
            # One read transaction: the catalog row and the rows come from the same snapshot
            # (unless the backend reads on a connection of its own; see Backend.read).
            row, sql_names, manifest = await self._plan(session, name, version, columns)
            if not sql_names:  # only columns of a RangeIndex: nothing to read but the count
                frame = codec.decode({**manifest, "nrows": row.rows if limit is None else min(row.rows, limit)}, [])
            else:
                # A limit past the version's rows reads them all (and stays within SQL's integers).
                rows = Rows(limit=None if limit is None or limit >= row.rows else limit)
                frame = await self._backend.read(session, row.table_name, manifest, rows, io=self._io)
        return kinds.convert(frame, row.manifest, to)

    async def iter_batches(
        self,
        name: str,
        version: int | None = None,
        *,
        columns: Sequence | None = None,
        batch_rows: int = 100_000,
        to: kinds.To | None = None,
    ) -> AsyncIterator[pd.DataFrame | pd.Series | pa.Table | pl.DataFrame]:
        """Yield a stored version in order, in exact batches of at most ``batch_rows`` rows, each
        of the kind pushed or the kind ``to`` (see :mod:`dsnotebook.store.kinds`).

        Each batch is read by its own query (keyset pagination on the row id, which the table's
        key makes a range scan), so memory stays bounded by one batch however large the dataset.
        Concatenated, the batches equal ``pull(name, version, columns=columns, to=to)``: a
        RangeIndex continues from batch to batch.

        Raises:
            DatasetNotFound: unknown dataset or version.
            DatasetError: as :meth:`pull`.
            ValidationError: unknown column labels, a bad ``batch_rows`` or ``to``.
        """
        _check_version_arg(version)
        kinds.check_to(to)
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise ValidationError(f"batch_rows: expected a positive int, got {batch_rows!r}")
        async with self._read() as session:
            row, sql_names, manifest = await self._plan(session, name, version, columns)
            conn = await session.connection()
            table, row_id = quote(conn, row.table_name), quote(conn, ROW_ID)
        index = manifest["index"]
        done, last = 0, None
        while done < row.rows:
            async with self._read() as session:
                # The batch's last row id, found on the key alone; then the batch's rows.
                after = Rows(after=last).where(row_id)
                bound = f"SELECT MAX({row_id}) FROM (SELECT {row_id} FROM {table}{after} ORDER BY {row_id} LIMIT {int(batch_rows)}) AS b"
                upper = (await session.execute(text(bound))).scalar()
                if upper is None:
                    break
                count = min(batch_rows, row.rows - done)
                batch = {**manifest, "nrows": count}
                if index["kind"] == "range":
                    # The labels of these rows: the range continues where the last batch stopped.
                    batch["index"] = {**index, "start": index["start"] + done * index["step"]}
                if sql_names:
                    frame = await self._backend.read(session, row.table_name, batch, Rows(after=last, upto=upper), io=self._io)
                else:
                    frame = codec.decode(batch, [])
            done += len(frame)
            last = int(upper)
            yield kinds.convert(frame, row.manifest, to)

    async def _plan(self, session: AsyncSession, name: str, version: int | None, columns: Sequence | None):
        """The version's catalog row, and the SQL columns and reduced manifest of a read."""
        if columns is not None and not isinstance(columns, (list, pd.Index, np.ndarray)):
            columns = [columns]  # one label; a tuple is a label too, as in df[("a", 1)]
        dataset = await require_dataset(session, name)
        row = await find_version(session, dataset, version, reader=self._backend)
        sql_names, manifest = codec.select(row.manifest, None if columns is None else list(columns))
        await self._check_columns(session, dataset.name, row, sql_names)
        return row, sql_names, manifest

    async def _check_columns(self, session: AsyncSession, dataset: str, row, names: Sequence[str]) -> None:
        """Refuse a read of columns the version's table lacks, naming them: the manifest lists
        them, but the catalog may have been changed behind dsnotebook's back.

        The columns a table was found to have are remembered (a version's table never changes),
        but only to skip looking again: a column not found there is always looked for afresh.
        """
        if set(names) <= self._table_columns.get(row.table_name, frozenset()):
            return
        conn = await session.connection()
        # Reflected, not read with SELECT *: a driver that caches the statement would keep the
        # table's columns as they were when it was first prepared.
        try:
            found = await conn.run_sync(lambda sync: inspect(sync).get_columns(row.table_name))
        except NoSuchTableError:
            raise DatasetError(
                f"dataset {dataset!r} version {row.version} cannot be read: its table is gone (no such table: {row.table_name})"
            ) from None
        present = frozenset(column["name"] for column in found)
        missing = [name for name in names if name not in present]
        if missing:
            raise DatasetError(
                f"dataset {dataset!r} version {row.version} cannot be read: its table {row.table_name!r} has no "
                f"column {', '.join(map(repr, missing))}, which its manifest lists"
            )
        if len(self._table_columns) >= _TABLES_REMEMBERED:
            self._table_columns.clear()
        self._table_columns[row.table_name] = present

    async def versions(self, name: str) -> pd.DataFrame:
        """One row per stored version of ``name``, oldest first (columns: :data:`VERSION_COLUMNS`)."""
        async with self._read() as session:
            dataset = await require_dataset(session, name)
            rows = (
                await session.execute(
                    select(versions).where(versions.c.dataset_id == dataset.id).order_by(versions.c.version)
                )
            ).all()
        records = [
            {**{c: getattr(r, c) for c in VERSION_COLUMNS if c != "latest"}, "latest": r.version == dataset.latest_version}
            for r in rows
        ]
        return _frame(records, VERSION_COLUMNS, {"version": "int64", "rows": "int64", "columns": "int64"})

    async def info(self, name: str) -> DatasetInfo:
        """The dataset's description, tags, latest version and schema.

        Raises:
            DatasetNotFound: unknown dataset.
            DatasetError: the latest version's manifest cannot be read (as :meth:`pull`).
        """
        async with self._read() as session:
            dataset = await require_dataset(session, name)
            row = await find_version(session, dataset, reader=self._backend)
            count = (
                await session.execute(select(func.count()).where(versions.c.dataset_id == dataset.id))
            ).scalar_one()
        return DatasetInfo(
            name=dataset.name,
            description=dataset.description,
            tags=_tags(dataset.tags),
            latest=to_version(row, dataset.name),
            schema=codec.schema(row.manifest),
            view_name=dataset.view_name,
            versions=count,
            created_at=dataset.created_at,
            updated_at=dataset.updated_at,
        )

    async def datasets(self) -> pd.DataFrame:
        """One row per dataset, by name (columns: :data:`DATASET_COLUMNS`)."""
        counts = (
            select(versions.c.dataset_id, func.count().label("n"))
            .group_by(versions.c.dataset_id)
            .subquery()
        )
        query = (
            select(datasets, versions.c.rows, versions.c.columns, counts.c.n)
            .join(versions, (versions.c.dataset_id == datasets.c.id) & (versions.c.version == datasets.c.latest_version))
            .join(counts, counts.c.dataset_id == datasets.c.id)
            .order_by(datasets.c.name)
        )
        async with self._read() as session:
            rows = (await session.execute(query)).all()
        records = [
            {
                "name": r.name,
                "latest_version": r.latest_version,
                "rows": r.rows,
                "columns": r.columns,
                "updated_at": r.updated_at,
                "description": r.description,
                "versions": r.n,
                "tags": _tags(r.tags),
                "created_at": r.created_at,
            }
            for r in rows
        ]
        return _frame(records, DATASET_COLUMNS, {"latest_version": "int64", "rows": "int64", "columns": "int64", "versions": "int64"})

    async def tasks(self, *, dataset: str | None = None, status: str | None = None) -> pd.DataFrame:
        """Persisted upload tasks, newest first (columns: :data:`TASK_COLUMNS`)."""
        query = select(tasks).order_by(tasks.c.queued_at.desc(), tasks.c.id)
        if dataset is not None:
            query = query.where(tasks.c.dataset == dataset)
        if status is not None:
            query = query.where(tasks.c.status == status)
        async with self._read() as session:
            rows = (await session.execute(query)).all()
        records = []
        for r in rows:
            rec = {c: getattr(r, c) for c in TASK_COLUMNS if c != "elapsed_s"}
            end = r.finished_at
            rec["elapsed_s"] = (end - r.started_at).total_seconds() if (end and r.started_at) else None
            records.append(rec)
        return _frame(
            records,
            TASK_COLUMNS,
            {"priority": "int64", "rows_done": "int64", "rows_total": "int64", "attempts": "int64", "version": "Int64",
             "deduplicated": "bool", "elapsed_s": "float64", "owner_pid": "int64", "bytes_written": "Int64",
             "peak_rows_per_s": "float64"},
        )

    async def storage(self) -> tuple[Sizes, int]:
        """The database's sizes (see :meth:`Backend.sizes`), and the bytes the staging tables of
        interrupted uploads keep for a resume.

        A kept table does not change until its upload resumes, so its size is measured once per
        row count.
        """
        async with self._read() as session:
            conn = await session.connection()
            kept = dict(
                (
                    await session.execute(
                        select(tasks.c.staging_table, tasks.c.rows_done).where(
                            tasks.c.status == "interrupted", tasks.c.staging_table.is_not(None)
                        )
                    )
                ).all()
            )
            unmeasured = [table for table, rows in kept.items() if (table, rows) not in self._staging_sizes]
            sizes = await self._backend.sizes(conn, unmeasured)
        for table in unmeasured:
            if table in sizes.staging:
                self._staging_sizes[table, kept[table]] = sizes.staging[table]
        self._staging_sizes = {key: size for key, size in self._staging_sizes.items() if kept.get(key[0]) == key[1]}
        return sizes, sum(self._staging_sizes.values())

    async def delete(self, name: str, version: int | None = None) -> list[int]:
        """Remove one version (``latest`` falls back to the newest left) or, with None, the dataset.

        Removing the last remaining version removes the dataset. Returns the removed version numbers.
        A version whose manifest cannot be read can always be removed; but the version that would
        become the latest gets the dataset's SQL view, so its manifest must be readable, or the
        removal is refused with a DatasetError naming it.
        """
        _check_version_arg(version)
        async with write_transaction(self._write, self._gate) as session:
            dataset = await require_dataset(session, name)
            if version is None:
                doomed = (
                    await session.execute(select(versions).where(versions.c.dataset_id == dataset.id))
                ).all()
            else:
                doomed = [await find_version(session, dataset, version, reader=None)]
            return await self._remove(session, dataset, doomed)

    async def prune(self, name: str, *, keep: int) -> list[int]:
        """Keep the newest ``keep`` versions of ``name``; returns the removed version numbers."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValidationError(f"keep: expected a positive int (the number of newest versions to keep), got {keep!r}")
        async with write_transaction(self._write, self._gate) as session:
            dataset = await require_dataset(session, name)
            rows = (
                await session.execute(
                    select(versions).where(versions.c.dataset_id == dataset.id).order_by(versions.c.version.desc())
                )
            ).all()
            return await self._remove(session, dataset, rows[keep:])

    async def _remove(self, session: AsyncSession, dataset, doomed) -> list[int]:
        if not doomed:
            return []
        gone = {r.version for r in doomed}
        remaining = (
            await session.execute(
                select(versions.c.version, versions.c.table_name)
                .where(versions.c.dataset_id == dataset.id)
                .order_by(versions.c.version.desc())
            )
        ).all()
        left = [r for r in remaining if r.version not in gone]
        if left:
            # The version that becomes the latest gets the view: its manifest is checked first.
            latest = await find_version(session, dataset, left[0].version, reader=self._backend)
            await point_latest(session, dataset, latest.table_name, latest.manifest, self._backend)
        else:
            await point_latest(session, dataset, None, None, self._backend)
        await session.execute(versions.delete().where(versions.c.dataset_id == dataset.id, versions.c.version.in_(gone)))
        for r in doomed:
            await drop_table(session, r.table_name)
        if left:
            await session.execute(
                datasets.update().where(datasets.c.id == dataset.id).values(latest_version=left[0].version)
            )
        else:
            await session.execute(datasets.delete().where(datasets.c.id == dataset.id))
        return sorted(gone)


def _select_list(conn: AsyncConnection | AsyncSession, names: Sequence[str]) -> str:
    return ", ".join(quote(conn, c) for c in names)


def _frame(records: list[dict], columns: list[str], dtypes: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=columns)
    return frame.astype({k: v for k, v in dtypes.items() if k in frame.columns})
