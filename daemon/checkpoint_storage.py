"""Where checkpoints live: the job dir (local), a shared path, or an fsspec URL (a cluster's storage).

The store records each checkpoint's location as given here: a local path stays a path (the local executor's
behaviour is unchanged); with RFT_CHECKPOINT_STORAGE set to a URL (`s3://bucket/rft`, `gs://...`,
`file:///shared/rft`) the checkpoint is saved in the worker's scratch dir and copied there, and the URL is
what the store keeps. fsspec (already installed with `datasets`) does the copying; its backends (s3fs, gcsfs)
are the cluster's to install. The worker publishes and prunes through this module; the daemon's export
fetches a checkpoint that lives at a URL into the job's directory first.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def is_url(location: str) -> bool:
    return "://" in location


def _fs(url: str) -> tuple[Any, str]:
    import fsspec  # type: ignore[import-untyped]

    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def publish(local_dir: Path, storage: str | None, job_id: str) -> str:
    """Copy a saved checkpoint dir to URL storage (`<storage>/<job>/<name>`); its location for the store."""
    if not storage or not is_url(storage):
        return str(local_dir)
    url = f"{storage.rstrip('/')}/{job_id}/{local_dir.name}"
    fs, path = _fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.put(str(local_dir), path, recursive=True)
    return url


def fetch(location: str, into: Path) -> str:
    """A local directory holding the checkpoint at `location` (a URL's is downloaded to `into/<name>`)."""
    if not is_url(location):
        return location
    dest = into / location.rstrip("/").rsplit("/", 1)[-1]
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fs, path = _fs(location)
    fs.get(path, str(dest), recursive=True)
    return str(dest)


def exists(location: str) -> bool:
    if not is_url(location):
        return Path(location).is_dir()
    fs, path = _fs(location)
    return bool(fs.exists(path))


def remove(location: str) -> None:
    """Delete a checkpoint wherever it is (best effort: a missing one is already gone)."""
    if not is_url(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    fs, path = _fs(location)
    if fs.exists(path):
        fs.rm(path, recursive=True)
