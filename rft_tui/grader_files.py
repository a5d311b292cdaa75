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


# ---------------------------------------------------------------------------------------------- the TUI's side

#: The repository's example graders (a source checkout or an install that ships `examples/`).
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
GRADER_SUFFIXES = (".json", ".yaml", ".yml", ".py")


def example_graders(root: Path = EXAMPLES_DIR) -> list[Path]:
    """`examples/graders/*` and each example's `grader.*`: grader files a user can open, try and copy."""
    if not root.is_dir():
        return []
    found = [p for p in sorted((root / "graders").glob("*")) if p.suffix in GRADER_SUFFIXES]
    found += [p for p in sorted(root.glob("*/grader.*")) if p.suffix in GRADER_SUFFIXES]
    return list(dict.fromkeys(found))


class GraderFileChanged(Exception):
    """The file changed on disk since it was opened; the message says so."""


def read_text_file(path: Path) -> tuple[str, float]:
    """A grader file's text and modification time (called from a worker thread, never from a widget)."""
    return path.read_text(encoding="utf-8"), path.stat().st_mtime


def write_text_file(path: Path, text: str, expected_mtime: float | None) -> float:
    """Write `text` unless the file changed since `expected_mtime` (None: overwrite); the new mtime."""
    if expected_mtime is not None and path.exists() and path.stat().st_mtime != expected_mtime:
        raise GraderFileChanged(f"{path} changed on disk since you opened it")
    path.write_text(text, encoding="utf-8")
    return path.stat().st_mtime
