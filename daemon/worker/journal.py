"""The HTTP reporter's on-disk journal: every record is fsync'd here before anyone tries to send it.

`records.jsonl` holds the records in the order the worker made them, one JSON line each; `acked` holds how
many of them the daemon has confirmed (written atomically). A worker killed at any point loses nothing: the
next reporter on the same scratch directory sends what is past `acked` again. A record the daemon applied
but whose answer was lost is sent twice -- the daemon ignores the second copy by its id (idempotent appends),
which is also what makes compaction safe (`acked` is reset before the file is emptied).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from pathlib import Path

from pydantic import TypeAdapter

from daemon import api

RECORD = TypeAdapter(api.ReportRecord)
COMPACT_BYTES = 16 * 1024 * 1024  # an all-acked journal over this size is emptied
UPLOADED = "uploaded"  # the size of records.jsonl the reporter last copied to the storage (URL storage)


def _read_acked(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def undelivered(directory: str | os.PathLike[str]) -> int:
    """Records in a journal directory that the daemon has not confirmed and that the last upload to the storage
    does not hold either: what only this disk has. Reads the files without opening the journal (a node's
    launcher asks once the worker is gone)."""
    d = Path(directory)
    try:
        data = (d / "records.jsonl").read_bytes()
    except FileNotFoundError:
        return 0
    pending = max(0, data.count(b"\n") - _read_acked(d / "acked"))
    try:
        uploaded = (d / UPLOADED).read_text().strip()
    except FileNotFoundError:
        uploaded = ""
    return 0 if pending and uploaded == str(len(data)) else pending


class Journal:
    """Append-only record log with an acknowledged prefix; thread-safe."""

    def __init__(self, directory: str | os.PathLike[str], job_id: str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        owner = self.dir / "job"
        if not owner.exists():
            owner.write_text(job_id)
        elif owner.read_text().strip() != job_id:  # records carry no job id: never send them to another job
            raise RuntimeError(f"the report journal in {self.dir} belongs to job {owner.read_text().strip()}, "
                               f"not {job_id}; give each job its own scratch directory (RFT_WORK_DIR)")
        self.path = self.dir / "records.jsonl"
        self.acked_path = self.dir / "acked"
        self.rejected_path = self.dir / "rejected.jsonl"
        self._lock = threading.Lock()
        self._nonce = secrets.token_hex(6)  # this reporter's ids: unique per job across attempts and restarts
        self._seq = 0
        self._total = 0  # lines in records.jsonl
        self.history_path = self.dir / "history.json"
        # what this scratch dir's workers reported, delivered or not (a resubmission resumes after it)
        self.last_step: int | None = None
        self.validated_steps: set[int] = set()
        self._load_history()
        self.pending: list[api.ReportRecord] = self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _load(self) -> list[api.ReportRecord]:
        """The records past `acked` (a torn last line -- a crash mid-write -- is cut off)."""
        acked = _read_acked(self.acked_path)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        good: list[bytes] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError:
                break  # torn tail: never acked, never sent complete; the rest is cut below
            good.append(line)
        kept = b"".join(x + b"\n" for x in good)
        if kept != data:
            with open(self.path, "wb") as f:
                f.write(kept)
                f.flush()
                os.fsync(f.fileno())
        self._total = len(good)
        records = [RECORD.validate_json(line) for line in good]
        for record in records:
            self._remember(record)
        return records[acked:]

    def _remember(self, record: api.ReportRecord) -> None:
        if isinstance(record, api.ReportStep):
            self.last_step = max(record.step, self.last_step or 0)
        elif isinstance(record, api.ReportValidation):
            self.validated_steps.add(record.step)

    def _load_history(self) -> None:
        try:
            data = json.loads(self.history_path.read_text())
        except (FileNotFoundError, ValueError):
            return
        self.last_step = data.get("last_step")
        self.validated_steps = set(data.get("validated_steps") or [])

    def _save_history(self) -> None:
        tmp = self.history_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"last_step": self.last_step, "validated_steps": sorted(self.validated_steps)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.history_path)

    def append(self, record: api.ReportRecord) -> api.ReportRecord:
        """Give the record its id, write it durably, and queue it for sending."""
        with self._lock:
            if record.id is None:
                self._seq += 1
                record = record.model_copy(update={"id": f"{self._nonce}-{self._seq}"})
            line = record.model_dump_json(exclude_none=True).encode() + b"\n"
            os.write(self._fd, line)
            os.fsync(self._fd)
            self._total += 1
            self._remember(record)
            self.pending.append(record)
        return record

    def peek(self, max_records: int, max_bytes: int) -> list[api.ReportRecord]:
        """The oldest unsent records, at most `max_records` and about `max_bytes` of JSON (at least one)."""
        with self._lock:
            batch: list[api.ReportRecord] = []
            size = 0
            for record in self.pending[:max_records]:
                n = len(record.model_dump_json(exclude_none=True))
                if batch and size + n > max_bytes:
                    break
                batch.append(record)
                size += n
            return batch

    def ack(self, n: int) -> None:
        """The daemon has the first `n` pending records: move the acknowledged prefix past them."""
        with self._lock:
            del self.pending[:n]
            if not self.pending and self._total and os.fstat(self._fd).st_size > COMPACT_BYTES:
                self._save_history()  # what the emptied file knew
                self._write_acked(0)  # first: a crash after this only replays what the daemon ignores
                os.ftruncate(self._fd, 0)
                os.fsync(self._fd)
                self._total = 0
                return
            self._write_acked(self._total - len(self.pending))

    def reject(self, record: api.ReportRecord, reason: str) -> None:
        """A record the daemon refuses as invalid (never deliverable): kept aside, with why, and skipped."""
        with open(self.rejected_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"reason": reason, "record": record.model_dump(mode="json")}) + "\n")
        self.ack(1)

    def _write_acked(self, n: int) -> None:
        tmp = self.acked_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, str(n).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.acked_path)

    def mark_uploaded(self, size: int) -> None:
        """The storage now holds the first `size` bytes of records.jsonl (see `undelivered`)."""
        (self.dir / UPLOADED).write_text(str(size))

    def __len__(self) -> int:
        with self._lock:
            return len(self.pending)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
