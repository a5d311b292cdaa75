"""Greedy validation on a fixed, seeded choice of validation rows (TRL's own eval samples; ours is greedy).

Generation is batched with left padding; each row's prompt, reference, output and per-grader scores go
to the store through `reporter.log_validation`, so base (step 0) and every checkpoint compare row by row.
"""

from __future__ import annotations

import random
import time
from typing import Any

from daemon import metrics
from daemon.text import message_text
from daemon.worker.episodes import Episode, EpisodeRunner, episode_metrics, episode_rows, hf_generate
from daemon.worker.prompts import render_prompt, row_tools
from daemon.worker.rewards import GraderReward, result_errors

VALIDATION_BATCH = 64


def choose_rows(rows: list[dict[str, Any]], n: int, seed: int) -> list[int]:
    """The same `n` row indices every time for a given seed (all rows, in order, when n >= len)."""
    if n >= len(rows):
        return list(range(len(rows)))
    return sorted(random.Random(seed).sample(range(len(rows)), n))


def reference_of(item: dict[str, Any]) -> str | None:
    for key in ("reference_answer", "answer", "reference", "label", "target"):
        if key in item and item[key] is not None:
            return str(item[key])
    return None


def vllm_greedy(vllm_generation: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy completions from TRL's vLLM engine (colocate or server), with the adapter's current weights.

    `sync_weights` pushes the training weights (LoRA merged) into vLLM first -- and, in sleep mode, wakes them;
    the KV cache is woken for the pass and put back to sleep after, as TRL does around its own generation.
    """
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    vllm_generation.sync_weights()
    if vllm_generation.mode == "server":
        out = vllm_generation.vllm_client.generate(prompts=ids, n=1, temperature=0.0, max_tokens=max_new_tokens)
        completions = out["completion_ids"]
    else:
        from vllm import SamplingParams

        llm = vllm_generation.llm
        sleeping = bool(getattr(vllm_generation, "enable_sleep_mode", False))
        if sleeping:
            llm.wake_up(tags=["kv_cache"])
        try:
            outputs = llm.generate([{"prompt_token_ids": i} for i in ids], use_tqdm=False,
                                   sampling_params=SamplingParams(n=1, temperature=0.0, max_tokens=max_new_tokens))
        finally:
            if sleeping:
                llm.sleep(level=2)
                vllm_generation._llm_weights_sleeping = True  # TRL re-pushes the weights before its next generate
        completions = [o.outputs[0].token_ids for o in outputs]
    return [tokenizer.decode(c, skip_special_tokens=True) for c in completions]


class Validator:
    """Greedy generation + grading of the chosen validation rows (vLLM when the trainer has it, else HF generate)."""

    def __init__(self, rows: list[dict[str, Any]], indices: list[int], tokenizer: Any, reward: GraderReward,
                 max_new_tokens: int, device: Any = None, runner: EpisodeRunner | None = None,
                 vllm_generation: Any = None) -> None:
        self.runner = runner  # agent RFT: greedy multi-turn episodes with the job's tools
        self.rows = rows
        self.indices = indices
        self.tokenizer = tokenizer
        self.reward = reward
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.vllm_generation = vllm_generation  # TRL's engine, single-process jobs only (its sync is collective)
        self.prompts = [render_prompt(tokenizer, rows[i]["messages"], row_tools(rows[i])) for i in indices]
        self.prompt_texts = [message_text(rows[i]["messages"][-1].get("content")) for i in indices]

    def generate(self, model: Any) -> list[str]:
        if self.vllm_generation is not None:
            return vllm_greedy(self.vllm_generation, self.tokenizer, self.prompts, self.max_new_tokens)
        return self.hf_generate(model)

    def hf_generate(self, model: Any) -> list[str]:
        import torch

        tok = self.tokenizer
        old_side = tok.padding_side
        tok.padding_side = "left"
        outputs: list[str] = []
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(self.prompts), VALIDATION_BATCH):
                    chunk = self.prompts[start:start + VALIDATION_BATCH]
                    enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
                    if self.device is not None:
                        enc = enc.to(self.device)
                    out = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
                    outputs += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        finally:
            tok.padding_side = old_side
            model.train(was_training)
        return outputs

    def episodes(self, model: Any) -> list[Episode]:
        """Greedy episodes of the chosen rows (rows with tools: model turns and tool calls until an answer)."""
        assert self.runner is not None
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        was_training = model.training
        model.eval()
        try:
            generate = hf_generate(model, pad, sorted(self.runner.eos_ids), self.device, do_sample=False)
            out: list[Episode] = []
            rows = episode_rows([self.rows[i] for i in self.indices])
            for start in range(0, len(rows), VALIDATION_BATCH):
                out += self.runner.run(generate, rows[start:start + VALIDATION_BATCH])
            return out
        finally:
            model.train(was_training)

    def run(self, model: Any) -> tuple[list[dict[str, Any]], dict[str, float], float]:
        """(rows for log_validation, per-grader summary, seconds)."""
        started = time.perf_counter()
        episodes = self.episodes(model) if self.runner is not None else None
        outputs = [e.final_answer for e in episodes] if episodes is not None else self.generate(model)
        items = [self.rows[i]["item"] for i in self.indices]
        result = self.reward.grade([e.grader_sample() for e in episodes] if episodes is not None else outputs, items)
        rows = []
        for k, i in enumerate(self.indices):
            r = result.results[k]
            rows.append({"row_index": i, "prompt": self.prompt_texts[k], "reference": reference_of(items[k]),
                         "output": outputs[k], "reward": result.rewards[k],
                         "sub_rewards": dict(r.sub_rewards or {}) or {self.reward.__name__: result.rewards[k]},
                         "errors": result_errors(r), "item": items[k],
                         **(episodes[k].record() if episodes is not None else {})})
        summary: dict[str, float] = {}
        if episodes is not None:
            summary.update({metrics.valid_tool_metric(k): v for k, v in episode_metrics(episodes).items()})
        for name, values in result.sub_rewards.items():
            summary[metrics.valid_grader_reward(name)] = sum(values) / max(1, len(values))
        if rows:
            summary[metrics.VALID_PASS_RATE] = sum(1 for x in result.rewards if x >= 1.0) / len(rows)
            summary[metrics.VALID_GRADER_ERRORS] = float(result.error_count)
        return rows, summary, time.perf_counter() - started
