"""Hostile python graders against a REAL daemon, run by root and by a normal user.

Every grader goes through `POST /v1/fine_tuning/alpha/graders/run` over the daemon's TCP port (with
its token), exactly as a user's would. Each attack's effect is checked from OUTSIDE the sandbox: the
host's files, the processes' liveness (psutil), a TCP listener's backlog, another grader's reward.
"""

from __future__ import annotations

import ast
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from daemon import api
from graders import PythonGraderPool, sandbox_mode
from tests.support.daemon_proc import REPO, DaemonProcess
from tests.support.nonroot import NormalUser, UserDaemon, normal_user, private_home

pytestmark = pytest.mark.skipif(sandbox_mode() != "bubblewrap", reason=f"the grader sandbox is {sandbox_mode()}")

EXAMPLES = REPO / "examples" / "graders"


@dataclass
class Target:
    """A running daemon, who runs it, and the secrets planted for it."""

    kind: str
    daemon: Any
    uid: int
    user_home: Path
    secret: Path
    secret_text: str

    @property
    def home(self) -> Path:
        return Path(self.daemon.home)

    def grade(self, source: str, sample: str = "x", item: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.daemon.client() as c:
            response = c.run_grader({"type": "python", "name": "g", "source": source}, sample, item or {})
        return response.model_dump(mode="json")

    def health(self) -> Any:
        with self.daemon.client(timeout=5) as c:
            return c.health()

    def descendants(self) -> set[int]:
        """Every process under the daemon (the grader workers: bwrap, its init, python)."""
        return {p.pid for p in psutil.Process(self.health().pid).children(recursive=True)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plant_secret(home: Path, uid: int, gid: int) -> tuple[Path, str]:
    text = "SECRET-" + secrets.token_hex(8)
    path = home / f".rft-sbx-secret-{secrets.token_hex(4)}"
    path.write_text(text)
    os.chown(path, uid, gid)
    path.chmod(0o600)
    return path, text


@pytest.fixture(scope="module", params=["root", "user"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    env = {"RFT_SANDBOX": "", "RFT_BWRAP": ""}
    work = Path(tempfile.mkdtemp(prefix="rft-sbx-"))  # the normal user's venv: readable by that user
    work.chmod(0o755)
    if request.param == "root":
        if os.geteuid() != 0:
            pytest.skip("the root daemon needs the tests to run as root (CI does)")
        home = Path(tempfile.mkdtemp(prefix="rft-r-"))
        daemon: Any = DaemonProcess(home, env=env, tcp=f"127.0.0.1:{_free_port()}").start()
        entry = pwd.getpwuid(0)
    else:
        user = normal_user(work)
        if isinstance(user, str):
            shutil.rmtree(work, ignore_errors=True)
            pytest.skip(user)
        assert isinstance(user, NormalUser)
        home = private_home(user)
        daemon = UserDaemon(home, user, tcp=f"127.0.0.1:{_free_port()}", env=env).start()
        entry = pwd.getpwnam(user.name)
    user_home = Path(entry.pw_dir)
    user_home.mkdir(exist_ok=True)
    secret, text = _plant_secret(user_home, entry.pw_uid, entry.pw_gid)
    try:
        yield Target(request.param, daemon, entry.pw_uid, user_home, secret, text)
    finally:
        daemon.stop()
        secret.unlink(missing_ok=True)
        shutil.rmtree(home, ignore_errors=True)
        Path(f"{home}.log").unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def _observed(response: dict[str, Any]) -> Any:
    """The dict an attack grader raised as `RuntimeError(repr(seen))`, read back from the error details."""
    details = response["metadata"]["errors"]["python_grader_runtime_error_details"] or ""
    line = next(ln for ln in reversed(details.splitlines()) if ln.startswith("RuntimeError: "))
    return ast.literal_eval(line[len("RuntimeError: "):])


@pytest.mark.slow
def test_the_daemon_reports_the_sandbox(target: Target) -> None:
    health = target.health()
    assert psutil.Process(health.pid).uids().real == target.uid  # the daemon runs as the user we meant
    assert health.sandbox == "bubblewrap"
    response = target.grade("def grade(s, i):\n    return 0.5\n")
    assert response["reward"] == 0.5 and response["metadata"]["sandbox"] == "bubblewrap"


def test_secrets_are_not_there(target: Target) -> None:
    paths = [str(target.home / "run" / "token"), str(target.home / "rft.db"), str(target.secret), "/etc/shadow",
             "/etc/passwd", str(target.user_home / ".bashrc")]
    dirs = ["/home", str(target.user_home), str(target.home), "/etc", "/root"]
    assert (target.home / "run" / "token").exists() and (target.home / "rft.db").exists()
    source = f"""
import os
def grade(sample, item):
    seen = {{}}
    for path in {paths!r}:
        try:
            with open(path, 'rb') as f:
                seen[path] = 'READ ' + f.read(300).decode('latin-1')
        except Exception as e:
            seen[path] = type(e).__name__
    for d in {dirs!r}:
        try:
            seen[d] = 'LIST ' + ','.join(sorted(os.listdir(d)))
        except Exception as e:
            seen[d] = type(e).__name__
    raise RuntimeError(repr(seen))
"""
    response = target.grade(source)
    seen = _observed(response)
    for path in paths:
        assert seen[path] == "FileNotFoundError", (path, seen[path])
    assert target.secret_text not in str(response)
    assert seen["/etc"] == "LIST ld.so.cache"
    assert seen["/home"] == "FileNotFoundError" and seen[str(target.home)] == "FileNotFoundError"
    # the interpreter's own prefix may live under a home (pyenv in /root); nothing else of it is there
    for d in ("/root", str(target.user_home)):
        assert seen[d] in ("FileNotFoundError", "LIST .pyenv"), (d, seen[d])


def test_writes_outside_the_private_scratch_leave_nothing_on_the_host(target: Target) -> None:
    marker = "rft-sbx-" + secrets.token_hex(6)
    bashrc = target.user_home / ".bashrc"
    before = bashrc.read_text(errors="replace") if bashrc.exists() else None
    places = [f"/tmp/{marker}", f"/dev/shm/{marker}", f"/var/tmp/{marker}", str(bashrc),
              str(target.home / "graders" / f"{marker}.json"), str(REPO / marker), f"/{marker}"]
    source = f"""
def grade(sample, item):
    seen = {{}}
    for path in {places!r}:
        try:
            with open(path, 'a') as f:
                f.write({marker!r})
            seen[path] = 'WROTE'
        except Exception as e:
            seen[path] = type(e).__name__
    raise RuntimeError(repr(seen))
"""
    seen = _observed(target.grade(source))
    try:
        for path in places:
            if path == str(bashrc):
                continue
            assert not os.path.exists(path), f"{path} appeared on the host (inside: {seen[path]})"
        after = bashrc.read_text(errors="replace") if bashrc.exists() else None
        assert after == before and marker not in (after or "")
        assert seen[f"/tmp/{marker}"] == "WROTE"  # the private tmpfs is writable...
        assert seen[str(bashrc)] != "WROTE" and seen[f"/{marker}"] != "WROTE"  # ...nothing else
    finally:  # undo whatever a failing sandbox let through
        for path in places[:3] + places[4:]:
            Path(path).unlink(missing_ok=True)
        if before is not None and bashrc.read_text(errors="replace") != before:
            bashrc.write_text(before)


def test_no_socket_reaches_the_daemon_or_the_network(target: Target) -> None:
    daemon_socket = target.health().socket
    marker = "rft-sbx-" + secrets.token_hex(6)
    request = (f"PUT /v1/graders/{marker}.json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: 2\r\n\r\n{}")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # a connection would complete into this backlog even before accept()
        port = listener.getsockname()[1]
        source = f"""
import ctypes, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
def grade(sample, item):
    seen = {{}}
    fd = libc.socket(2, 1, 0)
    seen['raw_tcp_socket'] = (fd, ctypes.get_errno())
    if fd >= 0:
        addr = struct.pack('=H', 2) + struct.pack('!H4s8x', {port}, socket.inet_aton('127.0.0.1'))
        seen['raw_tcp_connect'] = libc.connect(fd, addr, len(addr))
    fd = libc.socket(1, 1, 0)
    seen['raw_unix_socket'] = (fd, ctypes.get_errno())
    if fd >= 0:
        path = {daemon_socket!r}.encode()
        addr = struct.pack('=H', 1) + path + b'\\0' * (108 - len(path))
        seen['raw_unix_connect'] = libc.connect(fd, addr, len(addr))
        seen['raw_unix_send'] = libc.send(fd, {request.encode()!r}, {len(request)}, 0)
    seen['socketpair'] = libc.socketpair(1, 1, 0, (ctypes.c_int * 2)())
    for family, where in ((socket.AF_INET, ('127.0.0.1', {port})), (socket.AF_UNIX, {daemon_socket!r})):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.connect(where)
            seen[str(family)] = 'CONNECTED'
        except Exception as e:
            seen[str(family)] = type(e).__name__
    raise RuntimeError(repr(seen))
"""
        seen = _observed(target.grade(source))
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert seen["raw_tcp_socket"][0] == -1 and seen["raw_unix_socket"][0] == -1 and seen["socketpair"] == -1
    assert "CONNECTED" not in seen.values()
    assert not (target.home / "graders" / f"{marker}.json").exists()


HONEST = "import math\ndef grade(sample, item):\n    return float(math.isclose(len(sample['output_text']), 99))\n"


def test_signals_reach_neither_the_daemon_nor_other_workers(target: Target) -> None:
    assert target.grade(HONEST)["reward"] == 0.0
    daemon_pid = target.health().pid
    with PythonGraderPool(size=1) as other_job:  # another job's grader, in another process
        assert other_job.grade(HONEST, [({"output_text": "x"}, {})])[0].value == 0.0
        other = {p.pid for pid in other_job.worker_pids()
                 for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]}
        honest = target.descendants()
        victims = sorted({daemon_pid, *honest, *other})
        killer = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def grade(sample, item):
    seen = {{}}
    for pid in {victims!r} + [os.getppid(), 1]:
        seen[pid] = (libc.kill(pid, 9), ctypes.get_errno())
    raise RuntimeError(repr(seen))
"""
        seen = _observed(target.grade(killer))
        assert target.grade(HONEST)["reward"] == 0.0  # B is now the most recent: the next grader evicts the killer
        warm = target.descendants()
        everyone = target.grade("import ctypes\ndef grade(s, i):\n    ctypes.CDLL(None).kill(-1, 9)\n    return 1.0\n")
        assert everyone["reward"] == 1.0  # kill(-1) spares the caller and its init: nothing else is in its namespace
        assert psutil.pid_exists(daemon_pid) and target.health().pid == daemon_pid
        for pid in honest & warm:
            assert psutil.pid_exists(pid), f"the honest grader's worker {pid} was killed"
        for pid in other:
            assert psutil.pid_exists(pid), f"another job's worker {pid} was killed"
        assert other_job.grade(HONEST, [({"output_text": "x"}, {})])[0].value == 0.0
        assert target.grade(HONEST)["reward"] == 0.0
    for pid in victims:
        if pid not in (1,):
            assert seen[pid][0] == -1, f"kill({pid}) succeeded inside the sandbox"


POISON = """
import builtins, math, sys, gc, json, struct, os
builtins.float = lambda *a: 1.0
builtins.isinstance = lambda *a: True
math.isclose = lambda *a, **k: True
sys.modules['__main__'].__dict__['grade'] = lambda s, i: 1.0
for obj in gc.get_objects():
    if type(obj).__name__ == 'Worker' and hasattr(obj, 'send'):
        for _ in range(50):  # forged result frames
            obj.send({'ok': True, 'value': 1.0})
        obj.key = None
        obj.grade = lambda s, i: 1.0
def grade(sample, item):
    return 1.0
"""


def test_poisoning_one_grader_never_reaches_another(target: Target) -> None:
    for _ in range(4):
        target.grade(POISON)
        response = target.grade(HONEST)
        assert response["reward"] == 0.0 and not any(v is True for v in response["metadata"]["errors"].values())


def test_filling_dev_shm_is_limited_and_leaves_nothing(target: Target) -> None:
    host_before = set(os.listdir("/dev/shm"))
    source = """
import os
def grade(sample, item):
    before = sorted(os.listdir('/dev/shm'))
    written, error = 0, None
    chunk = b'x' * (1024 * 1024)
    try:
        for n in range(16):
            with open(f'/dev/shm/fill{n}', 'wb') as f:
                for _ in range(8):
                    f.write(chunk)
                    written += len(chunk)
    except OSError as e:
        error = e.strerror
    raise RuntimeError(repr({'before': before, 'written': written, 'error': error}))
"""
    first = _observed(target.grade(source))
    second = _observed(target.grade(source))
    for seen in (first, second):
        assert seen["before"] == [], "files from the previous call survived"
        assert seen["error"] == "No space left on device" and seen["written"] <= 64 * 1024 * 1024
    assert set(os.listdir("/dev/shm")) <= host_before
    assert target.health().pid


def test_other_processes_are_invisible(target: Target) -> None:
    source = """
import os
def grade(sample, item):
    seen = {}
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                seen[int(pid)] = f.read().replace(b'\\0', b' ').decode(errors='replace')
    raise RuntimeError(repr(seen))
"""
    seen = _observed(target.grade(source))
    assert set(seen) <= {1, 2}, seen
    assert all("bwrap" in cmd or "sandbox_worker" in cmd for cmd in seen.values()), seen


EVAL = "def grade(sample, item):\n    return eval(sample['output_text'])\n"


@pytest.mark.parametrize("sample", ["-5", "1e308"])
def test_out_of_range_rewards_are_clamped_and_flagged(target: Target, sample: str) -> None:
    response = target.grade(EVAL, sample)
    errors = response["metadata"]["errors"]
    assert response["reward"] == (0.0 if sample == "-5" else 1.0)
    assert errors["python_grader_out_of_range_error"] is True
    assert float(sample) == float(errors["python_grader_out_of_range_error_details"].split()[2].rstrip(","))


def test_non_numbers_are_errors_and_the_worker_lives_on(target: Target) -> None:
    assert target.grade(EVAL, "0.5")["reward"] == 0.5
    workers = target.descendants()
    for sample, reason in [("True", "got bool"), ("'1'", "got str"), ("None", "got NoneType"),
                           ("float('nan')", "returned nan"), ("float('inf')", "returned inf"),
                           ("10**400", "too large for a float")]:
        response = target.grade(EVAL, sample)
        errors = response["metadata"]["errors"]
        assert response["reward"] == 0.0 and errors["python_grader_runtime_error"] is True, sample
        assert reason in errors["python_grader_runtime_error_details"], (sample, errors)
    assert target.grade(EVAL, "0.25")["reward"] == 0.25
    assert target.descendants() == workers, "a worker died or was replaced"


def test_ordinary_graders_and_the_examples_still_score(target: Target) -> None:
    ordinary = """
import json, math, re
def grade(sample, item):
    data = json.loads(sample['output_text'])
    digits = re.findall(r'\\d+', item['question'])
    return 1.0 if data['answer'] == sum(map(int, digits)) and math.isfinite(data['answer']) else 0.0
"""
    assert target.grade(ordinary, '{"answer": 46}', {"question": "12+34="})["reward"] == 1.0
    assert target.grade(ordinary, '{"answer": 45}', {"question": "12+34="})["reward"] == 0.0
    cases: list[tuple[str, str, dict[str, Any]]]
    cases = [("numeric_tolerance.py", "The answer is 3.1416", {"answer": "3.14159", "tolerance": 0.001}),
             ("numeric_tolerance.py", "about 3", {"answer": "3.14159"}),
             ("gene_ranking.py", "1. TP53\n2. BRCA1\n3. EGFR", {"reference_answer": "BRCA1"}),
             ("gene_ranking.py", "MYC, KRAS", {"reference_answer": ["EGFR"]})]
    for name, output, item in cases:
        source = (EXAMPLES / name).read_text()
        namespace: dict[str, Any] = {}
        exec(compile(source, name, "exec"), namespace)  # the expected value, computed outside the sandbox
        expected = min(1.0, max(0.0, float(namespace["grade"]({"output_text": output}, item))))
        response = target.grade(source, output, item)
        assert response["reward"] == pytest.approx(expected), (name, output, response["metadata"]["errors"])


# -- fail closed, and the explicit opt-out (a daemon of our own user) ----------------------------------


def _status_line(home: Path) -> str:
    cli = Path(sys.executable).with_name("rft-tui")
    out = subprocess.run([str(cli), "daemon", "status"], env={**os.environ, "RFT_HOME": str(home)},
                         capture_output=True, text=True, timeout=60)
    return next(ln for ln in out.stdout.splitlines() if "sandbox" in ln)


@pytest.mark.slow
def test_without_bubblewrap_the_daemon_refuses_python_graders_with_the_fix(daemon_factory) -> None:
    d = daemon_factory(env={"RFT_BWRAP": "/nonexistent/bwrap", "RFT_SANDBOX": ""})
    with d.client() as c:
        assert c.health().sandbox.startswith("unavailable: bubblewrap is not installed")
        response = c.run_grader({"type": "python", "name": "g", "source": "def grade(s, i):\n    return 1.0\n"},
                                "x", {}).model_dump(mode="json")
        declarative = c.run_grader({"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
                                    "reference": "x", "operation": "eq"}, "x", {})
    assert response["reward"] == 0.0
    errors = response["metadata"]["errors"]
    assert errors["python_grader_server_error"] is True
    assert errors["python_grader_server_error_type"] == "SandboxUnavailable"
    line = response["metadata"]["scores"]["other_error_details"]
    assert "\n" not in line and "apt-get install bubblewrap" in line and "RFT_SANDBOX=off" in line
    assert declarative.reward == 1.0  # only python graders are refused
    assert "unavailable" in _status_line(d.home)


@pytest.mark.slow
def test_with_the_sandbox_off_graders_run_and_say_so(daemon_factory) -> None:
    d = daemon_factory(env={"RFT_SANDBOX": "off"})
    with d.client() as c:
        assert c.health().sandbox == "off"
        response = c.run_grader({"type": "python", "name": "g", "source": "def grade(s, i):\n    return 0.75\n"},
                                "x", {}).model_dump(mode="json")
    assert response["reward"] == 0.75 and response["metadata"]["sandbox"] == "off"
    assert _status_line(d.home).split()[-1] == "off"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bubblewrap", "off"])
def test_a_job_grades_in_the_sandbox_or_says_it_is_off(daemon_factory, model_cache: Path, mode: str) -> None:
    """A real training job (the torch worker's own grader pool): sandboxed, or one warn event at start."""
    from tests.training.conftest import ARITH, FAST_HP, wait_status

    d = daemon_factory(env={"RFT_SANDBOX": "off" if mode == "off" else "", "RFT_MODEL_CACHE": str(model_cache)})
    grader = {"type": "python", "name": "exact",
              "source": "def grade(sample, item):\n    return float(sample['output_text'].strip() == item['answer'])\n"}
    with d.client() as c:
        train = c.import_file(str(ARITH / "train.jsonl")).id
        valid = c.import_file(str(ARITH / "valid.jsonl")).id
        job = c.create_job({"model": "builtin:tiny-arith", "training_file": train, "validation_file": valid,
                            "seed": 7, "method": {"type": "reinforcement", "reinforcement": {
                                "grader": grader, "hyperparameters": {**FAST_HP, "max_steps": 1, "eval_samples": 4}}}})
        done = wait_status(c, job.id, {api.JobStatus.succeeded, api.JobStatus.failed, api.JobStatus.cancelled})
        events = c.list_events(job.id, limit=200).data
        metrics = c.metrics(job.id).data
    assert done.status is api.JobStatus.succeeded, done.error
    warnings = [e for e in events if e.level == "warn" and "sandbox" in e.message.lower()]
    assert len(warnings) == (1 if mode == "off" else 0), [e.message for e in events]
    assert metrics and all(m.values["grader/graded"] > 0 and m.values["grader/errored"] == 0 for m in metrics)
