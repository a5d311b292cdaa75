"""The reporter of a worker that cannot open the daemon's store: records go over the daemon's API.

Each record is fsync'd to the journal in the worker's scratch directory (daemon/worker/journal.py) and queued;
one sender thread POSTs the queue in order, in batches, to `/v1/fine_tuning/jobs/{id}/report/records` with the
job's own token. Training never waits for the daemon: a write returns once the record is on local disk; while
the daemon is unreachable the records wait there, and they go out in order when it answers again (appends are
idempotent, so a batch whose answer was lost is simply sent again). Control (pause/cancel) comes back with each
answer and from a poll at most every `control_interval_s`. `finish()` waits for everything to be delivered, up
to a long deadline (RFT_REPORT_FINISH_DEADLINE_S); `close()` waits a short one. What is not delivered by then
stays in the journal, and a worker restarted on the same scratch directory sends it; on a cluster's URL storage
it is also uploaded there (RFT_JOURNAL_URL), where the daemon replays it from.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from daemon import api
from daemon.client import ApiRequestError, Client, DaemonError, Endpoint
from daemon.worker.journal import Journal
from daemon.worker.reporting import Reporter
from daemon.worker_protocol import JOURNAL_URL_ENV, dump_stacks

log = logging.getLogger("rft.worker.report")
M = TypeVar("M", bound=BaseModel)

BATCH_RECORDS = 200
BATCH_BYTES = 2 * 1024 * 1024  # well under the daemon's 8 MB JSON body limit
REQUEST_TIMEOUT_S = 10.0
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class HttpReporter(Reporter):
    """`Reporter` over the daemon's reporting API, buffered on disk while the daemon is away."""

    def __init__(self, url: str, token: str, job_id: str, scratch: str | os.PathLike[str], rank: int = 0,
                 control_interval_s: float = 1.0) -> None:
        self.job_id = job_id
        self.rank = rank
        self.url = url.rstrip("/")
        self.scratch = Path(scratch)
        self.control_interval_s = control_interval_s
        self.finish_deadline_s = _env_float("RFT_REPORT_FINISH_DEADLINE_S", 3600.0)
        self.connect_deadline_s = _env_float("RFT_REPORT_CONNECT_DEADLINE_S", 600.0)
        self.retry_max_s = _env_float("RFT_REPORT_RETRY_MAX_S", RETRY_MAX_S)  # longest wait between tries
        self.client = Client(Endpoint(base_url=self.url, token=token), timeout=REQUEST_TIMEOUT_S)
        # saved job state/spec belong to this submission (each has its own token): a resumed submission that
        # starts while the daemon is away must not read the previous one's (it would train from scratch)
        self._cache_tag = hashlib.sha256(token.encode()).hexdigest()[:16]
        self._journal_uploaded_at = 0.0  # monotonic time of the last upload to RFT_JOURNAL_URL (URL storage)
        # rank 0 reports; other ranks only read (their own, empty, journal keeps them off rank 0's file)
        self.journal = Journal(self.scratch / ("report-journal" if rank == 0 else f"report-journal-rank{rank}"),
                               job_id)
        self._cond = threading.Condition()
        self._control: api.ReportControl | None = None
        self._control_at = 0.0
        self._stacks_seen: int | None = None  # the daemon's stack-request count at this worker's first answer
        self._state: api.ReportJobState | None = None
        self._spec: api.JobSnapshot | None = None
        self.delivered = 0  # records the daemon confirmed (this process)
        self.offline_since: float | None = None
        self.last_error: str | None = None
        self.refused: str | None = None  # the daemon refuses this token or job: waiting will not help
        self.token_revoked = False  # refused because the job ended (or a newer submission's token replaced it)
        self._stopping = False
        self._sender = threading.Thread(target=self._send_loop, name="rft-report-sender", daemon=True)
        if rank == 0:
            self._sender.start()

    # -------------------------------------------------------------- writing

    def send(self, record: api.ReportRecord) -> bool:
        """Journal the record (durable at return) and wake the sender; True: it will be delivered."""
        if self.rank != 0:
            raise RuntimeError("only rank 0 reports")
        self.journal.append(record)
        with self._cond:
            self._cond.notify_all()
        return True

    def finish(self, outcome: str, detail: str | None = None, fine_tuned_model: str | None = None) -> None:
        """Record the outcome and wait until the daemon has every record (or the long deadline passes)."""
        super().finish(outcome, detail, fine_tuned_model)
        if not self.flush(self.finish_deadline_s):
            why = f"refused ({self.refused})" if self.refused else f"after {self.finish_deadline_s:.0f} s"
            log.error("job %s: %d record(s) not delivered to %s, %s (%s); they stay in %s",
                      self.job_id, len(self.journal), self.url, why, self.last_error, self.journal.dir)
            print(f"[report] {len(self.journal)} record(s) undelivered, {why}; kept in {self.journal.dir}",
                  flush=True)
            self.upload_journal()

    def upload_journal(self) -> None:
        """URL storage: the journal is on this node's disk, which the daemon cannot read; copy it to
        RFT_JOURNAL_URL, where the daemon replays it from when it settles the job (cluster_jobs._replay_journal)."""
        url = os.environ.get(JOURNAL_URL_ENV)
        if not url:
            return
        from daemon import checkpoint_storage

        target = checkpoint_storage.join(url, self.journal.path.name)
        size = self.journal.path.stat().st_size  # before the copy: a record appended meanwhile is not in it
        try:
            checkpoint_storage.put_file(self.journal.path, target, checkpoint_storage.options_from_env(),
                                        skip_same_size=False)
        except Exception as e:  # noqa: BLE001 - the storage is away too: the records stay on this node only
            print(f"[report] could not upload the journal to {target}: {type(e).__name__}: {e}", flush=True)
            return
        self.journal.mark_uploaded(size)  # the node's launcher may then remove this copy (ray_launch)
        print(f"[report] journal uploaded to {target} (the daemon replays it when it settles the job)", flush=True)

    def flush(self, timeout_s: float) -> bool:
        """Wait (bounded) until every journalled record is delivered; True if so."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._cond.notify_all()
            while len(self.journal):
                left = deadline - time.monotonic()
                if left <= 0 or not self._sender.is_alive() or self.refused:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        """Deliver what can be delivered in a short while, then stop the sender (the rest stays journalled)."""
        if self.rank == 0:
            self.flush(_env_float("RFT_REPORT_CLOSE_WAIT_S", 10.0))
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._sender.is_alive():
            self._sender.join(timeout=REQUEST_TIMEOUT_S + 1)
        self.journal.close()
        self.client.close()

    # -------------------------------------------------------------- the sender thread

    def _send_loop(self) -> None:
        delay = RETRY_FIRST_S
        one_at_a_time = False
        while True:
            with self._cond:
                while not self._stopping and not len(self.journal) and not self._control_due():
                    self._cond.wait(self.control_interval_s)
                if self._stopping:
                    return
            batch = self.journal.peek(1 if one_at_a_time else BATCH_RECORDS, BATCH_BYTES)
            try:
                if batch:
                    ack = self.client.report_records(self.job_id, api.ReportBatch(records=batch))
                    self.journal.ack(len(batch))
                    self.delivered += len(batch)
                    self._set_control(ack.control)
                    one_at_a_time = False
                else:
                    self._set_control(self._fetch_control())
            except ApiRequestError as e:
                if e.status_code == 400 and batch:
                    if len(batch) > 1:  # find the one record the daemon refuses; the others go through
                        one_at_a_time = True
                        continue
                    log.error("job %s: the daemon refused a %s record: %s", self.job_id, batch[0].kind, e)
                    print(f"[report] the daemon refused a {batch[0].kind} record ({e}); kept in "
                          f"{self.journal.rejected_path}", flush=True)
                    self.journal.reject(batch[0], str(e))
                    continue
                if e.status_code in (401, 403, 404) and not self.refused:
                    # revoked or replaced token, or a job the daemon no longer has: say so once, keep the
                    # records on disk, keep trying slowly (a restored daemon may know them again)
                    self.refused = f"HTTP {e.status_code}: {e}"
                    self.token_revoked = e.status_code == 401 and e.error.code == "invalid_job_token"
                    print(f"[report] the daemon refuses this job's records ({self.refused}); they stay in "
                          f"{self.journal.dir}", flush=True)
                    with self._cond:
                        self._cond.notify_all()
                delay = self._offline(f"HTTP {e.status_code}: {e}", delay)
                continue
            except (DaemonError, OSError) as e:
                delay = self._offline(str(e), delay)
                continue
            self.refused, self.token_revoked = None, False
            if self.offline_since is not None:
                print(f"[report] the daemon answers again after {time.monotonic() - self.offline_since:.1f} s; "
                      f"sending the buffered records", flush=True)
            self.offline_since, self.last_error, delay = None, None, RETRY_FIRST_S
            with self._cond:
                self._cond.notify_all()

    def _offline(self, error: str, delay: float) -> float:
        """The daemon did not take the batch: wait (interruptibly) and try again, backing off."""
        if self.offline_since is None:
            self.offline_since = time.monotonic()
            print(f"[report] cannot reach the daemon at {self.url} ({error}); buffering records in "
                  f"{self.journal.dir}", flush=True)
        self.last_error = error
        self._upload_journal_while_offline()
        with self._cond:
            if not self._stopping:
                self._cond.wait(delay)
        return min(delay * 2, self.retry_max_s)

    def _upload_journal_while_offline(self) -> None:
        """URL storage: while the daemon stays away, copy the journal there every RFT_JOURNAL_UPLOAD_S (30 s), so
        a worker killed meanwhile (its node's disk out of reach) still leaves what it had journalled by then."""
        if self.rank != 0 or self.offline_since is None or not os.environ.get(JOURNAL_URL_ENV):
            return
        now = time.monotonic()
        if now - max(self.offline_since, self._journal_uploaded_at) >= _env_float("RFT_JOURNAL_UPLOAD_S", 30.0):
            self._journal_uploaded_at = now
            self.upload_journal()

    def _control_due(self) -> bool:
        return time.monotonic() - self._control_at >= self.control_interval_s

    def _fetch_control(self) -> api.ReportControl:
        """An empty append: the cheapest request whose answer carries the control state (one indexed read)."""
        return self.client.report_records(self.job_id, api.ReportBatch(records=[])).control

    def _set_control(self, control: api.ReportControl, from_daemon: bool = True) -> None:
        self._control, self._control_at = control, time.monotonic()
        if not from_daemon:
            return
        # the daemon asks for the stacks by raising a count (a stall on a cluster): requests older than this
        # worker's first answer were for an earlier submission
        if self._stacks_seen is None:
            self._stacks_seen = control.stacks_requested
        elif control.stacks_requested > self._stacks_seen:
            self._stacks_seen = control.stacks_requested
            others = dump_stacks("the daemon saw no training step for too long (stalled)")
            log.warning("job %s: stacks written to the log (this process and %d other rank(s))", self.job_id, others)

    # -------------------------------------------------------------- reading

    def job(self) -> api.ReportJobState:
        """The job's state as of this worker's start (cached in the scratch dir for a restart while offline)."""
        if self._state is None:
            self._state = self._read_cached("job-state.json", lambda: self.client.report_state(self.job_id),
                                            api.ReportJobState)
            self._set_control(api.ReportControl(status=self._state.status,
                                                requested_action=self._state.requested_action), from_daemon=False)
        return self._state

    def spec(self) -> api.JobSnapshot:
        if self._spec is None:
            self._spec = self._read_cached("job-spec.json", lambda: self.client.report_spec(self.job_id),
                                           api.JobSnapshot)
        return self._spec

    def requested_action(self) -> str | None:
        """The last control state the daemon sent (never waits: the sender thread keeps it fresh)."""
        if self.token_revoked:  # the job ended (or a newer submission took over): nothing to train for
            return "cancel"
        control = self._control
        if control is None:
            return None
        if control.status is api.JobStatus.cancelled:
            return "cancel"
        return control.requested_action

    def last_step(self) -> int | None:
        """The store's last step, or a later one this scratch dir's journal holds (not delivered yet, or
        delivered after the saved state was read)."""
        stored = self.job().last_step
        return max([s for s in (stored, self.journal.last_step) if s is not None], default=None)

    def validated_steps(self) -> set[int]:
        return set(self.job().validated_steps) | self.journal.validated_steps

    def health_history(self) -> api.HealthHistory:
        """As of this worker's start (the job state it read); steps only in the journal are past the checkpoint
        a restart resumes from, so they are met again live."""
        return self.job().health

    def checkpoints_to_delete(self) -> list[api.JobCheckpoint]:
        """Asked once the journal is delivered (bounded); offline: nothing yet, the next call catches up."""
        if not self.flush(5.0):
            return []
        try:
            return self.client.report_checkpoints_to_delete(self.job_id).data
        except (DaemonError, OSError):
            return []

    def _read_cached(self, name: str, fetch: Callable[[], M], model: type[M]) -> M:
        """`fetch()` from the daemon (saved in the scratch dir), or the saved copy if the daemon is away.

        With no saved copy, retries until RFT_REPORT_CONNECT_DEADLINE_S: a worker cannot start without it.
        A refused token (401/403) or a job the daemon does not know (404) fails at once, saying so.
        """
        stem, _, suffix = name.rpartition(".")
        path = self.scratch / f"{stem}-{self._cache_tag}.{suffix}"
        deadline, delay = time.monotonic() + self.connect_deadline_s, RETRY_FIRST_S
        while True:
            try:
                value = fetch()
            except ApiRequestError as e:
                if e.status_code in (401, 403, 404):
                    raise RuntimeError(f"the daemon at {self.url} refused job {self.job_id}'s reporting "
                                       f"token: {e}") from None
                error: Exception = e
            except (DaemonError, OSError) as e:
                error = e
            else:
                _write_private(path, value.model_dump_json())
                return value
            if path.exists():
                print(f"[report] the daemon at {self.url} is unreachable ({error}); using the saved {name}",
                      flush=True)
                return model.model_validate_json(path.read_text())
            if time.monotonic() + delay > deadline:
                raise RuntimeError(f"the daemon at {self.url} did not answer for {self.connect_deadline_s:.0f} s: "
                                   f"{error}")
            time.sleep(delay)  # start-up: nothing else to do until the daemon answers
            delay = min(delay * 2, self.retry_max_s)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
