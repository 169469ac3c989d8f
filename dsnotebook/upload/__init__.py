"""Uploads: validate, then schedule; stage in chunks; publish atomically.

A push is validated and encoded completely on the caller's side, before anything is scheduled or
written, so bad input fails at once with a clear error (:mod:`.validate`). The upload itself runs
as a task of the hub's :class:`~dsnotebook.tasks.BackgroundTaskService`, with a session of its
own (:mod:`.service`):

1. rows go into a staging table in chunks, each chunk committed with the task's progress, so
   that progress is durable and a transient lock only costs one chunk's retry (:mod:`.staging`);
2. the version row, the dataset's latest pointer and its SQL view are written in one
   transaction, so readers never see a partial version (:mod:`.publish`);
3. a failure or cancel drops the staging table; the previous version is never touched.

Each upload is seen through its handle (:mod:`.handle`).
"""

from .handle import RETRYABLE_STATUSES, UploadTask
from .service import DEFAULT_CHUNK_SIZE, DatasetUploadService, owner
from .staging import DEFAULT_KEEP_INTERRUPTED_S
from .validate import IF_EXISTS, MAX_NAME_LENGTH, IfExists, validate_name, validate_options

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_KEEP_INTERRUPTED_S",
    "IF_EXISTS",
    "MAX_NAME_LENGTH",
    "RETRYABLE_STATUSES",
    "DatasetUploadService",
    "IfExists",
    "UploadTask",
    "owner",
    "validate_name",
    "validate_options",
]
