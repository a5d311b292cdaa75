"""No double submission: a daemon killed after the engine accepted a job but before it recorded the engine's id
(RFT_FAULT_AFTER_SUBMIT=1 kills it right there) is restarted; it finds the job by the name it recorded before
submitting and adopts it. Counted from outside, through the engine's own client: exactly one engine job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.client import DaemonError
from daemon.store import Store
from tests.clusters.jobs import S, create_cluster_job, job_log, metric_steps, tcp_daemon, wait_terminal
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.engines import RayHead, SlurmCluster

pytestmark = pytest.mark.slow

FAULT = {"RFT_FAULT_AFTER_SUBMIT": "1"}
ADOPTED = "adopted it instead of submitting again"


def _create_then_killed(d: DaemonProcess, cluster: str) -> str:
    """Create the job; the daemon dies submitting it, possibly before it answered the create (then the job's id is
    read from the store it left)."""
    try:
        with d.client() as c:
            job_id = create_cluster_job(c, cluster, max_steps=2, eval_interval=2).id
    except DaemonError:
        job_id = ""
    _killed_by_the_fault(d)
    if not job_id:
        store = Store(d.paths.db)
        try:
            job_id = store.query_one("SELECT id FROM jobs")["id"]  # type: ignore[index]
        finally:
            store.close()
    return job_id


def _killed_by_the_fault(d: DaemonProcess) -> None:
    assert d.proc is not None
    wait_until(lambda: d.proc.poll() is not None, 120, interval=0.2,
               what="the fault hook to kill the daemon after the engine accepted the job")
    assert d.proc.returncode == -9, d.log()[-3000:]
    assert "RFT_FAULT_AFTER_SUBMIT=1: killing this daemon" in d.log()


def _restart_and_finish(daemon_factory, model_cache: Path, d: DaemonProcess, job_id: str,
                        env: dict[str, str] | None = None) -> str:
    """A daemon without the fault on the same port: the job adopted (not resubmitted) and finished."""
    d2 = tcp_daemon(daemon_factory, model_cache, port=int(d.tcp.rsplit(":", 1)[1]), env=env)  # type: ignore[union-attr]
    with d2.client() as c:
        done = wait_terminal(c, job_id)
        assert done.status is S.succeeded, f"{done.error}\n{job_log(c, job_id)[-4000:]}"
        assert metric_steps(c, job_id) == [1, 2]
        events = [e.message for e in c.list_events(job_id, limit=200, order="asc").data]
        assert sum(ADOPTED in m for m in events) == 1, events
        assert not any(m.startswith("Submitted to") for m in events), events
        assert done.cluster is not None and done.cluster.engine_id
        return done.cluster.engine_id


def test_ray_job_is_submitted_once_when_the_daemon_dies_before_recording_it(
        daemon_factory, model_cache: Path, ray_head: RayHead, cluster_storage: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    d = tcp_daemon(daemon_factory, model_cache, env=FAULT)
    with d.client() as c:
        c.add_cluster({"name": "ray", "kind": "ray", "address": ray_head.address, "storage": str(cluster_storage),
                       "processes_per_node": 2, "python": sys.executable})
    job_id = _create_then_killed(d, "ray")
    engine_id = _restart_and_finish(daemon_factory, model_cache, d, job_id)
    ours = [j for j in JobSubmissionClient(ray_head.address).list_jobs()
            if (j.metadata or {}).get("rft_job_id") == job_id]
    print(f"Ray jobs for {job_id} after the fault and restart: {len(ours)}")
    assert [j.submission_id for j in ours] == [engine_id], ours
    assert engine_id.startswith(f"rft-{job_id}-1-")


def test_slurm_job_is_submitted_once_when_the_daemon_dies_before_recording_it(
        daemon_factory, model_cache: Path, slurm: SlurmCluster, cluster_storage: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    d = tcp_daemon(daemon_factory, model_cache, env=FAULT)
    with d.client() as c:
        c.add_cluster({"name": "hpc", "kind": "slurm", "storage": str(cluster_storage), "processes_per_node": 2,
                       "python": sys.executable, "partition": "debug", "time_limit": "00:30:00"})
    job_id = _create_then_killed(d, "hpc")

    def ours() -> list[str]:
        out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%j"], capture_output=True, text=True,
                             timeout=30, env={**os.environ, **slurm.env}, check=True).stdout
        return [ln.split("|")[0] for ln in out.splitlines() if ln.split("|")[-1].startswith(f"rft-{job_id}-")]

    try:
        engine_id = _restart_and_finish(daemon_factory, model_cache, d, job_id)
        print(f"Slurm jobs for {job_id} after the fault and restart: {len(ours())}")
        assert ours() == [engine_id]
    finally:  # a failure above must not leave the node busy for the next Slurm test
        subprocess.run(["scancel", *ours()], capture_output=True, timeout=30, env={**os.environ, **slurm.env})
