"""Where rft-tui keeps its state: `RFT_HOME` and the files inside it."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOCKET_PATH_MAX = 100  # AF_UNIX sun_path is 108 bytes on Linux; keep a margin


def default_home() -> Path:
    """`$RFT_HOME`, else `$XDG_DATA_HOME/rft-tui`, else `~/.local/share/rft-tui`."""
    if os.environ.get("RFT_HOME"):
        return Path(os.environ["RFT_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "rft-tui"


@dataclass(frozen=True)
class Paths:
    """Every path under one RFT_HOME; creating them is `ensure()`'s job, not the constructor's."""

    home: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Paths:
        return cls(Path(home).expanduser().resolve() if home else default_home().resolve())

    @property
    def db(self) -> Path:
        return self.home / "rft.db"

    @property
    def files(self) -> Path:
        return self.home / "files"

    @property
    def graders(self) -> Path:
        return self.home / "graders"

    @property
    def jobs(self) -> Path:
        return self.home / "jobs"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def status_file(self) -> Path:
        return self.run / "daemon.json"

    @property
    def token_file(self) -> Path:
        return self.run / "token"

    @property
    def daemon_log(self) -> Path:
        return self.run / "daemon.log"

    @property
    def socket(self) -> Path:
        """`run/daemon.sock`, or a short per-home path in a 0700 temp dir when that is too long."""
        return self._run_socket("daemon.sock")

    @property
    def notify_socket(self) -> Path:
        """Datagram socket workers poke after each committed step (best effort)."""
        return self._run_socket("notify.sock")

    def _run_socket(self, name: str) -> Path:
        sock = self.run / name
        if len(os.fsencode(str(sock))) <= SOCKET_PATH_MAX:
            return sock
        return self.short_run_dir() / name

    def short_run_dir(self) -> Path:
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"rft-{os.getuid()}-{digest}"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs / job_id

    def job_log(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "worker.log"

    def ensure(self) -> Paths:
        """Create the layout, owner-only: every directory 0700 (the store holds grader source and data)."""
        for d in (self.home, self.files, self.graders, self.jobs, self.models, self.run, self.socket.parent):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        for d in {self.run, self.socket.parent}:  # the socket's dirs; the daemon tightens the rest, and says so
            if stat.S_IMODE(os.lstat(d).st_mode) & 0o077:
                os.chmod(d, 0o700)
        return self


def tighten_permissions(home: Path) -> list[str]:
    """Remove group/other access from `home` and everything in it (symlinks are not followed).

    Returns "path old->new" for each change, so the daemon can say once what it tightened.
    """
    changed: list[str] = []

    def fix(path: str, st: os.stat_result) -> None:
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            new = mode & 0o700
            try:
                os.chmod(path, new, follow_symlinks=False)
            except (OSError, NotImplementedError):
                return
            rel = os.path.relpath(path, home)
            changed.append(f"{'home' if rel == '.' else rel} {mode:04o}->{new:04o}")

    try:
        fix(str(home), os.lstat(home))
    except FileNotFoundError:
        return changed
    for root, dirs, files in os.walk(home, followlinks=False):
        for name in dirs + files:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISLNK(st.st_mode):
                fix(path, st)
    return changed
