"""A real daemon run by a normal (non-root) user, for tests that must hold for both kinds of daemon.

Run as root (as CI is), this creates the user `rftsbx` if missing and starts the daemon with
`runuser -u rftsbx`. The repository's .venv python is a symlink into root's pyenv, which other
users cannot read, so the user gets a venv built from the system python (same minor version, same
ABI) whose .pth file points at this venv's site-packages and the repository: the same code and
packages, run by an interpreter the user can execute. Run as a normal user, the daemon is simply
started as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.daemon_proc import REPO, DaemonProcess, wait_until

USER = "rftsbx"


@dataclass
class NormalUser:
    """Who the daemon runs as, with the interpreter to use and the user's real home directory."""

    name: str
    uid: int
    gid: int
    home: Path
    python: str
    via_runuser: bool


def _system_python() -> str | None:
    """A python of our minor version that any user can execute (Debian's /usr/bin/python3.X)."""
    wanted = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{wanted}", f"/usr/local/bin/{wanted}"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def normal_user(tmp_root: Path) -> NormalUser | str:
    """The normal user to run a daemon as, or the reason there cannot be one."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.getuid())
        return NormalUser(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), sys.executable, False)
    if not shutil.which("runuser"):
        return "runuser is not installed (util-linux)"
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        made = subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], capture_output=True, text=True)
        try:  # a parallel test process (pytest -n) may have created it first: that useradd fails, the user exists
            entry = pwd.getpwnam(USER)
        except KeyError:
            return f"cannot create the user {USER}: {made.stderr.strip()}"
    system_python = _system_python()
    if system_python is None:
        return f"no system python{sys.version_info.major}.{sys.version_info.minor} a normal user can run"
    venv = tmp_root / "venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([system_python, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        site_packages = Path(sysconfig.get_paths()["purelib"])
        inner = next((venv / "lib").glob("python3*/site-packages"))
        (inner / "rft_repo.pth").write_text(f"{site_packages}\n{REPO}\n")
    for path in (tmp_root, *tmp_root.rglob("*")):
        path.chmod(path.stat().st_mode | 0o055 if path.is_dir() else path.stat().st_mode | 0o044)
    python = str(venv / "bin" / "python")
    runuser = shutil.which("runuser") or "runuser"
    probe = subprocess.run([runuser, "-u", USER, "--", python, "-c", "import daemon.server"],
                           cwd="/", capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    if probe.returncode != 0:  # e.g. a checkout under /root, which other users cannot read
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"{USER} cannot import the daemon from {REPO} ({last}); put the checkout where other users can read"
    return NormalUser(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), python, True)


def private_home(user: NormalUser) -> Path:
    """A short RFT_HOME owned by the user (Unix socket paths must stay under ~100 bytes)."""
    home = Path(tempfile.mkdtemp(prefix="rft-u-"))
    if user.via_runuser:
        os.chown(home, user.uid, user.gid)
    return home


class UserDaemon(DaemonProcess):
    """`python -m daemon.server` as the normal user (via runuser when we are root), always over TCP."""

    def __init__(self, home: Path, user: NormalUser, tcp: str, env: dict[str, str] | None = None) -> None:
        super().__init__(home, env=env, tcp=tcp)
        self.user = user

    @property
    def env(self) -> dict[str, str]:
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "RFT_HOME": str(self.home), "PYTHONPATH": str(REPO),
                "HOME": str(self.user.home), "LANG": "C.UTF-8"}
        return {**base, **self.extra_env}

    def start(self, timeout: float = 60.0) -> UserDaemon:
        cmd = [self.user.python, "-m", "daemon.server", "--home", str(self.home), "--tcp", str(self.tcp)]
        if self.user.via_runuser:
            cmd = [shutil.which("runuser") or "runuser", "-u", self.user.name, "--", *cmd]
        with open(self.log_path, "ab") as log:  # outside RFT_HOME, owned by the test; the daemon inherits the fd
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.user.home if self.user.home.is_dir() else "/",
                                         start_new_session=True)
        wait_until(self._answers, timeout, what=f"the {self.user.name} daemon to answer /v1/health")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = self.log()
            raise RuntimeError(f"the {self.user.name} daemon exited ({self.proc.returncode}):\n{log}")
        with self.client(timeout=2) as c:
            return bool(c.health().pid)

    def client(self, timeout: float = 60.0):
        from daemon.client import Client

        token = self.paths.token_file.read_text().strip() if self.paths.token_file.exists() else None
        return Client.connect(url=f"http://{self.tcp}", token=token, timeout=timeout)

    @property
    def log_path(self) -> Path:
        return self.home.parent / f"{self.home.name}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    @property
    def daemon_pid(self) -> int:
        """The daemon's own pid (runuser's child when started through runuser)."""
        with self.client(timeout=5) as c:
            return int(c.health().pid)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """The whole process group: runuser and the daemon under it (the base class's stop falls back to this)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(timeout=15)
