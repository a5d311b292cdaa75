"""Datasets in the store: import by content hash (streaming), so a job sees the exact bytes it started with."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from daemon import api
from daemon.errors import ApiError, bad_request, not_found
from daemon.paths import Paths
from daemon.store import Store

CHUNK = 1 << 20


def file_id_for(sha256: str) -> str:
    return "file-" + sha256[:24]


def stored_path(paths: Paths, sha256: str) -> Path:
    return paths.files / f"{sha256}.jsonl"


def import_stream(store: Store, paths: Paths, src: BinaryIO, filename: str,
                  purpose: str = "fine-tune", source_path: str | None = None) -> api.FileObject:
    """Copy `src` into the store under its sha256 (same content -> same file id)."""
    paths.files.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    rows = 0
    last = b"\n"
    fd, tmp = tempfile.mkstemp(dir=paths.files, prefix=".import-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                rows += chunk.count(b"\n")
                last = chunk[-1:]
        if size and last != b"\n":
            rows += 1
        sha = digest.hexdigest()
        existing = store.file_by_sha(sha)
        if existing is not None:
            return store.file_object(existing)
        dest = stored_path(paths, sha)
        os.replace(tmp, dest)
        os.chmod(dest, 0o444)
        tmp = ""
        store.insert_file({
            "id": file_id_for(sha), "sha256": sha, "bytes": size, "filename": filename, "purpose": purpose,
            "created_at": int(time.time()), "rows": rows, "path": str(dest), "source_path": source_path,
            "status": "processed",
        })
        return store.file_object(store.file_by_sha(sha))  # type: ignore[arg-type]
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def import_path(store: Store, paths: Paths, path: str, purpose: str = "fine-tune") -> api.FileObject:
    p = Path(path).expanduser()
    if not p.is_file():
        raise bad_request(f"No such file: {path}", param="path", code="file_not_found")
    with open(p, "rb") as f:
        return import_stream(store, paths, f, p.name, purpose, source_path=str(p.resolve()))


def get_file(store: Store, file_id: str) -> dict:
    row = store.get_file_row(file_id)
    if row is None:
        raise not_found("file", file_id, param="file_id")
    return row


def iter_content(row: dict) -> Iterator[bytes]:
    with open(row["path"], "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
