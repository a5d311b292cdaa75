"""Append-only, named schema migrations recorded in `_migrations` (never edit one that shipped)."""

from __future__ import annotations

import time
from collections.abc import Callable

from daemon.sqlite_import import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE files (
            id TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            bytes INTEGER NOT NULL,
            filename TEXT NOT NULL,
            purpose TEXT NOT NULL DEFAULT 'fine-tune',
            created_at INTEGER NOT NULL,
            rows INTEGER,
            path TEXT NOT NULL,
            source_path TEXT,
            status TEXT NOT NULL DEFAULT 'processed',
            status_details TEXT,
            stats TEXT
        );
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at REAL NOT NULL,
            status TEXT NOT NULL,
            model TEXT NOT NULL,
            training_file TEXT NOT NULL,
            validation_file TEXT,
            seed INTEGER NOT NULL,
            suffix TEXT,
            metadata TEXT,
            method TEXT NOT NULL,
            hyperparameters TEXT NOT NULL,
            resolved_hyperparameters TEXT,
            snapshot TEXT,
            error_code TEXT,
            error_message TEXT,
            error_param TEXT,
            started_at INTEGER,
            finished_at INTEGER,
            fine_tuned_model TEXT,
            trained_tokens INTEGER,
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER,
            train_reward_mean REAL,
            valid_reward_base REAL,
            valid_reward_latest REAL,
            valid_reward_best REAL,
            run_seconds REAL NOT NULL DEFAULT 0,
            requested_action TEXT,
            worker_pid INTEGER,
            worker_pgid INTEGER,
            worker_start_time REAL,
            worker_outcome TEXT,
            worker_outcome_detail TEXT,
            resume_from TEXT,
            attempts INTEGER NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX jobs_seq ON jobs(seq);
        CREATE INDEX jobs_status ON jobs(status, seq);
        CREATE TABLE job_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            created_at INTEGER NOT NULL,
            level TEXT NOT NULL DEFAULT 'info',
            type TEXT NOT NULL DEFAULT 'message',
            message TEXT NOT NULL,
            data TEXT
        );
        CREATE INDEX job_events_job ON job_events(job_id, seq);
        CREATE TABLE metrics (
            job_id TEXT NOT NULL REFERENCES jobs(id),
            step INTEGER NOT NULL,
            created_at REAL NOT NULL,
            "values" TEXT NOT NULL,
            PRIMARY KEY (job_id, step)
        ) WITHOUT ROWID;
        CREATE TABLE samples (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            step INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            completion TEXT NOT NULL,
            reward REAL NOT NULL,
            sub_rewards TEXT,
            errors TEXT
        );
        CREATE INDEX samples_job ON samples(job_id, step);
        CREATE TABLE validation_rows (
            job_id TEXT NOT NULL REFERENCES jobs(id),
            step INTEGER NOT NULL,
            row_index INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            reference TEXT,
            output TEXT NOT NULL,
            reward REAL NOT NULL,
            sub_rewards TEXT,
            errors TEXT,
            item TEXT,
            PRIMARY KEY (job_id, step, row_index)
        ) WITHOUT ROWID;
        CREATE TABLE checkpoints (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            step INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            path TEXT NOT NULL,
            metrics TEXT NOT NULL,
            valid_reward_mean REAL,
            deleted_at INTEGER,
            UNIQUE (job_id, step)
        );
        """
    )


@migration
def m002_job_report_tokens(db: sqlite_utils.Database) -> None:
    """Reporting over the API (issue 12): per-job tokens (hashed) and the ids of records applied once."""
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS job_tokens (
            job_id TEXT PRIMARY KEY REFERENCES jobs(id),
            token_sha256 TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS report_records (
            job_id TEXT NOT NULL REFERENCES jobs(id),
            record_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            applied_at REAL NOT NULL,
            PRIMARY KEY (job_id, record_id)
        ) WITHOUT ROWID;
        """
    )


@migration
def m003_rescorings(db: sqlite_utils.Database) -> None:
    """Named re-scorings of a job's stored outputs with another grader, kept beside the original scores (issue 11).

    `rescored_rows` holds one row per re-graded output: kind 'validation' (key = the validation row's index) or
    'sample' (key = the training sample's id). Training samples gain the item they were graded against, so a
    re-score can grade them again.
    """
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS rescorings (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            name TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            grader TEXT NOT NULL,
            result TEXT NOT NULL,
            UNIQUE (job_id, name)
        );
        CREATE TABLE IF NOT EXISTS rescored_rows (
            rescoring_id TEXT NOT NULL REFERENCES rescorings(id),
            kind TEXT NOT NULL,
            step INTEGER NOT NULL,
            row_key INTEGER NOT NULL,
            reward REAL NOT NULL,
            sub_rewards TEXT,
            errors TEXT,
            PRIMARY KEY (rescoring_id, kind, step, row_key)
        ) WITHOUT ROWID;
        """
    )
    if "item" not in db.table("samples").columns_dict:
        db.execute("ALTER TABLE samples ADD COLUMN item TEXT")


@migration
def m004_episode_trajectories(db: sqlite_utils.Database) -> None:
    """Agent RFT: a sample's or validation row's episode (turns, tool calls, results) and why it ended."""
    for table in ("samples", "validation_rows"):
        have = {c.name for c in db[table].columns}
        for column in ("output_messages", "stop_reason"):
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")


@migration
def m005_job_alarms(db: sqlite_utils.Database) -> None:
    """Alarms a job raised (daemon/health.py): one row per episode, cleared when the signal recovered."""
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS job_alarms (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            created_at INTEGER NOT NULL,
            name TEXT NOT NULL,
            grader TEXT,
            severity TEXT NOT NULL,
            step INTEGER,
            value REAL,
            threshold REAL,
            message TEXT NOT NULL,
            action TEXT NOT NULL DEFAULT 'warn',
            cleared_at INTEGER,
            cleared_step INTEGER
        );
        CREATE INDEX IF NOT EXISTS job_alarms_job ON job_alarms(job_id, seq);
        """
    )


@migration
def m006_cluster_jobs(db: sqlite_utils.Database) -> None:
    """Cluster jobs: the cluster's name, the placement (nodes, processes, storage dir) and the engine's id/state."""
    have = {c.name for c in db["jobs"].columns}
    for name in ("cluster", "cluster_placement", "engine_id", "engine_state"):
        if name not in have:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} TEXT")


@migration
def m007_oom_retries(db: sqlite_utils.Database) -> None:
    """How often the daemon relaunched a multi-process job smaller after an out-of-memory error (on_oom)."""
    if "oom_retries" not in {c.name for c in db["jobs"].columns}:
        db.execute("ALTER TABLE jobs ADD COLUMN oom_retries INTEGER NOT NULL DEFAULT 0")


@migration
def m008_cluster_submission(db: sqlite_utils.Database) -> None:
    """Cluster jobs: the name of a submission the engine was asked for and has not answered yet (no double
    submission after a daemon dies mid-submit: the next daemon looks that name up first)."""
    if "engine_submission" not in {c.name for c in db["jobs"].columns}:
        db.execute("ALTER TABLE jobs ADD COLUMN engine_submission TEXT")


@migration
def m009_stack_requests(db: sqlite_utils.Database) -> None:
    """Cluster jobs: how often the daemon asked the worker for every thread's stack (a `stalled` alarm; it cannot
    signal a process on another machine, so the worker's reporter reads the count with its control state)."""
    if "stack_requests" not in {c.name for c in db["jobs"].columns}:
        db.execute("ALTER TABLE jobs ADD COLUMN stack_requests INTEGER NOT NULL DEFAULT 0")


def apply_migrations(db: sqlite_utils.Database) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied: list[str] = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        with db.conn:
            fn(db)
            db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", [name, time.time()])
        applied.append(name)
    return applied
