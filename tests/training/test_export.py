"""Export's pieces without torch: which checkpoint it takes, the model card it writes, the model it loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon import api
from daemon.errors import ApiError
from daemon.export_card import choose_checkpoint, grader_summary, model_card, parse_choice
from daemon.models import model_ref
from daemon.store import checkpoint_object, kept_because
from daemon.worker.export import copy_adapter

JOB = "ftjob-0123456789abcdef01234567"


def checkpoints(rewards: dict[int, float | None]) -> list:
    """Kept checkpoints as the store answers them (newest first, with the store's kept_because)."""
    rows: list[dict[str, Any]]
    rows = [{"id": f"ftckpt-{step:06d}", "job_id": JOB, "step": step, "created_at": 0, "path": f"/x/step-{step}",
             "metrics": json.dumps({"valid_reward_mean": r}), "valid_reward_mean": r, "deleted_at": None}
            for step, r in sorted(rewards.items(), reverse=True)]
    reasons = kept_because(rows)
    return [checkpoint_object(r, reasons[r["id"]]) for r in rows]


def test_model_ref_keeps_the_revision_of_a_hub_model() -> None:
    assert model_ref({"id": "org/model", "source": "hub", "revision": "0a1b2c3"}) == "org/model@0a1b2c3"
    assert model_ref({"id": "org/model", "source": "hub", "revision": "main"}) == "org/model"
    assert model_ref({"id": "builtin:tiny-arith", "source": "builtin", "revision": "0.1.0"}) == "builtin:tiny-arith"
    assert model_ref({"id": "/models/m", "source": "local", "revision": None}) == "/models/m"
    assert model_ref("org/model@v2") == "org/model@v2"


def test_best_latest_or_a_step_by_the_stores_rule() -> None:
    ckpts = checkpoints({2: 0.5, 4: 0.7, 6: 0.6, 8: 0.55})
    best, why = choose_checkpoint(JOB, ckpts, parse_choice(None, None))
    assert best.step_number == 4 and why == "best validation reward (0.700 at step 4)"
    latest, why = choose_checkpoint(JOB, ckpts, parse_choice("latest", None))
    assert latest.step_number == 8 and why == "latest"
    assert choose_checkpoint(JOB, ckpts, parse_choice("6", None))[0].step_number == 6
    assert choose_checkpoint(JOB, ckpts, parse_choice(None, 2))[0].step_number == 2
    with pytest.raises(ApiError) as err:
        choose_checkpoint(JOB, ckpts, parse_choice("3", None))
    assert err.value.param == "checkpoint" and "kept: [2, 4, 6, 8]" in err.value.message
    with pytest.raises(ApiError) as err:
        parse_choice("newest", None)
    assert err.value.status == 400 and err.value.param == "checkpoint"
    unscored, why = choose_checkpoint(JOB, checkpoints({3: None, 5: None}), "best")
    assert unscored.step_number == 5 and why.startswith("latest")


def test_model_card_says_what_was_trained_from_what_and_how_well() -> None:
    grader = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "operation": "eq"}
    hp = {"learning_rate": 0.001, "max_steps": 8, "eval_samples": 8, "n_epochs": 1, "batch_size": 4,
          "eval_interval": 4, "seed": 7, "num_generations": 4, "max_completion_length": 8}
    snapshot = api.JobSnapshot.model_validate({
        "model": {"id": "org/model", "source": "hub", "revision": "0a1b2c3"}, "grader": grader,
        "hyperparameters": hp, "seed": 7, "versions": {"trl": "1.0"},
        "training_file": {"id": "file-1", "filename": "train.jsonl", "rows": 40, "sha256": "ab" * 32}})
    row = {"id": JOB, "model": "org/model@0a1b2c3", "status": "succeeded", "total_steps": 8,
           "valid_reward_base": 0.35, "fine_tuned_model": f"ft:org/model:local:{JOB}", "seed": 7}
    ckpt = checkpoints({4: 0.62, 8: 0.5})[1]
    card = model_card(row, snapshot, ckpt, "best validation reward (0.620 at step 4)", exported_at=0)
    assert card.startswith("---\nlibrary_name: peft") and "base_model: org/model\n" in card
    for text in (JOB, "`org/model` (revision `0a1b2c3`)", "step 4 of 8; best validation reward",
                 "1970-01-01 00:00 UTC", "`exact` (string_check): `{{sample.output_text}}` eq `{{item.answer}}`",
                 "Base model (step 0): 0.350 → this checkpoint: 0.620 (+0.270)", "| learning_rate | 0.001 |",
                 'revision="0a1b2c3"', "train.jsonl (40 rows"):
        assert text in card, text
    assert ckpt.path not in card and "More Information Needed" not in card
    multi = {"type": "multi", "calculate_output": "0.7 * a + 0.3 * b",
             "graders": {"a": {"type": "string_check"}, "b": {"type": "text_similarity"}}}
    assert grader_summary(multi) == "`0.7 * a + 0.3 * b` over a (string_check), b (text_similarity)"


def test_exported_adapter_names_the_base_revision(tmp_path: Path) -> None:
    ckpt = tmp_path / "step-4"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/model", "revision": None}))
    (ckpt / "README.md").write_text("PEFT template: [More Information Needed]")
    files = copy_adapter(ckpt, tmp_path / "out", "org/model@0a1b2c3")
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["revision"] == "0a1b2c3" and config["base_model_name_or_path"] == "org/model"
    assert not (tmp_path / "out" / "README.md").exists() and all(not f.endswith("README.md") for f in files)


@pytest.mark.slow
def test_cli_export_names_the_checkpoint_and_writes_the_card(fake_worker_daemon, rft_home: Path,
                                                             tmp_path: Path) -> None:
    """`rft-tui jobs export --checkpoint latest|STEP` (and the default, best) say what they took and why."""
    import os
    import subprocess
    import sys

    from tests.support.daemon_proc import REPO, wait_until
    from tests.support.jobs import job_request, make_files

    with fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=6, eval_interval=3))
        wait_until(lambda: c.get_job(job.id).status.value == "succeeded", 60, what="the job")
        ckpts = c.list_checkpoints(job.id).data

    def export(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "rft_tui", "jobs", "export", job.id, *args],
                             env={**os.environ, "RFT_HOME": str(rft_home), "PYTHONPATH": str(REPO)},
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    best = next(ck for ck in ckpts if "best #1" in ck.kept_because)
    said = export(str(tmp_path / "best"))
    assert f"(step {best.step_number}: best validation reward (" in said and "model card:" in said
    card = (tmp_path / "best" / "README.md").read_text()
    assert job.id in card and "builtin:tiny-arith" in card and "`exact` (string_check)" in card
    assert (tmp_path / "best" / "adapter" / "README.md").read_text() == card  # not PEFT's template
    assert "(step 6: latest)" in export(str(tmp_path / "latest"), "--checkpoint", "latest")
    assert "(step 3: step 3, as asked)" in export(str(tmp_path / "three"), "--checkpoint", "3")
