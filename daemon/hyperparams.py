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
    # an episode's tokens after the prompt: a tool call (23), its result (~6), the answer (~5)
    "builtin:tiny-tools": {"parameters": 340_000, "max_completion_length": 48, "max_prompt_length": 64},
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


def resolve_hyperparameters(hp: api.ReinforcementHyperparameters, *, model: str, train_rows: int, valid_rows: int,
                            seed: int, device: DeviceInfo | None = None) -> api.ResolvedHyperparameters:
    """The values a job runs with; each rule is written next to its key (docs/hyperparameters.md).

    A rule that is a constant is the field's default in `api.ResolvedHyperparameters` (one place for it).
    """
    device = device or DeviceInfo.detect()
    params = model_parameters(model)
    builtin = BUILTIN_MODELS.get(model, {})
    tiny = params is not None and params < 50_000_000
    constant = api.ResolvedHyperparameters.model_fields

    def given(name: str, rule: Any = None) -> Any:
        """The user's value, else the auto rule's (`rule`, or the field's constant default)."""
        value = getattr(hp, name)
        if value != "auto" and value is not None:
            return value
        return constant[name].default if rule is None else rule

    # compute_multiplier scales exploration: completions sampled per prompt
    compute_multiplier = float(given("compute_multiplier"))
    num_generations = given("num_generations", max(2, int(round(8 * compute_multiplier))))
    # batch_size = prompts per optimizer step (OpenAI's meaning); never more than the training rows
    batch_size = given("batch_size", min(16 if tiny or device.kind == "cuda" else 8, max(1, train_rows)))
    steps_per_epoch = max(1, math.ceil(train_rows / batch_size))
    # n_epochs: enough passes for ~300 optimizer steps on small sets, at most 10, at least 1
    n_epochs = given("n_epochs", max(1, min(10, math.ceil(300 / steps_per_epoch))))
    max_steps = given("max_steps", steps_per_epoch * n_epochs)
    # learning rate: LoRA base rate by model size, times OpenAI's multiplier
    learning_rate_multiplier = float(given("learning_rate_multiplier"))
    base_rate = 5e-4 if (tiny or params is None and model in BUILTIN_MODELS) else (1e-4 if params and params < 2e9
                                                                                    else 5e-5)
    learning_rate = given("learning_rate", base_rate * learning_rate_multiplier)
    effort = hp.reasoning_effort or "default"
    lora_r = given("lora_r")
    return api.ResolvedHyperparameters(
        compute_multiplier=compute_multiplier, num_generations=num_generations, batch_size=batch_size,
        gradient_accumulation_steps=given("gradient_accumulation_steps"), n_epochs=n_epochs, max_steps=max_steps,
        learning_rate_multiplier=learning_rate_multiplier, learning_rate=learning_rate,
        # validation: ~10 validations over the run, on up to 64 rows (all of them when fewer)
        eval_interval=given("eval_interval", max(1, max_steps // 10)),
        eval_samples=min(given("eval_samples", 64), max(valid_rows, 0)),
        seed=given("seed", seed), reasoning_effort=effort,
        # completion length: the built-in model's own, else by reasoning effort
        max_completion_length=given("max_completion_length", builtin.get("max_completion_length") or {
            "low": 256, "default": 512, "medium": 1024, "high": 2048}[effort]),
        max_prompt_length=given("max_prompt_length", builtin.get("max_prompt_length") or 1024),
        temperature=given("temperature"), beta=given("beta"), loss_type=given("loss_type"),
        lora_r=lora_r, lora_alpha=given("lora_alpha", 2 * lora_r), lora_dropout=given("lora_dropout"),
        lora_target_modules=given("lora_target_modules"),
        precision=given("precision", "bf16" if device.kind == "cuda" else "fp32"),
        use_vllm=given("use_vllm"),
        # one process per visible GPU (torchrun), one on CPU
        num_processes=given("num_processes", device.count if device.kind == "cuda" else 1),
        save_total_limit=given("save_total_limit"), samples_per_step=given("samples_per_step"),
        max_episode_steps=given("max_episode_steps"), device=device.kind,
    )


def check_resolved(r: api.ResolvedHyperparameters) -> list[tuple[str, str]]:
    """Combinations TRL would reject later, reported now as (param, message)."""
    problems: list[tuple[str, str]] = []
    if r.num_generations < 2:
        problems.append(("num_generations", "GRPO needs at least 2 completions per prompt"))
    if r.eval_samples < 0:
        problems.append(("eval_samples", "must be >= 0"))
    if r.completions_per_step % r.num_processes:
        problems.append(("num_processes", f"batch_size x num_generations = {r.completions_per_step} completions per "
                                          f"step must split evenly over {r.num_processes} processes"))
    if r.max_completion_length < 1:
        problems.append(("max_completion_length", "must be >= 1"))
    return problems
