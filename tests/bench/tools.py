"""Benchmark: the cost of a GRPO step with tool episodes vs plain single-turn generation.

    python tests/bench/tools.py [--steps 8] [--repeats 2]

The same model (builtin:tiny-tools), rows (examples/tools-arith), grader and settings as `rft-tui demo --task
tools` (batch 8 x 8 generations, max_completion_length 48, max_episode_steps 3), run three ways with TRL's
GRPOTrainer and the worker's own config builders:

  plain   the rows without tools, TRL's own single-turn generation (what a job without tools does);
  http    multi-turn episodes (our rollout_func) with the `add` tool served by a local HTTP server;
  python  the same with `add` as a python tool in the grader sandbox (bubblewrap).

Per step (steps 2..N, after warm-up): wall time, the sampling phase (generation + tools + grading) and the
training phase; per episode: model turns, tool calls, tokens (model / tool-result); tool latency p50/p95.
Each mode runs in its own process, alternating, so a busy machine's drift hits all alike. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
TOOLS = REPO / "examples" / "tools-arith"
MODEL = "builtin:tiny-tools"
PY_ADD = "def call(arguments, item):\n    return str(int(arguments['a']) + int(arguments['b']))\n"


def one(mode: str, steps: int, home: str) -> dict[str, Any]:
    import torch
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from daemon import api, metrics
    from daemon.hyperparams import DeviceInfo, resolve_hyperparameters
    from daemon.models import load_model, load_tokenizer
    from daemon.paths import Paths
    from daemon.worker.episodes import EpisodeRunner
    from daemon.worker.grpo import grpo_config, lora_config, read_rows, training_dataset
    from daemon.worker.rewards import GraderReward
    from daemon.worker.rollout import ToolRollout, rollout_dataset
    from daemon.worker.tool_runtime import ToolBox
    from tests.support.tool_server import ToolServer

    job = json.loads((TOOLS / "job.json").read_text())["method"]["reinforcement"]
    paths = Paths.resolve(home)
    hp = resolve_hyperparameters(api.ReinforcementHyperparameters(**{**job["hyperparameters"], "max_steps": steps}),
                                 model=MODEL, train_rows=2000, valid_rows=200, seed=0,
                                 device=DeviceInfo("cpu", 1, None))
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # what the worker does
    torch.manual_seed(0)
    rows = read_rows(str(TOOLS / "train.jsonl"))
    tok = load_tokenizer(MODEL, paths)
    server = ToolServer().__enter__()
    rollout: ToolRollout | None = None
    if mode == "plain":
        plain_rows = [{"messages": r["messages"], "item": {k: v for k, v in r["item"].items() if k != "tools"}}
                      for r in rows]
        dataset = training_dataset(plain_rows, tok)
    else:
        runtime: Any = (api.HttpToolRuntime(url=server.url("/text-sum"), max_retries=0) if mode == "http"
                        else api.PythonToolRuntime(source=PY_ADD))
        box = ToolBox({"add": runtime})
        rollout = ToolRollout(EpisodeRunner(tok, box, hp.max_episode_steps, hp.max_completion_length))
        dataset = rollout_dataset(rows)
    ends: dict[int, float] = {}
    sampling: dict[int, float] = {}
    tool_values: list[dict[str, float]] = []
    lengths: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            ends[state.global_step] = time.perf_counter()
            if rollout is not None:
                tool_values.append(rollout.drain_metrics())

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    reward = GraderReward(job["grader"], name="arithmetic")
    reward_funcs: list[Any] = [reward]  # TRL's hint wants list[float | None] back (lists are invariant)
    trainer = GRPOTrainer(model=load_model(MODEL, paths), reward_funcs=reward_funcs,
                          args=grpo_config(hp, Path(home) / f"out-{mode}", 1), train_dataset=dataset,
                          processing_class=tok, peft_config=lora_config(hp), callbacks=[Clock()],
                          rollout_func=rollout)
    trainer.remove_callback(PrinterCallback)
    inner = trainer._generate_and_score_completions

    def timed(inputs: Any) -> Any:
        if rollout is not None:
            rollout.inputs = inputs
        t = time.perf_counter()
        try:
            return inner(inputs)
        finally:
            sampling[trainer.state.global_step + 1] = time.perf_counter() - t

    trainer._generate_and_score_completions = timed  # type: ignore[method-assign]  # time each generation
    started = time.perf_counter()
    trainer.train()
    server.__exit__(None, None, None)
    reward.close()
    walls = [ends[s] - ends[s - 1] for s in range(2, steps + 1)]
    samples = [sampling[s] for s in range(2, steps + 1)]
    out: dict[str, Any] = {
        "step_s": statistics.mean(walls), "sampling_s": statistics.mean(samples),
        "training_s": statistics.mean(w - s for w, s in zip(walls, samples, strict=True)),
        "episodes_per_step": hp.completions_per_step, "model_tokens_per_episode": statistics.mean(lengths[1:]),
        "total_s": time.perf_counter() - started,
    }
    if tool_values:
        kept = tool_values[1:]
        for key in (metrics.TOOL_CALL_RATE, metrics.TOOL_CALLS_PER_EPISODE, metrics.TOOL_EPISODE_TURNS,
                    metrics.TOOL_ERROR_RATE, metrics.TOOL_LATENCY_P50_MS, metrics.TOOL_LATENCY_P95_MS):
            vals = [v[key] for v in kept if key in v]
            if vals:
                out[key] = statistics.mean(vals)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--modes", default="plain,http,python")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    cache = os.environ.get("RFT_MODEL_CACHE") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                                     / "rft-tui" / "test-models")
    os.environ["RFT_MODEL_CACHE"] = cache
    home = tempfile.mkdtemp(prefix="rft-bench-tools-")
    if args.one:
        print(json.dumps(one(args.one, args.steps, home)))
        return
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes.split(",")}
    for _ in range(args.repeats):
        for mode in runs:
            out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--one", mode],
                                 capture_output=True, text=True, env={**os.environ, "RFT_HOME": home}, cwd=REPO)
            if out.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary: dict[str, Any] = {"steps_timed": args.steps - 1, "repeats": args.repeats, "model": MODEL}
    for mode, results in runs.items():
        summary[mode] = {k: round(statistics.mean(r[k] for r in results), 4) for k in results[0]
                         if all(k in r for r in results)}
    if "plain" in summary:
        base = summary["plain"]
        for mode in runs:
            if mode != "plain":
                summary[mode]["step_s_vs_plain"] = round(summary[mode]["step_s"] / base["step_s"], 3)
                summary[mode]["sampling_s_vs_plain"] = round(summary[mode]["sampling_s"] / base["sampling_s"], 3)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
