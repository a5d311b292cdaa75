"""An agent-RFT episode as the trajectory view shows it: the prompt, then each turn, tool calls highlighted.

Pure rendering (rich Text from the API's `TrajectoryTurn` / `ToolCallRecord`); the screen that stacks these is
`rft_tui.screens.trajectory`. Also the one-glyph marks the Samples and Validation tables put in front of an
output whose episode called tools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from daemon import api

CALL_STYLE = "bold black on yellow"
ERROR_STYLE = "bold white on red"
STOP_REASONS = {"final_answer": "ended on its final answer", "max_episode_steps": "stopped at max_episode_steps",
                "token_budget": "stopped: out of tokens (max_completion_length)"}


@dataclass(frozen=True)
class Episode:
    """One episode to show: a label (`Sample 12 · step 3`, `Base model`), its reward and its turns."""

    label: str
    reward: float | None
    prompt: str
    turns: tuple[api.TrajectoryTurn, ...]
    stop_reason: str | None
    sub_rewards: str | None = None


def tool_mark(calls: Sequence[api.ToolCallRecord] | None) -> str:
    """`⚙ ` for an episode with one tool call, `⚙3 ` for three, `✗` if any failed; '' for none (or no episode)."""
    if not calls:
        return ""
    failed = "✗" if any(c.error is not None for c in calls) else ""
    return f"⚙{len(calls) if len(calls) > 1 else ''}{failed} "


def arguments_text(arguments: Any) -> str:
    """Arguments as the model wrote them: compact JSON for an object, the raw text when it did not parse."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False, separators=(", ", ": "))


def latency_text(ms: float | None) -> str:
    if ms is None:
        return "never ran"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def call_text(call: api.ToolCallRecord) -> Text:
    """` ⚙ add  {"a": 1, "b": 2}  call_1` then `→ 3  · 4.2 ms` (or ` ✗ add ...` then `error: why  · never ran`)."""
    failed = call.error is not None
    text = Text()
    text.append(f" {'✗' if failed else '⚙'} {call.name} ", ERROR_STYLE if failed else CALL_STYLE)
    text.append(f" {arguments_text(call.arguments)}", "bold")
    text.append(f"  {call.id}", "dim")
    text.append("\n   ")
    if failed:
        text.append("error: ", "bold red")
        text.append(str(call.error), "red")
    else:
        text.append("→ ", "bold green")
        text.append(call.result or "", "green")
    text.append(f"  · {latency_text(call.latency_ms)}", "dim")
    return text


def turn_text(turn: api.TrajectoryTurn, index: int) -> Text:
    """One turn: a heading (`assistant · turn 2`, `tool add · call_1`), its text, then its calls."""
    text = Text()
    if turn.role == "assistant":
        text.append(f"assistant · turn {index}\n", "bold")
        text.append(turn.content if turn.content else "(no text: only tool calls)",
                    "" if turn.content else "dim italic")
        for call in turn.tool_calls:
            text.append("\n")
            text.append_text(call_text(call))
    else:
        text.append(f"tool {turn.name or '?'} · {turn.tool_call_id or '-'}\n", "bold")
        text.append(turn.content)
    return text


def is_error_result(turn: api.TrajectoryTurn) -> bool:
    """A tool turn that fed the model an error (`{"error": ...}`) rather than a result."""
    if turn.role != "tool" or not turn.content.startswith('{"error"'):
        return False
    try:
        return isinstance(json.loads(turn.content), dict)
    except ValueError:
        return False


def header_text(episode: Episode) -> Text:
    """The episode's label, reward, stop reason and tool-call summary, then its prompt."""
    calls = [c for t in episode.turns for c in t.tool_calls]
    failed = sum(1 for c in calls if c.error is not None)
    turns = sum(1 for t in episode.turns if t.role == "assistant")
    text = Text(episode.label, "bold")
    if episode.reward is not None:
        text.append(f"  reward {episode.reward:.3f}", "bold green" if episode.reward >= 1.0 else "bold")
    text.append(f"\n{turns} model turn{'s' * (turns != 1)}, {len(calls)} tool call{'s' * (len(calls) != 1)}"
                + (f" ({failed} failed)" if failed else "") + f", {STOP_REASONS.get(episode.stop_reason or '', '-')}",
                "dim")
    if episode.sub_rewards:
        text.append(f"\nsub-rewards {episode.sub_rewards}", "dim")
    text.append("\nprompt ", "bold")
    text.append(episode.prompt)
    return text


def sample_episodes(sample: api.TrainingSample) -> list[Episode] | None:
    """A training sample's episode, or None for a plain completion (no tools: the text view shows it)."""
    if sample.output_messages is None:
        return None
    from rft_tui.widgets.samples_table import sub_rewards_text

    return [Episode(f"Sample {sample.id} · step {sample.step}", sample.reward, sample.prompt,
                    tuple(sample.output_messages), sample.stop_reason, sub_rewards_text(sample.sub_rewards))]


def validation_episodes(prompt: str, base: api.ValidationRow | None,
                        selected: api.ValidationRow | None) -> list[Episode] | None:
    """A validation row's episodes: the base model's, then the selected step's (None when neither has one)."""
    from rft_tui.widgets.samples_table import sub_rewards_text

    if base is not None and selected is not None and selected.step == base.step:
        selected = None  # the base step itself is selected: one episode
    out = []
    for row, label in ((base, "Base model"), (selected, f"Step {selected.step}" if selected else "")):
        if row is not None and row.output_messages is not None:
            out.append(Episode(label, row.reward, prompt, tuple(row.output_messages), row.stop_reason,
                               sub_rewards_text(row.sub_rewards)))
    return out or None
