"""Dataset rows -> prompts: `messages` as chat messages, and a row's `tools` (function schemas) shown to the model.

OpenAI RFT rows may carry `tools`. TRL's GRPOTrainer takes tools only as Python callables for the whole run,
so a dataset with per-row tool schemas is rendered to text here through the tokenizer's chat template (the
same rendering validation and pre-flight use), and TRL gets plain-text prompts.
"""

from __future__ import annotations

from typing import Any

from daemon.text import message_text


def chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m.get("role", "user"), "content": message_text(m.get("content"))} for m in messages]


def row_tools(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = (row.get("item") or {}).get("tools")
    return tools if isinstance(tools, list) and tools else None


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    """The text the model continues: the chat template with the generation prompt (and tools, if any)."""
    msgs = chat_messages(messages)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(msgs, tools=tools or None, tokenize=False, add_generation_prompt=True)
    return "\n".join(m["content"] for m in msgs)


def any_tools(rows: list[dict[str, Any]]) -> bool:
    return any(row_tools(r) for r in rows)
