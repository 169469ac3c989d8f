"""Who may read a SQLite store: the permission bits of the files and directories dsnotebook
creates, and the private default store.

- A database file dsnotebook creates gets ``0o600`` (its owner alone), unless
  ``connect(file_mode=…)`` or the ``DSNOTEBOOK_UMASK`` environment variable asks for sharing
  (``0o640``, or ``0o666 & ~umask``). The file has those bits from the start: it is created with
  ``O_EXCL`` and the mode, then given the exact bits with ``fchmod`` (the process umask may have
  taken some away). It is never created open and narrowed afterwards.
- A directory created on the way gets the same read bits plus the search bit (``0o700`` beside
  ``0o600``, ``0o750`` beside ``0o640``), or ``0o777 & ~umask``.
- SQLite creates the ``-wal``, ``-shm`` and ``-journal`` files itself, with the bits of the
  database file, so they follow it.
- The default store (the directory of :data:`~dsnotebook.store.engine.DEFAULT_PATH`) is
  tightened at connect: the directory and the database's files lose the group and other bits
  beyond the ones above, with one INFO log line. Every other existing file and directory keeps
  its bits: dsnotebook never loosens nor narrows what a user set on a path of their choosing.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError, ValidationError
from ..engine import DEFAULT_PATH

__all__ = [
    "PRIVATE",
    "UMASK_ENV",
    "FileModes",
    "check_file_mode",
    "create_directories",
    "create_file",
    "default_directory",
    "file_modes",
    "tighten_default_store",
]

log = logging.getLogger("dsnotebook")

#: The environment variable that sets the bits of new files as a umask does (``027``: the group
#: reads, others nothing).
UMASK_ENV = "DSNOTEBOOK_UMASK"
#: The files SQLite keeps beside a database, which get the database file's bits.
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")
_OWNER = 0o700
_UMASK_FORM = re.compile(r"(?:0o)?([0-7]{1,4})", re.IGNORECASE)


@dataclass(frozen=True)
class FileModes:
    """The permission bits of what dsnotebook creates: a database file, and a directory on its way."""

    file: int
    directory: int

    @classmethod
    def for_file(cls, mode: int) -> FileModes:
        """``mode`` for files; for directories the same with the search bit wherever a file
        can be read (``0o640`` gives ``0o750``)."""
        return cls(file=mode, directory=mode | _OWNER | ((mode & 0o044) >> 2))


#: The owner alone: the default.
PRIVATE = FileModes.for_file(0o600)


def check_file_mode(value: object) -> int | None:
    """``connect(file_mode=…)``, checked.

    Raises:
        ValidationError: not an int, or not permission bits that give the owner read and write
            and nobody execute.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 0o777 and value & 0o600 == 0o600 and not value & 0o111:
            return value
        shown = f"0o{value:o}" if value >= 0 else repr(value)
    else:
        shown = repr(value)
    raise ValidationError(
        "file_mode: expected the permission bits of a new database file, such as 0o600 (its owner "
        "alone, the default) or 0o640 (its group reads too): an int from 0o600 to 0o666 that gives "
        f"the owner read and write and nobody execute; got {shown}"
    )


def file_modes(file_mode: int | None) -> FileModes:
    """What dsnotebook creates: ``file_mode`` if given, else as ``DSNOTEBOOK_UMASK`` says, else
    :data:`PRIVATE`.

    Raises:
        ConfigError: ``DSNOTEBOOK_UMASK`` is not an octal umask that leaves its owner every bit.
    """
    if file_mode is not None:
        return FileModes.for_file(file_mode)
    raw = os.environ.get(UMASK_ENV, "").strip()
    if not raw:
        return PRIVATE
    match = _UMASK_FORM.fullmatch(raw)
    umask = int(match.group(1), 8) if match else -1
    if not 0 <= umask <= 0o777 or umask & _OWNER:
        raise ConfigError(
            f"{UMASK_ENV}: {raw!r} is not an octal umask that leaves the owner read, write and search; "
            f"use for example {UMASK_ENV}=027 (the group reads, others nothing) or unset it for private files"
        )
    return FileModes(file=0o666 & ~umask, directory=0o777 & ~umask)


def create_directories(directory: Path, mode: int) -> None:
    """Create ``directory`` and its missing parents with exactly ``mode``; existing ones are left
    as they are."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue  # another process made it meanwhile, with bits of its own choosing
        # The umask only takes bits away: the directory was never more open than ``mode``.
        os.chmod(path, mode)


def create_file(path: Path, mode: int) -> bool:
    """Create ``path`` empty with exactly ``mode``; False if it exists already (left as it is)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    except FileExistsError:
        return False
    try:
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13, where there are no such bits
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True


def default_directory() -> Path | None:
    """The default store's directory (``~/.dsnotebook``), resolved; None where it is a symbolic
    link, which is a place the user chose (a team directory, say) and keeps its own bits, or where
    the process has no home directory."""
    try:
        directory = DEFAULT_PATH.expanduser().parent
    except RuntimeError:  # no HOME and no password entry: there is no default store to protect
        return None
    if directory.is_symlink():
        return None
    return directory.resolve()


def tighten_default_store(path: Path, modes: FileModes) -> None:
    """Take from the default store's directory, and from the database ``path`` in it with its
    ``-wal``, ``-shm`` and ``-journal`` files, the group and other bits that ``modes`` does not
    give; log what changed in one INFO line. Nothing is loosened, and the owner's bits stay.

    ``path`` outside the default directory is left alone. A file whose bits cannot be changed
    (another user's) is logged as a warning; connecting goes on.
    """
    directory = default_directory()
    if directory is None or path.parent != directory:
        return
    wanted = [(directory, modes.directory, stat.S_ISDIR), (path, modes.file, stat.S_ISREG)]
    wanted += [(path.with_name(path.name + suffix), modes.file, stat.S_ISREG) for suffix in COMPANION_SUFFIXES]
    changed: list[str] = []
    for target, allowed, is_kind in wanted:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            continue
        old = stat.S_IMODE(st.st_mode)
        new = old & ~(0o077 & ~allowed)
        if new == old or not is_kind(st.st_mode):
            continue
        try:
            os.chmod(target, new)
        except OSError as exc:
            log.warning("%s can be read by other users of this machine (%04o) and could not be made private: %s", target, old, exc)
            continue
        changed.append(f"{target} {old:04o} -> {new:04o}")
    if changed:
        log.info("tightened the default store, which other users of this machine could open: %s", ", ".join(changed))
