"""Prompt lengths in a model's tokens, for `files validate --tokenizer-model` (loads transformers).

`python -m daemon.worker.tokens` reads `{"model": ID, "path": JSONL}` on stdin and prints the stats as one
JSON object (or `{"error": ...}` when the tokenizer cannot be loaded); the daemon runs it as a subprocess
(`daemon.files.token_stats`), so transformers never loads in the daemon's process.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

TOKEN_SAMPLE_ROWS = 2_000


def load_tokenizer(model_id: str) -> Any:
    from daemon import models
    from daemon.paths import Paths

    paths = Paths.resolve(None)
    if models.is_builtin(model_id) and not models.builtin_ready(models.builtin_dir(paths, model_id)):
        return models.builtin_tokenizer(model_id)  # the same vocabulary, without building the model
    return models.load_tokenizer(model_id, paths)


def token_stats(tokenizer: Any, data_path: str) -> dict[str, float]:
    """Prompt lengths over an even sample of at most TOKEN_SAMPLE_ROWS rows."""
    from daemon.datasets import index as row_index

    offsets, _, _ = row_index.scan_offsets(Path(data_path))
    step = max(1, len(offsets) // TOKEN_SAMPLE_ROWS)
    counts = []
    with open(data_path, "rb") as f:
        for off in offsets[::step]:
            f.seek(off)
            try:
                obj = json.loads(f.readline())
                messages = obj["messages"]
            except (ValueError, KeyError, TypeError, RecursionError):
                continue
            counts.append(count_tokens(tokenizer, messages))
    if not counts:
        return {}
    import numpy as np

    from daemon.datasets.scan import summary

    out = summary(np.asarray(counts))
    out["sampled_rows"] = float(len(counts))
    return out


def count_tokens(tokenizer: Any, messages: list[dict[str, Any]]) -> int:
    if getattr(tokenizer, "chat_template", None):
        with contextlib.suppress(Exception):
            ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
            if hasattr(ids, "keys"):  # newer transformers return a BatchEncoding
                ids = ids["input_ids"]
            return len(ids)
    from daemon.datasets.rows import prompt_text

    return len(tokenizer(prompt_text({"messages": messages}))["input_ids"])


def main() -> int:
    request = json.load(sys.stdin)
    model_id = str(request["model"])
    try:
        tokenizer = load_tokenizer(model_id)
    except Exception as e:  # noqa: BLE001 - an unloadable tokenizer is the caller's bad input
        print(json.dumps({"error": f"Cannot load the tokenizer of {model_id!r}: {e}"}))
        return 0
    print(json.dumps({"prompt_tokens": token_stats(tokenizer, str(request["path"]))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
