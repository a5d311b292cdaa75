"""Ingest benchmark (run on demand): `.venv/bin/python tests/bench/ingest.py [--steps 5000]`, prints JSON.

How fast the daemon takes what workers report through the reporting API (issue 12), over TCP with a job's
own token, into SQLite -- the numbers docs/scaling.md compares with what a 64-GPU job produces:

- metric rows/s: step records with 40 metric values each (what one GRPO step logs), in the reporter's batches
  of up to 200, and one step per request (a reporter that is keeping up sends each step as it comes)
- samples/s: step records carrying 16 samples each (prompt ~150 chars, completion ~600 chars)
- validation rows/s: validation passes of 500 rows
- the worker side end to end: `HttpReporter.log_step` (journal fsync + sender thread) until all is delivered
- 4 workers reporting at once (4 jobs, 4 threads), aggregate rows/s
- control polls/s (an idle reporter's empty append, once a second per running job)
- `a_64_gpu_job`: what one 64-GPU job reports (docs/scaling.md's assumptions) as a share of the measured rates
- the daemon's CPU seconds per 1,000 records and the store's bytes per sample
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.store import Store
from daemon.worker.http_reporter import HttpReporter
from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import arithmetic_rows, job_request, write_jsonl

METRIC_KEYS = [f"metric_{i:02d}" for i in range(36)] + ["reward", "reward_std", "loss", "kl"]
PROMPT = "Solve step by step and give the final answer in a box. " * 3  # ~165 chars
COMPLETION = "Let us add the tens and then the ones; carrying the one gives the answer. " * 8  # ~600 chars


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def step_record(step: int, n_samples: int = 0) -> dict[str, Any]:
    return {"kind": "step", "id": f"bench-{step}", "step": step,
            "values": {k: (step % 97) / 97 + i for i, k in enumerate(METRIC_KEYS)},
            "samples": [{"prompt": PROMPT, "completion": COMPLETION, "reward": 0.5,
                         "sub_rewards": {"exact": 1.0, "close": 0.25}, "errors": {}} for _ in range(n_samples)]}


def validation_record(step: int, rows: int) -> dict[str, Any]:
    return {"kind": "validation", "id": f"bench-v{step}", "step": step,
            "rows": [{"row_index": i, "prompt": PROMPT, "reference": "42", "output": COMPLETION, "reward": 0.5,
                      "sub_rewards": {"exact": 1.0}, "item": {"answer": "42"}} for i in range(rows)]}


class Bench:
    def __init__(self, steps: int) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="rft-ingest-"))
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.daemon = DaemonProcess(self.home, env={"RFT_MAX_RUNNING_JOBS": "0",  # jobs stay queued: no worker
                                                    "RFT_WORKER_MODULE": "tests.support.fake_worker"},
                                    tcp=f"127.0.0.1:{port}").start()
        self.proc = psutil.Process(self.daemon.pid)
        self.steps = steps
        self.scratches: list[Path] = []
        tmp = self.home / "data"
        tmp.mkdir()
        with self.daemon.client() as c:
            self.train = c.import_file(str(write_jsonl(tmp / "train.jsonl", arithmetic_rows(10, 30)))).id
            self.valid = c.import_file(str(write_jsonl(tmp / "valid.jsonl", arithmetic_rows(60, 10)))).id

    def new_job(self) -> tuple[str, str]:
        """A queued job and its reporting token (minted as the scheduler does for a cluster worker)."""
        with self.daemon.client() as c:
            job_id = c.create_job(job_request(self.train, self.valid, max_steps=10)).id
        store = Store(self.daemon.paths.db)
        try:
            return job_id, store.mint_job_token(job_id)
        finally:
            store.close()

    def cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def post_all(self, job_id: str, token: str, records: list[dict[str, Any]], per_request: int) -> dict[str, Any]:
        """POST `records` in requests of `per_request`; rate, latency and the daemon's CPU per 1,000 records."""
        lat: list[float] = []
        cpu0, t0 = self.cpu(), time.perf_counter()
        with httpx.Client(base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as h:
            for i in range(0, len(records), per_request):
                s = time.perf_counter()
                batch = [r for r in records[i:i + per_request] if r]  # {}: an empty append (a control poll)
                r = h.post(f"/v1/fine_tuning/jobs/{job_id}/report/records", json={"records": batch})
                lat.append(time.perf_counter() - s)
                assert r.status_code == 200, r.text
        wall, cpu = time.perf_counter() - t0, self.cpu() - cpu0
        lat.sort()
        return {"records": len(records), "per_request": per_request, "seconds": round(wall, 2),
                "records_per_s": round(len(records) / wall, 1), "requests_per_s": round(len(lat) / wall, 1),
                "p50_ms": round(lat[len(lat) // 2] * 1000, 2), "p95_ms": round(lat[int(len(lat) * 0.95)] * 1000, 2),
                "daemon_cpu_s_per_1000_records": round(1000 * cpu / len(records), 3)}

    def metric_rows(self) -> dict[str, Any]:
        job, token = self.new_job()
        batched = self.post_all(job, token, [step_record(s) for s in range(1, self.steps + 1)], 200)
        job, token = self.new_job()
        single = self.post_all(job, token, [step_record(s) for s in range(1, min(self.steps, 500) + 1)], 1)
        return {"batched_200": batched, "one_step_per_request": single}

    def control_polls(self, n: int = 300) -> dict[str, Any]:
        """An idle reporter's poll for pause/cancel (an empty append, once a second per running job)."""
        job, token = self.new_job()
        res = self.post_all(job, token, [{}] * n, 1)
        return {"polls_per_s": res["requests_per_s"], "p50_ms": res["p50_ms"], "p95_ms": res["p95_ms"],
                "daemon_cpu_ms_per_poll": res["daemon_cpu_s_per_1000_records"]}

    def samples(self) -> dict[str, Any]:
        job, token = self.new_job()
        n_steps = max(1, self.steps // 5)
        before = self._db_bytes()
        res = self.post_all(job, token, [step_record(s, 16) for s in range(1, n_steps + 1)], 50)
        res["samples_per_s"] = round(res["records_per_s"] * 16, 1)
        # the store's growth per sample (its step's metric row shared out), WAL included
        res["db_bytes_per_sample"] = (self._db_bytes() - before) // (n_steps * 16)
        return res

    def validation_rows(self) -> dict[str, Any]:
        job, token = self.new_job()
        res = self.post_all(job, token, [validation_record(s, 500) for s in range(10)], 1)
        res["validation_rows_per_s"] = round(res["records_per_s"] * 500, 1)
        return res

    def reporter_end_to_end(self) -> dict[str, Any]:
        """The worker's path: journal fsync per record, one sender thread batching to the daemon."""
        job, token = self.new_job()
        n = max(1, self.steps // 5)
        samples = step_record(0, 16)["samples"]
        values = step_record(0)["values"]
        scratch = Path(tempfile.mkdtemp(prefix="rft-ingest-worker-"))
        self.scratches.append(scratch)
        reporter = HttpReporter(self.base, token, job, scratch=scratch)
        t0 = time.perf_counter()
        for s in range(1, n + 1):
            reporter.log_step(s, values, samples=samples)
        journalled = time.perf_counter() - t0
        assert reporter.flush(600)
        wall = time.perf_counter() - t0
        reporter.close()
        return {"steps": n, "samples_per_step": 16, "log_step_returns_ms": round(1000 * journalled / n, 3),
                "steps_per_s": round(n / wall, 1), "samples_per_s": round(16 * n / wall, 1),
                "seconds": round(wall, 2)}

    def concurrent(self, workers: int = 4) -> dict[str, Any]:
        jobs = [self.new_job() for _ in range(workers)]
        n = max(1, self.steps // workers)
        results: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        threads = [threading.Thread(target=lambda j=j, t=t: results.append(
            self.post_all(j, t, [step_record(s, 4) for s in range(1, n + 1)], 20))) for j, t in jobs]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        return {"workers": workers, "steps_each": n, "samples_per_step": 4,
                "aggregate_steps_per_s": round(workers * n / wall, 1),
                "aggregate_samples_per_s": round(4 * workers * n / wall, 1), "seconds": round(wall, 2)}

    def _db_bytes(self) -> int:
        return sum(os.path.getsize(p) for p in self.home.glob("rft.db*"))

    def close(self) -> None:
        self.daemon.stop()
        shutil.rmtree(self.home, ignore_errors=True)
        for scratch in self.scratches:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5000)
    args = ap.parse_args()
    bench = Bench(args.steps)
    try:
        results = {
            "machine": {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)},
            "metric_rows": bench.metric_rows(),
            "samples": bench.samples(),
            "validation_rows": bench.validation_rows(),
            "control_polls": bench.control_polls(),
            "http_reporter_end_to_end": bench.reporter_end_to_end(),
            "concurrent_workers": bench.concurrent(),
            "daemon_rss_mb": round(bench.proc.memory_info().rss / 2**20, 1),
            "db_mb": round(bench._db_bytes() / 2**20, 1),
        }
    finally:
        bench.close()
    results["a_64_gpu_job"] = sixty_four_gpu_job(results)
    print(json.dumps(results, indent=2))


def sixty_four_gpu_job(measured: dict[str, Any], step_s: float = 30.0, samples_per_step: int = 16,
                       validation_rows: int = 500, eval_interval: int = 20) -> dict[str, Any]:
    """What one 64-GPU GRPO job reports (docs/scaling.md's worked example: a step every ~30 s) against the
    rates measured above: the share of the daemon's measured capacity it uses."""
    produces = {"metric_rows_per_s": 1 / step_s, "samples_per_s": samples_per_step / step_s,
                "validation_rows_per_s": validation_rows / (eval_interval * step_s),
                "requests_per_s": 1 / step_s + 1.0}  # one append per step + the 1 s control poll
    capacity = {"metric_rows_per_s": measured["metric_rows"]["batched_200"]["records_per_s"],
                "samples_per_s": measured["samples"]["samples_per_s"],
                "validation_rows_per_s": measured["validation_rows"]["validation_rows_per_s"],
                "requests_per_s": measured["control_polls"]["polls_per_s"]}
    return {"assumed": {"step_s": step_s, "samples_per_step": samples_per_step,
                        "validation_rows": validation_rows, "eval_interval": eval_interval},
            "produces": {k: round(v, 4) for k, v in produces.items()},
            "share_of_measured_capacity_percent": {k: round(100 * produces[k] / capacity[k], 3) for k in produces}}


if __name__ == "__main__":
    main()
