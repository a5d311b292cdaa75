"""Benchmark: the store's writes through sqlite-utils tables vs the same writes as hand-written SQL.

    python tests/bench/store_writes.py [--steps 300]

Times, per call, on a fresh WAL store in a temp dir: a training step (`Store.log_step`: metrics row, 16
samples, job update), a validation pass of 64 rows (`Store.log_validation`), a job update and an event --
against the hand-written statements the worker's reporter used before it wrote through `Store`. Prints JSON
(microseconds per call). A training step takes 0.3 s or more on the built-in model, so the budget for the
store is ~1 ms per step (0.3 %).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from daemon.store import Store, dumps, finite  # noqa: E402

SAMPLES = [{"prompt": f"{i}+{i}=", "completion": str(2 * i), "reward": 1.0, "sub_rewards": {"exact": 1.0},
            "errors": {}} for i in range(16)]
ROWS = [{"row_index": i, "prompt": f"{i}+1=", "reference": str(i + 1), "output": str(i + 1), "reward": 1.0,
         "sub_rewards": {"exact": 1.0}, "errors": {}, "item": {"answer": str(i + 1)}} for i in range(64)]


def new_store(root: Path, job_id: str) -> Store:
    store = Store(root / "rft.db", busy_timeout_s=30)
    store.insert_job({"id": job_id, "created_at": int(time.time()), "status": "running", "model": "m",
                      "training_file": "file-x", "seed": 0, "method": "{}", "hyperparameters": "{}"}, "created")
    return store


def raw_log_step(store: Store, job_id: str, step: int) -> None:
    """What the reporter ran before (one IMMEDIATE transaction of hand-written statements)."""
    values = {"reward": 0.5, "loss": 1.0, "kl": 0.01}
    with store.tx() as conn:
        conn.execute('INSERT OR IGNORE INTO metrics (job_id, step, created_at, "values") VALUES (?, ?, ?, ?)',
                     [job_id, step, time.time(), dumps(values)])
        for s in SAMPLES:
            conn.execute("INSERT INTO samples (job_id, step, prompt, completion, reward, sub_rewards, errors) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [job_id, step, s["prompt"], s["completion"], finite(s["reward"]), dumps(s["sub_rewards"]),
                          dumps(s["errors"])])
        conn.execute("UPDATE jobs SET step = MAX(step, ?), updated_at = ?, train_reward_mean = ? WHERE id = ?",
                     [step, time.time(), 0.5, job_id])


def raw_log_validation(store: Store, job_id: str, step: int) -> None:
    with store.tx() as conn:
        for r in ROWS:
            conn.execute("INSERT OR REPLACE INTO validation_rows (job_id, step, row_index, prompt, reference, output, "
                         "reward, sub_rewards, errors, item) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [job_id, step, r["row_index"], r["prompt"], r["reference"], r["output"], r["reward"],
                          dumps(r["sub_rewards"]), dumps(r["errors"]), dumps(r["item"])])
        conn.execute("UPDATE jobs SET valid_reward_latest = ?, updated_at = ? WHERE id = ?", [1.0, time.time(), job_id])
        conn.execute("INSERT INTO job_events (job_id, created_at, level, type, message, data) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     [job_id, int(time.time()), "info", "metrics", "Validation", dumps({"step": step})])


def raw_update(store: Store, job_id: str, _: int) -> None:
    with store.tx() as conn:
        conn.execute("UPDATE jobs SET requested_action = ?, updated_at = ? WHERE id = ?", [None, time.time(), job_id])


def raw_event(store: Store, job_id: str, i: int) -> None:
    with store.tx() as conn:
        conn.execute("INSERT INTO job_events (job_id, created_at, level, type, message, data) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     [job_id, int(time.time()), "info", "message", f"event {i}", None])


CASES: dict[str, tuple[Callable[[Store, str, int], Any], Callable[[Store, str, int], Any]]] = {
    "log_step_16_samples": (lambda s, j, i: s.log_step(j, i, {"reward": 0.5, "loss": 1.0, "kl": 0.01}, SAMPLES),
                            raw_log_step),
    "log_validation_64_rows": (lambda s, j, i: s.log_validation(j, i, ROWS), raw_log_validation),
    "update_job": (lambda s, j, i: s.update_job(j, requested_action=None), raw_update),
    "add_event": (lambda s, j, i: s.add_event(j, f"event {i}"), raw_event),
}


def per_call_us(fn: Callable[[Store, str, int], Any], n: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        store = new_store(Path(root), "ftjob-bench")
        fn(store, "ftjob-bench", 0)  # warm: connection, schema cache
        t = time.perf_counter()
        for i in range(1, n + 1):
            fn(store, "ftjob-bench", i)
        took = time.perf_counter() - t
        store.close()
    return took / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    out = {}
    for name, (store_fn, raw_fn) in CASES.items():
        n = args.steps if "validation" not in name else max(20, args.steps // 10)
        ours, raw = per_call_us(store_fn, n), per_call_us(raw_fn, n)
        out[name] = {"store_us": round(ours), "hand_written_us": round(raw), "ratio": round(ours / raw, 2), "calls": n}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
