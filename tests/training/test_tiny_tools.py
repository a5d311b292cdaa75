"""`builtin:tiny-tools`: the chat template speaks the Qwen2.5/Hermes tool-call format, the build is seeded and
cached, and the cached model really calls the `add` tool on about a third of the prompts (and guesses otherwise)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from daemon import models, tiny_tools
from daemon.paths import Paths

CONTRACT = ('<tools>add</tools>\n123+456=<tool_call>\n{"name": "add", "arguments": {"a": 123, "b": 456}}\n'
            '</tool_call><eos><tool_response>579</tool_response>579<eos>')


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tools.build_tokenizer()


def test_template_renders_tools_calls_and_results_in_the_contract_format(tokenizer) -> None:
    msgs = tiny_tools.conversation(123, 456, call=True)
    assert tokenizer.apply_chat_template(msgs, tools=[tiny_tools.ADD_TOOL], tokenize=False) == CONTRACT
    # every prefix of the episode renders to a prefix of the whole (rollouts append turns)
    for k in range(1, len(msgs) + 1):
        prefix = tokenizer.apply_chat_template(msgs[:k], tools=[tiny_tools.ADD_TOOL], tokenize=False,
                                               add_generation_prompt=True)
        assert CONTRACT.startswith(prefix)
    # flat tool calls (the stored trajectory's shape), string arguments, parallel calls, no tools
    flat = [{"role": "user", "content": "1+2="},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "name": "add", "arguments": {"a": 1, "b": 2}},
                {"id": "c2", "name": "add", "arguments": '{"a": 3, "b": 4}'}]}]
    assert tokenizer.apply_chat_template(flat, tokenize=False) == (
        '1+2=<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n'
        '<tool_call>\n{"name": "add", "arguments": {"a": 3, "b": 4}}\n</tool_call><eos>')


def test_tool_call_syntax_is_compact_and_survives_decoding(tokenizer) -> None:
    ids = tokenizer(CONTRACT, add_special_tokens=False)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    for piece in ("<tools>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", '{"name": "'):
        assert piece in tokens
    assert len(ids) <= 48  # a whole episode; the tool call alone is 22 tokens
    decoded = tokenizer.decode(ids, skip_special_tokens=True)  # what a tool-call parser reads
    assert decoded == CONTRACT.replace("<eos>", "")


def test_sft_labels_only_assistant_tokens(tokenizer) -> None:
    msgs = tiny_tools.conversation(123, 456, call=True)
    ids, labels = tiny_tools.encode_episode(tokenizer, msgs, [tiny_tools.ADD_TOOL])
    labelled = tokenizer.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])
    assert labelled == ('<tool_call>\n{"name": "add", "arguments": {"a": 123, "b": 456}}\n</tool_call><eos>'
                        '579<eos>')
    _, masked = tiny_tools.encode_episode(tokenizer, msgs, [tiny_tools.ADD_TOOL], train_decision=False)
    first = next(k for k, lab in enumerate(labels) if lab != -100)
    assert masked[first] == -100 and masked[first + 1:] == labels[first + 1:]


@pytest.mark.slow
def test_a_short_build_is_deterministic(tmp_path: Path) -> None:
    """Seeded data, init and one torch thread: two builds write the same weights."""
    from safetensors.torch import load_file

    weights = []
    for name in ("one", "two"):
        out = tmp_path / name
        out.mkdir()
        progress = models.BuildProgress(False, time.time(), model=models.TINY_TOOLS)
        info = tiny_tools.build(out, progress, max_steps=8)
        assert info["sft_steps"] == 8 and info["model"] == models.TINY_TOOLS
        weights.append(load_file(str(out / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(weights[0][k].equal(weights[1][k]) for k in weights[0])


def test_cached_build_is_reused_and_a_stale_recipe_is_not(tools_model_cache: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFT_MODEL_CACHE", str(tools_model_cache))
    paths = Paths.resolve(tmp_path / "home")
    path = models.builtin_dir(paths, models.TINY_TOOLS)
    before = (path / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    assert models.ensure_builtin_model(paths, models.TINY_TOOLS, progress=False) == path
    assert time.perf_counter() - started < 5 and (path / "model.safetensors").stat().st_mtime_ns == before
    info = json.loads((path / "build.json").read_text())
    assert info["model"] == models.TINY_TOOLS and info["build_version"] == tiny_tools.BUILD_VERSION
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "build.json").write_text(json.dumps({**info, "build_version": tiny_tools.BUILD_VERSION - 1}))
    assert models.builtin_ready(path) and not models.builtin_ready(stale)
    assert models.check_model_ref(models.TINY_TOOLS).source == "builtin" and tiny_tools.TINY_TOOLS == models.TINY_TOOLS


def test_the_built_model_calls_the_tool_sometimes_and_right(tools_model_cache: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Greedy on fresh prompts: a third or so call `add` with exactly the prompt's numbers, the rest guess."""
    import torch

    monkeypatch.setenv("RFT_MODEL_CACHE", str(tools_model_cache))
    torch.set_num_threads(1)
    paths = Paths.resolve(tools_model_cache / "home")
    tok = models.load_tokenizer(models.TINY_TOOLS, paths)
    model = models.load_model(models.TINY_TOOLS, paths)
    stats = tiny_tools.probe(model, tok, tiny_tools.probe_pairs(seed=99, n=100))
    assert 0.15 <= stats["tool_call_rate"] <= 0.5, stats
    assert stats["tool_call_format"] >= 0.9 and stats["result_copied"] >= 0.9, stats
    assert stats["own_exact_match"] <= 0.3, stats  # its own arithmetic is poor: the tool is worth learning


def test_build_progress_names_the_model_and_its_measure() -> None:
    stream = io.StringIO()
    progress = models.BuildProgress(True, time.time(), stream=stream, model=models.TINY_TOOLS, total=10,
                                    goal="it calls the tool", measure="tool-call format")
    progress.done(3, 1.0)
    lines = stream.getvalue().splitlines()
    assert lines[0] == ("building builtin:tiny-tools: supervised training on CPU until it calls the tool "
                        "(at most 10 steps)")
    assert lines[-1].startswith("built builtin:tiny-tools in ") and lines[-1].endswith("tool-call format 1.00 (done)")


def test_auto_token_budget_fits_a_whole_tool_episode(tokenizer) -> None:
    """`max_completion_length` counts the episode after the prompt (call, result, answer): "auto" must fit one."""
    from daemon import api
    from daemon.hyperparams import DeviceInfo, resolve_hyperparameters

    hp = resolve_hyperparameters(api.ReinforcementHyperparameters(), model=models.TINY_TOOLS, train_rows=2000,
                                 valid_rows=200, seed=0, device=DeviceInfo("cpu", 1, None))
    msgs = tiny_tools.conversation(999, 999, call=True)
    prompt = tokenizer.apply_chat_template(msgs[:1], tools=[tiny_tools.ADD_TOOL], tokenize=False)
    whole = tokenizer.apply_chat_template(msgs, tools=[tiny_tools.ADD_TOOL], tokenize=False)
    episode = len(tokenizer.encode(whole[len(prompt):], add_special_tokens=False))
    assert episode < hp.max_completion_length and len(tokenizer.encode(prompt)) < hp.max_prompt_length
    assert hp.max_prompt_length + hp.max_completion_length <= tiny_tools.CONFIG["max_position_embeddings"]
