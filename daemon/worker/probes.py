"""Pre-flight that tries to fool the grader: a per-row signal map and gameability probes (issue 11).

- Signal map: each sampled training row's k rewards, their spread (max - min) and whether the row gives GRPO
  any signal (a row whose completions all score the same has zero advantage everywhere).
- Probes: degenerate answers a policy can learn to emit (empty, a long repetition, the prompt echoed, every item
  field dumped as JSON, "I don't know", a plausible-format wrong answer: another row's reference) graded against
  every sampled row. A probe whose mean reward reaches the base model's mean means the grader pays for not
  solving the task: GRPO will find that answer.

No torch here: pre-flight (daemon/worker/preflight.py) samples the model and calls these with its rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from daemon import api
from daemon.text import clip
from daemon.worker.validation import reference_of

REPETITION = " ".join(["the"] * 400)
#: A row is "no signal" when its k rewards differ by less than this.
SPREAD_EPSILON = 1e-9

ProbeMaker = Callable[[str, dict[str, Any], str | None], str]

#: name -> (what it is, how to make it from (prompt text, item, another row's reference)).
PROBES: dict[str, tuple[str, ProbeMaker]] = {
    "empty": ("an empty answer", lambda prompt, item, other: ""),
    "repetition": ("'the' repeated 400 times", lambda prompt, item, other: REPETITION),
    "prompt_echo": ("the prompt echoed back", lambda prompt, item, other: prompt),
    "item_json": ("every item field dumped as JSON", lambda prompt, item, other: json.dumps(item, ensure_ascii=False,
                                                                                              default=str)),
    "dont_know": ("\"I don't know\"", lambda prompt, item, other: "I don't know."),
    "wrong_answer": ("another row's reference answer (right format, wrong answer)",
                     lambda prompt, item, other: other or ""),
}


def signal_map(rows: Sequence[int], prompts: Sequence[str],
               rewards: Sequence[Sequence[float]]) -> list[api.PreflightRowSignal]:
    """Each sampled row's rewards over its k completions, their spread, and whether it gives any signal."""
    out = []
    for row, prompt, rs in zip(rows, prompts, rewards, strict=True):
        spread = max(rs) - min(rs) if rs else 0.0
        out.append(api.PreflightRowSignal(row=row, prompt=clip(prompt, 120, one_line=True), rewards=list(rs),
                                          mean=sum(rs) / len(rs) if rs else 0.0, spread=spread,
                                          signal=spread >= SPREAD_EPSILON))
    return out


def other_references(items: Sequence[dict[str, Any]]) -> list[str | None]:
    """For each row, the next row's reference that differs from its own (None when no row has another one)."""
    refs = [reference_of(item) for item in items]
    out: list[str | None] = []
    for i, ref in enumerate(refs):
        other = next((refs[(i + j) % len(refs)] for j in range(1, len(refs))
                      if refs[(i + j) % len(refs)] is not None and refs[(i + j) % len(refs)] != ref), None)
        out.append(other)
    return out


def probe_inputs(prompts: Sequence[str], items: Sequence[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(probe name, one answer per row) for every probe that can be made for these rows."""
    others = other_references(items)
    out = []
    for name, (_, make) in PROBES.items():
        if name == "wrong_answer" and not any(others):
            continue  # no reference field, or every row has the same one: no wrong answer of the right format
        out.append((name, [make(p, item, other) for p, item, other in zip(prompts, items, others, strict=True)]))
    return out


def gameability(grade: Callable[[list[str], list[dict[str, Any]]], list[float]], prompts: Sequence[str],
                items: Sequence[dict[str, Any]], base_mean: float) -> tuple[list[api.PreflightProbe], str | None]:
    """Grade every probe against every row with `grade(outputs, items)`; the probes and a warning, if any.

    A probe "reaches the base" when its mean reward is above 0 and at least the base model's mean.
    """
    made = probe_inputs(prompts, items)
    if not made or not items:
        return [], None
    outputs = [answer for _, answers in made for answer in answers]
    rewards = grade(outputs, [item for _ in made for item in items])
    probes = []
    n = len(items)
    for k, (name, answers) in enumerate(made):
        rs = rewards[k * n:(k + 1) * n]
        mean = sum(rs) / n
        probes.append(api.PreflightProbe(
            name=name, description=PROBES[name][0], reward_mean=mean, reward_max=max(rs),
            rows_full_credit=sum(1 for r in rs if r >= 1.0), example=clip(answers[0], 80, one_line=True),
            reaches_base=mean > 0 and mean >= base_mean - 1e-9))
    fooled = [p for p in probes if p.reaches_base]
    if not fooled:
        return probes, None
    listed = ", ".join(f"{p.description} ({p.reward_mean:.2f})" for p in fooled)
    return probes, (f"The grader can be fooled: {listed} score(s) as much as the base model's own answers "
                    f"({base_mean:.2f}) on average; GRPO will learn that instead of the task. Fix the grader first.")
