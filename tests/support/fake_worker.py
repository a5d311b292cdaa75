"""A small worker for the foundation tests: no model, but it reports exactly as the real worker does.

It walks `total_steps` steps at `RFT_FAKE_STEP_S` seconds each, writing one metric row per step,
validation rows and a checkpoint every `eval_interval`, through the reporter the real worker would get
(`open_reporter`: SQLite with RFT_HOME, the daemon's API with RFT_REPORT_URL/RFT_REPORT_TOKEN). It honours cancel
(SIGTERM) and pause (SIGUSR1: checkpoint, then exit; before its first step: exit, nothing to save), and
resumes after the last step in the store. `RFT_FAKE_STARTUP_S` is start-up time spent before its signal
handlers exist (the real worker's imports); `RFT_FAKE_CRASH_ON_ATTEMPT=N` exits 3 silently on attempt N;
`RFT_FAKE_EXIT_GATE=PATH` holds the exit after a success until PATH exists.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from daemon import metrics
from daemon.worker.reporting import open_reporter, work_dir
from daemon.worker_protocol import ControlFlags


def main(job_id: str) -> int:
    time.sleep(float(os.environ.get("RFT_FAKE_STARTUP_S", "0")))  # work done before any handler exists
    flags = ControlFlags().install()
    reporter = open_reporter(job_id)
    if str(reporter.job().attempts) == os.environ.get("RFT_FAKE_CRASH_ON_ATTEMPT"):
        return 3
    spec = reporter.spec()
    total = spec.hyperparameters.max_steps
    eval_interval = spec.hyperparameters.eval_interval
    step_s = float(os.environ.get("RFT_FAKE_STEP_S", "0.05"))
    last = reporter.last_step()
    start = 1 if last is None else last + 1
    reporter.started(total, message=f"Fake worker pid {os.getpid()} starting at step {start}")
    print(f"fake worker {os.getpid()} job {job_id} steps {start}..{total}", flush=True)
    ckpt_root = Path(work_dir()) / "checkpoints"

    def checkpoint(step: int, reward: float) -> None:
        d = ckpt_root / f"step-{step}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "state.txt").write_text(str(step))
        # what export copies (no weights: the fake worker has no model); PEFT would also leave its README template
        (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": spec.model.id,
                                                           "peft_type": "LORA", "revision": None}))
        (d / "README.md").write_text("PEFT template: [More Information Needed]")
        reporter.add_checkpoint(step, str(d), {"valid_reward_mean": reward, "train_reward_mean": reward})

    def validate(step: int) -> float:
        reward = round(0.3 + 0.5 * (1 - math.exp(-step / 10)), 4)
        rows = [{"row_index": i, "prompt": f"{i}+1=", "reference": str(i + 1),
                 "output": str(i + 1) if i < reward * 10 else "0", "reward": 1.0 if i < reward * 10 else 0.0}
                for i in range(10)]
        reporter.log_validation(step, rows)
        return reward

    if last is None:
        validate(0)
    for step in range(start, total + 1):
        if flags.cancel.is_set() or reporter.requested_action() == "cancel":
            reporter.finish("cancelled")
            return 0
        if flags.pause.is_set() or reporter.requested_action() == "pause":
            if step == start:
                reporter.finish("paused", "paused before training started")
                return 0
            checkpoint(step - 1, 0.0)
            reporter.finish("paused", f"checkpoint at step {step - 1}")
            return 0
        time.sleep(step_s)
        reward = 0.3 + 0.5 * (1 - math.exp(-step / 10))
        reporter.log_step(step, {metrics.TRAIN_REWARD: reward, "reward_std": 0.1, "loss": 1.0 / step,
                                 metrics.LEARNING_RATE: 1e-3 * (1 - step / (total + 1)), metrics.STEP_WALL_S: step_s},
                          samples=[{"prompt": "1+1=", "completion": "2", "reward": reward, "item": {"answer": "2"}}])
        if step % eval_interval == 0 or step == total:
            checkpoint(step, validate(step))
    reporter.finish("succeeded", fine_tuned_model=f"ft:fake:{job_id}")
    wait_for_exit_gate()
    return 0


def wait_for_exit_gate() -> None:
    """With RFT_FAKE_EXIT_GATE=PATH the worker exits only once PATH exists (a test decides when it exits)."""
    gate = os.environ.get("RFT_FAKE_EXIT_GATE")
    deadline = time.monotonic() + 120
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
