"""Exceptions the graders package raises (only for bad specs; grading itself never raises)."""


class GraderSpecError(ValueError):
    """A grader spec is invalid; the message names the offending field path."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)
