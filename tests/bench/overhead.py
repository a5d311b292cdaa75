"""Benchmark: the daemon's training job vs a bare TRL GRPOTrainer script, same model, data, reward and steps.

    python tests/bench/overhead.py [--steps 40]

(a) bare: GRPOTrainer + LoRA on builtin:tiny-arith with the arithmetic grader as reward, nothing else;
(b) daemon: the same settings as a real job through a real daemon (store logging every step, samples,
    validation only at step 0 and the end, i.e. outside the timed window).
Steps/s is measured over steps 2..N-1 of each (after warm-up, before the final validation); prints JSON
with both rates, their ratio and the overhead in percent (target: <= 5 %).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
ARITH = REPO / "examples" / "arithmetic"
HP: dict[str, Any] = {"batch_size": 16, "num_generations": 8, "learning_rate": 5e-4, "beta": 0.0, "eval_samples": 64}


def rate(times: dict[int, float], steps: int) -> float:
    """Steps per second between step 2 and step N-1."""
    lo, hi = 2, steps - 1
    return (hi - lo) / (times[hi] - times[lo])


def bare(steps: int, home: str) -> dict[str, float]:
    """Run GRPO the plain TRL way, with the same config builders the worker uses."""
    import torch
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from daemon.api import ReinforcementHyperparameters
    from daemon.hyperparams import DeviceInfo, resolve_hyperparameters
    from daemon.models import load_model, load_tokenizer
    from daemon.paths import Paths
    from daemon.worker.grpo import grpo_config, lora_config, read_rows, training_dataset
    from daemon.worker.rewards import GraderReward

    paths = Paths.resolve(home)
    hp = resolve_hyperparameters(ReinforcementHyperparameters(**HP, max_steps=steps, eval_interval=steps),
                                 model="builtin:tiny-arith", train_rows=1500, valid_rows=200, seed=0,
                                 device=DeviceInfo("cpu", 1, None))
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # what the worker does
    torch.manual_seed(0)
    times: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times[state.global_step] = time.perf_counter()

    reward = GraderReward(json.loads((ARITH / "grader.json").read_text()), name="arithmetic")
    reward_funcs: list[Any] = [reward]  # TRL's hint wants list[float | None] back (lists are invariant)
    trainer = GRPOTrainer(model=load_model("builtin:tiny-arith", paths), reward_funcs=reward_funcs,
                          args=grpo_config(hp, Path(home) / "bare-out", 1),
                          train_dataset=training_dataset(read_rows(str(ARITH / "train.jsonl"))),
                          processing_class=load_tokenizer("builtin:tiny-arith", paths), peft_config=lora_config(hp),
                          callbacks=[Clock()])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the worker removes it too
    trainer.train()
    return {"steps_per_s": rate(times, steps)}


def daemon_job(steps: int, home: str) -> dict[str, float]:
    from daemon.store import Store
    from tests.support.daemon_proc import DaemonProcess, wait_until

    d = DaemonProcess(Path(home), env={"RFT_DEVICE": "cpu"}).start()
    try:
        c = d.client()
        train = c.import_file(str(ARITH / "train.jsonl")).id
        valid = c.import_file(str(ARITH / "valid.jsonl")).id
        grader = json.loads((ARITH / "grader.json").read_text())
        job = c.create_job({"model": "builtin:tiny-arith", "training_file": train, "validation_file": valid, "seed": 0,
                            "method": {"type": "reinforcement", "reinforcement": {
                                "grader": grader,
                                "hyperparameters": {**HP, "max_steps": steps, "eval_interval": steps}}}})
        done = wait_until(lambda: (lambda j: j if j.status.is_terminal() else None)(c.get_job(job.id)),
                          timeout=1800, interval=0.5, what="the benchmark job")
        if done.status.value != "succeeded":
            raise SystemExit(f"daemon job {done.status.value}: {done.error}")
        # the worker commits each step's row right after the step: its created_at is the step's end
        store = Store(d.paths.db)
        rows = store.query("SELECT step, created_at FROM metrics WHERE job_id = ?", [job.id])
        times = {r["step"]: r["created_at"] for r in rows}
        store.close()
        return {"steps_per_s": rate(times, steps)}
    finally:
        d.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each side")
    ap.add_argument("--bare-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cache = os.environ.get("RFT_MODEL_CACHE") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                                     / "rft-tui" / "test-models")
    os.environ["RFT_MODEL_CACHE"] = cache
    home = tempfile.mkdtemp(prefix="rft-bench-")
    if args.bare_only:
        print(json.dumps(bare(args.steps, home)))
        return
    # each side in its own process, alternating (a b a b ...) so a busy machine's drift hits both sides alike
    runs: dict[str, list[dict[str, float]]] = {"bare_trl": [], "daemon_job": []}
    for _ in range(args.repeats):
        t = time.time()
        out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--bare-only"], capture_output=True,
                             text=True, env={**os.environ, "RFT_HOME": home}, cwd=REPO)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
        runs["bare_trl"].append({**json.loads(out.stdout.strip().splitlines()[-1]),
                                 "wall_s": round(time.time() - t, 1)})
        t = time.time()
        runs["daemon_job"].append({**daemon_job(args.steps, tempfile.mkdtemp(prefix="rft-bench-")),
                                   "wall_s": round(time.time() - t, 1)})
    mean = {k: sum(r["steps_per_s"] for r in v) / len(v) for k, v in runs.items()}
    ratio = mean["daemon_job"] / mean["bare_trl"]
    print(json.dumps({"steps": args.steps, "completions_per_step": HP["batch_size"] * HP["num_generations"],
                      "cpu_count": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                      "bare_trl_steps_per_s": round(mean["bare_trl"], 4),
                      "daemon_job_steps_per_s": round(mean["daemon_job"], 4),
                      "ratio": round(ratio, 4), "overhead_pct": round((1 - ratio) * 100, 2),
                      "target_overhead_pct": 5.0, "runs": runs}, indent=2))

if __name__ == "__main__":
    main()
