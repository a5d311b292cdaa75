"""A causal LM's shape from its config.json alone: parameter count and every linear layer, no torch.

The memory estimate needs the exact parameter count and the (in, out) of each linear layer LoRA can target.
For the decoder families most people fine-tune (Llama, Mistral, Qwen2, Qwen3 and their relatives that share
the layout) the count is a rule over the config, written out below and checked in the tests against a
meta-device instantiation (`AutoModelForCausalLM.from_config` under `torch.device("meta")`). Any other
architecture is counted that way out of process (`python -m daemon.worker.model_shape`, seconds), cached
by the config's hash. Built-in models are described by their own config (daemon/models.py TINY_CONFIG).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: model_type -> the attention/MLP layout rule that counts it (see `_decoder_shape`)
LLAMA_LIKE = {"llama", "mistral", "qwen2", "qwen3"}


@dataclass(frozen=True)
class Linear:
    """One kind of linear layer: `count` copies (one per decoder layer) of an (in, out) matrix."""

    name: str
    in_features: int
    out_features: int
    count: int


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model."""

    model_type: str
    parameters: int
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    q_dim: int
    linears: tuple[Linear, ...] = field(default_factory=tuple)  # decoder linears (not lm_head)
    embedding_params: int = 0  # input embeddings + an untied lm_head (kept 16-bit under 4-bit quantization)
    source: str = "config"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelShape:
        linears = tuple(Linear(**x) for x in data.get("linears", ()))
        return cls(**{**data, "linears": linears})


class UnknownArchitecture(ValueError):
    """No rule for this model_type: count it on the meta device instead."""


def _get(cfg: dict[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    text = cfg.get("text_config")
    if isinstance(text, dict):
        return _get(text, *names, default=default)
    return default


def shape_from_config(cfg: dict[str, Any], source: str = "config") -> ModelShape:
    """The exact shape of a Llama-layout decoder; UnknownArchitecture for anything else."""
    model_type = str(cfg.get("model_type") or "")
    if model_type not in LLAMA_LIKE:
        raise UnknownArchitecture(f"no parameter rule for model_type {model_type!r}")
    try:
        return _decoder_shape(cfg, model_type, source)
    except (TypeError, ValueError, ZeroDivisionError):
        missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "vocab_size") if _get(cfg, k) is None]
        raise ValueError(f"config.json lacks {', '.join(missing) or 'a usable layer size'}") from None


def _decoder_shape(cfg: dict[str, Any], model_type: str, source: str) -> ModelShape:
    h = int(_get(cfg, "hidden_size"))
    n_layers = int(_get(cfg, "num_hidden_layers"))
    n_heads = int(_get(cfg, "num_attention_heads"))
    n_kv = int(_get(cfg, "num_key_value_heads", default=n_heads))
    head_dim = int(_get(cfg, "head_dim", default=None) or h // n_heads)
    inter = int(_get(cfg, "intermediate_size"))
    vocab = int(_get(cfg, "vocab_size"))
    tied = bool(cfg.get("tie_word_embeddings", False))  # False is every one of these configs' default
    q_dim, kv_dim = n_heads * head_dim, n_kv * head_dim
    # biases: Qwen2 always has q/k/v biases; Llama/Mistral/Qwen3 follow attention_bias (o_proj too) and mlp_bias
    qkv_bias = model_type == "qwen2" or bool(cfg.get("attention_bias", False))
    o_bias = model_type != "qwen2" and bool(cfg.get("attention_bias", False))
    mlp_bias = model_type == "llama" and bool(cfg.get("mlp_bias", False))
    linears = (
        Linear("q_proj", h, q_dim, n_layers), Linear("k_proj", h, kv_dim, n_layers),
        Linear("v_proj", h, kv_dim, n_layers), Linear("o_proj", q_dim, h, n_layers),
        Linear("gate_proj", h, inter, n_layers), Linear("up_proj", h, inter, n_layers),
        Linear("down_proj", inter, h, n_layers),
    )
    per_layer = sum(x.in_features * x.out_features for x in linears)
    per_layer += (q_dim + 2 * kv_dim if qkv_bias else 0) + (h if o_bias else 0) + (2 * inter + h if mlp_bias else 0)
    per_layer += 2 * h  # input and post-attention RMSNorm weights
    if model_type == "qwen3":
        per_layer += 2 * head_dim  # q_norm, k_norm
    embeddings = vocab * h * (1 if tied else 2)
    total = n_layers * per_layer + h + embeddings  # + the final norm
    return ModelShape(model_type=model_type, parameters=total, vocab_size=vocab, hidden_size=h, num_layers=n_layers,
                      num_kv_heads=n_kv, head_dim=head_dim, intermediate_size=inter, q_dim=q_dim, linears=linears,
                      embedding_params=embeddings, source=source)


def config_hash(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def read_config(path: Path) -> dict[str, Any]:
    """config.json as a dict; ValueError naming the file when it is not JSON."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def builtin_config(model: str) -> dict[str, Any]:
    """The config a built-in model is built with (no build needed to estimate it)."""
    from daemon.models import CHARS, SPECIAL_TOKENS, TINY_ARITH, TINY_CONFIG, TINY_TOOLS

    if model == TINY_ARITH:
        return {"model_type": "llama", "vocab_size": len(SPECIAL_TOKENS) + len(CHARS), **TINY_CONFIG}
    if model == TINY_TOOLS:
        from daemon import tiny_tools

        vocab = len(tiny_tools.SPECIAL_TOKENS) + len(tiny_tools.CHARS) + len(tiny_tools.TOOL_PIECES)
        return {"model_type": "llama", "vocab_size": vocab,
                **tiny_tools.CONFIG}
    raise ValueError(f"unknown built-in model {model!r}")


def find_config(model: str) -> Path | None:
    """config.json of a local directory or of a hub id in the local Hugging Face cache; None if not here."""
    if model.startswith(("/", ".", "~")):
        p = Path(model).expanduser() / "config.json"
        return p if p.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    name, _, revision = model.partition("@")
    try:
        cached = try_to_load_from_cache(name, "config.json", revision=revision or None)
    except Exception:  # noqa: BLE001 - a malformed id or a broken cache entry: no config here
        return None
    return Path(cached) if isinstance(cached, str) else None


class ShapeUnavailable(ValueError):
    """No config.json here for this model (e.g. a hub id not in the local cache): no estimate without it."""


META_TIMEOUT_S = 180.0


def shape_for(model: str, home: Path | None = None, allow_helper: bool = True) -> ModelShape:
    """The model's shape: the built-in config, a Llama-layout rule, or (other architectures) a meta-device count
    out of process, cached under `$RFT_HOME/cache/model_shapes/` by the config's hash."""
    from daemon.models import is_builtin

    if is_builtin(model):
        return shape_from_config(builtin_config(model), source="built-in")
    path = find_config(model)
    if path is None:
        raise ShapeUnavailable(f"{model}: no config.json here (a hub model must be in the local Hugging Face cache "
                               "for an estimate; the worker downloads it when the job starts)")
    cfg = read_config(path)
    try:
        return shape_from_config(cfg)
    except UnknownArchitecture:
        if not allow_helper or home is None:
            raise
    cache = home / "cache" / "model_shapes" / f"{config_hash(cfg)}.json"
    if cache.is_file():
        try:
            return ModelShape.from_json(json.loads(cache.read_text()))
        except (OSError, ValueError, TypeError):
            pass
    from daemon.helper_process import run_module_sync

    result = run_module_sync("daemon.worker.model_shape", [str(path.parent)], None, home, META_TIMEOUT_S,
                             param="model", code="model_shape_failed")
    shape = ModelShape.from_json(result)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(shape.to_json()))
    return shape
