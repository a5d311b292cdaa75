"""A REAL OpenSSH server on loopback for the --ssh tests: its own host key and one user key (ed25519, made in a
temp dir), key-only root login, `StrictModes no` (the keys live in a temp dir), started with `sshd -D` and
stopped by its pid (never by name)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.daemon_proc import wait_until

SSHD = "/usr/sbin/sshd"


def sshd_missing() -> str | None:
    """Why a loopback sshd cannot run here (None: it can)."""
    if not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        return ("openssh-server is not installed (apt-get install openssh-server openssh-client): the --ssh tests "
                "need a real sshd on loopback")
    if os.geteuid() != 0:
        return "the loopback sshd runs as root (it needs /run/sshd and to log in)"
    return None


@dataclass
class Sshd:
    port: int
    key: Path
    log: Path

    @property
    def options(self) -> str:
        """ssh arguments for a host whose key is not in known_hosts yet, with the test's identity."""
        return (f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
                f"-o ConnectTimeout=10 -i {self.key}")

    def logins(self) -> int:
        """Sessions sshd accepted so far (read from its log)."""
        return self.log.read_text(errors="replace").count("Accepted publickey for")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(4).startswith(b"SSH")
    except OSError:
        return False


@contextmanager
def running_sshd(keys: Path, extra_config: list[str] | None = None) -> Iterator[Sshd]:
    """sshd on 127.0.0.1:<free port>, configured in `keys` (created); `extra_config`: more sshd_config lines."""
    keys.mkdir(parents=True, exist_ok=True)
    for name in ("hostkey", "userkey"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    config = keys / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1", f"HostKey {keys / 'hostkey'}", f"AuthorizedKeysFile {keys / 'userkey.pub'}",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no", "StrictModes no", "UsePAM no",
        f"PidFile {keys / 'sshd.pid'}", "AllowStreamLocalForwarding yes", "MaxStartups 50", "LogLevel INFO",
        *(extra_config or []),
    ]) + "\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory (systemd makes it)
    port = _free_port()
    log_path = keys / "sshd.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(port)], stdout=log, stderr=log)
    log.close()
    try:
        wait_until(lambda: proc.poll() is None and _accepts(port), 20,
                   what=f"sshd on 127.0.0.1:{port} ({log_path.read_text(errors='replace')[-500:]})")
        yield Sshd(port, keys / "userkey", log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
