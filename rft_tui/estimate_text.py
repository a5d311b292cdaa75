"""The memory-fit estimate as rows of text: shared by `jobs preflight --estimate-only` and the New-job form."""

from __future__ import annotations

from daemon import api

GiB = 2**30


def gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GiB:.2f} GiB"


def estimate_rows(e: api.MemoryEstimate) -> list[tuple[str, str]]:
    """(label, value) rows: the breakdown, the total against the device's free memory, the fix."""
    a = e.assumptions
    rows = [
        ("model", f"{e.model}: {e.parameters:,} parameters ({e.parameter_source})"),
        ("weights", f"{gib(e.weights_bytes)} ({a.get('precision')}, quantization {a.get('quantization')})"),
        ("LoRA + gradients", f"{gib(e.lora_bytes)} ({e.trainable_params:,} trainable, r={a.get('lora_r')})"),
        ("optimizer", gib(e.optimizer_bytes)),
        ("activations", f"{gib(e.activations_bytes)} (micro-batch {a.get('micro_batch')} x "
                        f"{a.get('sequence_length')} tokens, checkpointing {_on(a.get('gradient_checkpointing'))})"),
        ("generation", f"{gib(e.generation_bytes)} ("
                       + ("vLLM " + str(a.get("vllm_mode")) if a.get("use_vllm") else "HF generate KV cache")
                       + f", {a.get('generation_batch')} sequences)"),
        ("overhead", gib(e.overhead_bytes)),
        ("total", f"{gib(e.total_bytes)} on {e.device} "
                  f"({gib(e.device_free_bytes)} free of {gib(e.device_total_bytes)})"),
        ("verdict", e.verdict),
    ]
    if a.get("prompt_length_reason"):  # which prompt length the activations assume, and why
        rows.insert(5, ("prompt length", f"{a.get('prompt_length')} tokens: {a['prompt_length_reason']}"))
    if e.suggestion:
        change = ", ".join(f"{k}={v}" for k, v in e.suggested_hyperparameters.items())
        rows.append(("suggestion", f"{e.suggestion}  ({change})"))
    return rows


def _on(flag: object) -> str:
    return "on" if flag else "off"
