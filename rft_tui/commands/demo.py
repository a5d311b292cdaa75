"""`rft-tui demo`: a built-in model learns with GRPO + LoRA, live, in a few CPU minutes.

`--task arith` (default): builds `builtin:tiny-arith` if needed (a subprocess with a progress bar: the CLI
never imports torch), starts the daemon if needed, imports `examples/arithmetic/{train,valid}.jsonl`, starts
a job with `examples/arithmetic/grader.json` (exact match + partial credit) and shows it: in the TUI, or with
`--no-tui` as progress lines ending with the base-vs-final validation table.

`--task tools` (agent RFT): `builtin:tiny-tools` on `examples/tools-arith/job.json` -- 3-digit sums that the
model mostly guesses, and an exact `add` tool served over HTTP on 127.0.0.1 by `rft_tui.tool_server`, which
the demo starts on a free port and which stops when the job ends. The grader only checks the answer; the
model learns to call the tool (the tool-call rate rises with the reward).
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from daemon import api, metrics
from daemon.client import Client
from rft_tui.commands.jobs import JobChanges
from rft_tui.context import CliContext, pass_ctx
from rft_tui.output import fmt_duration, fmt_float, handle_errors, json_option, print_json, print_table

EXAMPLES_ROOT = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = EXAMPLES_ROOT / "arithmetic"
TOOLS_EXAMPLES = EXAMPLES_ROOT / "tools-arith"

# Settings that learn within the demo's budget on a 2-core CPU (see docs/hyperparameters.md).
DEMO_HYPERPARAMETERS: dict[str, Any] = {
    "batch_size": 16, "num_generations": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32, "beta": 0.0,
    "max_steps": 400, "eval_interval": 50, "eval_samples": 200, "temperature": 1.0,
}
PRINT_EVERY = 10  # progress lines: one per 10 steps


@dataclass(frozen=True)
class DemoTask:
    """What one `--task` trains: the built-in model, and a line saying what the job is."""

    model: str
    blurb: str


TASKS: dict[str, DemoTask] = {
    "arith": DemoTask("builtin:tiny-arith", "examples/arithmetic (exact match + partial credit)"),
    "tools": DemoTask("builtin:tiny-tools", "examples/tools-arith with an http `add` tool (the answer is graded, "
                                            "not the tool use)"),
}


def build_model(obj: CliContext, quiet: bool, model: str = "builtin:tiny-arith") -> None:
    """Build the built-in model in a subprocess (its progress bar goes to our stderr)."""
    if obj.socket or obj.remote:
        return  # that daemon builds it on its own machine when the job starts
    cmd = [sys.executable, "-m", "daemon.models", "--home", str(obj.paths.home), "--model", model]
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


class ToolServer:
    """The `add` tool's process (`python -m rft_tui.tool_server`): started before the job (its URL goes into the
    job), told the job id after, and gone when that job ends -- or stopped by the demo, whichever is first."""

    START_TIMEOUT_S = 30.0

    def __init__(self, obj: CliContext) -> None:
        cmd = [sys.executable, "-m", "rft_tui.tool_server", "--home", str(obj.paths.home)]
        if obj.socket:
            cmd += ["--socket", obj.socket]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)  # a Ctrl+C in the TUI is not meant for it
        self.url = f"http://127.0.0.1:{self._port()}/add"

    def _port(self) -> int:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.START_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            raise click.ClickException(f"the demo's add tool did not start (python -m rft_tui.tool_server said "
                                       f"{line.strip()!r})")
        return int(line.split()[1])

    def serve_job(self, job_id: str | None) -> None:
        """Hand over the job id (None: there is no job, so the server exits)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{job_id or ''}\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_tools_job(client: Client, max_steps: int | None, seed: int, tool_url: str) -> api.FineTuningJob:
    """The job in examples/tools-arith/job.json, its files uploaded and its `add` tool at `tool_url`."""
    spec_path = TOOLS_EXAMPLES / "job.json"
    if not spec_path.is_file():
        raise click.ClickException(f"demo file missing: {spec_path}")
    spec = json.loads(spec_path.read_text())
    for key in ("training_file", "validation_file"):
        path = TOOLS_EXAMPLES / spec[key]
        if not path.is_file():
            raise click.ClickException(f"demo file missing: {path} ({spec_path}: {key})")
        spec[key] = client.add_file(str(path)).id
    rft = spec["method"]["reinforcement"]
    rft["tools"]["add"]["url"] = tool_url
    hp = rft["hyperparameters"]
    if max_steps:
        hp["max_steps"] = max_steps
        hp["eval_interval"] = max(1, min(hp["eval_interval"], max_steps // 2))
    spec["seed"] = seed
    return client.create_job(api.JobCreateRequest.model_validate(spec))


def tool_call_rate(page: api.ValidationPage | None) -> float | None:
    """Share of a validation step's episodes that called a tool (None without episodes)."""
    return page.summary.get("tool_call_rate") if page else None


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
                rate = m.values.get(metrics.TOOL_CALL_RATE)
                tools = f"  tool calls {rate:.0%} of episodes" if isinstance(rate, (int, float)) else ""
                click.echo(f"step {m.step:>4}/{job.progress.total_steps or '?'}  train reward "
                           f"{reward}{tools}  ({fmt_duration(time.monotonic() - started)})")
        steps = client.validation(job_id).steps if job.progress.valid_reward_latest is not None else []
        for s in steps:
            if s not in seen_valid:
                seen_valid.add(s)
                v = client.validation(job_id, step=s)
                if not as_json:
                    label = "base model" if s == 0 else f"step {s}"
                    rate = tool_call_rate(v)
                    click.echo(f"validation ({label}): mean reward {fmt_float(v.summary.get('reward_mean'))}, "
                               f"exact {fmt_float(v.summary.get('pass_rate'))}"
                               + (f", tool calls {rate:.0%} of episodes" if rate is not None else ""))
        if job.status.is_terminal() or job.status is api.JobStatus.paused:
            return job
        changes.wait(timeout=2.0)


def summary(client: Client, job: api.FineTuningJob) -> dict[str, Any]:
    val = client.validation(job.id)
    steps = val.steps
    base = client.validation(job.id, step=0) if 0 in steps else None
    final = val if steps and steps[-1] != 0 else None
    ckpts = client.list_checkpoints(job.id).data
    compare = client.validation_compare(job.id, step=final.step) if base and final and final.step else None
    return {"job": job.id, "status": job.status.value, "base": base, "final": final, "checkpoints": ckpts,
            "base_mean": base.summary.get("reward_mean") if base else None,
            "final_mean": final.summary.get("reward_mean") if final else None,
            "base_tool_call_rate": tool_call_rate(base), "final_tool_call_rate": tool_call_rate(final),
            "compare": compare}


@click.command("demo")
@click.option("--task", type=click.Choice(sorted(TASKS)), default="arith", show_default=True,
              help="arith: 2-digit addition; tools: agent RFT, 3-digit addition with an http `add` tool.")
@click.option("--no-tui", is_flag=True, help="Print progress lines instead of opening the TUI.")
@click.option("--max-steps", type=int, default=None,
              help=f"Training steps (default {DEMO_HYPERPARAMETERS['max_steps']}; tools: the job.json's).")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@pass_ctx
@handle_errors
def command(obj: CliContext, task: str, no_tui: bool, max_steps: int | None, seed: int, as_json: bool) -> None:
    """Watch a built-in model learn with GRPO + LoRA: 2-digit addition, or (--task tools) calling an add tool."""
    demo = TASKS[task]
    if task == "tools" and obj.remote:
        raise click.ClickException("the tools demo serves its add tool on this machine's 127.0.0.1, where a remote "
                                   "daemon's worker cannot reach it: run `rft-tui demo --task tools` on the daemon's "
                                   "machine")
    tui = not no_tui and not as_json and sys.stdout.isatty()
    if not no_tui and not as_json and not tui:
        click.echo("rft-tui demo: output is not a terminal, so no TUI: printing progress lines instead "
                   "(--no-tui says so explicitly; run it in a terminal to watch it live).", err=True)
    if not as_json:
        click.echo(f"rft-tui demo: building the built-in model ({demo.model}) if needed ...", err=True)
    build_model(obj, quiet=as_json, model=demo.model)
    client = obj.client()
    server = ToolServer(obj) if task == "tools" else None
    try:
        if server is not None:
            job = start_tools_job(client, max_steps, seed, server.url)
            server.serve_job(job.id)
        else:
            job = start_demo_job(client, max_steps, seed)
    except BaseException:
        if server is not None:
            server.serve_job(None)
            server.stop()
        raise
    if not as_json:
        click.echo(f"Started {job.id}: {demo.model} on {demo.blurb}"
                   + (f"; add tool at {server.url}" if server else ""))
    if tui:
        from rft_tui.launch import launch_tui

        launch_tui(obj, open_job=job.id)
        if server is not None:
            if client.get_job(job.id).status.is_terminal():
                server.stop()
            else:
                click.echo(f"{job.id} goes on; its add tool (pid {server.proc.pid}) serves until the job ends.")
        return
    try:
        job = follow(client, job.id, as_json)
    finally:
        if server is not None:
            server.stop()
    result = summary(client, job)
    report(job, result, as_json)


def report(job: api.FineTuningJob, result: dict[str, Any], as_json: bool) -> None:
    """The end of a followed demo: base vs final validation (and tool-call rates), the checkpoints."""
    if as_json:
        compare = result["compare"]
        print_json({k: v for k, v in result.items() if k not in ("base", "final", "compare")} |
                   {"valid_reward_base": result["base_mean"], "valid_reward_final": result["final_mean"],
                    "compare": compare.model_dump(mode="json") if compare else None})
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
        if result["compare"] is not None:
            print_demo_compare(result["compare"])
        if result["base_tool_call_rate"] is not None and result["final_tool_call_rate"] is not None:
            click.echo(f"tool-call rate (validation episodes that called add): base "
                       f"{result['base_tool_call_rate']:.0%} -> final {result['final_tool_call_rate']:.0%}")
    click.echo(f"job {job.id}: {job.status.value}" + (f" ({job.error.message})" if job.error else ""))
    for ck in result["checkpoints"]:
        click.echo(f"checkpoint step {ck.step_number}: valid reward {fmt_float(ck.metrics.valid_reward_mean)}  "
                   f"{ck.path}")
    if result["checkpoints"]:
        click.echo(f"export one with: rft-tui jobs export {job.id} OUT_DIR [--checkpoint STEP] [--merged]")


def print_demo_compare(c: api.ValidationCompare) -> None:
    """The change from the base model with its 95 % interval and sign-test p, overall and per sub-grader."""
    click.echo(f"change vs base: {c.headline()}  (95% CI: paired bootstrap over the {c.n} rows; "
               "p: exact sign test over the rows that changed)")
    for name, g in c.per_grader.items() if len(c.per_grader) > 1 else ():
        click.echo(f"  {name}: {fmt_float(g.base_mean)} -> {fmt_float(g.mean)}  {g.headline()}")
