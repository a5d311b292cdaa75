"""The grader's error flags and the API's `metadata.errors` model are one list: a flag the grader sets is
a field a client can read, and every field the API promises is a flag the grader can set."""

from __future__ import annotations

from daemon.api import GraderRunMetadataErrors
from graders import run_grader
from graders.result import DETAIL_FIELDS, ERROR_FLAGS, GraderResult


def test_every_grader_flag_is_an_api_field_and_back() -> None:
    fields = GraderRunMetadataErrors.model_fields
    api_flags = {name for name, f in fields.items() if f.annotation is bool}
    assert set(ERROR_FLAGS) == api_flags
    assert set(DETAIL_FIELDS.values()) == set(fields) - api_flags  # the free-text companions
    assert set(DETAIL_FIELDS) <= set(ERROR_FLAGS)


def test_the_api_model_reads_what_the_grader_writes() -> None:
    for flag in ERROR_FLAGS:
        result = GraderResult.failure("g", "python", flag, f"details of {flag}")
        errors = GraderRunMetadataErrors.model_validate(result.errors_dict())
        assert getattr(errors, flag) is True
        assert [f for f in ERROR_FLAGS if getattr(errors, f)] == [flag]
        if flag in DETAIL_FIELDS:
            assert getattr(errors, DETAIL_FIELDS[flag]) == f"details of {flag}"


def test_a_real_out_of_range_python_grade_reaches_the_api_shape() -> None:
    spec = {"type": "python", "name": "big", "source": "def grade(sample, item):\n    return 7.5\n"}
    result = run_grader(spec, "x", {})
    errors = GraderRunMetadataErrors.model_validate(result.to_dict()["metadata"]["errors"])
    assert errors.python_grader_out_of_range_error and errors.python_grader_out_of_range_error_details
    assert result.reward == 1.0  # clamped and kept, not zeroed
