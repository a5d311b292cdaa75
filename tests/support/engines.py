"""Real cluster engines for the tests: a local Ray head and a one-node Slurm, each started once per session.

Both run in a private mount namespace (`unshare --mount`) where `hidden` -- the directory holding every
cluster test's RFT_HOME -- is covered by an empty tmpfs: a worker on these clusters cannot open the daemon's
store even by path, so whatever reaches the store came over the daemon's HTTP API. Everything else (the
repository, the venv, the cluster storage, the model cache) is the same file system.

Engines are started by their own commands and stopped by killing the process groups we started (never
`ray stop`/`pkill`, which would reach other users' engines on a shared machine).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.daemon_proc import wait_until

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A free TCP port from the kernel's ephemeral range (outside Ray's worker ports, 10002-19999)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_env() -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RFT_HOME", None)
    return env


def hidden_namespace(hidden: Path, command: str) -> list[str]:
    """`command` in a private mount namespace where `hidden` is an empty, owner-only tmpfs."""
    script = f"mount -t tmpfs -o size=1m,mode=0700 tmpfs {shlex.quote(str(hidden))} && exec {command}"
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@dataclass
class RayHead:
    address: str  # the job server, http://127.0.0.1:PORT
    gcs_address: str  # what another node joins: 127.0.0.1:PORT
    temp_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add_node(self, hidden: Path, num_cpus: int = 1, timeout: float = 90.0) -> None:
        """A second Ray node on this machine (same hidden-home namespace): what multi-node placement needs."""
        args = ["ray", "start", "--block", f"--address={self.gcs_address}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={num_cpus}", "--num-gpus=0", *_node_ports(), "--object-store-memory=100000000",
                "--disable-usage-stats"]
        with open(self.temp_dir.parent / f"{self.temp_dir.name}-node{len(self.nodes) + 1}.log", "wb") as out:
            self.nodes.append(subprocess.Popen(hidden_namespace(hidden, " ".join(shlex.quote(a) for a in args)),
                                               env=_ray_env(), stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True, cwd=REPO))
        want = 2 + len(self.nodes) - 1

        def joined() -> bool:
            import httpx

            try:
                nodes = httpx.get(f"{self.address}/nodes?view=summary", timeout=5).json()["data"]["summary"]
            except (httpx.HTTPError, KeyError, ValueError):
                return False
            return sum(1 for n in nodes if n.get("raylet", {}).get("state") == "ALIVE") >= want

        wait_until(joined, timeout, interval=0.5, what="the Ray node to join")

    def stop(self) -> None:
        for node in self.nodes:
            _kill_group(node)
        _kill_group(self.proc)
        # raylet & co. may have put themselves in other groups: end the ones whose session dir is ours
        for pid in _pids_mentioning(str(self.temp_dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        for log in self.temp_dir.parent.glob(f"{self.temp_dir.name}*.log"):
            log.unlink(missing_ok=True)


def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line names `text` (our Ray session dir): ours by construction."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(entry.name) != os.getpid():
            out.append(int(entry.name))
    return out


def _node_ports() -> list[str]:
    """Every port a Ray node opens besides the worker range: free ones (several sessions share a machine)."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]


def _ray_env() -> dict[str, str]:
    return {**engine_env(), "RAY_memory_monitor_refresh_ms": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def start_ray_head(hidden: Path, num_cpus: int = 2, timeout: float = 120.0) -> RayHead:
    """`ray start --head --block` (2 CPUs, small object store, free ports) in the hidden-home namespace."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    dashboard, gcs = free_port(), free_port()
    args = ["ray", "start", "--head", "--block", f"--num-cpus={num_cpus}", "--num-gpus=0",
            "--node-ip-address=127.0.0.1", f"--port={gcs}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}", *_node_ports(), f"--ray-client-server-port={free_port()}",
            "--object-store-memory=100000000", f"--temp-dir={temp_dir}", "--disable-usage-stats",
            "--include-dashboard=true"]
    log = temp_dir.parent / f"{temp_dir.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(hidden_namespace(hidden, " ".join(shlex.quote(a) for a in args)), env=_ray_env(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    head = RayHead(address=f"http://127.0.0.1:{dashboard}", gcs_address=f"127.0.0.1:{gcs}", temp_dir=temp_dir,
                   proc=proc, log=log)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("ray start exited:\n" + log.read_text(errors="replace")[-3000:])
        import httpx

        try:
            return httpx.get(f"{head.address}/api/version", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout, interval=0.5, what="the Ray head's job server")
    except BaseException:
        head.stop()
        raise
    return head


# ---------------------------------------------------------------------- Slurm

SLURM_CONF = """\
ClusterName=rfttest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d{each}
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd{each}.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd{each}.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
MinJobAge=600
KillWait=5
InactiveLimit=0
{nodes}
PartitionName=debug Nodes={node_names} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""
ONE_NODE = "NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN"
# several slurmd on this one host: a node name each (-N), its own port, spool, pid and log file (%n)
EACH_NODE = "NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={cpus} State=UNKNOWN"


@dataclass
class SlurmCluster:
    conf: Path
    state: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmd-n1.log", "slurmd-n2.log", "munged.log"):
            p = self.state / name
            if p.exists():
                parts.append(f"--- {name}\n" + p.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel what still runs (a job's slurmstepd outlives slurmd and its srun would wait for ever on a gone
        slurmctld), stop the daemons, then end any job process left behind (its script lives in our state dir)."""
        env = {**os.environ, **self.env}
        try:
            subprocess.run(["scancel", "--quiet", "--full", "--user=root"], env=env, timeout=10,
                           capture_output=True)
            wait_until(lambda: not subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True,
                                                  timeout=10).stdout.strip(), 15, interval=0.3, what="no Slurm job")
        except (OSError, subprocess.SubprocessError, AssertionError, TimeoutError):
            pass  # best effort: what is left is ended below
        for proc in reversed(self.procs):
            _kill_group(proc, grace_s=5)
        for pid in _pids_mentioning(str(self.state)):
            try:
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if Path(f"/proc/{parent}/cmdline").read_bytes().startswith(b"slurmstepd"):
                    os.kill(parent, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                continue
        shutil.rmtree(self.state, ignore_errors=True)


def start_slurm(hidden: Path, cpus: int = 2, timeout: float = 60.0, nodes: int = 1) -> SlurmCluster:
    """munged (as user munge), slurmctld and slurmd (in the hidden-home namespace), no cgroups: one CPU node
    named after this host, or `nodes` nodes n1..nN (one slurmd each, all on this host, `cpus` CPUs each)."""
    key = Path("/etc/munge/munge.key")
    if not key.exists():  # Debian's postinst makes one; a minimal image may not have run it
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
        shutil.chown(key, "munge", "munge")
        os.chmod(key, 0o400)
    state = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
    os.chmod(state, 0o755)
    for sub in ("ctld", "d", "munge"):
        (state / sub).mkdir()
    shutil.chown(state / "munge", "munge", "munge")
    os.chmod(state / "munge", 0o700)
    munge_socket = state / "munge" / "munge.socket"
    host = socket.gethostname().split(".")[0]
    conf = state / "slurm.conf"
    names = [host] if nodes == 1 else [f"n{i}" for i in range(1, nodes + 1)]
    node_lines = ONE_NODE.format(host=host, cpus=cpus) if nodes == 1 else "\n".join(
        EACH_NODE.format(name=name, host=host, port=free_port(), cpus=cpus) for name in names)
    for name in names[1:] if nodes > 1 else []:
        (state / f"d-{name}").mkdir()
    if nodes > 1:
        (state / "d").rename(state / f"d-{names[0]}")
    conf.write_text(SLURM_CONF.format(host=host, ctld_port=free_port(), d_port=free_port(), state=state,
                                      munge_socket=munge_socket, nodes=node_lines, node_names=",".join(names),
                                      each="" if nodes == 1 else "-%n"))
    cluster = SlurmCluster(conf=conf, state=state)
    env = {**engine_env(), "SLURM_CONF": str(conf)}
    try:
        munged = ["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--foreground", f"--socket={munge_socket}",
                  f"--pid-file={state}/munge/munged.pid", f"--seed-file={state}/munge/seed",
                  f"--log-file={state}/munge/munged.log", "--force"]
        cluster.procs.append(subprocess.Popen(munged, env=env, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True))
        wait_until(lambda: munge_socket.exists(), 20, interval=0.1, what="munged's socket")
        with open(state / "slurmctld.out", "wb") as out:
            cluster.procs.append(subprocess.Popen(["/usr/sbin/slurmctld", "-D", "-i", "-f", str(conf)], env=env,
                                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        for name in names:
            with open(state / ("slurmd.out" if nodes == 1 else f"slurmd-{name}.out"), "wb") as out:
                slurmd = f"/usr/sbin/slurmd -D -f {shlex.quote(str(conf))} -N {shlex.quote(name)}"
                cluster.procs.append(subprocess.Popen(hidden_namespace(hidden, slurmd), env=env, stdout=out,
                                                      stderr=subprocess.STDOUT, start_new_session=True))

        def idle() -> bool:
            for p in cluster.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a Slurm daemon exited ({p.args!r}):\n{cluster.logs()}")
            done = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True,
                                  timeout=10)
            states = done.stdout.split()
            return done.returncode == 0 and len(states) == nodes and all(t in ("idle", "mixed") for t in states)

        wait_until(idle, timeout, interval=0.5, what="the Slurm node to be idle")
    except BaseException:
        cluster.stop()
        raise
    return cluster
