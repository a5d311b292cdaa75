"""Benchmark: what training health costs per step, without training (the overhead benchmark measures it whole).

    python tests/bench/health.py [--steps 2000] [--rows 128]

(a) the alarm engine: `JobHealth.add_signals` + `JobHealth.step` on a realistic step's values (TRL's keys, two
    graders' error rates and latencies), over `--steps` steps, alarms firing and clearing on the way;
(b) the reward bridge's per-grader bookkeeping: `GraderReward._count_graders` + `_grader_health` for `--rows`
    graded rows of a multi grader with two sub-graders (one step's worth).
Prints JSON: microseconds per step for each, and their share of a 1 s step (the built-in model's steps on a CPU
take 0.2-3 s; a GPU model's take seconds).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def engine_us(steps: int) -> float:
    from daemon import api, metrics
    from daemon.health import JobHealth

    rng = random.Random(0)
    health = JobHealth(api.Guardrails(), 16, lambda a: True, {"py": 120.0})
    health.validation(0, 0.4)
    values = []
    for _ in range(steps):
        values.append({metrics.TRAIN_REWARD: rng.random(), "reward_std": 0.2, metrics.LOSS: 0.01,
                       metrics.FRAC_REWARD_ZERO_STD: rng.choice([0.0, 0.25, 0.75, 1.0]),
                       metrics.CLIPPED_RATIO: rng.random() * 0.5, metrics.ENTROPY: rng.random(),
                       metrics.grader_error_rate("py"): rng.random() * 0.1,
                       metrics.grader_latency_p95("py"): rng.random(),
                       metrics.grader_error_rate("exact"): 0.0, metrics.grader_latency_p95("exact"): 1e-4,
                       metrics.STEP_WALL_S: 1.0})
    t = time.perf_counter()
    for step, v in enumerate(values, start=1):
        health.add_signals(v)
        health.step(step, v)
        if step % 50 == 0:
            health.validation(step, rng.random())
    return (time.perf_counter() - t) / steps * 1e6


def bookkeeping_us(rows: int, repeats: int = 200) -> float:
    from daemon.worker.rewards import GraderReward
    from graders.result import GraderResult

    reward = GraderReward.__new__(GraderReward)
    reward.__name__ = "arith"
    reward.lock = threading.Lock()
    reward.samples_per_step = 8
    reward._reset()
    results = []
    for i in range(rows):
        r = GraderResult(1.0, "arith", "multi", execution_time=1e-4)
        r.sub_results = {"exact": GraderResult(1.0, "exact", "string_check", execution_time=2e-5),
                         "close": GraderResult(0.5, "close", "text_similarity", execution_time=5e-5)}
        if i % 7 == 0:
            r.errors = frozenset({"other_error"})
        results.append(r)
    t = time.perf_counter()
    for _ in range(repeats):
        reward._count_graders(reward.tally, results)
        reward.summarize([reward.take()])
    return (time.perf_counter() - t) / repeats * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=128)
    args = ap.parse_args()
    e, b = engine_us(args.steps), bookkeeping_us(args.rows)
    print(json.dumps({"engine_us_per_step": round(e, 1), "grader_bookkeeping_us_per_step": round(b, 1),
                      "rows_per_step": args.rows, "share_of_a_1s_step_pct": round((e + b) / 1e6 * 100, 4)},
                     indent=2))


if __name__ == "__main__":
    main()
