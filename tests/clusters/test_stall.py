"""`stalled` for cluster jobs: the daemon times the steps a cluster worker reports over the API, raises the alarm
when none comes for factor x the median step time (the guardrails' thresholds), and with on_stall fail fails the
job and stops the engine's job (scancel on a real one-node Slurm).

The cluster's `python` runs the fake worker (tests/support/fake_worker.py, which reports over the API exactly
as the real worker does) in place of torchrun + the GRPO worker, so this needs no model and takes seconds; it
hangs after step 3 (RFT_FAKE_HANG_AFTER_STEP, passed on by sbatch with the daemon's environment), and answers
the stack request it reads with its control state by writing every thread's stack into the job log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import api
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.engines import SlurmCluster, free_port
from tests.support.jobs import job_request, make_files


@pytest.mark.slow
def test_a_stalled_slurm_job_raises_the_alarm_and_on_stall_fail_stops_it(
        daemon_factory, slurm: SlurmCluster, cluster_storage: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    python = tmp_path / "cluster-python"  # what srun runs: the fake worker instead of torchrun + daemon.worker
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -m tests.support.fake_worker "$RFT_JOB_ID"\n')
    python.chmod(0o755)
    d: DaemonProcess = daemon_factory(env={"RFT_CLUSTER_POLL_S": "0.3", "RFT_STALL_CHECK_S": "0.3",
                                           "RFT_FAKE_STEP_S": "0.05", "RFT_FAKE_HANG_AFTER_STEP": "3"},
                                      tcp=f"127.0.0.1:{free_port()}")
    with d.client() as c:
        c.add_cluster({"name": "hpc", "kind": "slurm", "storage": str(cluster_storage), "python": str(python),
                       "partition": "debug"})
        train, valid = make_files(c, tmp_path)
        job = c.create_job({**job_request(train, valid, max_steps=10, eval_interval=5), "cluster": "hpc",
                            "guardrails": {"on_stall": "fail", "stall_factor": 2, "stall_min_s": 1}})
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 120, interval=0.2,
                          what="the stalled job to fail")
        assert done.status is api.JobStatus.failed and done.error is not None, done
        assert done.error.code == "stalled" and "no training step for" in done.error.message, done.error
        assert [m.step for m in c.metrics(job.id).data] == [1, 2, 3]
        alarms = [a for a in c.list_alarms(job.id).data if a.name == "stalled"]
        assert len(alarms) == 1 and alarms[0].step == 3 and alarms[0].action == "fail", alarms
        assert alarms[0].threshold is not None and alarms[0].threshold < 5  # 2 x 0.05 s, raised to the 1 s floor
        # the daemon cannot signal a process on the node: the worker's reporter read the stack request with its
        # control state and wrote every thread's stack into the job log before the job was failed and stopped
        log = "\n".join(c.job_log(job.id, lines=5000).lines)
        assert "[stall] the daemon saw no training step for too long (stalled)" in log, log[-4000:]
        assert "Thread 0x" in log and "fake_worker.py" in log and "in main" in log, log[-4000:]
        engine_id = done.cluster.engine_id
        stopped = wait_until(lambda: (j := c.get_job(job.id)).cluster.engine_state == "stopped" and j, 60,  # type: ignore[union-attr]
                             interval=0.2, what="scancel to stop the Slurm job")
        assert stopped.status is api.JobStatus.failed
    out = subprocess.run(["scontrol", "show", "job", "-o", str(engine_id)], capture_output=True, text=True,
                         env={**os.environ, **slurm.env}, timeout=10).stdout
    assert "JobState=CANCELLED" in out, out
