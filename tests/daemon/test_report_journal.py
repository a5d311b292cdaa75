"""The HTTP reporter's journal on real files: a crash mid-write, acknowledgement, compaction, one job per journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import api
from daemon.worker import journal as journal_module
from daemon.worker.journal import Journal


def _step(n: int) -> api.ReportStep:
    return api.ReportStep(step=n, values={"reward": n / 10})


def test_a_torn_last_line_is_cut_and_the_unacknowledged_records_come_back_in_order(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j", "ftjob-a")
    ids = [j.append(_step(n)).id for n in range(1, 6)]
    assert len(set(ids)) == 5 and all(ids)
    j.ack(2)
    j.close()
    with open(tmp_path / "j" / "records.jsonl", "ab") as f:
        f.write(b'{"kind": "step", "step": 6, "val')  # the worker died in the middle of a write
    again = Journal(tmp_path / "j", "ftjob-a")
    assert [r.step for r in again.pending if isinstance(r, api.ReportStep)] == [3, 4, 5]
    assert [r.id for r in again.pending] == ids[2:]  # the same ids: the daemon recognizes a replay
    assert again.last_step == 5
    new = again.append(_step(6))
    assert new.id not in ids  # a new writer's ids never collide with the old one's
    again.ack(4)
    assert len(again) == 0
    again.close()
    assert Journal(tmp_path / "j", "ftjob-a").pending == []


def test_an_emptied_journal_still_knows_its_last_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "COMPACT_BYTES", 100)
    j = Journal(tmp_path / "j", "ftjob-a")
    for n in range(1, 4):
        j.append(_step(n))
    j.append(api.ReportValidation(step=2, rows=[]))
    j.ack(4)
    j.close()
    assert (tmp_path / "j" / "records.jsonl").stat().st_size == 0
    again = Journal(tmp_path / "j", "ftjob-a")
    assert again.pending == [] and again.last_step == 3 and again.validated_steps == {2}


def test_a_journal_refuses_another_jobs_records(tmp_path: Path) -> None:
    Journal(tmp_path / "j", "ftjob-a").close()
    with pytest.raises(RuntimeError, match="belongs to job ftjob-a"):
        Journal(tmp_path / "j", "ftjob-b")


def test_a_nodes_launcher_sees_what_only_its_scratch_dir_holds(tmp_path: Path) -> None:
    """executors/ray_launch.undelivered reads the journal's files without the worker's imports: records past
    `acked`, in every rank's journal, unless the reporter uploaded exactly this journal to the storage."""
    from daemon.executors.ray_launch import undelivered

    scratch = tmp_path / "scratch"
    assert undelivered(str(scratch)) == 0
    j = Journal(scratch / "report-journal", "ftjob-a")
    for n in range(1, 5):
        j.append(_step(n))
    j.ack(1)
    assert undelivered(str(scratch)) == 3
    (scratch / "report-journal" / "uploaded").write_text(str((scratch / "report-journal" / "records.jsonl")
                                                            .stat().st_size))
    assert undelivered(str(scratch)) == 0  # the daemon replays these from the storage
    j.append(_step(5))  # written after the upload: only here
    assert undelivered(str(scratch)) == 4
    j.ack(4)
    assert undelivered(str(scratch)) == 0
    other = Journal(scratch / "report-journal-rank1", "ftjob-a")
    other.append(_step(1))
    assert undelivered(str(scratch)) == 1
    j.close()
    other.close()
