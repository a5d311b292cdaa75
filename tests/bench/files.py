"""Datasets benchmark (on demand): `.venv/bin/python tests/bench/files.py [--rows N]`; prints JSON.

Through a real daemon on a temp RFT_HOME: import throughput (by path and by multipart upload; both validate
and index in the same pass), validation throughput, page latency at offset 0 vs the last page, and
train/validation overlap (exact + near-duplicate) on 100k x 10k rows.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.daemon_proc import DaemonProcess

_vocab = random.Random(0)
WORDS = ["".join(_vocab.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_vocab.randint(3, 9)))
         for _ in range(3000)]


def make_file(path: Path, rows: int, seed: int, prose: bool = False) -> Path:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(rows):
            if prose:
                prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 40)))
            else:
                a, b = rng.randint(10, 99_999), rng.randint(10, 99_999)
                prompt = f"{a}+{b}="
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt}], "answer": str(i),
                                "id": i}) + "\n")
    return path


def plant(train: Path, valid: Path) -> None:
    """Copy 20 training prompts into validation exactly and 20 with one word changed (known answer)."""
    t_rows = train.read_text().splitlines()
    v_rows = valid.read_text().splitlines()
    for k in range(40):
        row = json.loads(t_rows[k * 2000])
        if k % 2:
            words = row["messages"][0]["content"].split()
            words[len(words) // 2] = "zzzz"
            row["messages"][0]["content"] = " ".join(words)
        v_rows[k * 200] = json.dumps(row)
    valid.write_text("\n".join(v_rows) + "\n")


def timed(fn, repeat: int = 1):
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return value, times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rft-bench-"))
    home = work / "h"
    daemon = DaemonProcess(home).start()
    out: dict[str, object] = {"rows": args.rows}
    try:
        big = make_file(work / "big.jsonl", args.rows, seed=1)
        mb = big.stat().st_size / 1e6
        out["file_mb"] = round(mb, 1)
        with daemon.client(timeout=3600) as c:
            obj, (t,) = timed(lambda: c.import_file(str(big)))
            out["import_path_s"] = round(t, 2)
            out["import_path_mb_per_s"] = round(mb / t, 1)
            out["import_path_rows_per_s"] = round(args.rows / t)
            _, (t,) = timed(lambda: c.upload_file(str(big)))
            out["upload_multipart_s"] = round(t, 2)
            out["upload_multipart_mb_per_s"] = round(mb / t, 1)
            report, (t,) = timed(lambda: c.validate_file({"path": str(big)}))
            assert report.ok and report.stats.rows == args.rows, report.problems[:3]
            out["validate_path_s"] = round(t, 2)
            out["validate_rows_per_s"] = round(args.rows / t)
            _, (t,) = timed(lambda: c.validate_file({"file_id": obj.id}))
            out["validate_stored_cached_ms"] = round(t * 1000, 1)
            last = args.rows - 50
            c.file_rows(obj.id, 0, 50)
            _, first_times = timed(lambda: c.file_rows(obj.id, 0, 50), repeat=30)
            page, last_times = timed(lambda: c.file_rows(obj.id, last, 50), repeat=30)
            assert page.data[-1].line == args.rows
            p0, pn = statistics.median(first_times), statistics.median(last_times)
            out["page50_first_ms"] = round(p0 * 1000, 2)
            out["page50_last_ms"] = round(pn * 1000, 2)
            out["page_last_over_first"] = round(pn / p0, 2)
            train = make_file(work / "train.jsonl", 100_000, seed=2, prose=True)
            valid = make_file(work / "valid.jsonl", 10_000, seed=3, prose=True)
            plant(train, valid)
            report, (t,) = timed(lambda: c.validate_file({"path": str(train), "against": str(valid)}))
            out["overlap_100k_x_10k_s"] = round(t, 2)
            out["overlap_exact"] = report.overlap.exact
            out["overlap_near"] = report.overlap.near
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
