"""The real trainer reports only over the API (issue 12): GRPO on the built-in model, the store hidden from the
worker, and the daemon unreachable for 20 s mid-run -> the records wait in the worker's journal and arrive once."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from daemon import api
from tests.daemon.test_reporting_api import HIDE_HOME, _journal_pending
from tests.support.daemon_proc import wait_until
from tests.training.conftest import ARITH, FAST_HP, wait_status, wait_step, worker_log

OUTAGE_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_training_reports_over_the_api_through_a_20s_daemon_outage(daemon_factory, arith_grader, rft_home,
                                                                   tmp_path: Path) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (scripts/setup.sh installs it)")
    scratch_root = tmp_path / "scratch"
    scratch_root.mkdir()
    d = daemon_factory(env={"RFT_WORKER_REPORTER": "http", "RFT_WORKER_WRAPPER": HIDE_HOME,
                            "RFT_WORKER_SCRATCH_ROOT": str(scratch_root)}, tcp=f"127.0.0.1:{_free_port()}")
    steps = 40
    with d.client() as c:
        train = c.import_file(str(ARITH / "train.jsonl")).id
        valid = c.import_file(str(ARITH / "valid.jsonl")).id
        job = c.create_job({"model": "builtin:tiny-arith", "training_file": train, "validation_file": valid,
                            "seed": 7, "method": {"type": "reinforcement", "reinforcement": {
                                "grader": arith_grader,
                                "hyperparameters": {**FAST_HP, "max_steps": steps, "eval_interval": 10}}}})
        wait_step(c, job.id, 3, timeout=300)
    scratch = scratch_root / f"rft-worker-{job.id}"
    d.kill()
    down_at = time.monotonic()
    # the worker trains on: its records pile up on its own disk while the daemon is away
    wait_until(lambda: time.monotonic() - down_at >= OUTAGE_S and _journal_pending(scratch) >= 3,
               OUTAGE_S + 240, interval=0.5, what=f"{OUTAGE_S:.0f} s without the daemon, records buffered")
    buffered = _journal_pending(scratch)
    d.start()
    outage = time.monotonic() - down_at
    with d.client() as c:
        done = wait_status(c, job.id, {api.JobStatus.succeeded, api.JobStatus.failed, api.JobStatus.cancelled},
                           timeout=600)
        assert done.status is api.JobStatus.succeeded, worker_log(rft_home, job.id)
        assert [m.step for m in c.metrics(job.id).data] == list(range(1, steps + 1))
        assert {s.step for s in c.samples(job.id, limit=10_000).data} == set(range(1, steps + 1))
        assert c.validation(job.id).steps == [0, 10, 20, 30, 40]
        events = [e.message for e in c.list_events(job.id, limit=1000).data]
        for step in (10, 20, 30, 40):
            assert events.count(f"Checkpoint saved at step {step}") == 1, events
        assert sum(m.startswith("Training builtin:tiny-arith") for m in events) == 1
        ckpts = c.list_checkpoints(job.id).data
        assert ckpts and all(ck.path and ck.path.startswith(str(scratch / "checkpoints")) for ck in ckpts)
        assert all((Path(ck.path) / "adapter_model.safetensors").is_file() for ck in ckpts if ck.path)
        log = c.job_log(job.id, lines=2000).lines
    text = "\n".join(log)
    assert "cannot reach the daemon" in text and "sending the buffered records" in text
    assert _journal_pending(scratch) == 0
    print(f"daemon down {outage:.1f} s; {buffered} records buffered and replayed; {steps} steps, each once")
