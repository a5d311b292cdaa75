"""Judge backends for model graders: any OpenAI-compatible chat-completions endpoint, or a local HF model.

Choose per grader `model`: `hf:<hub id or path>` (or an existing local directory) runs a local
Hugging Face model (transformers, imported lazily; local files or the HF cache only, never a
download); anything else goes to the endpoint at
`base_url` (judge config) or `RFT_JUDGE_BASE_URL`, with `api_key` or `RFT_JUDGE_API_KEY`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any


class JudgeServerError(RuntimeError):
    """The judge could not be reached or answered with an error."""


@dataclass
class JudgeReply:
    """The judge's answer: its text, a refusal if it refused, and token usage."""

    text: str
    model: str
    refusal: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


class OpenAIEndpointJudge:
    """POST {base_url}/chat/completions with httpx; thread-safe (one shared client)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def complete(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> JudgeReply:
        import httpx

        body: dict[str, Any] = {"model": model, "messages": messages}
        for key, value in sampling.items():
            if value is None:
                continue
            body["max_completion_tokens" if key == "max_completions_tokens" else key] = value
        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise JudgeServerError(f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise JudgeServerError(f"HTTP {response.status_code}: {response.text[:500]}")
        try:
            data = response.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeServerError(f"unexpected response: {response.text[:500]}") from None
        usage = data.get("usage") or {}
        return JudgeReply(
            text=message.get("content") or "",
            model=str(data.get("model") or model),
            refusal=message.get("refusal") or None,
            usage={k: int(v) for k, v in usage.items() if isinstance(v, int)},
        )

    def close(self) -> None:
        self._client.close()


class HFLocalJudge:
    """A local Hugging Face causal LM as judge (loaded once, generation serialised by a lock)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise JudgeServerError("a local judge needs `pip install transformers torch`") from None
        try:
            # Never download at grading time: a hub id must already be in the local HF cache.
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_id, local_files_only=True)
            self._model = AutoModelForCausalLM.from_pretrained(self.model_id, local_files_only=True)
            self._model.eval()
        except Exception as exc:  # noqa: BLE001 - any load failure is a judge server error
            raise JudgeServerError(f"cannot load judge model {self.model_id!r}: {exc}") from None

    def complete(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> JudgeReply:
        with self._lock:
            if self._model is None:
                self._load()
            import torch

            chat = [{"role": "system" if m["role"] == "developer" else m["role"], "content": _plain(m["content"])}
                    for m in messages]
            try:
                if getattr(self._tokenizer, "chat_template", None):
                    prompt = self._tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
                else:
                    prompt = "\n".join(f"{m['role']}: {m['content']}" for m in chat) + "\nassistant:"
                inputs = self._tokenizer(prompt, return_tensors="pt")
                temperature = sampling.get("temperature") or 0.0
                max_new = sampling.get("max_completions_tokens") or 256
                if sampling.get("seed") is not None:
                    torch.manual_seed(int(sampling["seed"]))
                with torch.no_grad():
                    output = self._model.generate(
                        **inputs, max_new_tokens=int(max_new), do_sample=temperature > 0,
                        temperature=temperature if temperature > 0 else None,
                        top_p=sampling.get("top_p") if temperature > 0 else None,
                        pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
                    )
            except Exception as exc:  # noqa: BLE001
                raise JudgeServerError(f"local judge generation failed: {type(exc).__name__}: {exc}") from None
            prompt_tokens = int(inputs["input_ids"].shape[1])
            new_tokens = output[0][prompt_tokens:]
            text = self._tokenizer.decode(new_tokens, skip_special_tokens=True)
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": int(len(new_tokens)),
                     "total_tokens": prompt_tokens + int(len(new_tokens))}
            return JudgeReply(text=text, model=self.model_id, usage=usage)


def _plain(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))


class UnconfiguredJudge:
    """Stands in when no endpoint is configured, so every call reports a clear server error."""

    def __init__(self, model: str) -> None:
        self.model = model

    def complete(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> JudgeReply:
        raise JudgeServerError(
            f"no judge configured for model {model!r}: set RFT_JUDGE_BASE_URL (and RFT_JUDGE_API_KEY) to an "
            "OpenAI-compatible endpoint, or name a local model as 'hf:<hub id or path>'"
        )


def judge_target(model: str, config: dict[str, Any]) -> tuple[str, ...]:
    """Which backend serves `model` now (from the judge config, then the environment); a cache key."""
    if model.startswith("hf:"):
        return ("hf", model[3:])
    if config.get("backend") == "hf" or (os.path.sep in model and os.path.isdir(model)):
        return ("hf", str(config.get("model_path") or model))
    base_url = config.get("base_url") or os.environ.get("RFT_JUDGE_BASE_URL")
    if not base_url:
        return ("none", model)
    api_key = config.get("api_key") or os.environ.get("RFT_JUDGE_API_KEY") or ""
    return ("openai", str(base_url), str(api_key), str(config.get("timeout", 60.0)))


def make_judge(target: tuple[str, ...]) -> Any:
    """The backend for a judge_target()."""
    if target[0] == "hf":
        return HFLocalJudge(target[1])
    if target[0] == "none":
        return UnconfiguredJudge(target[1])
    _, base_url, api_key, timeout = target
    return OpenAIEndpointJudge(base_url, api_key or None, float(timeout))
