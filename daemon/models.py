"""Model loading for the worker, and the built-in models `builtin:tiny-arith` and `builtin:tiny-tools`.

`builtin:tiny-arith` is a ~1M-parameter character-level Llama that the project builds and
supervised-trains itself (seeded, CPU, about a minute) on 2-digit addition, deliberately stopped at
~35% exact match so GRPO has room to improve it. It is cached under `$RFT_HOME/models/tiny-arith/`
(or `$RFT_MODEL_CACHE/tiny-arith/`), built in a temp dir and renamed into place under a file lock, so
two processes never build it twice and nobody ever sees half a model. Nothing is downloaded.
`builtin:tiny-tools` (3-digit addition with an `add` tool, `daemon.tiny_tools`) is built and cached the same way.

Imports torch/transformers lazily: `daemon.hyperparams` and the daemon import this module's constants
without paying for torch.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.paths import Paths

BUILTIN_PREFIX = "builtin:"
TINY_ARITH = "builtin:tiny-arith"
TINY_TOOLS = "builtin:tiny-tools"  # daemon.tiny_tools (kept in step by a test)
BUILTIN_MODEL_NAMES: tuple[str, ...] = (TINY_ARITH, TINY_TOOLS)
BUILD_VERSION = 2  # bump when the recipe changes: old caches are rebuilt

SPECIAL_TOKENS = ["<pad>", "<eos>", "<unk>", "<bos>"]
CHARS = [chr(c) for c in range(32, 127)] + ["\n", "\t"]

# Renders the conversation as plain text: earlier turns one per line, assistant turns end with EOS, and the
# last user message as is, so "12+34=" is continued by the digits and then EOS.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set content = message['content'] if message['content'] is string else "
    "(message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('')) -%}"
    "{%- if message['role'] == 'assistant' -%}{{ content }}{{ eos_token }}"
    "{%- elif loop.last -%}{{ content }}"
    "{%- else -%}{{ content }}{{ '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

# Architecture and recipe of the built-in model.
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 4, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
SFT_SEED = 1234
SFT_BATCH = 32
SFT_LR = 3e-3
SFT_MAX_STEPS = 6000
SFT_EVAL_EVERY = 20
SFT_TARGET_EXACT_MATCH = 0.35
SFT_PROBE_ROWS = 200


class ModelLoadError(RuntimeError):
    """A model id that cannot be loaded, with a message that says why."""


# ------------------------------------------------------------------------------------------ paths


def is_builtin(model_id: str) -> bool:
    return model_id.startswith(BUILTIN_PREFIX)


def builtin_dir(paths: Paths, model_id: str = TINY_ARITH) -> Path:
    """Where a built-in model is cached: `$RFT_MODEL_CACHE/<name>` if set, else `$RFT_HOME/models/<name>`."""
    name = model_id.removeprefix(BUILTIN_PREFIX)
    root = os.environ.get("RFT_MODEL_CACHE")
    return (Path(root).expanduser() if root else paths.models) / name


def build_version(model_id: str) -> int:
    """The recipe version of a built-in model (a cache built by another version is rebuilt)."""
    if model_id == TINY_TOOLS:
        from daemon import tiny_tools

        return tiny_tools.BUILD_VERSION
    return BUILD_VERSION


def builtin_ready(path: Path) -> bool:
    """A finished build of the current recipe is in `path` (its build.json names the model and version)."""
    info = path / "build.json"
    if not info.is_file():
        return False
    try:
        data = json.loads(info.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("build_version") == build_version(str(data.get("model", TINY_ARITH)))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_builtin_model(paths: Paths, model_id: str = TINY_ARITH, progress: bool = True) -> Path:
    """The built-in model's directory, building it first if no finished build is cached."""
    if model_id not in BUILTIN_MODEL_NAMES:
        raise ModelLoadError(f"Unknown built-in model '{model_id}' (built-in models: {list(BUILTIN_MODEL_NAMES)})")
    target = builtin_dir(paths, model_id)
    if builtin_ready(target):
        return target
    with _file_lock(target.parent / f".{target.name}.lock"):
        if builtin_ready(target):  # another process built it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-build-", dir=target.parent))
        try:
            build_builtin(model_id, tmp, progress=progress)
            if target.exists():
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_builtin(model_id: str, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Build one built-in model into `out_dir` (no caching here: `ensure_builtin_model` does that)."""
    if model_id == TINY_TOOLS:
        from daemon import tiny_tools

        bar = BuildProgress(progress, time.time(), model=TINY_TOOLS, total=tiny_tools.MAX_STEPS,
                            goal="it calls the add tool on about a third of the prompts, in the right format",
                            measure="tool-call format")
        return tiny_tools.build(out_dir, bar)
    return build_tiny_arith(out_dir, progress=progress)


def builtin_tokenizer(model_id: str) -> Any:
    """A built-in model's tokenizer without building the model (it is fixed by the recipe)."""
    if model_id == TINY_TOOLS:
        from daemon import tiny_tools

        return tiny_tools.build_tokenizer()
    return build_tokenizer()


# ------------------------------------------------------------------------------------------ the built-in model


def build_tokenizer() -> Any:
    """A character-level `PreTrainedTokenizerFast` (every printable ASCII char, newline, tab) with a chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # Oniguruma: no (?s)
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", bos_token="<bos>",
        chat_template=CHAT_TEMPLATE, clean_up_tokenization_spaces=False, padding_side="left",
        model_max_length=TINY_CONFIG["max_position_embeddings"],
    )


def addition_pairs(seed: int, n: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(n)]


def greedy_exact_match(model: Any, tokenizer: Any, pairs: list[tuple[int, int]], max_new_tokens: int = 5) -> float:
    """Share of `a+b=` prompts the model completes greedily with exactly the sum."""
    import torch

    prompts = [f"{a}+{b}=" for a, b in pairs]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model.train(was_training)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return sum(t.strip() == str(a + b) for t, (a, b) in zip(texts, pairs, strict=True)) / len(pairs)


def build_tiny_arith(out_dir: Path, progress: bool = True, seed: int = SFT_SEED) -> dict[str, Any]:
    """Build and supervised-train the built-in model into `out_dir`; stops at ~35% exact match (room for RL)."""
    import torch

    started = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is as fast, and far faster on a busy machine
    try:
        return _train_tiny_arith(out_dir, progress, seed, started)
    finally:
        torch.set_num_threads(threads)


def _train_tiny_arith(out_dir: Path, progress: bool, seed: int, started: float) -> dict[str, Any]:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, **TINY_CONFIG)
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=SFT_LR, weight_decay=0.0)
    rng = random.Random(seed)
    probe = addition_pairs(seed + 1, SFT_PROBE_ROWS)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    exact = 0.0
    step = 0
    bar = BuildProgress(progress, started)
    model.train()
    for step in range(1, SFT_MAX_STEPS + 1):
        batch = [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(SFT_BATCH)]
        ids, labels = [], []
        for a, b in batch:
            p = tokenizer.encode(f"{a}+{b}=", add_special_tokens=False)
            c = tokenizer.encode(str(a + b), add_special_tokens=False) + [eos]
            ids.append(p + c)
            labels.append([-100] * len(p) + c)
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        label_t = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
        mask = (torch.arange(width)[None, :] < torch.tensor([len(x) for x in ids])[:, None]).long()
        loss = model(input_ids=input_ids, attention_mask=mask, labels=label_t).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        bar.step(step, exact)
        if step % SFT_EVAL_EVERY == 0:
            exact = greedy_exact_match(model, tokenizer, probe)
            bar.evaluated(loss.item(), exact)
            if exact >= SFT_TARGET_EXACT_MATCH:
                break
    model.generation_config = GenerationConfig(pad_token_id=pad, eos_token_id=eos, bos_token_id=tokenizer.bos_token_id,
                                               do_sample=False, max_new_tokens=8)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {"model": TINY_ARITH, "build_version": BUILD_VERSION, "seed": seed, "sft_steps": step,
            "probe_exact_match": exact, "parameters": sum(p.numel() for p in model.parameters()),
            "build_seconds": round(time.time() - started, 1), "torch": torch.__version__}
    (out_dir / "build.json").write_text(json.dumps(info, indent=2))
    bar.done(step, exact)
    return info


class BuildProgress:
    """The build's progress on stderr: a bar on a terminal, one plain line every few seconds otherwise (logs and
    pipes get no carriage returns), and always a closing "built ..." line.

    The build stops as soon as its probe reaches the goal, usually well before `total` steps, so the bar's total is
    an upper bound; the closing line says where it stopped.
    """

    LINE_EVERY_S = 5.0

    def __init__(self, enabled: bool, started: float, stream: Any = None, *, model: str = TINY_ARITH,
                 total: int = SFT_MAX_STEPS, goal: str = f"{SFT_TARGET_EXACT_MATCH:.0%} exact match",
                 measure: str = "exact match") -> None:
        self.enabled = enabled
        self.started = started
        self.stream = stream or sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.last_line = time.monotonic()
        self.model, self.measure = model, measure
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", file=self.stream, dynamic_ncols=True,
                            desc=f"building {model} (stops at {goal})")
        elif enabled:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # its "Writing model shards" bar would end a plain log with \r
            self._print(f"building {model}: supervised training on CPU until {goal} (at most {total} steps)")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def step(self, step: int, exact: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and time.monotonic() - self.last_line >= self.LINE_EVERY_S:
            self.last_line = time.monotonic()
            self._print(f"building {self.model}: step {step}, {self.measure} {exact:.2f}, "
                        f"{time.time() - self.started:.0f} s")

    def evaluated(self, loss: float, exact: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({"loss": f"{loss:.3f}", self.measure.replace(" ", "_"): f"{exact:.2f}"})

    def done(self, step: int, exact: float) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.enabled:
            self._print(f"built {self.model} in {time.time() - self.started:.0f} s: {step} steps, "
                        f"{self.measure} {exact:.2f} (done)")


# ------------------------------------------------------------------------------------------ the model check

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?(@[A-Za-z0-9._/-]+)?$")
HUB_CHECK_TIMEOUT_S = float(os.environ.get("RFT_HUB_CHECK_TIMEOUT_S", "2"))


class ModelNotFound(ValueError):
    """A model reference that no worker could load: the message says why and suggests close names."""


@dataclass(frozen=True)
class ModelRef:
    """What a model reference resolves to, found without torch: `source` is builtin, local or hub."""

    model: str
    source: str
    id: str
    revision: str | None
    cached: bool
    detail: str


def check_model_ref(model: str, hub_timeout: float | None = None) -> ModelRef:
    """Resolve `model` in well under a second (or `hub_timeout` for an uncached hub id) or raise ModelNotFound.

    The worker only finds out ~a minute later (after importing torch) that a misspelled id cannot load, so
    creating or checking a job asks here first: built-in names, a local directory with config.json, or a hub
    id that is in the local Hugging Face cache or that the hub answers for (one short metadata request,
    skipped when HF_HUB_OFFLINE is set).
    """
    model = model.strip()
    if not model:
        raise ModelNotFound("A model is required (e.g. builtin:tiny-arith, org/name or a local directory).")
    if is_builtin(model):
        if model not in BUILTIN_MODEL_NAMES:
            raise _not_found(f"Unknown built-in model '{model}' (built-in models: {', '.join(BUILTIN_MODEL_NAMES)}).",
                             model)
        return ModelRef(model, "builtin", model, None, True, "built-in model")
    if BUILTIN_PREFIX + model in BUILTIN_MODEL_NAMES:
        raise _not_found(f"'{model}' is not a hub model; built-in models are named with the '{BUILTIN_PREFIX}' prefix.",
                         model)
    if model.startswith(("/", ".", "~")):
        return _check_local(model)
    if not HUB_ID.match(model):
        raise _not_found(f"'{model}' is not a built-in model (builtin:NAME), a local directory or a hub id "
                         "like org/name[@revision].", model)
    return _check_hub(model, HUB_CHECK_TIMEOUT_S if hub_timeout is None else hub_timeout)


def _check_local(model: str) -> ModelRef:
    try:
        path = Path(model).expanduser()
    except RuntimeError as e:  # "~someone" for a user that does not exist
        raise ModelNotFound(f"Cannot expand '{model}' ({str(e).rstrip('.')}); give an absolute path.") from None
    if not (path / "config.json").is_file():
        what = "has no config.json" if path.is_dir() else "does not exist"
        raise _not_found(f"Model directory {model} {what}.", str(path), _sibling_models(path))
    return ModelRef(model, "local", str(path.resolve()), None, True, "local directory")


def _check_hub(model: str, timeout: float) -> ModelRef:
    from huggingface_hub import constants, try_to_load_from_cache

    name, _, revision = model.partition("@")
    try:
        cached = try_to_load_from_cache(name, "config.json", revision=revision or None)
    except Exception:  # noqa: BLE001 - a broken cache entry is the same as no entry
        cached = None
    if isinstance(cached, str):
        return ModelRef(model, "hub", name, revision or "main", True, "in the local Hugging Face cache")
    if constants.HF_HUB_OFFLINE:
        raise _not_found(f"'{model}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set.", model)
    return _ask_hub(model, name, revision or None, timeout)


def _ask_hub(model: str, name: str, revision: str | None, timeout: float) -> ModelRef:
    """One metadata request: the id exists (and this user may read it) or it does not."""
    from huggingface_hub import model_info
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        model_info(name, revision=revision, timeout=timeout)
    except GatedRepoError:
        raise ModelNotFound(f"'{name}' is gated on the Hugging Face hub: accept its licence on the model page "
                            "and log in (hf auth login) first.") from None
    except RepositoryNotFoundError:
        raise _not_found(f"There is no model '{name}' on the Hugging Face hub (or it is private).", model) from None
    except RevisionNotFoundError:
        raise ModelNotFound(f"Model '{name}' has no revision '{revision}' on the Hugging Face hub.") from None
    except Exception as e:  # noqa: BLE001 - offline, DNS, timeout: the worker could not download it either
        raise _not_found(f"'{model}' is not in the local Hugging Face cache and the hub could not be reached "
                         f"({type(e).__name__}: {str(e)[:120]}).", model) from None
    return ModelRef(model, "hub", name, revision or "main", False, "on the Hugging Face hub (downloaded by the worker)")


def cached_hub_models() -> list[str]:
    """Model repo ids in the local Hugging Face cache (huggingface_hub's own scan; empty if there is none)."""
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir()
    except Exception:  # noqa: BLE001 - no cache dir, or a corrupted one: nothing to suggest
        return []
    return sorted(repo.repo_id for repo in info.repos if repo.repo_type == "model")


def _sibling_models(path: Path) -> list[str]:
    parent = path.parent
    try:
        return [str(p) for p in parent.iterdir() if (p / "config.json").is_file()] if parent.is_dir() else []
    except OSError:
        return []


def _not_found(message: str, wrong: str, candidates: list[str] | None = None) -> ModelNotFound:
    return ModelNotFound(message + _did_you_mean(wrong, candidates))


def _did_you_mean(wrong: str, candidates: list[str] | None = None) -> str:
    """` Did you mean 'x'?` for the closest built-in or cached model names, or '' when none is close."""
    names = list(candidates) if candidates is not None else [*BUILTIN_MODEL_NAMES, *cached_hub_models()]
    keys: dict[str, str] = {}
    for name in names:
        keys.setdefault(name.lower(), name)
        keys.setdefault(name.removeprefix(BUILTIN_PREFIX).lower(), name)
        keys.setdefault(name.rsplit("/", 1)[-1].lower(), name)
    queries = {q.lower() for q in (wrong, wrong.partition("@")[0].rsplit("/", 1)[-1]) if q}
    score: dict[str, float] = {}
    for key, name in keys.items():
        best = max(difflib.SequenceMatcher(None, q, key).ratio() for q in queries)
        score[name] = max(score.get(name, 0.0), best)
    top = max(score.values(), default=0.0)
    picks = sorted((n for n, r in score.items() if r >= max(0.6, top - 0.1)), key=lambda n: -score[n])[:3]
    return " Did you mean " + " or ".join(f"'{p}'" for p in picks) + "?" if picks else ""


# ------------------------------------------------------------------------------------------ loading


def model_ref(model: dict[str, Any] | str) -> str:
    """The one string that loads a job's model (`api.SnapshotModel.ref`: `id`, or `id@revision` for a pinned hub
    model); for callers holding a snapshot's `model` as a dict or a bare reference (JobSnapshot has model_ref())."""
    from daemon.api import SnapshotModel

    return model if isinstance(model, str) else SnapshotModel.of(model).ref()


def resolve_model_path(model_id: str, paths: Paths, progress: bool = False) -> tuple[str, str | None]:
    """(what `from_pretrained` gets, revision) for a built-in id, a local directory or a hub id."""
    if is_builtin(model_id):
        return str(ensure_builtin_model(paths, model_id, progress=progress)), None
    local = Path(model_id).expanduser()
    if local.is_absolute() or model_id.startswith((".", "~")):
        if not (local / "config.json").is_file():
            raise ModelLoadError(f"Model directory {model_id} has no config.json")
        return str(local), None
    name, _, revision = model_id.partition("@")
    return name, revision or None


def load_tokenizer(model_id: str, paths: Paths, progress: bool = False) -> Any:
    from transformers import AutoTokenizer

    where, revision = resolve_model_path(model_id, paths, progress=progress)
    tok = AutoTokenizer.from_pretrained(where, revision=revision)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(model_id: str, paths: Paths, dtype: Any = None, device: str | None = None,
               progress: bool = False, quantization: str = "none") -> Any:
    """A causal LM from a built-in id, a local directory or a hub id (hub needs network; never in tests).

    `quantization="4bit"`: nf4 base weights with double quantization and `dtype` compute (bitsandbytes, QLoRA),
    placed on this process's GPU (LOCAL_RANK); TRL prepares it for k-bit training when it adds the adapter.
    """
    from transformers import AutoModelForCausalLM

    where, revision = resolve_model_path(model_id, paths, progress=progress)
    kwargs: dict[str, Any] = {"revision": revision}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if quantization == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    model: Any = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    if device:
        model.to(device)
    return model


def main(argv: list[str] | None = None) -> int:
    """`python -m daemon.models [--home H] [--model builtin:NAME]`: build a built-in model now (prints where it is)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m daemon.models")
    ap.add_argument("--home", default=None)
    ap.add_argument("--model", default=TINY_ARITH, choices=BUILTIN_MODEL_NAMES)
    args = ap.parse_args(argv)
    path = ensure_builtin_model(Paths.resolve(args.home).ensure(), args.model, progress=True)
    print(path)
    print((path / "build.json").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
