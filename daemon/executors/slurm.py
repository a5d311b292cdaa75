"""Slurm: a generated sbatch script running `srun torchrun` with c10d rendezvous on the first node.

Commands run here, or through `ssh LOGIN_HOST` (BatchMode: keys, never a password prompt) when the cluster's
login node is another machine. The script and its log live in the job's directory on the cluster's storage,
so the daemon reads the log there. State: `squeue` while Slurm holds the job, then `sacct` (accounting), then
`scontrol show job` (clusters without accounting keep finished jobs for MinJobAge seconds); an id none of
them knows is `gone`. Cancel is `scancel`. Pause is the worker's own checkpoint-and-exit (asked through the
API); resume is a new submission from that checkpoint.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path

from daemon import api
from daemon.executors.base import EngineStatus, ExecutorUnavailable, LaunchSpec

COMMAND_TIMEOUT_S = 30.0
SLURM_STATES: dict[str, str] = {
    "PENDING": "pending", "CONFIGURING": "pending", "REQUEUED": "pending", "REQUEUE_HOLD": "pending",
    "RESV_DEL_HOLD": "pending", "REQUEUE_FED": "pending",
    "RUNNING": "running", "COMPLETING": "running", "SUSPENDED": "running", "STAGE_OUT": "running",
    "SIGNALING": "running", "RESIZING": "running", "STOPPED": "running",
    "COMPLETED": "succeeded",
    "CANCELLED": "stopped", "REVOKED": "stopped",
    "FAILED": "failed", "TIMEOUT": "failed", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed",
    "BOOT_FAIL": "failed", "DEADLINE": "failed", "PREEMPTED": "failed", "SPECIAL_EXIT": "failed",
}
RDZV_PORT_BASE = 29500


def engine_state(slurm_state: str) -> str:
    """A Slurm state ("CANCELLED by 0", "RUNNING", "OUT_OF_MEMORY+") -> our engine state."""
    word = slurm_state.strip().split()[0].rstrip("+") if slurm_state.strip() else ""
    return SLURM_STATES.get(word.upper(), "unknown")


def log_path(storage_dir: Path, engine_id: str) -> Path:
    return storage_dir / f"slurm-{engine_id}.log"


def batch_script(spec: LaunchSpec) -> str:
    """The sbatch script for one submission (no secrets: the token is read from its 0600 file at run time)."""
    p, d = spec.placement, spec.cluster.defaults
    q = shlex.quote
    name = spec.submission_name or f"rft-{spec.job_id}-{spec.attempt}"
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --nodes={p.nodes}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --cpus-per-task={max(1, p.processes_per_node)}"]
    if p.gpus_per_node > 0:
        lines.append(f"#SBATCH --gpus-per-node={p.gpus_per_node}")
    if d.partition:
        lines.append(f"#SBATCH --partition={d.partition}")
    if d.account:
        lines.append(f"#SBATCH --account={d.account}")
    if d.time_limit:
        lines.append(f"#SBATCH --time={d.time_limit}")
    lines += [f"#SBATCH --chdir={spec.storage_dir}", f"#SBATCH --output={spec.storage_dir}/slurm-%j.log",
              "#SBATCH --open-mode=append", "", "set -euo pipefail",
              "unset RFT_HOME RFT_TOKEN  # sbatch exports the submitter's environment: never the daemon's store"]
    for key, value in sorted(spec.env.items()):
        lines.append(f"export {key}={q(value)}")
    if spec.token_file:
        lines.append(f"export RFT_REPORT_TOKEN=\"$(cat {q(spec.token_file)})\"")
    lines += [
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        # the address Slurm itself reaches that node at (NodeAddr; the node name where none is set)
        'head_addr=$(scontrol show node "$head_node" 2>/dev/null '
        '| sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\' || true)',
        f"export RFT_RDZV_ENDPOINT=\"${{head_addr:-$head_node}}:$(( {RDZV_PORT_BASE} + SLURM_JOB_ID % 10000 ))\"",
        'echo "[sbatch] job $SLURM_JOB_ID: $SLURM_NNODES node(s), rendezvous at $head_node ($RFT_RDZV_ENDPOINT)"',
    ]
    # per node (srun's task): the first node's torchrun hosts the rendezvous store -- said explicitly, as
    # torch's guess (does the endpoint name this machine?) is true on every node that shares the address
    rdzv = ("--nnodes=\"$SLURM_NNODES\" --rdzv_backend=c10d --rdzv_endpoint=\"$RFT_RDZV_ENDPOINT\" "
            "--rdzv_id=\"$SLURM_JOB_ID\" --rdzv_conf=is_host=$(( SLURM_NODEID == 0 ))")
    cmd = "exec " + " ".join(q(a) for a in [spec.python, "-m", "daemon.worker.torchrun"]) + " " + rdzv + " " + \
        " ".join(q(a) for a in [f"--nproc_per_node={p.processes_per_node}", "-m", "daemon.worker", spec.job_id])
    lines.append(f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 /bin/bash -c {q(cmd)}")
    return "\n".join(lines) + "\n"


def ssh_command(cluster: api.Cluster) -> list[str]:
    """`ssh` to the login host: keys only (BatchMode), `USER@HOST:PORT` as `-p PORT`, then the cluster's own
    ssh_options (an identity, an ssh config file, known-hosts handling)."""
    target = cluster.ssh or ""
    host, _, port = target.rpartition(":")
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if host and port.isdigit():
        cmd += ["-p", port]
        target = host
    return [*cmd, *shlex.split(cluster.ssh_options or ""), target]


class SlurmExecutor:
    kind = "slurm"

    def __init__(self, cluster: api.Cluster) -> None:
        self.cluster = cluster

    def run(self, args: list[str], stdin: str | None = None, timeout: float = COMMAND_TIMEOUT_S
            ) -> subprocess.CompletedProcess[str]:
        """A Slurm command, here or over `ssh LOGIN_HOST`; a missing command is ExecutorUnavailable with the fix."""
        cmd = args
        if self.cluster.ssh:
            cmd = [*ssh_command(self.cluster), " ".join(shlex.quote(a) for a in args)]
        try:
            return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            where = f"on {self.cluster.ssh}" if self.cluster.ssh else "on this machine"
            raise ExecutorUnavailable(f"{cmd[0]} is not installed {where}; Slurm clusters need Slurm's "
                                      "client commands (sbatch, squeue, sacct, scancel)" +
                                      ("" if self.cluster.ssh else ", or `--ssh LOGIN_HOST`")) from None
        except subprocess.TimeoutExpired:
            raise ExecutorUnavailable(f"{' '.join(args[:2])} did not answer within {timeout:.0f} s",
                                      transient=True) from None

    def raise_unreachable(self, done: subprocess.CompletedProcess[str]) -> None:
        """ssh's own failure (255), or a controller that does not answer: the cluster is away, not refusing.

        Said the same way whichever command met it, so a job waiting for its cluster gets one event, not one
        per command tried."""
        said = (done.stderr or done.stdout).strip()[:500]
        if (self.cluster.ssh is not None and done.returncode == 255) or "Unable to contact slurm controller" in said:
            raise ExecutorUnavailable(f"could not reach the cluster: {said}", transient=True)

    # ------------------------------------------------------------------ submission

    def describe(self, spec: LaunchSpec) -> str:
        return batch_script(spec)

    def submit(self, spec: LaunchSpec) -> str:
        script = batch_script(spec)
        path = spec.storage_dir / f"sbatch-{spec.attempt}.sh"
        path.write_text(script, encoding="utf-8")
        path.chmod(0o700)
        done = self.run(["sbatch", "--parsable", str(path)])
        if done.returncode != 0:
            self.raise_unreachable(done)
            raise ExecutorUnavailable(f"sbatch refused the job: {(done.stderr or done.stdout).strip()[:500]}")
        engine_id = done.stdout.strip().split(";")[0]
        if not engine_id.isdigit():
            raise ExecutorUnavailable(f"sbatch answered {done.stdout.strip()[:200]!r}, not a job id")
        return engine_id

    def find(self, submission_name: str) -> str | None:
        """The job submitted under this --job-name: squeue (every state slurmctld still holds), then sacct.

        Only a squeue that answered counts as "none": a controller that cannot be asked raises (transient)."""
        q = self.run(["squeue", "-h", "--states=all", "--name", submission_name, "-o", "%i"])
        if q.returncode != 0:
            self.raise_unreachable(q)
            raise ExecutorUnavailable(f"squeue could not look up {submission_name}: "
                                      f"{(q.stderr or q.stdout).strip()[:300]}", transient=True)
        ids = [w for w in q.stdout.split() if w.isdigit()]
        if not ids:  # finished longer ago than MinJobAge: accounting may still know it
            a = self.run(["sacct", "-n", "-X", "-P", "--starttime=now-30days", "--name", submission_name,
                          "-o", "JobID"])
            ids = [w for w in a.stdout.split() if w.isdigit()] if a.returncode == 0 else []
        return min(ids, key=int) if ids else None

    # ------------------------------------------------------------------ state

    def status(self, engine_id: str) -> EngineStatus:
        try:
            return self._status(engine_id)
        except ExecutorUnavailable as e:
            return EngineStatus("unknown", str(e))

    def _status(self, engine_id: str) -> EngineStatus:
        q = self.run(["squeue", "-h", "-j", engine_id, "-o", "%T|%r"])
        if q.returncode == 0 and q.stdout.strip():
            state, _, reason = q.stdout.strip().splitlines()[0].partition("|")
            return EngineStatus(engine_state(state), "" if reason in ("None", "") else reason)  # type: ignore[arg-type]
        a = self.run(["sacct", "-n", "-X", "-P", "-j", engine_id, "-o", "State,ExitCode"])
        if a.returncode == 0 and a.stdout.strip():
            state, _, code = a.stdout.strip().splitlines()[0].partition("|")
            return EngineStatus(engine_state(state), f"{state.strip()} (exit code {code.strip()})")  # type: ignore[arg-type]
        return self._scontrol_status(engine_id)

    def _scontrol_status(self, engine_id: str) -> EngineStatus:
        s = self.run(["scontrol", "show", "job", "-o", engine_id])
        if s.returncode != 0:
            if "Invalid job id" in s.stderr:
                return EngineStatus("gone", f"Slurm no longer knows job {engine_id}")
            return EngineStatus("unknown", (s.stderr or s.stdout).strip()[:300])
        fields = dict(re.findall(r"(\w+)=(\S*)", s.stdout))
        state = fields.get("JobState", "")
        return EngineStatus(engine_state(state),  # type: ignore[arg-type]
                            f"{state} (exit code {fields.get('ExitCode', '?')}, reason {fields.get('Reason', '?')})")

    def stop(self, engine_id: str) -> None:
        done = self.run(["scancel", engine_id])
        if done.returncode != 0 and "already completing or completed" not in done.stderr \
                and "Invalid job id" not in done.stderr:
            raise ExecutorUnavailable(f"scancel {engine_id} failed: {done.stderr.strip()[:300]}")

    def logs(self, engine_id: str, spec_dir: Path) -> str | None:
        try:
            return log_path(spec_dir, engine_id).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def test(self, timeout_s: float) -> api.ClusterTestResult:
        started = time.monotonic()
        d = self.cluster.defaults
        storage = Path(d.storage).expanduser() / "rft-tui" / "tests"
        args = ["sbatch", "--parsable", "--job-name=rft-test", f"--chdir={storage}",
                f"--output={storage}/slurm-%j.log", "--wrap", "echo rft-tui cluster test on $(hostname)"]
        for flag, value in (("--partition", d.partition), ("--account", d.account)):
            if value:
                args.insert(2, f"{flag}={value}")
        try:
            storage.mkdir(parents=True, exist_ok=True)
            done = self.run(args)
            if done.returncode != 0:
                raise ExecutorUnavailable((done.stderr or done.stdout).strip()[:500])
            engine_id = done.stdout.strip().split(";")[0]
        except (ExecutorUnavailable, OSError) as e:
            return api.ClusterTestResult(name=self.cluster.name, ok=False, state="unreachable",
                                         round_trip_s=round(time.monotonic() - started, 3), detail=str(e))
        state = "pending"
        while time.monotonic() - started < timeout_s:
            state = self.status(engine_id).state
            if state in ("succeeded", "failed", "stopped", "gone"):
                break
            time.sleep(0.2)  # polling an engine (not a test): squeue has no completion callback
        took = round(time.monotonic() - started, 3)
        output = (self.logs(engine_id, storage) or "").strip()
        return api.ClusterTestResult(name=self.cluster.name, ok=state == "succeeded", engine_id=engine_id,
                                     round_trip_s=took, state=state, output=output[-2000:],
                                     detail="" if state == "succeeded" else f"the test job ended {state}")
