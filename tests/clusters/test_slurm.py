"""Jobs on a real one-node Slurm (Debian's slurm-wlm + munge, no cgroups): a generated sbatch script running
`srun torchrun`, state from squeue/scontrol, cancel as scancel, pause as checkpoint-and-exit, resume as a new
submission; the worker reports over the daemon's TCP API only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clusters.jobs import S, create_cluster_job, job_log, metric_steps, tcp_daemon, wait_job, wait_terminal
from tests.daemon.test_cli import cli
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.engines import SlurmCluster

pytestmark = pytest.mark.slow


# sbatch passes the daemon's environment on: a worker that cannot deliver its last records gives up after 2 s
# (instead of an hour) and leaves them in its journal on the storage
QUICK_GIVE_UP = {"RFT_REPORT_FINISH_DEADLINE_S": "2", "RFT_REPORT_CLOSE_WAIT_S": "1"}


@pytest.fixture
def slurm_daemon(daemon_factory, model_cache: Path, slurm: SlurmCluster, cluster_storage: Path,
                 monkeypatch: pytest.MonkeyPatch) -> DaemonProcess:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))  # the daemon's sbatch/squeue/scancel find this cluster
    d = tcp_daemon(daemon_factory, model_cache, env=QUICK_GIVE_UP)
    with d.client() as c:
        c.add_cluster({"name": "hpc", "kind": "slurm", "storage": str(cluster_storage), "processes_per_node": 2,
                       "python": sys.executable, "partition": "debug", "time_limit": "00:30:00"})
    return d


def _scontrol_state(slurm: SlurmCluster, engine_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", engine_id], capture_output=True, text=True,
                         env={**os.environ, **slurm.env}, timeout=10).stdout
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "")


def test_slurm_job_runs_through_sbatch_pauses_resumes_and_settles_after_ending_while_the_daemon_was_down(
        slurm_daemon: DaemonProcess, slurm: SlurmCluster, cluster_storage: Path, rft_home: Path,
        daemon_factory, model_cache: Path) -> None:
    d = slurm_daemon
    with d.client() as c:
        test = c.test_cluster("hpc", timeout_s=60)
        assert test.ok and test.engine_id and test.engine_id.isdigit(), test
        # 12 steps: however late the pause lands (the worker reads control at most once a second), the resumed
        # worker has several steps, a validation and a checkpoint left to journal when the daemon is killed at
        # its first step (with 6, a pause at step 5 left one step, delivered before the kill: no replay)
        job = create_cluster_job(c, "hpc", max_steps=12, eval_interval=4)
        script = cli(rft_home, "jobs", "show", job.id, "--script").stdout
        assert script.startswith("#!/bin/bash") and "srun --ntasks-per-node=1" in script
        assert "--rdzv_backend=c10d" in script and "--nproc_per_node=2" in script
        assert "#SBATCH --partition=debug" in script
        first = wait_job(c, job.id, lambda j: j.cluster.engine_id and j.progress.step >= 1, "step 1").cluster
        assert first is not None and first.engine_id
        c.pause_job(job.id)  # the worker reads the request over the API, checkpoints to the storage, exits
        paused = wait_job(c, job.id, lambda j: j.status is S.paused, "paused")
        assert paused.cluster.engine_state == "succeeded"  # type: ignore[union-attr]  # it exited 0 after checkpointing
        assert _scontrol_state(slurm, first.engine_id) == "COMPLETED"
        c.resume_job(job.id)  # a new submission, from the checkpoint
        # a step past the pause, reported by the second submission's worker (the new engine id alone is set at
        # submission, before its worker has read the checkpoint to resume from)
        second = wait_job(c, job.id, lambda j: j.cluster.engine_id != first.engine_id
                          and j.cluster.engine_state == "running" and j.progress.step > paused.progress.step,
                          "a step of the second submission").cluster
        assert second is not None and second.engine_id
    d.kill()  # kill -9; the job ends while no daemon listens: its last records stay in its journal on the storage
    ended = wait_until(lambda: (lambda st: st if st in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else None)(
        _scontrol_state(slurm, second.engine_id)), 300, interval=0.5,
        what="the Slurm job to end while the daemon is down")
    log = "".join(p.read_text() for p in (cluster_storage / "rft-tui" / "jobs" / job.id).glob("slurm-*.log"))
    assert ended == "COMPLETED", log[-4000:]
    d2 = tcp_daemon(daemon_factory, model_cache, port=int(d.tcp.rsplit(":", 1)[1]), env=QUICK_GIVE_UP)  # type: ignore[union-attr]
    with d2.client() as c:
        done = wait_terminal(c, job.id)
        assert done.status is S.succeeded, f"{done.error}\n{job_log(c, job.id)[-4000:]}"
        assert done.cluster.engine_id == second.engine_id  # type: ignore[union-attr]
        events = [e.message for e in c.list_events(job.id, limit=200).data]
        assert any(m.startswith("Replayed ") and "journalled" in m for m in events), events
        assert metric_steps(c, job.id) == list(range(1, 13))
        ckpts = c.list_checkpoints(job.id).data
        assert ckpts and all(str(ck.path).startswith(str(cluster_storage)) for ck in ckpts)
        assert "[sbatch] job" in job_log(c, job.id)


def test_cancel_maps_to_scancel(slurm_daemon: DaemonProcess, slurm: SlurmCluster) -> None:
    with slurm_daemon.client() as c:
        job = create_cluster_job(c, "hpc", max_steps=50)
        running = wait_job(c, job.id, lambda j: j.cluster.engine_state == "running", "Slurm runs it", timeout=120)
        assert running.cluster is not None and running.cluster.engine_id is not None
        engine_id = running.cluster.engine_id
        assert c.cancel_job(job.id).status is S.cancelled
        stopped = wait_until(lambda: (
            lambda j: j if j.cluster is None or j.cluster.engine_state != "running" else None)(c.get_job(job.id)),
            120, interval=0.25, what="Slurm to cancel the job")
        assert stopped.status is S.cancelled
        assert stopped.cluster is not None and stopped.cluster.engine_state == "stopped"
    assert _scontrol_state(slurm, engine_id) == "CANCELLED"


def test_two_node_job_meets_through_srun_torchrun_rendezvous(daemon_factory, model_cache: Path,
                                                              slurm_two_nodes: SlurmCluster, cluster_storage: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """2 nodes x 1 process: sbatch --nodes=2, one srun task per node, each torchrun meeting by c10d at the first
    node's NodeAddr (the first node hosts the store), and the job trains to the end over the API."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_two_nodes.conf))
    d = tcp_daemon(daemon_factory, model_cache, env=QUICK_GIVE_UP)
    with d.client() as c:
        c.add_cluster({"name": "hpc2", "kind": "slurm", "storage": str(cluster_storage), "nodes": 2,
                       "processes_per_node": 1, "python": sys.executable, "partition": "debug"})
        job = create_cluster_job(c, "hpc2", max_steps=2, eval_interval=2)
        assert job.cluster is not None and (job.cluster.nodes, job.cluster.processes_per_node) == (2, 1)
        assert job.resolved_hyperparameters.num_processes == 2  # type: ignore[union-attr]
        done = wait_terminal(c, job.id)
        assert done.status is S.succeeded, f"{done.error}\n{job_log(c, job.id)[-12000:]}\n{slurm_two_nodes.logs()}"
        assert metric_steps(c, job.id) == [1, 2]
        assert c.validation(job.id).steps == [0, 2]
        log = job_log(c, job.id)
        assert "2 node(s), rendezvous at n1 (127.0.0.1:" in log, log[-3000:]
    nodes = subprocess.run(["scontrol", "show", "job", "-o", str(done.cluster.engine_id)],  # type: ignore[union-attr]
                           capture_output=True, text=True, env={**os.environ, **slurm_two_nodes.env}, timeout=10).stdout
    assert "NodeList=n[1-2]" in nodes and "NumNodes=2" in nodes, nodes
