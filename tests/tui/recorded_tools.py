"""A recorded agent-RFT job (the tools demo's shape) for the trajectory view's tests and snapshot.

`builtin:tiny-tools` on 3-digit sums with an http `add` tool: 10 steps whose tool-call rate rises, samples and
validation rows (base and step 10) that carry whole episodes -- a call and its result, a guess without a call,
a call that failed (an error the model was shown), and two parallel calls -- written through `JobReporter`
like the worker writes them. Fixed ids and times, like `tests.tui.recorded`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon.paths import Paths
from daemon.store import Store, dumps
from daemon.worker.reporting import JobReporter
from tests.tui import recorded

JOB = recorded.RecordedJob("ftjob-7001a5c0de0000000000000a", "succeeded", 10, 10, recorded.T0 + 5 * 3600)
TOOLS = {"add": {"type": "http", "url": "http://127.0.0.1:8765/add", "timeout_s": 5, "max_retries": 2}}
PROBLEMS = [(123, 456), (888, 379), (270, 375), (634, 834), (950, 355), (311, 702)]


def call(call_id: str, a: Any, b: Any, latency_ms: float | None = 4.2, error: str | None = None) -> dict[str, Any]:
    result = None if error else str(a + b)
    return {"id": call_id, "name": "add", "arguments": {"a": a, "b": b}, "result": result, "error": error,
            "latency_ms": latency_ms}


def tool_turn(c: dict[str, Any]) -> dict[str, Any]:
    shown = json.dumps({"error": c["error"]}) if c["error"] else c["result"]
    return {"role": "tool", "content": shown, "tool_call_id": c["id"], "name": "add"}


def used_tool(a: int, b: int) -> list[dict[str, Any]]:
    c = call("call_1", a, b)
    return [{"role": "assistant", "content": "", "tool_calls": [c]}, tool_turn(c),
            {"role": "assistant", "content": str(a + b)}]


def guessed(a: int, b: int) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": "1111" if a + b >= 1000 else "777"}]


def failed_then_guessed(a: int, b: int) -> list[dict[str, Any]]:
    c = call("call_1", a, "b", latency_ms=None, error="bad arguments for add: b must be integer")
    return [{"role": "assistant", "content": "", "tool_calls": [c]}, tool_turn(c),
            {"role": "assistant", "content": "1111"}]


def parallel(a: int, b: int) -> list[dict[str, Any]]:
    c1, c2 = call("call_1", a, b, latency_ms=3.1), call("call_2", b, a, latency_ms=12.6)
    return [{"role": "assistant", "content": "", "tool_calls": [c1, c2]}, tool_turn(c1), tool_turn(c2),
            {"role": "assistant", "content": str(a + b)}]


def row(index: int, turns: list[dict[str, Any]], a: int, b: int, step: int) -> dict[str, Any]:
    answer = turns[-1]["content"]
    exact = float(answer == str(a + b))
    return {"row_index": index, "prompt": f"{a}+{b}=", "reference": str(a + b), "output": answer,
            "reward": exact if exact else 0.125, "sub_rewards": {"exact": exact, "close": 0.25 * (1 - exact)},
            "item": {"answer": str(a + b)}, "output_messages": turns, "stop_reason": "final_answer"}


def episodes_at(step: int) -> list[list[dict[str, Any]]]:
    """The validation episodes: at the base two of six call the tool (one fails), at step 10 all do."""
    if step == 0:
        kinds = [used_tool, guessed, used_tool, guessed, failed_then_guessed, guessed]
    else:
        kinds = [used_tool, used_tool, used_tool, parallel, used_tool, used_tool]
    return [kind(a, b) for kind, (a, b) in zip(kinds, PROBLEMS, strict=True)]


def _job_row() -> dict[str, Any]:
    job = recorded._job_row(JOB)
    snapshot = json.loads(job["snapshot"])
    snapshot["model"] = {"id": "builtin:tiny-tools", "source": "builtin", "revision": None}
    snapshot["tools"] = TOOLS
    snapshot["hyperparameters"]["max_episode_steps"] = 3
    method = json.loads(job["method"])
    method["reinforcement"]["tools"] = TOOLS
    return {**job, "model": "builtin:tiny-tools", "snapshot": dumps(snapshot), "method": dumps(method)}


def _train(reporter: JobReporter) -> None:
    def validate(step: int) -> None:
        rows = [row(i, turns, a, b, step) for i, (turns, (a, b)) in enumerate(zip(episodes_at(step), PROBLEMS,
                                                                                   strict=True))]
        reporter.log_validation(step, rows)

    validate(0)
    for step in range(1, JOB.steps + 1):
        rate = min(1.0, 0.35 + 0.07 * step)
        a, b = PROBLEMS[step % len(PROBLEMS)]
        turns = used_tool(a, b) if step % 3 else guessed(a, b)
        sample = row(0, turns, a, b, step)
        samples = [{"prompt": sample["prompt"], "completion": sample["output"], "reward": sample["reward"],
                    "sub_rewards": sample["sub_rewards"], "output_messages": turns, "stop_reason": "final_answer"}]
        values = {"reward": round(0.45 + 0.05 * step, 4), "reward_std": 0.3, "tools/call_rate": rate,
                  "tools/calls_per_episode": rate, "tools/error_rate": 0.02, "loss": 0.01, "step_wall_s": 2.0}
        reporter.log_step(step, values, samples=samples, total_steps=JOB.total, trained_tokens=step * 2048)
    validate(JOB.steps)
    ckpt = reporter.paths.job_dir(JOB.id) / "checkpoints" / f"step-{JOB.steps}"
    ckpt.mkdir(parents=True, exist_ok=True)
    reporter.add_checkpoint(JOB.steps, str(ckpt), {"valid_reward_mean": 1.0, "train_reward_mean": 0.95})


def record(home: Path) -> Paths:
    """Fill `home`'s store with the one tools job; call before the daemon starts."""
    paths = Paths.resolve(home).ensure()
    store = Store(paths.db)
    try:
        recorded._files(store, paths)
        store.insert_job(_job_row(), "Validating training file")
        reporter = JobReporter(home, JOB.id)
        try:
            reporter.started(JOB.total, message="Worker started (pid 4242)")
            _train(reporter)
        finally:
            reporter.close()
        recorded._finish(store, JOB)
        recorded._fix_times(store, JOB)
    finally:
        store.close()
    return paths
