"""Resolve every `"auto"` hyperparameter by a documented rule (dataset size, model size, device).

The daemon resolves at job creation so the job records the exact values it will run with; no torch
import here (device facts come from the environment, model size from config.json or the built-in table).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon import api

BUILTIN_MODELS: dict[str, dict[str, Any]] = {
    # name -> facts the rules need (parameters, a sensible completion length)
    "builtin:tiny-arith": {"parameters": 1_000_000, "max_completion_length": 6, "max_prompt_length": 16},
}


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "cuda" or "cpu"
    count: int
    memory_gb: float | None

    @classmethod
    def detect(cls) -> DeviceInfo:
        """CUDA when an NVIDIA driver is visible (no torch import), else CPU. `RFT_DEVICE=cpu` forces CPU."""
        forced = os.environ.get("RFT_DEVICE", "").lower()
        if forced == "cpu":
            return cls("cpu", 1, None)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi"):
            gpus = list(Path("/proc/driver/nvidia/gpus").glob("*")) if Path("/proc/driver/nvidia/gpus").exists() else []
            count = len(gpus) or 1
            if visible is not None:
                count = len([v for v in visible.split(",") if v.strip()]) if visible.strip() else 0
            if count:
                return cls("cuda", count, None)
        return cls("cpu", 1, None)


def model_parameters(model: str) -> int | None:
    """Parameter count for the built-in models, or estimated from a local config.json; None if unknown."""
    if model in BUILTIN_MODELS:
        return int(BUILTIN_MODELS[model]["parameters"])
    cfg_path = Path(model).expanduser() / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return None
    h, n, v = cfg.get("hidden_size"), cfg.get("num_hidden_layers"), cfg.get("vocab_size")
    inter = cfg.get("intermediate_size") or (4 * h if h else None)
    if not (h and n and v and inter):
        return None
    return int(n * (4 * h * h + 3 * h * inter) + v * h)


def _auto(value: Any) -> bool:
    return value == "auto"


def resolve_hyperparameters(hp: api.ReinforcementHyperparameters, *, model: str, train_rows: int,
                            valid_rows: int, seed: int, device: DeviceInfo | None = None) -> dict[str, Any]:
    """The values a job runs with; each rule is written next to its key (README "Hyperparameters")."""
    device = device or DeviceInfo.detect()
    params = model_parameters(model)
    builtin = BUILTIN_MODELS.get(model, {})
    tiny = params is not None and params < 50_000_000
    r: dict[str, Any] = {}

    # compute_multiplier scales exploration: completions sampled per prompt
    r["compute_multiplier"] = 1.0 if _auto(hp.compute_multiplier) else float(hp.compute_multiplier)
    r["num_generations"] = (max(2, int(round(8 * r["compute_multiplier"]))) if _auto(hp.num_generations)
                            else int(hp.num_generations))
    # batch_size = prompts per optimizer step (OpenAI's meaning); never more than the training rows
    r["batch_size"] = min(16 if tiny or device.kind == "cuda" else 8, max(1, train_rows)) if _auto(hp.batch_size) \
        else int(hp.batch_size)
    r["gradient_accumulation_steps"] = (1 if _auto(hp.gradient_accumulation_steps)
                                        else int(hp.gradient_accumulation_steps))
    steps_per_epoch = max(1, math.ceil(train_rows / r["batch_size"]))
    # n_epochs: enough passes for ~300 optimizer steps on small sets, at most 10, at least 1
    r["n_epochs"] = max(1, min(10, math.ceil(300 / steps_per_epoch))) if _auto(hp.n_epochs) else int(hp.n_epochs)
    r["max_steps"] = steps_per_epoch * r["n_epochs"] if _auto(hp.max_steps) else int(hp.max_steps)
    # learning rate: LoRA base rate by model size, times OpenAI's multiplier
    r["learning_rate_multiplier"] = 1.0 if _auto(hp.learning_rate_multiplier) else float(hp.learning_rate_multiplier)
    if _auto(hp.learning_rate):
        base = (5e-4 if (tiny or params is None and model in BUILTIN_MODELS)
                else (1e-4 if params and params < 2e9 else 5e-5))
        r["learning_rate"] = base * r["learning_rate_multiplier"]
    else:
        r["learning_rate"] = float(hp.learning_rate)
    # validation: ~10 validations over the run, on up to 64 rows (all of them when fewer)
    r["eval_interval"] = max(1, r["max_steps"] // 10) if _auto(hp.eval_interval) else int(hp.eval_interval)
    r["eval_samples"] = min(valid_rows, 64) if _auto(hp.eval_samples) else min(int(hp.eval_samples), max(valid_rows, 0))
    r["seed"] = seed if _auto(hp.seed) else int(hp.seed)
    effort = hp.reasoning_effort or "default"
    r["reasoning_effort"] = effort
    if _auto(hp.max_completion_length):
        r["max_completion_length"] = builtin.get("max_completion_length") or {
            "low": 256, "default": 512, "medium": 1024, "high": 2048}[effort]
    else:
        r["max_completion_length"] = int(hp.max_completion_length)
    r["max_prompt_length"] = (builtin.get("max_prompt_length") or 1024) if _auto(hp.max_prompt_length) \
        else int(hp.max_prompt_length)
    r["temperature"] = 1.0 if _auto(hp.temperature) else float(hp.temperature)
    r["beta"] = 0.01 if _auto(hp.beta) else float(hp.beta)
    r["loss_type"] = "dapo" if _auto(hp.loss_type) else hp.loss_type
    r["lora_r"] = 16 if _auto(hp.lora_r) else int(hp.lora_r)
    r["lora_alpha"] = 2 * r["lora_r"] if _auto(hp.lora_alpha) else int(hp.lora_alpha)
    r["lora_dropout"] = 0.0 if _auto(hp.lora_dropout) else float(hp.lora_dropout)
    r["lora_target_modules"] = "all-linear" if _auto(hp.lora_target_modules) else list(hp.lora_target_modules)
    r["precision"] = ("bf16" if device.kind == "cuda" else "fp32") if _auto(hp.precision) else hp.precision
    r["use_vllm"] = False if _auto(hp.use_vllm) else bool(hp.use_vllm)
    # one process per visible GPU (torchrun), one on CPU
    r["num_processes"] = (device.count if device.kind == "cuda" else 1) if _auto(hp.num_processes) \
        else int(hp.num_processes)
    r["save_total_limit"] = 4 if _auto(hp.save_total_limit) else int(hp.save_total_limit)
    r["samples_per_step"] = 8 if _auto(hp.samples_per_step) else int(hp.samples_per_step)
    r["device"] = device.kind
    return r


def check_resolved(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Combinations TRL would reject later, reported now as (param, message)."""
    problems: list[tuple[str, str]] = []
    if r["num_generations"] < 2:
        problems.append(("num_generations", "GRPO needs at least 2 completions per prompt"))
    if r["eval_samples"] < 0:
        problems.append(("eval_samples", "must be >= 0"))
    completions = r["batch_size"] * r["num_generations"]
    if completions % r["num_processes"]:
        problems.append(("num_processes", f"batch_size x num_generations = {completions} completions per step must "
                                          f"split evenly over {r['num_processes']} processes"))
    if r["max_completion_length"] < 1:
        problems.append(("max_completion_length", "must be >= 1"))
    return problems
