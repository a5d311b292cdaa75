"""A cluster's storage as an fsspec URL (s3://), against a real S3-compatible server (moto's, a subprocess).

Fast: the storage layer (publish/fetch/files/probe) and the daemon's side (configuration with redacted
secrets, `clusters test` and job creation on unusable storage, the job's files uploaded before submission,
the submission showing no secret). Slow: a Ray job on the built-in model with s3 storage trains to the end,
its checkpoints are in the bucket (listed with boto3), its journal is replayed from there after it ended
while the daemon was down, and export fetches the checkpoint into a private cache under RFT_HOME.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from daemon import checkpoint_storage as storage
from daemon.client import ApiRequestError
from tests.clusters.jobs import S, create_cluster_job, job_log, metric_steps, tcp_daemon, wait_job, wait_terminal
from tests.daemon.test_cli import cli
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.engines import RayHead, free_port
from tests.support.jobs import job_request, make_files
from tests.support.s3 import SECRET, MotoServer


def _bucket(s3: MotoServer) -> str:
    return s3.create_bucket(f"rft-{uuid.uuid4().hex[:10]}")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_checkpoints_and_files_round_trip_through_s3(s3_server: MotoServer, tmp_path: Path) -> None:
    bucket, opts = _bucket(s3_server), s3_server.storage_options()
    ckpt = tmp_path / "step-2"
    (ckpt / "nested").mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text('{"r": 8}')
    (ckpt / "nested" / "state.bin").write_bytes(os.urandom(3000))
    url = storage.publish(ckpt, f"s3://{bucket}/runs", "job-1", opts)
    assert url == f"s3://{bucket}/runs/job-1/step-2"
    assert s3_server.keys(bucket) == ["runs/job-1/step-2/adapter_config.json", "runs/job-1/step-2/nested/state.bin"]
    assert storage.exists(url, opts)

    cache = tmp_path / "home" / "fetched"
    local = Path(storage.fetch(url, cache, opts))
    assert local == cache / "step-2" and _tree(local) == _tree(ckpt)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and stat.S_IMODE(local.stat().st_mode) == 0o700
    before = (local / "nested" / "state.bin").stat().st_ino
    assert storage.fetch(url, cache, opts) == str(local)  # cached: the same size is there, nothing downloaded
    assert (local / "nested" / "state.bin").stat().st_ino == before

    (ckpt / "nested" / "state.bin").write_bytes(b"re-published after a resume")  # the same name, new content
    (ckpt / "adapter_config.json").unlink()
    assert storage.publish(ckpt, f"s3://{bucket}/runs", "job-1", opts) == url
    assert s3_server.keys(bucket) == ["runs/job-1/step-2/nested/state.bin"]  # the old object is gone
    assert _tree(Path(storage.fetch(url, cache, opts))) == _tree(ckpt)

    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": []}\n')
    files_url = storage.join(f"s3://{bucket}/runs", "jobs", "job-1", "files", data.name)
    storage.put_file(data, files_url, opts)
    got = storage.get_file(files_url, tmp_path / "scratch" / "files" / data.name, opts)
    assert got.read_bytes() == data.read_bytes()
    assert storage.read_bytes(files_url, opts) == data.read_bytes()
    assert storage.read_bytes(files_url + ".missing", opts) is None

    storage.remove(url, opts)
    assert not storage.exists(url, opts) and s3_server.keys(bucket, "runs/job-1/step-2") == []
    with pytest.raises(FileNotFoundError, match=url):
        storage.fetch(url, cache, opts)


def test_probe_says_which_url_and_what_failed(s3_server: MotoServer) -> None:
    bucket, opts = _bucket(s3_server), s3_server.storage_options()
    storage.probe(f"s3://{bucket}/rft", opts)
    assert s3_server.keys(bucket) == []  # the probe object was deleted again

    with pytest.raises(storage.StorageError) as missing:
        storage.probe(f"s3://no-such-bucket-{bucket}/rft", opts)
    assert f"s3://no-such-bucket-{bucket}/rft" in str(missing.value) and "could not write" in str(missing.value)
    assert "NoSuchBucket" in str(missing.value) or "does not exist" in str(missing.value)

    closed = {**opts, "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region_name": "us-east-1"},
              "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
    with pytest.raises(storage.StorageError) as away:
        storage.probe(f"s3://{bucket}/rft", closed, timeout_s=30)
    assert f"s3://{bucket}/rft" in str(away.value) and "could not" in str(away.value)

    with pytest.raises(storage.StorageError) as backend:
        storage.probe("gs://bucket/rft")
    assert "gcsfs is not installed" in str(backend.value) and "gs://bucket/rft" in str(backend.value)


def test_an_offline_worker_keeps_its_journal_in_the_bucket(s3_server: MotoServer, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """URL storage: while the daemon is away, rank 0 copies its journal to RFT_JOURNAL_URL every
    RFT_JOURNAL_UPLOAD_S, so a worker killed then still leaves its records where the daemon replays them from."""
    from daemon.cluster_jobs import REPORT_RECORD
    from daemon.worker.http_reporter import HttpReporter

    bucket = _bucket(s3_server)
    monkeypatch.setenv("RFT_JOURNAL_URL", f"s3://{bucket}/rft/rft-tui/jobs/j1/work/report-journal")
    monkeypatch.setenv(storage.STORAGE_OPTIONS_ENV, json.dumps(s3_server.storage_options()))
    monkeypatch.setenv("RFT_JOURNAL_UPLOAD_S", "0.3")
    monkeypatch.setenv("RFT_REPORT_RETRY_MAX_S", "0.2")
    reporter = HttpReporter(f"http://127.0.0.1:{free_port()}", "token", "j1", scratch=tmp_path / "scratch")
    try:
        for step in (1, 2, 3):
            reporter.log_step(step, {"train/reward_mean": step / 10})
        key = "rft/rft-tui/jobs/j1/work/report-journal/records.jsonl"

        def uploaded() -> list[int] | None:
            if s3_server.keys(bucket, key) != [key]:
                return None
            lines = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
            steps = [getattr(REPORT_RECORD.validate_json(line), "step", None) for line in lines]
            return steps if steps == [1, 2, 3] else None

        assert wait_until(uploaded, 30, interval=0.1, what="the journal in the bucket") == [1, 2, 3]
    finally:
        monkeypatch.setenv("RFT_REPORT_CLOSE_WAIT_S", "0")
        reporter.close()


def _s3_cluster(name: str, bucket: str, s3: MotoServer, address: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "ray", "address": address, "storage": f"s3://{bucket}/rft",
            "storage_options": s3.storage_options(), **extra}


@pytest.mark.slow
def test_daemon_on_s3_storage_redacts_secrets_refuses_unusable_storage_and_uploads_the_job_files(
        daemon_factory, s3_server: MotoServer, rft_home: Path, tmp_path: Path) -> None:
    bucket = _bucket(s3_server)
    nowhere = f"http://127.0.0.1:{free_port()}"  # a Ray job server that is not there: the job stays queued
    d: DaemonProcess = daemon_factory(tcp=f"127.0.0.1:{free_port()}")
    with d.client() as c:
        shown = c.add_cluster(_s3_cluster("s3", bucket, s3_server, nowhere))
        assert shown.defaults.storage_options == {"key": "***", "secret": "***", "client_kwargs": {
            "endpoint_url": s3_server.endpoint, "region_name": "us-east-1"}}
        assert SECRET not in c.get_cluster("s3").model_dump_json() and SECRET not in cli(
            rft_home, "clusters", "show", "s3").stdout
        stored = json.loads((rft_home / "clusters.json").read_text())["clusters"][0]
        assert stored["defaults"]["storage_options"]["secret"] == SECRET  # the 0600 file keeps it
        options = tmp_path / "s3.json"
        options.write_text(json.dumps(s3_server.storage_options()))
        cli(rft_home, "clusters", "add", "viacli", "--ray", nowhere, "--storage", f"s3://{bucket}/cli",
            "--storage-options", f"@{options}")
        out = cli(rft_home, "clusters", "show", "viacli").stdout
        assert '"secret": "***"' in out and SECRET not in out and s3_server.endpoint in out
        options.write_text("{not json")
        bad_file = cli(rft_home, "clusters", "add", "x", "--ray", nowhere, "--storage", f"s3://{bucket}/cli",
                       "--storage-options", f"@{options}", check=False)
        assert bad_file.returncode == 2 and f"{options} is not JSON" in bad_file.stderr

        with pytest.raises(ApiRequestError) as path_opts:
            c.add_cluster({"name": "p", "kind": "ray", "address": nowhere, "storage": str(tmp_path),
                           "storage_options": {"anon": True}})
        assert path_opts.value.status_code == 400 and path_opts.value.error.param == "storage_options"

        bad = f"s3://gone-{bucket}/rft"
        c.add_cluster({**_s3_cluster("gone", bucket, s3_server, nowhere), "storage": bad})
        test = c.test_cluster("gone", timeout_s=5)
        assert not test.ok and test.state == "storage_unreachable" and bad in test.detail, test
        train, valid = make_files(c, tmp_path)
        with pytest.raises(ApiRequestError) as refused:
            c.create_job({**job_request(train, valid), "cluster": "gone"})
        err = refused.value.error
        assert refused.value.status_code == 400 and (err.param, err.code) == ("cluster", "storage_unreachable")
        assert bad in err.message and "could not write" in err.message

        job = c.create_job({**job_request(train, valid), "cluster": "s3"})
        assert job.cluster is not None and job.cluster.storage_dir == f"s3://{bucket}/rft/rft-tui/jobs/{job.id}"
        files = f"rft/rft-tui/jobs/{job.id}/files/"
        staged = wait_until(lambda: len(s3_server.keys(bucket, files)) == 2 and s3_server.keys(bucket, files), 60,
                            what="the job's datasets in the bucket")
        bodies = sorted(s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read() for key in staged)
        assert bodies == sorted((tmp_path / n).read_bytes() for n in ("train.jsonl", "valid.jsonl"))
        events = wait_until(lambda: [e.message for e in c.list_events(job.id, limit=50).data
                                     if "unreachable" in e.message], 60, what="the unreachable-Ray event")
        assert c.get_job(job.id).status is S.queued and nowhere.split("//")[1] in events[0]
        script = c.job_script(job.id).script
        runtime_env = json.loads(script)["runtime_env"]
        assert runtime_env["env_vars"]["RFT_FILES_URL"] == f"s3://{bucket}/rft/rft-tui/jobs/{job.id}/files"
        assert runtime_env["env_vars"]["RFT_CHECKPOINT_STORAGE"] == f"s3://{bucket}/rft/rft-tui/checkpoints"
        assert "job-secrets.json" in runtime_env["working_dir"]
        assert SECRET not in script and "RFT_REPORT_TOKEN" not in runtime_env["env_vars"]
        c.cancel_job(job.id)


@pytest.mark.slow
def test_ray_job_on_s3_storage_trains_pauses_resumes_replays_its_journal_and_exports(
        daemon_factory, model_cache: Path, ray_head: RayHead, s3_server: MotoServer, rft_home: Path,
        tmp_path: Path) -> None:
    """The Ray head has no AWS configuration: the worker reaches the bucket only with the storage options the
    daemon handed it (with its token, in the submission's working_dir package). Paused, it checkpoints to the
    bucket; resumed (a new Ray submission), it continues from the checkpoint it fetched from there."""
    from ray.job_submission import JobSubmissionClient

    bucket = _bucket(s3_server)
    quick = {"RFT_REPORT_FINISH_DEADLINE_S": "2", "RFT_REPORT_CLOSE_WAIT_S": "1"}  # passed on to the worker
    d = tcp_daemon(daemon_factory, model_cache, env=quick)
    with d.client() as c:
        c.add_cluster(_s3_cluster("s3ray", bucket, s3_server, ray_head.address, processes_per_node=2,
                                  python=sys.executable))
        test = c.test_cluster("s3ray", timeout_s=60)
        assert test.ok and test.storage_round_trip_s is not None, test
        # 12 steps: a late pause (control is read at most once a second) still leaves the resumed worker steps to
        # journal when the daemon is killed at its first step (see the Slurm test)
        job = create_cluster_job(c, "s3ray", max_steps=12, eval_interval=4)
        first = wait_job(c, job.id, lambda j: j.cluster.engine_id and j.progress.step >= 1, "step 1").cluster
        assert first is not None and first.engine_id
        info = JobSubmissionClient(ray_head.address).get_job_info(first.engine_id)
        assert SECRET not in json.dumps(info.runtime_env) and "job-secrets.json" not in json.dumps(info.runtime_env)
        c.pause_job(job.id)  # checkpoint to the bucket and exit; resume fetches it from there on the cluster
        wait_job(c, job.id, lambda j: j.status is S.paused, "paused")
        paused_at = max(c.list_checkpoints(job.id).data, key=lambda ck: ck.step_number)
        assert str(paused_at.path).startswith(f"s3://{bucket}/") and paused_at.step_number == c.get_job(
            job.id).progress.step, paused_at
        c.resume_job(job.id)
        running = wait_job(c, job.id, lambda j: j.cluster.engine_id != first.engine_id and j.cluster.engine_state ==
                           "running" and j.progress.step > paused_at.step_number, "a step of the second submission")
        assert running.cluster is not None and running.cluster.engine_id is not None
        engine_id = running.cluster.engine_id
    d.kill()  # kill -9: the job ends while no daemon listens; its last records go to its journal in the bucket
    ray = JobSubmissionClient(ray_head.address)
    try:
        wait_until(lambda: ray.get_job_status(engine_id).value in ("SUCCEEDED", "FAILED", "STOPPED"), 150,
                   interval=0.5, what="the Ray job to end while the daemon is down")
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{ray.get_job_logs(engine_id)[-6000:]}") from None
    journal = f"rft/rft-tui/jobs/{job.id}/work/report-journal/records.jsonl"
    assert s3_server.keys(bucket, journal) == [journal], ray.get_job_logs(engine_id)[-3000:]
    # the node's scratch dir went with the job: its journal is in the bucket, nothing is only there
    scratch = Path(tempfile.gettempdir(), f"rft-tui-{os.getuid()}", job.id)
    assert not scratch.exists() and f"scratch dir {scratch} removed" in ray.get_job_logs(engine_id), \
        ray.get_job_logs(engine_id)[-3000:]
    d2 = tcp_daemon(daemon_factory, model_cache, port=int(d.tcp.rsplit(":", 1)[1]), env=quick)  # type: ignore[union-attr]
    with d2.client() as c:
        done = wait_terminal(c, job.id)
        assert done.status is S.succeeded, f"{done.error}\n{job_log(c, job.id)[-4000:]}"
        events = [e.message for e in c.list_events(job.id, limit=200).data]
        assert any(m.startswith("Replayed ") and f"s3://{bucket}/" in m for m in events), events
        assert metric_steps(c, job.id) == list(range(1, 13))  # none lost, none twice
        assert c.validation(job.id).steps == [0, 4, 8, 12]
        ckpts = c.list_checkpoints(job.id).data
        prefix = f"s3://{bucket}/rft/rft-tui/checkpoints/{job.id}/"
        assert ckpts and all(str(ck.path).startswith(prefix) for ck in ckpts), ckpts
        in_bucket = s3_server.keys(bucket, f"rft/rft-tui/checkpoints/{job.id}/")  # from outside, with boto3
        for ck in ckpts:
            assert f"{str(ck.path)[len('s3://' + bucket + '/'):]}/adapter_config.json" in in_bucket, in_bucket
        exported = c.export_job(job.id, {"output_dir": str(tmp_path / "export")})
        assert (Path(exported.adapter_dir) / "adapter_config.json").is_file()
        fetched = rft_home / "jobs" / job.id / "fetched"
        assert stat.S_IMODE(fetched.stat().st_mode) == 0o700 and any(fetched.iterdir())
    shutil.rmtree(Path(tempfile.gettempdir()) / f"rft-tui-{os.getuid()}" / job.id, ignore_errors=True)
