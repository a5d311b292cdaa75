"""Where checkpoints (and a cluster job's files) live: the job dir (local), a shared path, or an fsspec URL.

The store records each checkpoint's location as given here: a local path stays a path (the local executor's
behaviour is unchanged); with RFT_CHECKPOINT_STORAGE set to a URL (`s3://bucket/rft`, `gs://...`,
`file:///shared/rft`) the checkpoint is saved in the worker's scratch dir and copied there, and the URL is
what the store keeps. fsspec (already installed with `datasets`) does the copying; its backends (s3fs for
s3://, the `[s3]` extra) must be installed where the URL is used.

`options` are fsspec storage options (`{"client_kwargs": {"endpoint_url": ...}, "key": ..., "secret": ...}`):
the daemon passes its cluster's `storage_options`; a cluster worker gets them in RFT_STORAGE_OPTIONS, which is
never put in a runtime_env or a script (see `options_from_env`). Without them, the backend's standard
configuration applies (for S3: AWS_* variables, ~/.aws, an instance role).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

STORAGE_OPTIONS_ENV = "RFT_STORAGE_OPTIONS"  # JSON: the cluster's storage_options, for the worker (a secret)
PROBE_TIMEOUT_S = float(os.environ.get("RFT_STORAGE_PROBE_TIMEOUT_S", "20"))
BACKENDS = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "abfs": "adlfs", "az": "adlfs"}
T = TypeVar("T")


class StorageError(RuntimeError):
    """A storage URL could not be used: the message names the URL, what was tried, and what failed."""


def is_url(location: str) -> bool:
    return "://" in location


def join(base: str, *parts: str) -> str:
    """`base/part/...` for a URL or a path (Path() would turn `s3://b` into `s3:/b`)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def options_from_env() -> dict[str, Any]:
    """The worker's storage options (RFT_STORAGE_OPTIONS), handed over like its report token."""
    raw = os.environ.get(STORAGE_OPTIONS_ENV)
    return dict(json.loads(raw)) if raw else {}


def _fs(url: str, options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    import fsspec  # type: ignore[import-untyped]

    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(options or {}))
    except ImportError as e:
        scheme = url.split("://", 1)[0]
        package = BACKENDS.get(scheme, f"an fsspec backend for {scheme}://")
        raise StorageError(f"storage {url}: this machine has no {scheme}:// support ({package} is not "
                           f"installed: pip install 'rft-tui[s3]' or {package}) -- {e}") from None
    return fs, path


def publish(local_dir: Path, storage: str | None, job_id: str, options: Mapping[str, Any] | None = None) -> str:
    """Copy a saved checkpoint dir to URL storage (`<storage>/<job>/<name>`); its location for the store."""
    if not storage or not is_url(storage):
        return str(local_dir)
    url = join(storage, job_id, local_dir.name)
    fs, path = _fs(url, options)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.put(str(local_dir).rstrip("/") + "/", path, recursive=True)
    return url


def _remote_size(fs: Any, path: str) -> int:
    return int(sum(int(info.get("size") or 0) for info in fs.find(path, detail=True).values()))


def fetch(location: str, into: Path, options: Mapping[str, Any] | None = None) -> str:
    """A local directory holding the checkpoint at `location` (a URL's is downloaded to `into/<name>`, 0700).

    A copy already there with the same total size is used as is (checkpoints do not change once published);
    a download goes to a temporary sibling first, so an interrupted one is never taken for a checkpoint.
    """
    if not is_url(location):
        return location
    into.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(into, 0o700)
    dest = into / location.rstrip("/").rsplit("/", 1)[-1]
    fs, path = _fs(location, options)
    if not fs.exists(path):
        raise FileNotFoundError(f"nothing at {location}")
    size = _remote_size(fs, path)
    if dest.is_dir() and sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) == size:
        return str(dest)
    tmp = into / f".{dest.name}.{uuid.uuid4().hex[:8]}"
    try:
        fs.get(path.rstrip("/") + "/", str(tmp), recursive=True)
        os.chmod(tmp, 0o700)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(dest)


def exists(location: str, options: Mapping[str, Any] | None = None) -> bool:
    if not is_url(location):
        return Path(location).is_dir()
    fs, path = _fs(location, options)
    return bool(fs.exists(path))


def remove(location: str, options: Mapping[str, Any] | None = None) -> None:
    """Delete a checkpoint wherever it is (best effort: a missing one is already gone)."""
    if not is_url(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    fs, path = _fs(location, options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


# ---------------------------------------------------------------- files of a cluster job on URL storage


def _make_parent(fs: Any, path: str) -> None:
    """Directories exist on a local file system (file://); an object store has none (and s3fs's makedirs would
    create a missing bucket, which a probe must report instead)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        fs.makedirs(fs._parent(path), exist_ok=True)


def put_file(src: str | Path, url: str, options: Mapping[str, Any] | None = None,
             skip_same_size: bool = True) -> None:
    """Upload one file, unless (`skip_same_size`: datasets are content-addressed) an object that size is there."""
    fs, path = _fs(url, options)
    if skip_same_size:
        try:
            if int(fs.info(path).get("size") or -1) == Path(src).stat().st_size:
                return
        except FileNotFoundError:
            pass
    _make_parent(fs, path)
    fs.put_file(str(src), path)


def get_file(url: str, dest: Path, options: Mapping[str, Any] | None = None) -> Path:
    """Download one file to `dest` (atomically: ranks on one node may ask for it at once); kept if there."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fs, path = _fs(url, options)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    try:
        fs.get_file(path, str(tmp))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def read_bytes(url: str, options: Mapping[str, Any] | None = None) -> bytes | None:
    """The object at `url`, or None when there is none."""
    fs, path = _fs(url, options)
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _bounded(what: Callable[[], T], url: str, timeout_s: float) -> T:
    """Run a storage call with a deadline: an endpoint that never answers must not hang a request."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = what()
        except BaseException as e:  # noqa: BLE001 - carried to the caller
            box["error"] = e

    t = threading.Thread(target=call, name="rft-storage-probe", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise StorageError(f"storage {url} did not answer within {timeout_s:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def storage_failure(what: str, e: BaseException) -> StorageError:
    """`what` failed because of `e` (botocore, aiohttp, OSError alike), as one line naming the exception."""
    return StorageError(f"{what}: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")


def probe(url: str, options: Mapping[str, Any] | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Write, read back and delete a small object under `url`; a StorageError says which URL and what failed."""
    name = join(url, "rft-tui", f".probe-{uuid.uuid4().hex[:12]}")

    def round_trip() -> None:
        step = "connect"
        try:
            fs, path = _fs(name, options)
            step = "write"
            _make_parent(fs, path)
            fs.pipe_file(path, b"rft-tui storage probe\n")
            step = "read"
            if fs.cat_file(path) != b"rft-tui storage probe\n":
                raise StorageError(f"storage {url}: what was written could not be read back")
            step = "delete"
            fs.rm_file(path)
        except StorageError:
            raise
        except Exception as e:  # noqa: BLE001 - botocore/aiohttp/OSError alike: say which step
            raise storage_failure(f"storage {url}: could not {step} {name}", e) from None

    _bounded(round_trip, url, timeout_s)
