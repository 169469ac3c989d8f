"""Text files for ``dsnotebook push``: opening them (decompressed), detecting a CSV file's
separator, and finding the first byte an encoding cannot decode."""

from __future__ import annotations

import codecs
import csv
from pathlib import Path
from typing import IO

from ..errors import ValidationError

__all__ = ["SEPARATORS", "decoding_error", "open_text", "sniff_separator"]

#: The separators :func:`sniff_separator` chooses among.
SEPARATORS = ",;\t|"


def open_text(path: Path, compression: str | None) -> IO[bytes]:
    """``path`` opened for reading bytes, decompressed with pyarrow's codec for ``compression``
    (``"gzip"``, ``"zstd"`` or None)."""
    import pyarrow as pa

    return pa.input_stream(str(path), compression=compression)


def sniff_separator(path: Path, compression: str | None, encoding: str) -> str:
    """The separator of a CSV file, detected by :class:`csv.Sniffer` on its first 50 lines (at
    most 64 KiB) among :data:`SEPARATORS`; a comma when the sniffer cannot tell."""
    with open_text(path, compression) as f:
        head = f.read(64 * 1024)
    text = head.decode(encoding, errors="replace")
    if len(head) == 64 * 1024 and "\n" in text:
        text = text[: text.rindex("\n")]  # whole lines only
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=SEPARATORS).delimiter
    except csv.Error:  # one column, or no line the sniffer can agree on
        return ","


def decoding_error(path: Path, compression: str | None, encoding: str, exc: UnicodeDecodeError) -> ValidationError:
    """Find the first byte that ``encoding`` cannot decode, and say which option reads the file."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = lines = 0
    with open_text(path, compression) as f:
        while True:
            chunk = f.read(1 << 20)
            pending = len(decoder.getstate()[0])  # the undecoded tail of the previous chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as bad:
                # bad.object is that tail followed by this chunk.
                at = offset - pending + bad.start
                line = lines + bad.object[pending : bad.start].count(b"\n") + 1
                byte = bad.object[bad.start]
                starts_with = bad.object[:2] if offset == 0 else b""
                break
            if not chunk:
                return ValidationError(
                    f"{path.name}: not valid {encoding} text ({exc}); give the file's encoding with --encoding"
                )
            lines += chunk.count(b"\n")
            offset += len(chunk)
    uncompressed = " of the uncompressed text" if compression else ""
    if at in (0, 1) and starts_with in (b"\xff\xfe", b"\xfe\xff"):
        hint = "it starts with a UTF-16 byte-order mark: pass --encoding utf-16"
    else:
        hint = (
            "if the file is Latin-1 or Windows-1252, as many spreadsheet exports are, pass --encoding latin-1 "
            "(or --encoding cp1252); otherwise give the file's own encoding with --encoding"
        )
    return ValidationError(
        f"{path.name} is not valid {encoding} text: byte 0x{byte:02x} on line {line} "
        f"(byte offset {at:,}{uncompressed}) cannot be decoded; {hint}"
    )
