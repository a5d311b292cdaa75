"""Clusters configured once (fast): the config through the API and the CLI, job placement, the refusals.

A real daemon, real socket, real files; no engine is needed here (tests/clusters/test_ray.py and
test_slurm.py run jobs on real engines).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from daemon import api
from daemon.client import ApiRequestError
from daemon.store import Store
from tests.daemon.test_cli import cli
from tests.support.daemon_proc import DaemonProcess
from tests.support.engines import free_port
from tests.support.jobs import job_request, make_files


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    d = tmp_path / "shared"
    d.mkdir()
    return d


def _refused(call, status: int, param: str | None, code: str | None = None) -> api.ErrorDetail:
    with pytest.raises(ApiRequestError) as e:
        call()
    assert e.value.status_code == status, e.value.error
    assert e.value.error.param == param, e.value.error
    if code:
        assert e.value.error.code == code, e.value.error
    return e.value.error


@pytest.mark.slow
def test_clusters_are_stored_by_the_daemon_0600_and_survive_a_restart(daemon_factory, storage: Path,
                                                                       rft_home: Path) -> None:
    d: DaemonProcess = daemon_factory()
    with d.client() as c:
        ray = c.add_cluster({"name": "gpu-ray", "kind": "ray", "address": "http://head:8265", "storage": str(storage),
                             "nodes": 2, "gpus_per_node": 8})
        assert ray.defaults.nodes == 2 and ray.defaults.gpus_per_node == 8
        c.add_cluster({"name": "uni", "kind": "slurm", "ssh": "login.example.edu", "storage": str(storage),
                       "partition": "gpu", "account": "lab", "time_limit": "2-00:00:00"})
    path = rft_home / "clusters.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [c["name"] for c in json.loads(path.read_text())["clusters"]] == ["gpu-ray", "uni"]
    d.stop()
    d2: DaemonProcess = daemon_factory()
    with d2.client() as c:
        assert [x.name for x in c.list_clusters().data] == ["gpu-ray", "uni"]
        uni = c.get_cluster("uni")
        assert (uni.kind, uni.ssh, uni.defaults.partition, uni.defaults.time_limit) == (
            "slurm", "login.example.edu", "gpu", "2-00:00:00")
        _refused(lambda: c.add_cluster({"name": "uni", "kind": "slurm", "storage": str(storage)}), 409, "name",
                 "cluster_exists")
        replaced = c.add_cluster({"name": "uni", "kind": "slurm", "storage": str(storage), "replace": True})
        assert replaced.ssh is None
        assert c.remove_cluster("uni").name == "uni"
        _refused(lambda: c.get_cluster("uni"), 404, "name", "cluster_not_found")
        assert [x.name for x in c.list_clusters().data] == ["gpu-ray"]


def test_bad_cluster_configs_are_refused_naming_the_field(daemon: DaemonProcess, storage: Path) -> None:
    with daemon.client() as c:
        _refused(lambda: c.add_cluster({"name": "r", "kind": "ray", "storage": str(storage)}), 400, "address",
                 "missing_address")
        _refused(lambda: c.add_cluster({"name": "s", "kind": "slurm", "address": "http://x:1",
                                        "storage": str(storage)}), 400, "address")
        _refused(lambda: c.add_cluster({"name": "r", "kind": "ray", "address": "http://h:8265", "ssh": "login",
                                        "storage": str(storage)}), 400, "ssh")
        _refused(lambda: c.add_cluster({"name": "s", "kind": "slurm", "storage": "relative/dir"}), 400, "storage",
                 "invalid_storage")
        _refused(lambda: c.add_cluster({"name": "s", "kind": "slurm", "ssh_options": "-p 2222",
                                        "storage": str(storage)}), 400, "ssh_options", "invalid_cluster")
        _refused(lambda: c.add_cluster({"name": "s", "kind": "slurm", "ssh": "login", "ssh_options": "-i 'key",
                                        "storage": str(storage)}), 400, "ssh_options", "invalid_cluster")
        error = _refused(lambda: c.add_cluster({"name": "s", "kind": "slurm", "storage": str(storage / "nope")}),
                         400, "storage", "invalid_storage")
        assert "not a directory" in error.message
        _refused(lambda: c.add_cluster({"name": "s", "kind": "slurm", "storage": "ftp://host/x"}), 400, "storage")
        _refused(lambda: c.add_cluster({"name": "bad name", "kind": "slurm", "storage": str(storage)}), 400, "name")
        _refused(lambda: c.add_cluster({"name": "s", "kind": "slurm", "storage": str(storage), "nodes": 0}), 400,
                 "nodes")
        _refused(lambda: c.add_cluster({"name": "s", "kind": "slurm", "storage": str(storage),
                                        "time_limit": "soon"}), 400, "time_limit")
        # an fsspec URL is recorded (validated by scheme); a Slurm job on it is refused (test_storage_url.py: Ray)
        s3 = c.add_cluster({"name": "s3", "kind": "slurm", "storage": "s3://bucket/rft"})
        assert s3.defaults.storage == "s3://bucket/rft"
        assert c.list_clusters().data[0].name == "s3"


@pytest.mark.slow
def test_cluster_jobs_need_the_daemon_on_tcp_and_a_known_cluster(daemon_factory, storage: Path,
                                                                 tmp_path: Path) -> None:
    plain: DaemonProcess = daemon_factory()
    with plain.client() as c:
        c.add_cluster({"name": "hpc", "kind": "slurm", "storage": str(storage)})
        train, valid = make_files(c, tmp_path)
        error = _refused(lambda: c.create_job({**job_request(train, valid), "cluster": "hpc"}), 400, "cluster",
                         "no_tcp")
        assert "--tcp" in error.message and "rft-tui daemon restart" in error.message
        # without --cluster nothing changes: a local job, no cluster on the job object
        _refused(lambda: c.create_job({**job_request(train, valid), "nodes": 2}), 400, "nodes")
    plain.stop()
    tcp: DaemonProcess = daemon_factory(tcp=f"127.0.0.1:{free_port()}")
    with tcp.client() as c:
        error = _refused(lambda: c.create_job({**job_request(train, valid), "cluster": "nope"}), 400, "cluster",
                         "cluster_not_found")
        assert "hpc" in error.message
        c.add_cluster({"name": "s3", "kind": "slurm", "storage": "s3://bucket/rft"})
        _refused(lambda: c.create_job({**job_request(train, valid), "cluster": "s3"}), 400, "cluster",
                 "storage_not_supported")
        _refused(lambda: c.create_job({**job_request(train, valid, num_processes=3), "cluster": "hpc",
                                       "nodes": 2}), 400, "method.reinforcement.hyperparameters.num_processes")
        local = c.create_job(job_request(train, valid, max_steps=1))
        assert local.cluster is None
        _refused(lambda: c.job_script(local.id), 409, "fine_tuning_job_id", "not_a_cluster_job")
        _refused(lambda: c.remove_cluster("nope"), 404, "name")


@pytest.mark.slow
def test_cli_clusters_add_list_show_remove(rft_home: Path, storage: Path) -> None:
    try:
        out = cli(rft_home, "clusters", "add", "lab", "--slurm", "--ssh", "login.lab", "--storage", str(storage),
                  "--partition", "gpu", "--gpus-per-node", "4", "--nodes", "2")
        assert "Added slurm cluster lab" in out.stdout
        cli(rft_home, "clusters", "add", "rc", "--ray", "http://head:8265", "--storage", str(storage))
        listed = cli(rft_home, "clusters", "list").stdout
        assert "lab" in listed and "ssh login.lab" in listed and "http://head:8265" in listed
        shown = cli(rft_home, "clusters", "show", "lab").stdout
        assert "partition" in shown and "gpu" in shown and "4 GPU(s)" in shown
        as_json = json.loads(cli(rft_home, "clusters", "show", "rc", "--json").stdout)
        assert as_json["kind"] == "ray" and as_json["defaults"]["storage"] == str(storage)
        both = cli(rft_home, "clusters", "add", "x", "--ray", "http://h:1", "--slurm", "--storage", str(storage),
                   check=False)
        assert both.returncode == 2 and "exactly one of --ray ADDRESS or --slurm" in both.stderr
        missing = cli(rft_home, "clusters", "add", "x", "--slurm", "--storage", "rel", check=False)
        assert missing.returncode == 1 and "storage" in missing.stderr and "Traceback" not in missing.stderr
        assert "Removed cluster rc" in cli(rft_home, "clusters", "remove", "rc").stdout
        gone = cli(rft_home, "clusters", "show", "rc", check=False)
        assert gone.returncode == 1 and "rc" in gone.stderr
        nodes = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", "x", "-g", str(storage), "--nodes",
                    "2", check=False)
        assert nodes.returncode == 2
    finally:
        cli(rft_home, "daemon", "stop", check=False)


@pytest.mark.slow
def test_a_job_waits_queued_while_its_cluster_is_unreachable(daemon_factory, storage: Path, tmp_path: Path,
                                                             rft_home: Path) -> None:
    """ssh to a login host that does not resolve: the job stays queued (one event says why), tries again, and
    can still be cancelled; nothing is half-submitted."""
    from tests.support.daemon_proc import wait_until

    d: DaemonProcess = daemon_factory(env={"RFT_CLUSTER_RETRY_S": "0.3", "RFT_CLUSTER_POLL_S": "0.2"},
                                      tcp=f"127.0.0.1:{free_port()}")
    with d.client() as c:
        # a login host that refuses at once (port 1 on loopback): no DNS look-up whose time depends on the machine
        c.add_cluster({"name": "away", "kind": "slurm", "ssh": "root@127.0.0.1:1", "storage": str(storage)})
        train, valid = make_files(c, tmp_path)
        job = c.create_job({**job_request(train, valid), "cluster": "away"})

        def unreachable_said() -> list[str] | None:
            said = [e.message for e in c.list_events(job.id, limit=50).data if "unreachable" in e.message]
            return said or None

        said = wait_until(unreachable_said, 60, interval=0.1, what="the unreachable-cluster event")
        assert "Cluster away is unreachable (could not reach the cluster: ssh: connect to host 127.0.0.1 port 1: " \
               "Connection refused" in said[0], said
        # the retries ask first whether the failed sbatch got through after all (squeue --name), then submit
        wait_until(lambda: d.log().count("unreachable, retrying") >= 2, 60, interval=0.1, what="a second try")
        assert len(unreachable_said() or []) == 1  # said once, tried again quietly
        assert c.get_job(job.id).status is api.JobStatus.queued
        assert c.get_job(job.id).cluster.engine_id is None  # type: ignore[union-attr]
        store = Store(d.paths.db)  # the submission's name, recorded before sbatch (what a restarted daemon looks up)
        try:
            assert (store.get_job_row(job.id) or {})["engine_submission"].startswith(f"rft-{job.id}-1-")
        finally:
            store.close()
        shown = cli(rft_home, "jobs", "show", job.id).stdout
        assert "away (slurm)" in shown and "- (not submitted)" in shown and "1 node(s) x 1 CPU process(es)" in shown
        assert c.cancel_job(job.id).status is api.JobStatus.cancelled
