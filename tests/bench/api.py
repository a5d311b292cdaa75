"""API benchmark (run on demand): `.venv/bin/python tests/bench/api.py [--idle-seconds 30]`, prints JSON.

- requests/s for GET /v1/fine_tuning/jobs (first page, and a deep page) with 10,000 jobs in the store
- requests/s for an incremental metrics fetch (`metrics?after_step=N`) on a job with 5,000 steps
- the daemon's CPU use while idle (no clients) for 30 s: should be ~0 (no busy polling)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon import api
from daemon.paths import Paths
from daemon.store import Store, dumps
from daemon.worker.reporting import JobReporter
from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import EXACT_GRADER


def seed_store(home: Path, n_jobs: int, n_steps: int) -> str:
    paths = Paths.resolve(home).ensure()
    store = Store(paths.db)
    now = int(time.time())
    # finished and paused jobs only: queued ones would really start workers and the daemon would not be idle
    statuses = [s.value for s in (api.JobStatus.succeeded, api.JobStatus.failed, api.JobStatus.cancelled,
                                  api.JobStatus.paused)]
    method = {"type": "reinforcement", "reinforcement": {"grader": EXACT_GRADER, "hyperparameters": {}}}
    with store.tx() as conn:
        for i in range(n_jobs):
            conn.execute(
                "INSERT INTO jobs (id, seq, created_at, updated_at, status, model, training_file, validation_file, "
                "seed, method, hyperparameters, resolved_hyperparameters, snapshot, step, total_steps) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [f"ftjob-bench{i:08d}", i + 1, now - n_jobs + i, time.time(), statuses[i % len(statuses)],
                 "builtin:tiny-arith", "file-x", "file-y", i, dumps(method), dumps({}),
                 dumps({"batch_size": 16, "n_epochs": 3, "learning_rate_multiplier": 1.0}),
                 dumps({"grader": EXACT_GRADER}), i % 100, 100],
            )
    job_id = f"ftjob-bench{n_jobs - 1:08d}"
    reporter = JobReporter(home, job_id)
    for step in range(1, n_steps + 1):
        reporter.log_step(step, {"reward": step / n_steps, "loss": 1.0, "kl": 0.01, "learning_rate": 5e-4,
                                 "reward_std": 0.1, "step_time": 0.3})
    reporter.close()
    store.close()
    return job_id


def rate(client: httpx.Client, path: str, params: dict, seconds: float) -> dict:
    n = 0
    lat: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        lat.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
        n += 1
    lat.sort()
    return {"requests_per_s": round(n / seconds, 1), "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
            "p95_ms": round(lat[int(len(lat) * 0.95)] * 1000, 2), "requests": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=5_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="rft-bench-"))
    t0 = time.perf_counter()
    job_id = seed_store(home, args.jobs, args.steps)
    seeded_s = time.perf_counter() - t0
    d = DaemonProcess(home).start()
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=d.socket), base_url="http://rft", timeout=30) as h:
            results = {
                "jobs_in_store": args.jobs,
                "list_jobs_first_page_20": rate(h, "/v1/fine_tuning/jobs", {"limit": 20}, args.seconds),
                "list_jobs_deep_page_20": rate(h, "/v1/fine_tuning/jobs",
                                               {"limit": 20, "after": "ftjob-bench00000100"}, args.seconds),
                "list_jobs_page_100": rate(h, "/v1/fine_tuning/jobs", {"limit": 100}, args.seconds),
                "metrics_incremental_after_last_minus_1": rate(
                    h, f"/v1/fine_tuning/jobs/{job_id}/metrics", {"after_step": args.steps - 1}, args.seconds),
                "metrics_full_5000_steps": rate(h, f"/v1/fine_tuning/jobs/{job_id}/metrics", {}, args.seconds),
                "seed_seconds": round(seeded_s, 2),
            }
        proc = psutil.Process(d.pid)
        c0 = proc.cpu_times()
        w0 = time.perf_counter()
        windows = []
        while time.perf_counter() - w0 < args.idle_seconds:
            a = proc.cpu_times()
            time.sleep(5)
            b = proc.cpu_times()
            windows.append(round(100 * ((b.user - a.user) + (b.system - a.system)) / 5, 2))
        c1 = proc.cpu_times()
        wall = time.perf_counter() - w0
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
        results["idle"] = {"seconds": round(wall, 1), "cpu_seconds": round(cpu, 4),
                           "cpu_percent": round(100 * cpu / wall, 3), "cpu_percent_per_5s": windows}
        results["daemon_rss_mb"] = round(proc.memory_info().rss / 2**20, 1)
    finally:
        d.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
