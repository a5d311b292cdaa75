"""OpenAI-compatible graders for reinforcement fine-tuning.

Specs are OpenAI's grader JSON (`string_check`, `text_similarity`, `python`, `score_model`,
`label_model`, `multi`); results are OpenAI's grader run response. Grading never raises: an
error scores 0 and is flagged in `metadata.errors`. This package imports nothing of ours.
"""

from graders.batch import BatchGrader, BatchResult, run_grader
from graders.errors import GraderFileError, GraderSpecError
from graders.loader import (
    GRADER_FILE_FORMATS,
    grader_file_format,
    grader_file_problems,
    load_grader_file,
    load_grader_text,
    parse_grader_text,
    read_grader_file,
    validate_grader,
)
from graders.result import ERROR_FLAGS, GraderResult
from graders.sandbox import PythonGraderPool, SandboxLimits, sandbox_warning
from graders.sandbox_bwrap import sandbox_mode
from graders.spec import Grader, needs_heavy_libraries, parse_grader
from graders.templates import template_item_fields as _template_item_fields


def template_item_fields(grader: object) -> set[str]:
    """Top-level `item.*` fields a grader's templates use (accepts a spec or its JSON dict)."""
    return _template_item_fields(parse_grader(grader))


__all__ = [
    "ERROR_FLAGS",
    "GRADER_FILE_FORMATS",
    "BatchGrader",
    "BatchResult",
    "Grader",
    "GraderFileError",
    "GraderResult",
    "GraderSpecError",
    "PythonGraderPool",
    "SandboxLimits",
    "grader_file_format",
    "grader_file_problems",
    "load_grader_file",
    "load_grader_text",
    "needs_heavy_libraries",
    "parse_grader",
    "parse_grader_text",
    "read_grader_file",
    "run_grader",
    "sandbox_mode",
    "sandbox_warning",
    "template_item_fields",
    "validate_grader",
]
