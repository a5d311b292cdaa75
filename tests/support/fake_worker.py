"""A small worker for the foundation tests: no model, but it reports exactly as the real worker does.

It walks `total_steps` steps at `RFT_FAKE_STEP_S` seconds each, writing one metric row per step,
validation rows and a checkpoint every `eval_interval`, through the reporter the real worker would get
(`open_reporter`: SQLite with RFT_HOME, the daemon's API with RFT_REPORT_URL/RFT_REPORT_TOKEN). It honours cancel
(SIGTERM) and pause (SIGUSR1: checkpoint, then exit; before its first step: exit, nothing to save), and
resumes after the last step in the store. `RFT_FAKE_STARTUP_S` is start-up time spent before its signal
handlers exist (the real worker's imports); `RFT_FAKE_CRASH_ON_ATTEMPT=N` exits 3 silently on attempt N;
`RFT_FAKE_EXIT_GATE=PATH` holds the exit after a success until PATH exists; `RFT_FAKE_HANG_AFTER_STEP=N` hangs
after step N (no step, no exit) until it is cancelled (SIGTERM) or 5 minutes pass: a stalled worker;
`RFT_FAKE_HOLD_GATE=PATH` with `RFT_FAKE_HOLD_AT_STEP=N` holds before step N until PATH exists (a test that
needs the worker alive across a daemon restart opens the gate then, instead of making every step slow).

Health: every step goes through the real `daemon.health.JobHealth` (signals, alarms, on_alarm pause/cancel),
as in the GRPO worker. With `RFT_FAKE_GRADE=1` each step really grades `batch_size` training rows x
`num_generations` made-up completions (the row's `answer`, or a wrong one, by a seeded coin) with the job's
grader through `GraderReward`, so reward, zero-spread groups and per-grader errors/latency are the grader's.
With `RFT_FAKE_TOOL_CALLS=1` it calls each of the job's tools once at start through the real `ToolBox`
(`add`-style arguments `{"a": 1, "b": 2}`), as an episode would, and prints each result.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from daemon import checkpoint_storage, metrics
from daemon.health import Alarm, JobHealth
from daemon.worker.reporting import open_reporter, work_dir
from daemon.worker.rewards import GraderReward, grader_time_limits
from daemon.worker_protocol import CHECKPOINT_STORAGE_ENV, ControlFlags


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

    def record(alarm: Alarm) -> bool:
        print(f"[alarm] {alarm.name} at step {alarm.step}: {alarm.message}", flush=True)
        return reporter.alarm(alarm.as_dict())

    if os.environ.get("RFT_FAKE_TOOL_CALLS") and spec.tools:
        call_each_tool(job_id, spec.tools)
    hp = spec.hyperparameters
    health = JobHealth(spec.guardrails, hp.batch_size, record, grader_time_limits(spec.grader),
                       history=reporter.health_history() if last is not None else None)
    grading = Grading(spec, hp.batch_size, hp.num_generations) if os.environ.get("RFT_FAKE_GRADE") else None
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
        location = checkpoint_storage.publish(d, os.environ.get(CHECKPOINT_STORAGE_ENV), job_id)
        reporter.add_checkpoint(step, location, {"valid_reward_mean": reward, "train_reward_mean": reward})

    def validate(step: int) -> float:
        if grading is not None:
            rows = grading.validation_rows()
            return reporter.log_validation(step, rows) or 0.0
        reward = round(0.3 + 0.5 * (1 - math.exp(-step / 10)), 4)
        rows = [{"row_index": i, "prompt": f"{i}+1=", "reference": str(i + 1),
                 "output": str(i + 1) if i < reward * 10 else "0", "reward": 1.0 if i < reward * 10 else 0.0}
                for i in range(10)]
        reporter.log_validation(step, rows)
        return reward

    if last is None:
        health.validation(0, validate(0))
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
        if str(step) == os.environ.get("RFT_FAKE_HOLD_AT_STEP"):
            wait_for_gate(os.environ.get("RFT_FAKE_HOLD_GATE"))
        time.sleep(step_s)
        reward = 0.3 + 0.5 * (1 - math.exp(-step / 10))
        values: dict[str, Any] = {metrics.TRAIN_REWARD: reward, "reward_std": 0.1, "loss": 1.0 / step,
                                  metrics.LEARNING_RATE: 1e-3 * (1 - step / (total + 1)), metrics.STEP_WALL_S: step_s}
        samples: list[dict[str, Any]] = [{"prompt": "1+1=", "completion": "2", "reward": reward,
                                                "item": {"answer": "2"}}]
        if grading is not None:
            started = time.perf_counter()
            samples = grading.step(step, values)
            values[metrics.STEP_WALL_S] = step_s + time.perf_counter() - started
        health.add_signals(values, step)
        reporter.log_step(step, values, samples=samples)
        if str(step) == os.environ.get("RFT_FAKE_HANG_AFTER_STEP"):
            print(f"fake worker hangs after step {step}", flush=True)
            flags.cancel.wait(300)
        health.step(step, values)
        if step % eval_interval == 0 or step == total:
            valid_reward = validate(step)
            checkpoint(step, valid_reward)
            health.validation(step, valid_reward)
        if health.stop is not None and step < total:  # a critical alarm with on_alarm pause/cancel
            outcome, reason = health.stop
            if outcome == "paused":
                checkpoint(step, 0.0)
            reporter.finish(outcome, reason)
            return 0
    reporter.finish("succeeded", fine_tuned_model=f"ft:fake:{job_id}")
    wait_for_exit_gate()
    return 0


class Grading:
    """Grades made-up completions of real training rows with the job's grader, as the GRPO reward does."""

    def __init__(self, spec: Any, batch_size: int, num_generations: int) -> None:
        self.rows = read_rows(spec.training_file.path)
        self.valid = read_rows(spec.validation_file.path) if spec.validation_file else []
        self.reward = GraderReward(spec.grader, name=spec.grader_name, seed=spec.seed)
        self.batch, self.k = batch_size, num_generations
        self.rng = random.Random(spec.seed)

    def step(self, step: int, values: dict[str, Any]) -> list[dict[str, Any]]:
        start = (step - 1) * self.batch
        rows = [self.rows[(start + i) % len(self.rows)] for i in range(self.batch)]
        prompts, completions, items = [], [], []
        for row in rows:
            answer = str(row["item"].get("answer", ""))
            for _ in range(self.k):
                prompts.append(row["messages"])
                completions.append(answer if self.rng.random() < 0.5 else answer + "0")
                items.append(json.dumps(row["item"]))
        rewards = self.reward(prompts, completions, item_json=items)
        groups = [rewards[i:i + self.k] for i in range(0, len(rewards), self.k)]
        samples, grader_values = self.reward.drain()
        values.update(grader_values)
        values[metrics.TRAIN_REWARD] = statistics.fmean(rewards)
        values["reward_std"] = statistics.pstdev(rewards)
        values[metrics.FRAC_REWARD_ZERO_STD] = sum(1 for g in groups if max(g) == min(g)) / len(groups)
        return samples

    def validation_rows(self) -> list[dict[str, Any]]:
        """Validation rows graded the same way (one made-up output each)."""
        outputs = [str(r["item"].get("answer", "")) + ("" if i % 2 else "0") for i, r in enumerate(self.valid)]
        result = self.reward.grade(outputs, [r["item"] for r in self.valid])
        return [{"row_index": i, "prompt": json.dumps(r["messages"]), "reference": r["item"].get("answer"),
                 "output": o, "reward": x} for i, (r, o, x) in enumerate(zip(self.valid, outputs, result.rewards,
                                                                            strict=True))]


def call_each_tool(job_id: str, tools: dict[str, Any]) -> None:
    from daemon.worker.tool_calls import ParsedCall
    from daemon.worker.tool_runtime import ToolBox, ToolRequest

    box = ToolBox(tools)
    try:
        requests = [ToolRequest(f"{job_id}-fake", f"call_{i}", ParsedCall(name, {"a": 1, "b": 2}), {}, {})
                    for i, name in enumerate(sorted(tools))]
        for record in box.run(requests):
            print(f"[fake tool call] {record.name}: result {record.result!r} error {record.error!r}", flush=True)
    finally:
        box.close()


def read_rows(path: str | None) -> list[dict[str, Any]]:
    """grpo.read_rows's shape (`messages` + `item`), without importing torch."""
    with open(str(path), encoding="utf-8") as f:
        return [{"messages": d.get("messages") or [], "item": {k: v for k, v in d.items() if k != "messages"}}
                for d in map(json.loads, filter(str.strip, f))]


def wait_for_exit_gate() -> None:
    """With RFT_FAKE_EXIT_GATE=PATH the worker exits only once PATH exists (a test decides when it exits)."""
    wait_for_gate(os.environ.get("RFT_FAKE_EXIT_GATE"))


def wait_for_gate(gate: str | None) -> None:
    """Wait (at most 2 minutes) until the file `gate` exists; no gate, no wait."""
    deadline = time.monotonic() + 120
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
