"""One streaming pass over a JSONL dataset: every problem with its line and field, stats, and the row index.

Bytes are fed in chunks (an upload, a copy, a read), so a file of any size is checked in constant memory
apart from a few compact per-row arrays (row offsets, line numbers, row hashes, prompt lengths).
Policy: errors (a row a job cannot use) fail validation and refuse import; warnings never do:
blank lines, duplicate rows, very long prompts, and a field whose JSON type differs between rows
(graders read `item.*` as they find it, so a mixed type is suspicious but not fatal).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daemon import api
from daemon.datasets.depth import MAX_ROW_DEPTH, deeper_than, depth_message
from daemon.datasets.rows import check_row, normalize_prompt, prompt_text

LONG_PROMPT_CHARS = 32_768
SHORT_VALUE_CHARS = 64
MAX_DISTINCT_VALUES = 1_000
TOP_VALUES = 10
NOT_ITEM_FIELDS = frozenset({"messages", "tools"})
_TYPE_NAMES: dict[type, str] = {str: "string", int: "number", float: "number", bool: "boolean",
                                type(None): "null", dict: "object", list: "array"}
_decoder = json.JSONDecoder()
_decode_json = _decoder.decode
_scan_once = _decoder.scan_once  # type: ignore[attr-defined]  # CPython's scanner; typeshed leaves it out


@dataclass
class ScanResult:
    """What one pass found; `problems` is already capped, the counts are not."""

    label: str
    report: api.ValidationReport
    offsets: array = field(default_factory=lambda: array("Q"))  # byte offset of each row
    lines: array = field(default_factory=lambda: array("Q"))  # 1-based line number of each row
    prompts: list[str] | None = None  # normalised prompts, for overlap
    prompt_lines: array = field(default_factory=lambda: array("Q"))
    missing: dict[str, int] = field(default_factory=dict)  # grader item field -> rows without it


class Scanner:
    """Feed it bytes with `feed()`, then `finish()`; the row index and report come out of the same pass."""

    def __init__(self, label: str, max_problems: int = 200, item_fields: Iterable[str] = (),
                 collect_prompts: bool = False) -> None:
        self.label = label
        self.max_problems = max_problems
        self.item_fields = tuple(sorted(set(item_fields)))
        self.collect_prompts = collect_prompts
        self.errors: list[api.Problem] = []
        self.warnings: list[api.Problem] = []
        self.n_errors = 0
        self.n_warnings = 0
        self.offsets = array("Q")
        self.lines = array("Q")
        self.row_hashes = array("q")
        self.prompt_chars = array("I")
        self.prompts: list[str] = []
        self.prompt_lines = array("Q")
        self.field_types: dict[tuple[str, str], list[int]] = {}  # (field, type) -> [rows, first line]
        self.values: dict[str, dict[str, int]] = {}
        self.roles: dict[str, int] = {}
        self.missing: dict[str, int] = {}
        self.bytes = 0
        self._pos = 0
        self._line_no = 0
        self._tail = b""

    # -------------------------------------------------------------- problems

    def error(self, line: int | None, code: str, message: str, field_: str | None = None) -> None:
        self.n_errors += 1
        if len(self.errors) < self.max_problems:
            self.errors.append(api.Problem(severity="error", file=self.label, line=line, field=field_, code=code,
                                           message=message))

    def warning(self, line: int | None, code: str, message: str, field_: str | None = None) -> None:
        self.n_warnings += 1
        if len(self.warnings) < self.max_problems:
            self.warnings.append(api.Problem(severity="warning", file=self.label, line=line, field=field_,
                                             code=code, message=message))

    # -------------------------------------------------------------- the pass

    def feed(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        data = self._tail + chunk if self._tail else chunk
        parts = data.split(b"\n")
        self._tail = parts.pop()
        line = self._line
        for raw in parts:
            line(raw)

    def _line(self, raw: bytes) -> None:
        self._line_no += 1
        n = self._line_no
        start = self._pos
        self._pos = start + len(raw) + 1
        stripped = raw.strip()
        if not stripped:
            self.warning(n, "blank_line", "blank line (skipped; it is not a row)")
            return
        self.offsets.append(start)
        self.lines.append(n)
        self.row_hashes.append(hash(stripped))
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError as e:
            self.prompt_chars.append(0)
            self.error(n, "invalid_utf8",
                       f"not UTF-8: byte 0x{stripped[e.start]:02x} at byte {e.start + 1} of the line")
            return
        if deeper_than(stripped, MAX_ROW_DEPTH):
            self.prompt_chars.append(0)
            self.error(n, "too_deep", f"not a usable row: {depth_message(MAX_ROW_DEPTH)}")
            return
        try:
            obj, end = _scan_once(text, 0)  # the C scanner, without json.loads' per-call Python wrapper
            if end != len(text):
                raise ValueError
        except (StopIteration, ValueError, RecursionError):
            try:
                obj = _decode_json(text)  # slow path, for its precise error message
            except RecursionError:
                self.prompt_chars.append(0)
                self.error(n, "too_deep", f"not a usable row: {depth_message(MAX_ROW_DEPTH)}")
                return
            except ValueError as e:
                self.prompt_chars.append(0)
                msg = getattr(e, "msg", str(e))
                col = getattr(e, "colno", None)
                self.error(n, "invalid_json", f"not valid JSON: {msg}" + (f" at column {col}" if col else ""))
                return
        problems, chars = check_row(obj, self.roles)
        self.prompt_chars.append(chars)
        for code, where, message in problems:
            self.error(n, code, message, where)
        if not isinstance(obj, dict):
            return
        if chars > LONG_PROMPT_CHARS:
            self.warning(n, "long_prompt", f"very long prompt ({chars:,} characters)", "messages")
        types = self.field_types
        values = self.values
        for key, value in obj.items():
            kind = _TYPE_NAMES.get(type(value), "object")
            entry = types.get((key, kind))
            if entry is None:
                types[(key, kind)] = [1, n]
            else:
                entry[0] += 1
            if kind == "string" and len(value) <= SHORT_VALUE_CHARS and key not in NOT_ITEM_FIELDS:
                counts = values.get(key)
                if counts is None:
                    counts = values[key] = {}
                c = counts.get(value)
                if c is not None:
                    counts[value] = c + 1
                elif len(counts) <= MAX_DISTINCT_VALUES:
                    counts[value] = 1
        for name in self.item_fields:
            if name not in obj:
                self.missing[name] = self.missing.get(name, 0) + 1
                self.error(n, "missing_item_field", f"row has no `{name}`, which the grader uses "
                           f"({{{{item.{name}}}}})", name)
        if self.collect_prompts and not problems:
            self.prompts.append(normalize_prompt(prompt_text(obj)))
            self.prompt_lines.append(n)

    def finish(self) -> ScanResult:
        if self._tail:
            tail, self._tail = self._tail, b""
            self._line(tail)
        rows = len(self.offsets)
        if rows == 0:
            self.error(None, "empty_file", "the file has no rows" if self._line_no == 0
                       else "the file has only blank lines, no rows")
        self._duplicates()
        self._mixed_types()
        problems = sorted(self.errors, key=_by_line) + sorted(self.warnings, key=_by_line)
        report = api.ValidationReport(
            ok=self.n_errors == 0, file=self.label, errors=self.n_errors, warnings=self.n_warnings,
            problems=problems[: self.max_problems],
            problems_truncated=self.n_errors + self.n_warnings > min(len(problems), self.max_problems),
            stats=self._stats(rows))
        return ScanResult(label=self.label, report=report, offsets=self.offsets, lines=self.lines,
                          prompts=self.prompts if self.collect_prompts else None, prompt_lines=self.prompt_lines,
                          missing=dict(self.missing))

    # -------------------------------------------------------------- whole-file checks

    def _duplicates(self) -> None:
        if len(self.row_hashes) < 2:
            return
        hashes = np.frombuffer(self.row_hashes, dtype=np.int64)
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            return
        run_start = np.maximum.accumulate(np.where(np.concatenate(([False], same)), 0, np.arange(len(ordered))))
        dup_positions = np.flatnonzero(np.concatenate(([False], same)))
        lines = np.frombuffer(self.lines, dtype=np.uint64)
        pairs = sorted((int(lines[order[p]]), int(lines[order[run_start[p]]])) for p in dup_positions)
        for line, first in pairs:
            self.warning(line, "duplicate_row", f"duplicate of line {first}")

    def _mixed_types(self) -> None:
        by_field: dict[str, dict[str, list[int]]] = {}
        for (name, kind), entry in self.field_types.items():
            by_field.setdefault(name, {})[kind] = entry
        for name, kinds in sorted(by_field.items()):
            if len(kinds) < 2:
                continue
            main = max(kinds, key=lambda k: kinds[k][0])
            total = sum(e[0] for e in kinds.values())
            for kind, (count, first) in sorted(kinds.items(), key=lambda kv: kv[1][1]):
                if kind != main:
                    self.warning(first, "mixed_types", f"`{name}` is {_a(kind)} here ({count} row"
                                 f"{'s' if count != 1 else ''} like this) but {_a(main)} in {kinds[main][0]} of "
                                 f"{total} rows", name)

    def _stats(self, rows: int) -> api.FileStats:
        fields: dict[str, api.FieldStats] = {}
        for (name, kind), (count, _) in sorted(self.field_types.items()):
            stats = fields.setdefault(name, api.FieldStats(name=name, types={}, present=0))
            stats.types[kind] = count
            stats.present += count
        for name, counts in self.values.items():
            if name in fields and len(counts) <= MAX_DISTINCT_VALUES:
                top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
                fields[name].top_values = top
        chars = np.frombuffer(self.prompt_chars, dtype=np.uint32) if len(self.prompt_chars) else None
        return api.FileStats(
            rows=rows, bytes=self.bytes, fields=list(fields.values()),
            prompt_chars=summary(chars) if chars is not None else {},
            message_counts=dict(sorted(self.roles.items())))


def summary(values: np.ndarray) -> dict[str, float]:
    """min / mean / p50 / p95 / max of a length distribution."""
    return {"min": float(values.min()), "mean": round(float(values.mean()), 2),
            "p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "max": float(values.max())}


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _by_line(p: api.Problem) -> int:
    return p.line if p.line is not None else 0


def scan_file(path: str, label: str, **kw: Any) -> ScanResult:
    """Scan a file on disk (1 MiB reads)."""
    scanner = Scanner(label, **kw)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            scanner.feed(chunk)
    return scanner.finish()
