"""Who may talk to the daemon: the socket's owner only (0700 dir, 0600 socket, SO_PEERCRED), TCP with a token."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import httpx
import pytest

from daemon.server import peer_uid
from tests.support.daemon_proc import DaemonProcess, wait_until


def mode(p: Path | str) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_socket_and_status_file_permissions(fake_worker_daemon: DaemonProcess) -> None:
    paths = fake_worker_daemon.paths
    assert mode(paths.run) == 0o700
    assert mode(fake_worker_daemon.socket) == 0o600
    assert mode(paths.status_file) == 0o600
    status = json.loads(paths.status_file.read_text())
    assert status["pid"] == fake_worker_daemon.pid and status["socket"] == fake_worker_daemon.socket
    assert {"version", "started_at"} <= set(status)


def test_peer_uid_reports_the_connecting_process_uid(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    conn, _ = server.accept()
    assert peer_uid(conn) == os.getuid()
    for s in (conn, client, server):
        s.close()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as a second uid")
def test_another_uid_is_refused(fake_worker_daemon: DaemonProcess) -> None:
    """A process of another uid that can reach the socket still gets no answer."""
    sock_path = fake_worker_daemon.socket
    # open the directory and socket up, so only the peer check stands in the way
    os.chmod(fake_worker_daemon.paths.home, 0o711)  # the store is private (0700): open a path to the socket
    os.chmod(fake_worker_daemon.paths.run, 0o755)
    os.chmod(sock_path, 0o666)
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: become nobody and try
            os.close(r)
            result = b"?"
            try:
                os.setgid(65534)
                os.setuid(65534)
                with httpx.Client(transport=httpx.HTTPTransport(uds=sock_path), timeout=5) as h:
                    resp = h.get("http://rft/v1/health")
                result = f"answered {resp.status_code}".encode()
            except Exception as e:  # noqa: BLE001
                result = f"refused {type(e).__name__}".encode()
            os.write(w, result)
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        outcome = os.read(r, 200).decode()
        os.close(r)
    finally:
        os.chmod(fake_worker_daemon.paths.run, 0o700)
        os.chmod(fake_worker_daemon.paths.home, 0o700)
        os.chmod(sock_path, 0o600)
    assert outcome.startswith("refused"), outcome
    with fake_worker_daemon.client() as c:  # the owner still gets in
        assert c.health().pid == fake_worker_daemon.pid
    # the refusal is one line in the daemon log, not an asyncio traceback
    refused = wait_until(lambda: [ln for ln in fake_worker_daemon.log().splitlines() if "refused a connection" in ln],
                         10, what="the refusal in the daemon log")
    assert len(refused) == 1 and "uid 65534" in refused[0], refused
    assert "Traceback" not in fake_worker_daemon.log() and "AttributeError" not in fake_worker_daemon.log()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tcp_requires_the_bearer_token(daemon_factory) -> None:
    port = _free_port()
    d: DaemonProcess = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker"},
                                      tcp=f"127.0.0.1:{port}")
    token_file = d.paths.token_file
    assert mode(token_file) == 0o600
    token = token_file.read_text().strip()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=10) as h:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            resp = h.get("/v1/health", headers=headers)
            assert resp.status_code == 401
            assert resp.json()["error"]["type"] == "authentication_error"
        assert h.get("/v1/health", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    from daemon.client import Client

    with Client.connect(url=base, token=token) as c:
        assert c.health().pid == d.pid


def test_half_written_imports_are_swept_at_start(daemon_factory, rft_home: Path) -> None:
    from daemon.paths import Paths

    files = Paths.resolve(rft_home).ensure().files
    leftover = files / ".import-abc123"
    leftover.write_bytes(b'{"messages": [')
    daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker"})
    assert not leftover.exists()
