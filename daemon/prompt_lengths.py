"""The training file's real prompt lengths in tokens, for the memory estimate: the tokenizer only, no weights.

The worker's prompts are the rows' messages through the model's chat template with the generation prompt (and a
row's tools): daemon/worker/prompts.py, TRL's apply_chat_template, tokenized without added special tokens. Here
the same text is rendered with jinja2 the way transformers renders chat templates (a sandboxed environment,
its `tojson`, `raise_exception`, `strftime_now` and `{% generation %}`) and counted with the model's
`tokenizer.json` (the `tokenizers` library): no torch, no transformers in the daemon. The estimate then takes the
longest prompt the job will really see, capped by `max_prompt_length`, instead of `max_prompt_length` itself.

Bounded work (pre-flight's estimate answers in about a second): a file whose prompts total up to MEASURE_ALL_CHARS
characters is measured row by row. A bigger one is measured where it matters: the rows with the most text, a
seeded sample for the p95, and then every row whose text could still hold a longer prompt (its characters times
the highest tokens-per-character seen, with a margin), so the longest is found, not guessed. Results are cached
per (file hash, tokenizer files): the New-job form asks again at every settings change.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.models import builtin_dir, builtin_ready, is_builtin
from daemon.paths import Paths
from daemon.text import message_text

CACHE_SIZE = 16
MEASURE_ALL_CHARS = 250_000  # a file of up to this many characters is tokenized row by row
LONGEST_FIRST = 32  # a bigger file: the longest rows are tokenized first ...
P95_SAMPLE = 200  # ... with a seeded sample of this many rows for the p95 ...
MORE_CHARS = 150_000  # ... then rows that could still be longer, up to this many more characters
RATIO_MARGIN = 1.1  # a row could be longer if its characters x (highest tokens per character) x this is more
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


@dataclass(frozen=True)
class PromptLengths:
    """A training file's prompt lengths in tokens, as the worker will render them."""

    rows: int
    longest: int
    p95: int  # over every row, or over the seeded sample of a big file
    measured: int  # rows tokenized
    tokenizer: str  # where the tokenizer came from (a directory)
    exact: bool = True  # the longest is the file's: every row that could be longer was tokenized

    @property
    def sampled(self) -> bool:
        return self.measured < self.rows


def p95(lengths: list[int]) -> int:
    ordered = sorted(lengths)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)] if ordered else 0


@dataclass(frozen=True)
class PromptLengthChoice:
    """The prompt length the estimate uses and, in words, why."""

    tokens: int
    source: str  # "dataset" or "max_prompt_length"
    reason: str
    dataset_longest: int | None = None
    dataset_p95: int | None = None


class NoPromptLengths(Exception):
    """The real lengths cannot be had here (no tokenizer.json, no file, a template that fails): say why."""


_cache: OrderedDict[tuple[Any, ...], PromptLengths] = OrderedDict()
_lock = threading.Lock()


def choose(model: str, training_file: str | None, sha256: str | None, max_prompt_length: int,
           paths: Paths) -> PromptLengthChoice:
    """The dataset's longest prompt capped by `max_prompt_length`, or `max_prompt_length` with the reason.

    The longest (not the p95): prompts are left-padded to the longest in a batch, so the batch that holds the
    longest prompt sets the peak.
    """
    try:
        if not training_file:
            raise NoPromptLengths("no training file")
        found = dataset_prompt_lengths(model, Path(training_file), sha256, paths)
    except NoPromptLengths as e:
        return PromptLengthChoice(max_prompt_length, "max_prompt_length",
                                  f"max_prompt_length {max_prompt_length}: the prompts could not be measured ({e})")
    if not found.rows:
        return PromptLengthChoice(max_prompt_length, "max_prompt_length",
                                  f"max_prompt_length {max_prompt_length}: the training file has no prompts")
    p95_of = f"p95 {found.p95} over a sample of {P95_SAMPLE}" if found.sampled else f"p95 {found.p95}"
    longest_of = f"longest {found.longest}" if found.exact else \
        f"longest {found.longest} among the {found.measured:,} rows with the most text (the rest not measured)"
    seen = f"{longest_of}, {p95_of} tokens, {found.rows:,} rows"
    if found.longest > max_prompt_length:
        return PromptLengthChoice(max_prompt_length, "max_prompt_length",
                                  f"max_prompt_length {max_prompt_length}: the training file has longer prompts "
                                  f"({seen})", found.longest, found.p95)
    return PromptLengthChoice(found.longest, "dataset",
                              f"the training file's longest chat-templated prompt ({seen}), under max_prompt_length "
                              f"{max_prompt_length}", found.longest, found.p95)


def longest(model: str, training_file: str | None, sha256: str | None, paths: Paths) -> int | None:
    """The training file's longest prompt in tokens, or None when it cannot be measured here."""
    if not training_file:
        return None
    try:
        found = dataset_prompt_lengths(model, Path(training_file), sha256, paths)
    except NoPromptLengths:
        return None
    return found.longest or None


def dataset_prompt_lengths(model: str, training_file: Path, sha256: str | None, paths: Paths) -> PromptLengths:
    """Every prompt's token count (cached per file hash and tokenizer files)."""
    where = tokenizer_dir(model, paths)
    files = [where / "tokenizer.json", where / "tokenizer_config.json", where / "chat_template.jinja"]
    stamp = tuple((str(f), f.stat().st_mtime_ns) if f.is_file() else (str(f), None) for f in files)
    key = (sha256 or _file_hash(training_file), stamp)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    found = _measure(where, training_file)
    with _lock:
        _cache[key] = found
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return found


def tokenizer_dir(model: str, paths: Paths) -> Path:
    """The directory with the model's tokenizer.json: a built-in's build, a local directory, the HF cache."""
    if is_builtin(model):
        where = builtin_dir(paths, model)
        if not builtin_ready(where):
            raise NoPromptLengths(f"{model} is not built yet; its tokenizer comes with the build")
    elif model.startswith(("/", ".", "~")):
        where = Path(model).expanduser()
    else:
        from huggingface_hub import try_to_load_from_cache

        name, _, revision = model.partition("@")
        try:
            cached = try_to_load_from_cache(name, "tokenizer.json", revision=revision or None)
        except Exception as e:  # noqa: BLE001 - a malformed id or a broken cache entry: nothing to read here
            raise NoPromptLengths(f"{model}: {e}") from None
        if not isinstance(cached, str):
            raise NoPromptLengths(f"{model}: no tokenizer.json in the local Hugging Face cache")
        where = Path(cached).parent
    if not (where / "tokenizer.json").is_file():
        raise NoPromptLengths(f"no tokenizer.json in {where}")
    return where


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _measure(where: Path, training_file: Path) -> PromptLengths:
    from tokenizers import Tokenizer

    config = _read_json(where / "tokenizer_config.json")
    template_text = chat_template(where, config)
    render = _renderer(template_text, config) if template_text else None
    lines = _read_lines(training_file)
    try:
        tokenizer = Tokenizer.from_file(str(where / "tokenizer.json"))
    except Exception as e:  # noqa: BLE001 - a tokenizer.json this tokenizers cannot read
        raise NoPromptLengths(f"cannot load {where / 'tokenizer.json'}: {e}") from None
    tokenizer.no_padding()  # a saved tokenizer.json may pad batches to their longest or truncate: count each as is
    tokenizer.no_truncation()
    counted: dict[int, int] = {}

    def count(indices: list[int]) -> None:
        todo = [i for i in indices if i not in counted]
        texts = [_prompt_text(lines[i], render, i) for i in todo]
        for i, enc in zip(todo, tokenizer.encode_batch_fast(texts, add_special_tokens=False), strict=True):
            counted[i] = len(enc.ids)

    # a row's characters bound its prompt from above (other fields and JSON escapes only add): rows are parsed
    # and rendered only when tokenized
    size = [len(line) for line in lines]
    if sum(size) <= MEASURE_ALL_CHARS:
        count(list(range(len(lines))))
        return PromptLengths(len(lines), max(counted.values(), default=0), p95(list(counted.values())),
                             len(counted), str(where))
    by_size = sorted(range(len(lines)), key=size.__getitem__, reverse=True)
    sample = random.Random(0).sample(range(len(lines)), min(P95_SAMPLE, len(lines)))
    count(by_size[:LONGEST_FIRST] + sample)
    budget, exact = MORE_CHARS, True
    for start in range(LONGEST_FIRST, len(by_size), LONGEST_FIRST):
        longest = max(counted.values())
        ratio = max(n / max(1, size[i]) for i, n in counted.items()) * RATIO_MARGIN
        batch = [i for i in by_size[start:start + LONGEST_FIRST] if size[i] * ratio > longest]
        if not batch:
            break  # sorted by size: no later row can reach the longest either
        if budget <= 0:
            exact = False  # many rows of nearly one size: the longest among those measured, and said so
            break
        budget -= sum(size[i] for i in batch)
        count(batch)
    return PromptLengths(len(lines), max(counted.values()), p95([counted[i] for i in sample]), len(counted),
                         str(where), exact)


def _read_lines(training_file: Path) -> list[str]:
    try:
        with open(training_file, encoding="utf-8") as f:
            return [line for line in f if line.strip()]
    except OSError as e:
        raise NoPromptLengths(f"cannot read the training file: {e.strerror}") from None


def _prompt_text(line: str, render: Any, index: int) -> str:
    """One row's prompt as the worker renders it (daemon/worker/prompts.py): messages (and tools) through the
    chat template with the generation prompt, or the messages' text joined by newlines without a template."""
    try:
        row = json.loads(line)
    except ValueError as e:
        raise NoPromptLengths(f"row {index + 1} of the training file is not JSON: {e}") from None
    messages = [{"role": m.get("role", "user"), "content": message_text(m.get("content"))}
                for m in row.get("messages") or [] if isinstance(m, dict)]
    tools = row.get("tools") if isinstance(row.get("tools"), list) and row.get("tools") else None
    if render is None:
        return "\n".join(m["content"] for m in messages)
    try:
        return str(render(messages, tools))
    except Exception as e:  # noqa: BLE001 - the model's own template failing on a row: fall back, say why
        raise NoPromptLengths(f"the chat template fails on row {index + 1}: {type(e).__name__}: {e}") from None


def chat_template(where: Path, config: dict[str, Any]) -> str | None:
    """chat_template.jinja (transformers 5 saves it apart), else tokenizer_config.json's (its "default")."""
    jinja_file = where / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _special_tokens(config: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name in SPECIAL_TOKENS:
        value = config.get(name)
        if isinstance(value, dict):  # a serialised AddedToken
            value = value.get("content")
        if isinstance(value, str):
            out[name] = value
    return out


def _renderer(template_text: str, config: dict[str, Any]) -> Any:
    """A function (messages, tools) -> prompt text, rendered as transformers' apply_chat_template does."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """`{% generation %}...{% endgeneration %}` (transformers marks assistant tokens with it): the body as is."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return str(caller())

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    template = env.from_string(template_text)
    special = _special_tokens(config)

    def render(messages: list[dict[str, str]], tools: list[Any] | None) -> str:
        return template.render(messages=messages, tools=tools, add_generation_prompt=True, **special)

    return render
