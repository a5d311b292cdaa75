"""Messages the TUI's workers post and its screens handle (workers fetch, handlers own state).

Every message is a small dataclass. Flood-prone ones (stream events, new metric steps) implement
`can_replace()` so a burst still waiting in a queue collapses to the latest.
Other screens may append their own messages here (small additive edits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from daemon import api


@dataclass
class DaemonEvent(Message, bubble=False):
    """One event from the daemon's `/v1/stream`, forwarded by the app to every open screen (never bubbles back)."""

    event: api.StreamEvent

    def can_replace(self, message: Message) -> bool:
        """A newer metrics/validation event of the same job supersedes a queued older one."""
        if not isinstance(message, DaemonEvent):
            return False
        mine, other = self.event, message.event
        return (mine.type == other.type and mine.job_id == other.job_id
                and mine.type in (api.StreamEventType.job_metrics, api.StreamEventType.job_event,
                                  api.StreamEventType.heartbeat))


@dataclass
class StreamState(Message):
    """The stream connected, or dropped (with why and when the next try is)."""

    connected: bool
    detail: str = ""


@dataclass
class WorkerFailed(Message):
    """A worker's daemon call failed; `what` names the call, `error` says why (shown as a notification)."""

    what: str
    error: str


@dataclass
class JobsLoaded(Message):
    """The jobs list (newest first) and the stored files' names by id (lists carry no job snapshot)."""

    jobs: list[api.FineTuningJob]
    file_names: dict[str, str] = field(default_factory=dict)


@dataclass
class DuplicateReady(Message):
    """The full job (with its snapshot) to prefill the New-job form with."""

    job: api.FineTuningJob


@dataclass
class JobFetched(Message):
    """One job's fresh state (after a stream event or an action)."""

    job: api.FineTuningJob

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobFetched) and message.job.id == self.job.id


@dataclass
class AlarmsLoaded(Message):
    """A job's alarms (every episode, oldest first): the Health tab's list."""

    job_id: str
    alarms: list[api.JobAlarm]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AlarmsLoaded) and message.job_id == self.job_id


@dataclass
class JobActionDone(Message):
    """A control action (cancel/pause/resume/export) was accepted; `job` is the daemon's answer."""

    action: str
    job_id: str
    result: Any = None


@dataclass
class MetricsAppended(Message):
    """New metric steps of one job (only the ones after what the view already holds)."""

    job_id: str
    steps: list[api.MetricStep]


@dataclass
class ValidationCompared(Message):
    """Base vs the selected step over paired rows (mean change, 95 % CI, sign-test p), or None (one step only)."""

    job_id: str
    compare: api.ValidationCompare | None


@dataclass
class RescoringsListed(Message):
    """The names of a job's re-scorings, oldest first."""

    job_id: str
    names: list[str]


@dataclass
class RescoreDone(Message):
    """A re-scoring of a job's stored outputs finished (the original scores are unchanged)."""

    job_id: str
    result: api.Rescoring


@dataclass
class ValidationLoaded(Message):
    """Validation rows of one job: the base (step 0) and the selected step."""

    job_id: str
    base: api.ValidationPage | None
    selected: api.ValidationPage | None


@dataclass
class SamplesLoaded(Message):
    """Recent training samples of one job, newest first."""

    job_id: str
    samples: list[api.TrainingSample]


@dataclass
class EventsLoaded(Message):
    """Recent events (newest first) and the worker log tail of one job."""

    job_id: str
    events: list[api.JobEvent]
    log: api.JobLog | None = None


@dataclass
class CheckpointsLoaded(Message):
    """The job's kept checkpoints (newest first)."""

    job_id: str
    checkpoints: list[api.JobCheckpoint] = field(default_factory=list)


@dataclass
class ValidationCurve(Message):
    """Mean validation reward (and per-grader means) at steps the view had not seen."""

    job_id: str
    points: list[tuple[int, float, dict[str, float]]]


@dataclass
class ExportDone(Message):
    """The daemon's answer to exporting a checkpoint (what it wrote, and where)."""

    job_id: str
    checkpoint_id: str
    result: Any


# ---------------------------------------------------------------------- Files, Graders, New job


@dataclass
class FilesLoaded(Message):
    """The imported dataset files (newest first)."""

    files: list[api.FileObject]


@dataclass
class FileRowsLoaded(Message):
    """One page of a file's rows, for the row browser."""

    file_id: str
    page: int
    rows: api.FileRowsPage


@dataclass
class FileRowsFailed(Message):
    """A page of rows could not be fetched (the view forgets it asked, so it can ask again)."""

    file_id: str
    page: int


@dataclass
class FileValidated(Message):
    """A validation report for `file_id` (checked `against` another file when that is set)."""

    file_id: str
    against: str | None
    report: api.ValidationReport


@dataclass
class GraderFilesLoaded(Message):
    """The grader files under `$RFT_HOME/graders/` (without their content)."""

    graders: list[api.GraderFile]


@dataclass
class GraderFileLoaded(Message):
    """One grader file with its content (opened, reloaded or just saved)."""

    grader: api.GraderFile
    saved: bool = False


@dataclass
class GraderSaveRefused(Message):
    """The daemon refused a save: `conflict` when the file changed on disk meanwhile."""

    name: str
    message: str
    conflict: bool = False


@dataclass
class LocalGraderLoaded(Message):
    """A grader file opened (or saved) by path, outside `$RFT_HOME/graders` (an example, any file)."""

    path: str
    content: str
    modified_at: float
    errors: list[str]
    saved: bool = False


@dataclass
class GraderTested(Message):
    """The playground's result: the grader run on every row of a file (`graders test`)."""

    report: api.GraderTestReport


@dataclass
class GraderTestFailed(Message):
    """The daemon refused the playground's run (say, the file lacks the column); shown in the playground."""

    message: str


@dataclass
class PreflightDone(Message):
    """A pre-flight report (reward spread on sampled rows before training)."""

    report: api.PreflightReport


@dataclass
class NewJobChoicesLoaded(Message):
    """What the new-job form offers: imported files, grader files and clusters to run on."""

    files: list[api.FileObject]
    graders: list[api.GraderFile]
    clusters: list[api.Cluster] = field(default_factory=list)


@dataclass
class LocalModelsLoaded(Message):
    """Models the new-job form offers: built-in and the daemon's Hugging Face cache, with size and fit."""

    models: list[api.LocalModel]


@dataclass
class MemoryEstimated(Message):
    """The new-job form's memory-fit estimate for its current settings (or why there is none)."""

    estimate: api.MemoryEstimate | None
    error: str | None = None


@dataclass
class DoctorReady(Message):
    """`GET /v1/doctor`'s report, for the palette's Doctor command."""

    report: api.DoctorReport


@dataclass
class NewJobChecked(Message):
    """Pre-submit checks: problems by form field (empty when the job can be submitted)."""

    problems: dict[str, str]
    notes: list[str] = field(default_factory=list)


@dataclass
class JobSubmitted(Message):
    """The daemon created the job."""

    job: api.FineTuningJob


@dataclass
class JobRefused(Message):
    """The daemon refused the job; `param` names the offending field (OpenAI-style)."""

    param: str | None
    message: str
