"""The estimate's prompt length from the training file: the rows through the model's chat template, counted with
its tokenizer.json (daemon/prompt_lengths.py, no transformers), must equal what transformers' apply_chat_template
and the tokenizer give the worker -- for the built-in models (tools too), a ChatML template with tools, and a
gene-ranking file with long prompts; and a real daemon's estimate says which length it used and why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from daemon import prompt_lengths
from daemon.paths import Paths
from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import EXACT_GRADER

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# A ChatML template in the style of Qwen2's, with tools rendered through tojson and a system-prompt default.
CHATML = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}"
    "{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n<tools>' }}{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools><|im_end|>\\n' }}{%- elif messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (tools and loop.first and message['role'] == 'system') %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def reference_lengths(model_dir: Path, train: Path) -> list[int]:
    """What the worker gets: transformers' chat template (tools per row) and tokenizer, no special tokens added."""
    from transformers import AutoTokenizer

    from daemon.worker.prompts import render_prompt

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    out = []
    for line in train.read_text().splitlines():
        row = json.loads(line)
        tools = row.get("tools") or None
        out.append(len(tok(render_prompt(tok, row["messages"], tools), add_special_tokens=False)["input_ids"]))
    return sorted(out)


def agrees(found: prompt_lengths.PromptLengths, reference: list[int]) -> None:
    """The same rows and longest prompt as transformers gives; the same p95 when every row was measured (a big
    file's comes from a sample: within 5 %)."""
    assert found.rows == len(reference) and found.longest == reference[-1] > 0
    if found.sampled:
        assert abs(found.p95 - prompt_lengths.p95(reference)) <= 0.05 * found.p95
    else:
        assert found.p95 == prompt_lengths.p95(reference)


@pytest.fixture(autouse=True)
def built_models(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared cache of built-in models, where the daemon (and `builtin_dir`) look for them."""
    monkeypatch.setenv("RFT_MODEL_CACHE", str(model_cache))
    return model_cache


@pytest.mark.parametrize("model,train", [
    ("builtin:tiny-arith", "arithmetic"), ("builtin:tiny-arith", "gene-ranking"),
    # its own template renders each row's tools; building the model costs a minute where it is not cached yet
    pytest.param("builtin:tiny-tools", "tools-arith", marks=pytest.mark.slow)])
def test_lengths_equal_the_workers_for_the_built_in_models(request: pytest.FixtureRequest, model_cache: Path,
                                                           model: str, train: str) -> None:
    if model == "builtin:tiny-tools":
        request.getfixturevalue("tools_model_cache")
    paths = Paths.resolve(model_cache / "home")
    where = prompt_lengths.tokenizer_dir(model, paths)
    file = EXAMPLES / train / "train.jsonl"
    found = prompt_lengths.dataset_prompt_lengths(model, file, None, paths)
    agrees(found, reference_lengths(where, file))


def test_lengths_equal_the_workers_for_a_chatml_template_with_tools(model_cache: Path, tmp_path: Path) -> None:
    model = tmp_path / "chatml"
    model.mkdir()
    built = prompt_lengths.tokenizer_dir("builtin:tiny-arith", Paths.resolve(model_cache / "home"))
    shutil.copy(built / "tokenizer.json", model / "tokenizer.json")
    config = json.loads((built / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHATML}))
    train = tmp_path / "train.jsonl"
    rows = [json.loads(x) for x in (EXAMPLES / "tools-arith" / "train.jsonl").read_text().splitlines()[:50]]
    rows += [{"messages": [{"role": "system", "content": "Add."}, {"role": "user", "content": "1+2="}]}]
    train.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    found = prompt_lengths.dataset_prompt_lengths(str(model), train, None, Paths.resolve(tmp_path / "home"))
    agrees(found, reference_lengths(model, train))
    assert found.longest > 200  # the tools block is in it (one token per character here)


def test_a_big_file_is_sampled_and_its_longest_prompt_still_found(model_cache: Path, tmp_path: Path) -> None:
    """Over MEASURE_ALL_CHARS: the longest rows, a sample for the p95, and every row that could still be longer
    are tokenized -- fewer than a third of the rows -- and the one longest prompt, in the middle, is found."""
    paths = Paths.resolve(model_cache / "home")
    rows = [{"messages": [{"role": "developer", "content": "Rank the genes."},
                          {"role": "user", "content": f"Case {i}: " + "hypotonia, " * (20 + i % 37)}]}
            for i in range(3000)]
    rows[1717]["messages"][1]["content"] += " seizures" * 40  # the one longest prompt, in the middle
    train = tmp_path / "big.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    found = prompt_lengths.dataset_prompt_lengths("builtin:tiny-arith", train, None, paths)
    reference = reference_lengths(prompt_lengths.tokenizer_dir("builtin:tiny-arith", paths), train)
    assert found.sampled and found.exact and found.measured < 1000
    agrees(found, reference)


def test_choice_caps_at_max_prompt_length_and_says_why(model_cache: Path, tmp_path: Path) -> None:
    paths = Paths.resolve(model_cache / "home")
    file = EXAMPLES / "gene-ranking" / "train.jsonl"
    longest = prompt_lengths.dataset_prompt_lengths("builtin:tiny-arith", file, None, paths).longest
    roomy = prompt_lengths.choose("builtin:tiny-arith", str(file), None, longest + 100, paths)
    assert (roomy.tokens, roomy.source, roomy.dataset_longest) == (longest, "dataset", longest)
    assert "longest chat-templated prompt" in roomy.reason
    capped = prompt_lengths.choose("builtin:tiny-arith", str(file), None, longest - 1, paths)
    assert (capped.tokens, capped.source) == (longest - 1, "max_prompt_length") and "longer prompts" in capped.reason
    missing = prompt_lengths.choose(str(tmp_path), str(file), None, 512, paths)  # a directory without a tokenizer
    assert (missing.tokens, missing.source) == (512, "max_prompt_length") and "no tokenizer.json" in missing.reason


@pytest.mark.slow
def test_the_daemons_estimate_uses_the_files_prompts(daemon_factory: Any, model_cache: Path) -> None:
    d: DaemonProcess = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker",
                                           "RFT_MODEL_CACHE": str(model_cache)})
    c = d.client()
    train = c.import_file(str(EXAMPLES / "gene-ranking" / "train.jsonl")).id
    longest = prompt_lengths.dataset_prompt_lengths("builtin:tiny-arith", EXAMPLES / "gene-ranking" / "train.jsonl",
                                                    None, Paths.resolve(model_cache / "home")).longest

    def estimate(max_prompt_length: int) -> Any:
        hp = {"max_prompt_length": max_prompt_length}
        report = c.preflight({"model": "builtin:tiny-arith", "training_file": train, "estimate_only": True,
                              "method": {"type": "reinforcement", "reinforcement": {"grader": EXACT_GRADER,
                                                                                    "hyperparameters": hp}}})
        assert report.memory_estimate is not None
        return report.memory_estimate

    measured, capped = estimate(longest + 1000), estimate(longest // 2)
    a = measured.assumptions
    assert (a["prompt_length"], a["prompt_length_source"], a["dataset_prompt_longest"]) == (longest, "dataset", longest)
    assert a["sequence_length"] == longest + a["sequence_length"] - a["prompt_length"]
    assert capped.assumptions["prompt_length"] == longest // 2 and "longer prompts" in capped.assumptions[
        "prompt_length_reason"]
    assert capped.activations_bytes < measured.activations_bytes  # the length reaches the activations term
