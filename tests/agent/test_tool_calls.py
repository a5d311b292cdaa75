"""Reading the model's tool calls (Hermes/Qwen2.5 blocks) and checking arguments against the row's schema."""

from __future__ import annotations

import json
from typing import Any

from daemon.worker.tool_calls import argument_problems, parse_turn, tool_schemas

ADD_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
                                                "mode": {"type": "string", "enum": ["exact", "round"]}},
              "required": ["a", "b"], "additionalProperties": False}


def block(payload: str) -> str:
    return f"<tool_call>\n{payload}\n</tool_call>"


def test_no_block_is_a_final_answer() -> None:
    turn = parse_turn("The answer is 42.")
    assert turn.calls == [] and turn.content == "The answer is 42."


def test_parallel_calls_in_one_turn_in_order_with_text_kept() -> None:
    text = ("Let me add.\n" + block(json.dumps({"name": "add", "arguments": {"a": 1, "b": 2}}))
            + block(json.dumps({"name": "mul", "arguments": {"a": 3, "b": 4}})))
    turn = parse_turn(text)
    assert [(c.name, c.arguments, c.error) for c in turn.calls] == [
        ("add", {"a": 1, "b": 2}, None), ("mul", {"a": 3, "b": 4}, None)]
    assert turn.content == "Let me add."


def test_agrees_with_trl_on_the_qwen_format() -> None:
    """TRL's own response schema for Qwen templates reads the same calls out of a well-formed turn."""
    from trl.chat_template_utils import add_response_schema, parse_response

    from tests.support.tool_model import tool_tokenizer

    tok = add_response_schema(tool_tokenizer())  # TRL recognises the Qwen2.5 template
    text = block(json.dumps({"name": "add", "arguments": {"a": 1, "b": 2}})) + "<|im_end|>"
    prompt = tok.apply_chat_template([{"role": "user", "content": "1+2?"}], add_generation_prompt=True, tokenize=False)
    theirs = parse_response(tok, tok(text, add_special_tokens=False)["input_ids"],
                            prefix=tok(prompt, add_special_tokens=False)["input_ids"])
    ours = parse_turn(text.removesuffix("<|im_end|>"))
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in theirs["tool_calls"]] == [
        (c.name, c.arguments) for c in ours.calls] == [("add", {"a": 1, "b": 2})]
    # ...but TRL reads a malformed block as plain text (trl#4881); ours is a call the model is told is broken
    broken = block('{"name": "add", "arguments": {"a": 1,') + "<|im_end|>"
    assert "tool_calls" not in parse_response(tok, tok(broken, add_special_tokens=False)["input_ids"],
                                              prefix=tok(prompt, add_special_tokens=False)["input_ids"])
    assert parse_turn(broken.removesuffix("<|im_end|>")).calls[0].error


def test_malformed_blocks_are_calls_with_errors_never_exceptions() -> None:
    cases = {
        block('{"name": "add", "arguments": {"a": 1,'): "not JSON",
        block('["add", 1, 2]'): "expected {",
        block('{"arguments": {"a": 1}}'): 'no "name"',
        block('{"name": "add", "arguments": [1, 2]}'): "must be an object",
        block('{"name": "add", "arguments": "not json"}'): "not a JSON object",
        '<tool_call>\n{"name": "add", "arguments": {"a": 1': "never closed",
    }
    for text, why in cases.items():
        turn = parse_turn(text)
        assert len(turn.calls) == 1, text
        assert turn.calls[0].error and why in turn.calls[0].error, (text, turn.calls[0].error)
    assert parse_turn(block('{"name": "add", "arguments": {"a": 1,')).calls[0].name == "add"  # kept for the record


def test_arguments_as_a_json_string_are_accepted() -> None:
    turn = parse_turn(block(json.dumps({"name": "add", "arguments": json.dumps({"a": 1, "b": 2})})))
    assert turn.calls[0].arguments == {"a": 1, "b": 2} and turn.calls[0].error is None


def test_argument_checks_by_schema() -> None:
    assert argument_problems({"a": 1, "b": 2}, ADD_SCHEMA) == []
    assert argument_problems({"a": 1}, ADD_SCHEMA) == ["missing required argument 'b'"]
    assert "must be integer" in argument_problems({"a": "1", "b": 2}, ADD_SCHEMA)[0]
    assert "must be integer" in argument_problems({"a": True, "b": 2}, ADD_SCHEMA)[0]
    assert "unknown argument 'c'" in argument_problems({"a": 1, "b": 2, "c": 3}, ADD_SCHEMA)[0]
    assert "must be one of" in argument_problems({"a": 1, "b": 2, "mode": "fast"}, ADD_SCHEMA)[0]
    assert argument_problems({"anything": [1]}, {}) == []


def test_tool_schemas_read_both_openai_shapes() -> None:
    chat = {"type": "function", "function": {"name": "add", "parameters": ADD_SCHEMA}}
    responses = {"type": "function", "name": "mul", "parameters": {"type": "object"}}
    tools: list[Any] = [chat, responses, "junk", {"type": "function"}]  # a row's tools are untrusted JSON
    assert tool_schemas(tools) == {"add": ADD_SCHEMA, "mul": {"type": "object"}}
