"""Real architectures given as config files only (no weights): a Qwen2-style 0.5B and a Llama-style 8B."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QWEN2_05B: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
LLAMA_8B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def hand_count(cfg: dict[str, Any], qkv_bias: bool) -> int:
    """Parameters counted by hand, layer by layer, as the modeling code declares them."""
    h, inter, layers, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    head = h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * head, cfg["num_key_value_heads"] * head
    attention = h * q + 2 * h * kv + q * h + ((q + 2 * kv) if qkv_bias else 0)
    mlp = 3 * h * inter
    norms = 2 * h
    embeddings = vocab * h * (1 if cfg["tie_word_embeddings"] else 2)
    return layers * (attention + mlp + norms) + h + embeddings


def write_model_dir(root: Path, name: str, cfg: dict[str, Any]) -> Path:
    """A model directory with only its config.json (what a hub snapshot has before the weights arrive)."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    return d
