"""The built-in model `builtin:tiny-tools`: 3-digit addition with an `add` tool it uses only sometimes.

A ~340k-parameter character-level Llama (plus a few whole-word tokens for the tool-call syntax) that the
project builds and supervised-trains itself on CPU, seeded, in about a minute. Its own arithmetic on
3-digit sums is poor (it guesses), but it has learnt the exact Qwen2.5/Hermes tool-call format:

    <tools>add</tools>\\n123+456=<tool_call>\\n{"name": "add", "arguments": {"a": 123, "b": 456}}\\n</tool_call><eos>
    <tool_response>579</tool_response>579<eos>

The SFT data calls the tool with probability 0.8 when the first operand is below 400 and 0.15 otherwise,
so the base model calls it on about a third of the prompts (greedy) and guesses on the rest; GRPO with a
grader that only checks the answer teaches it to call the tool everywhere (`rft-tui demo --task tools`).
The decision token of most tool-using SFT examples is masked out of the loss: they teach the format and
copying the result without moving the call probability.

Imports torch/transformers lazily; `daemon.models` owns caching, locking and the build's progress line.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any

TINY_TOOLS = "builtin:tiny-tools"
BUILD_VERSION = 1  # bump when the recipe changes: old caches are rebuilt

SPECIAL_TOKENS = ["<pad>", "<eos>", "<unk>", "<bos>"]
CHARS = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
# Whole tokens for the tool-call syntax (ordinary added tokens, not special ones: decoding with
# skip_special_tokens keeps them, so a tool-call parser sees the text the model wrote).
TOOL_PIECES = ["<tools>", "</tools>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
               '{"name": "', '", "arguments": ', '"a": ', '"b": ']

# Qwen2.5/Hermes-style tool calls on a plain-text conversation: the tools' names up front, user text as is,
# assistant turns (text, then one <tool_call> block per call) end with EOS, a tool result is a
# <tool_response> block the model continues after. Every prefix of a conversation renders to a prefix of
# the whole, so a rollout can append turns without re-tokenizing what came before.
CHAT_TEMPLATE = (
    "{%- if tools -%}<tools>{%- for tool in tools -%}"
    "{%- set f = tool.function if tool.function is defined else tool -%}{{ f.name }}"
    "{%- if not loop.last -%},{%- endif -%}{%- endfor -%}</tools>{{ '\n' }}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set content = message['content'] if message['content'] is string else "
    "((message['content'] or []) | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('')) -%}"
    "{%- if message['role'] == 'assistant' -%}{{ content }}"
    "{%- for call in (message['tool_calls'] or []) -%}"
    "{%- set f = call.function if call.function is defined else call -%}"
    "{%- if content or not loop.first -%}{{ '\n' }}{%- endif -%}"
    "{{ '<tool_call>\n{\"name\": \"' }}{{ f.name }}{{ '\", \"arguments\": ' }}"
    "{%- if f.arguments is string -%}{{ f.arguments }}{%- else -%}{{ f.arguments | tojson }}{%- endif -%}"
    "{{ '}\n</tool_call>' }}{%- endfor -%}{{ eos_token }}"
    "{%- elif message['role'] == 'tool' -%}<tool_response>{{ content }}</tool_response>"
    "{%- elif message['role'] == 'user' -%}{{ content }}"
    "{%- else -%}{{ content }}{{ '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

ADD_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "add", "description": "The exact sum of two integers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"]},
    },
}

CONFIG: dict[str, Any] = {
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 4, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
SEED = 4321
BATCH = 32
LR = 3e-3
WARMUP_STEPS = 100
MAX_STEPS = 1500
MIN_STEPS = 200
EVAL_EVERY = 50
PROBE_ROWS = 100
FORMAT_ONLY_SHARE = 0.5  # examples that show the tool path with the decision token masked
NO_TOOLS_SHARE = 0.1  # examples without tools: the model answers directly
CALL_IF_LOW, CALL_OTHERWISE, LOW_BELOW = 0.8, 0.15, 400
TARGET_FORMAT = 0.95  # tool calls with exactly the right arguments, and results copied exactly
TARGET_CALL_RATE = (0.2, 0.45)  # greedy share of probe prompts that call the tool


def build_tokenizer() -> Any:
    """Characters, plus whole tokens for the tool-call syntax, with the tool-calling chat template."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.add_tokens([AddedToken(p, normalized=False, special=False) for p in TOOL_PIECES])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", bos_token="<bos>",
        chat_template=CHAT_TEMPLATE, clean_up_tokenization_spaces=False, padding_side="left",
        model_max_length=CONFIG["max_position_embeddings"],
    )


def call_probability(a: int) -> float:
    """How often the SFT data calls the tool for `a + b`: mostly for small first operands, rarely otherwise."""
    return CALL_IF_LOW if a < LOW_BELOW else CALL_OTHERWISE


def conversation(a: int, b: int, call: bool) -> list[dict[str, Any]]:
    """One episode in OpenAI chat shape: the question, optionally a tool call and its result, the answer."""
    msgs: list[dict[str, Any]] = [{"role": "user", "content": f"{a}+{b}="}]
    if call:
        msgs += [{"role": "assistant", "content": "", "tool_calls": [
                     {"id": "call_0", "type": "function",
                      "function": {"name": "add", "arguments": {"a": a, "b": b}}}]},
                 {"role": "tool", "tool_call_id": "call_0", "content": str(a + b)}]
    return [*msgs, {"role": "assistant", "content": str(a + b)}]


def encode_episode(tokenizer: Any, msgs: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   train_decision: bool = True) -> tuple[list[int], list[int]]:
    """(input ids, labels): only assistant tokens are labelled; the decision token only if `train_decision`."""
    ids: list[int] = []
    labels: list[int] = []
    prev = ""
    for k, msg in enumerate(msgs, start=1):
        text = tokenizer.apply_chat_template(msgs[:k], tools=tools, tokenize=False)
        seg = tokenizer.encode(text[len(prev):], add_special_tokens=False)
        prev = text
        lab = list(seg) if msg["role"] == "assistant" else [-100] * len(seg)
        if k == 2 and not train_decision:
            lab[0] = -100
        ids += seg
        labels += lab
    return ids, labels


def sft_example(rng: random.Random, tokenizer: Any) -> tuple[list[int], list[int]]:
    a, b = rng.randint(100, 999), rng.randint(100, 999)
    if rng.random() < NO_TOOLS_SHARE:
        return encode_episode(tokenizer, conversation(a, b, False), None)
    if rng.random() < FORMAT_ONLY_SHARE:
        return encode_episode(tokenizer, conversation(a, b, True), [ADD_TOOL], train_decision=False)
    return encode_episode(tokenizer, conversation(a, b, rng.random() < call_probability(a)), [ADD_TOOL])


def probe_pairs(seed: int, n: int = PROBE_ROWS) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(100, 999), rng.randint(100, 999)) for _ in range(n)]


def _greedy(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    import torch

    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return list(tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))


CALL_RE = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.S)


def probe(model: Any, tokenizer: Any, pairs: list[tuple[int, int]]) -> dict[str, float]:
    """What the model does greedily: how often it calls the tool, with the right arguments; whether it copies a
    tool result; how often its own answers are right."""
    was_training = model.training
    model.eval()
    try:
        first = [tokenizer.apply_chat_template(conversation(a, b, False)[:1], tools=[ADD_TOOL], tokenize=False,
                                               add_generation_prompt=True) for a, b in pairs]
        outs = _greedy(model, tokenizer, first, 32)
        after = [tokenizer.apply_chat_template(conversation(a, b, True)[:3], tools=[ADD_TOOL], tokenize=False,
                                               add_generation_prompt=True) for a, b in pairs]
        copies = _greedy(model, tokenizer, after, 6)
    finally:
        model.train(was_training)
    calls = right_args = own = own_right = 0
    for out, (a, b) in zip(outs, pairs, strict=True):
        found = CALL_RE.search(out)
        if "<tool_call>" in out:
            calls += 1
            wanted = {"name": "add", "arguments": {"a": a, "b": b}}
            right_args += found is not None and _parsed(found.group(1)) == wanted
        else:
            own += 1
            own_right += out.strip() == str(a + b)
    copied = sum(c.strip() == str(a + b) for c, (a, b) in zip(copies, pairs, strict=True))
    return {"tool_call_rate": calls / len(pairs), "tool_call_format": right_args / max(1, calls),
            "result_copied": copied / len(pairs), "own_exact_match": own_right / max(1, own)}


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def reached_targets(stats: dict[str, float]) -> bool:
    low, high = TARGET_CALL_RATE
    return (stats["tool_call_format"] >= TARGET_FORMAT and stats["result_copied"] >= TARGET_FORMAT
            and low <= stats["tool_call_rate"] <= high)


def build(out_dir: Path, progress: Any, seed: int = SEED, max_steps: int = MAX_STEPS) -> dict[str, Any]:
    """Build and supervised-train the model into `out_dir` (one torch thread: tiny matrices), stopping as soon as
    it calls the tool correctly, copies results, and calls it on about a third of the probe prompts.

    `progress` is a `daemon.models.BuildProgress`; `max_steps` below MIN_STEPS (tests) skips the probe."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(out_dir, progress, seed, max_steps)
    finally:
        torch.set_num_threads(threads)


def _train(out_dir: Path, progress: Any, seed: int, max_steps: int) -> dict[str, Any]:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    started = getattr(progress, "started", time.time())
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=pad, eos_token_id=eos,
                         bos_token_id=tokenizer.bos_token_id, **CONFIG)
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP_STEPS) * max(0.1, 1 - s / MAX_STEPS))
    rng = random.Random(seed)
    pairs = probe_pairs(seed + 1)
    stats = {"tool_call_rate": 0.0, "tool_call_format": 0.0, "result_copied": 0.0, "own_exact_match": 0.0}
    step = 0
    model.train()
    for step in range(1, max_steps + 1):
        batch = [sft_example(rng, tokenizer) for _ in range(BATCH)]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids, _ in batch])
        labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in batch])
        loss = model(input_ids=input_ids, attention_mask=(input_ids != pad).long(), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        progress.step(step, stats["tool_call_format"])
        if step >= MIN_STEPS and step % EVAL_EVERY == 0:
            stats = probe(model, tokenizer, pairs)
            progress.evaluated(loss.item(), stats["tool_call_format"])
            if reached_targets(stats):
                break
    model.generation_config = GenerationConfig(pad_token_id=pad, eos_token_id=eos, bos_token_id=tokenizer.bos_token_id,
                                               do_sample=False, max_new_tokens=32)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {"model": TINY_TOOLS, "build_version": BUILD_VERSION, "seed": seed, "sft_steps": step,
            "probe": {k: round(v, 4) for k, v in stats.items()},
            "parameters": sum(p.numel() for p in model.parameters()),
            "build_seconds": round(time.time() - started, 1), "torch": torch.__version__}
    (out_dir / "build.json").write_text(json.dumps(info, indent=2))
    progress.done(step, stats["tool_call_format"])
    return info
