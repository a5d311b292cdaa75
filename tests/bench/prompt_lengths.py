"""Benchmark: `estimate_only` pre-flight with the training file's real prompt lengths (target: under 1 s).

    python tests/bench/prompt_lengths.py [--rows 10000] [--n 10]

A real daemon on a temp RFT_HOME with the built-in models' shared cache (tests/conftest.py builds them). A
training file of `rows` gene-ranking-style rows (a developer message and a user message of 150-400 characters;
every row with a tool schema for the tools model) is imported; for each model the first request measures the
prompts (chat template + tokenizer.json, then cached per file and tokenizer) and `n` more read the cache.
Prints JSON: per model the first request's latency and the daemon's `elapsed_s`, the warm median and max, and
the prompt length the estimate used with its reason.
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

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TOOL = {"type": "function", "function": {"name": "add", "description": "The exact sum of two integers.",
                                         "parameters": {"type": "object", "properties": {
                                             "a": {"type": "integer"}, "b": {"type": "integer"}},
                                                        "required": ["a", "b"]}}}


def write_rows(path: Path, rows: int, tools: bool, seed: int = 0) -> None:
    rnd = random.Random(seed)
    words = ("bleeding", "ataxia", "seizures", "hepatomegaly", "hypotonia", "cataract", "anemia", "short stature",
             "hearing loss", "cardiomyopathy", "developmental delay", "retinitis pigmentosa")
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            phenotypes = "\n".join(f"- {rnd.choice(words)}" for _ in range(rnd.randint(3, 25)))
            row: dict[str, object] = {"messages": [
                {"role": "developer", "content": "You are a clinical genetics assistant. List the most likely "
                                                 "causal genes, best first, one per line."},
                {"role": "user", "content": f"Patient {i}: {rnd.choice(('child', 'adult'))}.\nPhenotypes:\n"
                                            f"{phenotypes}"}], "answer": "F8"}
            if tools:
                row["tools"] = [TOOL]
            f.write(json.dumps(row) + "\n")


def main() -> int:
    from tests.conftest import _model_cache_dir
    from tests.gpu.test_prompt_lengths import CHATML as CHATML_TEMPLATE
    from tests.support.daemon_proc import DaemonProcess
    from tests.support.jobs import EXACT_GRADER

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=10)
    args = ap.parse_args()
    cache = _model_cache_dir()
    root = Path(tempfile.mkdtemp(prefix="rft-bench-prompts-"))
    chatml = root / "chatml-model"  # the built-in character tokenizer under a Qwen2-style ChatML template
    chatml.mkdir()
    shutil.copy(cache / "tiny-arith" / "tokenizer.json", chatml / "tokenizer.json")
    config = json.loads((cache / "tiny-arith" / "tokenizer_config.json").read_text())
    (chatml / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHATML_TEMPLATE}))
    shutil.copy(cache / "tiny-arith" / "config.json", chatml / "config.json")
    plain, with_tools = root / "train.jsonl", root / "train-tools.jsonl"
    write_rows(plain, args.rows, tools=False)
    write_rows(with_tools, args.rows, tools=True)
    d = DaemonProcess(root / "home", env={"RFT_WORKER_MODULE": "tests.support.fake_worker",
                                          "RFT_MODEL_CACHE": str(cache)}).start()
    out: dict[str, object] = {"rows": args.rows, "n": args.n, "file_bytes": {"plain": plain.stat().st_size,
                                                                            "tools": with_tools.stat().st_size}}
    try:
        c = d.client()
        files = {"plain": c.import_file(str(plain)).id, "tools": c.import_file(str(with_tools)).id}
        cases = {"builtin:tiny-arith": ("builtin:tiny-arith", "plain"),
                 "builtin:tiny-tools (row tools)": ("builtin:tiny-tools", "tools"),
                 "chatml template (row tools)": (str(chatml), "tools")}
        for name, (model, file) in cases.items():
            request = {"model": model, "training_file": files[file], "estimate_only": True,
                       "method": {"type": "reinforcement", "reinforcement": {
                           "grader": EXACT_GRADER, "hyperparameters": {"max_prompt_length": 4096}}}}
            t = time.perf_counter()
            first = c.preflight(request)
            first_s = time.perf_counter() - t
            warm = []
            for _ in range(args.n):
                t = time.perf_counter()
                c.preflight(request)
                warm.append(time.perf_counter() - t)
            e = first.memory_estimate
            a = e.assumptions if e else {}
            out[name] = {"first_s": round(first_s, 4), "first_daemon_s": first.elapsed_s,
                         "warm_median_s": round(statistics.median(warm), 4), "warm_max_s": round(max(warm), 4),
                         "prompt_length": a.get("prompt_length"), "dataset_prompt_p95": a.get("dataset_prompt_p95"),
                         "prompt_length_reason": a.get("prompt_length_reason")}
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
