"""`rft-tui --ssh HOST <command>` through a REAL OpenSSH server on loopback, against a daemon on the "remote".

The remote is this machine with its own RFT_HOME; its daemon runs under bubblewrap with the local user's data
directory hidden (a tmpfs over it), so it truly cannot read the local files: `jobs create -t PATH` only works
when the CLI sends the bytes. sshd runs as root on 127.0.0.1 with keys generated into the test's temp dir.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.client import Client, read_status
from daemon.paths import Paths
from tests.support.daemon_proc import REPO, kill_job_workers, wait_until
from tests.support.jobs import EXACT_GRADER, arithmetic_rows, write_jsonl
from tests.support.sshd import Sshd, running_sshd, sshd_missing

RFT_TUI = Path(sys.executable).parent / "rft-tui"

pytestmark = [
    pytest.mark.skipif(sshd_missing() is not None, reason=str(sshd_missing())),
    pytest.mark.skipif(not RFT_TUI.exists(), reason=f"{RFT_TUI} missing: install the project into the venv"),
]


@pytest.fixture(autouse=True)
def no_local_daemon_left(rft_home: Path) -> Iterator[None]:
    """Should a command wrongly start a local daemon (the bug), stop it after the test."""
    yield
    from rft_tui.daemon_control import stop

    stop(Paths.resolve(rft_home))


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    with running_sshd(tmp_path / "ssh") as server:
        yield server


@pytest.fixture
def local_data() -> Iterator[Path]:
    """The user's files on the local machine (hidden from the remote daemon)."""
    d = Path(tempfile.mkdtemp(prefix="rft-local-"))
    write_jsonl(d / "train.jsonl", arithmetic_rows(10, 40))
    write_jsonl(d / "valid.jsonl", arithmetic_rows(60, 10))
    (d / "grader.json").write_text(json.dumps(EXACT_GRADER))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def remote_home(local_data: Path) -> Iterator[Path]:
    """The remote's RFT_HOME with its daemon (fast fake worker) running where `local_data` does not exist."""
    home = Path(tempfile.mkdtemp(prefix="rft-r-"))
    paths = Paths.resolve(home).ensure()
    cmd = [sys.executable, "-m", "daemon.server", "--home", str(home)]
    if shutil.which("bwrap"):
        cmd = ["bwrap", "--dev-bind", "/", "/", "--tmpfs", str(local_data), *cmd]
    env = {**os.environ, "RFT_HOME": str(home), "PYTHONPATH": str(REPO),
           "RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_STEP_S": "0.05"}
    log = open(paths.daemon_log, "ab")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    log.close()

    def up() -> bool:
        with Client.connect(socket=read_status(paths, clean_stale=False).socket, timeout=2) as c:
            return bool(c.health().pid)

    try:
        wait_until(up, 30, what="the remote daemon")
        yield home
    finally:
        kill_job_workers(paths)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(home, ignore_errors=True)


def rft(local_home: Path, sshd: Sshd, *args: str, ssh: list[str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """`rft-tui --ssh user@127.0.0.1:PORT ...` as a user runs it, with ssh options from RFT_SSH_OPTIONS."""
    target = ssh if ssh is not None else ["--ssh", f"{getpass.getuser()}@127.0.0.1:{sshd.port}"]
    env = {**os.environ, "RFT_HOME": str(local_home), "RFT_SSH_OPTIONS": sshd.options, "COLUMNS": "200"}
    out = subprocess.run([str(RFT_TUI), *target, *args], env=env, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    if check and out.returncode != 0:
        raise AssertionError(f"rft-tui {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


@pytest.mark.slow
def test_every_command_reaches_the_remote_daemon_over_real_ssh(rft_home: Path, sshd: Sshd, remote_home: Path,
                                                               local_data: Path) -> None:
    remote = ["--remote-command", str(RFT_TUI), "--remote-home", str(remote_home)]
    ssh = ["--ssh", f"{getpass.getuser()}@127.0.0.1:{sshd.port}", *remote]
    remote_paths = Paths.resolve(remote_home)
    with Client.connect(home=remote_home) as direct:
        assert direct.list_jobs().data == []
        rft(rft_home, sshd, "files", "add", str(local_data / "valid.jsonl"), "--json", ssh=ssh)
        assert [f.filename for f in direct.list_files().data] == ["valid.jsonl"]

        listed = rft(rft_home, sshd, "jobs", "list", ssh=ssh)
        assert listed.stdout.split() == ["id", "status", "step", "train", "reward", "valid", "reward", "model",
                                         "created"]  # the remote's (empty) list, not a local daemon's
        job = json.loads(rft(rft_home, sshd, "jobs", "create", "-m", "builtin:tiny-arith",
                             "-t", str(local_data / "train.jsonl"), "-v", str(local_data / "valid.jsonl"),
                             "-g", str(local_data / "grader.json"), "--hp", "max_steps=3", "--json", ssh=ssh).stdout)
        on_remote = direct.get_job(job["id"])
        assert direct.get_file(on_remote.training_file).filename == "train.jsonl"
        assert len(direct.list_files().data) == 2  # valid.jsonl was already there: found by hash, not added again

        # -p PORT instead of host:port; a short id, as the TUI shows it
        short = job["id"][:14]
        by_port = ["--ssh", f"{getpass.getuser()}@127.0.0.1", "-p", str(sshd.port), *remote]
        shown = rft(rft_home, sshd, "jobs", "show", short, ssh=by_port).stdout
        assert job["id"] in shown and "builtin:tiny-arith" in shown
        wait_until(lambda: direct.get_job(job["id"]).status.value == "succeeded", 60, what="the remote job")
        assert job["id"] in rft(rft_home, sshd, "jobs", "list", ssh=ssh).stdout
        relative = rft(rft_home, sshd, "jobs", "export", job["id"], "out", ssh=ssh, check=False)
        assert relative.returncode == 2 and "the daemon writes OUT_DIR on its own machine" in relative.stderr
        status = json.loads(rft(rft_home, sshd, "daemon", "status", "--json", ssh=ssh).stdout)
        assert status["pid"] == read_status(remote_paths).pid
    assert not Paths.resolve(rft_home).db.exists() and not Paths.resolve(rft_home).status_file.exists(), \
        "no local daemon may be started for --ssh"


def test_remote_without_rft_tui_on_its_path_is_a_clear_first_run_message(rft_home: Path, sshd: Sshd) -> None:
    out = rft(rft_home, sshd, "jobs", "list", check=False,
              ssh=["--ssh", f"{getpass.getuser()}@127.0.0.1:{sshd.port}", "--remote-command", "rft-tui-not-here"])
    assert out.returncode == 3, out.stderr
    assert "`rft-tui-not-here` was not found on" in out.stderr and "--remote-command" in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    assert not Paths.resolve(rft_home).db.exists()


@pytest.mark.slow
def test_ssh_settings_from_the_environment(rft_home: Path, sshd: Sshd, remote_home: Path, tmp_path: Path) -> None:
    """RFT_SSH_PORT, RFT_SSH_REMOTE_COMMAND and RFT_SSH_REMOTE_HOME stand in for the flags."""
    with Client.connect(home=remote_home) as direct:
        stored = direct.upload_file(str(write_jsonl(tmp_path / "remote.jsonl", arithmetic_rows(5, 3))))
    env = {**os.environ, "RFT_HOME": str(rft_home), "RFT_SSH_OPTIONS": sshd.options, "RFT_SSH_PORT": str(sshd.port),
           "RFT_SSH_REMOTE_COMMAND": str(RFT_TUI), "RFT_SSH_REMOTE_HOME": str(remote_home)}
    started = time.monotonic()
    out = subprocess.run([str(RFT_TUI), "--ssh", f"{getpass.getuser()}@127.0.0.1", "files", "list", "--json"],
                         env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert [f["id"] for f in json.loads(out.stdout)["data"]] == [stored.id]
    assert time.monotonic() - started < 30
    assert not Paths.resolve(rft_home).db.exists(), "no local daemon may be started for --ssh"
