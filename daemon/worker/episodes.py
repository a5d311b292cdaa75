"""Multi-turn episodes for rows with tools: generate -> parse tool calls -> run them -> feed results back -> repeat.

One loop serves training (GRPO's `rollout_func`, sampling), validation (greedy) and pre-flight. A batch of
episodes advances one model turn at a time: every unfinished episode generates its next turn together
(left-padded batch), all their tool calls run concurrently (`ToolBox`), and each episode's tool results are
appended as the chat template renders `tool` messages (Qwen: `<|im_start|>user\\n<tool_response>...`). An
episode ends on a turn with no tool call (its final answer), after `max_episode_steps` model turns, or when
its tokens -- model turns and tool results together -- would pass `max_completion_length`.

Token accounting is what training needs: `completion_ids` is everything after the prompt, and `mask` marks
each token 1 (the model generated it: trained) or 0 (a tool result or the template's wrapping around it:
context only, no gradient). TRL takes the mask as `env_mask` and multiplies it into the loss mask.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon import api
from daemon.worker.prompts import chat_messages, render_prompt
from daemon.worker.tool_calls import parse_turn, tool_schemas
from daemon.worker.tool_runtime import ToolBox, ToolRequest, shown_text

#: generate(token id sequences, max_new_tokens) -> the new tokens of each, cut after the first end-of-turn.
Generate = Callable[[list[list[int]], int], list[list[int]]]


@dataclass
class EpisodeRow:
    """What an episode starts from: the row's messages, its tool schemas and its item (all its fields)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    item: dict[str, Any]


@dataclass
class Episode:
    """One rollout: its tokens (with the training mask) and its trajectory (turns, calls, results)."""

    row: EpisodeRow
    rollout_id: str
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)  # 1 = model token (trained), 0 = tool result (masked)
    turns: list[api.TrajectoryTurn] = field(default_factory=list)
    steps: int = 0  # model turns so far
    stop_reason: str | None = None

    @property
    def final_answer(self) -> str:
        """The last model turn's text (outside tool-call blocks): what `{{sample.output_text}}` grades."""
        for turn in reversed(self.turns):
            if turn.role == "assistant":
                return turn.content
        return ""

    @property
    def tool_calls(self) -> list[api.ToolCallRecord]:
        return [c for t in self.turns for c in t.tool_calls]

    def messages_json(self) -> list[dict[str, Any]]:
        return [t.model_dump() for t in self.turns]

    def grader_sample(self) -> dict[str, Any]:
        """The grader's `sample`: the final answer plus the whole episode (templates and python graders)."""
        return {"output_text": self.final_answer, "output_messages": self.messages_json(),
                "tool_calls": [c.model_dump() for c in self.tool_calls], "stop_reason": self.stop_reason}

    def record(self) -> dict[str, Any]:
        """What the store keeps beside a sample or validation row (the API's output_messages, stop_reason)."""
        return {"output_messages": self.messages_json(), "stop_reason": self.stop_reason}


class EpisodeRunner:
    """Runs batches of episodes with one tokenizer, one tool box and the episode limits."""

    def __init__(self, tokenizer: Any, toolbox: ToolBox, max_episode_steps: int, max_completion_length: int,
                 eos_token_ids: Sequence[int] | None = None, rollout_prefix: str = "r") -> None:
        self.tokenizer = tokenizer
        self.toolbox = toolbox
        self.max_episode_steps = max(1, max_episode_steps)
        self.max_completion_length = max(1, max_completion_length)
        eos = list(eos_token_ids or [])
        if not eos and tokenizer.eos_token_id is not None:
            eos = [tokenizer.eos_token_id]
        self.eos_ids = set(eos)
        self.rollout_prefix = rollout_prefix
        self._ids = itertools.count(1)
        self._suffix_cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ tokens

    def prompt_ids(self, row: EpisodeRow) -> list[int]:
        text = render_prompt(self.tokenizer, row.messages, row.tools)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def tool_suffix_ids(self, tool_messages: list[dict[str, Any]]) -> list[int]:
        """The tokens that feed tool results back: the chat template's rendering of `tool` messages after an
        assistant turn, up to and including the next assistant header (`<|im_start|>assistant\\n`).

        Rendered against a fixed dummy conversation (TRL's `_get_tool_suffix_ids` idea) so it depends only on
        the tool messages, and cut after the end-of-turn token the model itself generated.
        """
        text = self.tool_suffix_text(tool_messages)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def tool_suffix_text(self, tool_messages: list[dict[str, Any]]) -> str:
        tok = self.tokenizer
        fallback = "".join(f"\n<tool_response>\n{m['content']}\n</tool_response>" for m in tool_messages) + "\n"
        if not getattr(tok, "chat_template", None):
            return fallback
        call = {"type": "function", "function": {"name": tool_messages[0].get("name") or "tool", "arguments": {}}}
        dummy: list[dict[str, Any]] = [{"role": "user", "content": "x"},
                                       {"role": "assistant", "content": "", "tool_calls": [call]}]
        try:
            prefix = tok.apply_chat_template(dummy, tokenize=False)
            full = tok.apply_chat_template(dummy + tool_messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - a template without tool support: the plain Hermes rendering
            return fallback
        eos = tok.eos_token or ""
        cut = prefix.rfind(eos) + len(eos) if eos and eos in prefix else len(prefix)
        if not full.startswith(prefix[:cut]):
            return fallback
        return str(full[cut:])

    # ------------------------------------------------------------------ the loop

    def new_episodes(self, rows: Sequence[EpisodeRow]) -> list[Episode]:
        return [Episode(row=r, rollout_id=f"{self.rollout_prefix}-{next(self._ids)}", prompt_ids=self.prompt_ids(r))
                for r in rows]

    def run(self, generate: Generate, rows: Sequence[EpisodeRow]) -> list[Episode]:
        """Play every row's episode to its end; the episodes in row order."""
        episodes = self.new_episodes(rows)
        while True:
            active = [e for e in episodes if e.stop_reason is None]
            if not active:
                return episodes
            self.step(generate, active)

    def step(self, generate: Generate, active: list[Episode]) -> None:
        """One model turn for each active episode, then their tool calls, then the results fed back."""
        budgets = [self.max_completion_length - len(e.completion_ids) for e in active]
        new = generate([e.prompt_ids + e.completion_ids for e in active], max(budgets))
        requests: list[ToolRequest] = []
        owners: list[tuple[Episode, api.TrajectoryTurn]] = []
        open_calls: list[tuple[Episode, api.TrajectoryTurn, bool]] = []
        for episode, ids, budget in zip(active, new, budgets, strict=True):
            ids = self._cut(ids, budget)
            episode.completion_ids += ids
            episode.mask += [1] * len(ids)
            episode.steps += 1
            ended = bool(ids) and ids[-1] in self.eos_ids
            parsed = parse_turn(self.tokenizer.decode(ids, skip_special_tokens=True))
            turn = api.TrajectoryTurn(role="assistant", content=parsed.content)
            episode.turns.append(turn)
            if not parsed.calls:
                episode.stop_reason = "final_answer" if ended else "token_budget"
                continue
            schemas = tool_schemas(episode.row.tools)
            before = len(episode.tool_calls)  # this turn's records are attached after the calls ran
            for k, call in enumerate(parsed.calls):
                call_id = f"call_{before + k + 1}"
                requests.append(ToolRequest(rollout_id=episode.rollout_id, call_id=call_id, call=call,
                                            item=episode.row.item, schemas=schemas))
                owners.append((episode, turn))
            open_calls.append((episode, turn, ended))
        records = self.toolbox.run(requests) if requests else []
        for (_, turn), record in zip(owners, records, strict=True):
            turn.tool_calls.append(record)
        for episode, turn, ended in open_calls:
            self._feed_back(episode, turn, ended)

    def _feed_back(self, episode: Episode, turn: api.TrajectoryTurn, ended: bool) -> None:
        """Append the turn's tool results (trajectory always; tokens only if the episode goes on)."""
        messages = [{"role": "tool", "name": c.name, "tool_call_id": c.id, "content": shown_text(c)}
                    for c in turn.tool_calls]
        episode.turns += [api.TrajectoryTurn(role="tool", content=m["content"], tool_call_id=m["tool_call_id"],
                                             name=m["name"]) for m in messages]
        if not ended:
            episode.stop_reason = "token_budget"
            return
        if episode.steps >= self.max_episode_steps:
            episode.stop_reason = "max_episode_steps"
            return
        suffix = self.tool_suffix_ids(messages)
        if len(episode.completion_ids) + len(suffix) >= self.max_completion_length:
            episode.stop_reason = "token_budget"
            return
        episode.completion_ids += suffix
        episode.mask += [0] * len(suffix)

    def _cut(self, ids: list[int], budget: int) -> list[int]:
        """A turn's tokens up to and including its first end-of-turn token, within the episode's budget."""
        out: list[int] = []
        for t in ids[:max(0, budget)]:
            out.append(int(t))
            if t in self.eos_ids:
                break
        return out


def episode_rows(rows: Sequence[dict[str, Any]]) -> list[EpisodeRow]:
    """Dataset rows ({"messages", "item"}) as episode starts."""
    from daemon.worker.prompts import row_tools

    return [EpisodeRow(messages=chat_messages(r["messages"]), tools=row_tools(r), item=r["item"]) for r in rows]


# ---------------------------------------------------------------------------------------------- generation


def hf_generate(model: Any, pad_token_id: int, eos_token_ids: Sequence[int], device: Any = None,
                **generation_kwargs: Any) -> Generate:
    """A `Generate` over a Hugging Face model: left-padded batches, the given sampling settings."""
    import torch

    def generate(sequences: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, s in enumerate(sequences):
            if s:
                ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
                attention[i, width - len(s):] = 1
        if device is not None:
            ids, attention = ids.to(device), attention.to(device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=max(1, max_new_tokens),
                                 pad_token_id=pad_token_id, eos_token_id=list(eos_token_ids), **generation_kwargs)
        eos = set(eos_token_ids)
        result: list[list[int]] = []
        for row in out[:, width:].tolist():
            cut: list[int] = []
            for t in row:
                cut.append(t)
                if t in eos:
                    break
            result.append(cut)
        return result

    return generate


# ---------------------------------------------------------------------------------------------- metrics


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in [0, 1])."""
    index = max(0, min(len(sorted_values) - 1, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def episode_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """The registry's tools/* numbers over some episodes ({} for none)."""
    from daemon import metrics
    from daemon.worker.tool_runtime import TOOL_FAILURES, error_kind

    if not episodes:
        return {}
    n = len(episodes)
    calls = [c for e in episodes for c in e.tool_calls]
    out = {
        metrics.TOOL_CALL_RATE: sum(1 for e in episodes if e.tool_calls) / n,
        metrics.TOOL_CALLS_PER_EPISODE: len(calls) / n,
        metrics.TOOL_EPISODE_TURNS: sum(e.steps for e in episodes) / n,
        metrics.TOOL_ERROR_RATE: sum(1 for c in calls if c.error is not None) / len(calls) if calls else 0.0,
        metrics.TOOL_FAILURE_RATE: sum(1 for c in calls if c.error is not None and error_kind(c.error) in
                                       TOOL_FAILURES) / len(calls) if calls else 0.0,
        metrics.TOOL_MAX_STEPS_SHARE: sum(1 for e in episodes if e.stop_reason == "max_episode_steps") / n,
        metrics.TOOL_TOKEN_BUDGET_SHARE: sum(1 for e in episodes if e.stop_reason == "token_budget") / n,
    }
    for c in calls:
        if c.error is not None:
            key = metrics.tool_errors(error_kind(c.error))
            out[key] = out.get(key, 0.0) + 1.0
    latencies = sorted(c.latency_ms for c in calls if c.latency_ms is not None)
    if latencies:
        out[metrics.TOOL_LATENCY_P50_MS] = _percentile(latencies, 0.50)
        out[metrics.TOOL_LATENCY_P95_MS] = _percentile(latencies, 0.95)
    return out
