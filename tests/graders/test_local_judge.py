"""A local Hugging Face model as judge: a tiny Llama built in the test that always answers "5"."""

from __future__ import annotations

from pathlib import Path

import pytest

from graders import run_grader


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("tiny-judge")
    # Token 0 is "5": with the final norm zeroed every logit is 0 and greedy decoding picks id 0.
    symbols = ["5", "<pad>", "<eos>"] + sorted(set("0123456789abcdefghijklmnopqrstuvwxyz{}\":.,=+ \n") - {"5"})
    vocab = {s: i for i, s in enumerate(symbols)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex("."), behavior="isolated")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    fast.save_pretrained(path)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False,
                                      pad_token_id=1, eos_token_id=2, bos_token_id=2, max_position_embeddings=2048)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    model.save_pretrained(path)
    return path


def test_local_hf_judge_scores(tiny_judge: Path) -> None:
    spec = {"type": "score_model", "name": "local", "model": f"hf:{tiny_judge}", "range": [0, 10],
            "sampling_params": {"max_completions_tokens": 1, "temperature": 0},
            "input": [{"role": "user", "content": "q: {{item.q}} a: {{sample.output_text}}"}]}
    result = run_grader(spec, "46", {"q": "12+34="})
    assert not result.errors, result.to_dict()
    assert result.reward == 5.0
    data = result.to_dict()
    assert data["metadata"]["sampled_model_name"] == str(tiny_judge)
    assert data["metadata"]["token_usage"] > 1


def test_local_hf_judge_missing_model_is_a_server_error(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    spec = {"type": "label_model", "name": "l", "model": f"hf:{tmp_path / 'nope'}", "labels": ["a", "b"],
            "passing_labels": ["a"], "input": [{"role": "user", "content": "x"}]}
    result = run_grader(spec, "46", {})
    assert result.errors == {"model_grader_server_error"}
