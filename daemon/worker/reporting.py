"""How a worker reports to the store: one interface (`Reporter`), two back ends chosen at start.

- `LocalReporter` (alias `JobReporter`): the worker on the daemon's machine writes SQLite directly, through
  `daemon.store.Store` -- the same methods, transactions and checkpoint rule the daemon uses -- so each table
  has one writer. Its own connection (WAL) with a long busy wait: it would rather wait than lose a step.
- `HttpReporter` (daemon/worker/http_reporter.py): a cluster worker never opens the daemon's SQLite file; it
  sends the same records to the daemon's API with a per-job token, journalling them on local disk first.

Every write method builds one typed record (`daemon.api.Report*`) and hands it to the back end's `send`; the
store applies records in `Store.apply_report`. Adding a reporter method is: a record class in `daemon.api`,
one branch in `Store.apply_report`, one method here -- and it works over HTTP with nothing else to do.
`open_reporter()` picks the back end from the environment (RFT_REPORT_URL + RFT_REPORT_TOKEN: HTTP; else
RFT_HOME: local). No torch here.
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from daemon import api
from daemon.paths import Paths
from daemon.store import BUSY_TIMEOUT_MS, MAX_SAMPLES_PER_STEP, Store, checkpoint_id, checkpoint_object, finite
from daemon.worker_protocol import (
    CANCEL_SIGNAL,
    PAUSE_SIGNAL,
    REPORT_TOKEN_ENV,
    REPORT_URL_ENV,
    WORK_DIR_ENV,
    ControlFlags,
)

__all__ = ["Reporter", "LocalReporter", "JobReporter", "open_reporter", "validation_mean", "MAX_SAMPLES_PER_STEP",
           "CANCEL_SIGNAL", "PAUSE_SIGNAL", "ControlFlags"]


def validation_mean(rows: Iterable[Mapping[str, Any]]) -> float | None:
    """The mean reward of a validation pass, as the store computes it (non-finite rewards count as 0)."""
    rewards = [finite(r.get("reward")) or 0.0 for r in rows]
    return sum(rewards) / len(rewards) if rewards else None


class Reporter(ABC):
    """The worker's side of the store for one job, whatever carries it (SQLite, or HTTP to the daemon).

    Reads: `job`, `spec`, `requested_action`, `last_step`, `validated_steps`, `health_history`,
    `checkpoints_to_delete`.
    Writes (one record each): `started`, `log_step`, `log_validation`, `add_checkpoint`,
    `mark_checkpoint_deleted`, `event`, `alarm`, `finish`. `close` releases what the back end holds.
    """

    job_id: str
    rank: int

    # -------------------------------------------------------------- the back end

    @abstractmethod
    def send(self, record: api.ReportRecord) -> bool:
        """Deliver one record (or queue it for delivery); False if the store already had it (a step)."""

    @abstractmethod
    def job(self) -> api.ReportJobState:
        """The job as a (re)starting worker needs it: status, attempt, resume point, stored steps."""

    @abstractmethod
    def spec(self) -> api.JobSnapshot:
        """The job's snapshot: everything it depends on, frozen at creation."""

    @abstractmethod
    def requested_action(self) -> str | None:
        """'pause' / 'cancel' when the user asked for one (checked at every step boundary: never blocks long)."""

    @abstractmethod
    def last_step(self) -> int | None:
        """The last training step recorded (for resume: the next step is this + 1)."""

    @abstractmethod
    def validated_steps(self) -> set[int]:
        """Steps that have a validation pass (step 0 = the base model)."""

    @abstractmethod
    def health_history(self) -> api.HealthHistory:
        """The stored steps' health signals and validation means a resumed worker's monitor is rebuilt from."""

    @abstractmethod
    def checkpoints_to_delete(self) -> list[api.JobCheckpoint]:
        """Live checkpoints the store's one rule (3 best + latest) does not keep."""

    @abstractmethod
    def close(self) -> None:
        """Release the back end (the HTTP one delivers what it can first)."""

    # -------------------------------------------------------------- writing: one record per call

    def started(self, total_steps: int | None, resolved_hyperparameters: Mapping[str, Any] | None = None,
                message: str | None = None) -> None:
        hp = None if resolved_hyperparameters is None else \
            api.ResolvedHyperparameters.model_validate(dict(resolved_hyperparameters))
        self.send(api.ReportStarted(total_steps=total_steps, message=message, resolved_hyperparameters=hp))

    def log_step(self, step: int, values: Mapping[str, Any], samples: Iterable[Mapping[str, Any]] = (),
                 total_steps: int | None = None, trained_tokens: int | None = None) -> bool:
        """Record one training step atomically; False (and nothing written) if the step exists already."""
        return self.send(api.ReportStep(step=step, values={str(k): finite(v) for k, v in values.items()},
                                        samples=[api.ReportedSample.model_validate(
                                                     api.as_text(s, ("prompt", "completion")))
                                                 for s in list(samples)[:MAX_SAMPLES_PER_STEP]],
                                        total_steps=total_steps, trained_tokens=trained_tokens))

    def log_validation(self, step: int, rows: Iterable[Mapping[str, Any]],
                       summary: Mapping[str, Any] | None = None) -> float | None:
        """Record one validation pass (step 0 = base model); returns the mean reward."""
        plain = [dict(r) for r in rows]
        texts = [api.as_text(r, ("prompt", "output", "reference"), nullable=("reference",)) for r in plain]
        self.send(api.ReportValidation(step=step, rows=[api.ReportedValidationRow.model_validate(r) for r in texts],
                                       summary=None if summary is None else
                                       {str(k): finite(v) for k, v in summary.items()}))
        return validation_mean(plain)

    def add_checkpoint(self, step: int, path: str, metrics: Mapping[str, Any]) -> str:
        """A checkpoint saved at `step`; `path` is a local path or an fsspec URL (the cluster's storage)."""
        self.send(api.ReportCheckpoint(step=step, location=str(path),
                                       metrics={str(k): finite(v) for k, v in metrics.items()}))
        return checkpoint_id(self.job_id, step)

    def mark_checkpoint_deleted(self, ckpt_id: str) -> None:
        self.send(api.ReportCheckpointDeleted(checkpoint_id=ckpt_id))

    def event(self, message: str, level: str = "info", data: Mapping[str, Any] | None = None) -> None:
        self.send(api.ReportEvent(message=message, level=level,  # type: ignore[arg-type]  # checked by pydantic
                                  data=None if data is None else dict(data)))

    def alarm(self, alarm: Mapping[str, Any]) -> bool:
        """An alarm firing, or (`cleared: true`) its episode ending: `daemon.health.Alarm.as_dict()` (name,
        severity, step, value, threshold, message, action, grader, cleared). False when the store had that
        episode open already (a resumed worker's fresh monitor fires it again; it must not act twice)."""
        return self.send(api.ReportAlarm.model_validate(dict(alarm)))

    def finish(self, outcome: str, detail: str | None = None, fine_tuned_model: str | None = None) -> None:
        """Record how this worker ended (succeeded, paused, cancelled, failed) for the daemon to settle."""
        self.send(api.ReportFinish(outcome=outcome, detail=detail,  # type: ignore[arg-type]  # checked by pydantic
                                   fine_tuned_model=fine_tuned_model))


class LocalReporter(Reporter):
    """Writes the job's records into `$RFT_HOME/rft.db` through `Store`, and pokes the daemon after each."""

    def __init__(self, home: str | os.PathLike[str], job_id: str, rank: int = 0) -> None:
        self.paths = Paths.resolve(home)
        self.job_id = job_id
        self.rank = rank
        self.store = Store(self.paths.db, busy_timeout_s=BUSY_TIMEOUT_MS / 1000)
        self._notify_sock: socket.socket | None = None
        self._last_notify = 0.0

    def send(self, record: api.ReportRecord) -> bool:
        applied = self.store.apply_report(self.job_id, record)
        if applied or not isinstance(record, api.ReportStep):
            self.notify(force=isinstance(record, api.ReportFinish))
        return applied

    def job(self) -> api.ReportJobState:
        state = self.store.report_state(self.job_id)
        if state is None:
            raise LookupError(f"job {self.job_id} is not in {self.paths.db}")
        return state

    def spec(self) -> api.JobSnapshot:
        row = self.store.get_job_row(self.job_id)
        if row is None:
            raise LookupError(f"job {self.job_id} is not in {self.paths.db}")
        return api.JobSnapshot.from_json(row["snapshot"])

    def requested_action(self) -> str | None:
        return self.store.requested_action(self.job_id)

    def last_step(self) -> int | None:
        return self.store.last_metric_step(self.job_id)

    def validated_steps(self) -> set[int]:
        return set(self.store.validation_steps(self.job_id))

    def health_history(self) -> api.HealthHistory:
        return self.store.health_history(self.job_id)

    def checkpoints_to_delete(self) -> list[api.JobCheckpoint]:
        return [checkpoint_object(r) for r in self.store.checkpoints_to_delete(self.job_id)]

    def notify(self, force: bool = False) -> None:
        """Poke the daemon (datagram, non-blocking); silently nothing when no daemon listens."""
        now = time.monotonic()
        if not force and now - self._last_notify < 0.02:
            return
        self._last_notify = now
        try:
            if self._notify_sock is None:
                self._notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._notify_sock.setblocking(False)
            self._notify_sock.sendto(self.job_id.encode(), str(self.paths.notify_socket))
        except OSError:
            pass

    def close(self) -> None:
        if self._notify_sock is not None:
            self._notify_sock.close()
        self.store.close()


JobReporter = LocalReporter  # the name the worker and tests have always used for the SQLite back end


def open_reporter(job_id: str, rank: int = 0, home: str | None = None) -> Reporter:
    """The back end this worker was started with: HTTP when RFT_REPORT_URL/RFT_REPORT_TOKEN are set, else SQLite.

    A cluster executor sets the two (and no RFT_HOME: the worker cannot reach the daemon's files anyway); the
    local executor sets RFT_HOME. The HTTP reporter journals under RFT_WORK_DIR (default: the working dir).
    """
    url, token = os.environ.get(REPORT_URL_ENV), os.environ.get(REPORT_TOKEN_ENV)
    if url and token:
        from daemon.worker.http_reporter import HttpReporter

        return HttpReporter(url, token, job_id, scratch=work_dir(), rank=rank)
    home = home or os.environ.get("RFT_HOME")
    if not home:
        raise RuntimeError(f"no way to report: set RFT_HOME (local) or {REPORT_URL_ENV} and {REPORT_TOKEN_ENV} "
                           "(over the daemon's API)")
    return LocalReporter(home, job_id, rank=rank)


def reports_over_http() -> bool:
    return bool(os.environ.get(REPORT_URL_ENV) and os.environ.get(REPORT_TOKEN_ENV))


def work_dir() -> str:
    """The worker's scratch directory (journal, staged files, checkpoints before upload): RFT_WORK_DIR or cwd."""
    return os.environ.get(WORK_DIR_ENV) or os.getcwd()
