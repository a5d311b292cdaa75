"""A real S3-compatible server for the storage tests: moto's standalone server, started as a subprocess.

`moto[server]` (the test extra) answers the S3 REST API on a free port; the tests reach it through fsspec/s3fs
with `storage_options` (endpoint, key, secret), exactly as a cluster configured with a MinIO or Ceph endpoint
would, and check what landed there from outside with boto3.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from tests.support.daemon_proc import wait_until
from tests.support.engines import free_port

# moto accepts any credentials; giving them explicitly keeps botocore from looking for a real AWS account
KEY, SECRET, REGION = "rft-test-key", "rft-test-secret-value", "us-east-1"


@dataclass
class MotoServer:
    proc: subprocess.Popen[bytes]
    endpoint: str

    def storage_options(self) -> dict[str, Any]:
        """What a cluster's `storage_options` holds to reach this server (fsspec/s3fs keywords)."""
        return {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION}}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                            region_name=REGION)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under `prefix`, listed by boto3 (not through the code under test)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_moto() -> MotoServer:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            return httpx.get(endpoint + "/moto-api/", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 60, interval=0.1, what="moto's S3 server to answer")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return MotoServer(proc, endpoint)
