"""How deeply a JSON text nests, checked before parsing: deep nesting is refused with a clear message
instead of reaching the parser's recursion limit (a RecursionError, i.e. a 500, or a slow pydantic walk).

The check works on the raw text with C-speed bytes operations (strip strings, keep brackets, peel
innermost pairs), so an 8 MB body costs milliseconds and never recurses.
"""

from __future__ import annotations

import re

MAX_JSON_DEPTH = 64  # request bodies: grader specs, metadata and jobs nest a handful of levels
MAX_ROW_DEPTH = 64  # dataset rows: messages, tools' JSON schemas and item fields

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")  # depth does not care which kind of bracket


def deeper_than(data: bytes | str, limit: int) -> bool:
    """True if the JSON text nests arrays/objects more than `limit` levels deep.

    Invalid JSON may answer either way; the parser reports it afterwards. Valid JSON answers exactly.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than it has brackets
    structure = _STRING.sub(b"", raw).translate(_AS_SQUARE, _NOT_BRACKETS)
    if b"[" * (limit + 1) in structure:
        return True  # limit+1 openers in a row: deeper than the limit, whatever follows
    for _ in range(limit):
        peeled = structure.replace(b"[]", b"")  # one pass peels exactly one level
        if len(peeled) == len(structure):
            return False  # nothing left to peel: mismatched (invalid) or done
        structure = peeled
        if not structure:
            return False
    return b"[]" in structure


def depth_message(limit: int) -> str:
    return f"JSON nested more than {limit} levels deep (arrays/objects inside each other); flatten it"
