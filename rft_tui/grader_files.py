"""Grader files on the CLI/TUI side: load one for a request (through `graders.loader`), list the examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from graders.loader import GRADER_FILE_FORMATS, grader_file_format

#: Suffixes of grader files (the graders package's list: the open-by-path completion offers these).
GRADER_SUFFIXES: tuple[str, ...] = tuple(GRADER_FILE_FORMATS)


def load_grader_dict(path: str | Path) -> dict[str, Any]:
    """The grader spec in `path`; a click error naming the file, line and column when it does not parse.

    The daemon validates the spec itself (and says which field is wrong), so this only reads and parses.
    """
    from graders.errors import GraderFileError
    from graders.loader import read_grader_file

    try:
        return read_grader_file(Path(path).expanduser())
    except GraderFileError as e:
        raise click.BadParameter(str(e), param_hint="--grader") from None


# ---------------------------------------------------------------------------------------------- the TUI's side

#: The repository's example graders (a source checkout or an install that ships `examples/`).
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


def example_graders(root: Path = EXAMPLES_DIR) -> list[Path]:
    """`examples/graders/*` and each example's `grader.*`: grader files a user can open, try and copy."""
    if not root.is_dir():
        return []
    found = [p for p in sorted((root / "graders").glob("*")) if grader_file_format(p.name)]
    found += [p for p in sorted(root.glob("*/grader.*")) if grader_file_format(p.name)]
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
