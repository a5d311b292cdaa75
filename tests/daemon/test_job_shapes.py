"""One typed shape per thing: the job snapshot, the resolved hyperparameters and the metric registry.

Jobs already in someone's rft.db must still load (an untouched row from rft-tui 0.1.0 is the fixture); the
daemon builds the typed snapshot in one place; every metric key a worker writes is in the registry; and the
CLI formats each metric the registry's way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from daemon import api, metrics
from daemon.hyperparams import DeviceInfo, resolve_hyperparameters
from daemon.paths import Paths
from daemon.store import Store
from daemon.worker.rewards import GraderReward
from tests.daemon.test_cli import cli
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import EXACT_GRADER, arithmetic_rows, job_request, make_files, write_jsonl

STORED = json.loads((Path(__file__).parent / "data" / "stored_job_0.1.0.json").read_text())


# ------------------------------------------------------------------ the snapshot and resolved hyperparameters


def test_a_snapshot_stored_before_the_typed_model_parses() -> None:
    snap = api.JobSnapshot.model_validate(STORED["snapshot"])
    assert snap.model.source == "builtin" and snap.model_ref() == "builtin:tiny-arith"
    assert snap.training_file.rows == 1500 and snap.validation_file and snap.validation_file.rows == 200
    hp = snap.hyperparameters
    assert (hp.batch_size, hp.num_generations, hp.learning_rate, hp.max_steps) == (16, 8, 0.001, 1)
    assert hp.completions_per_step == 128 and not hp.on_cuda
    assert snap.grader_name == "arithmetic" and snap.versions["trl"] == "1.16.0"
    # written back, it is the same JSON: nothing lost, nothing renamed (fields added since carry their defaults)
    written = json.loads(snap.model_dump_json())
    assert {k: v for k, v in written.items() if k in STORED["snapshot"]} | {
        "hyperparameters": {k: v for k, v in written["hyperparameters"].items()
                            if k in STORED["snapshot"]["hyperparameters"]}} == STORED["snapshot"]
    assert written["tools"] == {} and written["hyperparameters"]["max_episode_steps"] == 8  # added by agent RFT
    assert written["guardrails"] is None  # added by training health (None: the documented defaults)
    assert api.ResolvedHyperparameters.model_validate(STORED["resolved_hyperparameters"]) == hp


def test_older_and_partial_rows_get_defaults() -> None:
    """Fields a row lacks take the constant "auto" rule (the value that job ran with); a bare model string works."""
    old = dict(STORED["snapshot"], model="org/name@v2")
    old["hyperparameters"] = {k: v for k, v in old["hyperparameters"].items()
                              if k not in ("device", "reasoning_effort", "samples_per_step", "lora_r")}
    for k in ("versions", "device", "suffix", "created_at", "hyperparameters_requested", "validation_file"):
        old.pop(k)
    snap = api.JobSnapshot.model_validate(old)
    assert snap.model_ref() == "org/name@v2" and snap.model.source == "hub"
    hp = snap.hyperparameters
    assert (hp.device, hp.reasoning_effort, hp.samples_per_step, hp.lora_r) == ("cpu", "default", 8, 16)
    assert snap.validation_file is None and snap.versions == {}


def test_the_store_reads_an_old_row_typed_and_survives_one_that_does_not_fit(tmp_path: Path) -> None:
    store = Store(Paths.resolve(tmp_path).ensure().db)
    base = {"created_at": 1, "status": "succeeded", "model": STORED["model"], "training_file": "file-a",
            "seed": STORED["seed"], "method": json.dumps(STORED["method"]),
            "hyperparameters": json.dumps(STORED["hyperparameters"])}
    store.insert_job({**base, "id": STORED["id"], "snapshot": json.dumps(STORED["snapshot"]),
                      "resolved_hyperparameters": json.dumps(STORED["resolved_hyperparameters"])}, "created")
    store.insert_job({**base, "id": "ftjob-handmade", "snapshot": json.dumps({"grader": EXACT_GRADER}),
                      "resolved_hyperparameters": json.dumps({"batch_size": 4})}, "created")
    job = store.job_object(store.get_job_row(STORED["id"]) or {})
    assert job.snapshot and job.snapshot.model_ref() == "builtin:tiny-arith"
    assert job.resolved_hyperparameters and job.resolved_hyperparameters.eval_samples == 200
    assert job.hyperparameters == {"batch_size": 16, "learning_rate_multiplier": 1.0, "n_epochs": 4}
    odd = store.job_object(store.get_job_row("ftjob-handmade") or {})
    assert odd.snapshot is None and odd.resolved_hyperparameters is None
    # OpenAI's three then come from what was requested
    assert odd.hyperparameters == {"batch_size": 16, "learning_rate_multiplier": "auto", "n_epochs": "auto"}
    store.close()


def test_resolution_builds_the_typed_object_with_every_auto_replaced() -> None:
    hp = api.ReinforcementHyperparameters(batch_size=4, learning_rate_multiplier=2.0, lora_r=8, precision="auto")
    r = resolve_hyperparameters(hp, model="builtin:tiny-arith", train_rows=40, valid_rows=10, seed=3,
                                device=DeviceInfo("cuda", 2, None))
    assert isinstance(r, api.ResolvedHyperparameters)
    assert (r.batch_size, r.lora_r, r.lora_alpha) == (4, 8, 16)  # lora_alpha's rule follows the given lora_r
    assert r.learning_rate == pytest.approx(1e-3) and r.eval_samples == 10 and r.seed == 3
    assert (r.precision, r.num_processes, r.device) == ("bf16", 2, "cuda")
    # constant rules come from the model's defaults: one place for them
    assert r.beta == api.ResolvedHyperparameters.model_fields["beta"].default == 0.01
    assert set(r.model_dump()) >= set(api.HYPERPARAMETER_NAMES) | {"device"}
    assert not [k for k, v in r.model_dump().items() if v == "auto"]


def test_model_ref_keeps_a_pinned_revision_and_nothing_else() -> None:
    assert api.SnapshotModel(id="org/m", source="hub", revision="abc").ref() == "org/m@abc"
    assert api.SnapshotModel(id="org/m", source="hub", revision="main").ref() == "org/m"
    assert api.SnapshotModel(id="/models/m", source="local").ref() == "/models/m"
    assert api.SnapshotModel.of("builtin:tiny-arith").source == "builtin"
    assert api.SnapshotModel.of("org/m@abc") == api.SnapshotModel(id="org/m", source="hub", revision="abc")


@pytest.mark.slow
def test_the_daemon_builds_the_snapshot_once_and_serves_it_typed(fake_worker_daemon: DaemonProcess,
                                                                 tmp_path: Path) -> None:
    with fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=3, eval_interval=3, lora_r=4))
        full = c.get_job(job.id)
    assert full.snapshot and full.resolved_hyperparameters
    assert full.snapshot.hyperparameters == full.resolved_hyperparameters
    assert full.snapshot.hyperparameters.lora_alpha == 8 and full.snapshot.hyperparameters_requested["lora_r"] == 4
    assert full.snapshot.training_file.id == train and full.snapshot.training_file.sha256
    assert full.snapshot.model.revision and full.snapshot.seed == 7 == full.seed


# ------------------------------------------------------------------ the metric registry


def test_every_metric_key_a_real_training_step_wrote_is_registered() -> None:
    """The fixture's step-1 metrics are a real TRL 1.16 GRPO step through our worker (multi grader)."""
    assert metrics.unregistered(STORED["metrics_step_1"]) == []
    assert metrics.grader_of("rewards/exact/mean") == "exact"


def test_the_grader_metrics_the_worker_writes_are_registered() -> None:
    multi = {"type": "multi", "name": "arith", "calculate_output": "exact + 0 * broken", "graders": {
        "exact": EXACT_GRADER, "broken": {**EXACT_GRADER, "name": "broken", "reference": "{{item.nope}}"}}}
    reward = GraderReward(multi, name="arith")
    reward([[{"role": "user", "content": "1+2="}]] * 2, ["3", "4"], item_json=[json.dumps({"answer": "3"})] * 2)
    _, values = reward.drain()
    reward.close()
    assert any(k.startswith("grader/errors/") for k in values), values  # an error flag was counted
    assert metrics.grader_reward("exact") in values
    assert metrics.unregistered(values) == []


def test_ranks_tallies_add_up_to_what_one_process_grading_every_row_reports() -> None:
    """Several ranks each grade their share of a step; rank 0 summarizes every rank's tally (gather_object):
    counts, error flags, sub-rewards and per-grader error rates equal one process grading all the rows, and the
    samples stay capped, drawn from every rank."""
    multi = {"type": "multi", "name": "arith", "calculate_output": "exact + 0 * broken", "graders": {
        "exact": EXACT_GRADER, "broken": {**EXACT_GRADER, "name": "broken", "reference": "{{item.nope}}"}}}
    prompts = [[{"role": "user", "content": f"{i}+1="}] for i in range(12)]
    outputs = [str(i + 1) if i % 3 else "x" for i in range(12)]
    items = [json.dumps({"answer": str(i + 1)}) if i % 4 else json.dumps({"nope": 1}) for i in range(12)]
    one, ranks = GraderReward(multi, name="arith", samples_per_step=4), [GraderReward(multi, name="arith",
                                                                                       samples_per_step=4)
                                                                          for _ in range(2)]
    one(prompts, outputs, item_json=items)
    for r, share in enumerate((slice(0, 6), slice(6, 12))):
        ranks[r](prompts[share], outputs[share], item_json=items[share])
    tallies = [r.take() for r in ranks]
    samples, merged = ranks[0].summarize(tallies)
    _, single = one.drain()
    for reward in (one, *ranks):
        reward.close()
    timing = ("grader/latency", metrics.GRADING_S)
    assert {k: v for k, v in merged.items() if not k.startswith(timing) and "latency" not in k} == \
        {k: v for k, v in single.items() if not k.startswith(timing) and "latency" not in k}
    assert merged[metrics.GRADED] == 12  # rows 0, 4, 8 have no answer (exact errs), the rest no `nope` (broken)
    assert (merged[metrics.grader_error_rate("exact")], merged[metrics.grader_error_rate("broken")]) == (0.25, 0.75)
    assert merged[metrics.GRADING_S] == max(t.seconds for t in tallies)
    assert set(single) == set(merged)  # the latency percentiles too, over both ranks' rows
    assert len(samples) == 4 and {s["prompt"] for s in samples} <= {f"{i}+1=" for i in range(12)}
    assert ranks[0].take().graded == 0  # taken: the next step starts empty


@pytest.mark.slow
def test_the_fake_worker_writes_only_registered_keys(fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    with fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=4, eval_interval=2))
        wait_until(lambda: c.get_job(job.id).status is api.JobStatus.succeeded, timeout=60, what="job succeeded")
        steps = c.metrics(job.id).data
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert metrics.unregistered({k for s in steps for k in s.values}) == []


def test_registry_entries_are_documented_and_well_formed() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    keys = [m.key for m in metrics.METRICS]
    assert len(keys) == len(set(keys))
    for m in metrics.METRICS:
        assert m.kind in metrics.KINDS and m.description
        assert f"`{m.key}`" in doc, f"docs/metrics.md does not list {m.key}"
        format(1.5, m.fmt)  # a valid format spec
    assert set(metrics.DEFAULT_COLUMNS) <= set(keys)
    assert metrics.format_value("learning_rate", 1e-5) == "1.00e-05"
    assert metrics.format_value("frac_reward_zero_std", 0.25) == "25.0%"
    assert metrics.format_value("reward", None) == "-" and metrics.format_value("loss", float("nan")) == "nan"
    assert metrics.format_value("brand_new_trl_metric", 0.123456) == "0.1235"  # unknown keys still show


# ------------------------------------------------------------------ the CLI


def _rows(out: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]


@pytest.mark.slow
def test_jobs_metrics_formats_each_metric_by_the_registry(rft_home: Path, tmp_path: Path) -> None:
    """Reviewer: lr printed with 4 decimals (1e-5 -> 0.0000) and the default step_time column empty for real jobs."""
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(EXACT_GRADER))
    train = write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(10, 40))
    try:
        job = json.loads(cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", str(train), "-g",
                             str(grader), "--hp", "max_steps=3", "--json").stdout)
        wait_until(lambda: json.loads(cli(rft_home, "jobs", "show", job["id"], "--json").stdout)["status"]
                   == "succeeded", timeout=60, what="job succeeded")
        out = cli(rft_home, "jobs", "metrics", job["id"], "--keys", "reward,learning_rate,step_wall_s").stdout
        header, *rows = _rows(out)
        assert header == ["step", "reward", "lr", "step s"]
        assert len(rows) == 3
        for row in rows:
            assert re.fullmatch(r"\d\.\d{2}e-0\d", row[2]), row  # the fake worker's 1e-3 schedule, not 0.0010
            assert re.fullmatch(r"\d+\.\d\d", row[3]), row  # step wall time is there
        default = _rows(cli(rft_home, "jobs", "metrics", job["id"]).stdout)
        assert "step s" in default[0] and all(r[default[0].index("step s")] != "-" for r in default[1:])
        bad = cli(rft_home, "jobs", "metrics", job["id"], "--keys", "reward,step_tme", check=False)
        assert bad.returncode == 2 and "unknown metric 'step_tme'" in bad.stderr and "step_wall_s" in bad.stderr
    finally:
        cli(rft_home, "daemon", "stop", check=False)
