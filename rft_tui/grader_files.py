"""Read a grader file (JSON, YAML, or a `.py` python grader) into the OpenAI grader dict it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def load_grader_dict(path: str | Path) -> dict[str, Any]:
    """The grader spec in `path`; a click error naming the file and line when it does not parse."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"cannot read grader file {p}: {e}", param_hint="--grader") from e
    if p.suffix == ".py":
        return {"type": "python", "name": p.stem, "source": text}
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"{p}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}", param_hint="--grader") from e
    except Exception as e:  # noqa: BLE001 - yaml's errors carry their own position
        raise click.BadParameter(f"{p}: not valid YAML: {e}", param_hint="--grader") from e
    if not isinstance(data, dict):
        raise click.BadParameter(f"{p}: a grader file holds one JSON/YAML object", param_hint="--grader")
    return data
