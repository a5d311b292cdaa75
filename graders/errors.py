"""Exceptions the graders package raises (only for bad specs and grader files; grading itself never raises)."""

from __future__ import annotations

#: A field's location inside a grader spec: keys and list indexes, outermost first (`("graders", "a", "input")`).
FieldPath = tuple[str | int, ...]


class GraderSpecError(ValueError):
    """A grader spec is invalid; the message names the offending field path.

    `fields` holds the location of each problem (first problem first), so a caller that has the file's
    text can point at the line (see `graders.loader`).
    """

    def __init__(self, message: str, path: str = "", fields: tuple[FieldPath, ...] = ()) -> None:
        self.path = path
        self.fields = fields
        super().__init__(f"{path}: {message}" if path else message)


class GraderFileError(GraderSpecError):
    """A grader file that cannot be read, does not parse, or does not hold a valid grader spec.

    `file` is the name as the caller gave it, `line`/`column` are 1-based where known, and `field` is the
    spec field path of a validation problem. `str()` is one line: `FILE:LINE:COL: what is wrong`.
    """

    def __init__(self, file: str, message: str, line: int | None = None, column: int | None = None,
                 field: str = "") -> None:
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.reason = message
        ValueError.__init__(self, f"{self.where}: {message}")
        self.path = field
        self.fields = ()

    def __reduce__(self) -> tuple[type[GraderFileError], tuple[str, str, int | None, int | None, str]]:
        """Survive pickling (a process pool re-raises it in the caller's process)."""
        return type(self), (self.file, self.reason, self.line, self.column, self.field)

    @property
    def where(self) -> str:
        """`file`, `file:line` or `file:line:column`: the form editors and compilers print."""
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}" + (f":{self.column}" if self.column is not None else "")
