"""A stall's stack request for a worker the daemon cannot signal (a cluster job): the worker's reporter sees the
request count grow in its control state and writes every thread's stack, its own and its torchrun siblings'.
Real processes: the siblings are this test's children, as ranks are torchrun's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon import api
from daemon.worker.http_reporter import HttpReporter
from tests.support.daemon_proc import wait_until

RANK = """
import faulthandler, signal, sys, time
from pathlib import Path
faulthandler.register(signal.SIGUSR2, file=sys.stderr, all_threads=True, chain=False)
def rank_one_waits():
    Path(sys.argv[1]).touch()
    time.sleep(60)
rank_one_waits()
"""

STRANGER = """
import sys, time
from pathlib import Path
Path(sys.argv[1]).touch()
time.sleep(60)  # SIGUSR2's default action would end this process
"""

RANK_ZERO = """
import sys, time
from pathlib import Path
from daemon.worker_protocol import dump_stacks
while not all(Path(p).exists() for p in sys.argv[1:]):
    time.sleep(0.05)
print("signalled", dump_stacks("test request"), flush=True)
"""


def _start(code: str, env: dict[str, str], err: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=err.open("wb"))


def test_dump_stacks_writes_this_process_and_signals_only_its_jobs_sibling_ranks(tmp_path: Path) -> None:
    ours = {"TORCHELASTIC_RUN_ID": "run-1", "RFT_JOB_ID": "ftjob-a"}
    rank1 = _start(RANK, ours, tmp_path / "rank1.err", str(tmp_path / "rank1.ready"))
    stranger = _start(STRANGER, {"TORCHELASTIC_RUN_ID": "run-1", "RFT_JOB_ID": "ftjob-b"}, tmp_path / "other.err",
                      str(tmp_path / "other.ready"))
    try:
        rank0 = subprocess.run([sys.executable, "-c", RANK_ZERO, str(tmp_path / "rank1.ready"),
                                str(tmp_path / "other.ready")], env={**os.environ, **ours, "PYTHONPATH": os.getcwd()},
                               capture_output=True, text=True, timeout=60)
        assert rank0.returncode == 0, rank0.stderr
        # rank 0 is this test's child too, so rank 1 and the stranger are its siblings; only rank 1 is its job's
        assert rank0.stdout.strip() == "signalled 1", rank0.stdout
        assert "[stall] test request: every thread's stack follows" in rank0.stderr
        assert "Current thread" in rank0.stderr and "<module>" in rank0.stderr, rank0.stderr
        wait_until(lambda: "rank_one_waits" in (tmp_path / "rank1.err").read_text(), 10, interval=0.05,
                   what="rank 1 to write its stack")
        time.sleep(0.2)
        assert stranger.poll() is None  # another job's process was not signalled (it would have died)
        assert rank1.poll() is None  # faulthandler wrote the stack and the rank went on
    finally:
        for p in (rank1, stranger):
            p.kill()
            p.wait()


def test_the_reporter_writes_the_stacks_when_the_request_count_grows(tmp_path: Path,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    # rank 1 starts no sender thread: the control states are handed in as the sender hands in the daemon's
    r = HttpReporter("http://127.0.0.1:9", "rftjob.ftjob-a.secret", "ftjob-a", scratch=tmp_path, rank=1)
    running = api.JobStatus.running
    r._set_control(api.ReportControl(status=running), from_daemon=False)  # the saved job state: no count in it
    r._set_control(api.ReportControl(status=running, stacks_requested=2))  # asked before this worker: not for it
    r._set_control(api.ReportControl(status=running, stacks_requested=2))
    assert "[stall]" not in capfd.readouterr().err
    r._set_control(api.ReportControl(status=running, stacks_requested=3))
    err = capfd.readouterr().err
    assert err.count("[stall] the daemon saw no training step for too long (stalled)") == 1, err
    assert "test_the_reporter_writes_the_stacks_when_the_request_count_grows" in err, err
    r._set_control(api.ReportControl(status=running, stacks_requested=3))
    assert "[stall]" not in capfd.readouterr().err
