"""Grader files under `$RFT_HOME/graders/`: list, read, save (atomic, optimistic concurrency).

Saving refuses content that does not *parse* (JSON/YAML syntax, Python syntax, not one object) with a
400 that says where; content that parses but is not a valid grader spec is saved, and the returned
`GraderFile` carries `valid=False` and the spec errors, so work in progress is never lost in the editor.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import threading
from pathlib import Path

from daemon import api
from daemon.errors import ApiError, bad_request, conflict
from graders.errors import GraderFileError
from graders.loader import GRADER_FILE_FORMATS as GRADER_SUFFIXES
from graders.loader import grader_file_problems, parse_grader_text

MAX_GRADER_BYTES = 1024 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MTIME_TOLERANCE_S = 1e-6
_save_lock = threading.Lock()


def is_grader_file_name(name: str) -> bool:
    """A plain file name (no path, no leading dot) with a grader extension."""
    return bool(_NAME_RE.match(name)) and ".." not in name and Path(name).suffix.lower() in GRADER_SUFFIXES


def check_name(name: str) -> str:
    """The name, or a 400 saying what a grader file name may be (this is the path-traversal guard)."""
    if not is_grader_file_name(name):
        raise bad_request(
            f"Invalid grader file name {name!r}: use letters, digits, '_', '-', '.' (no '/' or '..') "
            f"ending in one of {', '.join(GRADER_SUFFIXES)}.", param="name", code="invalid_grader_name")
    return name


def grader_format(name: str) -> str:
    """`json`, `yaml` or `python` (the name has passed `check_name`)."""
    return GRADER_SUFFIXES[Path(name).suffix.lower()]


def grader_text_errors(name: str, text: str) -> list[str]:
    """What is wrong with a grader file's text, each naming the file and line or field (empty: valid)."""
    try:
        return grader_file_problems(text, name)
    except Exception as e:  # noqa: BLE001 - a validator crash is reported as the file's error, never a 500
        return [f"{name}: {type(e).__name__}: {e}"]


class GraderStore:
    """The grader folder; every method is safe to call from request threads."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path_of(self, name: str) -> Path:
        return self.folder / check_name(name)

    def list(self) -> list[api.GraderFile]:
        """Every grader-named entry; symlinks, FIFOs and other non-regular files are listed as problems."""
        self.folder.mkdir(parents=True, exist_ok=True)
        out: list[api.GraderFile] = []
        for entry in sorted(os.scandir(self.folder), key=lambda e: e.name):
            if not is_grader_file_name(entry.name) or entry.is_dir(follow_symlinks=False):
                continue
            try:
                out.append(self._describe(entry.name, with_content=False))
            except FileNotFoundError:
                continue  # deleted while listing
            except NotRegularFile as e:
                out.append(self._not_regular(entry.name, e))
        return out

    def get(self, name: str) -> api.GraderFile:
        check_name(name)
        try:
            return self._describe(name, with_content=True)
        except FileNotFoundError:
            raise ApiError(404, f"No grader file named {name!r} in {self.folder}.", param="name",
                           code="grader_file_not_found") from None
        except NotRegularFile as e:
            raise ApiError(409, f"{e}; it was not opened.", param="name",
                           code="grader_file_not_regular") from None

    def _not_regular(self, name: str, e: NotRegularFile) -> api.GraderFile:
        return api.GraderFile(name=name, path=str(self.folder / name), format=grader_format(name),  # type: ignore[arg-type]
                              modified_at=e.mtime, bytes=0, content=None, valid=False,
                              errors=[f"{e}; it was not opened"])

    def save(self, name: str, body: api.GraderFileSave) -> api.GraderFile:
        path = self.path_of(name)
        data = body.content.encode("utf-8")
        if len(data) > MAX_GRADER_BYTES:
            raise bad_request(f"{name}: grader file is {len(data)} bytes; the limit is {MAX_GRADER_BYTES}.",
                              param="content", code="grader_file_too_large")
        try:
            parse_grader_text(body.content, name)
        except GraderFileError as e:
            raise bad_request(str(e), param="content", code="grader_parse_error") from None
        self.folder.mkdir(parents=True, exist_ok=True)
        with _save_lock:
            self._check_unchanged(name, path, body.expected_modified_at)
            _atomic_write(path, data)
        return self._describe(name, with_content=True)

    def _check_unchanged(self, name: str, path: Path, expected: float | None) -> None:
        if expected is None:
            return
        try:
            current = os.lstat(path).st_mtime_ns / 1e9
        except FileNotFoundError:
            raise conflict(f"{name} was deleted on disk since you loaded it; reload or save under a new name.",
                           param="expected_modified_at", code="grader_file_changed") from None
        if abs(current - expected) > _MTIME_TOLERANCE_S:
            raise conflict(f"{name} changed on disk since you loaded it (modified at {current:.6f}, "
                           f"you had {expected:.6f}); reload it first.",
                           param="expected_modified_at", code="grader_file_changed")

    def _describe(self, name: str, with_content: bool) -> api.GraderFile:
        path = self.folder / name
        st, raw = read_regular(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            text, errors = raw.decode("utf-8", "replace"), [f"{name}: not UTF-8 text ({e.reason})"]
        else:
            errors = grader_text_errors(name, text)
        valid = not errors
        return api.GraderFile(name=name, path=str(path), format=grader_format(name),  # type: ignore[arg-type]
                              modified_at=st.st_mtime_ns / 1e9, bytes=st.st_size,
                              content=text if with_content else None, valid=valid, errors=errors)


class NotRegularFile(Exception):
    """A grader-named entry that is a symlink, FIFO, socket or device: reported, never followed or read."""

    def __init__(self, path: Path, kind: str, mtime: float) -> None:
        super().__init__(f"{path.name} is {kind}, not a regular file; graders are read only from regular files")
        self.kind = kind
        self.mtime = mtime


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "not a regular file"


def read_regular(path: Path, limit: int = MAX_GRADER_BYTES * 4) -> tuple[os.stat_result, bytes]:
    """Stat and content of a regular file, opened without following a symlink or blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW on a symlink
            raise NotRegularFile(path, "a symlink", os.lstat(path).st_mtime_ns / 1e9) from None
        if e.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket, or a FIFO nobody writes to
            st = os.lstat(path)
            raise NotRegularFile(path, _kind(st.st_mode), st.st_mtime_ns / 1e9) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, _kind(st.st_mode), st.st_mtime_ns / 1e9)
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
        return st, b"".join(chunks)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder + fsync + rename: readers and watchers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # grader source is private, like the rest of the store
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
