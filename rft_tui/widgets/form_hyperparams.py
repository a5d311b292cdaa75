"""The new-job form's hyperparameters: one Input per name (default `auto`), parsed and checked client-side."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from daemon import api

#: OpenAI's names first (the ones most users touch), then the local ones.
OPENAI_NAMES = ("n_epochs", "batch_size", "learning_rate_multiplier", "eval_interval", "eval_samples",
                "compute_multiplier", "seed", "reasoning_effort")
ORDERED_NAMES = OPENAI_NAMES + tuple(n for n in api.HYPERPARAMETER_NAMES if n not in OPENAI_NAMES)


def field_key(name: str) -> str:
    return f"hp.{name}"


def parse_value(name: str, text: str) -> Any:
    """`auto`/empty -> "auto" (None for reasoning_effort); numbers, true/false, comma lists as typed."""
    text = text.strip()
    if text in ("", "auto"):
        return None if name == "reasoning_effort" else "auto"
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if name == "lora_target_modules":
        return [p.strip() for p in text.split(",") if p.strip()]
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            continue
    return text


def format_value(value: Any) -> str:
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def check_hyperparameters(values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(the non-auto hyperparameters to send, problems by field key)."""
    chosen = {n: parse_value(n, t) for n, t in values.items()}
    chosen = {n: v for n, v in chosen.items() if v is not None and v != "auto"}
    try:
        api.ReinforcementHyperparameters.model_validate(chosen)
    except ValidationError as e:
        problems: dict[str, str] = {}
        for err in e.errors():
            loc = err.get("loc") or ()
            if loc:
                message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
                problems.setdefault(field_key(str(loc[0])), message)
        return chosen, problems
    return chosen, {}


class HyperparameterFields(Vertical):
    """Label, Input and an error line per hyperparameter."""

    DEFAULT_CSS = """
    HyperparameterFields { height: auto; }
    HyperparameterFields > Horizontal { height: auto; margin-bottom: 1; }
    HyperparameterFields Label { width: 28; }
    HyperparameterFields Input { width: 24; }
    HyperparameterFields .field-error { width: 1fr; padding-left: 1; color: $error; }
    """

    def __init__(self, initial: dict[str, Any] | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.initial = dict(initial or {})

    def compose(self) -> ComposeResult:
        for name in ORDERED_NAMES:
            with Horizontal():
                yield Label(name)
                yield Input(format_value(self.initial.get(name)), id=f"hp-{name}", compact=True)
                yield Static("", id=f"err-hp-{name}", classes="field-error")

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#hp-{name}", Input).value for name in ORDERED_NAMES}
