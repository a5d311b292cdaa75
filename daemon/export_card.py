"""What an export takes and what it says about itself: the checkpoint choice and the model card (no torch).

The checkpoint is chosen by the store's one "why kept" rule (`kept_because`: latest, best #1..#3 by
validation reward), never a second copy of it. The card is written beside the exported weights so a
model found on disk later says where it came from: base model and revision, job, date, grader,
hyperparameters and the validation reward of the base model and of this checkpoint.
"""

from __future__ import annotations

import json
import time
from typing import Any

from daemon import api
from daemon.errors import bad_request

CHOICES = ("best", "latest")


def parse_choice(checkpoint: str | None, checkpoint_step: int | None) -> str | int:
    """'best' (the default), 'latest' or a step number, from the request's `checkpoint` or `checkpoint_step`."""
    if checkpoint is None or checkpoint.strip() == "":
        return "best" if checkpoint_step is None else checkpoint_step
    text = checkpoint.strip().lower().removeprefix("step-")
    if text in CHOICES:
        return text
    if text.isdigit():
        return int(text)
    raise bad_request(f"checkpoint must be 'best', 'latest' or a step number, not {checkpoint!r}",
                      param="checkpoint", code="invalid_checkpoint")


def choose_checkpoint(job_id: str, ckpts: list[api.JobCheckpoint], choice: str | int) -> tuple[api.JobCheckpoint, str]:
    """The kept checkpoint the user asked for, and why it is the one (said back to the user and in the card)."""
    if isinstance(choice, int):
        match = [c for c in ckpts if c.step_number == choice]
        if not match:
            raise bad_request(f"Job {job_id} has no kept checkpoint at step {choice} "
                              f"(kept: {sorted(c.step_number for c in ckpts)})", param="checkpoint",
                              code="checkpoint_not_found")
        return match[0], f"step {choice}, as asked"
    if choice == "best":
        best = next((c for c in ckpts if "best #1" in c.kept_because), None)
        if best is not None:
            reward = best.metrics.valid_reward_mean
            return best, f"best validation reward ({_num(reward)} at step {best.step_number})"
    latest = next(c for c in ckpts if "latest" in c.kept_because)
    why = "latest" if choice == "latest" else "latest (no checkpoint has a validation reward)"
    return latest, why


def grader_summary(grader: dict[str, Any]) -> str:
    """One line on what the grader rewards, by type (the card's reader has no grader file at hand)."""
    kind = grader.get("type", "?")
    if kind == "string_check":
        return f"`{grader.get('input')}` {grader.get('operation')} `{grader.get('reference')}`"
    if kind == "text_similarity":
        threshold = grader.get("pass_threshold")
        return (f"{grader.get('evaluation_metric')} similarity of `{grader.get('input')}` "
                f"to `{grader.get('reference')}`" + (f", pass at {threshold}" if threshold is not None else ""))
    if kind == "python":
        lines = len(str(grader.get("source") or "").splitlines())
        return f"Python `grade(sample, item)` ({lines} lines, run in the sandbox)"
    if kind in ("score_model", "label_model"):
        return f"{kind.replace('_', ' ')} judged by `{grader.get('model')}`"
    if kind == "endpoint":
        return f"HTTP endpoint `{grader.get('url')}`"
    if kind == "multi":
        subs = grader.get("graders") or {}
        parts = ", ".join(f"{name} ({(g or {}).get('type', '?')})" for name, g in subs.items())
        return f"`{grader.get('calculate_output')}` over {parts}"
    return kind


def model_card(row: dict[str, Any], snapshot: api.JobSnapshot, ckpt: api.JobCheckpoint, why: str,
               exported_at: float | None = None) -> str:
    """README.md for the export: a Hugging Face model card (YAML header + markdown) that stands alone."""
    model, grader, hp = snapshot.model, api.redact_secrets(snapshot.grader), snapshot.hyperparameters
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() if exported_at is None else exported_at))
    base_reward, ckpt_reward = row.get("valid_reward_base"), ckpt.metrics.valid_reward_mean
    gain = (f" ({ckpt_reward - base_reward:+.3f})" if base_reward is not None and ckpt_reward is not None else "")
    header = ["---", "library_name: peft", "tags: [rft-tui, grpo, lora, reinforcement-fine-tuning]"]
    if model.source == "hub":
        header.append(f"base_model: {model.id}")
    header.append("---")
    files = [("Training", snapshot.training_file), ("Validation", snapshot.validation_file)]
    lines = [
        *header, "",
        f"# {row.get('fine_tuned_model') or row['id']} (step {ckpt.step_number})", "",
        "A LoRA adapter trained by reinforcement fine-tuning (TRL GRPO) with rft-tui.", "",
        "| | |", "|---|---|",
        f"| Base model | `{model.id}` ({_revision(model)}) |",
        f"| Job | `{row['id']}` ({row['status']}) |",
        f"| Checkpoint | `{ckpt.id}`: step {ckpt.step_number} of {row.get('total_steps') or '?'}; {why} |",
        f"| Exported | {when} |",
        f"| Seed | {snapshot.seed} |",
        "",
        "## Validation reward", "",
        f"Base model (step 0): {_num(base_reward)} → this checkpoint: {_num(ckpt_reward)}{gain}; "
        f"mean over the validation rows ({_num(hp.eval_samples)} sampled).", "",
        "## Grader", "",
        f"`{grader.get('name') or 'grader'}` ({grader.get('type', '?')}): {grader_summary(grader)}", "",
        "```json", json.dumps(grader, indent=2, ensure_ascii=False)[:4000], "```", "",
        "## Data", "",
        *[f"- {label}: `{f.id}` {f.filename or ''} ({f.rows} rows, sha256 {str(f.sha256)[:12]}…)"
          for label, f in files if f],
        "",
        "## Hyperparameters", "",
        "| name | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(hp.model_dump().items())],
        "",
        "## Use", "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f"base = AutoModelForCausalLM.from_pretrained({_load_hint(model)})",
        'model = PeftModel.from_pretrained(base, "adapter")  # this export\'s adapter/ directory',
        "```", "",
        "Library versions at training time: " + ", ".join(
            f"{k} {v}" for k, v in snapshot.versions.items() if v) + ".", "",
    ]
    return "\n".join(lines)


def _revision(model: api.SnapshotModel) -> str:
    if model.source == "builtin":
        return f"built-in, rft-tui {model.revision}"
    if model.source == "local":
        return "local directory"
    return f"revision `{model.revision or 'main'}`"


def _load_hint(model: api.SnapshotModel) -> str:
    if model.source == "hub":
        rev = model.revision
        return f'"{model.id}"' + (f', revision="{rev}"' if rev and rev != "main" else "")
    if model.source == "builtin":
        return (f'"<the rft-tui model cache for {model.id}>"'
                f'  # or: daemon.models.load_model({model.id!r}, ...)')
    return f'"{model.id}"'


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)
