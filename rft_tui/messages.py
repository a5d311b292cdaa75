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
class DaemonEvent(Message):
    """One event from the daemon's `/v1/stream`, forwarded by the app to every open screen."""

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
    """The jobs list (newest first)."""

    jobs: list[api.FineTuningJob]


@dataclass
class JobFetched(Message):
    """One job's fresh state (after a stream event or an action)."""

    job: api.FineTuningJob

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobFetched) and message.job.id == self.job.id


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
