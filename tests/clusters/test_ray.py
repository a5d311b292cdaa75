"""Jobs on a real Ray cluster (a local head, 2 CPUs): submitted through Ray's Job Submission API, reported back
over the daemon's TCP API only, surviving a `kill -9` of the daemon, cancelled through Ray."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from daemon import api
from tests.clusters.jobs import S, create_cluster_job, job_log, metric_steps, tcp_daemon, wait_job, wait_terminal
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.engines import RayHead

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_cluster(ray_head: RayHead, cluster_storage: Path):
    def add(d: DaemonProcess) -> None:
        with d.client() as c:
            c.add_cluster({"name": "ray", "kind": "ray", "address": ray_head.address, "storage": str(cluster_storage),
                           "processes_per_node": 2, "python": sys.executable})

    return add


def _ray_job(head: RayHead, entrypoint: str) -> tuple[str, str]:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.address)
    sid = client.submit_job(entrypoint=entrypoint)
    wait_until(lambda: client.get_job_status(sid).value in ("SUCCEEDED", "FAILED", "STOPPED"), 60, interval=0.2,
               what="a Ray job")
    return client.get_job_status(sid).value, client.get_job_logs(sid)


def test_ray_job_reports_over_the_api_survives_a_daemon_kill_and_exports(
        daemon_factory, model_cache: Path, ray_head: RayHead, ray_cluster, cluster_storage: Path,
        rft_home: Path, tmp_path: Path) -> None:
    d = tcp_daemon(daemon_factory, model_cache)
    ray_cluster(d)
    with d.client() as c:
        test = c.test_cluster("ray", timeout_s=60)
        assert test.ok and test.engine_id and "rft-tui cluster test" in test.output, test
        # what a process on this cluster sees at the daemon's RFT_HOME: nothing (a private mount namespace)
        state, seen = _ray_job(ray_head, f"test -e {rft_home}/rft.db && echo STORE-VISIBLE || echo STORE-HIDDEN")
        assert state == "SUCCEEDED" and "STORE-HIDDEN" in seen, seen
        job = create_cluster_job(c, "ray")
        assert job.cluster is not None and job.cluster.name == "ray" and job.cluster.kind == "ray"
        assert job.cluster.processes_per_node == 2 and job.resolved_hyperparameters.num_processes == 2  # type: ignore[union-attr]
        running = wait_job(c, job.id, lambda j: j.cluster.engine_id and j.progress.step >= 2, "step 2")
        assert running.cluster is not None and running.cluster.engine_id is not None
        engine_id = running.cluster.engine_id
        assert engine_id.startswith(f"rft-{job.id}-1-")
    d.kill()  # kill -9 mid-run: the Ray job goes on, its reporter buffers until a daemon answers again
    d2 = tcp_daemon(daemon_factory, model_cache, port=int(d.tcp.rsplit(":", 1)[1]))  # type: ignore[union-attr]
    with d2.client() as c:
        done = wait_terminal(c, job.id)
        assert done.status is S.succeeded, f"{done.error}\n{job_log(c, job.id)[-4000:]}"
        assert done.cluster is not None and done.cluster.engine_id == engine_id
        events = [e.message for e in c.list_events(job.id, limit=200, order="asc").data]
        if done.cluster.engine_state != "succeeded":
            # seen once in CI (not reproduced here, also not under load): Ray said FAILED after the worker had
            # reported success. The worker's outcome stands and the daemon must say why the engine differs.
            assert done.cluster.engine_state == "failed", done.cluster
            assert any(f"{engine_id} ended failed on cluster ray after the worker reported succeeded" in m
                       for m in events), events
            warnings.warn(f"Ray ended {engine_id} failed after the worker reported success: "
                          f"{[m for m in events if 'ended failed' in m]}\n{job_log(c, job.id)[-3000:]}", stacklevel=1)
        assert any(f"re-attached to {engine_id}" in m for m in events), events
        assert metric_steps(c, job.id) == [1, 2, 3, 4, 5, 6]  # none lost, none twice
        assert c.validation(job.id).steps == [0, 3, 6]
        log = job_log(c, job.id)
        assert "[ray_launch] job" in log and "1 node(s) x 2 process(es)" in log
        ckpts = c.list_checkpoints(job.id).data
        assert ckpts and all(str(ck.path).startswith(str(cluster_storage)) for ck in ckpts), ckpts
        exported = c.export_job(job.id, {"output_dir": str(tmp_path / "export")})
        assert (Path(exported.adapter_dir) / "adapter_config.json").is_file()


def test_cancel_stops_the_ray_job(daemon_factory, model_cache: Path, ray_head: RayHead, ray_cluster) -> None:
    from ray.job_submission import JobSubmissionClient

    d = tcp_daemon(daemon_factory, model_cache)
    ray_cluster(d)
    with d.client() as c:
        job = create_cluster_job(c, "ray", max_steps=50)
        running = wait_job(c, job.id, lambda j: j.cluster.engine_state == "running", "Ray runs it", timeout=120)
        assert running.cluster is not None and running.cluster.engine_id is not None
        engine_id = running.cluster.engine_id
        assert c.cancel_job(job.id).status is S.cancelled  # answered at once, as locally
        stopped = wait_until(lambda: (
            lambda j: j if j.cluster is None or j.cluster.engine_state != "running" else None)(c.get_job(job.id)),
            120, interval=0.25, what="Ray to stop the job")
        assert stopped.status is S.cancelled
        assert stopped.cluster is not None and stopped.cluster.engine_state == "stopped"
        assert any(f"stopping {engine_id}" in e.message for e in c.list_events(job.id, limit=50).data)
    assert JobSubmissionClient(ray_head.address).get_job_status(engine_id).value == "STOPPED"



def test_two_node_job_meets_through_a_placement_group(daemon_factory, model_cache: Path, ray_head: RayHead,
                                                      cluster_storage: Path, hidden_root: Path) -> None:
    """A second Ray node joins; a 2-node x 1-process job spreads over both (STRICT_SPREAD), one torchrun per
    node meeting by c10d at the first node's actor, and trains to the end."""
    if not ray_head.nodes:
        ray_head.add_node(hidden_root, num_cpus=1)
    d = tcp_daemon(daemon_factory, model_cache)
    with d.client() as c:
        c.add_cluster({"name": "ray2", "kind": "ray", "address": ray_head.address, "storage": str(cluster_storage),
                       "nodes": 2, "processes_per_node": 1, "python": sys.executable})
        job = create_cluster_job(c, "ray2", max_steps=2, eval_interval=2)
        assert job.cluster is not None and (job.cluster.nodes, job.cluster.processes_per_node) == (2, 1)
        assert job.resolved_hyperparameters.num_processes == 2  # type: ignore[union-attr]
        done = wait_terminal(c, job.id, why=lambda: _ray_side(ray_head, c.get_job(job.id)))
        assert done.status is S.succeeded, f"{done.error}\n{job_log(c, job.id)[-12000:]}"
        assert metric_steps(c, job.id) == [1, 2]
        log = job_log(c, job.id)
        assert "2 node(s) x 1 process(es)" in log and "rendezvous at" in log
        nodes = {line.split("on Ray node ", 1)[1].split()[0] for line in log.splitlines() if "on Ray node " in line}
        assert len(nodes) == 2, log[-3000:]  # one torchrun on each node


def test_a_failing_node_stops_the_others_at_once(ray_head: RayHead, tmp_path: Path) -> None:
    """ray_launch.wait_nodes with real actors: when one node's torchrun exits non-zero, the others' actors are
    killed (their torchrun would otherwise wait in the rendezvous or a collective for torch's 10-30 min
    timeouts) and their children go with them (parent-death signal)."""
    pidfile = tmp_path / "child.pid"
    state, out = _ray_job(ray_head, f"{sys.executable} -m tests.support.ray_node_failure {pidfile}")
    assert state == "SUCCEEDED", out
    assert "node rank 1 exited 3: stopping the other node(s)" in out and "CODE 3 after" in out, out
    child = int(out.split("CHILD ", 1)[1].split()[0])
    wait_until(lambda: not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()
               .rsplit(")", 1)[1].split()[0], 30, interval=0.1, what="the killed node's child to end")


def _ray_side(ray_head: RayHead, job: api.FineTuningJob) -> str:
    """What Ray says of a job that did not end: its status and log, and the cluster's nodes and resources."""
    import ray.job_submission

    client = ray.job_submission.JobSubmissionClient(ray_head.address)
    out = subprocess.run([str(Path(sys.executable).parent / "ray"), "status", "--address", ray_head.gcs_address],
                         capture_output=True, text=True, timeout=60)
    engine_id = job.cluster.engine_id if job.cluster else None
    logs = client.get_job_logs(engine_id)[-6000:] if engine_id else "(no engine id)"
    return f"--- ray status\n{out.stdout[-3000:]}{out.stderr[-1000:]}\n--- Ray job {engine_id}\n{logs}"
