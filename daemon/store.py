"""The SQLite store (`$RFT_HOME/rft.db`): jobs, files, events, metrics, samples, validation, checkpoints.

One writer per table: every row is written by a `Store` method here, whether the daemon or a worker calls
it. The daemon and each worker open their own `Store` (WAL, busy_timeout), so a worker keeps logging while
the daemon is down; the worker's `JobReporter` is a thin job-scoped wrapper around these methods. Inserts and
updates go through sqlite-utils tables; reads are plain SQL (measured: see `tests/bench/store_writes.py`).
Rows become wire objects (`daemon.api`) here and nowhere else.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from daemon import api
from daemon.metrics import TRAIN_REWARD, VALID_REWARD_MEAN
from daemon.migrations import apply_migrations
from daemon.sqlite_import import sqlite_utils

log = logging.getLogger("rft.store")
M = TypeVar("M", bound=api.WireModel)

BUSY_TIMEOUT_MS = 30_000  # workers: wait long rather than lose a step
DAEMON_BUSY_TIMEOUT_S = float(os.environ.get("RFT_STORE_BUSY_TIMEOUT_S", "5"))  # request path: bounded
HEALTH_PROBE_TIMEOUT_MS = 200
# a cancelled job's worker is still stopping: its token delivers its last records for as long as the daemon
# waits before SIGKILL (the same variable as the scheduler's grace), then it is refused like an ended job's
CANCELLED_TOKEN_GRACE_S = float(os.environ.get("RFT_CANCEL_GRACE_S", "20"))
TOKEN_ENDS_WITH = frozenset({api.JobStatus.succeeded, api.JobStatus.failed})
SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreBusy(Exception):
    """Another process held the database lock longer than the bounded wait (answered as 503 store_busy)."""


class StoreUnusable(Exception):
    """`rft.db` exists but is not a usable SQLite database; the message says which file and what to do."""


def is_busy_error(exc: BaseException) -> bool:
    """SQLite's 'database is locked' / 'database table is locked' / SQLITE_BUSY, however it surfaced."""
    if isinstance(exc, StoreBusy):
        return True
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def is_disk_full_error(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from the OS, or SQLite's SQLITE_FULL ('database or disk is full')."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc).lower()


def check_database_file(path: str | Path) -> None:
    """Refuse an existing `rft.db` that is not a SQLite database (0 bytes included), without writing to it.

    An absent file is fine (a new store is created). Opening is read-only, so a damaged file is never
    "repaired" into an empty store.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreUnusable(f"{p}: cannot read the database ({e.strerror}); fix its permissions or restore it "
                            "from a backup.") from None
    what = "is empty (0 bytes)" if not head else "is not a SQLite database"
    if head != SQLITE_MAGIC:
        raise StoreUnusable(f"{p} {what}; nothing was changed. Move it aside (mv {p} {p}.bad) to start with "
                            "an empty store, or restore it from a backup.")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=DAEMON_BUSY_TIMEOUT_S)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        if is_busy_error(e):
            return  # locked by someone else right now: not corrupt; the store opens when it can
        raise StoreUnusable(f"{p} is damaged ({e}); nothing was changed. Move it aside (mv {p} {p}.bad) to "
                            "start with an empty store, or restore it from a backup.") from None


def _configure(conn: sqlite3.Connection, busy_timeout_ms: int) -> sqlite3.Connection:
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _open(path: str | Path, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, check_same_thread=False,
                           isolation_level=None)
    return _configure(conn, busy_timeout_ms)


def connect(path: str | Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite_utils.Database:
    """A WAL connection with a busy timeout, schema migrated."""
    conn = _open(path, busy_timeout_ms)
    conn.execute("PRAGMA journal_mode=WAL")
    db = sqlite_utils.Database(conn)
    apply_migrations(db)
    return db


def dumps(value: Any) -> str | None:
    """JSON for a TEXT column (NaN/inf refused: store `None` instead)."""
    return None if value is None else json.dumps(value, separators=(",", ":"), allow_nan=False,
                                                 default=str)


def loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    return json.loads(text)


def stored_model(model: type[M], text: str | None, job_id: str) -> M | None:
    """A job's stored JSON column (snapshot, resolved hyperparameters) as its typed model.

    Rows from older versions parse (the models give later fields defaults); a row that still does not fit (hand
    made, or from a newer rft-tui with a changed shape) is logged and shown without it rather than failing the list.
    """
    if not text:
        return None
    try:
        return model.model_validate_json(text)
    except ValueError as e:
        log.warning("job %s: stored %s does not parse (%s)", job_id, model.__name__, str(e).splitlines()[0])
        return None


def finite(x: Any) -> float | None:
    """A JSON-safe float (NaN/inf become None)."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def new_job_id() -> str:
    return "ftjob-" + secrets.token_hex(12)


def checkpoint_id(job_id: str, step: int) -> str:
    return f"ftckpt-{job_id.removeprefix('ftjob-')[:12]}-{step:06d}"


MAX_SAMPLES_PER_STEP = 16
WORKER_OUTCOMES = frozenset({"succeeded", "paused", "cancelled", "failed"})
OUT_OF_MEMORY_PREFIX = "out of memory"  # how the worker's explained out-of-memory failure starts (worker/grpo.py)


def failure_replaces(recorded: Sequence[Any] | None, outcome: str, detail: str | None) -> bool:
    """Whether a rank's outcome replaces what an earlier rank of the same attempt recorded.

    The ranks of a multi-process job all finish; once one failed, the others' ends are its consequences (a
    peer's collective breaks, torchrun stops the rest): a failure is not replaced by a later non-failure, and
    of two failures the first stands -- unless the later one is the out-of-memory error that caused it.
    """
    before, before_detail = (recorded[0], recorded[1]) if recorded else (None, None)
    if before != "failed":
        return True
    return (outcome == "failed" and (detail or "").startswith(OUT_OF_MEMORY_PREFIX)
            and not (before_detail or "").startswith(OUT_OF_MEMORY_PREFIX))


class Store:
    """The daemon's side of the store, safe from any thread.

    Each thread gets its own connection (WAL readers never wait for a writer), and writers in this
    process queue on one lock with a bounded wait, so a database locked by another process costs a
    request at most `busy_timeout_s` and a 503 `store_busy`, never a stalled event loop.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = DAEMON_BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._busy_ms = max(1, int(busy_timeout_s * 1000))
        db = connect(self.path, self._busy_ms)  # migrates; becomes the creating thread's connection
        self._local = threading.local()
        self._local.conn = db.conn
        self._local.db = db
        self._conns: dict[int, sqlite3.Connection] = {threading.get_ident(): self.db.conn}
        self._conns_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._probe_conn: sqlite3.Connection | None = None
        self._probe_lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._conns_lock:
            self._closed = True
            conns = list(self._conns.values())
            self._conns.clear()
        with self._probe_lock:
            if self._probe_conn is not None:
                conns.append(self._probe_conn)
                self._probe_conn = None
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use; dead threads' connections are closed)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        conn = _open(self.path, self._busy_ms)
        with self._conns_lock:
            if self._closed:
                conn.close()
                raise sqlite3.ProgrammingError("the store is closed")
            alive = {t.ident for t in threading.enumerate()}
            for ident in [i for i in self._conns if i not in alive or i == threading.get_ident()]:
                with contextlib.suppress(sqlite3.Error):
                    self._conns.pop(ident).close()
            self._conns[threading.get_ident()] = conn
        self._local.conn = conn
        self._local.db = sqlite_utils.Database(conn, execute_plugins=False)
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection as a sqlite-utils database (for table inserts and updates)."""
        self.conn  # noqa: B018 - opens this thread's connection (and its Database) on first use
        return self._local.db

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all or nothing; StoreBusy after the bounded wait for the lock.

        Re-entrant on one thread: a `tx()` inside another joins it (so `apply_report` can record a record's id
        and apply it with the ordinary write methods in one transaction).
        """
        if getattr(self._local, "tx_depth", 0):
            self._local.tx_depth += 1
            try:
                yield self.conn
            finally:
                self._local.tx_depth -= 1
            return
        with self._outer_tx() as conn:
            self._local.tx_depth = 1
            try:
                yield conn
            finally:
                self._local.tx_depth = 0

    @contextmanager
    def _outer_tx(self) -> Iterator[sqlite3.Connection]:
        started = time.monotonic()
        if not self._write_lock.acquire(timeout=self.busy_timeout_s):
            raise StoreBusy(f"the store at {self.path} stayed locked for {self.busy_timeout_s:g} s")
        try:
            conn = self.conn
            left_ms = self._busy_ms - int((time.monotonic() - started) * 1000)
            if left_ms < self._busy_ms - 10:  # queued behind another writer: the wait is bounded in total
                conn.execute(f"PRAGMA busy_timeout={max(1, left_ms)}")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                finally:
                    conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            else:
                conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
        finally:
            self._write_lock.release()

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        cols = [d[0] for d in cur.description] if cur.description else []
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def probe(self) -> tuple[str, dict[str, int] | None]:
        """("ok"|"busy", job counts by status or None): answers within ~2 x HEALTH_PROBE_TIMEOUT_MS.

        "busy" means another process holds the write lock (or locked readers out) right now; a write
        request would wait up to `busy_timeout_s` and then get a 503.
        """
        with self._probe_lock:
            if self._probe_conn is None:
                self._probe_conn = _open(self.path, HEALTH_PROBE_TIMEOUT_MS)
            conn = self._probe_conn
            counts: dict[str, int] | None = None
            try:
                counts = {r[0]: r[1] for r in conn.execute(
                    "SELECT status, COUNT(*) FROM jobs WHERE status IN ('running', 'queued') GROUP BY status")}
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError as e:
                if not is_busy_error(e):
                    raise
                return "busy", counts
            return "ok", counts

    # ------------------------------------------------------------------ files

    def insert_file(self, row: dict[str, Any]) -> None:
        """A file the store did not have (a second import of the same bytes keeps the first row)."""
        with self.tx():
            self.db.table("files").insert(row, ignore=True)

    def get_file_row(self, file_id: str) -> dict[str, Any] | None:
        return self.query_one("SELECT * FROM files WHERE id = ?", [file_id])

    def file_by_sha(self, sha256: str) -> dict[str, Any] | None:
        return self.query_one("SELECT * FROM files WHERE sha256 = ?", [sha256])

    def list_file_rows(self, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if after:
            anchor = self.get_file_row(after)
            if anchor is not None:
                return self.query(
                    "SELECT * FROM files WHERE (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT ?",
                    [anchor["created_at"], anchor["id"], limit],
                )
        return self.query("SELECT * FROM files ORDER BY created_at DESC, id DESC LIMIT ?", [limit])

    def file_paths(self) -> list[str]:
        """Where every stored file's bytes are (the start-up sweep keeps these)."""
        return [r["path"] for r in self.query("SELECT path FROM files")]

    @staticmethod
    def file_object(row: dict[str, Any]) -> api.FileObject:
        return api.FileObject(
            id=row["id"], bytes=row["bytes"], created_at=row["created_at"], filename=row["filename"],
            purpose=row["purpose"], status=row["status"], status_details=row["status_details"],
            sha256=row["sha256"], rows=row["rows"], source_path=row["source_path"],
        )

    # ------------------------------------------------------------------ jobs

    def insert_job(self, row: dict[str, Any], event: str) -> None:
        with self.tx() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            self.db.table("jobs").insert({**row, "seq": seq, "updated_at": time.time()})
            self._event(row["id"], event)

    def get_job_row(self, job_id: str) -> dict[str, Any] | None:
        return self.query_one("SELECT * FROM jobs WHERE id = ?", [job_id])

    def list_job_rows(self, after: str | None = None, limit: int = 20,
                      statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        if statuses:
            st = list(statuses)
            where.append(f"status IN ({', '.join('?' for _ in st)})")
            params.extend(st)
        if after:
            anchor = self.query_one("SELECT seq FROM jobs WHERE id = ?", [after])
            if anchor is not None:
                where.append("seq < ?")
                params.append(anchor["seq"])
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self.query(f"SELECT * FROM jobs {clause} ORDER BY seq DESC LIMIT ?", [*params, limit])

    def jobs_with_status(self, *statuses: api.JobStatus) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in statuses)
        return self.query(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY seq",
                          [s.value for s in statuses])

    def update_job(self, job_id: str, **fields: Any) -> None:
        with self.tx():
            self._update_job(job_id, fields)

    def _update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        """Inside a transaction: set `fields` (and updated_at) on one job; a job that is gone is left alone."""
        with contextlib.suppress(sqlite_utils.db.NotFoundError):
            self.db.table("jobs").update(job_id, {**fields, "updated_at": time.time()})

    def transition(self, job_id: str, new: api.JobStatus, message: str | None = None,
                   level: str = "info", expect: Iterable[api.JobStatus] | None = None,
                   **fields: Any) -> bool:
        """Move a job to `new` if the state machine allows it; record the event. False if not allowed."""
        with self.tx() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()
            if row is None:
                return False
            old = api.JobStatus(row[0])
            if expect is not None and old not in set(expect):
                return False
            if new is not old and new not in api.JOB_TRANSITIONS[old]:
                return False
            fields = {**fields, "status": new.value}
            if new.is_terminal():
                fields.setdefault("finished_at", int(time.time()))
            self._update_job(job_id, fields)
            if new in TOKEN_ENDS_WITH:  # its worker is done: its reporting token reaches nothing any more
                conn.execute("DELETE FROM job_tokens WHERE job_id = ?", [job_id])
            self._event(job_id, message or f"Job {new.value.replace('_', ' ')}", level=level,
                        data={"status": new.value, "previous_status": old.value})
        return True

    def job_object(self, row: dict[str, Any], with_snapshot: bool = True) -> api.FineTuningJob:
        """The job as the API shows it: secrets (tool and grader headers, URL passwords) masked; the worker reads
        the stored snapshot itself (`JobReporter.spec`, `/report/spec`)."""
        method = api.redact_secrets(loads(row["method"], {}))
        resolved = stored_model(api.ResolvedHyperparameters, row["resolved_hyperparameters"], row["id"])
        hp_source = resolved.model_dump() if resolved else loads(row["hyperparameters"], {})
        error = None
        if row["error_code"] or row["error_message"]:
            error = api.JobError(code=row["error_code"] or "error", message=row["error_message"] or "",
                                 param=row["error_param"])
        now = time.time()
        elapsed = row["run_seconds"] or 0.0
        if row["status"] == api.JobStatus.running.value and row["worker_start_time"]:
            elapsed += max(0.0, now - max(row["worker_start_time"], row["started_at"] or 0))
        eta = None
        if row["total_steps"] and row["step"] and row["step"] < row["total_steps"] and elapsed > 0:
            eta = elapsed / row["step"] * (row["total_steps"] - row["step"])
        placement = load_placement(row)
        worker = None
        if row["worker_pid"]:
            worker = {"pid": row["worker_pid"], "pgid": row["worker_pgid"],
                      "start_time": row["worker_start_time"]}
        return api.FineTuningJob(
            id=row["id"], created_at=row["created_at"], error=error,
            fine_tuned_model=row["fine_tuned_model"], finished_at=row["finished_at"],
            hyperparameters={k: hp_source.get(k, "auto")
                             for k in ("batch_size", "learning_rate_multiplier", "n_epochs")},
            model=row["model"], seed=row["seed"], status=api.JobStatus(row["status"]),
            trained_tokens=row["trained_tokens"], training_file=row["training_file"],
            validation_file=row["validation_file"], metadata=loads(row["metadata"]), method=method,
            user_provided_suffix=row["suffix"],
            estimated_finish=int(now + eta) if eta is not None and row["status"] == "running" else None,
            progress=api.JobProgress(
                step=row["step"], total_steps=row["total_steps"], train_reward_mean=row["train_reward_mean"],
                valid_reward_base=row["valid_reward_base"], valid_reward_latest=row["valid_reward_latest"],
                valid_reward_best=row["valid_reward_best"], started_at=row["started_at"],
                elapsed_s=round(elapsed, 3), eta_s=None if eta is None else round(eta, 1),
                **self._open_alarms(row["id"]),
            ),
            resolved_hyperparameters=resolved,
            snapshot=_shown_snapshot(row) if with_snapshot else None,
            worker=worker,
            cluster=placement.redacted() if placement else None,
        )

    # ------------------------------------------------------------------ events

    def add_event(self, job_id: str, message: str, level: str = "info", data: Mapping[str, Any] | None = None,
                  type: str = "message") -> None:
        with self.tx():
            self._event(job_id, message, level=level, data=data, type=type)

    def _event(self, job_id: str, message: str, level: str = "info", data: Mapping[str, Any] | None = None,
               type: str = "message") -> None:
        """Inside a transaction: one job event (status changes, validations, checkpoints, warnings)."""
        self.db.table("job_events").insert({"job_id": job_id, "created_at": int(time.time()), "level": level,
                                      "type": type, "message": message,
                                      "data": None if data is None else dumps(dict(data))})

    def list_events(self, job_id: str, after: str | None = None, limit: int = 20,
                    order: str = "desc") -> tuple[list[api.JobEvent], bool]:
        """OpenAI lists events newest first; `after` is an event id (cursor)."""
        params: list[Any] = [job_id]
        cond = ""
        if after:
            seq = _event_seq(after)
            if seq is not None:
                cond = " AND seq < ?" if order == "desc" else " AND seq > ?"
                params.append(seq)
        direction = "DESC" if order == "desc" else "ASC"
        rows = self.query(f"SELECT * FROM job_events WHERE job_id = ?{cond} ORDER BY seq {direction} LIMIT ?",
                          [*params, limit + 1])
        has_more = len(rows) > limit
        return [event_object(r) for r in rows[:limit]], has_more

    # ------------------------------------------------------------------ metrics and friends

    def metrics(self, job_id: str, after_step: int | None = None, limit: int = 10_000) -> list[api.MetricStep]:
        rows = self.query(
            'SELECT step, created_at, "values" FROM metrics WHERE job_id = ? AND step > ? ORDER BY step LIMIT ?',
            [job_id, -1 if after_step is None else after_step, limit],
        )
        return [api.MetricStep(step=r["step"], created_at=r["created_at"], values=loads(r["values"], {}))
                for r in rows]

    def recent_metrics(self, job_id: str, limit: int) -> list[api.MetricStep]:
        """The latest `limit` steps, newest first (the scheduler's stall check)."""
        rows = self.query('SELECT step, created_at, "values" FROM metrics WHERE job_id = ? ORDER BY step DESC '
                          'LIMIT ?', [job_id, limit])
        return [api.MetricStep(step=r["step"], created_at=r["created_at"], values=loads(r["values"], {}))
                for r in rows]

    def last_metric_step(self, job_id: str) -> int | None:
        row = self.query_one("SELECT MAX(step) AS s FROM metrics WHERE job_id = ?", [job_id])
        return None if row is None else row["s"]

    def health_history(self, job_id: str) -> api.HealthHistory:
        """What a resumed worker rebuilds its health monitor from: the monitored values of the first and latest
        stored steps its windows need (health.history_bounds, from the job's guardrails) and every validation
        pass's mean (non-finite rewards count as 0, as log_validation does)."""
        from daemon import health

        row = self.query_one("SELECT snapshot FROM jobs WHERE id = ?", [job_id])
        snapshot = stored_model(api.JobSnapshot, row["snapshot"] if row else None, job_id)
        first, latest = health.history_bounds(snapshot.guardrails if snapshot else None)
        sql = 'SELECT step, "values" FROM metrics WHERE job_id = ? ORDER BY step {} LIMIT ?'
        rows = {r["step"]: r for r in self.query(sql.format("ASC"), [job_id, first])
                + self.query(sql.format("DESC"), [job_id, latest])}
        steps = [api.HealthHistoryStep(step=s, values=health.monitored_values(loads(rows[s]["values"], {})))
                 for s in sorted(rows)]
        means = self.query("SELECT step, AVG(reward) AS mean FROM validation_rows WHERE job_id = ? GROUP BY step "
                           "ORDER BY step", [job_id])
        return api.HealthHistory(steps=steps, validations=[
            api.HealthHistoryValidation(step=r["step"], mean=r["mean"]) for r in means if r["mean"] is not None])

    def validation_steps(self, job_id: str) -> list[int]:
        return [r["step"] for r in self.query(
            "SELECT DISTINCT step FROM validation_rows WHERE job_id = ? ORDER BY step", [job_id])]

    def validation_rows(self, job_id: str, step: int) -> list[api.ValidationRow]:
        rows = self.query("SELECT * FROM validation_rows WHERE job_id = ? AND step = ? ORDER BY row_index",
                          [job_id, step])
        return [api.ValidationRow(step=r["step"], row_index=r["row_index"], prompt=r["prompt"],
                                  reference=r["reference"], output=r["output"], reward=r["reward"],
                                  sub_rewards=loads(r["sub_rewards"], {}), errors=loads(r["errors"], {}),
                                  item=loads(r["item"]), **episode_fields(r)) for r in rows]

    def samples(self, job_id: str, after_step: int | None = None, limit: int = 200,
                before_id: int | None = None) -> tuple[list[api.TrainingSample], bool]:
        params: list[Any] = [job_id, -1 if after_step is None else after_step]
        cond = ""
        if before_id is not None:
            cond = " AND id < ?"
            params.append(before_id)
        rows = self.query(f"SELECT * FROM samples WHERE job_id = ? AND step > ?{cond} ORDER BY id DESC LIMIT ?",
                          [*params, limit + 1])
        has_more = len(rows) > limit
        return [api.TrainingSample(id=r["id"], step=r["step"], prompt=r["prompt"], completion=r["completion"],
                                   reward=r["reward"], sub_rewards=loads(r["sub_rewards"], {}),
                                   errors=loads(r["errors"], {}), **episode_fields(r))
                for r in rows[:limit]], has_more

    def checkpoints(self, job_id: str, include_deleted: bool = False) -> list[api.JobCheckpoint]:
        cond = "" if include_deleted else " AND deleted_at IS NULL"
        rows = self.query(f"SELECT * FROM checkpoints WHERE job_id = ?{cond} ORDER BY step DESC", [job_id])
        reasons = kept_because(rows)
        return [checkpoint_object(r, reasons.get(r["id"], [])) for r in rows]


    # ------------------------------------------------------------------ re-scorings (never the original scores)

    def validation_scores(self, job_id: str, step: int) -> dict[int, RowScore]:
        """Each validation row's reward, sub-rewards and error flags at a step, by row index (comparisons read it)."""
        rows = self.query("SELECT row_index, reward, sub_rewards, errors FROM validation_rows "
                          "WHERE job_id = ? AND step = ?", [job_id, step])
        return {r["row_index"]: _row_score(r) for r in rows}

    def sample_rows(self, job_id: str) -> list[dict[str, Any]]:
        """Every stored training sample of a job, oldest first, with the item it was graded against (or None)."""
        rows = self.query("SELECT id, step, prompt, completion, reward, item, output_messages, stop_reason "
                          "FROM samples WHERE job_id = ? ORDER BY id", [job_id])
        return [{**r, "item": loads(r["item"]), **episode_fields(r)} for r in rows]

    def insert_rescoring(self, row: Mapping[str, Any], scored: Iterable[Mapping[str, Any]]) -> bool:
        """A named re-scoring and its rows, all or nothing; False (nothing written) if the name is taken."""
        with self.tx() as conn:
            if conn.execute("SELECT 1 FROM rescorings WHERE job_id = ? AND name = ?",
                            [row["job_id"], row["name"]]).fetchone():
                return False
            self.db.table("rescorings").insert(dict(row))
            self.db.table("rescored_rows").insert_all(
                {"rescoring_id": row["id"], "kind": r["kind"], "step": r["step"], "row_key": r["row_key"],
                 "reward": finite(r["reward"]) or 0.0, "sub_rewards": dumps(_clean_map(r.get("sub_rewards"))),
                 "errors": dumps(r.get("errors") or {})} for r in scored)
        return True

    def rescoring_rows(self, job_id: str) -> list[dict[str, Any]]:
        """A job's re-scorings, oldest first."""
        return self.query("SELECT * FROM rescorings WHERE job_id = ? ORDER BY created_at, rowid", [job_id])

    def rescoring_row(self, job_id: str, name: str) -> dict[str, Any] | None:
        return self.query_one("SELECT * FROM rescorings WHERE job_id = ? AND name = ?", [job_id, name])

    def rescored_validation(self, rescoring_id: str, step: int) -> dict[int, RowScore]:
        """A re-scoring's reward, sub-rewards and error flags per validation row at a step, by row index."""
        rows = self.query("SELECT row_key, reward, sub_rewards, errors FROM rescored_rows WHERE rescoring_id = ? "
                          "AND kind = 'validation' AND step = ?", [rescoring_id, step])
        return {r["row_key"]: _row_score(r) for r in rows}

    def rescored_validation_steps(self, rescoring_id: str) -> list[int]:
        return [r["step"] for r in self.query(
            "SELECT DISTINCT step FROM rescored_rows WHERE rescoring_id = ? AND kind = 'validation' ORDER BY step",
            [rescoring_id])]

    # ------------------------------------------------------------------ what a worker writes (JobReporter)

    def requested_action(self, job_id: str) -> str | None:
        row = self.query_one("SELECT requested_action FROM jobs WHERE id = ?", [job_id])
        return None if row is None else row["requested_action"]

    def worker_started(self, job_id: str, total_steps: int | None,
                       resolved_hyperparameters: Mapping[str, Any] | None = None, message: str | None = None) -> None:
        fields: dict[str, Any] = {"total_steps": total_steps}
        if resolved_hyperparameters is not None:
            fields["resolved_hyperparameters"] = dumps(dict(resolved_hyperparameters))
        with self.tx():
            self._update_job(job_id, fields)
            if message:
                self._event(job_id, message)

    def log_step(self, job_id: str, step: int, values: Mapping[str, Any],
                 samples: Iterable[Mapping[str, Any]] = (), total_steps: int | None = None,
                 trained_tokens: int | None = None) -> bool:
        """One training step, atomically; False (and nothing written) if the step is there already.

        Idempotent on (job, step), so a resumed or re-adopted worker never duplicates a step. No event: progress
        lives in the metrics rows, events are for status (issue 10, bug 11).
        """
        clean = {k: finite(v) for k, v in values.items()}
        with self.tx() as conn:
            if conn.execute("SELECT 1 FROM metrics WHERE job_id = ? AND step = ?", [job_id, step]).fetchone():
                return False
            job = conn.execute("SELECT step FROM jobs WHERE id = ?", [job_id]).fetchone()
            if job is None:
                raise LookupError(f"job {job_id} is not in {self.path}")
            self.db.table("metrics").insert({"job_id": job_id, "step": step, "created_at": time.time(),
                                       "values": dumps(clean)})
            self.db.table("samples").insert_all(
                {"job_id": job_id, "step": step, "prompt": str(s.get("prompt", "")),
                  "completion": str(s.get("completion", "")), "reward": finite(s.get("reward")) or 0.0,
                  "sub_rewards": dumps(_score_map(s.get("sub_rewards"))), "errors": dumps(s.get("errors") or {}),
                  "item": dumps(s.get("item")), **episode_columns(s)}
                 for s in list(samples)[:MAX_SAMPLES_PER_STEP])
            fields: dict[str, Any] = {"step": max(step, job[0] or 0)}
            if clean.get(TRAIN_REWARD) is not None:  # the registry's train reward key
                fields["train_reward_mean"] = clean[TRAIN_REWARD]
            if total_steps is not None:
                fields["total_steps"] = total_steps
            if trained_tokens is not None:
                fields["trained_tokens"] = int(trained_tokens)
            self._update_job(job_id, fields)
        return True

    def log_validation(self, job_id: str, step: int, rows: Iterable[Mapping[str, Any]],
                       summary: Mapping[str, Any] | None = None) -> float | None:
        """One validation pass (step 0 = the base model), replacing an earlier pass at that step; the mean."""
        rows = list(rows)
        rewards = [finite(r.get("reward")) or 0.0 for r in rows]
        mean = sum(rewards) / len(rewards) if rewards else None
        with self.tx() as conn:
            self.db.table("validation_rows").insert_all(
                ({"job_id": job_id, "step": step, "row_index": int(r.get("row_index", i)),
                  "prompt": str(r.get("prompt", "")),
                  "reference": None if r.get("reference") is None else str(r.get("reference")),
                  "output": str(r.get("output", "")), "reward": rewards[i],
                  "sub_rewards": dumps(_score_map(r.get("sub_rewards"))), "errors": dumps(r.get("errors") or {}),
                  "item": dumps(r.get("item")), **episode_columns(r)} for i, r in enumerate(rows)), replace=True)
            job = conn.execute("SELECT total_steps, valid_reward_base, valid_reward_best FROM jobs WHERE id = ?",
                               [job_id]).fetchone()
            if job is None:
                raise LookupError(f"job {job_id} is not in {self.path}")
            total, base, best = job
            if mean is not None:
                self._update_job(job_id, {"valid_reward_latest": mean,
                                          "valid_reward_base": mean if step == 0 or base is None else base,
                                          "valid_reward_best": mean if best is None else max(best, mean)})
            scores = {VALID_REWARD_MEAN: mean, **_clean_map(summary)}
            self._event(job_id, f"Validation at step {step}: mean reward "
                        f"{'n/a' if mean is None else f'{mean:.3f}'} over {len(rows)} rows",
                        type="metrics", data={"step": step, "total_steps": total, "scores": scores})
        return mean

    def add_checkpoint(self, job_id: str, step: int, path: str, metrics: Mapping[str, Any]) -> str:
        """A checkpoint saved at `step` (a second save at the same step replaces the first)."""
        ckpt_id = checkpoint_id(job_id, step)
        clean = {k: (finite(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
        with self.tx():
            self.db.table("checkpoints").insert({"id": ckpt_id, "job_id": job_id, "step": step,
                                           "created_at": int(time.time()), "path": str(path),
                                           "metrics": dumps(clean),
                                           "valid_reward_mean": finite(metrics.get("valid_reward_mean")),
                                           "deleted_at": None}, replace=True)
            self._event(job_id, f"Checkpoint saved at step {step}",
                        data={"step": step, "checkpoint": ckpt_id, "path": str(path)})
        return ckpt_id

    def checkpoints_to_delete(self, job_id: str) -> list[dict[str, Any]]:
        """Live checkpoints the one rule (`kept_because`: 3 best + latest) does not keep."""
        live = self.query("SELECT * FROM checkpoints WHERE job_id = ? AND deleted_at IS NULL ORDER BY step",
                          [job_id])
        reasons = kept_because(live)
        return [r for r in live if not reasons.get(r["id"])]

    def mark_checkpoint_deleted(self, ckpt_id: str, job_id: str | None = None) -> None:
        """Mark a checkpoint deleted (with `job_id`: only if it is that job's, so a job token reaches no other)."""
        with self.tx() as conn:
            cond, params = ("", [int(time.time()), ckpt_id]) if job_id is None else \
                (" AND job_id = ?", [int(time.time()), ckpt_id, job_id])
            conn.execute(f"UPDATE checkpoints SET deleted_at = ? WHERE id = ?{cond}", params)

    def worker_finished(self, job_id: str, outcome: str, detail: str | None = None,
                        fine_tuned_model: str | None = None) -> None:
        """How a worker ended (succeeded, paused, cancelled, failed), for the daemon to settle the job."""
        if outcome not in WORKER_OUTCOMES:
            raise ValueError(f"unknown worker outcome {outcome!r}")
        with self.tx() as conn:
            job = conn.execute("SELECT status, fine_tuned_model, worker_outcome, worker_outcome_detail FROM jobs "
                               "WHERE id = ?", [job_id]).fetchone()
            if job is None:
                return
            status, model = job[0], job[1]
            if not failure_replaces(job[2:], outcome, detail):
                return
            # a job the user cancelled stays cancelled without a model, whatever this worker got to finish
            keep = model if status == api.JobStatus.cancelled.value else (fine_tuned_model or model)
            self._update_job(job_id, {"worker_outcome": outcome, "worker_outcome_detail": detail,
                                      "fine_tuned_model": keep})

    # ------------------------------------------------------------------ reporting over the API (issue 12)

    def apply_report(self, job_id: str, record: api.ReportRecord) -> bool:
        """Apply one worker record; False (nothing written) if a record with its id was applied before.

        The record's id is stored in the same transaction as its effect, so a replay after a lost answer
        is a no-op and a crash between the two cannot happen. Records without an id (the local reporter,
        which never replays) are applied as they come. Steps are idempotent by step number as well.
        """
        with self.tx() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", [job_id]).fetchone() is None:
                raise LookupError(f"job {job_id} is not in {self.path}")
            if record.id is not None:
                seen = conn.execute("INSERT OR IGNORE INTO report_records (job_id, record_id, kind, applied_at) "
                                    "VALUES (?, ?, ?, ?)", [job_id, record.id, record.kind, time.time()])
                if seen.rowcount == 0:
                    return False
            return self._apply(job_id, record)

    def _apply(self, job_id: str, record: api.ReportRecord) -> bool:
        """Inside a transaction: one record's effect, through the same methods the local worker calls."""
        if isinstance(record, api.ReportStep):
            return self.log_step(job_id, record.step, record.values,
                                 [s.model_dump(exclude_none=True) for s in record.samples], record.total_steps,
                                 record.trained_tokens)
        if isinstance(record, api.ReportAlarm):  # idempotent per open episode, whatever the record id
            if record.cleared:
                return self.clear_alarm(job_id, record.name, record.step, record.grader)
            return self.add_alarm(job_id, record.model_dump(exclude={"id", "kind", "cleared"})) is not None
        if isinstance(record, api.ReportStarted):
            hp = record.resolved_hyperparameters
            self.worker_started(job_id, record.total_steps, None if hp is None else hp.model_dump(), record.message)
        elif isinstance(record, api.ReportValidation):
            self.log_validation(job_id, record.step, [r.model_dump(exclude_none=True) for r in record.rows],
                                record.summary)
        elif isinstance(record, api.ReportCheckpoint):
            self.add_checkpoint(job_id, record.step, record.location, record.metrics)
        elif isinstance(record, api.ReportCheckpointDeleted):
            self.mark_checkpoint_deleted(record.checkpoint_id, job_id=job_id)
        elif isinstance(record, api.ReportEvent):
            self.add_event(job_id, record.message, level=record.level, data=record.data)
        elif isinstance(record, api.ReportFinish):
            self.worker_finished(job_id, record.outcome, record.detail, record.fine_tuned_model)
        else:  # pragma: no cover - the union is closed; a new kind needs a branch here
            raise TypeError(f"unknown report record {type(record).__name__}")
        return True

    def report_state(self, job_id: str) -> api.ReportJobState | None:
        """What a (re)starting worker reads about its job; None if there is no such job."""
        row = self.get_job_row(job_id)
        if row is None:
            return None
        return api.ReportJobState(id=job_id, status=api.JobStatus(row["status"]), attempts=row["attempts"] or 0,
                                  resume_from=row["resume_from"], requested_action=row["requested_action"],
                                  last_step=self.last_metric_step(job_id),
                                  validated_steps=self.validation_steps(job_id),
                                  oom_retries=row.get("oom_retries") or 0,
                                  health=self.health_history(job_id))

    def report_control(self, job_id: str) -> api.ReportControl | None:
        row = self.query_one("SELECT status, requested_action, stack_requests FROM jobs WHERE id = ?", [job_id])
        if row is None:
            return None
        return api.ReportControl(status=api.JobStatus(row["status"]), requested_action=row["requested_action"],
                                 stacks_requested=row["stack_requests"] or 0)

    def request_stacks(self, job_id: str) -> None:
        """Ask a cluster job's worker for every thread's stack: it reads the new count with its control state."""
        with self.tx() as conn:
            conn.execute("UPDATE jobs SET stack_requests = stack_requests + 1 WHERE id = ?", [job_id])

    def mint_job_token(self, job_id: str) -> str:
        """A new reporting token for one job (replacing its previous one); only its hash is stored.

        The token names its job (`rftjob.<job id>.<secret>`) so the daemon finds the hash to compare with
        without a scan; it can append to that job and read that job's spec and control state, nothing else.
        """
        token = f"{JOB_TOKEN_PREFIX}{job_id}.{secrets.token_urlsafe(32)}"
        with self.tx():
            self.db.table("job_tokens").insert({"job_id": job_id, "token_sha256": _sha256(token),
                                                "created_at": int(time.time())}, replace=True)
        return token

    def revoke_job_token(self, job_id: str) -> None:
        with self.tx() as conn:
            conn.execute("DELETE FROM job_tokens WHERE job_id = ?", [job_id])

    def job_token_matches(self, job_id: str, token: str) -> bool:
        """Whether `token` is the live reporting token of `job_id` (constant-time compare of the hashes).

        Tokens end with their job: deleted when it succeeds or fails; a cancelled job's is honoured for
        CANCELLED_TOKEN_GRACE_S after the cancel (its worker is still stopping, and says what it did last)."""
        row = self.query_one("SELECT t.token_sha256, j.status, j.finished_at FROM job_tokens t JOIN jobs j "
                             "ON j.id = t.job_id WHERE t.job_id = ?", [job_id])
        if row is None:
            return False
        if row["status"] == api.JobStatus.cancelled.value and \
                time.time() > (row["finished_at"] or 0) + CANCELLED_TOKEN_GRACE_S:
            return False
        return hmac.compare_digest(row["token_sha256"], _sha256(token))

    # ------------------------------------------------------------------ alarms (daemon/health.py)

    def add_alarm(self, job_id: str, alarm: Mapping[str, Any]) -> str | None:
        """Record an alarm firing and its job event, atomically; None (nothing written) when the same episode
        (name, grader, severity) is open already -- a resumed worker's fresh monitor fires it again."""
        name, grader, severity = str(alarm["name"]), alarm.get("grader"), str(alarm["severity"])
        if name not in api.ALARM_NAMES or severity not in ("warning", "critical"):
            raise ValueError(f"unknown alarm {name!r} or severity {severity!r}")
        with self.tx() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", [job_id]).fetchone() is None:
                raise LookupError(f"job {job_id} is not in {self.path}")
            if conn.execute("SELECT 1 FROM job_alarms WHERE job_id = ? AND name = ? AND grader IS ? AND severity = ?"
                            " AND cleared_at IS NULL", [job_id, name, grader, severity]).fetchone():
                return None
            action = str(alarm.get("action") or "warn")
            row = {"job_id": job_id, "created_at": int(time.time()), "name": name, "grader": grader,
                   "severity": severity, "step": alarm.get("step"), "value": finite(alarm.get("value")),
                   "threshold": finite(alarm.get("threshold")), "message": str(alarm.get("message") or name),
                   "action": action}
            seq = int(conn.execute(
                f"INSERT INTO job_alarms ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values())).lastrowid or 0)
            label = f"{name} ({grader})" if grader else name
            does = {"pause": "; pausing the job", "cancel": "; cancelling the job",
                    "fail": "; failing the job"}.get(action, "")
            self._event(job_id, f"Alarm {label} ({severity}) at step {row['step']}: {row['message']}{does}",
                        level="error" if severity == "critical" else "warn",
                        data={"alarm": name, "alarm_id": alarm_id(seq), "severity": severity,
                              "step": row["step"], "value": row["value"], "threshold": row["threshold"],
                              "action": action, "grader": grader})
        return alarm_id(seq)

    def clear_alarm(self, job_id: str, name: str, step: int | None, grader: str | None = None) -> bool:
        """Close the open episode of an alarm (the signal recovered); False when none was open."""
        with self.tx() as conn:
            open_ = conn.execute("SELECT seq FROM job_alarms WHERE job_id = ? AND name = ? AND grader IS ? "
                                 "AND cleared_at IS NULL", [job_id, name, grader]).fetchall()
            if not open_:
                return False
            conn.execute(f"UPDATE job_alarms SET cleared_at = ?, cleared_step = ? WHERE seq IN "
                         f"({', '.join('?' for _ in open_)})", [int(time.time()), step, *(r[0] for r in open_)])
            label = f"{name} ({grader})" if grader else name
            self._event(job_id, f"Alarm {label} cleared at step {step}", level="info",
                        data={"alarm": name, "cleared": True, "step": step, "grader": grader})
        return True

    def _open_alarms(self, job_id: str) -> dict[str, Any]:
        """JobProgress's alarm fields: how many episodes are open, the worst severity, the latest one's name."""
        rows = self.query("SELECT name, severity FROM job_alarms WHERE job_id = ? AND cleared_at IS NULL ORDER BY seq",
                          [job_id])
        if not rows:
            return {}
        worst = "critical" if any(r["severity"] == "critical" for r in rows) else "warning"
        return {"alarms_open": len(rows), "alarm_severity": worst, "alarm_latest": rows[-1]["name"]}

    def alarms(self, job_id: str, after_seq: int = 0) -> list[api.JobAlarm]:
        rows = self.query("SELECT * FROM job_alarms WHERE job_id = ? AND seq > ? ORDER BY seq", [job_id, after_seq])
        return [alarm_object(r) for r in rows]

    def last_alarm_seq(self, job_id: str) -> int:
        row = self.query_one("SELECT MAX(seq) AS s FROM job_alarms WHERE job_id = ?", [job_id])
        return int(row["s"]) if row and row["s"] is not None else 0

    # ------------------------------------------------------------------ what the scheduler asks

    def workers_holding_gpus(self) -> int:
        """Jobs holding a GPU set: running ones, and cancelled ones whose worker has not exited yet."""
        row = self.query_one("SELECT COUNT(*) AS n FROM jobs WHERE (status = ? OR worker_pid IS NOT NULL) "
                             "AND cluster IS NULL", [api.JobStatus.running.value])
        return int(row["n"]) if row else 0

    def cluster_jobs_to_watch(self) -> list[dict[str, Any]]:
        """Cluster jobs whose engine job may still run: running ones, and answered ones not yet seen to end."""
        return self.query("SELECT * FROM jobs WHERE cluster IS NOT NULL AND engine_id IS NOT NULL AND "
                          "(status = ? OR engine_state IS NULL OR engine_state NOT IN "
                          "('succeeded', 'failed', 'stopped', 'gone')) ORDER BY seq",
                          [api.JobStatus.running.value])

    def stopping_workers(self) -> list[dict[str, Any]]:
        """Jobs answered already (cancelled) whose worker was still stopping when last seen."""
        return self.query("SELECT * FROM jobs WHERE worker_pid IS NOT NULL AND status != ? ORDER BY seq",
                          [api.JobStatus.running.value])


# ---------------------------------------------------------------------- shared row helpers


JOB_TOKEN_PREFIX = "rftjob."


def job_of_token(token: str) -> str | None:
    """The job id a reporting token names (`rftjob.<job id>.<secret>`), or None for any other token.

    The secret is URL-safe base64 (no '.'), so the last '.' ends the job id whatever the id holds.
    """
    if not token.startswith(JOB_TOKEN_PREFIX):
        return None
    job_id, sep, secret = token.removeprefix(JOB_TOKEN_PREFIX).rpartition(".")
    return job_id if sep and job_id and secret else None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RowScore:
    """How one stored output scored: reward, sub-rewards by grader name, error flags."""

    reward: float
    sub_rewards: dict[str, float | None]
    errors: dict[str, Any]


def _row_score(row: Mapping[str, Any]) -> RowScore:
    return RowScore(float(row["reward"]), loads(row["sub_rewards"], {}) or {}, loads(row["errors"], {}) or {})


STOP_REASONS = ("final_answer", "max_episode_steps", "token_budget")


def episode_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of an agent-RFT episode (a sample's or validation row's turns and why it ended); {} without."""
    messages = row.get("output_messages")
    if messages is None:
        return {}
    return {"output_messages": dumps(list(messages)), "stop_reason": row.get("stop_reason")}


def episode_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The API fields of a stored episode: its turns, every tool call (flattened) and why it ended.

    A turn that does not fit the wire shape is logged and the episode is served without turns (never a 500).
    """
    text = row.get("output_messages")
    if not text:
        return {}
    try:
        turns = [api.TrajectoryTurn.model_validate(t) for t in json.loads(text)]
    except (ValueError, TypeError) as exc:
        log.warning("stored episode does not parse (%s); served without its turns", exc)
        return {}
    reason = row.get("stop_reason")
    return {"output_messages": turns, "tool_calls": api.flat_tool_calls(turns),
            "stop_reason": reason if reason in STOP_REASONS else None}


def _score_map(m: Mapping[str, Any] | None) -> dict[str, float]:
    """Sub-rewards as rows keep them: a score that is not a finite number is left out (the wire says float)."""
    return {k: v for k, v in _clean_map(m).items() if v is not None}


def _shown_snapshot(row: Mapping[str, Any]) -> api.JobSnapshot | None:
    snapshot = stored_model(api.JobSnapshot, row["snapshot"], row["id"])
    return snapshot.redacted() if snapshot is not None else None


def load_placement(row: Mapping[str, Any]) -> api.JobPlacement | None:
    """A cluster job's placement (stored at creation) with the engine's latest id and state; None when local."""
    if not row.get("cluster_placement"):
        return None
    p = api.JobPlacement.model_validate_json(row["cluster_placement"])
    p.engine_id = row.get("engine_id")
    p.engine_state = row.get("engine_state")
    return p


def _clean_map(m: Mapping[str, Any] | None) -> dict[str, float | None]:
    return {str(k): finite(v) for k, v in (m or {}).items()}


def alarm_id(seq: int) -> str:
    return f"ftalarm-{seq:012d}"


def alarm_object(row: dict[str, Any]) -> api.JobAlarm:
    return api.JobAlarm(id=alarm_id(row["seq"]), created_at=row["created_at"], name=row["name"],
                        severity=row["severity"], step=row["step"], value=row["value"], threshold=row["threshold"],
                        message=row["message"], action=row["action"], grader=row["grader"],
                        fine_tuning_job_id=row["job_id"], cleared_at=row["cleared_at"],
                        cleared_step=row["cleared_step"])


def event_id(seq: int) -> str:
    return f"ftevent-{seq:012d}"


def _event_seq(event_id_: str) -> int | None:
    try:
        return int(event_id_.rsplit("-", 1)[-1])
    except ValueError:
        return None


def event_object(row: dict[str, Any]) -> api.JobEvent:
    return api.JobEvent(id=event_id(row["seq"]), created_at=row["created_at"], level=row["level"],
                        message=row["message"], data=loads(row["data"]), type=row["type"])


def kept_because(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Why each live checkpoint is kept: the latest, and the 3 best by validation reward."""
    live = [r for r in rows if r["deleted_at"] is None]
    reasons: dict[str, list[str]] = {r["id"]: [] for r in live}
    if live:
        reasons[max(live, key=lambda r: r["step"])["id"]].append("latest")
    scored = sorted((r for r in live if r["valid_reward_mean"] is not None),
                    key=lambda r: (-r["valid_reward_mean"], -r["step"]))
    for rank, r in enumerate(scored[:3], start=1):
        reasons[r["id"]].append(f"best #{rank}")
    return reasons


def checkpoint_object(row: dict[str, Any], reasons: list[str] | None = None) -> api.JobCheckpoint:
    metrics = loads(row["metrics"], {})
    known = set(api.CheckpointMetrics.model_fields)
    return api.JobCheckpoint(
        id=row["id"], created_at=row["created_at"],
        fine_tuned_model_checkpoint=f"ft:{row['job_id']}:ckpt-step-{row['step']}",
        fine_tuning_job_id=row["job_id"],
        metrics=api.CheckpointMetrics(**{k: v for k, v in metrics.items()
                                         if k != "step" and (k in known or isinstance(v, (int, float)))},
                                      step=row["step"]),
        step_number=row["step"], path=row["path"], kept_because=reasons or [],
    )
