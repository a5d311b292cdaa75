"""Benchmark: how fast `POST /v1/fine_tuning/preflight` with `estimate_only` answers (target: under 1 s).

    python tests/bench/estimate.py [--n 20]

A real daemon on a temp RFT_HOME; the built-in model, a Qwen2-style 0.5B and a Llama-style 8B given as config
files only; each asked `n` times after one warm-up. Prints JSON: per model the median, p95 and max latency seen
by the client (socket round trip included) and the daemon's own `elapsed_s`, plus the totals it estimated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> int:
    from tests.gpu.configs import LLAMA_8B, QWEN2_05B, write_model_dir
    from tests.support.daemon_proc import DaemonProcess
    from tests.support.jobs import job_request, make_files

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rft-bench-est-"))
    d = DaemonProcess(root / "home", env={"RFT_WORKER_MODULE": "tests.support.fake_worker"}).start()
    out: dict[str, object] = {"n": args.n}
    try:
        c = d.client()
        train, valid = make_files(c, root)
        models = {"builtin:tiny-arith": "builtin:tiny-arith",
                  "qwen2-0.5b": str(write_model_dir(root, "qwen2-0.5b", QWEN2_05B)),
                  "llama-8b": str(write_model_dir(root, "llama-8b", LLAMA_8B))}
        for name, model in models.items():
            request = {**job_request(train, valid), "model": model, "estimate_only": True}
            c.preflight(request)  # warm-up: first import of the estimate modules in the daemon
            client_s, daemon_s = [], []
            report = None
            for _ in range(args.n):
                t = time.perf_counter()
                report = c.preflight(request)
                client_s.append(time.perf_counter() - t)
                daemon_s.append(report.elapsed_s)
            e = report.memory_estimate if report else None
            client_s.sort()
            out[name] = {"median_s": round(statistics.median(client_s), 4),
                         "p95_s": round(client_s[max(0, int(0.95 * len(client_s)) - 1)], 4),
                         "max_s": round(client_s[-1], 4), "daemon_median_s": round(statistics.median(daemon_s), 4),
                         "parameters": e.parameters if e else None, "total_gib": round(e.total_bytes / 2**30, 2)
                         if e else None, "device": e.device if e else None, "verdict": e.verdict if e else None}
    finally:
        d.stop()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
