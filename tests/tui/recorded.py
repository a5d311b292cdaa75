"""Recorded data for TUI tests, snapshots, screenshots and the benchmark: a store filled the worker's way.

Jobs in every state a daemon keeps (succeeded, failed, cancelled, paused, running, queued) with metric
rows, validation rows (base and later steps, per-grader sub-rewards), samples, events and checkpoints,
written through `JobReporter` and `Store` before the daemon starts. Ids and timestamps are fixed so
snapshots are stable; the running job is kept running by `tests.tui.idle_worker`.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.paths import Paths
from daemon.store import Store, dumps
from daemon.worker.reporting import JobReporter

T0 = 1767225600  # 2026-01-01 00:00:00 UTC
CLOCK = T0 + 6 * 3600  # "now" in snapshots
IDLE_WORKER_ENV = {"RFT_WORKER_MODULE": "tests.tui.idle_worker", "RFT_CANCEL_GRACE_S": "3"}

GRADER = {"type": "multi", "name": "arith", "calculate_output": "0.8 * exact + 0.2 * close",
          "graders": {"exact": {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                                "reference": "{{item.answer}}", "operation": "eq"},
                      "close": {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
                                "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}}}
HP: dict[str, Any]
HP = {"n_epochs": 1, "batch_size": 8, "learning_rate_multiplier": 1.0, "eval_interval": 10, "eval_samples": 12,
      "compute_multiplier": 1.0, "seed": 7, "num_generations": 8, "max_completion_length": 8,
      "max_prompt_length": 32, "temperature": 1.0, "beta": 0.04, "loss_type": "dr_grpo", "learning_rate": 5e-4,
      "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_target_modules": ["q_proj", "v_proj"],
      "precision": "fp32", "use_vllm": False, "num_processes": 1, "save_total_limit": 3,
      "gradient_accumulation_steps": 1, "samples_per_step": 4}


@dataclass(frozen=True)
class RecordedJob:
    id: str
    status: str
    steps: int
    total: int
    created_at: int


JOBS = (  # oldest first (seq order); the Jobs screen lists them newest first
    RecordedJob("ftjob-a1c3e5f70000000000000001", "succeeded", 40, 40, T0),
    RecordedJob("ftjob-b2d4f6a80000000000000002", "failed", 12, 40, T0 + 3600),
    RecordedJob("ftjob-c3e5a7b90000000000000003", "cancelled", 5, 40, T0 + 2 * 3600),
    RecordedJob("ftjob-d4f6b8ca0000000000000004", "paused", 18, 40, T0 + 3 * 3600),
    RecordedJob("ftjob-e5a7c9db0000000000000005", "running", 25, 60, CLOCK - 300),
    RecordedJob("ftjob-f6b8dae00000000000000006", "queued", 0, 40, CLOCK - 60),
)
SUCCEEDED, FAILED, CANCELLED, PAUSED, RUNNING, QUEUED = (j.id for j in JOBS)
TRAIN_FILE, VALID_FILE = "file-0a1b2c3d4e5f60718293a4b5", "file-1b2c3d4e5f60718293a4b5c6"


def _prob(step: int) -> float:
    """A plausible learning curve: 0.35 at the base model rising to ~0.62."""
    return 0.35 + 0.27 * (1 - math.exp(-step / 14))


def _problems(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(10, 49), rng.randint(10, 49)
        out.append((f"{a}+{b}=", str(a + b)))
    return out


def _answer(rng: random.Random, ref: str, p: float) -> tuple[str, float, float]:
    if rng.random() < p:
        return ref, 1.0, 1.0
    wrong = str(int(ref) + rng.choice([-10, -1, 1, 10, 2]))
    close = sum(1 for x, y in zip(wrong, ref, strict=False) if x == y) / max(len(ref), 1)
    return wrong, 0.0, round(close, 3)


def _files(store: Store, paths: Paths) -> None:
    for fid, name, rows, n, seed in ((TRAIN_FILE, "arith-train.jsonl", 400, 400, 1),
                                     (VALID_FILE, "arith-valid.jsonl", 12, 12, 2)):
        body = "".join(json.dumps({"messages": [{"role": "user", "content": q}], "answer": a}) + "\n"
                       for q, a in _problems(n, seed))
        path = paths.files / f"{fid}.jsonl"
        path.write_text(body)
        store.insert_file({"id": fid, "sha256": fid.removeprefix("file-").ljust(64, "0"), "bytes": len(body),
                           "filename": name, "purpose": "fine-tune", "created_at": T0 - 600, "rows": rows,
                           "path": str(path), "source_path": f"/home/ada/data/{name}", "status": "processed"})


def _job_row(job: RecordedJob) -> dict[str, Any]:
    hp = {**HP, "max_steps": job.total}
    snapshot = {"model": {"id": "builtin:tiny-arith", "source": "builtin", "revision": "0.1.0"},
                "training_file": {"id": TRAIN_FILE, "filename": "arith-train.jsonl", "rows": 400},
                "validation_file": {"id": VALID_FILE, "filename": "arith-valid.jsonl", "rows": 12},
                "grader": GRADER, "hyperparameters": hp, "seed": 7, "created_at": job.created_at}
    method = {"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {"max_steps": job.total}}}
    return {"id": job.id, "created_at": job.created_at, "status": "queued", "model": "builtin:tiny-arith",
            "training_file": TRAIN_FILE, "validation_file": VALID_FILE, "seed": 7, "suffix": None,
            "metadata": None, "method": dumps(method), "hyperparameters": dumps({"max_steps": job.total}),
            "resolved_hyperparameters": dumps(hp), "snapshot": dumps(snapshot), "total_steps": job.total}


def _health(step: int, rng: random.Random) -> dict[str, float]:
    """Health signals (docs/health.md): zero-spread groups peak around steps 10-17 (zero_signal fires at 12 and
    clears at 18), completions are cut more and more (length_clipped opens at step 20), entropy drifts down."""
    zero = 0.75 if 10 <= step <= 17 else 0.125 * (step % 3)
    return {"frac_reward_zero_std": zero, "completions/clipped_ratio": round(min(0.6, 0.02 * step), 4),
            "entropy": round(1.2 * math.exp(-step / 40) + 0.05 * rng.random(), 4),
            "completions/mean_length": round(4 + 0.05 * step, 2), "completions/max_length": 8.0,
            "grader/arith/error_rate": 0.0, "grader/arith/latency_p50_s": 0.002,
            "grader/arith/latency_p95_s": round(0.004 + 0.001 * rng.random(), 5),
            "train_valid_gap": round(0.03 + 0.002 * step, 4)}


def _alarms(reporter: JobReporter, job: RecordedJob) -> None:
    """What daemon.health raises on those signals (the succeeded job): one episode cleared, one still open."""
    if job.status != "succeeded":
        return
    reporter.alarm({"name": "zero_signal", "severity": "critical", "step": 12, "value": 0.53, "threshold": 0.5,
                    "message": "53% of the last 64 groups had zero reward spread (bound 50%): no learning signal",
                    "action": "warn"})
    reporter.alarm({"name": "zero_signal", "step": 18, "cleared": True, "severity": "critical"})
    reporter.alarm({"name": "length_clipped", "severity": "warning", "step": 20, "value": 0.31, "threshold": 0.3,
                    "message": "31.0% of completions cut at max_completion_length over the last 20 steps "
                               "(bound 30%)", "action": "warn"})


def _train(reporter: JobReporter, job: RecordedJob, problems: list[tuple[str, str]]) -> None:
    rng = random.Random(int(job.id[-4:]))
    ckpt_dir = reporter.paths.job_dir(job.id) / "checkpoints"

    def validate(step: int) -> float:
        rows = []
        for i, (q, ref) in enumerate(problems):
            p = _prob(step) + (0.1 if i % 3 == 0 else -0.05)
            out, exact, close = _answer(random.Random(i * 1000 + step), ref, p)
            rows.append({"row_index": i, "prompt": q, "reference": ref, "output": out,
                         "reward": round(0.8 * exact + 0.2 * close, 4),
                         "sub_rewards": {"exact": exact, "close": close}, "item": {"answer": ref}})
        return reporter.log_validation(step, rows) or 0.0

    validate(0)
    for step in range(1, job.steps + 1):
        p = _prob(step)
        samples, rewards = [], []
        for q, ref in _problems(4, step):
            out, exact, close = _answer(rng, ref, p)
            r = 0.8 * exact + 0.2 * close
            rewards.append(r)
            samples.append({"prompt": q, "completion": out, "reward": r,
                            "sub_rewards": {"exact": exact, "close": close}})
        mean = sum(rewards) / len(rewards)
        values = {"reward": round(0.7 * mean + 0.3 * p, 4), "reward_std": round(0.2 + 0.05 * rng.random(), 4),
                  "loss": round(0.05 * math.exp(-step / 20) + 0.01 * rng.random(), 5),
                  "kl": round(0.002 * step ** 0.5, 5), "learning_rate": 5e-4 * (1 - step / (job.total + 1)),
                  "rewards/exact/mean": round(p + 0.05 * (rng.random() - 0.5), 4),
                  "rewards/close/mean": round(min(1.0, p + 0.25), 4), "step_wall_s": 2.9 + 0.2 * rng.random(),
                  **_health(step, rng)}
        reporter.log_step(step, values, samples=samples, total_steps=job.total,
                          trained_tokens=step * 8 * 8 * 12)
        if step % HP["eval_interval"] == 0 or step == job.steps and job.status == "succeeded":
            reward = validate(step)
            d = ckpt_dir / f"step-{step}"
            d.mkdir(parents=True, exist_ok=True)
            reporter.add_checkpoint(step, str(d), {"valid_reward_mean": reward, "train_reward_mean": values["reward"]})


def _finish(store: Store, job: RecordedJob) -> None:
    started = job.created_at + 60
    fields: dict[str, Any] = {"started_at": started, "run_seconds": job.steps * 3.0}
    if job.status == "succeeded":
        fields.update(finished_at=started + job.steps * 3, fine_tuned_model=f"ft:builtin:tiny-arith:{job.id}")
    elif job.status == "failed":
        fields.update(finished_at=started + 40, error_code="out_of_memory",
                      error_message="the worker was killed by SIGKILL (possibly the kernel's out-of-memory killer). "
                                    "Out of memory: lower batch_size, num_generations or max_completion_length.")
    elif job.status == "cancelled":
        fields.update(finished_at=started + 20)
    elif job.status == "running":
        fields.update(run_seconds=0.0)
    if job.status in ("queued",):
        fields = {}
    sets = ", ".join(f"{k} = ?" for k in fields)
    with store.tx() as conn:
        if fields:
            conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*fields.values(), job.id])
        status = "paused" if job.status == "running" else job.status  # the daemon resumes it (idle worker)
        conn.execute("UPDATE jobs SET status = ? WHERE id = ?", [status, job.id])
        if job.status == "running":  # make the daemon pick it up first on start: running -> queued -> running
            conn.execute("UPDATE jobs SET status = 'queued' WHERE id = ?", [job.id])
    messages = {"succeeded": ("info", "Job succeeded"), "failed": ("error", "Worker failed: out of memory"),
                "cancelled": ("info", "Job cancelled"), "paused": ("info", "Job paused: checkpoint at step 18")}
    if job.status in messages:
        level, text = messages[job.status]
        store.add_event(job.id, text, level=level, data={"status": job.status})


def _fix_times(store: Store, job: RecordedJob) -> None:
    started = job.created_at + 60
    with store.tx() as conn:
        conn.execute("UPDATE metrics SET created_at = ? + step * 3.0 WHERE job_id = ?", [started, job.id])
        conn.execute("UPDATE checkpoints SET created_at = ? + step * 3 WHERE job_id = ?", [started, job.id])
        conn.execute("UPDATE job_alarms SET created_at = ? + step * 3, cleared_at = CASE WHEN cleared_at IS NULL THEN "
                     "NULL ELSE ? + cleared_step * 3 END WHERE job_id = ?", [started, started, job.id])
        seqs = [r[0] for r in conn.execute("SELECT seq FROM job_events WHERE job_id = ? ORDER BY seq", [job.id])]
        for i, seq in enumerate(seqs):
            conn.execute("UPDATE job_events SET created_at = ? WHERE seq = ?", [started + 3 * i, seq])
    log = store.path.parent / "jobs" / job.id / "worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"step {s}/{job.total} reward={_prob(s):.3f}\n" for s in range(1, job.steps + 1)) +
                   ("Killed\n" if job.status == "failed" else ""))


def record(home: Path, jobs: tuple[RecordedJob, ...] = JOBS) -> Paths:
    """Fill `home`'s store; call before the daemon starts (use IDLE_WORKER_ENV for the daemon)."""
    paths = Paths.resolve(home).ensure()
    store = Store(paths.db)
    try:
        _files(store, paths)
        problems = _problems(12, 2)
        for job in jobs:
            store.insert_job(_job_row(job), "Validating training file")
            if job.steps:
                reporter = JobReporter(home, job.id)
                try:
                    reporter.started(job.total, message="Worker started (pid 4242)")
                    _train(reporter, job, problems)
                    _alarms(reporter, job)
                finally:
                    reporter.close()
            _finish(store, job)
            _fix_times(store, job)
    finally:
        store.close()
    return paths
