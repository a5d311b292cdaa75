"""The row index beside a stored file (`files/<sha>.idx`): any page of any file in one seek per row.

Layout: a 64-byte header (magic, version, rows, size and mtime_ns of the data file it was built from,
the first 32 hex digits of its sha256), then `rows` uint64 byte offsets, then `rows` uint64 line numbers.
A page reads only its slice of each array, so page 10,000 of a 1,000,000-row file costs what page 0 does.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"RFTIDX01"
HEADER = struct.Struct("<8sQQQ32s")  # magic, rows, size, mtime_ns, sha256 prefix (hex, ascii)
HEADER_SIZE = 64
CHUNK = 1 << 20


class IndexError_(Exception):
    """The index cannot be used (missing, stale, damaged); rebuild it."""


@dataclass(frozen=True)
class RowIndex:
    path: Path
    rows: int

    def slice(self, offset: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Byte offsets and line numbers of rows [offset, offset + limit)."""
        n = max(0, min(limit, self.rows - offset))
        if n == 0:
            empty = np.zeros(0, dtype=np.uint64)
            return empty, empty
        with open(self.path, "rb") as f:
            f.seek(HEADER_SIZE + 8 * offset)
            starts = np.frombuffer(f.read(8 * n), dtype="<u8")
            f.seek(HEADER_SIZE + 8 * self.rows + 8 * offset)
            lines = np.frombuffer(f.read(8 * n), dtype="<u8")
        if len(starts) != n or len(lines) != n:
            raise IndexError_(f"index {self.path.name} is shorter than its header says")
        return starts, lines


def index_path(data_path: Path) -> Path:
    return data_path.with_suffix(".idx")


def write_index(data_path: Path, sha256: str, offsets: array, lines: array) -> Path:
    """Write atomically (temp file + rename), stamped with the data file's size and mtime."""
    st = os.stat(data_path)
    dest = index_path(data_path)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".idx-")
    try:
        with os.fdopen(fd, "wb") as out:
            header = HEADER.pack(MAGIC, len(offsets), st.st_size, st.st_mtime_ns, sha256[:32].encode())
            out.write(header.ljust(HEADER_SIZE, b"\0"))
            out.write(np.asarray(offsets, dtype="<u8").tobytes())
            out.write(np.asarray(lines, dtype="<u8").tobytes())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def open_index(data_path: Path, sha256: str) -> RowIndex:
    """The index for this exact data file, or IndexError_ saying why it cannot be used."""
    path = index_path(data_path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
        size = path.stat().st_size
    except FileNotFoundError:
        raise IndexError_("missing") from None
    if len(head) < HEADER.size:
        raise IndexError_("header is truncated")
    magic, rows, data_size, mtime_ns, sha = HEADER.unpack(head[: HEADER.size])
    st = os.stat(data_path)
    if magic != MAGIC:
        raise IndexError_("not an rft-tui index (or an older format)")
    if sha != sha256[:32].encode():
        raise IndexError_("built for other content")
    if (data_size, mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise IndexError_("the data file changed since the index was built")
    if size != HEADER_SIZE + 16 * rows:
        raise IndexError_("index length does not match its row count")
    return RowIndex(path, rows)


def scan_offsets(data_path: Path) -> tuple[array, array, str]:
    """Row offsets, line numbers (blank lines are not rows) and sha256 of a file, in one read."""
    offsets, lines = array("Q"), array("Q")
    digest = hashlib.sha256()
    pos = 0
    line_no = 0
    tail = b""
    with open(data_path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            digest.update(chunk)
            data = tail + chunk if tail else chunk
            parts = data.split(b"\n")
            tail = parts.pop() if chunk else b""
            for raw in parts:
                line_no += 1
                if raw.strip():
                    offsets.append(pos)
                    lines.append(line_no)
                pos += len(raw) + 1
            if not chunk:
                break
    return offsets, lines, digest.hexdigest()
