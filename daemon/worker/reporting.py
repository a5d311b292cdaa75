"""How a worker writes into the store: the store's own methods, scoped to one job, on the worker's connection.

Every worker (the real GRPO one, and the small ones the foundation tests use) reports through this class,
and this class writes only through `daemon.store.Store` -- the same methods, transactions and checkpoint
rule the daemon uses -- so each table has one writer. The worker opens its own `Store` (a separate process,
WAL) with a long busy wait: it would rather wait than lose a step. After each commit the worker pokes the
daemon's notify socket (best effort: the daemon may be down, the worker goes on). No torch here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

from daemon import api
from daemon.paths import Paths
from daemon.store import BUSY_TIMEOUT_MS, MAX_SAMPLES_PER_STEP, Store
from daemon.worker_protocol import CANCEL_SIGNAL, PAUSE_SIGNAL, ControlFlags

__all__ = ["JobReporter", "MAX_SAMPLES_PER_STEP", "CANCEL_SIGNAL", "PAUSE_SIGNAL", "ControlFlags"]


class JobReporter:
    """The worker's side of the store for one job."""

    def __init__(self, home: str | os.PathLike[str], job_id: str, rank: int = 0) -> None:
        self.paths = Paths.resolve(home)
        self.job_id = job_id
        self.rank = rank
        self.store = Store(self.paths.db, busy_timeout_s=BUSY_TIMEOUT_MS / 1000)
        self._notify_sock: socket.socket | None = None
        self._last_notify = 0.0

    # -------------------------------------------------------------- reading

    def job(self) -> dict[str, Any]:
        row = self.store.get_job_row(self.job_id)
        if row is None:
            raise LookupError(f"job {self.job_id} is not in {self.paths.db}")
        return row

    def spec(self) -> api.JobSnapshot:
        """The job's snapshot: everything it depends on, frozen at creation."""
        return api.JobSnapshot.from_json(self.job()["snapshot"])

    def requested_action(self) -> str | None:
        return self.store.requested_action(self.job_id)

    def last_step(self) -> int | None:
        return self.store.last_metric_step(self.job_id)

    def validated_steps(self) -> set[int]:
        return set(self.store.validation_steps(self.job_id))

    # -------------------------------------------------------------- writing

    def started(self, total_steps: int | None, resolved_hyperparameters: Mapping[str, Any] | None = None,
                message: str | None = None) -> None:
        self.store.worker_started(self.job_id, total_steps, resolved_hyperparameters, message)
        self.notify()

    def log_step(self, step: int, values: Mapping[str, Any], samples: Iterable[Mapping[str, Any]] = (),
                 total_steps: int | None = None, trained_tokens: int | None = None) -> bool:
        """Record one training step atomically; False (and nothing written) if the step exists already."""
        written = self.store.log_step(self.job_id, step, values, samples, total_steps, trained_tokens)
        if written:
            self.notify()
        return written

    def log_validation(self, step: int, rows: Iterable[Mapping[str, Any]],
                       summary: Mapping[str, Any] | None = None) -> float | None:
        """Record one validation pass (step 0 = base model); returns the mean reward."""
        mean = self.store.log_validation(self.job_id, step, rows, summary)
        self.notify()
        return mean

    def add_checkpoint(self, step: int, path: str, metrics: Mapping[str, Any]) -> str:
        ckpt_id = self.store.add_checkpoint(self.job_id, step, path, metrics)
        self.notify()
        return ckpt_id

    def checkpoints_to_delete(self) -> list[dict[str, Any]]:
        """Live checkpoints the store's one rule (3 best + latest) does not keep."""
        return self.store.checkpoints_to_delete(self.job_id)

    def mark_checkpoint_deleted(self, ckpt_id: str) -> None:
        self.store.mark_checkpoint_deleted(ckpt_id)

    def event(self, message: str, level: str = "info", data: Mapping[str, Any] | None = None) -> None:
        self.store.add_event(self.job_id, message, level=level, data=data)
        self.notify()

    def finish(self, outcome: str, detail: str | None = None, fine_tuned_model: str | None = None) -> None:
        """Record how this worker ended (succeeded, paused, cancelled, failed) for the daemon to settle."""
        self.store.worker_finished(self.job_id, outcome, detail, fine_tuned_model)
        self.notify(force=True)

    # -------------------------------------------------------------- notify

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
