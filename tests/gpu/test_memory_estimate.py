"""The memory-fit estimate: exact parameter counts from config files alone, bytes per precision, the verdict
and the cheapest fix, and the "auto" rules that read it (precision, checkpointing, accumulation, vLLM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon import api
from daemon.devices import Gpu, parse_nvidia_smi, visible
from daemon.hyperparams import DeviceInfo, check_resolved, resolve_hyperparameters
from daemon.memory_estimate import NF4_BYTES, Plan, breakdown, estimate, lora_params
from daemon.model_shape import ModelShape, shape_for
from tests.gpu.configs import LLAMA_8B, QWEN2_05B, hand_count, write_model_dir

GiB = 2**30
CPU = DeviceInfo("cpu", 1, None)


def gpu(free_gib: float, total_gib: float = 80, cc: float = 9.0, name: str = "H100") -> Gpu:
    return Gpu(0, name, int(total_gib * GiB), int(free_gib * GiB), cc)


def cuda(*gpus: Gpu) -> DeviceInfo:
    return DeviceInfo("cuda", len(gpus), None, tuple(gpus))


def resolved(shape: ModelShape, device: DeviceInfo, **hp: Any) -> api.ResolvedHyperparameters:
    return resolve_hyperparameters(api.ReinforcementHyperparameters(**hp), model="m", train_rows=1000,
                                   valid_rows=100, seed=1, device=device, shape=shape)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelShape]:
    root = tmp_path_factory.mktemp("models")
    return {name: shape_for(str(write_model_dir(root, name, cfg)))
            for name, cfg in (("qwen2-0.5b", QWEN2_05B), ("llama-8b", LLAMA_8B))}


def test_parameter_counts_match_the_hand_count_and_a_meta_device_instantiation(shapes: dict[str, ModelShape]) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig

    from daemon.worker.model_shape import measure, meta_model

    assert shapes["qwen2-0.5b"].parameters == hand_count(QWEN2_05B, qkv_bias=True) == 494_032_768
    assert shapes["llama-8b"].parameters == hand_count(LLAMA_8B, qkv_bias=False) == 8_030_261_248
    for name, cfg in (("qwen2-0.5b", QWEN2_05B), ("llama-8b", LLAMA_8B)):
        model = meta_model(AutoConfig.for_model(**cfg))
        counted = measure(model)
        assert counted["parameters"] == shapes[name].parameters
        assert sorted(tuple(x.values()) for x in counted["linears"]) == sorted(
            (x.name, x.in_features, x.out_features, x.count) for x in shapes[name].linears)
        # LoRA's trainable parameters: PEFT on the meta model agrees with r x (in + out) per adapted linear
        peft_model = get_peft_model(model, LoraConfig(r=16, target_modules="all-linear", task_type="CAUSAL_LM"))
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        assert trainable == lora_params(shapes[name], 16, "all-linear")
    assert lora_params(shapes["llama-8b"], 16, "all-linear") == 41_943_040
    assert lora_params(shapes["qwen2-0.5b"], 8, ["q_proj", "v_proj"]) == 24 * 8 * ((896 + 896) + (896 + 128))


def test_weights_bytes_follow_the_precision(shapes: dict[str, ModelShape]) -> None:
    shape = shapes["llama-8b"]
    device = cuda(gpu(79))
    for precision, per in (("bf16", 2), ("fp16", 2), ("fp32", 4)):
        b = breakdown(shape, Plan.of(resolved(shape, device, precision=precision)), 80 * GiB)
        assert b.weights == shape.parameters * per
        assert b.lora == b.optimizer == 41_943_040 * 8  # fp32 adapter + grads; AdamW's two fp32 states
    q = breakdown(shape, Plan.of(resolved(shape, device, quantization="4bit")), 80 * GiB)
    linear = sum(x.in_features * x.out_features * x.count for x in shape.linears)
    assert q.weights == int(linear * NF4_BYTES) + (shape.parameters - linear) * 2
    assert 4.5 * GiB < q.weights < 6 * GiB  # 8B in nf4: ~5.5 GiB, embeddings and lm_head kept in bf16
    cpu = breakdown(shape, Plan.of(resolved(shape, CPU, precision="bf16")), None)
    assert cpu.weights == shape.parameters * 4  # the CPU trains in fp32 whatever the request says


def test_estimate_verdicts_and_the_cheapest_fix(shapes: dict[str, ModelShape]) -> None:
    qwen, llama = shapes["qwen2-0.5b"], shapes["llama-8b"]
    big = cuda(gpu(79))
    e = estimate("qwen", qwen, resolved(qwen, big), list(big.gpus), None, None)
    assert e.fits and e.device == "cuda:0" and e.verdict.startswith("fits")
    assert e.total_bytes == (e.weights_bytes + e.lora_bytes + e.optimizer_bytes
                             + max(e.activations_bytes, e.generation_bytes) + e.overhead_bytes)
    small = cuda(gpu(22, 24, 8.9, "RTX 4090"))
    r = resolved(llama, small)
    e = estimate("llama", llama, r, list(small.gpus), None, None)
    assert not e.fits and e.clearly_does_not_fit and e.suggestion
    fixed = r.model_copy(update=e.suggested_hyperparameters)
    assert estimate("llama", llama, fixed, list(small.gpus), None, None).fits  # the suggestion really fits
    # a 4-bit 8B fits a 24 GB card once the batch is small; the same on CPU (fp32, 30 GiB of weights) does not
    r4 = resolved(llama, small, quantization="4bit", batch_size=1, num_generations=4, max_completion_length=256)
    assert estimate("llama", llama, r4, list(small.gpus), None, None).fits
    on_cpu = estimate("llama", llama, resolved(llama, CPU), [], 20 * GiB, 23 * GiB)
    assert on_cpu.device == "cpu" and on_cpu.weights_bytes == llama.parameters * 4 and on_cpu.clearly_does_not_fit


def test_auto_rules_read_the_machine_and_the_estimate(shapes: dict[str, ModelShape]) -> None:
    qwen = shapes["qwen2-0.5b"]
    r = resolved(qwen, CPU)
    assert (r.precision, r.use_vllm, r.quantization, r.on_oom) == ("fp32", False, "none", "fail")
    assert "no CUDA GPU" in r.auto_reasons["use_vllm"]
    old = resolved(qwen, cuda(gpu(15, 16, 7.5, "Tesla T4")))
    assert old.precision == "fp16" and "T4" in old.auto_reasons["precision"]
    # a small card: the global batch is kept, split into micro-steps, checkpointed only if that is not enough
    tight = resolved(qwen, cuda(gpu(10, 12, 8.6, "RTX 3060")))
    assert tight.completions_per_step == tight.batch_size * tight.num_generations
    assert tight.per_device_batch_size * tight.gradient_accumulation_steps == tight.completions_per_step
    roomy = resolved(qwen, cuda(gpu(79)))
    assert roomy.gradient_accumulation_steps <= tight.gradient_accumulation_steps
    assert not roomy.gradient_checkpointing
    assert check_resolved(resolved(qwen, CPU, use_vllm=True))[0][0] == "use_vllm"
    assert check_resolved(resolved(qwen, CPU, batch_size=3, num_generations=3, gradient_accumulation_steps=2))


def test_vllm_pool_and_sleep_mode(shapes: dict[str, ModelShape]) -> None:
    """With vLLM colocated, its pool stays reserved during training unless it sleeps."""
    qwen = shapes["qwen2-0.5b"]
    device = cuda(gpu(79))
    awake = resolved(qwen, device, use_vllm=True, vllm_enable_sleep_mode=False)
    assert awake.vllm_mode == "colocate" and 0.05 <= awake.vllm_gpu_memory_utilization <= 0.95
    e = estimate("qwen", qwen, awake, list(device.gpus), None, None)
    assert e.generation_bytes == int(awake.vllm_gpu_memory_utilization * 80 * GiB)
    asleep = estimate("qwen", qwen, awake.model_copy(update={"vllm_enable_sleep_mode": True}), list(device.gpus),
                      None, None)
    assert asleep.total_bytes < e.total_bytes
    server = resolved(qwen, device, use_vllm=True, vllm_server_base_url="http://127.0.0.1:8000")
    assert server.vllm_mode == "server"
    assert estimate("q", qwen, server, list(device.gpus), None, None).generation_bytes == 0


def test_builtin_model_shape_matches_the_built_model(model_cache: Path) -> None:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from daemon import tiny_tools
    from daemon.models import TINY_ARITH, TINY_TOOLS
    from daemon.worker.model_shape import meta_model

    shape = shape_for(TINY_ARITH)
    model = AutoModelForCausalLM.from_pretrained(model_cache / TINY_ARITH.removeprefix("builtin:"))
    assert shape.source == "built-in" and shape.parameters == sum(p.numel() for p in model.parameters())
    # tiny-tools, configured as its builder does (vocabulary from its own tokenizer), on the meta device
    config = LlamaConfig(vocab_size=len(tiny_tools.build_tokenizer()), **tiny_tools.CONFIG)
    assert shape_for(TINY_TOOLS).parameters == sum(p.numel() for p in meta_model(config).parameters())


def test_nvidia_smi_parsing_and_visible_devices() -> None:
    text = "0, NVIDIA H100 80GB HBM3, 81559, 80000, 9.0\n1, Tesla T4, 15360, 15000, 7.5\nbad line\n"
    gpus = parse_nvidia_smi(text)
    assert [(g.index, g.bf16, g.free_bytes // 2**20) for g in gpus] == [(0, True, 80000), (1, False, 15000)]
    assert [g.index for g in visible(gpus, "1")] == [1] and visible(gpus, "") == [] and visible(gpus, None) == gpus


def test_the_auto_micro_batch_assumes_the_files_longest_prompt(shapes: dict[str, ModelShape]) -> None:
    """Given the training file's longest prompt (job create measures it), the auto accumulation rule sizes
    activations for it, capped by max_prompt_length: short prompts need fewer micro-steps (24 GB GPU, 0.5B)."""
    hp = api.ReinforcementHyperparameters(max_prompt_length=2048, max_completion_length=256)

    def resolve(tokens: int | None) -> api.ResolvedHyperparameters:
        return resolve_hyperparameters(hp, model="m", train_rows=1000, valid_rows=100, seed=1,
                                       device=cuda(gpu(22, 24)), shape=shapes["qwen2-0.5b"], prompt_tokens=tokens)

    full, short, capped = resolve(None), resolve(64), resolve(100_000)
    assert full.gradient_accumulation_steps == 32 and short.gradient_accumulation_steps == 8
    assert "sequences of 2048 + 256 tokens" in full.auto_reasons["gradient_accumulation_steps"]
    assert "sequences of 64 + 256 tokens" in short.auto_reasons["gradient_accumulation_steps"]
    assert capped.auto_reasons["gradient_accumulation_steps"] == full.auto_reasons["gradient_accumulation_steps"]
