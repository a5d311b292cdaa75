"""Real GRPO + LoRA jobs on the built-in model through a real daemon: what a user checks after a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from daemon import api
from daemon import metrics as registry
from tests.support.daemon_proc import wait_until
from tests.training.conftest import ARITH, wait_status, wait_step, worker_log

S = api.JobStatus
TERMINAL = {S.succeeded, S.failed, S.cancelled}


@pytest.mark.slow
def test_job_records_metrics_samples_validation_checkpoints_and_exports(daemon, start_job, rft_home, tmp_path):
    c = daemon.client()
    job = start_job(max_steps=4, eval_interval=2)
    done = wait_status(c, job.id, TERMINAL)
    assert done.status is S.succeeded, worker_log(rft_home, job.id)
    assert done.fine_tuned_model and job.id in done.fine_tuned_model

    metrics = c.metrics(job.id).data
    assert [m.step for m in metrics] == [1, 2, 3, 4]
    for m in metrics:
        for key in ("reward", "reward_std", "loss", "grad_norm", "learning_rate", "kl", "entropy",
                    "completions/mean_length", "frac_reward_zero_std", "rewards/arithmetic/mean",
                    "tokens_per_s", "sampling_s", "training_s", "grading_s", "grader/errored"):
            assert key in m.values, f"step {m.step} lacks {key}"
        assert 0.0 <= m.values["reward"] <= 1.0
    # the multi grader's sub-graders are logged per step too
    assert "rewards/exact/mean" in metrics[0].values and "rewards/close/mean" in metrics[0].values
    # every key the worker wrote is in the metric registry (docs/metrics.md)
    assert registry.unregistered({k for m in metrics for k in m.values}) == []

    samples = c.samples(job.id, limit=1000).data
    assert samples and {s.step for s in samples} == {1, 2, 3, 4}
    assert all(s.prompt.endswith("=") and set(s.sub_rewards) == {"exact", "close"} for s in samples)

    page = c.validation(job.id, step=0)
    assert page.steps == [0, 2, 4]
    assert len(page.data) == 8
    row = page.data[0]
    assert row.prompt.endswith("=") and row.reference and row.reference.isdigit()
    assert set(row.sub_rewards) == {"exact", "close"}
    # same rows at every validation, so base and checkpoint compare row by row
    assert [r.row_index for r in c.validation(job.id, step=4).data] == [r.row_index for r in page.data]
    assert done.progress.valid_reward_base is not None

    events = c.list_events(job.id, limit=200).data
    metric_events = [e for e in events if e.type == "metrics"]
    assert {e.data["step"] for e in metric_events} == {0, 2, 4}  # validations; per-step progress is in metrics
    assert all("valid_reward_mean" in e.data["scores"] for e in metric_events)
    assert registry.unregistered({k for e in metric_events for k in e.data["scores"]}) == []

    ckpts = c.list_checkpoints(job.id).data
    assert sorted(ck.step_number for ck in ckpts) == [2, 4]
    for ck in ckpts:
        assert Path(ck.path).name == f"step-{ck.step_number}"
        assert (Path(ck.path) / "adapter_model.safetensors").is_file()
        assert (Path(ck.path) / "optimizer.pt").is_file() and (Path(ck.path) / "trainer_state.json").is_file()
        assert ck.metrics.valid_reward_mean is not None and ck.metrics.train_reward_mean is not None

    out = tmp_path / "export"
    result = c.export_job(job.id, {"output_dir": str(out), "checkpoint": "latest", "merged": True})
    assert result.step == 4 and Path(result.adapter_dir, "adapter_config.json").is_file()
    assert result.chosen_because == "latest" and result.model_card == str(out / "README.md")
    for where in (out, Path(result.adapter_dir), Path(result.merged_dir)):
        card = (where / "README.md").read_text()
        for text in (job.id, "builtin:tiny-arith", "step 4 of 4; latest", "(multi)", "| learning_rate |",
                     f"Base model (step 0): {done.progress.valid_reward_base:.3f} → this checkpoint: "):
            assert text in card, (where, text, card)
        assert "More Information Needed" not in card and str(rft_home) not in card  # not PEFT's template
    best = c.export_job(job.id, {"output_dir": str(tmp_path / "best")})  # the default: best by validation
    assert best.chosen_because.startswith("best validation reward") and best.merged_dir is None
    assert best.step == next(ck.step_number for ck in ckpts if "best #1" in ck.kept_because)
    # the exported adapter loads with PEFT on the base model and generates; the merged model loads alone
    script = textwrap.dedent(f"""
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from daemon.models import load_model
        from daemon.paths import Paths
        base = load_model("builtin:tiny-arith", Paths.resolve())
        tok = AutoTokenizer.from_pretrained({result.adapter_dir!r})
        for model in (PeftModel.from_pretrained(base, {result.adapter_dir!r}),
                      AutoModelForCausalLM.from_pretrained({result.merged_dir!r})):
            enc = tok(["12+34="], return_tensors="pt", add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
            text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            assert text and all(ch.isdigit() for ch in text), text
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                          env={**os.environ}, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]

    from daemon.client import DaemonError

    with pytest.raises(DaemonError) as err:
        c.export_job(job.id, {"output_dir": str(tmp_path / "x"), "checkpoint_step": 3})
    assert "no kept checkpoint at step 3" in str(err.value)


@pytest.mark.slow
def test_pause_then_resume_continues_with_every_step_once(daemon, start_job, rft_home):
    c = daemon.client()
    job = start_job(max_steps=10, eval_interval=5)
    wait_step(c, job.id, 2)
    c.pause_job(job.id)
    paused = wait_status(c, job.id, {S.paused} | TERMINAL)
    assert paused.status is S.paused, worker_log(rft_home, job.id)
    at_pause = paused.progress.step
    assert 2 <= at_pause < 10
    ckpts = c.list_checkpoints(job.id).data
    assert ckpts and max(ck.step_number for ck in ckpts) == at_pause

    c.resume_job(job.id)
    done = wait_status(c, job.id, TERMINAL)
    assert done.status is S.succeeded, worker_log(rft_home, job.id)
    steps = [m.step for m in c.metrics(job.id).data]
    assert steps == list(range(1, 11)), steps
    # optimizer state carried over: the learning-rate schedule continues instead of restarting
    lrs = [m.values["learning_rate"] for m in c.metrics(job.id).data]
    assert lrs == sorted(lrs, reverse=True) and lrs[at_pause] < lrs[0]
    assert c.validation(job.id).steps[0] == 0 and c.validation(job.id).steps.count(0) == 1
    assert "resuming from" in worker_log(rft_home, job.id) or any(
        "resuming from" in e.message for e in c.list_events(job.id, limit=200).data)


@pytest.mark.slow
def test_cancel_stops_at_a_step_boundary(daemon, start_job, rft_home):
    c = daemon.client()
    job = start_job(max_steps=500, eval_interval=100)
    wait_step(c, job.id, 1)
    c.cancel_job(job.id)
    assert c.get_job(job.id).status is S.cancelled  # answered at once; the worker stops behind it
    done = wait_until(lambda: (j := c.get_job(job.id)).worker is None and j, 60, what="the worker to stop")
    assert done.status is S.cancelled
    assert done.progress.step < 500 and done.error is None
    row_outcome = [e.message for e in c.list_events(job.id, limit=200).data]
    assert "Job cancelled; stopping the worker" in row_outcome
    assert any(m.startswith("Worker pid") and m.endswith("stopped (exit code 0)") for m in row_outcome), row_outcome
    assert "SIGKILL" not in " ".join(row_outcome), "the worker should stop by itself, not need SIGKILL"


@pytest.mark.slow
def test_worker_killed_with_sigkill_fails_with_its_reason(daemon, start_job):
    c = daemon.client()
    job = start_job(max_steps=500, eval_interval=100)
    running = wait_step(c, job.id, 1)
    os.killpg(running.worker["pgid"], signal.SIGKILL)
    done = wait_status(c, job.id, TERMINAL, timeout=60)
    assert done.status is S.failed
    assert done.error is not None and "SIGKILL" in done.error.message


@pytest.mark.slow
def test_grader_that_always_raises_counts_errors_and_the_job_finishes(daemon, start_job, rft_home):
    grader = {"type": "python", "name": "broken",
              "source": "def grade(sample, item):\n    raise ValueError('broken on purpose')\n"}
    c = daemon.client()
    job = start_job(grader=grader, max_steps=2, eval_interval=2, eval_samples=4)
    done = wait_status(c, job.id, TERMINAL)
    assert done.status is S.succeeded, worker_log(rft_home, job.id)
    for m in c.metrics(job.id).data:
        assert m.values["reward"] == 0.0
        assert m.values["grader/errored"] == m.values["grader/graded"] > 0
        assert m.values.get("grader/errors/python_grader_runtime_error", 0) > 0
    rows = c.validation(job.id, step=0).data
    assert rows and all(r.reward == 0.0 and r.errors.get("python_grader_runtime_error") for r in rows)


@pytest.mark.slow
def test_two_process_torchrun_job_pauses_resumes_and_logs_each_step_once(daemon, start_job, rft_home):
    c = daemon.client()
    job = start_job(max_steps=6, eval_interval=3, num_processes=2)
    wait_step(c, job.id, 1, timeout=300)
    c.pause_job(job.id)
    paused = wait_status(c, job.id, {S.paused} | TERMINAL)
    assert paused.status is S.paused, worker_log(rft_home, job.id)
    c.resume_job(job.id)
    done = wait_status(c, job.id, TERMINAL, timeout=300)
    assert done.status is S.succeeded, worker_log(rft_home, job.id)
    assert "nproc_per_node=2" in worker_log(rft_home, job.id)
    steps = c.metrics(job.id).data
    assert [m.step for m in steps] == [1, 2, 3, 4, 5, 6]
    # each rank grades its half of a step's 4 x 4 completions; rank 0 reports both halves (not only its 8)
    assert [m.values["grader/graded"] for m in steps] == [16.0] * 6, [m.values for m in steps[:1]]
    per_step = Counter(s.step for s in c.samples(job.id, limit=1000).data)
    assert sorted(per_step) == [1, 2, 3, 4, 5, 6] and all(n <= 8 for n in per_step.values()), per_step
    assert c.validation(job.id).steps[0] == 0 and c.validation(job.id).steps[-1] == 6
    assert max(ck.step_number for ck in c.list_checkpoints(job.id).data) == 6


@pytest.mark.slow
def test_preflight_reports_signal_and_verdict(daemon, arith_grader):
    c = daemon.client()
    train = c.import_file(str(ARITH / "train.jsonl")).id
    report = c.preflight({"model": "builtin:tiny-arith", "training_file": train, "seed": 3, "rows": 6,
                          "completions_per_row": 4,
                          "method": {"type": "reinforcement", "reinforcement": {"grader": arith_grader}}})
    assert report.rows == 6 and report.completions_per_row == 4
    assert sum(n for _, n in report.reward_histogram) == 24
    assert 0.0 <= report.reward_mean <= 1.0 and 0 <= report.zero_signal_rows <= 6
    assert report.grader_error_rate == 0.0
    assert report.longest_total_tokens == report.longest_prompt_tokens + report.longest_completion_tokens or \
        report.longest_total_tokens <= report.longest_prompt_tokens + report.longest_completion_tokens
    assert report.verdict
    # the signal map: one entry per sampled row, and the no-signal rows are the ones counted above
    assert len(report.signal_map) == 6 and all(len(r.rewards) == 4 for r in report.signal_map)
    assert report.no_signal_rows == [r.row for r in report.signal_map if r.spread == 0]
    assert len(report.no_signal_rows) == report.zero_signal_rows
    # the arithmetic grader pays for the right sum only: no degenerate answer reaches the base model
    assert {p.name for p in report.probes} >= {"empty", "repetition", "prompt_echo", "item_json", "dont_know",
                                               "wrong_answer"}
    assert report.gameability_warning is None or report.reward_mean == 0


@pytest.mark.slow
def test_preflight_flags_a_grader_that_rewards_any_non_empty_output(daemon, rft_home, tmp_path):
    c = daemon.client()
    train = c.import_file(str(ARITH / "train.jsonl")).id
    grader = {"type": "python", "name": "non_empty",
              "source": "def grade(sample, item):\n    return 1.0 if sample['output_text'].strip() else 0.0\n"}
    report = c.preflight({"model": "builtin:tiny-arith", "training_file": train, "seed": 3, "rows": 4,
                          "completions_per_row": 2,
                          "method": {"type": "reinforcement", "reinforcement": {"grader": grader}}})
    fooled = {p.name for p in report.probes if p.reaches_base}
    assert {"repetition", "prompt_echo", "dont_know"} <= fooled and "empty" not in fooled
    assert report.gameability_warning and "can be fooled" in report.gameability_warning
    assert report.verdict.startswith(report.gameability_warning)
    # the CLI shows the probes and the warning
    from tests.daemon.test_cli import cli

    grader_file = tmp_path / "non_empty.py"
    grader_file.write_text(grader["source"])
    out = cli(rft_home, "jobs", "preflight", "--model", "builtin:tiny-arith", "-t", str(ARITH / "train.jsonl"),
              "-g", str(grader_file), "--rows", "2", "--completions", "2", "--seed", "3", timeout=300).stdout
    assert "REACHES BASE" in out and "WARNING: The grader can be fooled" in out and "no-signal rows" in out


def test_preflight_with_an_unknown_file_is_a_clear_error(daemon, arith_grader):
    from daemon.client import DaemonError

    with pytest.raises(DaemonError) as err:
        daemon.client().preflight({"model": "builtin:tiny-arith", "training_file": "file-nope",
                                   "method": {"type": "reinforcement", "reinforcement": {"grader": arith_grader}}})
    assert err.value.status_code == 400 and "file-nope" in str(err.value)


@pytest.mark.slow
def test_rows_with_tools_train_through_text_prompts(daemon, arith_grader, rft_home, tmp_path):
    """OpenAI rows may carry `tools`: they reach the chat template, and GRPO trains on the rendered prompts."""
    import json

    tool = {"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}
    rows = [json.loads(line) for line in (ARITH / "train.jsonl").read_text().splitlines()[:32]]
    train = tmp_path / "train_tools.jsonl"
    train.write_text("".join(json.dumps({**r, "tools": [tool]}) + "\n" for r in rows))
    c = daemon.client()
    job = c.create_job({"model": "builtin:tiny-arith", "training_file": c.upload_file(str(train)).id,
                        "validation_file": c.import_file(str(ARITH / "valid.jsonl")).id, "seed": 3,
                        "method": {"type": "reinforcement", "reinforcement": {
                            "grader": arith_grader, "hyperparameters": {
                                "batch_size": 4, "num_generations": 4, "eval_samples": 4, "max_steps": 2}}}})
    done = wait_status(c, job.id, TERMINAL)
    assert done.status is S.succeeded, worker_log(rft_home, job.id)
    assert [m.step for m in c.metrics(job.id).data] == [1, 2]
    assert all(s.prompt.endswith("=") for s in c.samples(job.id).data)
