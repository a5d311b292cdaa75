"""Datasets in the store: import by content hash (validated in the same streaming pass), validation,
train/validation overlap, stats, and paged rows through a line-offset index.

A file with errors is refused at import (400 `invalid_file`, nothing left behind) unless `force` is set;
a forced file can be browsed and inspected, but jobs refuse it (so `force` is for looking, not training).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from daemon import api
from daemon.datasets import index as row_index
from daemon.datasets.depth import MAX_ROW_DEPTH, deeper_than, depth_message
from daemon.datasets.overlap import ALGORITHM_VERSION, as_problems, overlap_report
from daemon.datasets.scan import Scanner, ScanResult, scan_file
from daemon.errors import ApiError, bad_request, disk_full, not_found
from daemon.helper_process import run_module_sync
from daemon.paths import Paths
from daemon.store import Store, is_disk_full_error

CHUNK = 1 << 20
DEFAULT_MAX_PROBLEMS = 200
FIRST_PROBLEMS = 5  # how many an error message names
TOKENS_TIMEOUT_S = float(os.environ.get("RFT_TOKENS_TIMEOUT_S", "300"))
MAX_PAGE = 1_000
_cache_lock = threading.Lock()
_reports: OrderedDict[tuple[Any, ...], api.ValidationReport] = OrderedDict()
_CACHE_SIZE = 64


def file_id_for(sha256: str) -> str:
    return "file-" + sha256[:24]


def stored_path(paths: Paths, sha256: str) -> Path:
    return paths.files / f"{sha256}.jsonl"


# ------------------------------------------------------------------------------------ import


def import_stream(store: Store, paths: Paths, src: BinaryIO, filename: str, purpose: str = "fine-tune",
                  source_path: str | None = None, force: bool = False) -> api.FileObject:
    """Copy `src` into the store under its sha256 (same content -> same file id), validating as it goes."""
    paths.files.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    scanner = Scanner(filename, max_problems=DEFAULT_MAX_PROBLEMS)
    placed: list[Path] = []  # files this import put in the store; removed again unless it completes
    fd, tmp = tempfile.mkstemp(dir=paths.files, prefix=".import-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                scanner.feed(chunk)
            out.flush()
            os.fsync(out.fileno())  # ENOSPC on delayed allocation surfaces here, not after the rename
        result = scanner.finish()
        report = result.report
        if report.errors and not force:
            raise invalid_file(report, filename)
        sha = digest.hexdigest()
        existing = store.file_by_sha(sha)
        if existing is not None:
            return store.file_object(existing)
        dest = stored_path(paths, sha)
        os.chmod(tmp, 0o400)  # immutable and private
        os.replace(tmp, dest)
        tmp = ""
        placed.append(dest)
        placed.append(row_index.write_index(dest, sha, result.offsets, result.lines))
        store.insert_file({
            "id": file_id_for(sha), "sha256": sha, "bytes": scanner.bytes, "filename": filename,
            "purpose": purpose, "created_at": int(time.time()), "rows": report.stats.rows, "path": str(dest),
            "source_path": source_path, "status": "processed",
            "status_details": (f"kept with {report.errors} error(s) (force); jobs refuse it" if report.errors
                               else None),
            "stats": report.model_dump_json(),
        })
        placed.clear()
        return store.file_object(store.file_by_sha(sha))  # type: ignore[arg-type]
    except BaseException as e:
        _remove_unrecorded(store, placed)
        if is_disk_full_error(e):
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # before measuring what is free
            tmp = ""
            raise disk_full(str(paths.home)) from None
        raise
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _remove_unrecorded(store: Store, placed: list[Path]) -> None:
    """An import that failed after placing files removes them, unless a row for that content exists."""
    if not placed:
        return
    sha = placed[0].stem
    with contextlib.suppress(Exception):
        if store.file_by_sha(sha) is not None:
            return  # a concurrent import of the same content completed: its files are in use
    for p in placed:
        with contextlib.suppress(OSError):
            p.unlink()


def sweep_orphans(store: Store, paths: Paths) -> list[str]:
    """At start-up: remove half-written temp files and stored copies no file row points at."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(paths.files))
    except FileNotFoundError:
        return removed
    known = {Path(p).name for p in store.file_paths()}
    known_stems = {Path(n).stem for n in known}
    for entry in entries:
        name = entry.name
        if name.startswith((".import-", ".idx-", ".overlap-")):
            orphan = True
        elif name.endswith(".jsonl"):
            orphan = name not in known
        elif name.endswith(".idx"):
            orphan = Path(name).stem not in known_stems
        else:
            orphan = False
        if orphan and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(name)
    return removed


def local_path(path: str, param: str) -> Path:
    """A client-supplied local path with `~` expanded; a 400 naming the field when `~user` is unknown
    or the path cannot even be looked up (a name over NAME_MAX, a parent we may not search)."""
    if not path.startswith("~"):
        return _lookable(Path(path), path, param)
    try:
        expanded = os.path.expanduser(path)
    except (RuntimeError, KeyError):
        expanded = path
    if expanded.startswith("~"):
        user = path[1:].split("/", 1)[0]
        raise bad_request(f"{param}: cannot expand {path!r}: there is no user {user!r} on this machine "
                          "(give an absolute path).", param=param, code="invalid_path")
    return _lookable(Path(expanded), path, param)


def _lookable(p: Path, given: str, param: str) -> Path:
    try:
        p.is_file()  # raises for what "no such file" would misreport (ENAMETOOLONG, EACCES, ...)
    except OSError as e:
        raise bad_request(f"{param}: cannot use {given[:200]!r}: {e.strerror}", param=param,
                          code="invalid_path") from None
    return p


def import_path(store: Store, paths: Paths, path: str, purpose: str = "fine-tune",
                force: bool = False) -> api.FileObject:
    p = local_path(path, "path")
    if not p.is_file():
        raise bad_request(f"No such file: {path}", param="path", code="file_not_found")
    try:
        f = open(p, "rb")
    except OSError as e:
        raise bad_request(f"Cannot read {path}: {e.strerror}", param="path", code="file_not_readable") from None
    with f:
        return import_stream(store, paths, f, p.name, purpose, source_path=str(p.resolve()), force=force)


def first_problems(problems: list[api.Problem], n: int = FIRST_PROBLEMS) -> str:
    parts = []
    for p in [p for p in problems if p.severity == "error"][:n]:
        where = f"line {p.line}" if p.line is not None else "file"
        field = f" [{p.field}]" if p.field else ""
        parts.append(f"{where}{field}: {p.message}")
    return "; ".join(parts)


def invalid_file(report: api.ValidationReport, filename: str, param: str | None = "file") -> ApiError:
    shown = min(report.errors, FIRST_PROBLEMS)
    more = f" (and {report.errors - shown} more)" if report.errors > shown else ""
    return bad_request(f"{filename} has {report.errors} error{'s' if report.errors != 1 else ''}: "
                       f"{first_problems(report.problems)}{more}", param=param, code="invalid_file")


def get_file(store: Store, file_id: str) -> dict:
    row = store.get_file_row(file_id)
    if row is None:
        raise not_found("file", file_id, param="file_id")
    return row


def iter_content(row: dict) -> Iterator[bytes]:
    with open(row["path"], "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


# ------------------------------------------------------------------------------------ validation


def grader_item_fields(grader: dict[str, Any] | None, param: str = "grader") -> frozenset[str]:
    """`{{item.x}}` fields a grader uses (empty without a grader); 400 if the grader itself is invalid."""
    if not grader:
        return frozenset()
    import graders

    try:
        return frozenset(graders.template_item_fields(grader))
    except Exception as e:  # noqa: BLE001 - any spec error is the caller's bad input
        raise bad_request(f"Invalid grader: {e}", param=param, code="invalid_grader") from None


def _stored_data_path(row: dict[str, Any]) -> Path:
    path = Path(row["path"])
    if not path.is_file():
        raise ApiError(409, f"The stored copy of {row['id']} ({path}) is missing; import the file again.",
                       param="file_id", code="file_missing")
    return path


def _cached(key: tuple[Any, ...]) -> api.ValidationReport | None:
    with _cache_lock:
        hit = _reports.get(key)
        if hit is not None:
            _reports.move_to_end(key)
        return hit


def _remember(key: tuple[Any, ...], report: api.ValidationReport) -> None:
    with _cache_lock:
        _reports[key] = report
        while len(_reports) > _CACHE_SIZE:
            _reports.popitem(last=False)


def stored_report(row: dict[str, Any], fields: frozenset[str] = frozenset(),
                  max_problems: int = DEFAULT_MAX_PROBLEMS) -> api.ValidationReport:
    """A stored file's report, cached per (sha, grader fields, cap): job creation never rescans a big file."""
    key = (row["sha256"], fields, max_problems)
    hit = _cached(key)
    if hit is not None:
        return hit.model_copy(deep=True)
    base = None
    if row.get("stats") and max_problems == DEFAULT_MAX_PROBLEMS:
        with contextlib.suppress(ValueError):
            base = api.ValidationReport.model_validate_json(row["stats"])
    if base is not None and (not fields or _all_present(base, fields)):
        report = base
    else:
        report = scan_file(str(_stored_data_path(row)), row["filename"], item_fields=fields,
                           max_problems=max_problems).report
    _remember(key, report)
    return report.model_copy(deep=True)


def _all_present(report: api.ValidationReport, fields: frozenset[str]) -> bool:
    present = {f.name: f.present for f in report.stats.fields}
    return all(present.get(name, 0) == report.stats.rows for name in fields)


def _resolve(store: Store, ref: str, param: str) -> tuple[str, dict[str, Any] | None]:
    """A file id in the store or a local path: (path to read, file row or None)."""
    row = store.get_file_row(ref) if ref.startswith("file-") else None
    if row is not None:
        return str(_stored_data_path(row)), row
    if ref.startswith("file-") and not Path(ref).exists():
        raise not_found("file", ref, param=param)
    p = local_path(ref, param)
    if not p.is_file():
        raise bad_request(f"No such file: {ref}", param=param, code="file_not_found")
    if not os.access(p, os.R_OK):
        raise bad_request(f"Cannot read {ref}: permission denied", param=param, code="file_not_readable")
    return str(p), None


def _scan(path: str, row: dict[str, Any] | None, fields: frozenset[str], max_problems: int,
          prompts: bool) -> ScanResult | api.ValidationReport:
    if row is not None and not prompts:
        return stored_report(row, fields, max_problems)
    return scan_file(path, row["filename"] if row else Path(path).name, item_fields=fields,
                     max_problems=max_problems, collect_prompts=prompts)


def validate(store: Store, paths: Paths, req: api.FileValidateRequest) -> api.ValidationReport:
    """`POST /v1/files/validate`: every problem with its line and field, stats, and overlap with `against`."""
    if bool(req.file_id) == bool(req.path):
        raise bad_request("Give exactly one of file_id or path.", param="file_id")
    fields = grader_item_fields(req.grader)
    main_path, main_row = _resolve(store, req.file_id or req.path or "",
                                   "file_id" if req.file_id else "path")
    want_prompts = req.against is not None
    main = _scan(main_path, main_row, fields, req.max_problems, want_prompts)
    report = main.report if isinstance(main, ScanResult) else main
    if req.tokenizer_model:
        report.stats.prompt_tokens = token_stats(paths, req.tokenizer_model, main_path)
    if req.against is None:
        return report
    other_path, other_row = _resolve(store, req.against, "against")
    other = scan_file(other_path, other_row["filename"] if other_row else Path(other_path).name,
                      item_fields=fields, max_problems=req.max_problems, collect_prompts=True)
    assert isinstance(main, ScanResult)
    overlap = compute_overlap(main, other, req.max_problems)
    valid_report = other.report
    _add_overlap_problems(valid_report, overlap, req.max_problems)
    report.against = valid_report
    report.overlap = overlap
    report.ok = report.ok and valid_report.ok
    return report


def _add_overlap_problems(report: api.ValidationReport, overlap: api.OverlapReport, cap: int) -> None:
    extra = [api.Problem(**p) for p in as_problems(overlap, report.file)]
    report.errors += overlap.exact
    report.warnings += overlap.near
    report.ok = report.errors == 0
    errors = [p for p in report.problems if p.severity == "error"] + [p for p in extra if p.severity == "error"]
    warnings = [p for p in report.problems if p.severity == "warning"] + [p for p in extra
                                                                         if p.severity == "warning"]
    merged = sorted(errors, key=_line) + sorted(warnings, key=_line)
    report.problems_truncated = report.problems_truncated or len(merged) > cap or (
        overlap.exact > len(overlap.exact_pairs) or overlap.near > len(overlap.near_pairs))
    report.problems = merged[:cap]


def _line(p: api.Problem) -> int:
    return p.line or 0


def compute_overlap(train: ScanResult, valid: ScanResult, max_pairs: int) -> api.OverlapReport:
    return overlap_report(train.prompts or [], train.prompt_lines, valid.prompts or [], valid.prompt_lines,
                          max_pairs=max_pairs)


def stored_overlap(paths: Paths, train: dict[str, Any], valid: dict[str, Any]) -> api.OverlapReport:
    """Overlap of two stored files, cached on disk (files are immutable, so the answer never changes)."""
    cache = paths.files / f"overlap-v{ALGORITHM_VERSION}-{train['sha256'][:20]}-{valid['sha256'][:20]}.json"
    with contextlib.suppress(OSError, ValueError):
        return api.OverlapReport.model_validate_json(cache.read_text())
    t = scan_file(str(_stored_data_path(train)), train["filename"], collect_prompts=True)
    v = scan_file(str(_stored_data_path(valid)), valid["filename"], collect_prompts=True)
    report = compute_overlap(t, v, DEFAULT_MAX_PROBLEMS)
    tmp = ""
    try:  # only a cache: a full disk costs a rescan next time, never the answer
        fd, tmp = tempfile.mkstemp(dir=paths.files, prefix=".overlap-")
        with os.fdopen(fd, "w") as out:
            out.write(report.model_dump_json())
        os.replace(tmp, cache)
    except OSError:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return report


def check_job_files(store: Store, paths: Paths, training_file_id: str, validation_file_id: str | None,
                    grader: dict[str, Any], allow_overlap: bool = False) -> ApiError | None:
    """Why a job cannot use these files (bad rows, grader fields missing, overlap), or None."""
    fields = grader_item_fields(grader, param="method.reinforcement.grader")
    rows = [("training_file", get_file(store, training_file_id))]
    if validation_file_id:
        rows.append(("validation_file", get_file(store, validation_file_id)))
    for param, row in rows:
        report = stored_report(row)
        if report.errors:
            return invalid_file(report, f"The {param.replace('_', ' ')} {row['id']} ({row['filename']})",
                                param=param)
    for param, row in rows:
        if not fields:
            break
        report = stored_report(row, fields)
        missing = [p for p in report.problems if p.code == "missing_item_field"]
        if missing:
            used = ", ".join("{{item." + f + "}}" for f in sorted({p.field for p in missing if p.field}))
            return bad_request(
                f"The grader uses {used}, "
                f"but {report.errors} row(s) of the {param.replace('_', ' ')} {row['id']} ({row['filename']}) "
                f"lack it: {first_problems(missing)}", param="method.reinforcement.grader",
                code="missing_item_field")
    if validation_file_id and not allow_overlap:
        overlap = stored_overlap(paths, rows[0][1], rows[1][1])
        if overlap.exact:
            pairs = ", ".join(f"validation line {p.valid_line} = training line {p.train_line}"
                              for p in overlap.exact_pairs[:FIRST_PROBLEMS])
            more = f" (and {overlap.exact - FIRST_PROBLEMS} more)" if overlap.exact > FIRST_PROBLEMS else ""
            return bad_request(
                f"{overlap.exact} validation row(s) also occur in the training file: {pairs}{more}. "
                "Validation must be held-out data (pass allow_overlap / --allow-overlap to run anyway).",
                param="validation_file", code="overlap")
    return None


# ------------------------------------------------------------------------------------ tokens


def token_stats(paths: Paths, model_id: str, data_path: str) -> dict[str, float]:
    """Prompt lengths in the model's tokens over an even sample of rows.

    Counted by `python -m daemon.worker.tokens` in a subprocess (it loads transformers; the daemon never does).
    """
    result = run_module_sync("daemon.worker.tokens", [], json.dumps({"model": model_id, "path": data_path}).encode(),
                             paths.home, TOKENS_TIMEOUT_S, param="tokenizer_model", code="tokenizer_not_found")
    return {str(k): float(v) for k, v in (result.get("prompt_tokens") or {}).items()}


# ------------------------------------------------------------------------------------ rows


def _open_row_index(row: dict[str, Any]) -> row_index.RowIndex:
    """The row index, rebuilt when missing or stale; 409 if the stored copy no longer matches its sha256."""
    data = _stored_data_path(row)
    try:
        return row_index.open_index(data, row["sha256"])
    except row_index.IndexError_:
        pass
    offsets, lines, sha = row_index.scan_offsets(data)
    if sha != row["sha256"]:
        raise ApiError(409, f"The stored copy of {row['id']} ({data}) is corrupt or truncated: its sha256 is "
                       f"{sha[:16]}…, not {row['sha256'][:16]}…. Import the original file again.",
                       param="file_id", code="file_corrupt")
    row_index.write_index(data, sha, offsets, lines)
    return row_index.open_index(data, row["sha256"])


def rows_page(store: Store, file_id: str, offset: int = 0, limit: int = 50) -> api.FileRowsPage:
    if offset < 0:
        raise bad_request("offset must be >= 0", param="offset")
    if not 1 <= limit <= MAX_PAGE:
        raise bad_request(f"limit must be between 1 and {MAX_PAGE}", param="limit")
    row = get_file(store, file_id)
    idx = _open_row_index(row)
    starts, lines = idx.slice(offset, limit)
    data: list[api.FileRow] = []
    with open(row["path"], "rb") as f:
        for start, line in zip(starts.tolist(), lines.tolist(), strict=True):
            f.seek(start)
            raw = f.readline()
            data.append(_file_row(line, raw, start))
    return api.FileRowsPage(file_id=file_id, offset=offset, limit=limit, total_rows=idx.rows, data=data)


def _file_row(line: int, raw: bytes, start: int) -> api.FileRow:
    if not raw:
        return api.FileRow(line=line, error=f"the stored file ends before byte {start} (truncated?)")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        return api.FileRow(line=line, raw=raw.decode("utf-8", "replace").strip(),
                           error=f"not UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line")
    if deeper_than(text, MAX_ROW_DEPTH):
        return api.FileRow(line=line, raw=text[:1000], error=depth_message(MAX_ROW_DEPTH))
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        return api.FileRow(line=line, raw=text, error=f"not valid JSON: {getattr(e, 'msg', e)}")
    if not isinstance(obj, dict):
        return api.FileRow(line=line, raw=text, error="not a JSON object")
    return api.FileRow(line=line, data=obj)
