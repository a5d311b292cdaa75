"""A tiny real model speaking Qwen2.5's chat format, and a way to steer what it writes.

`tool_tokenizer()` is the project's character-level tokenizer plus `<|im_start|>`/`<|im_end|>` (the end of a
turn) and TRL's own Qwen2.5 chat template (tools in the system prompt, `<tool_call>` blocks, tool results as
`<tool_response>` in a user turn). `tiny_tool_model()` is a randomly initialised 2-layer Llama over it.

`Steer` is a logits processor that makes the real model's `generate` write a scripted turn: `script(context)`
gets the decoded conversation so far (prompt and earlier turns, tool responses included) and returns the
turn's text; every other token is masked out. The episode loop, the chat template, the tokenizer and the
model's generate all run for real; only the choice of the next token is forced.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

IM_START, IM_END = "<|im_start|>", "<|im_end|>"


@cache
def qwen25_template() -> str:
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()


def compact_template() -> str:
    """Qwen2.5's template with a one-line tools header instead of its long system prompt (same turns, same
    `<tool_call>` / `<tool_response>` rendering), so a tiny model can learn it in seconds."""
    body = qwen25_template()
    return ("{%- if tools %}{{- '<|im_start|>system\\ntools:' }}{%- for tool in tools %}"
            "{{- ' ' + (tool.function.name if tool.function is defined else tool.name) }}{%- endfor %}"
            "{{- '<|im_end|>\\n' }}{%- endif %}\n" + body[body.index("{%- for message in messages %}"):])


def tool_tokenizer(compact: bool = False) -> Any:
    from daemon.models import build_tokenizer

    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [IM_START, IM_END]})
    tok.eos_token = IM_END
    tok.chat_template = compact_template() if compact else qwen25_template()
    tok.model_max_length = 8192
    return tok


def tiny_tool_model(tok: Any, seed: int = 0, hidden: int = 32) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=8192,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def save_tool_model(path: Path, seed: int = 0) -> Path:
    """A local model directory (tokenizer + weights) a job can name as its `model`."""
    tok = tool_tokenizer()
    model = tiny_tool_model(tok, seed)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def call_block(name: str, **arguments: Any) -> str:
    import json

    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


class Steer:
    """LogitsProcessor: the next token of `script(context)` (then end of turn) for each row of the batch."""

    def __init__(self, tokenizer: Any, script: Callable[[str], str]) -> None:
        self.tok = tokenizer
        self.script = script
        self.start: int | None = None
        self.targets: dict[int, list[int]] = {}

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.start is None:
            self.start = input_ids.shape[1]
        forced = scores.new_full(scores.shape, float("-inf"))
        for b in range(input_ids.shape[0]):
            if b not in self.targets:
                context = self.tok.decode(input_ids[b, :self.start], skip_special_tokens=False)
                text = self.script(context.replace(self.tok.pad_token, ""))
                self.targets[b] = list(self.tok(text, add_special_tokens=False)["input_ids"]) + [self.tok.eos_token_id]
            target = self.targets[b]
            k = input_ids.shape[1] - self.start
            forced[b, target[k] if k < len(target) else self.tok.eos_token_id] = 0.0
        return forced


def steered(model: Any, tok: Any, script: Callable[[str], str], device: Any = None) -> Callable[..., Any]:
    """An episodes.Generate whose every call is the real model's greedy generate, steered by `script`."""
    from transformers import LogitsProcessorList

    from daemon.worker.episodes import hf_generate

    def generate(sequences: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        processors = LogitsProcessorList([Steer(tok, script)])
        return hf_generate(model, tok.pad_token_id, [tok.eos_token_id], device, do_sample=False,
                           logits_processor=processors)(sequences, max_new_tokens)

    return generate


ADD_TOOL_SCHEMA = {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}
CALLER_VERSION = 2


def tool_caller_model(cache: Path) -> Path:
    """A tiny model trained (seeded, ~30 s on CPU, cached) to answer "What is A+B?" rows by calling
    add(a=1, b=2) and then writing the tool's sum: a base model that uses its tool, for real worker runs."""
    import fcntl
    import json

    path = cache / f"tool-caller-v{CALLER_VERSION}"
    if (path / "done.json").is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".tool-caller.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "done.json").is_file():
            _train_caller(path)
            (path / "done.json").write_text(json.dumps({"version": CALLER_VERSION}))
    return path


def _train_caller(path: Path) -> None:
    import torch

    tok = tool_tokenizer(compact=True)
    model = tiny_tool_model(tok, seed=0, hidden=64)
    texts, prompts = [], []
    for a, b in ((1, 2), (12, 30), (7, 5), (40, 2)):
        convo = [{"role": "user", "content": f"What is {a}+{b}?"},
                 {"role": "assistant", "content": "", "tool_calls": [
                     {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}]},
                 {"role": "tool", "name": "add", "content": '{"sum": 3}'},
                 {"role": "assistant", "content": "3"}]
        texts.append(tok.apply_chat_template(convo, tools=[ADD_TOOL_SCHEMA], tokenize=False))
        prompts.append(tok.apply_chat_template(convo[:1], tools=[ADD_TOOL_SCHEMA], tokenize=False,
                                               add_generation_prompt=True))
    tok.padding_side = "right"
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    tok.padding_side = "left"
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for i, prompt in enumerate(prompts):  # learn the replies, not the question
        labels[i, :len(tok(prompt, add_special_tokens=False)["input_ids"])] = -100
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(400):
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    model.eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
