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
from daemon.devices import Gpu, cpu_memory, query_gpus
from daemon.model_shape import ModelShape

#: compute_multiplier's auto num_generations stops here (more completions per prompt than this is not a plan)
MAX_AUTO_GENERATIONS = 256

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
    gpus: tuple[Gpu, ...] = ()  # each visible GPU with its free memory (nvidia-smi), when it answered

    @classmethod
    def detect(cls) -> DeviceInfo:
        """CUDA when an NVIDIA driver is visible (no torch import), else CPU. `RFT_DEVICE=cpu` forces CPU."""
        forced = os.environ.get("RFT_DEVICE", "").lower()
        if forced == "cpu":
            return cls("cpu", 1, None)
        gpus = query_gpus()
        if gpus:
            return cls("cuda", len(gpus), min(g.total_bytes for g in gpus) / 2**30, tuple(gpus))
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi"):
            proc = Path("/proc/driver/nvidia/gpus")
            found = list(proc.glob("*")) if proc.exists() else []
            count = len(found) or 1
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
                            seed: int, device: DeviceInfo | None = None, shape: ModelShape | None = None,
                            prompt_tokens: int | None = None) -> api.ResolvedHyperparameters:
    """The values a job runs with; each rule is written next to its key (docs/hyperparameters.md).

    `prompt_tokens`: the training file's longest prompt (daemon/prompt_lengths.py), which the memory rules then
    assume instead of `max_prompt_length` (capped by it), as the estimate does.

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
    # at most MAX_AUTO_GENERATIONS completions per prompt from the multiplier (1e308 * 8 is not a count)
    num_generations = given("num_generations", max(2, int(round(min(8 * compute_multiplier, MAX_AUTO_GENERATIONS)))))
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
    base = api.ResolvedHyperparameters(
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
        use_vllm=given("use_vllm"), quantization=given("quantization"),
        gradient_checkpointing=given("gradient_checkpointing"), vllm_mode=given("vllm_mode"),
        vllm_server_base_url=hp.vllm_server_base_url, vllm_gpu_memory_utilization=given("vllm_gpu_memory_utilization"),
        vllm_enable_sleep_mode=given("vllm_enable_sleep_mode"), on_oom=given("on_oom"),
        # one process per visible GPU (torchrun), one on CPU
        num_processes=given("num_processes", device.count if device.kind == "cuda" else 1),
        save_total_limit=given("save_total_limit"), samples_per_step=given("samples_per_step"),
        max_episode_steps=given("max_episode_steps"), device=device.kind,
    )
    return resolve_machine_rules(hp, base, device, shape, prompt_tokens)


def resolve_machine_rules(hp: api.ReinforcementHyperparameters, r: api.ResolvedHyperparameters, device: DeviceInfo,
                          shape: ModelShape | None, prompt_tokens: int | None = None) -> api.ResolvedHyperparameters:
    """The "auto" rules that read the machine and the memory estimate; each records why in `auto_reasons`.

    precision: bf16 where every GPU does it (compute capability >= 8.0), else fp16; fp32 on CPU.
    use_vllm: on with a CUDA GPU and vLLM installed in the worker's environment. vllm_mode: server when a
    server URL is given, else colocate. gradient_checkpointing: on when the estimate without it does not fit.
    vllm_gpu_memory_utilization: what vLLM needs (weights, KV pool for one generation batch, overhead) as a
    share of the GPU. vllm_enable_sleep_mode: on when the vLLM pool and training do not fit side by side.
    """
    from daemon import memory_estimate as me

    reasons: dict[str, str] = {}
    updates: dict[str, Any] = {}
    cuda = device.kind == "cuda"
    if hp.precision == "auto":
        if not cuda:
            updates["precision"], reasons["precision"] = "fp32", "CPU: fp32 (no fast half precision on CPU)"
        elif device.gpus and not all(g.bf16 for g in device.gpus):
            updates["precision"] = "fp16"
            reasons["precision"] = "fp16: " + ", ".join(f"{g.name} (compute {g.compute_capability})"
                                                        for g in device.gpus if not g.bf16) + " has no bf16"
        else:
            updates["precision"], reasons["precision"] = "bf16", "bf16: every GPU supports it"
    if hp.use_vllm == "auto":
        if not cuda:
            updates["use_vllm"], reasons["use_vllm"] = False, "off: no CUDA GPU (vLLM generates on GPUs only)"
        else:
            from daemon.worker_env import vllm_version

            version = vllm_version()
            updates["use_vllm"] = version is not None
            reasons["use_vllm"] = (f"on: CUDA GPU and vLLM {version} in the worker's environment" if version else
                                   "off: vLLM is not installed in the worker's environment (scripts/setup.sh gpu)")
    if hp.vllm_mode == "auto":
        updates["vllm_mode"] = "server" if hp.vllm_server_base_url else "colocate"
    if hp.on_oom == "auto":
        updates["on_oom"] = "fail"
    if hp.quantization == "auto":
        updates["quantization"] = "none"
    r = r.model_copy(update=updates)
    gpu_total = min((g.total_bytes for g in device.gpus), default=None) if cuda else None
    free = _free_bytes(device)
    if shape is None:
        for key in ("gradient_checkpointing", "vllm_gpu_memory_utilization", "vllm_enable_sleep_mode"):
            if getattr(hp, key) == "auto":
                reasons[key] = "default: no memory estimate for this model (no config.json here)"
    else:
        updates = {}
        plan = me.Plan.of(r)
        if hp.vllm_gpu_memory_utilization == "auto" and r.use_vllm and cuda and gpu_total:
            updates["vllm_gpu_memory_utilization"] = me.vllm_utilization(shape, plan, gpu_total)
            reasons["vllm_gpu_memory_utilization"] = (
                f"vLLM needs about {me.vllm_needed_bytes(shape, plan) / 2**30:.1f} GiB (bf16 weights, KV pool for "
                f"{plan.generation_batch} sequences of {plan.sequence_length} tokens, overhead)")
            plan = me.replace(plan, vllm_gpu_memory_utilization=updates["vllm_gpu_memory_utilization"])
        if prompt_tokens:  # vLLM's pool above keeps room for max_prompt_length (its max_model_len)
            plan = me.replace(plan, prompt_length=min(prompt_tokens, r.max_prompt_length))
        accum, ckpt, why = fit_micro_batch(hp, r, shape, plan, free, gpu_total)
        if hp.gradient_accumulation_steps == "auto":
            updates["gradient_accumulation_steps"], reasons["gradient_accumulation_steps"] = accum, why
            plan = me.replace(plan, accumulation=accum)
        if hp.gradient_checkpointing == "auto":
            updates["gradient_checkpointing"], reasons["gradient_checkpointing"] = ckpt, why
            plan = me.replace(plan, gradient_checkpointing=ckpt)
        if hp.vllm_enable_sleep_mode == "auto" and r.use_vllm and cuda and r.vllm_mode == "colocate":
            awake = me.breakdown(shape, plan, gpu_total).total
            asleep = me.breakdown(shape, me.replace(plan, vllm_enable_sleep_mode=True), gpu_total).total
            on = free is not None and awake > free >= asleep
            updates["vllm_enable_sleep_mode"] = on
            reasons["vllm_enable_sleep_mode"] = (f"{'on' if on else 'off'}: about {awake / 2**30:.1f} GiB with vLLM "
                                                 f"awake while training, {asleep / 2**30:.1f} GiB asleep")
        r = r.model_copy(update=updates)
    return r.model_copy(update={"auto_reasons": reasons})


def fit_micro_batch(hp: api.ReinforcementHyperparameters, r: api.ResolvedHyperparameters, shape: ModelShape,
                    plan: Any, free: int | None, gpu_total: int | None) -> tuple[int, bool, str]:
    """(gradient_accumulation_steps, gradient_checkpointing, why) for the "auto" ones: the global batch stays,
    split into the fewest micro-steps that fit; checkpointing only when no split fits without it."""
    from daemon import memory_estimate as me

    fixed_accum = None if hp.gradient_accumulation_steps == "auto" else r.gradient_accumulation_steps
    fixed_ckpt = None if hp.gradient_checkpointing == "auto" else r.gradient_checkpointing
    per_process = max(1, r.completions_per_step // r.num_processes)
    accums = [fixed_accum] if fixed_accum else [a for a in (1, 2, 4, 8, 16, 32, 64) if per_process % a == 0]
    ckpts = [fixed_ckpt] if fixed_ckpt is not None else [False, True]
    gib = 2**30
    if free is None:
        return accums[0], ckpts[0], "default: free memory unknown"
    for ckpt in ckpts:
        for accum in accums:
            p = me.replace(plan, accumulation=accum, gradient_checkpointing=ckpt)
            need = me.breakdown(shape, p, gpu_total).total
            if need <= free:
                how = f"{accum} micro-step(s) of {per_process // accum} completions" + (
                    ", gradient checkpointing" if ckpt else "")
                return accum, ckpt, (f"{how}: about {need / gib:.1f} GiB of {free / gib:.1f} GiB free "
                                     f"(sequences of {p.prompt_length} + {p.completion_length} tokens)")
    return accums[-1], ckpts[-1], f"nothing fits in {free / gib:.1f} GiB free: the smallest micro-batch, checkpointed"


def _free_bytes(device: DeviceInfo) -> int | None:
    """Free memory of the tightest device the job uses: a GPU's, or the RAM on CPU."""
    if device.kind == "cuda":
        return min((g.free_bytes for g in device.gpus), default=None)
    return cpu_memory()[0]


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
    split = r.num_processes * r.gradient_accumulation_steps
    if r.completions_per_step % split:
        problems.append(("gradient_accumulation_steps",
                         f"batch_size x num_generations = {r.completions_per_step} completions per step must split "
                         f"evenly over {r.num_processes} process(es) x {r.gradient_accumulation_steps} micro-steps"))
    if r.use_vllm and not r.on_cuda:
        problems.append(("use_vllm", "vLLM generates on CUDA GPUs only; this machine has none (leave it \"auto\")"))
    if r.quantization == "4bit" and not r.on_cuda:
        problems.append(("quantization", "4-bit (bitsandbytes) needs a CUDA GPU; this machine has none"))
    if r.vllm_mode == "server" and r.use_vllm and not r.vllm_server_base_url:
        problems.append(("vllm_server_base_url", "server mode needs the URL `trl vllm-serve` listens on"))
    return problems
