"""Multi-turn episodes on a real tiny model (Qwen2.5 chat format) whose generate is steered, real tools.

The episode loop, the chat template, the tokenizer, the model's generate and the HTTP tool server all run
for real; `Steer` only forces which token comes next, so each test scripts what the model writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from daemon import api
from daemon.worker.episodes import Episode, EpisodeRow, EpisodeRunner, episode_metrics
from daemon.worker.rewards import GraderReward
from daemon.worker.tool_runtime import ToolBox
from tests.support.tool_model import call_block, steered, tiny_tool_model, tool_tokenizer
from tests.support.tool_server import ToolServer

ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}


@pytest.fixture(scope="module")
def tok() -> Any:
    return tool_tokenizer()


@pytest.fixture(scope="module")
def model(tok: Any) -> Any:
    return tiny_tool_model(tok)


@pytest.fixture
def server() -> Iterator[ToolServer]:
    with ToolServer(fail_first=0) as srv:
        yield srv


def rows(*pairs: tuple[int, int]) -> list[EpisodeRow]:
    return [EpisodeRow(messages=[{"role": "user", "content": f"What is {a}+{b}?"}], tools=[ADD],
                       item={"a": a, "b": b, "answer": str(a + b)}) for a, b in pairs]


def question(context: str) -> tuple[int, int]:
    a, b = re.findall(r"What is (\d+)\+(\d+)\?", context)[-1]
    return int(a), int(b)


def responses(context: str) -> list[str]:
    return re.findall(r"<tool_response>\n(.*?)\n</tool_response>", context, re.DOTALL)


def runner(tok: Any, server: ToolServer, steps: int = 8, budget: int = 600) -> EpisodeRunner:
    return EpisodeRunner(tok, ToolBox({"add": api.HttpToolRuntime(url=server.url("/add"), max_retries=0)}),
                         max_episode_steps=steps, max_completion_length=budget)


def use_tool_then_answer(context: str) -> str:
    """Call add once; after its response, answer with the sum it returned."""
    got = responses(context)
    if got:
        return str(json.loads(got[-1])["sum"])
    a, b = question(context)
    return call_block("add", a=a, b=b)


def test_episode_ends_on_the_final_answer(tok: Any, model: Any, server: ToolServer) -> None:
    episodes = runner(tok, server).run(steered(model, tok, use_tool_then_answer), rows((12, 30), (5, 7)))
    for episode, answer in zip(episodes, ["42", "12"], strict=True):
        assert episode.stop_reason == "final_answer" and episode.final_answer == answer
        assert [t.role for t in episode.turns] == ["assistant", "tool", "assistant"]
        [call] = episode.tool_calls
        assert call.name == "add" and call.error is None and call.result == json.dumps({"sum": int(answer)})
        assert episode.turns[1].content == call.result and episode.turns[1].tool_call_id == call.id
    assert server.calls["/add"] == 2
    assert {b["item"]["answer"] for _, b in server.requests} == {"42", "12"}


def test_episode_ends_at_max_episode_steps(tok: Any, model: Any, server: ToolServer) -> None:
    def always_call(context: str) -> str:
        return call_block("add", a=len(responses(context)), b=1)

    [episode] = runner(tok, server, steps=3).run(steered(model, tok, always_call), rows((1, 2)))
    assert episode.stop_reason == "max_episode_steps" and episode.steps == 3
    assert len(episode.tool_calls) == 3 and server.calls["/add"] == 3
    # the last turn's result is in the trajectory but never fed back: the model saw two responses
    assert tok.decode(episode.completion_ids).count("<tool_response>") == 2
    assert episode_metrics([episode])["tools/max_steps_share"] == 1.0


def test_episode_ends_on_the_token_budget(tok: Any, model: Any, server: ToolServer) -> None:
    [episode] = runner(tok, server, budget=120).run(steered(model, tok, use_tool_then_answer), rows((1, 2)))
    assert episode.stop_reason == "token_budget" and len(episode.completion_ids) <= 120


def test_parallel_calls_in_one_turn(tok: Any, model: Any, server: ToolServer) -> None:
    def two_at_once(context: str) -> str:
        got = responses(context)
        if got:
            return str(sum(json.loads(r)["sum"] for r in got))
        return call_block("add", a=1, b=2) + "\n" + call_block("add", a=10, b=20)

    [episode] = runner(tok, server).run(steered(model, tok, two_at_once), rows((1, 2)))
    assert episode.stop_reason == "final_answer" and episode.final_answer == "33"
    assert [c.id for c in episode.turns[0].tool_calls] == ["call_1", "call_2"]
    assert [t.role for t in episode.turns] == ["assistant", "tool", "tool", "assistant"]
    text = tok.decode(episode.completion_ids)
    assert text.count("<|im_start|>user") == 1 and text.count("<tool_response>") == 2  # one user turn, two results


def test_malformed_calls_become_errors_the_model_sees(tok: Any, model: Any, server: ToolServer) -> None:
    turns = ['<tool_call>\n{"name": "add", "arguments": {"a": 1,\n</tool_call>',
             call_block("subtract", a=1, b=2),
             call_block("add", a="one", b=2),
             "<tool_call>\n[1, 2]\n</tool_call>",
             "gave up"]

    def script(context: str) -> str:
        return turns[len(responses(context))]

    [episode] = runner(tok, server, budget=2000).run(steered(model, tok, script), rows((1, 2)))
    assert episode.stop_reason == "final_answer" and episode.final_answer == "gave up"
    errors = [c.error or "" for c in episode.tool_calls]
    assert "not JSON" in errors[0] and "unknown tool 'subtract'" in errors[1]
    assert "'a' must be integer" in errors[2] and "expected {" in errors[3]
    seen = responses(tok.decode(episode.completion_ids))
    assert [json.loads(s)["error"] for s in seen] == errors
    assert server.calls["/add"] == 0
    assert episode_metrics([episode])["tools/error_rate"] == 1.0


def test_mask_marks_model_tokens_1_and_tool_results_0(tok: Any, model: Any, server: ToolServer) -> None:
    [episode] = runner(tok, server).run(steered(model, tok, use_tool_then_answer), rows((12, 30)))
    assert len(episode.mask) == len(episode.completion_ids)
    model_text = tok.decode([t for t, m in zip(episode.completion_ids, episode.mask, strict=True) if m])
    tool_text = tok.decode([t for t, m in zip(episode.completion_ids, episode.mask, strict=True) if not m])
    assert model_text == call_block("add", a=12, b=30) + "<|im_end|>" + "42<|im_end|>"
    assert tool_text == '\n<|im_start|>user\n<tool_response>\n{"sum": 42}\n</tool_response><|im_end|>\n' \
                        '<|im_start|>assistant\n'
    # prompt + completion is exactly what the chat template renders for the whole conversation
    convo = [{"role": "user", "content": "What is 12+30?"},
             {"role": "assistant", "content": "", "tool_calls": [
                 {"type": "function", "function": {"name": "add", "arguments": {"a": 12, "b": 30}}}]},
             {"role": "tool", "name": "add", "content": '{"sum": 42}'},
             {"role": "assistant", "content": "42"}]
    rendered = tok.apply_chat_template(convo, tools=[ADD], tokenize=False)
    assert tok.decode(episode.prompt_ids + episode.completion_ids) + "\n" == rendered


def test_graders_see_the_final_answer_and_the_episode(tok: Any, model: Any, server: ToolServer) -> None:
    episodes: list[Episode] = runner(tok, server).run(steered(model, tok, use_tool_then_answer), rows((12, 30)))
    items = [{"answer": "42"}]
    template = GraderReward({"type": "string_check", "name": "used_add", "operation": "eq",
                             "input": "{{sample.tool_calls.0.name}}", "reference": "add"})
    python = GraderReward({"type": "python", "name": "py", "source": (
        "def grade(sample, item):\n"
        "    ok = sample['output_text'] == item['answer']\n"
        "    used = [c['name'] for c in sample['tool_calls'] if c['error'] is None]\n"
        "    turns = [m['role'] for m in sample['output_messages']]\n"
        "    return 0.5 * ok + 0.25 * (used == ['add']) + 0.25 * (turns == ['assistant', 'tool', 'assistant'])\n")})
    answer = GraderReward({"type": "string_check", "name": "answer", "operation": "eq",
                           "input": "{{sample.output_text}}", "reference": "{{item.answer}}"})
    try:
        samples = [e.grader_sample() for e in episodes]
        assert template.grade(samples, items).rewards == [1.0]
        assert answer.grade(samples, items).rewards == [1.0]
        assert python.grade(samples, items).rewards == [1.0]
        # through TRL's reward call: the episode (not the completion text with tool results) is graded
        rewards = answer(prompts=["p"], completions=[[{"role": "assistant", "content": "junk"}]],
                         item_json=[json.dumps(items[0])], episode=samples)
        assert rewards == [1.0]
        stored, _ = answer.drain()
        assert stored[0]["completion"] == "42" and stored[0]["stop_reason"] == "final_answer"
        assert stored[0]["output_messages"][0]["tool_calls"][0]["name"] == "add"
    finally:
        for g in (template, python, answer):
            g.close()
