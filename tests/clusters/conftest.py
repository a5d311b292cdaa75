"""Cluster tests: each test's RFT_HOME lives under one session directory that the engines cannot see.

`ray_head` and `slurm` start a real engine once per session (tests/support/engines.py) inside a private
mount namespace where that directory is an empty tmpfs, so a cluster worker can only report over the API.
Without the engine installed they skip -- unless RFT_REQUIRE_CLUSTER_ENGINES=1 (scripts/test.sh sets it, so
CI fails instead of skipping them).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engines import RayHead, SlurmCluster, start_ray_head, start_slurm
from tests.support.s3 import MotoServer, start_moto


def _require(what: str, missing: bool, fix: str) -> None:
    if not missing:
        return
    message = f"{what}: not available here ({fix})"
    if os.environ.get("RFT_REQUIRE_CLUSTER_ENGINES") == "1":
        pytest.fail(message + "; RFT_REQUIRE_CLUSTER_ENGINES=1 says it must be")
    pytest.skip(message)


@pytest.fixture(scope="session")
def hidden_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="rft-hid-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster_storage() -> Iterator[Path]:
    """The clusters' shared storage (visible to the engines and the daemon alike)."""
    root = Path(tempfile.mkdtemp(prefix="rft-store-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def rft_home(hidden_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's RFT_HOME, under the directory the engines' namespace hides."""
    home = Path(tempfile.mkdtemp(prefix="h-", dir=hidden_root))
    monkeypatch.setenv("RFT_HOME", str(home))
    monkeypatch.setenv("RFT_DEVICE", "cpu")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_head(hidden_root: Path) -> Iterator[RayHead]:
    have_cli = (Path(sys.executable).parent / "ray").exists() or shutil.which("ray") is not None
    _require("Ray", importlib.util.find_spec("ray") is None or not have_cli, "pip install -e '.[ray]'")
    _require("root", os.geteuid() != 0, "the engines' private mount namespace needs root: unshare --mount")
    head = start_ray_head(hidden_root)
    yield head
    head.stop()


@pytest.fixture(scope="session")
def slurm(hidden_root: Path) -> Iterator[SlurmCluster]:
    _require("Slurm", not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists())
             or not Path("/usr/sbin/munged").exists(), "apt-get install slurm-wlm munge")
    _require("root", os.geteuid() != 0, "slurmd and munged run as root / munge in these tests")
    cluster = start_slurm(hidden_root)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def slurm_two_nodes(hidden_root: Path) -> Iterator[SlurmCluster]:
    """A second Slurm: two nodes (n1, n2; one slurmd each on this host, 1 CPU each) for multi-node jobs."""
    _require("Slurm", not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists())
             or not Path("/usr/sbin/munged").exists(), "apt-get install slurm-wlm munge")
    _require("root", os.geteuid() != 0, "slurmd and munged run as root / munge in these tests")
    cluster = start_slurm(hidden_root, cpus=1, nodes=2)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """A real S3-compatible server (moto's, a subprocess on a free port) for URL storage."""
    _require("moto's S3 server and s3fs", importlib.util.find_spec("moto") is None
             or importlib.util.find_spec("s3fs") is None, "pip install -e '.[test,s3]'")
    server = start_moto()
    yield server
    server.stop()
