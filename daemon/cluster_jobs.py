"""The scheduler's cluster side: submit to a cluster's engine, watch it, settle what it ends with.

A cluster job never holds this machine's GPU set: queued cluster jobs are submitted at once (the cluster's
own scheduler queues them). Submission stages the job's datasets and its per-job token in the job's
directory on the cluster's storage, then asks the engine; the engine's id is recorded on the job. One
watcher thread asks each engine about the jobs it still runs (`POLL_S`), mirrors the engine's log into
`jobs/<id>/cluster-<engine id>.log` (served by the /log endpoint), and hands an ended engine job to the
store thread, which settles it: the worker's own report over the API (succeeded, paused, cancelled, failed)
decides, and a worker that ended without one fails with the engine's state and its log's last lines.

The daemon restarts, the job does not: the watcher starts from what the store says is on a cluster, so a
new daemon re-attaches to every running engine job, and settles the ones that ended while it was down.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from daemon import api, checkpoint_storage
from daemon.executors import ClusterExecutor, EngineStatus, ExecutorUnavailable, LaunchSpec, executor_for
from daemon.procs import log_tail
from daemon.store import load_placement
from daemon.worker_protocol import (
    ATTEMPT_HEADER,
    CHECKPOINT_STORAGE_ENV,
    FILES_DIR_ENV,
    FILES_URL_ENV,
    JOURNAL_URL_ENV,
    REPORT_TOKEN_ENV,
    REPORT_URL_ENV,
    WORK_DIR_ENV,
)

if TYPE_CHECKING:
    from daemon.clusters import ClusterConfig
    from daemon.scheduler import Scheduler

log = logging.getLogger("rft.clusters")
S = api.JobStatus
POLL_S = float(os.environ.get("RFT_CLUSTER_POLL_S", "2"))
JOURNAL_DIR = "report-journal"  # rank 0's journal in the worker's RFT_WORK_DIR (daemon/worker/http_reporter.py)
REPORT_RECORD: TypeAdapter[api.ReportRecord] = TypeAdapter(api.ReportRecord)
RETRY_SUBMIT_S = float(os.environ.get("RFT_CLUSTER_RETRY_S", "30"))  # an unreachable cluster is asked again
FAULT_AFTER_SUBMIT_ENV = "RFT_FAULT_AFTER_SUBMIT"  # tests: =1 kills the daemon once the engine accepted a job
# the reporter's waits, when the daemon's environment sets them, reach the worker too (sbatch passes the whole
# environment on; a Ray runtime_env only what we name)
PASSED_ON = ("RFT_REPORT_FINISH_DEADLINE_S", "RFT_REPORT_CLOSE_WAIT_S", "RFT_REPORT_CONNECT_DEADLINE_S",
             "RFT_REPORT_RETRY_MAX_S")
NO_TCP = ("cluster jobs report back over the daemon's TCP API, and this daemon listens only on its Unix socket: "
          "restart it with `rft-tui daemon restart --tcp 0.0.0.0:PORT` (a host:port the cluster can reach)")


def cluster_log(job_dir: Path, engine_id: str) -> Path:
    return job_dir / f"cluster-{engine_id}.log"


def worker_env(job_id: str, placement: api.JobPlacement, report_url: str, model_cache: str | None) -> dict[str, str]:
    """What the worker on the cluster is told (no secrets: `jobs show --script` shows it; the token is in a file).

    No RFT_HOME: the worker never sees the daemon's store; it reports to RFT_REPORT_URL, journals in its
    work dir, reads the datasets shipped to the storage, and writes checkpoints there.
    """
    if checkpoint_storage.is_url(placement.storage_dir):
        return url_worker_env(job_id, placement, report_url, model_cache)
    storage = Path(placement.storage_dir)
    root = storage.parent.parent  # STORAGE/rft-tui
    env = {"RFT_JOB_ID": job_id, REPORT_URL_ENV: report_url, WORK_DIR_ENV: str(storage / "work"),
           FILES_DIR_ENV: str(storage / "files"), CHECKPOINT_STORAGE_ENV: str(root / "checkpoints"),
           "RFT_JOB_STORAGE": str(storage), "RFT_NODES": str(placement.nodes),
           "RFT_PROCS_PER_NODE": str(placement.processes_per_node),
           "RFT_GPUS_PER_NODE": str(placement.gpus_per_node), "PYTHONUNBUFFERED": "1",
           "RFT_MODEL_CACHE": model_cache or str(root / "models")}
    if placement.gpus_per_node == 0:
        env["RFT_DEVICE"] = "cpu"
    return env


def url_worker_env(job_id: str, placement: api.JobPlacement, report_url: str, model_cache: str | None
                   ) -> dict[str, str]:
    """The same for URL storage: files and journal by URL, a node-local scratch dir (ray_launch makes it), and the
    built-in model cached in the node's ~/.cache. No credentials here: see `ClusterJobs.secrets`."""
    job_url = placement.storage_dir
    root = job_url.rstrip("/").rsplit("/", 2)[0]  # STORAGE/rft-tui
    env = {"RFT_JOB_ID": job_id, REPORT_URL_ENV: report_url, FILES_URL_ENV: checkpoint_storage.join(job_url, "files"),
           JOURNAL_URL_ENV: checkpoint_storage.join(job_url, "work", JOURNAL_DIR),
           CHECKPOINT_STORAGE_ENV: checkpoint_storage.join(root, "checkpoints"), "RFT_JOB_STORAGE": job_url,
           "RFT_NODES": str(placement.nodes), "RFT_PROCS_PER_NODE": str(placement.processes_per_node),
           "RFT_GPUS_PER_NODE": str(placement.gpus_per_node), "PYTHONUNBUFFERED": "1",
           "RFT_MODEL_CACHE": model_cache or "~/.cache/rft-tui/models"}
    if placement.gpus_per_node == 0:
        env["RFT_DEVICE"] = "cpu"
    return env


def stage_files_url(store: Any, row: dict[str, Any], job_url: str, options: dict[str, Any] | None) -> None:
    """URL storage: the job's datasets go to `<job url>/files/` (where the worker downloads them from)."""
    for file_id in (row["training_file"], row["validation_file"]):
        if not file_id:
            continue
        src = store.get_file_row(file_id)["path"]
        url = checkpoint_storage.join(job_url, "files", Path(src).name)
        try:
            checkpoint_storage.put_file(src, url, options)
        except checkpoint_storage.StorageError:
            raise
        except Exception as e:  # noqa: BLE001 - botocore, aiohttp, OSError: name the URL and the cause
            raise checkpoint_storage.storage_failure(f"could not upload the job's file to {url}", e) from None


def stage_files(store: Any, row: dict[str, Any], storage: Path) -> None:
    """The job's datasets go to `<storage dir>/files/` under their stored names (where the worker reads them)."""
    files = storage / "files"
    files.mkdir(parents=True, exist_ok=True)
    for file_id in (row["training_file"], row["validation_file"]):
        if not file_id:
            continue
        src = store.get_file_row(file_id)["path"]
        dst = files / Path(src).name
        if dst.exists():
            continue
        tmp = dst.with_suffix(".part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def write_token(storage: Path, token: str) -> Path:
    path = storage / "job-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.chmod(path, 0o600)
    return path


class ClusterJobs:
    """Submits, watches and settles cluster jobs for one `Scheduler` (whose store thread does the writes)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.s = scheduler
        self.config: ClusterConfig | None = None
        self._executors: dict[tuple[str, int], ClusterExecutor] = {}
        self._calls = ThreadPoolExecutor(4, thread_name_prefix="rft-engine")
        self._thread: threading.Thread | None = None
        self._log_sizes: dict[str, int] = {}
        self._ending: set[tuple[str, str]] = set()
        self._submitting: set[str] = set()  # handed to an engine thread, not yet answered
        self._retry_at: dict[str, float] = {}  # unreachable cluster: not before this (monotonic)
        self._waiting: dict[str, str] = {}  # why a job still waits for its cluster (said once per reason)
        self._wake = threading.Event()
        self.since = time.time()  # steps reported over the API before this are as old as this daemon, for stalls

    @property
    def report_url(self) -> str | None:
        """The daemon's TCP URL for workers (None: no --tcp, so no cluster jobs)."""
        return self.s.report_url

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch_loop, name="rft-cluster-watch", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._wake.set()
        self._calls.shutdown(wait=False, cancel_futures=True)

    def executor(self, name: str) -> ClusterExecutor:
        if self.config is None:
            raise ExecutorUnavailable("this daemon has no cluster configuration")
        cluster = self.config.get(name, param="cluster")
        key = (cluster.name, cluster.created_at)
        if key not in self._executors:
            self._executors[key] = executor_for(cluster)
        return self._executors[key]

    def spec(self, row: dict[str, Any], attempt: int) -> LaunchSpec:
        """The submission for this attempt (also what `jobs show --script` shows)."""
        placement = load_placement(row)
        assert placement is not None and self.config is not None
        cluster = self.config.get(placement.name, param="cluster")
        storage = Path(placement.storage_dir)
        env = worker_env(row["id"], placement, self.report_url or "http://DAEMON-WITHOUT-TCP",
                         os.environ.get("RFT_MODEL_CACHE"))
        if cluster.defaults.report_url:
            env[REPORT_URL_ENV] = cluster.defaults.report_url
        env.update({k: os.environ[k] for k in PASSED_ON if k in os.environ})
        return LaunchSpec(job_id=row["id"], attempt=attempt, placement=placement, cluster=cluster, env=env,
                          token_file=str(storage / "job-token"))

    def describe(self, row: dict[str, Any]) -> str:
        return self.executor(row["cluster"]).describe(self.spec(row, (row["attempts"] or 0) or 1))

    # ------------------------------------------------------------------ submit (store thread)

    def submit(self, row: dict[str, Any]) -> None:
        """Hand a queued job to the engine, off the store thread (an engine may take long to answer, or never).

        No double submission: the submission's name (Ray submission id, Slurm job name) is chosen and recorded
        on the job (`engine_submission`) before the engine is asked, and cleared when its answer is recorded. A
        queued job that still has one was handed to an engine by a daemon that died before it heard the answer
        (or whose answer was lost): the engine is asked for that name first, and the job it has is adopted
        instead of submitting a second one.
        """
        s, job_id = self.s, row["id"]
        if job_id in self._submitting:
            return
        if self.report_url is None:
            s._transition(job_id, S.failed, f"Could not submit: {NO_TCP}", level="error", error_code="no_tcp",
                          error_message=NO_TCP, error_param="cluster")
            return
        if time.monotonic() < self._retry_at.get(job_id, 0.0):
            return
        attempt = (row["attempts"] or 0) + 1
        recovering = bool(row["engine_submission"])
        try:
            spec = self.spec(row, attempt)
        except Exception as e:  # noqa: BLE001 - the cluster was removed: fail with it
            self._refused(job_id, row["cluster"], str(e))
            return
        name = row["engine_submission"] or f"rft-{job_id}-{attempt}-{int(time.time())}"
        spec = replace(spec, submission_name=name)
        self._submitting.add(job_id)
        if recovering:
            self._on_engine_thread(self._find_or_submit, row, spec)
        else:
            self._submit_fresh(row, spec)

    def _on_engine_thread(self, fn: Any, *args: Any) -> None:
        try:
            self._calls.submit(fn, *args)
        except RuntimeError:  # shutting down: the next daemon submits it (or finds it submitted)
            self._submitting.discard(args[0]["id"])

    def _submit_fresh(self, row: dict[str, Any], spec: LaunchSpec) -> None:
        """On the store thread: a fresh token, the submission's name recorded, then the engine is asked."""
        s, job_id = self.s, row["id"]
        current = s.store.get_job_row(job_id)
        if current is None or S(current["status"]) is not S.queued:  # cancelled/paused meanwhile
            self._submitting.discard(job_id)
            return
        try:
            token = s.issue_job_token(job_id)
            s._write(s.store.update_job, job_id, engine_submission=spec.submission_name)
        except Exception as e:  # noqa: BLE001 - the store refused: fail with it
            self._submitting.discard(job_id)
            self._refused(job_id, row["cluster"], str(e))
            return
        self._on_engine_thread(self._submit_to_engine, row, spec, token)

    def _find_or_submit(self, row: dict[str, Any], spec: LaunchSpec) -> None:
        """On an engine thread, after a daemon died mid-submission: adopt the engine's job if it has one."""
        job_id = row["id"]
        try:
            found = self.executor(row["cluster"]).find(spec.submission_name)
        except ExecutorUnavailable as e:
            self.s._submit(self._not_submitted, job_id, row["cluster"], str(e), e.transient)
        except Exception as e:  # noqa: BLE001
            self.s._submit(self._not_submitted, job_id, row["cluster"], f"{type(e).__name__}: {e}", False)
        else:
            if found is not None:
                self.s._submit(self._submitted, row, spec, found, True)
            else:
                self.s._submit(self._submit_fresh, row, spec)

    def _submit_to_engine(self, row: dict[str, Any], spec: LaunchSpec, token: str) -> None:
        """On an engine thread: stage the job's files and token on the storage, then ask the engine."""
        job_id = row["id"]
        try:
            if checkpoint_storage.is_url(spec.placement.storage_dir):  # the token travels with the submission
                options = spec.cluster.defaults.storage_options
                stage_files_url(self.s.store, row, spec.placement.storage_dir, options)
                spec = replace(spec, secrets=self.secrets(token, options))
            else:
                spec.storage_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                stage_files(self.s.store, row, spec.storage_dir)
                write_token(spec.storage_dir, token)
            engine_id = self.executor(row["cluster"]).submit(spec)
        except ExecutorUnavailable as e:
            self.s._submit(self._not_submitted, job_id, row["cluster"], str(e), e.transient)
        except checkpoint_storage.StorageError as e:  # it names the URL and what failed
            self.s._submit(self._not_submitted, job_id, row["cluster"], str(e), False)
        except Exception as e:  # noqa: BLE001 - unwritable storage, a bad spec: say which
            self.s._submit(self._not_submitted, job_id, row["cluster"], f"{type(e).__name__}: {e}", False)
        else:
            if os.environ.get(FAULT_AFTER_SUBMIT_ENV) == "1":  # tests: die before the engine's id is recorded
                log.error("job %s: %s=1: killing this daemon after %s accepted %s", job_id, FAULT_AFTER_SUBMIT_ENV,
                          row["cluster"], engine_id)
                os.kill(os.getpid(), signal.SIGKILL)
            self.s._submit(self._submitted, row, spec, engine_id)

    @staticmethod
    def secrets(token: str, options: dict[str, Any] | None) -> dict[str, str]:
        """What a worker on URL storage must get but nobody may see: its report token and storage options."""
        out = {REPORT_TOKEN_ENV: token}
        if options:
            out[checkpoint_storage.STORAGE_OPTIONS_ENV] = json.dumps(options)
        return out

    def _not_submitted(self, job_id: str, cluster: str, reason: str, transient: bool) -> None:
        self._submitting.discard(job_id)
        if not transient:
            self._refused(job_id, cluster, reason)
            return
        self._retry_at[job_id] = time.monotonic() + RETRY_SUBMIT_S
        if self._waiting.get(job_id) != reason:  # one event per distinct reason, not one per try
            self._waiting[job_id] = reason
            self.s._write(self.s.store.add_event, job_id, f"Cluster {cluster} is unreachable ({reason}); the job "
                          f"stays queued and is submitted when it answers", level="warn")
            self.s.bus.publish(api.StreamEventType.job_event, job_id=job_id)
        log.warning("job %s: cluster %s unreachable, retrying in %.0f s: %s", job_id, cluster, RETRY_SUBMIT_S, reason)

    def _refused(self, job_id: str, cluster: str, reason: str) -> None:
        message = f"Could not submit to cluster {cluster}: {reason}"
        self.s._transition(job_id, S.failed, message, level="error", error_code="cluster_submit_failed",
                           error_message=message, error_param="cluster", expect=[S.queued], engine_submission=None)

    def _submitted(self, row: dict[str, Any], spec: LaunchSpec, engine_id: str, adopted: bool = False) -> None:
        """Back on the store thread: the engine has the job; record its id (or stop it, if the user moved on).

        `adopted`: an earlier daemon submitted it and died before recording the id; this one found it by name."""
        s, job_id, attempt = self.s, row["id"], spec.attempt
        self._submitting.discard(job_id)
        self._waiting.pop(job_id, None)
        self._retry_at.pop(job_id, None)
        kind = spec.cluster.kind
        job_dir = s.paths.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        with open(s.paths.job_log(job_id), "a", encoding="utf-8") as f:
            f.write(f"\n{ATTEMPT_HEADER}{attempt} {time.strftime('%Y-%m-%d %H:%M:%S')} "
                    f"{'found already submitted' if adopted else 'submitted'} to "
                    f"{kind} cluster {row['cluster']} as {engine_id}; its log follows from the engine\n")
        what = "Ray submission" if kind == "ray" else "Slurm job"
        said = (f"Found {what} {engine_id} ({spec.submission_name}) on {kind} cluster {row['cluster']}, submitted "
                "before the daemon restarted; adopted it instead of submitting again") if adopted else \
            f"Submitted to {kind} cluster {row['cluster']} ({what} {engine_id})"
        ok = s._transition(job_id, S.running, said,
                           expect=[S.queued], engine_id=engine_id, engine_state="pending", engine_submission=None,
                           worker_pid=None,
                           worker_pgid=None, worker_start_time=time.time(), worker_outcome=None,
                           worker_outcome_detail=None, requested_action=None,
                           started_at=row["started_at"] or int(time.time()), attempts=attempt)
        log.info("job %s: %s %s as %s (attempt %d)", job_id, "found on" if adopted else "submitted to",
                 row["cluster"], engine_id, attempt)
        if not ok:  # cancelled or paused while we submitted
            s._write(s.store.update_job, job_id, engine_id=engine_id, engine_state="pending", engine_submission=None)
            self._stop_soon(job_id, row["cluster"], engine_id)
        self._wake.set()

    # ------------------------------------------------------------------ control

    def cancel(self, row: dict[str, Any]) -> None:
        """After the job is answered `cancelled`: stop the engine job (off the request thread).

        A job caught mid-submission by a daemon restart may have an engine job under its recorded name: find
        it and stop it (one being submitted right now is stopped when the engine answers, see `_submitted`)."""
        if row["engine_submission"]:
            if row["id"] not in self._submitting:
                self._on_engine_thread(self._find_and_stop, row)
        elif row["engine_id"] and S(row["status"]) is S.running:
            self._stop_soon(row["id"], row["cluster"], row["engine_id"])

    def stop(self, row: dict[str, Any]) -> None:
        """Stop the engine's job of a job the daemon itself ended (a `stalled` job with on_stall fail)."""
        if row["engine_id"]:
            self._stop_soon(row["id"], row["cluster"], row["engine_id"])

    def _find_and_stop(self, row: dict[str, Any]) -> None:
        try:
            found = self.executor(row["cluster"]).find(row["engine_submission"])
        except Exception as e:  # noqa: BLE001
            log.warning("job %s: could not look up %s on %s: %s", row["id"], row["engine_submission"], row["cluster"],
                        e)
            return
        if found is not None:
            self.s._submit(self._record_found, row["id"], found)
            self._stop_soon(row["id"], row["cluster"], found)

    def _stop_soon(self, job_id: str, cluster: str, engine_id: str) -> None:
        def stop() -> None:
            try:
                self.executor(cluster).stop(engine_id)
                log.info("job %s: asked %s to stop %s", job_id, cluster, engine_id)
            except Exception as e:  # noqa: BLE001
                log.warning("job %s: could not stop %s on %s: %s", job_id, engine_id, cluster, e)
                self.s._submit(self.s._write, self.s.store.add_event, job_id,
                               f"Could not stop {engine_id} on cluster {cluster}: {e}", "warn")
            self._wake.set()

        try:
            self._calls.submit(stop)
        except RuntimeError:  # shutting down: the next daemon's watcher sees it still running
            pass

    def _record_found(self, job_id: str, engine_id: str) -> None:
        self.s._write(self.s.store.update_job, job_id, engine_id=engine_id, engine_state="pending",
                      engine_submission=None)

    def reattached(self, row: dict[str, Any]) -> None:
        """On daemon start: say so; the watcher's first round finds out whether it still runs."""
        self.s._write(self.s.store.add_event, row["id"],
                      f"Daemon re-attached to {row['engine_id']} on cluster {row['cluster']}")
        log.info("job %s: re-attached to %s on %s", row["id"], row["engine_id"], row["cluster"])

    # ------------------------------------------------------------------ watch (its own thread)

    def _watch_loop(self) -> None:
        while not self.s._stopping.is_set():
            try:
                self._watch_round()
            except Exception:
                log.exception("cluster watcher round failed")
            self._wake.wait(POLL_S)  # engines are asked on a period (no engine pushes to us); a submit wakes it
            self._wake.clear()

    def _watch_round(self) -> None:
        if self._retry_at and min(self._retry_at.values()) <= time.monotonic():
            self.s.kick()  # a queued job whose cluster was unreachable: try it again
        for row in self.s.store.cluster_jobs_to_watch():
            if self.s._stopping.is_set():
                return
            job_id, engine_id = row["id"], row["engine_id"]
            try:
                executor = self.executor(row["cluster"])
            except Exception as e:  # noqa: BLE001 - the cluster was removed from the configuration
                status = EngineStatus("unknown", str(e))
            else:
                status = executor.status(engine_id)
                self._mirror_log(row, executor, engine_id)
            if status.state != row["engine_state"] and status.state != "unknown":
                self.s._submit(self._engine_state, job_id, engine_id, status)
            if status.ended and (job_id, engine_id) not in self._ending:
                self._ending.add((job_id, engine_id))
                self.s._submit(self._ended, job_id, engine_id, status)

    def _mirror_log(self, row: dict[str, Any], executor: ClusterExecutor, engine_id: str) -> None:
        placement = load_placement(row)
        if placement is None:
            return
        text = executor.logs(engine_id, Path(placement.storage_dir))
        if text is None or len(text) == self._log_sizes.get(engine_id):
            return
        path = cluster_log(self.s.paths.job_dir(row["id"]), engine_id)
        tmp = path.with_suffix(".part")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        self._log_sizes[engine_id] = len(text)
        self.s.on_worker_notify(row["id"])

    # ------------------------------------------------------------------ settle (store thread)

    def _engine_state(self, job_id: str, engine_id: str, status: EngineStatus) -> None:
        row = self.s.store.get_job_row(job_id)
        if row is None or row["engine_id"] != engine_id or row["engine_state"] == status.state:
            return
        self.s._write(self.s.store.update_job, job_id, engine_state=status.state)
        if status.state == "running" and row["engine_state"] == "pending":
            self.s._write(self.s.store.add_event, job_id, f"{engine_id} is running on cluster {row['cluster']}")
        self.s.bus.publish(api.StreamEventType.job_event, job_id=job_id)

    def _ended(self, job_id: str, engine_id: str, status: EngineStatus) -> None:
        s = self.s
        row = s.store.get_job_row(job_id)
        if row is None or row["engine_id"] != engine_id:
            return
        log.info("job %s: %s ended on %s: %s %s", job_id, engine_id, row["cluster"], status.state, status.detail)
        if S(row["status"]) is not S.running:  # answered already (cancelled): record that the engine job ended
            s._write(s.store.update_job, job_id, engine_state=status.state, **_released(row))
            s._write(s.store.add_event, job_id, f"{engine_id} on cluster {row['cluster']} ended ({status.state})")
            s.bus.publish(api.StreamEventType.job_event, job_id=job_id)
            s.kick()
            return
        s._write(s.store.update_job, job_id, engine_state=status.state)
        if not row["worker_outcome"]:  # it ended without a word to us: what it journalled on the storage counts
            replayed = self._replay_journal(row)
            if replayed:
                row = s.store.get_job_row(job_id) or row
        outcome, detail = row["worker_outcome"], row["worker_outcome_detail"]
        if outcome and status.state == "failed":
            self._engine_disagrees(row, outcome, status)
        clear = s._cleared(row)
        if row["requested_action"] == "cancel" or outcome == "cancelled":
            s._transition(job_id, S.cancelled, "Job cancelled", **clear)
        elif outcome == "succeeded":
            s._transition(job_id, S.succeeded, "Job succeeded", **clear)
        elif outcome == "paused":
            s._transition(job_id, S.paused, "Job paused" + (f": {detail}" if detail else ""), **clear)
        elif outcome == "failed":
            self._fail(row, detail or "the worker reported a failure", clear)
        else:
            why = f"{engine_id} ended {status.state} on cluster {row['cluster']} without the worker reporting " \
                  f"a result" + (f" ({status.detail})" if status.detail else "")
            self._fail(row, why, clear)
        s.kick()

    def _engine_disagrees(self, row: dict[str, Any], outcome: str, status: EngineStatus) -> None:
        """The worker reported its outcome, yet the engine says the job failed (a process that exited non-zero
        after the report, e.g. one rank at teardown): the outcome stands, the user sees why the engine differs."""
        tail = log_tail(cluster_log(self.s.paths.job_dir(row["id"]), row["engine_id"]), 20)
        self.s._write(self.s.store.add_event, row["id"],
                      f"{row['engine_id']} ended failed on cluster {row['cluster']} after the worker reported "
                      f"{outcome}" + (f": {status.detail}" if status.detail else ""), level="warn",
                      data={"engine_state": status.state, "engine_detail": status.detail, "log_tail": tail})

    def _replay_journal(self, row: dict[str, Any]) -> int:
        """Apply the records a worker journalled on the shared storage but could not deliver (it ended while the
        daemon was away longer than it waited). Each record is applied once (by its id), so replaying records
        the daemon already has changes nothing. Returns how many were new."""
        placement = load_placement(row)
        if placement is None:
            return 0
        if checkpoint_storage.is_url(placement.storage_dir):
            found = self._journal_at_url(row, placement.storage_dir)
            if found is None:
                return 0
            path, lines = found
        else:
            path = str(Path(placement.storage_dir) / "work" / JOURNAL_DIR / "records.jsonl")
            try:
                lines = Path(path).read_bytes().splitlines()
            except OSError:
                return 0
        applied = 0
        for line in lines:
            try:
                record = REPORT_RECORD.validate_json(line)
            except ValueError:
                break  # a torn last line: the worker died mid-write; nothing after it was sent either
            if self.s._write(self.s.store.apply_report, row["id"], record):
                applied += 1
        if applied:
            self.s._write(self.s.store.add_event, row["id"], f"Replayed {applied} record(s) the worker journalled on "
                          f"the cluster's storage but could not deliver ({path})", level="warn")
            log.info("job %s: replayed %d journalled record(s) from %s", row["id"], applied, path)
        return applied

    def _journal_at_url(self, row: dict[str, Any], job_url: str) -> tuple[str, list[bytes]] | None:
        """URL storage: the journal rank 0 uploaded when it ended with records undelivered (it journals on its
        node's disk while running, so a worker killed outright leaves none here: an event says so)."""
        url = checkpoint_storage.join(job_url, "work", JOURNAL_DIR, "records.jsonl")
        cluster = self.config.find(row["cluster"]) if self.config is not None else None
        try:
            data = checkpoint_storage.read_bytes(url, cluster.defaults.storage_options if cluster else None)
        except Exception as e:  # noqa: BLE001 - unreachable storage, missing backend: say so, settle without it
            self.s._write(self.s.store.add_event, row["id"], f"Could not read the worker's report journal at {url} "
                          f"({type(e).__name__}: {str(e)[:300]}); settling from what it reported", level="warn")
            return None
        if data is None:
            self.s._write(self.s.store.add_event, row["id"], f"No report journal at {url}: the worker uploads it only "
                          "when it ends with records undelivered (one killed outright could not); settling from "
                          "what it reported", level="warn")
            return None
        return url, data.splitlines()

    def _fail(self, row: dict[str, Any], reason: str, clear: dict[str, Any]) -> None:
        s, job_id = self.s, row["id"]
        tail = log_tail(cluster_log(s.paths.job_dir(job_id), row["engine_id"]), 20)
        last = next((ln for ln in reversed(tail) if ln.strip()), "")
        message = f"{reason}." + (f" Last log line: {last.strip()[:300]}" if last else "")
        s._transition(job_id, S.failed, message, level="error", error_code="worker_failed", error_message=message,
                      **clear)
        if tail:
            s._write(s.store.add_event, job_id, "Worker log tail:\n" + "\n".join(tail), level="error",
                     data={"log_tail": tail})


def _released(row: dict[str, Any]) -> dict[str, Any]:
    ran = max(0.0, time.time() - (row["worker_start_time"] or time.time())) if row["worker_start_time"] else 0.0
    return {"worker_start_time": None, "run_seconds": (row["run_seconds"] or 0) + ran}
