"""ADBC transfer primitives: Arrow record batches in and out of SQLite (:mod:`.handoff`) and
PostgreSQL (:mod:`.pg`).

Everything here is synchronous. Callers run these functions in a worker thread
(``loop.run_in_executor``); ADBC releases the GIL while it works. Nothing here touches asyncio,
SQLAlchemy sessions or the catalog.
"""

from .handoff import (
    HandoffTypeError,
    handoff_dir,
    new_handoff_path,
    read_handoff,
    read_handoff_table,
    remove_handoff,
    write_handoff,
)
from .pg import (
    PG_COPY_TYPES,
    CopyTypeError,
    IngestCancelled,
    TableMissingError,
    pg_cancel,
    pg_connect,
    pg_fetch,
    pg_fetch_batches,
    pg_ingest,
    pg_uri,
)

__all__ = [
    "PG_COPY_TYPES",
    "CopyTypeError",
    "HandoffTypeError",
    "IngestCancelled",
    "TableMissingError",
    "handoff_dir",
    "new_handoff_path",
    "pg_cancel",
    "pg_connect",
    "pg_fetch",
    "pg_fetch_batches",
    "pg_ingest",
    "pg_uri",
    "read_handoff",
    "read_handoff_table",
    "remove_handoff",
    "write_handoff",
]
