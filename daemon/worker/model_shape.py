"""`python -m daemon.worker.model_shape MODEL_DIR`: a model's shape by instantiating it on the meta device.

For architectures daemon/model_shape.py has no rule for: `AutoModelForCausalLM.from_config` under
`torch.device("meta")` builds every parameter without memory or weights (a second or two for 8B), so the
count is exact. Prints the `ModelShape` as JSON (or `{"error": ...}`); the daemon caches it per config.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def meta_model(config_or_dir: Any) -> Any:
    """The model built from its config on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(config_or_dir) if isinstance(config_or_dir, str) else config_or_dir
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cfg)


def measure(model: Any) -> dict[str, Any]:
    """The ModelShape fields, counted from the instantiated modules."""
    import torch

    from daemon.model_shape import Linear, ModelShape

    cfg = model.config
    text = getattr(cfg, "text_config", None) or cfg
    total = sum(p.numel() for p in model.parameters())
    groups: dict[tuple[str, int, int], int] = {}
    out_emb = model.get_output_embeddings()
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and mod is not out_emb:
            key = (name.rsplit(".", 1)[-1], mod.in_features, mod.out_features)
            groups[key] = groups.get(key, 0) + 1
    linears = tuple(Linear(n, i, o, c) for (n, i, o), c in sorted(groups.items()))
    emb = model.get_input_embeddings().weight.numel()
    if out_emb is not None and out_emb.weight is not model.get_input_embeddings().weight:
        emb += out_emb.weight.numel()
    h = int(text.hidden_size)
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or h // heads)
    shape = ModelShape(model_type=str(cfg.model_type), parameters=int(total), vocab_size=int(text.vocab_size),
                       hidden_size=h, num_layers=int(text.num_hidden_layers),
                       num_kv_heads=int(getattr(text, "num_key_value_heads", None) or heads), head_dim=head_dim,
                       intermediate_size=int(getattr(text, "intermediate_size", None) or 4 * h),
                       q_dim=heads * head_dim, linears=linears, embedding_params=int(emb), source="meta-device")
    return shape.to_json()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(json.dumps({"error": "usage: python -m daemon.worker.model_shape MODEL_DIR"}))
        return 2
    try:
        result = measure(meta_model(argv[1]))
    except Exception as exc:  # noqa: BLE001 - the daemon turns this line into a clear API error
        print(json.dumps({"error": f"cannot build {argv[1]} on the meta device: {type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
