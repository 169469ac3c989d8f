"""The catalog's JSON text, read within limits.

The catalog's JSON columns (a version's manifest, a dataset's tags) come from the database,
where anyone who can write to it may have put something else. The driver hands their text to
:func:`load_json` (the engine's ``json_deserializer``), which never raises: text longer than
:data:`MAX_JSON_CHARS`, nested deeper than :data:`MAX_JSON_DEPTH` or not JSON at all becomes an
:class:`UnreadableJSON` marker, which whoever expected the value refuses by name
(:func:`dsnotebook.store.codec.check_manifest` for a manifest). Nothing unbounded is built from
such text, and Python's recursion limit is never reached.

PostgreSQL's driver reads the values of ``json`` and ``jsonb`` data columns (object columns of
JSON values, see the package docstring) with the same reader. The limits guard the catalog, not
the data: a marker keeps its text, and the decoder parses a data cell's text itself.

The same limits hold when a manifest is written (:func:`json_text_problem`), so that no version
is published whose manifest could not be read back.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

__all__ = ["MAX_JSON_CHARS", "MAX_JSON_DEPTH", "UnreadableJSON", "json_text_problem", "load_json"]

#: The longest JSON text read (64 MiB). A manifest's size grows with what it embeds: the column
#: labels and every category of every categorical column. Ten million short categories fit.
MAX_JSON_CHARS = 64 * 1024 * 1024

#: The deepest nesting of JSON arrays and objects read. A manifest nests about seven deep, plus
#: two for each level of tuples in a label or name.
MAX_JSON_DEPTH = 100

# A JSON string, matched possessively: a long string keeps no backtracking state.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_SCAN_CHARS = 1 << 20
_OPENING = (ord("["), ord("{"))
_CLOSING = (ord("]"), ord("}"))


class UnreadableJSON:
    """What :func:`load_json` gives for text it does not read: why (``reason``), and the text
    itself (``text``, None when it was not text at all)."""

    __slots__ = ("reason", "text")

    def __init__(self, reason: str, text: str | None = None) -> None:
        self.reason = reason
        self.text = text

    def __repr__(self) -> str:
        return f"<UnreadableJSON: {self.reason}>"


def _deeper_than(text: str, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than ``limit`` deep, found without parsing
    it: its strings are cut out, and the brackets left are counted, a chunk at a time."""
    if text.count("[") + text.count("{") <= limit:
        return False
    bare = _STRING.sub("", text)
    depth = 0
    for start in range(0, len(bare), _SCAN_CHARS):
        codes = np.frombuffer(bare[start : start + _SCAN_CHARS].encode("utf-8", "surrogatepass"), dtype=np.uint8)
        steps = np.zeros(len(codes), dtype=np.int64)
        steps[(codes == _OPENING[0]) | (codes == _OPENING[1])] = 1
        steps[(codes == _CLOSING[0]) | (codes == _CLOSING[1])] = -1
        running = np.cumsum(steps) + depth
        if running.max(initial=depth) > limit:
            return True
        depth = int(running[-1]) if len(running) else depth
    return False


def json_text_problem(text: str) -> str | None:
    """Why :func:`load_json` would not read ``text`` (too long, nested too deep), or None."""
    if len(text) > MAX_JSON_CHARS:
        return f"its JSON text is {len(text):,} characters long, more than the {MAX_JSON_CHARS:,} read"
    if _deeper_than(text, MAX_JSON_DEPTH):
        return f"its JSON text nests arrays and objects more than {MAX_JSON_DEPTH} deep"
    return None


def load_json(text: Any) -> Any:
    """The value of JSON text, or an :class:`UnreadableJSON` marker; never raises.

    Used as the engine's ``json_deserializer``: SQLite's driver gives the stored value (text, or
    whatever else a writer stored there), PostgreSQL's the text of a ``json`` or ``jsonb`` value.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            return UnreadableJSON("its stored bytes are not UTF-8 text")
    if not isinstance(text, str):
        return UnreadableJSON(f"a stored {type(text).__name__} value, not JSON text")
    problem = json_text_problem(text)
    if problem is not None:
        return UnreadableJSON(problem, text)
    try:
        return json.loads(text)
    except RecursionError:
        return UnreadableJSON("its JSON text nests too deep to read", text)
    except ValueError as exc:
        return UnreadableJSON(f"its text is not valid JSON ({exc})", text)
