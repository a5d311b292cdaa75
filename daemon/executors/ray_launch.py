"""`python -m daemon.executors.ray_launch JOB_ID`: a Ray job's entrypoint, on the cluster (see executors/ray.py).

Reads the placement from the environment the daemon set in the runtime_env (RFT_NODES,
RFT_PROCS_PER_NODE, RFT_GPUS_PER_NODE). One node: exec torchrun --standalone here (Ray already placed this
entrypoint on a node holding the resources). Several nodes: a STRICT_SPREAD placement group, one actor per
node, each running torchrun with c10d rendezvous at the first node's address; the exit code is the worst
node's. A stop from Ray (SIGTERM) reaches torchrun through the process group (one node) or through the
actors' parent-death signal (several nodes).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Any


def torchrun(job_id: str, rendezvous: list[str]) -> list[str]:
    procs = os.environ.get("RFT_PROCS_PER_NODE", "1")
    return [sys.executable, "-m", "daemon.worker.torchrun", *rendezvous, f"--nproc_per_node={procs}",
            "-m", "daemon.worker", job_id]


SECRET_VARS = ("RFT_REPORT_TOKEN", "RFT_STORAGE_OPTIONS")
SECRETS_FILE = "job-secrets.json"  # daemon/executors/ray.py writes it into the submission's working_dir


def read_secrets() -> None:
    """URL storage: the report token and storage options, from the working_dir Ray unpacked as our cwd."""
    try:
        with open(SECRETS_FILE, encoding="utf-8") as f:
            secrets = json.load(f)
    except FileNotFoundError:
        return
    for key in SECRET_VARS:
        if key in secrets and key not in os.environ:
            os.environ[key] = str(secrets[key])


def node_scratch(job_id: str) -> str:
    """A private scratch dir on this node for one job (report journal, checkpoints before upload, files)."""
    path = os.path.join(tempfile.gettempdir(), f"rft-tui-{os.getuid()}", job_id)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def undelivered(scratch: str) -> int:
    """Records the workers journalled in `scratch` (every rank's journal) that only this disk holds."""
    from daemon.worker.journal import undelivered as in_journal

    return sum(in_journal(d) for d in glob.glob(os.path.join(scratch, "report-journal*")))


def run_in_scratch(cmd: list[str], scratch: str, env: dict[str, str], who: str = "") -> int:
    """Run torchrun in this node's scratch dir, then remove the dir unless it holds records nobody else has
    (the journal of a worker that reached neither the daemon nor the storage: a worker restarted here sends
    them). torchrun ends with this process (parent-death signal) and stays in its process group, so a stop
    from Ray reaches it as before; a stopped job's scratch dir stays."""
    code = subprocess.call(cmd, env={**os.environ, **env, "RFT_WORK_DIR": scratch}, cwd=scratch,
                           preexec_fn=_die_with_parent)
    left = undelivered(scratch)
    if left:
        print(f"[ray_launch] {who}{left} undelivered record(s): keeping {scratch}", flush=True)
    else:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"[ray_launch] {who}scratch dir {scratch} removed", flush=True)
    return code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: torchrun ends when its actor does


def run_nodes(job_id: str, nodes: int, gpus: int) -> int:
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray.init()
    per_node: dict[str, float] = {"CPU": 1.0}
    if gpus > 0:
        per_node["GPU"] = float(gpus)
    pg = placement_group([per_node] * nodes, strategy="STRICT_SPREAD")
    ray.get(pg.ready())

    @ray.remote(num_cpus=1, num_gpus=gpus)
    class NodeRunner:
        def address(self) -> tuple[str, int, str]:
            return ray.util.get_node_ip_address(), free_port(), ray.get_runtime_context().get_node_id()

        def run(self, rank: int, cmd: list[str], env: dict[str, str]) -> int:
            node = ray.get_runtime_context().get_node_id()
            print(f"[ray_launch] node rank {rank} on Ray node {node}: {' '.join(cmd[1:])}", flush=True)
            cwd = os.environ.get("RFT_JOB_STORAGE")
            if cwd is None or "://" in cwd:  # URL storage: this node's own scratch dir, removed after
                return run_in_scratch(cmd, node_scratch(job_id), env, who=f"node rank {rank}: ")
            return subprocess.call(cmd, env={**os.environ, **env}, cwd=cwd, preexec_fn=_die_with_parent)

    actors: list[Any] = [NodeRunner.options(  # type: ignore[attr-defined]
        scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)).remote()
        for i in range(nodes)]
    host, port, _ = ray.get(actors[0].address.remote())
    print(f"[ray_launch] {nodes} nodes reserved (STRICT_SPREAD); rendezvous at {host}:{port}", flush=True)
    rdzv = [f"--nnodes={nodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={host}:{port}", f"--rdzv_id={job_id}"]
    # the first node's torchrun hosts the rendezvous store; said explicitly, as torch's guess (does the endpoint
    # name this machine?) is true on every node when several Ray nodes share a host
    # the token is not in the runtime_env (Ray shows that to anyone): hand it to each node's torchrun
    secret = {k: v for k, v in os.environ.items() if k in SECRET_VARS}
    runs = {a.run.remote(i, torchrun(job_id, [*rdzv, f"--rdzv_conf=is_host={int(i == 0)}"]), secret): i
            for i, a in enumerate(actors)}
    return wait_nodes(runs, actors)


def wait_nodes(runs: dict[Any, int], actors: list[Any]) -> int:
    """The worst node's exit code. A node that fails stops the others at once: they would wait for it in the
    rendezvous or in a collective until torch's timeouts (10-30 min). Killing an actor ends its torchrun
    (parent-death signal)."""
    import ray

    codes: list[int] = []
    pending = list(runs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            code = int(ray.get(done[0]))
        except Exception as e:  # noqa: BLE001 - the actor itself died (its node went away)
            print(f"[ray_launch] node rank {runs[done[0]]} lost: {type(e).__name__}: {e}", flush=True)
            code = 1
        codes.append(code)
        if code != 0 and pending:
            print(f"[ray_launch] node rank {runs[done[0]]} exited {code}: stopping the other node(s)", flush=True)
            for actor in actors:
                ray.kill(actor)
            break
    return max(codes, key=abs)


def main(argv: list[str]) -> int:
    job_id = argv[1]
    nodes = int(os.environ.get("RFT_NODES", "1"))
    gpus = int(os.environ.get("RFT_GPUS_PER_NODE", "0"))
    storage = os.environ.get("RFT_JOB_STORAGE")
    if storage and "://" in storage:  # URL storage: secrets from the working_dir package, scratch on this node
        read_secrets()
        os.environ["RFT_WORK_DIR"] = node_scratch(job_id)
        os.chdir(os.environ["RFT_WORK_DIR"])
    elif storage:
        os.chdir(storage)
        token_file = os.path.join(storage, "job-token")
        if "RFT_REPORT_TOKEN" not in os.environ and os.path.exists(token_file):
            with open(token_file, encoding="utf-8") as f:  # not in the runtime_env, which Ray shows to anyone
                os.environ["RFT_REPORT_TOKEN"] = f.read().strip()
    print(f"[ray_launch] job {job_id}: {nodes} node(s) x {os.environ.get('RFT_PROCS_PER_NODE', '1')} process(es) "
          f"on {socket.gethostname()}", flush=True)
    if nodes == 1:
        cmd = torchrun(job_id, ["--standalone"])
        if storage and "://" in storage:
            return run_in_scratch(cmd, os.environ["RFT_WORK_DIR"], {})
        os.execv(cmd[0], cmd)
    return run_nodes(job_id, nodes, gpus)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
