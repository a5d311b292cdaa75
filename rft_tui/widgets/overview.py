"""A job's overview: what it trains on (the frozen spec), where it is, and its resolved hyperparameters."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import DataTable

from daemon import api
from rft_tui.widgets import fmt


def _grader_label(grader: dict[str, Any] | None) -> str:
    if not grader:
        return "-"
    name = grader.get("name") or "(unnamed)"
    kind = grader.get("type", "?")
    subs = grader.get("graders")
    extra = f" [{', '.join(subs)}]" if isinstance(subs, dict) else ""
    return f"{name} ({kind}){extra}"


def overview(job: api.FineTuningJob, now: float, tool_use: Text | None = None) -> Table:
    """Two columns of `label  value`: status and timings, then the spec, then any error; `tool_use` (agent RFT:
    how often episodes call tools, train and validation) under the rewards."""
    snap = job.snapshot
    elapsed, eta = fmt.elapsed_and_eta(job, now)
    p = job.progress
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("Job", job.id),
        ("Status", fmt.status_text(job.status)),
        ("Progress", fmt.progress(job, width=20)),
        ("Train reward", fmt.reward(p.train_reward_mean)),
        ("Valid reward", Text.assemble(fmt.valid_change(p.valid_reward_base, p.valid_reward_latest),
                                       f"  (best {fmt.reward(p.valid_reward_best)})")),
        *([("Tool calls", tool_use)] if tool_use is not None else []),
        ("Created", fmt.clock_time(job.created_at)),
        ("Started", fmt.clock_time(p.started_at)),
        ("Finished", fmt.clock_time(job.finished_at)),
        ("Elapsed / ETA", f"{fmt.duration(elapsed)} / {fmt.duration(eta)}"),
        ("Model", job.model + (f"  rev {snap.model.revision}" if snap and snap.model.revision else "")),
        ("Files", fmt.file_label(job)),
        ("Grader", _grader_label(snap.grader if snap else job.method.get("reinforcement", {}).get("grader"))),
        ("Seed", str(job.seed)),
    ]
    if job.cluster:
        c = job.cluster
        engine = "Ray submission" if c.kind == "ray" else "Slurm job"
        rows.append(("Cluster", f"{c.name} ({c.kind}, {c.nodes} node(s) x {c.processes_per_node} process(es))"))
        rows.append((engine, f"{c.engine_id or '-'} ({c.engine_state or 'not submitted'})"))
    if job.fine_tuned_model:
        rows.append(("Fine-tuned model", job.fine_tuned_model))
    if job.error:
        rows.append(("Error", Text(f"{job.error.code}: {job.error.message}", style="red")))
    for label, value in rows:
        grid.add_row(label, value if isinstance(value, Text) else Text(value))
    return grid


def hyperparameters(job: api.FineTuningJob) -> Table:
    """Resolved hyperparameters (every "auto" replaced by the value used), two pairs per line."""
    resolved = job.resolved_hyperparameters or (job.snapshot.hyperparameters if job.snapshot else None)
    hp = resolved.model_dump(exclude={"auto_reasons"}) if resolved else job.hyperparameters
    grid = Table.grid(padding=(0, 1))
    for _ in range(2):
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(no_wrap=True, max_width=24)
    items = sorted(hp.items())
    for i in range(0, len(items), 2):
        cells: list[Text] = []
        for k, v in items[i:i + 2]:
            cells += [Text(k), Text(str(v))]
        grid.add_row(*cells)
    return grid


class CheckpointsTable(DataTable[str]):
    """Kept checkpoints, newest first; `x` exports the highlighted one."""

    DEFAULT_CSS = "CheckpointsTable { height: auto; max-height: 8; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.checkpoint_ids: list[str] = []

    def on_mount(self) -> None:
        for key, label in (("step", "Step"), ("valid", "Valid R"), ("train", "Train R"), ("kept", "Kept because"),
                           ("id", "Checkpoint")):
            self.add_column(label, key=key)

    def show(self, checkpoints: list[api.JobCheckpoint]) -> None:
        ids = [c.id for c in checkpoints]
        if ids == self.checkpoint_ids:
            return
        self.clear()
        self.checkpoint_ids = ids
        for c in checkpoints:
            self.add_row(str(c.step_number), fmt.reward(c.metrics.valid_reward_mean),
                         fmt.reward(c.metrics.train_reward_mean), ", ".join(c.kept_because) or "-", c.id, key=c.id)

    @property
    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        return self.checkpoint_ids[min(self.cursor_row, len(self.checkpoint_ids) - 1)]

    @property
    def selected_step(self) -> int | None:
        if not self.row_count:
            return None
        return int(str(self.get_row_at(min(self.cursor_row, self.row_count - 1))[0]))
