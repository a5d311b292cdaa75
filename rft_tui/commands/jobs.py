"""`rft-tui jobs create|list|show|cancel|pause|resume|events|metrics|checkpoints`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError

from daemon import api
from daemon import metrics as metric_keys
from daemon.client import ApiRequestError, Client, DaemonError
from daemon.text import clip
from rft_tui.commands import ids
from rft_tui.context import CliContext, pass_ctx
from rft_tui.estimate_text import estimate_rows
from rft_tui.output import (
    fmt_duration,
    fmt_float,
    fmt_time,
    handle_errors,
    json_option,
    load_grader,
    print_json,
    print_kv,
    print_table,
)
from rft_tui.tools_text import ToolsTextError, tools_from_arg

PAUSE_TIMEOUT_S = 600.0


@click.group("jobs")
def group() -> None:
    """Create, watch and control fine-tuning jobs."""


def parse_hp(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` pairs; values are JSON when they parse (numbers, true/false, lists), else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--hp")
        if key not in api.HYPERPARAMETER_NAMES:
            raise click.BadParameter(f"unknown hyperparameter {key!r}; known: {', '.join(api.HYPERPARAMETER_NAMES)}",
                                     param_hint="--hp")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def resolve_file(client: Client, ref: str | None, param_hint: str = "-t/--training-file") -> str | None:
    """A file id (or a unique prefix of one) as is; a local path is uploaded, unless the store has its bytes.

    Bytes, not the path: the daemon may run on another machine (--ssh, --url).
    """
    if ref is None:
        return None
    p = Path(ref).expanduser()
    if ids.looks_like_file_id(ref) and not p.exists():
        return ids.file_id(client, ref, param=param_hint)
    if not p.is_file():
        raise click.BadParameter(ids.not_a_file(ref), param_hint=param_hint)
    return client.add_file(str(p.resolve())).id


def job_request_options(fn: Any) -> Any:
    """The arguments `jobs create` and `jobs preflight` share."""
    for opt in reversed([
        click.option("--model", "-m", required=True, help="builtin:tiny-arith, a local model directory or a hub id."),
        click.option("--training-file", "-t", required=True, help="File id or local JSONL path."),
        click.option("--validation-file", "-v", default=None, help="File id or local JSONL path."),
        click.option("--grader", "-g", "grader_file", required=True, type=click.Path(exists=True, dir_okay=False),
                     help="Grader file: JSON, YAML or a .py python grader."),
        click.option("--hp", "hp", multiple=True, metavar="KEY=VALUE", help="Hyperparameter (repeatable)."),
        click.option("--seed", type=int, default=None),
        click.option("--suffix", default=None),
        click.option("--allow-overlap", is_flag=True, help="Allow validation rows that also occur in training."),
        click.option("--tools", "tools", default=None, metavar="FILE|JSON",
                     help="Agent RFT: how the rows' tools run, {name: {type: http, url} | {type: python, source}} "
                          "(a .json/.yaml file or inline JSON; docs/agent-rft.md)."),
    ]):
        fn = opt(fn)
    return fn


R = TypeVar("R", bound=BaseModel)
_UNION_TAGS = {"int", "float", "str", "bool", "list", "dict", "none"}


def typed_request(model: type[R], data: dict[str, Any]) -> R:
    """`data` as the API's request model; a refused field is reported as the daemon would (naming the option)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        ours = [x for x in errors if x["type"] == "value_error"] or errors  # our validators' words first
        first = ours[0]
        path = [str(p) for p in first["loc"] if re.fullmatch(r"[A-Za-z_]\w*", str(p)) and p not in _UNION_TAGS]
        path = [p for i, p in enumerate(path) if not (p in ("http", "python") and i >= 2 and path[i - 2] == "tools")]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ApiRequestError(400, api.ErrorDetail(message=message, param=".".join(path) or None)) from None


def request_fields(client: Client, model: str, training_file: str, validation_file: str | None, grader_file: str,
                   hp: tuple[str, ...], seed: int | None, suffix: str | None, allow_overlap: bool,
                   tools: str | None = None) -> dict[str, Any]:
    """What `jobs create` and `jobs preflight` send (local files uploaded first, the grader file read and checked);
    `typed_request` makes it the API's request model."""
    reinforcement: dict[str, Any] = {"grader": load_grader(grader_file, "-g/--grader"),
                                     "hyperparameters": parse_hp(hp)}
    if tools:
        try:
            reinforcement["tools"] = tools_from_arg(tools)
        except ToolsTextError as e:
            raise click.BadParameter(str(e), param_hint="--tools") from None
    return {
        "model": model,
        "training_file": resolve_file(client, training_file, "-t/--training-file"),
        "validation_file": resolve_file(client, validation_file, "-v/--validation-file"),
        "seed": seed, "suffix": suffix, "allow_overlap": allow_overlap,
        "method": {"type": "reinforcement", "reinforcement": reinforcement},
    }


def load_guardrails(value: str | None) -> dict[str, Any] | None:
    """`--guardrails`: a JSON object inline, or the path of a file holding one (docs/health.md)."""
    if value is None:
        return None
    text, where = value, "--guardrails"
    if not value.lstrip().startswith("{"):
        path = Path(value).expanduser()
        if not path.is_file():
            raise click.BadParameter(f"{value!r} is neither a JSON object nor a file", param_hint="--guardrails")
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"{where}: line {e.lineno} column {e.colno}: {e.msg}",
                                 param_hint="--guardrails") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{where}: a JSON object is expected", param_hint="--guardrails")
    return data


@group.command()
@job_request_options
@click.option("--guardrails", default=None, metavar="JSON|FILE",
              help='Alarm thresholds and actions, e.g. \'{"on_alarm": "pause"}\' (docs/health.md).')
@click.option("--cluster", default=None, metavar="NAME",
              help="Run on this configured cluster (rft-tui clusters list) instead of this machine.")
@click.option("--nodes", type=click.IntRange(min=1), default=None, help="Cluster nodes (default: the cluster's).")
@click.option("--gpus-per-node", type=click.IntRange(min=0), default=None,
              help="GPUs per cluster node (default: the cluster's; 0 runs CPU processes).")
@click.option("--force", is_flag=True, help="Create it even if the memory estimate says it clearly will not fit.")
@json_option
@pass_ctx
@handle_errors
def create(obj: CliContext, model: str, training_file: str, validation_file: str | None, grader_file: str,
           hp: tuple[str, ...], seed: int | None, suffix: str | None, allow_overlap: bool, tools: str | None,
           guardrails: str | None, cluster: str | None, nodes: int | None, gpus_per_node: int | None,
           force: bool, as_json: bool) -> None:
    """Create a reinforcement fine-tuning job (queued behind any running job, or submitted to --cluster)."""
    if cluster is None and (nodes is not None or gpus_per_node is not None):
        raise click.UsageError("--nodes and --gpus-per-node apply to cluster jobs: add --cluster NAME")
    client = obj.client()
    fields = request_fields(client, model, training_file, validation_file, grader_file, hp, seed, suffix,
                            allow_overlap, tools)
    fields["guardrails"] = load_guardrails(guardrails)
    if cluster is not None:
        fields.update(cluster=cluster, nodes=nodes, gpus_per_node=gpus_per_node)
    fields["force"] = force
    job = client.create_job(typed_request(api.JobCreateRequest, fields))
    if as_json:
        print_json(job)
        return
    where = f" on cluster {job.cluster.name}" if job.cluster else ""
    click.echo(f"Created {job.id} ({job.status.value}){where}; follow it with: rft-tui jobs events {job.id} --follow")


def _progress(job: api.FineTuningJob) -> str:
    p = job.progress
    if p.total_steps:
        return f"{p.step}/{p.total_steps}"
    return str(p.step) if p.step else "-"


def _valid(job: api.FineTuningJob) -> str:
    p = job.progress
    if p.valid_reward_base is None:
        return "-"
    return f"{p.valid_reward_base:.3f} -> {fmt_float(p.valid_reward_latest)}"


@group.command("list")
@click.option("--limit", default=20, show_default=True)
@click.option("--after", default=None, help="Job id to page after.")
@click.option("--status", default=None, help="Comma-separated statuses.")
@json_option
@pass_ctx
@handle_errors
def list_(obj: CliContext, limit: int, after: str | None, status: str | None, as_json: bool) -> None:
    """List jobs, newest first."""
    page = obj.client().list_jobs(after=after, limit=limit, status=status)
    if as_json:
        print_json(page)
        return
    # most telling first: at 80 columns the table shows up to `valid reward` (print_table drops what does not fit)
    print_table(["id", "status", "step", "train reward", "valid reward", "model", "created"],
                [(j.id, j.status.value, _progress(j), fmt_float(j.progress.train_reward_mean), _valid(j), j.model,
                  fmt_time(j.created_at)) for j in page.data])
    if page.has_more:
        click.echo(f"(more: --after {page.last_id})")


def cluster_lines(job: api.FineTuningJob) -> list[tuple[str, Any]]:
    """Where a cluster job runs: cluster, the engine's id and state, placement, storage."""
    c = job.cluster
    if c is None:
        return []
    engine = "Ray submission" if c.kind == "ray" else "Slurm job"
    per_node = f"{c.gpus_per_node} GPU(s)" if c.gpus_per_node else f"{c.processes_per_node} CPU process(es)"
    return [("cluster", f"{c.name} ({c.kind})"),
            (engine, f"{c.engine_id or '-'} ({c.engine_state or 'not submitted'})"),
            ("placement", f"{c.nodes} node(s) x {per_node}"), ("storage", c.storage_dir)]


@group.command()
@click.argument("job_id")
@click.option("--script", is_flag=True, help="Print what a cluster job is submitted as (sbatch or Ray).")
@json_option
@pass_ctx
@handle_errors
def show(obj: CliContext, job_id: str, script: bool, as_json: bool) -> None:
    """Show a job: status, files, progress, and the resolved hyperparameters."""
    client = obj.client()
    job_id = ids.job_id(client, job_id)
    if script:
        submitted = client.job_script(job_id)
        if as_json:
            print_json(submitted)
        else:
            click.echo(submitted.script, nl=not submitted.script.endswith("\n"))
        return
    job = client.get_job(job_id)
    if as_json:
        print_json(job)
        return
    p = job.progress
    print_kv([
        ("id", job.id), ("status", job.status.value), ("model", job.model),
        ("training file", job.training_file), ("validation file", job.validation_file or "-"),
        ("seed", job.seed), ("created", fmt_time(job.created_at)), ("finished", fmt_time(job.finished_at)),
        ("step", _progress(job)), ("train reward", fmt_float(p.train_reward_mean)),
        ("valid reward", _valid(job)), ("best valid reward", fmt_float(p.valid_reward_best)),
        ("elapsed", fmt_duration(p.elapsed_s)), ("eta", fmt_duration(p.eta_s)),
        ("fine-tuned model", job.fine_tuned_model or "-"),
        ("error", f"{job.error.code}: {job.error.message}" if job.error else "-"),
        *cluster_lines(job),
    ])
    if job.resolved_hyperparameters:
        click.echo("\nhyperparameters (resolved):")
        requested = (job.method.get("reinforcement") or {}).get("hyperparameters") or {}
        resolved = job.resolved_hyperparameters.model_dump(exclude={"auto_reasons"})
        print_table(["name", "value", "requested"],
                    [(k, json.dumps(v), json.dumps(requested.get(k, "auto"))) for k, v in sorted(resolved.items())])
        reasons = job.resolved_hyperparameters.auto_reasons
        if reasons:
            click.echo("\nwhy (the \"auto\" rules that read this machine and the memory estimate):")
            print_kv(sorted(reasons.items()))


def wait_for_status(client: Client, job_id: str, done: set[api.JobStatus], timeout: float) -> api.FineTuningJob:
    """The job once its status is in `done` (or terminal), or as it is when `timeout` runs out."""
    changes = JobChanges(client, job_id)
    deadline = time.monotonic() + timeout
    while True:
        job: api.FineTuningJob = client.get_job(job_id)
        left = deadline - time.monotonic()
        if job.status in done or job.status.is_terminal() or left <= 0:
            return job
        changes.wait(timeout=min(2.0, left))


def _control(obj: CliContext, job_id: str, action: str, want: set[api.JobStatus], wait: bool, timeout: float,
             as_json: bool) -> None:
    """Send pause/cancel, then report the outcome, not the status the request found (unless --no-wait)."""
    client = obj.client()
    job_id = ids.job_id(client, job_id)
    job = getattr(client, f"{action}_job")(job_id)
    if wait and job.status not in want and not job.status.is_terminal():
        job = wait_for_status(client, job_id, want, timeout)
    if as_json:
        print_json(job)
        return
    if job.status in want:
        click.echo(f"{job.id}: {job.status.value}")
        return
    if job.status.is_terminal():
        click.echo(f"{job.id}: {job.status.value} (it ended before the {action} took effect)")
        return
    waited = f"still {job.status.value} after {timeout:.0f} s" if wait else f"{job.status.value}, {action} requested"
    click.echo(f"{job.id}: {waited}; it will {action} at the next step (check: rft-tui jobs show {job.id})")
    if wait:
        raise SystemExit(1)


def wait_options(fn: Any) -> Any:
    fn = click.option("--timeout", type=float, default=PAUSE_TIMEOUT_S, show_default=True,
                      help="Seconds to wait for the outcome.")(fn)
    return click.option("--wait/--no-wait", default=True, show_default=True,
                        help="Wait until the job has stopped, or return once the request is accepted.")(fn)


@group.command()
@click.argument("job_id")
@wait_options
@json_option
@pass_ctx
@handle_errors
def cancel(obj: CliContext, job_id: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Cancel a job (SIGTERM, then SIGKILL after a grace period); prints `cancelled` once it is."""
    _control(obj, job_id, "cancel", {api.JobStatus.cancelled}, wait, timeout, as_json)


@group.command()
@click.argument("job_id")
@wait_options
@json_option
@pass_ctx
@handle_errors
def pause(obj: CliContext, job_id: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Pause a job: checkpoint, then stop; resume continues from there. Prints `paused` once it is."""
    _control(obj, job_id, "pause", {api.JobStatus.paused}, wait, timeout, as_json)


@group.command()
@click.argument("job_id")
@json_option
@pass_ctx
@handle_errors
def resume(obj: CliContext, job_id: str, as_json: bool) -> None:
    """Resume a paused job from its last checkpoint (queued, then running)."""
    _control(obj, job_id, "resume", {api.JobStatus.queued, api.JobStatus.running, api.JobStatus.validating_files},
             False, 0.0, as_json)


def _print_event(e: api.JobEvent) -> None:
    click.echo(f"{fmt_time(e.created_at)}  {e.level:5}  {e.message}")


@group.command()
@click.argument("job_id")
@click.option("--limit", default=50, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until the job ends.")
@json_option
@pass_ctx
@handle_errors
def events(obj: CliContext, job_id: str, limit: int, follow: bool, as_json: bool) -> None:
    """Print a job's events, oldest first."""
    client = obj.client()
    job_id = ids.job_id(client, job_id)
    page = client.list_events(job_id, limit=limit)
    evs = list(reversed(page.data))
    for e in evs:
        print_json(e) if as_json else _print_event(e)
    if not follow:
        return
    last = evs[-1].id if evs else None
    changes = JobChanges(client, job_id)
    while True:
        new = client.list_events(job_id, after=last, limit=1000, order="asc").data if last else \
            list(reversed(client.list_events(job_id, limit=1000).data))
        for e in new:
            print_json(e) if as_json else _print_event(e)
            last = e.id
        job = client.get_job(job_id)
        if job.status.is_terminal() or job.status is api.JobStatus.paused:
            if not new:
                return
            continue
        changes.wait()


class JobChanges:
    """One stream subscription for a job: `wait()` returns when the daemon announces something about it.

    A single background thread holds the stream for the whole follow, so waiting costs no new connection or
    thread per round; a change that arrives between two waits is not lost. If the stream drops, `wait` falls
    back to its timeout (plain polling).
    """

    def __init__(self, client: Client, job_id: str) -> None:
        import threading

        self._changed = threading.Event()
        self._client = client
        self._job_id = job_id
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        try:
            for ev in self._client.stream(job_id=self._job_id):
                if ev.type is not api.StreamEventType.heartbeat:
                    self._changed.set()
        except DaemonError:
            pass

    def wait(self, timeout: float = 2.0) -> None:
        self._changed.wait(timeout)
        self._changed.clear()


@group.command()
@click.argument("job_id")
@click.option("--after-step", type=int, default=None)
@click.option("--keys", default=",".join(metric_keys.DEFAULT_COLUMNS), show_default=True,
              help="Comma-separated metric keys for the table (docs/metrics.md lists them; --json prints all).")
@json_option
@pass_ctx
@handle_errors
def metrics(obj: CliContext, job_id: str, after_step: int | None, keys: str, as_json: bool) -> None:
    """Print a job's per-step metrics, each formatted as the metric registry says (lr as 1.00e-05, shares as %)."""
    client = obj.client()
    page = client.metrics(ids.job_id(client, job_id), after_step=after_step)
    if as_json:
        print_json(page)
        return
    names = [k.strip() for k in keys.split(",") if k.strip()]
    recorded = {k for m in page.data for k in m.values}
    unknown = [k for k in names if k not in recorded and metric_keys.lookup(k) is None]
    if unknown:
        raise click.BadParameter(f"unknown metric {', '.join(map(repr, unknown))}; this job records: "
                                 f"{', '.join(sorted(recorded)) or 'nothing yet'}", param_hint="--keys")
    print_table(["step", *[metric_keys.label(k) for k in names]],
                [(m.step, *[metric_keys.format_value(k, m.values.get(k)) for k in names]) for m in page.data])


@group.command()
@click.argument("job_id")
@json_option
@pass_ctx
@handle_errors
def checkpoints(obj: CliContext, job_id: str, as_json: bool) -> None:
    """List a job's kept checkpoints with their metrics."""
    client = obj.client()
    page = client.list_checkpoints(ids.job_id(client, job_id))
    if as_json:
        print_json(page)
        return
    print_table(["id", "step", "valid reward", "train reward", "created", "path"],
                [(c.id, c.step_number, fmt_float(c.metrics.valid_reward_mean), fmt_float(c.metrics.train_reward_mean),
                  fmt_time(c.created_at), c.path) for c in page.data])


@group.command()
@click.argument("job_id")
@json_option
@pass_ctx
@handle_errors
def alarms(obj: CliContext, job_id: str, as_json: bool) -> None:
    """List the alarms a job raised (docs/health.md): when, at which step, the value against its bound."""
    client = obj.client()
    page = client.list_alarms(ids.job_id(client, job_id))
    if as_json:
        print_json(page)
        return
    if not page.data:
        click.echo("No alarms.")
        return
    print_table(["step", "alarm", "severity", "value", "bound", "action", "state", "message"],
                [(a.step if a.step is not None else "-", a.name + (f" ({a.grader})" if a.grader else ""), a.severity,
                  fmt_float(a.value), fmt_float(a.threshold), a.action,
                  "open" if a.cleared_at is None else f"cleared @{a.cleared_step}",
                  clip(a.message, 60, one_line=True)) for a in page.data])


# ------------------------------------------------------------------------------------------ training extras


@group.command("export")
@click.argument("job_id")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--checkpoint", "checkpoint", default="best", show_default=True, metavar="best|latest|STEP",
              help="Which kept checkpoint: the best by validation reward, the latest, or the one at step STEP.")
@click.option("--merged", is_flag=True, help="Also write the base model with the adapter merged in (OUT_DIR/merged).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty OUT_DIR.")
@json_option
@pass_ctx
@handle_errors
def export(obj: CliContext, job_id: str, out_dir: str, checkpoint: str, merged: bool, overwrite: bool,
           as_json: bool) -> None:
    """Export a job's checkpoint as a loadable LoRA adapter (OUT_DIR/adapter), optionally merged."""
    if obj.remote and not Path(out_dir).is_absolute():
        raise click.BadParameter(f"{out_dir}: with --ssh/--url the daemon writes OUT_DIR on its own machine; give an "
                                 "absolute path there", param_hint="OUT_DIR")
    client = obj.client()
    job_id = ids.job_id(client, job_id)
    result = client.export_job(job_id, api.JobExportRequest(
        output_dir=out_dir if obj.remote else str(Path(out_dir).expanduser().resolve()), checkpoint=checkpoint,
        merged=merged, overwrite=overwrite))
    if as_json:
        print_json(result)
        return
    click.echo(f"Exported {result.checkpoint} (step {result.step}: {result.chosen_because or checkpoint}) of {job_id}")
    click.echo(f"  adapter: {result.adapter_dir}  (base model: {result.base_model})")
    if result.merged_dir:
        click.echo(f"  merged:  {result.merged_dir}")
    if result.model_card:
        click.echo(f"  model card: {result.model_card}")
    if obj.remote:
        click.echo(f"  (on the daemon's machine: {obj.label})")


@group.command("preflight")
@job_request_options
@click.option("--rows", default=16, show_default=True, help="Training rows to sample.")
@click.option("--completions", "completions_per_row", default=8, show_default=True, help="Completions per row.")
@click.option("--estimate-only", is_flag=True, help="Only the memory-fit estimate (from the config; no sampling).")
@json_option
@pass_ctx
@handle_errors
def preflight(obj: CliContext, model: str, training_file: str, validation_file: str | None, grader_file: str,
              hp: tuple[str, ...], seed: int | None, suffix: str | None, allow_overlap: bool, tools: str | None,
              rows: int, completions_per_row: int, estimate_only: bool, as_json: bool) -> None:
    """Sample the base model on training rows and grade it: is there a learning signal? Will it fit in memory?"""
    client = obj.client()
    fields = request_fields(client, model, training_file, validation_file, grader_file, hp, seed, suffix, allow_overlap,
                            tools)
    report = client.preflight(typed_request(api.PreflightRequest, {
        **fields, "rows": rows, "completions_per_row": completions_per_row, "estimate_only": estimate_only}))
    if as_json:
        print_json(report)
        return
    if report.memory_estimate is not None:
        click.echo("memory estimate (per device):")
        print_kv(estimate_rows(report.memory_estimate))
    elif report.memory_estimate_error:
        click.echo(f"memory estimate: none ({report.memory_estimate_error})")
    if report.estimate_only:
        return
    click.echo("")
    print_kv([
        ("model", report.model), ("rows x completions", f"{report.rows} x {report.completions_per_row}"),
        ("reward mean", f"{fmt_float(report.reward_mean)} (std {fmt_float(report.reward_std)})"),
        ("no-signal rows", f"{report.zero_signal_rows} ({report.zero_signal_fraction or 0:.0%})"),
        ("grader errors", f"{report.grader_error_rate:.1%} {report.grader_errors or ''}".strip()),
        ("longest prompt+completion", f"{report.longest_total_tokens} tokens (prompt {report.longest_prompt_tokens}, "
                                      f"completion {report.longest_completion_tokens})"),
        ("elapsed", f"{report.elapsed_s:.1f} s"),
    ])
    click.echo("\nreward histogram:")
    peak = max((c for _, c in report.reward_histogram), default=0) or 1
    for lo, count in report.reward_histogram:
        click.echo(f"  {lo:.1f}-{lo + 0.1:.1f} {'#' * round(30 * count / peak):30} {count}")
    print_fooling(report)
    print_tool_use(report.tools)
    click.echo(f"\nverdict: {report.verdict}")


def print_tool_use(use: api.PreflightToolUse | None) -> None:
    """Agent RFT: how the base model used its tools in pre-flight's episodes."""
    if use is None:
        return
    click.echo("\ntools:")
    print_kv([
        ("episodes", use.episodes), ("tool-call rate", f"{use.call_rate:.0%} of episodes"),
        ("calls per episode", f"{use.calls_per_episode:.2f} ({use.calls} calls)"),
        ("tool errors", f"{use.error_rate:.1%} {use.errors or ''}".strip()),
        ("latency p50 / p95", f"{fmt_float(use.latency_p50_ms)} / {fmt_float(use.latency_p95_ms)} ms"),
        ("episodes ended by", ", ".join(f"{k} {n}" for k, n in sorted(use.stop_reasons.items()))),
    ])
    for error in use.example_errors[:3]:
        click.echo(f"  e.g. {clip(error, 100, one_line=True)}")


def print_fooling(report: api.PreflightReport) -> None:
    """Pre-flight's signal map (rows that give no signal) and the gameability probes (issue 11)."""
    if report.signal_map:
        click.echo(f"\nno-signal rows: {len(report.no_signal_rows)} of {len(report.signal_map)} "
                   f"({report.zero_signal_fraction:.0%})" + (f": rows {report.no_signal_rows}"
                                                             if report.no_signal_rows else ""))
        print_table(["row", "prompt", "mean", "spread", "rewards"],
                    [(r.row, clip(r.prompt, 40, one_line=True), f"{r.mean:.2f}", f"{r.spread:.2f}",
                      " ".join(f"{x:.2f}" for x in r.rewards[:8]) + (" …" if len(r.rewards) > 8 else ""))
                     for r in report.signal_map], title="signal per row (reward over its completions)")
    if report.probes:
        print_table(["probe", "mean reward", "full credit", "vs base", "example"],
                    [(p.description, f"{p.reward_mean:.3f}", p.rows_full_credit,
                      "REACHES BASE" if p.reaches_base else "below", clip(p.example, 30, one_line=True))
                     for p in report.probes],
                    title=f"answers that should score 0 (base model mean {report.reward_mean:.3f})")
    if report.gameability_warning:
        click.echo(f"\nWARNING: {report.gameability_warning}")


@group.command("validation")
@click.argument("job_id")
@click.option("--step", type=int, default=None, help="Validation step (default: the latest; 0 = base model).")
@click.option("--base-step", type=click.IntRange(min=0), default=0, show_default=True,
              help="The step compared against (0 = the base model).")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Show the base step's output beside it and the change's statistics (with --json: `compare`).")
@click.option("--limit", default=20, show_default=True, help="Rows to print.")
@click.option("--rescoring", default=None, metavar="NAME", help="Show a named re-scoring's rewards (jobs rescore).")
@json_option
@pass_ctx
@handle_errors
def validation(obj: CliContext, job_id: str, step: int | None, base_step: int, compare: bool, limit: int,
               rescoring: str | None, as_json: bool) -> None:
    """Validation rows at a step beside the base model (step 0), with the change's 95 % CI and sign-test p.

    With --json: the page (`step`, `steps`, `data`, `summary`) and, unless --no-compare, `compare`: the
    statistics the text output ends with (GET .../validation/compare; null when the step is the base step).
    """
    client = obj.client()
    job_id = ids.job_id(client, job_id)
    page = client.validation(job_id, step=step, rescoring=rescoring)
    stats = None
    # a job validated without its base model compares with nothing unless --base-step names a step (then the
    # daemon's 404 says which steps exist)
    if compare and page.step is not None and page.step != base_step and (base_step in page.steps or base_step):
        stats = client.validation_compare(job_id, step=page.step, base_step=base_step, rescoring=rescoring)
    if as_json:
        print_json(page if not compare else {**page.model_dump(mode="json"), "compare": stats})
        return
    if page.step is None:
        click.echo(f"{job_id} has no validation yet.")
        return
    base = {r.row_index: r for r in client.validation(job_id, step=base_step, rescoring=rescoring).data} \
        if stats is not None else {}
    base_label = "base" if base_step == 0 else f"step {base_step}"
    headers = ["row", "prompt", "reference"] + ([base_label, f"{base_label} reward"] if base else []) + \
        [f"step {page.step}", "reward"]
    rows = []
    for r in page.data[:limit]:
        b = base.get(r.row_index)
        base_cells = [clip(b.output, 30, one_line=True), fmt_float(b.reward)] if b else ["-", "-"]
        rows.append([r.row_index, clip(r.prompt, 40, one_line=True), r.reference or "-"]
                    + (base_cells if base else [])
                    + [clip(r.output, 30, one_line=True), fmt_float(r.reward)])
    print_table(headers, rows)
    base_mean = sum(b.reward for b in base.values()) / len(base) if base else None
    click.echo(f"steps: {page.steps}; mean reward at step {page.step}: {fmt_float(page.summary.get('reward_mean'))}"
               + (f" ({base_label} {fmt_float(base_mean)})" if base_mean is not None else ""))
    if stats is not None:
        print_compare(stats)


def print_compare(c: api.ValidationCompare) -> None:
    """Base vs checkpoint, overall and per grader: mean change, 95 % CI, sign-test p, rows better/worse."""
    what = f"step {c.step} vs step {c.base_step}" + (f" (re-scoring {c.rescoring})" if c.rescoring else "")
    click.echo(f"{what} over {c.n} rows: {c.headline()}")
    if len(c.per_grader) > 1:  # one sub-grader is the overall reward again
        print_table(["grader", "base", f"step {c.step}", "change", "95% CI", "p", "better", "worse"],
                    [(name, fmt_float(g.base_mean), fmt_float(g.mean),
                      "-" if g.mean_diff is None else f"{g.mean_diff:+.3f}",
                      "-" if g.ci95 is None else f"[{g.ci95[0]:.2f}, {g.ci95[1]:.2f}]", api.format_p_value(g.p_value),
                      g.wins, g.losses) for name, g in c.per_grader.items()])
    click.echo(f"(95% CI: paired bootstrap over rows, {c.resamples} resamples, seed {c.seed}; p: exact two-sided "
               "sign test over rows that changed)")


@group.command("rescore")
@click.argument("job_id")
@click.option("--grader", "-g", "grader_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Grader file (.json, .yaml or .py) to grade the stored outputs with.")
@click.option("--name", default=None, help="Name of the re-scoring (default: the grader's name, made unique).")
@click.option("--step", "steps", type=int, multiple=True, help="Validation step to re-score (repeatable; default all).")
@click.option("--samples", is_flag=True, help="Also re-grade the stored training samples.")
@json_option
@pass_ctx
@handle_errors
def rescore(obj: CliContext, job_id: str, grader_file: str, name: str | None, steps: tuple[int, ...],
            samples: bool, as_json: bool) -> None:
    """Grade a job's stored outputs again with another grader, without retraining (originals are kept)."""
    client = obj.client()
    job_id = ids.job_id(client, job_id)
    result = client.rescore(job_id, typed_request(api.RescoreRequest, {
        "grader": load_grader(grader_file, "-g/--grader"), "name": name, "steps": list(steps) or None,
        "samples": samples}))
    if as_json:
        print_json(result)
        return
    click.echo(f"Re-scoring {result.name!r} of {job_id} ({result.elapsed_s:.1f} s; the original scores are unchanged)")
    print_table(["step", "rows", "original", "re-scored", "errors"],
                [(s.step, s.rows, fmt_float(s.original_mean), fmt_float(s.mean), s.rows_with_errors)
                 for s in result.steps])
    if result.samples is not None:
        sm = result.samples
        click.echo(f"training samples: {sm.samples}: original {fmt_float(sm.original_mean)} -> re-scored "
                   f"{fmt_float(sm.mean)}" + (f" ({sm.without_item} without their item)" if sm.without_item else ""))
    if result.compare is not None:
        print_compare(result.compare)
    click.echo(f"rows: rft-tui jobs validation {job_id} --rescoring {result.name}")


@group.command("samples")
@click.argument("job_id")
@click.option("--after-step", type=int, default=None)
@click.option("--limit", default=20, show_default=True)
@json_option
@pass_ctx
@handle_errors
def samples(obj: CliContext, job_id: str, after_step: int | None, limit: int, as_json: bool) -> None:
    """Recent training completions with their rewards and sub-rewards."""
    client = obj.client()
    page = client.samples(ids.job_id(client, job_id), after_step=after_step, limit=limit)
    if as_json:
        print_json(page)
        return
    print_table(["step", "prompt", "completion", "reward", "sub-rewards"],
                [(s.step, clip(s.prompt, 40, one_line=True), clip(s.completion, 40, one_line=True),
                  fmt_float(s.reward),
                  " ".join(f"{k}={v:.2f}" for k, v in s.sub_rewards.items() if v is not None))
                 for s in page.data])
