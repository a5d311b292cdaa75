"""Ray: submit through the Job Submission API (`ray.job_submission.JobSubmissionClient`).

What goes with the job: our own packages (`daemon`, `graders`) as runtime_env `py_modules`, so the worker
that runs is the daemon's version; the job's environment (daemon URL, job id, storage dir) as `env_vars`.
The datasets, the per-job token and the checkpoints live in the cluster's `storage` (a runtime_env is
limited to a few hundred MB and is read-only, checkpoints must outlive the submission). On URL storage
(s3://...) the datasets are uploaded there and the worker downloads them; the token and the cluster's
storage options cannot be read from a storage that needs them, so they travel as the submission's
`working_dir`: a package holding one 0600 file, which Ray keeps in its own store and never displays. The heavy libraries
(torch, transformers, trl, peft) must already be installed in the cluster's Python; the worker compares them
with the snapshot's versions at start (daemon/versions.py: a missing one fails the job naming the pins to
install, a different one is a warning event); nothing is installed (clusters are often offline).

Rendezvous: the entrypoint is `python -m daemon.executors.ray_launch`, which runs on the cluster. One node:
Ray schedules the entrypoint itself on a node with the requested GPUs/CPUs (`entrypoint_num_gpus/cpus`) and
it execs torchrun `--standalone` there. Several nodes: it reserves a STRICT_SPREAD placement group (one
bundle per node, each with that node's GPUs), starts one small actor per bundle, and each runs torchrun with
c10d rendezvous at the first actor's address. We chose a placement group over Ray Train's TorchTrainer
because the worker stays exactly the process the local executor runs (torchrun + `daemon.worker`, the same
pause/cancel signal handling and the same TRL/accelerate set-up); TorchTrainer would run our training loop
inside Ray's own worker function and process-group set-up, a second code path for the same job.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from daemon import api
from daemon.checkpoint_storage import is_url
from daemon.executors.base import EngineStatus, ExecutorUnavailable, LaunchSpec

RAY_STATES: dict[str, str] = {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "succeeded",
                              "FAILED": "failed", "STOPPED": "stopped"}
PACKAGES = ("daemon", "graders")
SECRETS_FILE = "job-secrets.json"  # read by ray_launch from its working dir (URL storage)


def write_secrets(secrets: dict[str, str]) -> str:
    """A private directory holding only the secrets file: the submission's working_dir, uploaded by Ray to its
    own store (never shown, unlike runtime_env env_vars); removed here once submitted."""
    directory = tempfile.mkdtemp(prefix="rft-ray-secrets-")  # 0700
    path = os.path.join(directory, SECRETS_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(secrets, f)
    return directory


def engine_state(ray_status: str) -> str:
    """Ray's JobStatus value -> our engine state (anything new from a later Ray: unknown, asked again later)."""
    return RAY_STATES.get(str(ray_status).rsplit(".", 1)[-1].upper(), "unknown")


def package_dirs() -> list[str]:
    """Our packages' directories, shipped as py_modules (the cluster runs the daemon's code)."""
    import importlib

    return [str(Path(importlib.import_module(name).__file__ or "").parent) for name in PACKAGES]


class RayExecutor:
    kind = "ray"

    def __init__(self, cluster: api.Cluster) -> None:
        self.cluster = cluster
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise ExecutorUnavailable("the daemon needs Ray's client for Ray clusters: "
                                          "pip install 'rft-tui[ray]'") from None
            try:
                self._client = JobSubmissionClient(self.cluster.address)
            except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError/RuntimeError/ValueError alike
                raise ExecutorUnavailable(f"Ray job server {self.cluster.address} is unreachable: "
                                          f"{str(e).splitlines()[0][:300]}", transient=True) from None
        return self._client

    # ------------------------------------------------------------------ submission

    def runtime_env(self, spec: LaunchSpec, secrets_dir: str | None = None) -> dict[str, Any]:
        env: dict[str, Any] = {"py_modules": package_dirs(), "env_vars": dict(spec.env)}
        if secrets_dir:
            env["working_dir"] = secrets_dir
        elif is_url(spec.placement.storage_dir):  # describe(): what the submission will ship
            env["working_dir"] = f"(made at submission: {SECRETS_FILE}, 0600: the report token, storage options)"
        return env

    def entrypoint(self, spec: LaunchSpec) -> str:
        import shlex

        return f"{shlex.quote(spec.python)} -m daemon.executors.ray_launch {shlex.quote(spec.job_id)}"

    def entrypoint_resources(self, spec: LaunchSpec) -> dict[str, float]:
        """One node: the entrypoint itself holds the node's GPUs (or CPUs), so Ray places it on such a node."""
        p = spec.placement
        if p.nodes > 1:
            return {}
        if p.gpus_per_node > 0:
            return {"entrypoint_num_gpus": float(p.gpus_per_node)}
        return {"entrypoint_num_cpus": float(p.processes_per_node)}

    def submit(self, spec: LaunchSpec) -> str:
        """Submit under the recorded name: Ray refuses a second job with the same submission id."""
        submission_id = spec.submission_name or f"rft-{spec.job_id}-{spec.attempt}-{int(time.time())}"
        secrets_dir = write_secrets(spec.secrets) if spec.secrets else None
        try:
            return str(self.client().submit_job(
                entrypoint=self.entrypoint(spec), submission_id=submission_id,
                runtime_env=self.runtime_env(spec, secrets_dir),
                metadata={"rft_job_id": spec.job_id, "attempt": str(spec.attempt)},
                **self.entrypoint_resources(spec)))
        except ExecutorUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - the job server's refusal, said in its words
            self._client = None  # a head that went away mid-call: connect afresh next time
            text = str(e).splitlines()[0][:500] if str(e) else type(e).__name__
            lost = isinstance(e, (ConnectionError, TimeoutError)) or "Connection" in type(e).__name__
            raise ExecutorUnavailable(f"Ray refused the job: {text}" if not lost else
                                      f"Ray job server {self.cluster.address} went away: {text}",
                                      transient=lost) from None
        finally:
            if secrets_dir:  # Ray has uploaded its package (or the submission failed): no copy stays here
                shutil.rmtree(secrets_dir, ignore_errors=True)

    def describe(self, spec: LaunchSpec) -> str:
        return json.dumps({"address": self.cluster.address, "entrypoint": self.entrypoint(spec),
                           **self.entrypoint_resources(spec), "runtime_env": self.runtime_env(spec)}, indent=2)

    def find(self, submission_name: str) -> str | None:
        """Ray's job ids are the submission ids we choose: ask for that one."""
        try:
            self.client().get_job_info(submission_name)
        except ExecutorUnavailable:
            raise
        except Exception as e:  # noqa: BLE001
            text = str(e)
            if "does not exist" in text or "404" in text:
                return None
            self._client = None
            raise ExecutorUnavailable(f"Ray could not say whether {submission_name} exists: "
                                      f"{text.splitlines()[0][:300] if text else type(e).__name__}",
                                      transient=True) from None
        return submission_name

    # ------------------------------------------------------------------ state

    def status(self, engine_id: str) -> EngineStatus:
        try:
            info = self.client().get_job_info(engine_id)
        except ExecutorUnavailable as e:
            return EngineStatus("unknown", str(e))
        except Exception as e:  # noqa: BLE001
            text = str(e)
            if "does not exist" in text or "404" in text:
                return EngineStatus("gone", f"Ray has no job {engine_id}")
            self._client = None  # reconnect next time (the head may have restarted)
            return EngineStatus("unknown", text.splitlines()[0][:300] if text else type(e).__name__)
        status = getattr(info.status, "value", info.status)
        return EngineStatus(engine_state(status), info.message or "")  # type: ignore[arg-type]

    def stop(self, engine_id: str) -> None:
        try:
            self.client().stop_job(engine_id)
        except ExecutorUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - an already finished job cannot be stopped: nothing to do
            if "does not exist" not in str(e):
                raise ExecutorUnavailable(f"Ray could not stop {engine_id}: {str(e)[:300]}") from None

    def logs(self, engine_id: str, spec_dir: Path) -> str | None:
        try:
            return str(self.client().get_job_logs(engine_id))
        except Exception:  # noqa: BLE001 - no log yet, or the head is away: the next poll asks again
            return None

    def test(self, timeout_s: float) -> api.ClusterTestResult:
        started = time.monotonic()
        name = self.cluster.name
        try:
            client = self.client()
            engine_id = client.submit_job(entrypoint="echo rft-tui cluster test on $(hostname)",
                                          submission_id=f"rft-test-{int(time.time() * 1000)}")
        except Exception as e:  # noqa: BLE001
            return api.ClusterTestResult(name=name, ok=False, round_trip_s=round(time.monotonic() - started, 3),
                                         state="unreachable", detail=str(e).splitlines()[0][:500])
        state = "pending"
        while time.monotonic() - started < timeout_s:
            state = self.status(engine_id).state
            if state in ("succeeded", "failed", "stopped", "gone"):
                break
            time.sleep(0.2)  # polling an engine (not a test): Ray offers no completion callback here
        took = round(time.monotonic() - started, 3)
        output = (self.logs(engine_id, Path(".")) or "").strip()
        return api.ClusterTestResult(name=name, ok=state == "succeeded", engine_id=engine_id, round_trip_s=took,
                                     state=state, output=output[-2000:],
                                     detail="" if state == "succeeded" else f"the test job ended {state}")
