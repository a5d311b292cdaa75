"""Where a job's worker runs: this machine (the scheduler's own process groups) or a cluster's engine.

The local executor is the scheduler itself (daemon/scheduler.py) and stays the default. A cluster job goes
to a `ClusterExecutor`: Ray's Job Submission API (`ray.py`) or Slurm's sbatch (`slurm.py`). Both run the
same worker (`python -m daemon.worker JOB_ID`) under torchrun on the cluster; the worker reports only over
the daemon's HTTP API with a per-job token, and writes checkpoints to the cluster's storage. Engines are
asked, never replaced: the engine's id is recorded on the job, and its state (`EngineStatus`) is polled.
"""

from __future__ import annotations

from daemon.executors.base import ClusterExecutor, EngineStatus, ExecutorUnavailable, LaunchSpec, executor_for

__all__ = ["ClusterExecutor", "EngineStatus", "ExecutorUnavailable", "LaunchSpec", "executor_for"]
