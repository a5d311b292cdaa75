"""Pre-flight: does this model + data + grader give GRPO a learning signal before you spend a run on it?

Samples the base model on N training rows, k completions each (the job's temperature), grades them, and
reports the reward distribution, the share of rows whose k completions all score the same (no signal:
GRPO's advantage is zero there), grader error rates and the longest prompt + completion.

`python -m daemon.worker.preflight` reads `{"snapshot": ..., "rows": N, "completions_per_row": k}` as JSON on stdin
and writes a `PreflightReport` JSON on stdout; the daemon runs it as a subprocess (it never imports torch).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from typing import Any

from daemon import api
from daemon.worker.probes import gameability, signal_map

HIST_BINS = 10


def histogram(rewards: list[float]) -> list[tuple[float, int]]:
    """Counts per tenth of [0, 1] (the last bin holds 1.0); out-of-range rewards clamp to the ends."""
    counts = [0] * HIST_BINS
    for r in rewards:
        counts[min(HIST_BINS - 1, max(0, int(math.floor(r * HIST_BINS))))] += 1
    return [(round(i / HIST_BINS, 2), c) for i, c in enumerate(counts)]


def verdict(mean: float, zero_frac: float, error_rate: float, clipped_frac: float) -> str:
    """One line a person can act on."""
    if error_rate > 0.5:
        return f"Stop: the grader errors on {error_rate:.0%} of samples; fix it before training."
    if mean >= 0.95 and zero_frac > 0.8:
        return "Too easy: nearly every completion scores full marks; GRPO has little to learn."
    if mean <= 0.02 and zero_frac > 0.8:
        return ("Too hard: almost nothing scores above 0, so GRPO gets no signal; use partial credit, easier "
                "rows or a stronger model.")
    notes = []
    if zero_frac > 0.5:
        notes.append(f"{zero_frac:.0%} of rows give no signal (all completions score the same)")
    if error_rate > 0.05:
        notes.append(f"grader errors on {error_rate:.0%} of samples")
    if clipped_frac > 0.2:
        notes.append(f"{clipped_frac:.0%} of completions hit max_completion_length")
    if notes:
        return "Trainable, with caveats: " + "; ".join(notes) + "."
    return f"Good signal: mean reward {mean:.2f}, {1 - zero_frac:.0%} of rows discriminate between completions."


def run(snapshot: api.JobSnapshot, n_rows: int, k: int) -> api.PreflightReport:
    import torch

    from daemon.models import load_model, load_tokenizer
    from daemon.paths import Paths
    from daemon.text import message_text
    from daemon.worker.grpo import read_rows, stored_path
    from daemon.worker.prompts import render_prompt, row_tools
    from daemon.worker.rewards import GraderReward

    started = time.time()
    hp = snapshot.hyperparameters
    model_id = snapshot.model_ref()
    paths = Paths.resolve()
    seed = hp.seed
    torch.manual_seed(seed)
    tok = load_tokenizer(model_id, paths)
    device = "cuda" if hp.on_cuda and torch.cuda.is_available() else "cpu"
    model = load_model(model_id, paths, device=device)
    model.eval()
    rows = read_rows(stored_path(snapshot.training_file))
    chosen = sorted(random.Random(seed).sample(range(len(rows)), min(n_rows, len(rows))))
    prompts = [render_prompt(tok, rows[i]["messages"], row_tools(rows[i])) for i in chosen]
    max_new = hp.max_completion_length
    outputs: list[list[str]] = []
    comp_lens: list[list[int]] = []
    prompt_lens: list[int] = []
    samples: list[Any] | None = None
    tool_use: api.PreflightToolUse | None = None
    if snapshot.tools:  # agent RFT: k sampled episodes per row, with the job's real tools
        episodes = play_episodes(snapshot, tok, model, device, [rows[i] for i in chosen], k)
        per = [episodes[j * k:(j + 1) * k] for j in range(len(chosen))]
        outputs = [[e.final_answer for e in eps] for eps in per]
        comp_lens = [[sum(e.mask) for e in eps] for eps in per]
        prompt_lens = [len(eps[0].prompt_ids) if eps else 0 for eps in per]
        samples = [e.grader_sample() for e in episodes]
        tool_use = tool_use_report(episodes)
    with torch.no_grad():
        for p in (prompts if samples is None else []):
            enc = tok([p], return_tensors="pt", add_special_tokens=False).to(device)
            prompt_lens.append(int(enc["input_ids"].shape[1]))
            out = model.generate(**enc, do_sample=True, temperature=hp.temperature,
                                 num_return_sequences=k, max_new_tokens=max_new, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            lens = [int((seq != tok.pad_token_id).sum().item()) for seq in new]
            comp_lens.append(lens)
            outputs.append(tok.batch_decode(new, skip_special_tokens=True))
    reward = GraderReward(snapshot.grader)
    flat_out = [o for outs in outputs for o in outs]
    flat_items = [rows[i]["item"] for i, outs in zip(chosen, outputs, strict=True) for _ in outs]
    result = reward.grade(samples if samples is not None else flat_out, flat_items)
    row_prompts = [message_text(rows[i]["messages"][-1].get("content")) if rows[i]["messages"] else ""
                   for i in chosen]
    mean_so_far = sum(result.rewards) / len(result.rewards) if result.rewards else 0.0
    probes, gameable = gameability(lambda outs, items: [float(x) for x in reward.grade(outs, items).rewards],
                                   row_prompts, [rows[i]["item"] for i in chosen], mean_so_far)
    reward.close()
    rewards = [float(r) for r in result.rewards]
    per_row = [rewards[j * k:(j + 1) * k] for j in range(len(chosen))]
    zero = sum(1 for rs in per_row if max(rs) - min(rs) < 1e-9)
    mean = sum(rewards) / len(rewards) if rewards else 0.0
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards)) if rewards else 0.0
    all_lens = [n for ls in comp_lens for n in ls]
    clipped = sum(1 for n in all_lens if n >= max_new) / max(1, len(all_lens))
    error_rate = result.error_count / max(1, len(rewards))
    longest = max((pl + max(cl) for pl, cl in zip(prompt_lens, comp_lens, strict=True)), default=0)
    examples = []
    for j, i in enumerate(chosen[:5]):
        prompt = message_text(rows[i]["messages"][-1].get("content")) if rows[i]["messages"] else ""
        examples.append({"row": i, "prompt": prompt, "completions": outputs[j][:4], "rewards": per_row[j][:4]})
    zero_frac = zero / max(1, len(chosen))
    return api.PreflightReport(
        model=model_id, rows=len(chosen), completions_per_row=k, reward_mean=mean, reward_std=std,
        reward_histogram=histogram(rewards), zero_signal_rows=zero, zero_signal_fraction=zero_frac,
        grader_errors=dict(result.errors), grader_error_rate=error_rate,
        longest_prompt_tokens=max(prompt_lens, default=0), longest_completion_tokens=max(all_lens, default=0),
        longest_total_tokens=longest, examples=examples,
        verdict=" ".join(filter(None, [gameable, tools_verdict(tool_use),
                                       verdict(mean, zero_frac, error_rate, clipped)])),
        elapsed_s=round(time.time() - started, 2), tools=tool_use,
        **fooling_fields(chosen, row_prompts, per_row, probes, gameable),
    )


def play_episodes(snapshot: api.JobSnapshot, tok: Any, model: Any, device: str, rows: list[dict[str, Any]],
                  k: int) -> list[Any]:
    """k sampled episodes of each row (rows in order, k consecutive each), calling the job's real tools."""
    from daemon.worker.episodes import EpisodeRunner, episode_rows, hf_generate
    from daemon.worker.tool_runtime import ToolBox

    hp = snapshot.hyperparameters
    box = ToolBox(snapshot.tools)
    try:
        runner = EpisodeRunner(tok, box, hp.max_episode_steps, hp.max_completion_length, rollout_prefix="preflight")
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        generate = hf_generate(model, pad, sorted(runner.eos_ids), device, do_sample=True, temperature=hp.temperature)
        starts = [r for r in episode_rows(rows) for _ in range(k)]
        return [e for i in range(0, len(starts), 64) for e in runner.run(generate, starts[i:i + 64])]
    finally:
        box.close()


def tool_use_report(episodes: list[Any]) -> api.PreflightToolUse:
    """Tool-call rate, errors by kind, latencies and how the episodes ended."""
    from collections import Counter

    from daemon import metrics
    from daemon.worker.episodes import episode_metrics
    from daemon.worker.tool_runtime import error_kind

    m = episode_metrics(episodes)
    calls = [c for e in episodes for c in e.tool_calls]
    failed = [c.error for c in calls if c.error is not None]
    return api.PreflightToolUse(
        episodes=len(episodes), call_rate=m.get(metrics.TOOL_CALL_RATE, 0.0),
        calls_per_episode=m.get(metrics.TOOL_CALLS_PER_EPISODE, 0.0), calls=len(calls),
        error_rate=m.get(metrics.TOOL_ERROR_RATE, 0.0), errors=dict(Counter(error_kind(e) for e in failed)),
        latency_p50_ms=m.get(metrics.TOOL_LATENCY_P50_MS), latency_p95_ms=m.get(metrics.TOOL_LATENCY_P95_MS),
        stop_reasons=dict(Counter(str(e.stop_reason) for e in episodes)),
        example_errors=list(dict.fromkeys(failed))[:5])


def tools_verdict(use: api.PreflightToolUse | None) -> str | None:
    """A line on tool use when it needs attention (never calls; calls mostly fail)."""
    if use is None or not use.episodes:
        return None
    if use.calls == 0:
        return ("The base model never called a tool in pre-flight: RL can only reinforce calls it makes; "
                "check the tools reach the prompt (row `tools`) and the model knows the call format.")
    if use.error_rate > 0.5:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(use.errors.items(), key=lambda kv: -kv[1]))
        return f"Tool calls fail {use.error_rate:.0%} of the time ({kinds}); check the tools before training."
    return None


def fooling_fields(chosen: list[int], prompts: list[str], per_row: list[list[float]],
                   probes: list[api.PreflightProbe], gameable: str | None) -> dict[str, Any]:
    """The report's signal map, no-signal rows and gameability probes (issue 11)."""
    rows = signal_map(chosen, prompts, per_row)
    return {"signal_map": rows, "no_signal_rows": [r.row for r in rows if not r.signal], "probes": probes,
            "gameability_warning": gameable}


def main() -> int:
    request = json.load(sys.stdin)
    try:
        report = run(api.JobSnapshot.model_validate(request["snapshot"]), int(request["rows"]),
                     int(request["completions_per_row"]))
    except Exception as exc:  # noqa: BLE001 - the daemon turns this line into a clear API error
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(report.model_dump_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
