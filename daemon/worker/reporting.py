"""How a worker writes into the store: its own SQLite connection, one transaction per step.

Every worker (the real GRPO one, and the small one the foundation tests use) reports through this
class, so metric rows, events and checkpoints are written the same way. Writes are idempotent on
(job, step), so a resumed or re-adopted worker never duplicates a step. After each commit the
worker pokes the daemon's notify socket (best effort: the daemon may be down, the worker goes on).
No torch here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any


from daemon.paths import Paths
from daemon.store import connect, dumps, finite, insert_event, loads
from daemon.worker_protocol import CANCEL_SIGNAL, PAUSE_SIGNAL, ControlFlags  # noqa: F401 - workers import these here

MAX_SAMPLES_PER_STEP = 16


class JobReporter:
    """The worker's side of the store for one job."""

    def __init__(self, home: str | os.PathLike[str], job_id: str, rank: int = 0) -> None:
        self.paths = Paths.resolve(home)
        self.job_id = job_id
        self.rank = rank
        self.db = connect(self.paths.db)
        self.conn = self.db.conn
        self._notify_sock: socket.socket | None = None
        self._last_notify = 0.0

    # -------------------------------------------------------------- reading

    def job(self) -> dict[str, Any]:
        cur = self.conn.execute("SELECT * FROM jobs WHERE id = ?", [self.job_id])
        cols = [d[0] for d in cur.description]
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"job {self.job_id} is not in {self.paths.db}")
        return dict(zip(cols, row))

    def spec(self) -> dict[str, Any]:
        """The job's snapshot: everything it depends on, frozen at creation."""
        return loads(self.job()["snapshot"], {}) or {}

    def requested_action(self) -> str | None:
        row = self.conn.execute("SELECT requested_action FROM jobs WHERE id = ?", [self.job_id]).fetchone()
        return row[0] if row else None

    def last_step(self) -> int | None:
        row = self.conn.execute("SELECT MAX(step) FROM metrics WHERE job_id = ?", [self.job_id]).fetchone()
        return row[0] if row else None

    # -------------------------------------------------------------- writing

    def _tx(self) -> "_Tx":
        return _Tx(self.conn)

    def started(self, total_steps: int | None, resolved_hyperparameters: Mapping[str, Any] | None = None,
                message: str | None = None) -> None:
        with self._tx() as conn:
            sets = ["total_steps = ?", "updated_at = ?"]
            params: list[Any] = [total_steps, time.time()]
            if resolved_hyperparameters is not None:
                sets.append("resolved_hyperparameters = ?")
                params.append(dumps(dict(resolved_hyperparameters)))
            conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*params, self.job_id])
            if message:
                insert_event(conn, self.job_id, message)
        self.notify()

    def log_step(self, step: int, values: Mapping[str, Any], samples: Iterable[Mapping[str, Any]] = (),
                 total_steps: int | None = None, trained_tokens: int | None = None) -> bool:
        """Record one training step atomically; False (and nothing written) if the step exists already."""
        clean = {k: finite(v) for k, v in values.items()}
        with self._tx() as conn:
            cur = conn.execute('INSERT OR IGNORE INTO metrics (job_id, step, created_at, "values") VALUES (?, ?, ?, ?)',
                               [self.job_id, step, time.time(), dumps(clean)])
            if cur.rowcount == 0:
                return False
            for s in list(samples)[:MAX_SAMPLES_PER_STEP]:
                conn.execute(
                    "INSERT INTO samples (job_id, step, prompt, completion, reward, sub_rewards, errors) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [self.job_id, step, str(s.get("prompt", "")), str(s.get("completion", "")),
                     finite(s.get("reward")) or 0.0, dumps(_clean_map(s.get("sub_rewards"))),
                     dumps(s.get("errors") or {})],
                )
            train_reward = clean.get("reward")
            sets = ["step = MAX(step, ?)", "updated_at = ?"]
            params: list[Any] = [step, time.time()]
            if train_reward is not None:
                sets.append("train_reward_mean = ?")
                params.append(train_reward)
            if total_steps is not None:
                sets.append("total_steps = ?")
                params.append(total_steps)
            if trained_tokens is not None:
                sets.append("trained_tokens = ?")
                params.append(int(trained_tokens))
            conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*params, self.job_id])
            # no event per step: progress lives in the metrics rows, events are for status (issue 10, bug 11)
        self.notify()
        return True

    def log_validation(self, step: int, rows: Iterable[Mapping[str, Any]],
                       summary: Mapping[str, Any] | None = None) -> float | None:
        """Record one validation pass (step 0 = base model); returns the mean reward."""
        rows = list(rows)
        rewards = [finite(r.get("reward")) or 0.0 for r in rows]
        mean = sum(rewards) / len(rewards) if rewards else None
        with self._tx() as conn:
            for i, r in enumerate(rows):
                conn.execute(
                    "INSERT OR REPLACE INTO validation_rows (job_id, step, row_index, prompt, reference, output, "
                    "reward, sub_rewards, errors, item) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [self.job_id, step, int(r.get("row_index", i)), str(r.get("prompt", "")),
                     None if r.get("reference") is None else str(r.get("reference")),
                     str(r.get("output", "")), rewards[i], dumps(_clean_map(r.get("sub_rewards"))),
                     dumps(r.get("errors") or {}), dumps(r.get("item"))],
                )
            if mean is not None:
                conn.execute(
                    "UPDATE jobs SET valid_reward_latest = ?, "
                    "valid_reward_base = CASE WHEN ? = 0 THEN ? ELSE COALESCE(valid_reward_base, ?) END, "
                    "valid_reward_best = MAX(COALESCE(valid_reward_best, ?), ?), updated_at = ? WHERE id = ?",
                    [mean, step, mean, mean, mean, mean, time.time(), self.job_id],
                )
            total = conn.execute("SELECT total_steps FROM jobs WHERE id = ?", [self.job_id]).fetchone()[0]
            scores = {"valid_reward_mean": mean, **_clean_map(summary)}
            insert_event(conn, self.job_id, f"Validation at step {step}: mean reward "
                         f"{'n/a' if mean is None else f'{mean:.3f}'} over {len(rows)} rows",
                         type="metrics", data={"step": step, "total_steps": total, "scores": scores})
        self.notify()
        return mean

    def add_checkpoint(self, step: int, path: str, metrics: Mapping[str, Any]) -> str:
        ckpt_id = f"ftckpt-{self.job_id.removeprefix('ftjob-')[:12]}-{step:06d}"
        clean = {k: (finite(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO checkpoints (id, job_id, step, created_at, path, metrics, "
                "valid_reward_mean, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                [ckpt_id, self.job_id, step, int(time.time()), str(path), dumps(clean),
                 finite(metrics.get("valid_reward_mean"))],
            )
            insert_event(conn, self.job_id, f"Checkpoint saved at step {step}",
                         data={"step": step, "checkpoint": ckpt_id, "path": str(path)})
        self.notify()
        return ckpt_id

    def mark_checkpoint_deleted(self, ckpt_id: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE checkpoints SET deleted_at = ? WHERE id = ?", [int(time.time()), ckpt_id])

    def live_checkpoints(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM checkpoints WHERE job_id = ? AND deleted_at IS NULL ORDER BY step",
                                [self.job_id])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def event(self, message: str, level: str = "info", data: Mapping[str, Any] | None = None) -> None:
        with self._tx() as conn:
            insert_event(conn, self.job_id, message, level=level, data=dict(data) if data else None)
        self.notify()

    def finish(self, outcome: str, detail: str | None = None, fine_tuned_model: str | None = None) -> None:
        """Record how this worker ended (succeeded, paused, cancelled, failed) for the daemon to settle."""
        assert outcome in {"succeeded", "paused", "cancelled", "failed"}, outcome
        with self._tx() as conn:
            # a job the user cancelled stays cancelled without a model, whatever this worker got to finish
            conn.execute(
                "UPDATE jobs SET worker_outcome = ?, worker_outcome_detail = ?, fine_tuned_model = CASE "
                "WHEN status = 'cancelled' THEN fine_tuned_model ELSE COALESCE(?, fine_tuned_model) END, "
                "updated_at = ? WHERE id = ?",
                [outcome, detail, fine_tuned_model, time.time(), self.job_id],
            )
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
        self.conn.close()


class _Tx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __enter__(self) -> Any:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _clean_map(m: Mapping[str, Any] | None) -> dict[str, float | None]:
    return {str(k): finite(v) for k, v in (m or {}).items()}


