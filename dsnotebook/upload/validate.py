"""Checks of a push before anything is scheduled: the name, the options, the frame against the
backend's limits, and an append's schema."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError, SchemaMismatch, UsageError, ValidationError
from ..monitor import format_bytes
from ..store import codec, kinds
from ..store.backends import Backend
from ..store.repository import is_blank_edge, strip_blank_edges
from ..store.streams import StreamedFrame, is_stream, open_stream

__all__ = [
    "IF_EXISTS",
    "MAX_NAME_LENGTH",
    "IfExists",
    "Request",
    "check_append",
    "check_free_space",
    "check_writable",
    "encode_for",
    "validate_name",
    "validate_options",
]

IfExists = Literal["replace", "append", "fail"]
IF_EXISTS: tuple[str, ...] = ("replace", "append", "fail")
MAX_NAME_LENGTH = 255


def validate_name(name: object) -> str:
    """Check a dataset name; names are data, so anything printable up to 255 characters goes.

    Raises:
        ValidationError: not a str, empty or whitespace-only, starting or ending with whitespace
            (or an invisible character), too long, with control characters, or with a lone
            surrogate (not valid Unicode text).
    """
    if not isinstance(name, str):
        raise ValidationError(f"name: expected a str, got {type(name).__name__} {name!r}")
    stripped = strip_blank_edges(name)
    if not stripped:
        raise ValidationError(f"name: {name!r} is empty or whitespace only; give a non-empty dataset name")
    if stripped != name:
        # "sales " and "sales" would be two datasets that look the same in every listing.
        first, last = is_blank_edge(name[0]), is_blank_edge(name[-1])
        where = "starts and ends" if first and last else ("starts" if first else "ends")
        raise ValidationError(
            f"name: {name!r} {where} with whitespace or an invisible character, which would make it look "
            f"the same as {stripped!r} in listings; dataset names must begin and end with a visible "
            f"character: use {stripped!r}"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"name: {len(name)} characters is too long; at most {MAX_NAME_LENGTH} are accepted")
    # Control characters and line breaks make names that print badly and are easy to mistype;
    # format characters (such as the joiner inside emoji sequences) are fine. A lone surrogate
    # (from a bad decode) is not text at all: no database driver can send it.
    bad = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        what = "the lone surrogate" if unicodedata.category(bad) == "Cs" else "the control character"
        raise ValidationError(f"name: {name!r} contains {what} {bad!r} (U+{ord(bad):04X}); use printable characters only")
    return name


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass(frozen=True)
class Request:
    """A validated push: what the upload task needs besides the frame."""

    name: str
    description: str | None
    tags: dict | None
    if_exists: str
    chunk_size: int
    check_space: bool = True


def validate_options(*, description=None, tags=None, if_exists="replace", priority=0, chunk_size=None, check_space=True) -> None:
    """Check ``push``'s keyword options.

    Raises:
        ValidationError: naming the option and what would be accepted.
    """
    if not isinstance(check_space, bool):
        raise ValidationError(f"check_space: expected True or False, got {check_space!r}")
    if if_exists not in IF_EXISTS:
        raise ValidationError(f"if_exists: {if_exists!r} is not allowed; use one of {', '.join(map(repr, IF_EXISTS))}")
    if description is not None and not isinstance(description, str):
        raise ValidationError(f"description: expected a str or None, got {type(description).__name__}")
    if description is not None and "\x00" in description:
        # PostgreSQL's text cannot hold it, and a description should read the same everywhere.
        raise ValidationError("description: contains a NUL character ('\\x00'); remove it")
    if description is not None and _has_surrogate(description):
        raise ValidationError("description: contains a lone surrogate, which is not valid Unicode text; use UTF-8 text")
    if tags is not None:
        if not isinstance(tags, Mapping) or not all(isinstance(k, str) for k in tags):
            raise ValidationError(f"tags: expected a dict with str keys, got {tags!r}")
        try:
            text = json.dumps(dict(tags), allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"tags: values must be JSON-compatible (str, numbers, bools, lists, dicts): {exc}") from exc
        # JSON can only escape a surrogate, and an escaped pair reads back as the one character it encodes.
        if _has_surrogate(text):
            raise ValidationError(
                f"tags: {tags!r} holds a lone surrogate in a key or value, which is not valid Unicode text; use UTF-8 text"
            )
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError(f"priority: expected an int (higher runs first), got {priority!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValidationError(f"chunk_size: expected a positive int or None for the default, got {chunk_size!r}")


def check_append(name: str, old_manifest: dict, new_manifest: dict) -> None:
    added, missing, retyped = codec.schema_diff(old_manifest, new_manifest)
    if not (added or missing or retyped):
        return
    parts = []
    if added:
        parts.append("added " + ", ".join(repr(a) for a in added))
    if missing:
        parts.append("missing " + ", ".join(repr(m) for m in missing))
    if retyped:
        parts.append("retyped " + ", ".join(f"{label!r} ({old} -> {new})" for label, old, new in retyped))
    raise SchemaMismatch(
        f"cannot append to {name!r}: the frame's schema differs from the latest version: {'; '.join(parts)}",
        added=added,
        missing=missing,
        retyped=retyped,
        hint="Use if_exists='replace' to publish a new schema",
    )




def encode_for(obj: Any, backend: Backend, *, native_types: bool | None = None) -> codec.EncodedFrame | StreamedFrame:
    """Validate and encode a frame (a DataFrame, a Series or a pyarrow Table; see
    :mod:`dsnotebook.store.kinds`) for ``backend``'s storage (with ``native_types`` if given,
    else the backend's), within the backend's limits.

    A stream (a RecordBatchReader, an Arrow capsule stream, a polars LazyFrame; see
    :mod:`dsnotebook.store.streams`) is checked on its schema, and comes back as the
    :class:`StreamedFrame` its upload reads.

    Raises:
        ValidationError: the frame cannot be stored (see :func:`dsnotebook.store.codec.encode`
            and :func:`dsnotebook.store.kinds.to_encodable`),
            or needs more columns or wider rows than the database allows, or its manifest would
            exceed the limits of :func:`dsnotebook.store.codec.check_new_manifest`.
    """
    native = backend.capabilities.native_types if native_types is None else native_types
    if is_stream(obj):
        streamed = StreamedFrame(open_stream(obj), backend, native_types=native)
        _check_limits(streamed.template, backend)
        return streamed
    encodable, pushed = kinds.to_encodable(obj)
    encoded = codec.encode(encodable, native_types=native)
    kinds.record(encoded.manifest, pushed)
    _check_limits(encoded, backend)
    # The manifest must read back within the limits a read of the catalog holds it to.
    codec.check_new_manifest(encoded.manifest, rows=encoded.nrows, native_types=native)
    return encoded


def _check_limits(encoded: codec.EncodedFrame, backend: Backend) -> None:
    limits = backend.capabilities
    if len(encoded.columns) + 1 > limits.max_columns:
        raise ValidationError(
            f"the frame needs {len(encoded.columns)} SQL columns (its columns, index levels and "
            f"missing-value marks), but this database allows at most {limits.max_columns - 1} per "
            "table; split the frame into several datasets"
        )
    if limits.max_row_bytes is not None:
        width = backend.row_bytes(encoded.columns)
        if width > limits.max_row_bytes:
            raise ValidationError(
                f"a row of this frame needs about {width:,} bytes in the database (8 per number or "
                f"date column, 1 per boolean, 18 per text column), but this database stores at most "
                f"{limits.max_row_bytes:,} per row; split the frame into several datasets"
            )


#: Room an upload needs beyond its rows (the write-ahead log, the catalog, page slack): a tenth
#: of the rows, and at least this.
SPACE_MARGIN_MIN = 1 << 20


def check_writable(backend: Backend, *, refused: str = "pushes") -> None:
    """Refuse pushes (or the writes named by ``refused``) where this hub may not write, before
    anything is queued or written.

    Raises:
        UsageError: the URL opens the database read-only.
        ConfigError: the database role may not write there; the message names the role, the
            schema, the rights it lacks and the GRANTs to ask for.
    """
    if backend.read_only:
        raise UsageError(f"this database is opened read-only (mode=ro); {refused} are refused")
    if backend.write_refusal is not None:
        raise ConfigError(backend.write_refusal)


def check_free_space(name: str, encoded: codec.EncodedFrame, backend: Backend) -> None:
    """Refuse an upload that would not fit on the database's filesystem, where it can be seen
    (not on a database server, whose disk is out of sight).

    Raises:
        ValidationError: the free space is below the upload's estimated bytes plus a margin.
    """
    free = backend.free_disk_bytes()
    if free is None:
        return
    rows = encoded.estimated_nbytes()
    needed = rows + max(rows // 10, SPACE_MARGIN_MIN)
    if free < needed:
        raise ValidationError(
            f"not enough free disk space for the upload of {name!r}: it needs about "
            f"{format_bytes(needed)} ({format_bytes(rows)} of rows, plus room for the database's "
            f"log), but the disk that holds the database has {format_bytes(free)} free; free some "
            "space, or pass check_space=False to push anyway"
        )

