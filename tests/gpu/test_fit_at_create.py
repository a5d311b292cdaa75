"""Pre-flight's memory estimate and the create-time refusal, through a real daemon, its socket and the CLI.

A model too big for any machine's memory (a Llama-style 70B given as a config file only) is refused at create
with the breakdown, and created with `force`; the estimate alone comes back without loading anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.client import ApiRequestError
from tests.daemon.test_cli import cli
from tests.gpu.configs import LLAMA_8B, QWEN2_05B, write_model_dir
from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import EXACT_GRADER, job_request, make_files

LLAMA_70B = {**LLAMA_8B, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
             "num_attention_heads": 64}


def test_estimate_only_and_refusal_at_create(fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    client = fake_worker_daemon.client()
    train, valid = make_files(client, tmp_path)
    small = write_model_dir(tmp_path, "qwen2-0.5b", QWEN2_05B)
    huge = write_model_dir(tmp_path, "llama-70b", LLAMA_70B)

    report = client.preflight({**job_request(train, valid), "model": str(small), "estimate_only": True})
    e = report.memory_estimate
    assert report.estimate_only and e is not None and report.reward_mean is None
    assert e.parameters == 494_032_768 and e.trainable_params == 8_798_208 and e.device == "cpu"
    assert e.weights_bytes == 494_032_768 * 4  # CPU: fp32
    assert e.total_bytes == (e.weights_bytes + e.lora_bytes + e.optimizer_bytes
                             + max(e.activations_bytes, e.generation_bytes) + e.overhead_bytes)
    assert e.device_free_bytes and e.fits == (e.total_bytes <= e.device_free_bytes) and report.verdict == e.verdict

    # clearly too big: refused with the breakdown, nothing created
    before = len(client.list_jobs().data)
    with pytest.raises(ApiRequestError) as refused:
        client.create_job({**job_request(train, valid), "model": str(huge)})
    err = refused.value
    assert err.status_code == 400 and err.error.code == "does_not_fit" and err.param == "model"
    assert "weights" in err.error.message and "optimizer" in err.error.message and "force" in err.error.message
    assert len(client.list_jobs().data) == before
    # forced: created, and its snapshot keeps the estimate the worker will quote if it runs out of memory
    job = client.create_job({**job_request(train, valid), "model": str(huge), "force": True})
    snap = client.get_job(job.id).snapshot
    assert snap is not None and snap.memory_estimate is not None and snap.memory_estimate.clearly_does_not_fit
    client.cancel_job(job.id)
    # a hub model that is not in the local cache: no estimate, and it says why (the job is not refused for it)
    offline = client.preflight({**job_request(train, valid), "estimate_only": True})
    assert offline.memory_estimate is not None  # the built-in model always has one
    assert offline.memory_estimate.parameter_source == "built-in" and offline.memory_estimate.fits


@pytest.mark.slow
def test_cli_estimate_only_and_force(tmp_path: Path) -> None:
    home = tmp_path / "home"
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(EXACT_GRADER))
    from tests.support.jobs import arithmetic_rows, write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(10, 40))
    huge = write_model_dir(tmp_path, "llama-70b", LLAMA_70B)
    args = ["-m", str(huge), "-t", str(train), "-g", str(grader)]
    try:
        out = cli(home, "jobs", "preflight", *args, "--estimate-only")
        assert "70,553,706,496 parameters" in out.stdout and "does not fit" in out.stdout
        assert "suggestion" in out.stdout or "smaller model" in out.stdout
        refused = cli(home, "jobs", "create", *args, check=False)
        assert refused.returncode != 0 and "will not fit" in (refused.stdout + refused.stderr)
        created = cli(home, "jobs", "create", *args, "--force", "--json")
        job_id = json.loads(created.stdout)["id"]
        cli(home, "jobs", "cancel", job_id)
    finally:
        cli(home, "daemon", "stop", check=False)
