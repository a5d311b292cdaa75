"""Engine-side pieces (fast, no engine): the sbatch script, Ray's submission, and the engine-state maps."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from daemon import api
from daemon.cluster_jobs import worker_env
from daemon.executors.base import LaunchSpec
from daemon.executors.ray import RayExecutor
from daemon.executors.ray import engine_state as ray_state
from daemon.executors.slurm import batch_script
from daemon.executors.slurm import engine_state as slurm_state


def _spec(kind: str, tmp: Path, nodes: int = 2, gpus: int = 4, **defaults: object) -> LaunchSpec:
    cluster = api.Cluster(name="c", kind=kind, address="http://head:8265" if kind == "ray" else None,  # type: ignore[arg-type]
                          defaults=api.ClusterDefaults(storage=str(tmp), **defaults), created_at=0)  # type: ignore[arg-type]
    placement = api.JobPlacement(name="c", kind=kind, nodes=nodes, gpus_per_node=gpus,  # type: ignore[arg-type]
                                 processes_per_node=gpus or 2, storage_dir=str(tmp / "rft-tui/jobs/ftjob-1"))
    env = worker_env("ftjob-1", placement, "http://ws:8765", None)
    return LaunchSpec(job_id="ftjob-1", attempt=1, placement=placement, cluster=cluster, env=env,
                      token_file=str(tmp / "rft-tui/jobs/ftjob-1/job-token"))


def test_sbatch_script_runs_srun_torchrun_with_c10d_rendezvous_and_no_secret(tmp_path: Path) -> None:
    spec = _spec("slurm", tmp_path, partition="gpu", account="lab", time_limit="04:00:00", python="/opt/py/bin/python")
    script = batch_script(spec)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=4", "--partition=gpu", "--account=lab",
                      "--time=04:00:00", f"--output={spec.storage_dir}/slurm-%j.log", f"--chdir={spec.storage_dir}"):
        assert f"#SBATCH {directive}" in lines, directive
    srun = next(ln for ln in lines if ln.startswith("srun "))
    assert "--kill-on-bad-exit=1" in srun
    outer = shlex.split(srun)  # srun ... /bin/bash -c 'exec PYTHON -m daemon.worker.torchrun ...' (one task per node)
    assert outer[-3:-1] == ["/bin/bash", "-c"]
    words = shlex.split(outer[-1].replace('"$SLURM_NNODES"', "N").replace('"$RFT_RDZV_ENDPOINT"', "H:P")
                        .replace('"$SLURM_JOB_ID"', "ID").replace("$(( SLURM_NODEID == 0 ))", "R"))
    assert words == [
        "exec", "/opt/py/bin/python", "-m", "daemon.worker.torchrun", "--nnodes=N", "--rdzv_backend=c10d",
        "--rdzv_endpoint=H:P", "--rdzv_id=ID", "--rdzv_conf=is_host=R", "--nproc_per_node=4", "-m",
        "daemon.worker", "ftjob-1"]
    assert "export RFT_REPORT_URL=http://ws:8765" in lines
    assert f'export RFT_REPORT_TOKEN="$(cat {spec.token_file})"' in lines  # read at run time from a 0600 file
    assert not any(ln.startswith("export RFT_HOME") for ln in lines)  # the worker never gets the daemon's store
    cpu = batch_script(_spec("slurm", tmp_path, nodes=1, gpus=0))
    assert "--gpus-per-node" not in cpu and "#SBATCH --cpus-per-task=2" in cpu and "--partition" not in cpu
    assert "export RFT_DEVICE=cpu" in cpu


def test_ray_submission_places_one_node_jobs_by_entrypoint_resources(tmp_path: Path) -> None:
    one = _spec("ray", tmp_path, nodes=1, gpus=8)
    ex = RayExecutor(one.cluster)
    assert ex.entrypoint_resources(one) == {"entrypoint_num_gpus": 8.0}
    assert ex.entrypoint_resources(_spec("ray", tmp_path, nodes=1, gpus=0)) == {"entrypoint_num_cpus": 2.0}
    assert ex.entrypoint_resources(_spec("ray", tmp_path, nodes=4, gpus=8)) == {}  # the placement group holds them
    shown = json.loads(ex.describe(one))
    assert shown["entrypoint"] == "python -m daemon.executors.ray_launch ftjob-1"
    env = shown["runtime_env"]["env_vars"]
    assert env["RFT_REPORT_URL"] == "http://ws:8765" and "RFT_REPORT_TOKEN" not in env and "RFT_HOME" not in env
    assert [Path(p).name for p in shown["runtime_env"]["py_modules"]] == ["daemon", "graders"]


def test_engine_states_map_onto_ours() -> None:
    assert [ray_state(s) for s in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED", "JobStatus.RUNNING",
                                   "NEW_STATE")] == ["pending", "running", "succeeded", "failed", "stopped",
                                                     "running", "unknown"]
    assert [slurm_state(s) for s in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "COMPLETED",
                                     "CANCELLED by 0", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                                     "PREEMPTED", "", "WEIRD")] == [
        "pending", "pending", "running", "running", "succeeded", "stopped", "failed", "failed", "failed", "failed",
        "failed", "unknown", "unknown"]
