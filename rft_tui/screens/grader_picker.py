"""Pick a grader to re-score a job with (a grader file kept by the daemon, an example, or a local path), or a job
to re-score with the grader being edited; both dialogs also ask whether to re-grade the training samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, OptionList
from textual.widgets.option_list import Option

from daemon import api
from rft_tui.grader_files import GRADER_SUFFIXES, example_graders
from rft_tui.widgets.path_suggester import PathSuggester

DAEMON_PREFIX = "daemon:"
SAMPLES_LABEL = "Also re-grade the stored training samples"


@dataclass(frozen=True)
class RescorePick:
    """What a re-score dialog chose: a grader (or a job), and whether the training samples are re-graded too
    (`POST .../rescore`'s `samples`)."""

    choice: str
    samples: bool = False


class _RescoreDialog(ModalScreen[RescorePick | None]):
    """The samples box (ctrl+t toggles it from anywhere in the dialog) and how the dialog closes."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="rescore_dialog.cancel", tooltip="Close without choosing"),
                Binding("ctrl+t", "toggle_samples", "Samples too", id="rescore_dialog.samples",
                        tooltip="Also re-grade the stored training samples (not only the validation outputs)")]

    def samples_box(self) -> Checkbox:
        return Checkbox(SAMPLES_LABEL + " (ctrl+t)", id="rescore-samples", compact=True)

    def action_toggle_samples(self) -> None:
        box = self.query_one("#rescore-samples", Checkbox)
        box.value = not box.value

    def choose(self, choice: str) -> None:
        self.dismiss(RescorePick(choice, samples=self.query_one("#rescore-samples", Checkbox).value))

    def action_cancel(self) -> None:
        self.dismiss(None)


class GraderPickerScreen(_RescoreDialog):
    """Dismisses with a `RescorePick` of `daemon:NAME` (a file under the daemon's graders folder) or a local
    path, or None."""

    DEFAULT_CSS = """
    GraderPickerScreen { align: center middle; }
    GraderPickerScreen > Vertical { width: 76; max-width: 95%; height: auto; max-height: 90%;
                                    border: thick $accent; background: $surface; padding: 0 1; }
    GraderPickerScreen OptionList { height: auto; max-height: 12; }
    GraderPickerScreen .hint { color: $text-muted; }
    GraderPickerScreen Checkbox { margin: 1 0 0 0; }
    """

    def __init__(self, title: str, files: list[api.GraderFile]) -> None:
        super().__init__()
        self.title_text = title
        self.files = [f for f in files if f.valid is not False]
        self.examples = example_graders()

    def compose(self) -> ComposeResult:
        options = [Option(f"{f.name}  (grader files)", id=DAEMON_PREFIX + f.name) for f in self.files]
        options += [Option(f"{p.parent.name}/{p.name}  (example)", id=str(p)) for p in self.examples]
        with Vertical():
            yield Label(self.title_text)
            if options:
                yield OptionList(*options, id="grader-options")
            yield Input(placeholder="or a grader file's path (.json, .yaml, .py), enter", id="grader-path",
                        suggester=PathSuggester(GRADER_SUFFIXES))
            yield self.samples_box()
            yield Label("enter to choose · esc to cancel · the original scores are never changed", classes="hint")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.choose(event.option.id)

    @on(Input.Submitted, "#grader-path")
    def _path(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.choose(str(Path(event.value.strip()).expanduser()))


class JobPickerScreen(_RescoreDialog):
    """Pick a job with stored validation outputs (to re-score); dismisses with a `RescorePick` of its id, or None."""

    DEFAULT_CSS = """
    JobPickerScreen { align: center middle; }
    JobPickerScreen > Vertical { width: 76; max-width: 95%; height: auto; max-height: 90%;
                                 border: thick $accent; background: $surface; padding: 0 1; }
    JobPickerScreen OptionList { height: auto; max-height: 14; }
    JobPickerScreen Checkbox { margin: 1 0 0 0; }
    """

    def __init__(self, title: str, jobs: list[api.FineTuningJob]) -> None:
        super().__init__()
        self.title_text = title
        self.jobs = jobs

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            if self.jobs:
                yield OptionList(*[Option(job_label(j), id=j.id) for j in self.jobs], id="job-options")
            else:
                yield Label("No job has validation outputs yet.", classes="hint")
            yield self.samples_box()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.choose(event.option.id)


def job_label(job: api.FineTuningJob) -> str:
    p = job.progress
    reward = "" if p is None or p.valid_reward_latest is None else f" · valid {p.valid_reward_latest:.3f}"
    return f"{job.id} · {job.status.value} · {job.model}{reward}"


async def load_choice(client: Any, choice: str) -> dict[str, Any]:
    """The grader spec a choice names (parsed here; the daemon validates it). Raises GraderFileError."""
    from graders.loader import parse_grader_text, read_grader_file

    if choice.startswith(DAEMON_PREFIX):
        name = choice.removeprefix(DAEMON_PREFIX)
        f = await client.get_grader_file(name)
        return parse_grader_text(f.content or "", name)
    return read_grader_file(choice)


def rescoring_text(r: api.Rescoring) -> str:
    """A re-scoring at a glance: per step original -> new mean, samples, the comparison overall and per grader."""
    lines = [f"Re-scoring '{r.name}' ({r.elapsed_s:.1f} s). The original scores are unchanged.", ""]
    for s in r.steps:
        lines.append(f"step {s.step:>5}: {_num(s.original_mean)} -> {_num(s.mean)} over {s.rows} rows"
                     + (f", {s.rows_with_errors} with grader errors" if s.rows_with_errors else ""))
    if r.samples is not None:
        lines.append(f"training samples: {_num(r.samples.original_mean)} -> {_num(r.samples.mean)} over "
                     f"{r.samples.samples}" + (f" ({r.samples.without_item} without their item)"
                                               if r.samples.without_item else ""))
    if r.compare is not None:
        lines += ["", f"step {r.compare.step} vs {r.compare.base_step}: {r.compare.headline()}"]
        if len(r.compare.per_grader) > 1:
            lines += [f"  {name}: {g.headline()}" for name, g in r.compare.per_grader.items()]
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
