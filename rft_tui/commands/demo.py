"""`rft-tui demo`: the built-in model learns 2-digit addition with GRPO + LoRA, live, in a few CPU minutes.

Builds `builtin:tiny-arith` if needed (a subprocess with a progress bar: the CLI never imports torch),
starts the daemon if needed, imports `examples/arithmetic/{train,valid}.jsonl`, starts a job with
`examples/arithmetic/grader.json` (exact match + partial credit) and shows it: in the TUI, or with
`--no-tui` as progress lines ending with the base-vs-final validation table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from daemon import api, metrics
from daemon.client import Client
from rft_tui.commands.jobs import JobChanges
from rft_tui.context import CliContext, pass_ctx
from rft_tui.output import fmt_duration, fmt_float, handle_errors, json_option, print_json, print_table

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "arithmetic"

# Settings that learn within the demo's budget on a 2-core CPU (see docs/hyperparameters.md).
DEMO_HYPERPARAMETERS: dict[str, Any] = {
    "batch_size": 16, "num_generations": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32, "beta": 0.0,
    "max_steps": 400, "eval_interval": 50, "eval_samples": 200, "temperature": 1.0,
}
PRINT_EVERY = 10  # progress lines: one per 10 steps


def build_model(obj: CliContext, quiet: bool) -> None:
    """Build the built-in model in a subprocess (its progress bar goes to our stderr)."""
    if obj.socket or obj.remote:
        return  # that daemon builds it on its own machine when the job starts
    cmd = [sys.executable, "-m", "daemon.models", "--home", str(obj.paths.home)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None, text=True)
    if proc.returncode != 0:
        raise click.ClickException("building the built-in model failed (run `python -m daemon.models` to see why)")


def start_demo_job(client: Client, max_steps: int | None, seed: int) -> api.FineTuningJob:
    for name in ("train.jsonl", "valid.jsonl", "grader.json"):
        if not (EXAMPLES / name).is_file():
            raise click.ClickException(f"demo file missing: {EXAMPLES / name}")
    train = client.add_file(str(EXAMPLES / "train.jsonl")).id  # bytes, not paths: the daemon may be remote
    valid = client.add_file(str(EXAMPLES / "valid.jsonl")).id
    grader = json.loads((EXAMPLES / "grader.json").read_text())
    hp = dict(DEMO_HYPERPARAMETERS)
    if max_steps:
        hp["max_steps"] = max_steps
        hp["eval_interval"] = max(1, min(hp["eval_interval"], max_steps // 2))
    return client.create_job(api.JobCreateRequest(
        model="builtin:tiny-arith", training_file=train, validation_file=valid, seed=seed, suffix="demo",
        method=api.JobMethod(reinforcement=api.ReinforcementMethod(
            grader=grader, hyperparameters=api.ReinforcementHyperparameters.model_validate(hp)))))


def follow(client: Client, job_id: str, as_json: bool) -> api.FineTuningJob:
    """Print a line per new step batch and per validation until the job ends."""
    last_step = 0
    seen_valid: set[int] = set()
    started = time.monotonic()
    changes = JobChanges(client, job_id)
    while True:
        job = client.get_job(job_id)
        page = client.metrics(job_id, after_step=last_step)
        if page.data:
            m = page.data[-1]
            printed = last_step // PRINT_EVERY != m.step // PRINT_EVERY or m.step == job.progress.total_steps
            last_step = m.step
            if not as_json and printed:
                reward = metrics.format_value(metrics.TRAIN_REWARD, m.values.get(metrics.TRAIN_REWARD))
                click.echo(f"step {m.step:>4}/{job.progress.total_steps or '?'}  train reward "
                           f"{reward}  ({fmt_duration(time.monotonic() - started)})")
        steps = client.validation(job_id).steps if job.progress.valid_reward_latest is not None else []
        for s in steps:
            if s not in seen_valid:
                seen_valid.add(s)
                v = client.validation(job_id, step=s)
                if not as_json:
                    label = "base model" if s == 0 else f"step {s}"
                    click.echo(f"validation ({label}): mean reward {fmt_float(v.summary.get('reward_mean'))}, "
                               f"exact {fmt_float(v.summary.get('pass_rate'))}")
        if job.status.is_terminal() or job.status is api.JobStatus.paused:
            return job
        changes.wait(timeout=2.0)


def summary(client: Client, job: api.FineTuningJob) -> dict[str, Any]:
    val = client.validation(job.id)
    steps = val.steps
    base = client.validation(job.id, step=0) if 0 in steps else None
    final = val if steps and steps[-1] != 0 else None
    ckpts = client.list_checkpoints(job.id).data
    return {"job": job.id, "status": job.status.value, "base": base, "final": final, "checkpoints": ckpts,
            "base_mean": base.summary.get("reward_mean") if base else None,
            "final_mean": final.summary.get("reward_mean") if final else None}


@click.command("demo")
@click.option("--no-tui", is_flag=True, help="Print progress lines instead of opening the TUI.")
@click.option("--max-steps", type=int, default=None,
              help=f"Training steps (default {DEMO_HYPERPARAMETERS['max_steps']}).")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@pass_ctx
@handle_errors
def command(obj: CliContext, no_tui: bool, max_steps: int | None, seed: int, as_json: bool) -> None:
    """Teach the built-in model 2-digit addition with GRPO + LoRA and watch it learn."""
    tui = not no_tui and not as_json and sys.stdout.isatty()
    if not no_tui and not as_json and not tui:
        click.echo("rft-tui demo: output is not a terminal, so no TUI: printing progress lines instead "
                   "(--no-tui says so explicitly; run it in a terminal to watch it live).", err=True)
    if not as_json:
        click.echo("rft-tui demo: building the built-in model if needed ...", err=True)
    build_model(obj, quiet=as_json)
    client = obj.client()
    job = start_demo_job(client, max_steps, seed)
    if not as_json:
        click.echo(f"Started {job.id}: builtin:tiny-arith on examples/arithmetic (exact match + partial credit)")
    if tui:
        from rft_tui.launch import launch_tui

        launch_tui(obj, open_job=job.id)
        return
    job = follow(client, job.id, as_json)
    result = summary(client, job)
    if as_json:
        print_json({k: v for k, v in result.items() if k not in ("base", "final")} |
                   {"valid_reward_base": result["base_mean"], "valid_reward_final": result["final_mean"]})
        return
    base, final = result["base"], result["final"]
    if base and final:
        by_row = {r.row_index: r for r in base.data}
        rows = [(r.prompt, r.reference or "-", by_row[r.row_index].output if r.row_index in by_row else "-",
                 fmt_float(by_row[r.row_index].reward) if r.row_index in by_row else "-", r.output, fmt_float(r.reward))
                for r in final.data[:8]]
        print_table(["prompt", "answer", "base", "reward", f"step {final.step}", "reward"], rows,
                    title="Validation: base model vs final")
        click.echo(f"mean validation reward: base {fmt_float(result['base_mean'])} -> final "
                   f"{fmt_float(result['final_mean'])} (exact match {fmt_float(base.summary.get('pass_rate'))} -> "
                   f"{fmt_float(final.summary.get('pass_rate'))}) over {len(final.data)} rows")
    click.echo(f"job {job.id}: {job.status.value}" + (f" ({job.error.message})" if job.error else ""))
    for ck in result["checkpoints"]:
        click.echo(f"checkpoint step {ck.step_number}: valid reward {fmt_float(ck.metrics.valid_reward_mean)}  "
                   f"{ck.path}")
    if result["checkpoints"]:
        click.echo(f"export one with: rft-tui jobs export {job.id} OUT_DIR [--checkpoint STEP] [--merged]")
