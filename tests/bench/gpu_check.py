"""The GPU checks of issue 14, in one run on a CUDA machine; prints one JSON object (scripts/gpu_check.sh).

    python tests/bench/gpu_check.py [--steps 8] [--out result.json] [--skip demo,vllm,oom]

1. doctor: the daemon's own report (torch, CUDA, GPUs, vLLM compatibility, sandbox, disk).
2. demo on CUDA: `rft-tui demo --no-tui --json` (the built-in model, precision "auto" -> bf16 on a bf16 GPU):
   base vs final validation reward, training seconds, the resolved precision.
3. a ~0.5B model of a real architecture (Qwen2 layout, tests/gpu/configs.py QWEN2_05B), randomly initialised
   from its config on this machine, with a tokenizer built here (no hub): the built-in model's characters
   plus placeholder tokens up to the config's vocabulary, and its chat template.
4. GRPO steps/s on that model with vLLM (colocate) vs HF generate, same data and settings (target >= 1.3x).
5. estimated vs measured peak GPU memory for each (nvidia-smi sampled every 100 ms minus the baseline;
   target within +-20 %).
6. out of memory made real: an oversized batch (forced past the estimate's refusal) must fail with code
   out_of_memory, naming the step and phase.
Each part records its own error and the run goes on; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
ARITH = REPO / "examples" / "arithmetic"
GiB = 2**30
TERMINAL = {"succeeded", "failed", "cancelled"}


class GpuMemorySampler:
    """Peak `memory.used` of GPU 0 (MiB -> bytes) from nvidia-smi every 100 ms, while running."""

    def __init__(self) -> None:
        self.peak = 0
        self.baseline = self.sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def sample() -> int:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i",
                                  "0"], capture_output=True, text=True, timeout=10, check=False)
            return int(float(out.stdout.strip().splitlines()[0])) * 2**20 if out.returncode == 0 else 0
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
            return 0  # no GPU here: the peak stays unknown (0)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.sample())

    def __enter__(self) -> GpuMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def used(self) -> int:
        return max(0, self.peak - self.baseline)


def rft(home: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RFT_HOME": str(home), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rft_tui", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def part(result: dict[str, Any], name: str, fn: Any, *args: Any) -> Any:
    started = time.time()
    try:
        value = fn(*args)
        result[name] = value
        return value
    except Exception as exc:  # noqa: BLE001 - one part failing must not hide the others' numbers
        result[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        return None
    finally:
        if isinstance(result.get(name), dict):
            result[name]["seconds"] = round(time.time() - started, 1)


def doctor(home: Path) -> dict[str, Any]:
    out = rft(home, "doctor", "--json", timeout=600)
    report = json.loads(out.stdout)
    return {"ok": report["ok"], "checks": {c["name"]: f"{c['status']}: {c['detail']}" for c in report["checks"]}}


def demo(home: Path) -> dict[str, Any]:
    out = rft(home, "demo", "--no-tui", "--json")
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-1500:] or out.stdout[-1500:])
    data = json.loads(out.stdout)
    job = json.loads(rft(home, "jobs", "show", data["job"], "--json").stdout or "{}")
    resolved = job.get("resolved_hyperparameters") or {}
    return {**data, "precision": resolved.get("precision"), "device": resolved.get("device"),
            "auto_reasons": resolved.get("auto_reasons")}


def build_model(root: Path) -> str:
    """Qwen2-style 0.5B, random init from its config, bf16, with a tokenizer made here."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    from daemon.models import CHARS, CHAT_TEMPLATE, SPECIAL_TOKENS
    from tests.gpu.configs import QWEN2_05B

    out = root / "qwen2-0.5b-random"
    cfg = AutoConfig.for_model(**QWEN2_05B)
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + CHARS)}
    for i in range(len(vocab), cfg.vocab_size):
        vocab[f"<x{i}>"] = i  # placeholders: random weights may emit any id; they decode to a visible token
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>", bos_token="<bos>", chat_template=CHAT_TEMPLATE,
                                        padding_side="left", model_max_length=4096)
    cfg.pad_token_id, cfg.eos_token_id, cfg.bos_token_id = (vocab["<pad>"], vocab["<eos>"], vocab["<bos>"])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def run_job(home: Path, model: str, steps: int, hp: dict[str, Any], force: bool = False,
            timeout: float = 1500) -> dict[str, Any]:
    """A real job through the daemon; steps/s over steps 2..N from the stored step times; GPU peak sampled."""
    from daemon.client import Client
    from daemon.paths import Paths
    from daemon.store import Store

    client = Client.connect(home=home, timeout=600)
    train = client.import_file(str(ARITH / "train.jsonl")).id
    valid = client.import_file(str(ARITH / "valid.jsonl")).id
    grader = json.loads((ARITH / "grader.json").read_text())
    with GpuMemorySampler() as mem:
        job = client.create_job({"model": model, "training_file": train, "validation_file": valid, "seed": 1,
                                 "force": force, "method": {"type": "reinforcement", "reinforcement": {
                                     "grader": grader, "hyperparameters": {"max_steps": steps, **hp}}}})
        deadline = time.time() + timeout
        while client.get_job(job.id).status.value not in TERMINAL and time.time() < deadline:
            time.sleep(1)
    final = client.get_job(job.id)
    store = Store(Paths.resolve(str(home)).db)
    rows = store.query("SELECT step, created_at FROM metrics WHERE job_id = ? ORDER BY step", [job.id])
    times = {int(r["step"]): float(r["created_at"]) for r in rows}
    lo, hi = 2, max(times, default=0)
    rate = (hi - lo) / (times[hi] - times[lo]) if hi > lo and times[hi] > times[lo] else None
    snap = final.snapshot
    est = snap.memory_estimate if snap else None
    return {"job": job.id, "status": final.status.value, "error": final.error.model_dump() if final.error else None,
            "steps": hi, "steps_per_s": rate, "measured_peak_bytes": mem.used,
            "estimated_total_bytes": est.total_bytes if est else None,
            "estimate_vs_measured": (est.total_bytes / mem.used) if est and mem.used else None,
            "resolved": {k: getattr(snap.hyperparameters, k) for k in (
                "precision", "use_vllm", "vllm_gpu_memory_utilization", "vllm_enable_sleep_mode",
                "gradient_accumulation_steps", "gradient_checkpointing")} if snap else None}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: doctor,demo,vllm,hf,oom")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    root = Path(tempfile.mkdtemp(prefix="rft-gpu-check-"))
    home = root / "home"
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "python": sys.executable}
    started = rft(home, "daemon", "start", timeout=120)
    if started.returncode != 0:
        result["daemon"] = {"error": started.stderr[-1500:]}
    if "doctor" not in skip:
        part(result, "doctor", doctor, home)
    if "demo" not in skip:
        part(result, "demo", demo, root / "demo-home")
    model = part(result, "model_dir", build_model, root)
    # arithmetic prompts are under 32 tokens (the estimate reads max_prompt_length, not the data); a random-init
    # model never stops early, so every completion is max_completion_length long, as the estimate assumes
    hp = {"batch_size": 8, "num_generations": 8, "max_prompt_length": 32, "max_completion_length": 128,
          "eval_samples": 16, "eval_interval": 1000, "beta": 0.0}
    if model:
        if "hf" not in skip:
            part(result, "hf_generate", run_job, home, model, args.steps, {**hp, "use_vllm": False})
        if "vllm" not in skip:
            part(result, "vllm", run_job, home, model, args.steps, {**hp, "use_vllm": True})
        hf, vl = result.get("hf_generate") or {}, result.get("vllm") or {}
        if hf.get("steps_per_s") and vl.get("steps_per_s"):
            result["vllm_speedup"] = vl["steps_per_s"] / hf["steps_per_s"]
        if "oom" not in skip:
            part(result, "oom", run_job, home, model, 2, {"batch_size": 64, "num_generations": 16,
                                                          "max_prompt_length": 32,
                                                          "max_completion_length": 2048, "use_vllm": False,
                                                          "gradient_accumulation_steps": 1,
                                                          "gradient_checkpointing": False}, True)
    rft(home, "daemon", "stop", timeout=60)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
