"""Will this job fit? Estimated peak memory per device from the model's config alone (no weights, no torch).

Each term is a rule over the model's shape (daemon/model_shape.py: exact parameter counts) and the resolved
hyperparameters; docs/gpu.md "Memory estimate" writes them out. The estimate aims at +-20 % of the measured
peak (tests/bench/gpu_check.py measures it on a GPU). A job more than 25 % over the free memory of its
tightest device is "clearly" too big and is refused at create unless forced; the cheapest change that makes
it fit is found by estimating the candidates in order of what they cost the user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from daemon import api
from daemon.devices import Gpu
from daemon.model_shape import ModelShape
from daemon.prompt_lengths import PromptLengthChoice

GiB = 2**30
#: bytes per parameter or activation element at each precision
PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
#: bitsandbytes nf4 with double quantization: 4 bits + an 8-bit absmax per 64 weights + fp32 per 256 absmaxes
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
CUDA_OVERHEAD = int(0.75 * GiB)  # CUDA context, cuBLAS workspaces, allocator slack (typical, measured on the bench)
CPU_OVERHEAD = int(0.5 * GiB)  # the Python process with torch, transformers and TRL imported
VLLM_OVERHEAD = int(1.0 * GiB)  # vLLM's activations, CUDA graphs and sampler beside its KV pool
ALLOCATOR_SLACK = 0.05  # PyTorch's caching allocator fragments: a few % on top of live tensors
CLEARLY_OVER = 1.25  # total > 1.25 x free: over even if the estimate is 20 % high


@dataclass(frozen=True)
class Plan:
    """The hyperparameters the estimate reads, apart from the model (mutable through `replace`)."""

    precision: str
    quantization: str
    lora_r: int
    lora_target_modules: str | list[str]
    batch_size: int  # prompts per optimizer step (all processes)
    num_generations: int
    processes: int
    accumulation: int
    prompt_length: int
    completion_length: int
    gradient_checkpointing: bool
    use_vllm: bool
    vllm_mode: str
    vllm_gpu_memory_utilization: float
    vllm_enable_sleep_mode: bool
    on_cuda: bool

    @classmethod
    def of(cls, hp: api.ResolvedHyperparameters) -> Plan:
        return cls(precision=hp.precision if hp.on_cuda else "fp32", quantization=hp.quantization,
                   lora_r=hp.lora_r, lora_target_modules=hp.lora_target_modules,
                   batch_size=hp.batch_size, num_generations=hp.num_generations, processes=hp.num_processes,
                   accumulation=hp.gradient_accumulation_steps,
                   prompt_length=hp.max_prompt_length, completion_length=hp.max_completion_length,
                   gradient_checkpointing=hp.gradient_checkpointing, use_vllm=hp.use_vllm, vllm_mode=hp.vllm_mode,
                   vllm_gpu_memory_utilization=hp.vllm_gpu_memory_utilization,
                   vllm_enable_sleep_mode=hp.vllm_enable_sleep_mode, on_cuda=hp.on_cuda)

    @property
    def generation_batch(self) -> int:
        """Completions one process generates at once (TRL generates a whole step's share together)."""
        return max(1, self.batch_size * self.num_generations // max(1, self.processes))

    @property
    def micro_batch(self) -> int:
        """Completions per process per forward/backward."""
        return max(1, self.generation_batch // max(1, self.accumulation))

    @property
    def sequence_length(self) -> int:
        return self.prompt_length + self.completion_length


@dataclass(frozen=True)
class Breakdown:
    weights: int
    trainable_params: int
    lora: int
    optimizer: int
    activations: int
    generation: int
    overhead: int
    total: int


# ---------------------------------------------------------------------------------------------- the terms


def targeted(shape: ModelShape, targets: str | list[str]) -> list[Any]:
    """The linear layers LoRA adapts: PEFT's "all-linear" is every decoder linear (never lm_head)."""
    if targets == "all-linear" or targets == ["all-linear"]:
        return list(shape.linears)
    names = {targets} if isinstance(targets, str) else set(targets)
    return [x for x in shape.linears if x.name in names]


def lora_params(shape: ModelShape, r: int, targets: str | list[str]) -> int:
    """r x (in + out) per adapted linear: A is r x in, B is out x r."""
    return sum(r * (x.in_features + x.out_features) * x.count for x in targeted(shape, targets))


def weights_bytes(shape: ModelShape, plan: Plan) -> int:
    """Base weights: 16/32-bit, or nf4 for the decoder linears under 4-bit (embeddings and norms stay 16-bit)."""
    per = PRECISION_BYTES[plan.precision]
    if plan.quantization != "4bit":
        return shape.parameters * per
    linear = sum(x.in_features * x.out_features * x.count for x in shape.linears)
    return int(linear * NF4_BYTES) + (shape.parameters - linear) * per


def activation_bytes(shape: ModelShape, plan: Plan) -> int:
    """One micro-batch's saved activations for backward, plus the completion logits (the big term for big vocabs).

    Per token per layer without checkpointing: the two norm inputs and outputs (4h), q, k, v and the attention
    output (2 q_dim + 2 kv_dim), the o_proj input and residual (2h), and the four MLP intermediates (4 x inter)
    -- at the compute precision. With gradient checkpointing only each layer's input (h) is kept, plus one
    layer's full set while it is recomputed. Logits: (completion + 1) x vocab per sequence, held in the compute
    dtype, divided by the temperature (a copy), and an fp32 log-softmax row.
    """
    per = PRECISION_BYTES[plan.precision]
    h, inter = shape.hidden_size, shape.intermediate_size
    kv_dim = shape.num_kv_heads * shape.head_dim
    per_layer = 6 * h + 2 * shape.q_dim + 2 * kv_dim + 4 * inter
    tokens = plan.micro_batch * plan.sequence_length
    if plan.gradient_checkpointing:
        layers = tokens * (shape.num_layers * h + per_layer) * per
    else:
        layers = tokens * shape.num_layers * per_layer * per
    logits = plan.micro_batch * (plan.completion_length + 1) * shape.vocab_size * (2 * per + 4)
    return layers + logits


def kv_cache_bytes(shape: ModelShape, sequences: int, length: int, per: int) -> int:
    """K and V for every layer: 2 x layers x kv_heads x head_dim per token."""
    return 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * per * sequences * length


def vllm_needed_bytes(shape: ModelShape, plan: Plan) -> int:
    """vLLM's own bf16 copy of the weights, a KV pool for one generation batch (+20 %), and its overhead."""
    kv = kv_cache_bytes(shape, plan.generation_batch, plan.sequence_length, 2)
    return shape.parameters * 2 + int(kv * 1.2) + VLLM_OVERHEAD


def vllm_utilization(shape: ModelShape, plan: Plan, gpu_total: int) -> float:
    """`vllm_gpu_memory_utilization` "auto": what vLLM needs as a share of the GPU, rounded up to 0.05."""
    share = vllm_needed_bytes(shape, plan) / max(1, gpu_total)
    return min(0.95, max(0.1, math.ceil(share * 20) / 20))


def generation_bytes(shape: ModelShape, plan: Plan, gpu_total: int | None) -> int:
    """HF generate: the KV cache of one generation batch. vLLM colocate: the pool it reserves (utilization x
    GPU memory). vLLM server mode: nothing on the training GPU."""
    if plan.use_vllm and plan.on_cuda:
        if plan.vllm_mode == "server":
            return 0
        if gpu_total:
            return int(plan.vllm_gpu_memory_utilization * gpu_total)
        return vllm_needed_bytes(shape, plan)
    per = PRECISION_BYTES[plan.precision]
    return kv_cache_bytes(shape, plan.generation_batch, plan.sequence_length, per)


def breakdown(shape: ModelShape, plan: Plan, gpu_total: int | None = None) -> Breakdown:
    """Peak per device. Generation and training activations are not alive together (HF generate frees its cache;
    vLLM in sleep mode releases its pool), so the peak takes the larger; a vLLM pool that stays awake adds."""
    weights = weights_bytes(shape, plan)
    trainable = lora_params(shape, plan.lora_r, plan.lora_target_modules)
    lora = trainable * 8  # fp32 adapter weights (PEFT upcasts adapters) + fp32 gradients
    optimizer = trainable * 8  # AdamW: exp_avg + exp_avg_sq in fp32
    activations = activation_bytes(shape, plan)
    generation = generation_bytes(shape, plan, gpu_total)
    resident_pool = plan.use_vllm and plan.on_cuda and plan.vllm_mode == "colocate" and not plan.vllm_enable_sleep_mode
    transient = activations + generation if resident_pool else max(activations, generation)
    live = weights + lora + optimizer + transient
    overhead = (CUDA_OVERHEAD if plan.on_cuda else CPU_OVERHEAD) + int(live * ALLOCATOR_SLACK)
    return Breakdown(weights, trainable, lora, optimizer, activations, generation, overhead, live + overhead)


# ---------------------------------------------------------------------------------------------- the verdict


def _gib(n: int | float) -> str:
    return f"{n / GiB:.1f} GiB"


def candidate_changes(plan: Plan, shape: ModelShape, gpu_total: int | None) -> list[tuple[str, dict[str, Any], Plan]]:
    """Changes that lower the peak, cheapest first: speed-only ones, then 4-bit, then ones that change training."""
    out: list[tuple[str, dict[str, Any], Plan]] = []
    if not plan.gradient_checkpointing:
        out.append(("turn on gradient checkpointing (about 30 % slower steps)", {"gradient_checkpointing": True},
                    replace(plan, gradient_checkpointing=True)))
    if plan.use_vllm and plan.on_cuda and plan.vllm_mode == "colocate" and not plan.vllm_enable_sleep_mode:
        out.append(("turn on vLLM sleep mode (its pool is released while training)", {"vllm_enable_sleep_mode": True},
                    replace(plan, vllm_enable_sleep_mode=True)))
    if plan.use_vllm and plan.on_cuda and plan.vllm_mode == "colocate" and gpu_total:
        util = vllm_utilization(shape, plan, gpu_total)
        if util < plan.vllm_gpu_memory_utilization:
            out.append((f"lower vllm_gpu_memory_utilization to {util}", {"vllm_gpu_memory_utilization": util},
                        replace(plan, vllm_gpu_memory_utilization=util)))
    accum = plan.accumulation
    while plan.generation_batch % (accum * 2) == 0:
        accum *= 2
        out.append((f"split each step into {accum} micro-steps (same global batch, slower)",
                    {"gradient_accumulation_steps": accum}, replace(plan, accumulation=accum)))
    if plan.quantization != "4bit" and plan.on_cuda:
        out.append(("load the base model in 4 bits (quantization: 4bit, QLoRA)", {"quantization": "4bit"},
                    replace(plan, quantization="4bit")))
    prompts = plan.batch_size
    while prompts > 1:
        prompts //= 2
        out.append((f"lower batch_size to {prompts} prompts per step (fewer completions generated at once)",
                    {"batch_size": prompts}, _fewer_prompts(plan, prompts)))
    length = plan.completion_length
    while length > 64:
        length //= 2
        out.append((f"shorten max_completion_length to {length}", {"max_completion_length": length},
                    replace(plan, completion_length=length)))
    return out


def cheapest_fit(shape: ModelShape, plan: Plan, free: int, gpu_total: int | None
                 ) -> tuple[str, dict[str, Any]] | None:
    """The first single change that fits; else the changes applied one after another, in order, until it fits."""
    candidates = candidate_changes(plan, shape, gpu_total)
    for words, change, p in candidates:
        if breakdown(shape, p, gpu_total).total <= free:
            return words, change
    combined = plan
    for _words, change, p in candidates:
        combined = _apply(combined, p, next(iter(change)))
        if breakdown(shape, combined, gpu_total).total <= free:
            changes = _diff(plan, combined)
            return "together: " + ", ".join(f"{k} {v}" for k, v in changes.items()), changes
    return None


#: Plan field -> the hyperparameter that sets it
_FIELDS = {"gradient_checkpointing": "gradient_checkpointing", "vllm_enable_sleep_mode": "vllm_enable_sleep_mode",
           "vllm_gpu_memory_utilization": "vllm_gpu_memory_utilization", "accumulation": "gradient_accumulation_steps",
           "quantization": "quantization", "completion_length": "max_completion_length", "batch_size": "batch_size"}


def _apply(base: Plan, changed: Plan, key: str) -> Plan:
    if key == "batch_size":
        return _fewer_prompts(base, changed.batch_size)
    field = next(f for f, hp in _FIELDS.items() if hp == key)
    return replace(base, **{field: getattr(changed, field)})


def _fewer_prompts(plan: Plan, prompts: int) -> Plan:
    """`batch_size` lowered, keeping as much of the accumulation as still splits the smaller batch evenly."""
    smaller = replace(plan, batch_size=prompts)
    accum = plan.accumulation
    while accum > 1 and smaller.generation_batch % accum:
        accum //= 2
    return replace(smaller, accumulation=accum)


def _diff(before: Plan, after: Plan) -> dict[str, Any]:
    return {hp: getattr(after, f) for f, hp in _FIELDS.items() if getattr(after, f) != getattr(before, f)}


def estimate(model: str, shape: ModelShape, hp: api.ResolvedHyperparameters, gpus: list[Gpu],
             cpu_free: int | None, cpu_total: int | None,
             prompt: PromptLengthChoice | None = None) -> api.MemoryEstimate:
    """The estimate for the tightest device the job would use, with a verdict and the cheapest fix.

    `prompt`: the prompt length to use and why (the training file's longest prompt, daemon/prompt_lengths.py);
    without it, `max_prompt_length`.
    """
    plan = Plan.of(hp)
    if prompt is not None:
        plan = replace(plan, prompt_length=prompt.tokens)
    prompt_assumptions: dict[str, Any] = {
        "prompt_length": plan.prompt_length,
        "prompt_length_source": prompt.source if prompt else "max_prompt_length",
        "prompt_length_reason": prompt.reason if prompt else f"max_prompt_length {hp.max_prompt_length}: no "
                                                             "training file to measure"}
    if prompt is not None and prompt.dataset_longest is not None:
        prompt_assumptions.update(dataset_prompt_longest=prompt.dataset_longest, dataset_prompt_p95=prompt.dataset_p95)
    devices: list[api.DeviceMemory]
    free: int | None
    total_mem: int | None
    if hp.on_cuda and gpus:
        used = gpus[:max(1, hp.num_processes)]
        tight = min(used, key=lambda g: g.free_bytes)
        free, total_mem, where = tight.free_bytes, tight.total_bytes, f"cuda:{tight.index}"
        devices = [api.DeviceMemory(device=f"cuda:{g.index}", name=g.name, total_bytes=g.total_bytes,
                                    free_bytes=g.free_bytes, bf16=g.bf16) for g in used]
    elif hp.on_cuda:  # GPUs the daemon cannot see (a cluster's, or nvidia-smi not answering): free unknown
        free, total_mem, where = None, None, "cuda"
        devices = [api.DeviceMemory(device="cuda", name="not visible from the daemon")]
    else:
        free, total_mem, where = cpu_free, cpu_total, "cpu"
        devices = [api.DeviceMemory(device="cpu", name="RAM", total_bytes=cpu_total, free_bytes=cpu_free)]
    gpu_total = total_mem if hp.on_cuda else None
    b = breakdown(shape, plan, gpu_total)
    for d in devices:
        d.fits = None if d.free_bytes is None else b.total <= d.free_bytes
    fits = None if free is None else b.total <= free
    clearly = free is not None and b.total > CLEARLY_OVER * free
    suggestion: tuple[str, dict[str, Any]] | None = None
    if free is not None and not fits:
        suggestion = cheapest_fit(shape, plan, free, gpu_total)
    verdict = _verdict(b.total, free, where, suggestion)
    return api.MemoryEstimate(
        model=model, parameters=shape.parameters, parameter_source=shape.source, weights_bytes=b.weights,
        trainable_params=b.trainable_params, lora_bytes=b.lora, optimizer_bytes=b.optimizer,
        activations_bytes=b.activations, generation_bytes=b.generation, overhead_bytes=b.overhead,
        total_bytes=b.total, device=where, device_free_bytes=free, device_total_bytes=total_mem, fits=fits,
        clearly_does_not_fit=clearly, verdict=verdict, suggestion=suggestion[0] if suggestion else None,
        suggested_hyperparameters=suggestion[1] if suggestion else {}, devices=devices,
        assumptions={"precision": plan.precision, "quantization": plan.quantization, "micro_batch": plan.micro_batch,
                     "generation_batch": plan.generation_batch, "sequence_length": plan.sequence_length,
                     "gradient_checkpointing": plan.gradient_checkpointing, "use_vllm": plan.use_vllm and plan.on_cuda,
                     "vllm_mode": plan.vllm_mode, "vllm_gpu_memory_utilization": plan.vllm_gpu_memory_utilization,
                     "vllm_enable_sleep_mode": plan.vllm_enable_sleep_mode, "lora_r": plan.lora_r,
                     "processes": hp.num_processes, **prompt_assumptions},
    )


def _verdict(total: int, free: int | None, where: str, suggestion: tuple[str, dict[str, Any]] | None) -> str:
    if free is None:
        return f"needs about {_gib(total)} on {where}; its free memory is unknown"
    if total <= 0.85 * free:
        return f"fits: about {_gib(total)} of {_gib(free)} free on {where}"
    if total <= free:
        return f"tight: about {_gib(total)} of {_gib(free)} free on {where} (the estimate is +-20 %)"
    fix = f"; cheapest fix: {suggestion[0]}" if suggestion else "; no single setting makes it fit: use a smaller model"
    return f"does not fit: about {_gib(total)} needed, {_gib(free)} free on {where}{fix}"
