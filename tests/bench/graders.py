"""Grader throughput benchmark; run on demand: `.venv/bin/python tests/bench/graders.py` (prints JSON).

Targets (2-core machine): string_check >= 100k samples/s, fuzzy_match >= 50k/s, the python grader via
the warm sandbox pool (each worker under bubblewrap, one grader per worker) >= 50x a fresh `python -c`
subprocess per sample and >= 30k samples/s.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from graders import BatchGrader, sandbox_mode

TRIVIAL_PYTHON = "def grade(sample, item):\n    return float(sample['output_text'] == item['answer'])\n"


def data(n: int) -> tuple[list[str], list[dict]]:
    rng = random.Random(0)
    items, samples = [], []
    for _ in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        answer = str(a + b)
        items.append({"messages": [{"role": "user", "content": f"{a}+{b}="}], "answer": answer})
        samples.append(answer if rng.random() < 0.4 else str(a + b + rng.randint(-9, 9)))
    return samples, items


def rate(spec: dict, n: int, repeats: int = 3) -> float:
    samples, items = data(n)
    best = 0.0
    with BatchGrader(spec) as batch:
        batch.grade(samples[:100], items[:100])  # warm up (imports, workers)
        for _ in range(repeats):
            start = time.perf_counter()
            result = batch.grade(samples, items)
            elapsed = time.perf_counter() - start
            assert len(result.rewards) == n and not result.errors, result.errors
            best = max(best, n / elapsed)
    return best


def naive_python_rate(n: int) -> float:
    """A fresh interpreter per sample, the way a naive reward function would shell out."""
    samples, items = data(n)
    runner = ("import json, sys\nexec(sys.argv[1])\nsample, item = json.loads(sys.argv[2])\n"
              "print(grade(sample, item))")
    start = time.perf_counter()
    for sample, item in zip(samples, items, strict=True):
        out = subprocess.run([sys.executable, "-c", runner, TRIVIAL_PYTHON,
                              json.dumps([{"output_text": sample}, item])],
                             capture_output=True, text=True, check=True)
        float(out.stdout)
    return n / (time.perf_counter() - start)


def main() -> None:
    string_check = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                    "reference": "{{item.answer}}", "operation": "eq"}
    fuzzy = {"type": "text_similarity", "name": "fuzzy", "input": "{{sample.output_text}}",
             "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}
    rouge = {**fuzzy, "name": "rouge", "evaluation_metric": "rouge_l"}
    python = {"type": "python", "name": "py", "source": TRIVIAL_PYTHON}
    arithmetic = json.loads((Path(__file__).resolve().parents[2] / "examples/arithmetic/grader.json").read_text())
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "string_check_per_s": round(rate(string_check, 200_000)),
        "fuzzy_match_per_s": round(rate(fuzzy, 100_000)),
        "rouge_l_per_s": round(rate(rouge, 10_000)),
        "arithmetic_demo_multi_per_s": round(rate(arithmetic, 100_000)),
        "python_pool_per_s": round(rate(python, 20_000)),
        "python_naive_subprocess_per_s": round(naive_python_rate(40), 1),
    }
    results["python_pool_vs_naive"] = round(results["python_pool_per_s"] / results["python_naive_subprocess_per_s"], 1)
    results["targets_met"] = {
        "string_check>=100k/s": results["string_check_per_s"] >= 100_000,
        "fuzzy_match>=50k/s": results["fuzzy_match_per_s"] >= 50_000,
        "python_pool>=50x_naive": results["python_pool_vs_naive"] >= 50,
        "python_pool>=30k/s": results["python_pool_per_s"] >= 30_000,
    }
    results["python_sandbox"] = sandbox_mode()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
