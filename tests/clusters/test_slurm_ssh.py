"""`--ssh LOGIN_HOST` for Slurm against a REAL sshd on loopback: every Slurm command goes through it.

The login host is this machine's sshd (its own keys, key-only root login) whose sessions get the one-node
Slurm's SLURM_CONF (`SetEnv` in its sshd_config, as a real login node has /etc/slurm/slurm.conf). The daemon
has no SLURM_CONF and this machine has no /etc/slurm/slurm.conf, so a Slurm command run here instead of over
ssh finds no cluster: `clusters test` (sbatch, squeue/scontrol), a job's submission and its cancel (scancel)
only work through the login host. The job runs the fake worker (reports over the API as the real worker does)
so it needs no model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import api
from daemon.client import Client
from tests.daemon.test_cli import cli
from tests.support.daemon_proc import REPO, DaemonProcess, wait_until
from tests.support.engines import SlurmCluster, free_port
from tests.support.jobs import job_request, make_files
from tests.support.sshd import Sshd, running_sshd, sshd_missing

pytestmark = [pytest.mark.slow,  # ~15 s: an sshd, a cluster test and a job over ssh
              pytest.mark.skipif(sshd_missing() is not None, reason=str(sshd_missing()))]


@pytest.fixture
def login_host(slurm: SlurmCluster, tmp_path: Path) -> Iterator[Sshd]:
    with running_sshd(tmp_path / "ssh", extra_config=[f"SetEnv SLURM_CONF={slurm.conf}"]) as server:
        yield server


def test_slurm_through_ssh_to_a_real_login_host(daemon_factory, slurm: SlurmCluster, login_host: Sshd,
                                                cluster_storage: Path, rft_home: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_CONF", raising=False)
    assert not Path("/etc/slurm/slurm.conf").exists()  # else a local sbatch could reach a cluster without ssh
    python = tmp_path / "cluster-python"  # what srun runs on the node: the fake worker, hanging after step 2
    python.write_text(f"#!/bin/sh\nexport PYTHONPATH={REPO} RFT_FAKE_STEP_S=0.05 RFT_FAKE_HANG_AFTER_STEP=2\n"
                      f'exec {sys.executable} -m tests.support.fake_worker "$RFT_JOB_ID"\n')
    python.chmod(0o755)
    d: DaemonProcess = daemon_factory(env={"RFT_CLUSTER_POLL_S": "0.3"}, tcp=f"127.0.0.1:{free_port()}")
    cli(rft_home, "clusters", "add", "login", "--slurm", "--ssh", f"root@127.0.0.1:{login_host.port}",
        "--ssh-options", login_host.options, "--storage", str(cluster_storage), "--python", str(python),
        "--partition", "debug")
    assert f"ssh root@127.0.0.1:{login_host.port} -o StrictHostKeyChecking=no" in cli(
        rft_home, "clusters", "show", "login").stdout
    logins = login_host.logins()
    test = api.ClusterTestResult.model_validate(json.loads(cli(rft_home, "clusters", "test", "login", "--json").stdout))
    assert test.ok and test.engine_id and test.engine_id.isdigit(), test
    assert "rft-tui cluster test on" in test.output, test
    assert login_host.logins() >= logins + 2  # sbatch, then squeue (and scontrol) until it ended
    print(f"clusters test over ssh: {test.round_trip_s:.2f} s round trip, {login_host.logins() - logins} ssh logins")
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job({**job_request(train, valid, max_steps=10, eval_interval=5), "cluster": "login"})
        try:
            engine_id = _run_then_cancel(c, job.id, login_host)
        finally:  # a failure must not leave the hanging worker on the node for the next Slurm test
            _scancel_leftovers(slurm, job.id)
    out = subprocess.run(["scontrol", "show", "job", "-o", engine_id], capture_output=True, text=True,
                         env={**os.environ, **slurm.env}, timeout=10).stdout
    assert "JobState=CANCELLED" in out, out


def _run_then_cancel(c: Client, job_id: str, login_host: Sshd) -> str:
    """The job runs (sbatch, squeue over ssh); its cancel is an scancel over ssh. Returns the Slurm job id."""
    running = wait_until(lambda: (j := c.get_job(job_id)).cluster.engine_state == "running"  # type: ignore[union-attr]
                         and j.progress.step >= 2 and j, 60, interval=0.2, what="the job to run over ssh")
    before_cancel = login_host.logins()
    assert c.cancel_job(job_id).status is api.JobStatus.cancelled
    stopped = wait_until(lambda: (j := c.get_job(job_id)).cluster.engine_state == "stopped" and j, 60,  # type: ignore[union-attr]
                         interval=0.2, what="scancel over ssh to stop the job")
    assert stopped.status is api.JobStatus.cancelled
    assert login_host.logins() > before_cancel
    return str(running.cluster.engine_id)


def _scancel_leftovers(slurm: SlurmCluster, job_id: str) -> None:
    env = {**os.environ, **slurm.env}
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True, timeout=30, env=env).stdout
    ids = [ln.split("|")[0] for ln in out.splitlines() if ln.split("|")[-1].startswith(f"rft-{job_id}-")]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30, env=env)
