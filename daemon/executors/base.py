"""What the scheduler asks of a cluster engine, and what it gets back.

Engine states are mapped onto a small vocabulary the scheduler acts on:
`pending | running` (still going), `succeeded | failed | stopped` (ended: the worker's own report, if it
made one over the API, decides the job's status; these only explain a worker that ended without one), and
`gone` (the engine no longer knows the id). `unknown` means the engine could not be asked right now.

No double submission: every submission carries a name chosen (and recorded by the daemon) before the engine
is asked -- Ray's `submission_id`, Slurm's `--job-name` -- so a daemon that died between the engine's
acceptance and recording the engine's id asks `find(name)` on restart instead of submitting again.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from daemon import api

EngineState = Literal["pending", "running", "succeeded", "failed", "stopped", "gone", "unknown"]
ENDED: frozenset[str] = frozenset({"succeeded", "failed", "stopped", "gone"})


class ExecutorUnavailable(RuntimeError):
    """The engine cannot be used: the message says why and how to fix it.

    `transient`: it could not be reached (connection refused, a timeout, ssh failing) -- asking again later
    may work; otherwise it refused (a bad partition, no client package) and asking again would not help.
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState
    detail: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED


@dataclass(frozen=True)
class LaunchSpec:
    """One submission of one job: where it runs, with what environment, resumed from what."""

    job_id: str
    attempt: int
    placement: api.JobPlacement
    cluster: api.Cluster
    env: dict[str, str] = field(default_factory=dict)  # public variables (no secrets: they may be shown)
    token_file: str | None = None  # the per-job token, in a 0600 file on the storage
    submission_name: str = ""  # unique per submission, recorded before submitting (Ray submission id, Slurm job name)
    # URL storage: the worker's secret variables (report token, storage options), delivered by the executor
    # without ever showing them (Ray: a 0600 file in the submission's working_dir package)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def storage_dir(self) -> Path:
        return Path(self.placement.storage_dir)

    @property
    def python(self) -> str:
        return self.cluster.defaults.python or ("python" if self.cluster.kind == "ray" else "python3")

    def torchrun_args(self, rendezvous: str) -> list[str]:
        """torchrun (our pause-safe wrapper) running the same worker; `rendezvous` is standalone or c10d args."""
        p = self.placement
        return [self.python, "-m", "daemon.worker.torchrun", *shlex.split(rendezvous),
                f"--nproc_per_node={p.processes_per_node}", "-m", "daemon.worker", self.job_id]


class ClusterExecutor(Protocol):
    """One engine kind. Every call may block on the network or a subprocess: the scheduler calls it off the loop."""

    kind: str

    def submit(self, spec: LaunchSpec) -> str:
        """Submit the job; return the engine's id for it (Ray submission id, Slurm job id)."""

    def find(self, submission_name: str) -> str | None:
        """The engine's id of an earlier submission under this name, or None if the engine has none.

        Raises ExecutorUnavailable when the engine cannot say (then nobody may submit again yet)."""

    def status(self, engine_id: str) -> EngineStatus: ...

    def stop(self, engine_id: str) -> None: ...

    def logs(self, engine_id: str, spec_dir: Path) -> str | None:
        """The engine's log of this submission (the worker's stdout/stderr), or None when there is none yet."""

    def describe(self, spec: LaunchSpec) -> str:
        """What is submitted, for `jobs show --script` (a Slurm batch script; Ray's entrypoint and runtime_env)."""

    def test(self, timeout_s: float) -> api.ClusterTestResult:
        """Submit a trivial job, wait for it, report the round trip."""


def executor_for(cluster: api.Cluster) -> ClusterExecutor:
    if cluster.kind == "ray":
        from daemon.executors.ray import RayExecutor

        return RayExecutor(cluster)
    from daemon.executors.slurm import SlurmExecutor

    return SlurmExecutor(cluster)
