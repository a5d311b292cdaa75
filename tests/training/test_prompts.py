"""Rows -> prompts: chat messages through the tokenizer's template, a row's `tools` shown to the model."""

from __future__ import annotations

from pathlib import Path

from daemon.models import load_tokenizer
from daemon.paths import Paths
from daemon.worker.prompts import render_prompt, row_tools

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TEMPLATE = ("{% if tools %}TOOLS:{{ tools | map(attribute='function') | map(attribute='name') | join(',') }}\n"
            "{% endif %}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}")


def tokenizer(model_cache: Path):
    tok = load_tokenizer("builtin:tiny-arith", Paths.resolve(model_cache / "home"))
    tok.chat_template = TEMPLATE
    return tok


def test_tools_of_a_row_are_rendered_into_its_prompt(model_cache: Path) -> None:
    tok = tokenizer(model_cache)
    messages = [{"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]}]
    assert render_prompt(tok, messages, [TOOL]) == "TOOLS:get_weather\nuser: Weather in Oslo?\nassistant:"
    assert render_prompt(tok, messages) == "user: Weather in Oslo?\nassistant:"


def test_training_prompts_are_text_when_rows_carry_tools(model_cache: Path) -> None:
    from daemon.worker.grpo import training_dataset  # imports TRL: here, not at collection (every xdist worker)

    tok = tokenizer(model_cache)
    plain = {"messages": [{"role": "user", "content": "1+2="}], "item": {"answer": "3"}}
    tooled = {"messages": [{"role": "user", "content": "Oslo?"}], "item": {"answer": "rain", "tools": [TOOL]}}
    assert row_tools(tooled) == [TOOL] and row_tools(plain) is None
    conversational = training_dataset([plain], tok)
    assert conversational[0]["prompt"] == [{"role": "user", "content": "1+2="}]
    mixed = training_dataset([plain, tooled], tok)
    assert mixed[0]["prompt"] == "user: 1+2=\nassistant:"
    assert mixed[1]["prompt"] == "TOOLS:get_weather\nuser: Oslo?\nassistant:"
