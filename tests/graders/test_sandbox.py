"""The python grader sandbox, with real worker processes: limits, isolation, recovery."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from graders import BatchGrader, PythonGraderPool, SandboxLimits, run_grader, sandbox_bwrap
from graders.impl.base import Runtime
from graders.impl.python import PythonEngine
from graders.spec import PythonGrader, parse_grader
from graders.templates import SampleContext

WALL = 1.5


pytestmark = pytest.mark.skipif(sandbox_bwrap.sandbox_mode() != "bubblewrap",
                                reason=f"the grader sandbox is {sandbox_bwrap.sandbox_mode()}")


@pytest.fixture(scope="module")
def pool() -> Iterator[PythonGraderPool]:
    with PythonGraderPool(size=2, limits=SandboxLimits(wall_time_s=WALL, memory_bytes=256 * 1024**2)) as p:
        yield p


def grade(pool: PythonGraderPool, body: str, sample: str = "46", item: dict | None = None):
    """Run a one-function grader through the real engine + pool; return its GraderResult."""
    source = "def grade(sample, item):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    spec = parse_grader({"type": "python", "name": "p", "source": source})
    assert isinstance(spec, PythonGrader)
    engine = PythonEngine(spec)
    return engine.grade_batch([SampleContext(sample, item or {"answer": "46"})], Runtime(pool=pool))[0]


def assert_pool_recovers(pool: PythonGraderPool) -> None:
    ok = grade(pool, "return float(sample['output_text'] == item['answer'])")
    assert ok.reward == 1.0 and not ok.errors


def test_grade_receives_openai_sample_and_item(pool: PythonGraderPool) -> None:
    result = grade(pool, "assert sample['output_json'] == {'a': [1]}\nassert item['answer'] == '46'\n"
                         "assert sample['output_text'] == '{\"a\": [1]}'\nreturn 0.25", sample='{"a": [1]}')
    assert result.reward == 0.25 and not result.errors


@pytest.mark.slow
def test_infinite_loop_is_killed_at_the_wall_limit(pool: PythonGraderPool) -> None:
    start = time.monotonic()
    result = grade(pool, "while True:\n    pass")
    assert time.monotonic() - start < WALL + 3
    assert result.reward == 0.0 and result.errors == {"unresponsive_reward_error"}
    assert_pool_recovers(pool)


def test_memory_bomb_is_a_server_error(pool: PythonGraderPool) -> None:
    result = grade(pool, "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))")
    assert result.reward == 0.0 and result.errors == {"python_grader_server_error"}
    assert result.to_dict()["metadata"]["errors"]["python_grader_server_error_type"] == "MemoryError"
    assert_pool_recovers(pool)


def test_fork_is_blocked_by_the_kernel_not_just_python(pool: PythonGraderPool) -> None:
    # os.fork is refused by the audit hook; a raw libc fork() bypasses Python and must fail with -1 (EAGAIN).
    blocked = grade(pool, "import os\nos.fork()\nreturn 1")
    assert blocked.errors == {"python_grader_runtime_error"}
    raw = grade(pool, "import ctypes\npid = ctypes.CDLL(None).fork()\nif pid == 0:\n    import os\n    os._exit(0)\n"
                      "return 1.0 if pid == -1 else 0.5")
    assert raw.reward == 1.0, "libc fork() succeeded inside the sandbox"
    thread = grade(pool, "import threading\nthreading.Thread(target=print).start()\nreturn 1")
    assert thread.errors == {"python_grader_runtime_error"}
    assert "can't start new thread" in thread.details["python_grader_runtime_error_details"]
    assert_pool_recovers(pool)


def test_network_is_unreachable(pool: PythonGraderPool) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # a connection would complete into this backlog even before accept()
        port = server.getsockname()[1]
        # Through Python's socket API (audit hook) and through raw libc connect() (network namespace).
        result = grade(pool, f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\nreturn 1")
        raw = grade(pool, (
            "import ctypes, struct, socket\n"
            "libc = ctypes.CDLL(None)\n"
            "fd = libc.socket(2, 1, 0)\n"
            f"addr = struct.pack('=H', 2) + struct.pack('!H4s8x', {port}, socket.inet_aton('127.0.0.1'))\n"
            "rc = libc.connect(fd, addr, len(addr))\n"
            "return 1.0 if rc != 0 else 0.0"
        ))
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()
    assert result.errors == {"python_grader_runtime_error"}
    assert raw.reward == 1.0, "raw connect() to 127.0.0.1 succeeded inside the sandbox"
    report = pool.worker_report()
    assert report["network_namespace"] is True and report["sandbox"] == "bubblewrap"


def test_huge_print_is_capped_and_does_not_hang(pool: PythonGraderPool) -> None:
    start = time.monotonic()
    result = grade(pool, "print('x' * 50_000_000)\nfor i in range(100000):\n    print(i)\nraise ValueError('boom')")
    assert time.monotonic() - start < WALL + 2
    details = result.details["python_grader_runtime_error_details"]
    assert "ValueError: boom" in details and "characters dropped" in details
    assert len(details) < 20_000
    assert grade(pool, "print('x' * 50_000_000)\nreturn 0.5").reward == 0.5


def test_sys_exit_is_a_runtime_error(pool: PythonGraderPool) -> None:
    result = grade(pool, "import sys\nsys.exit(3)")
    assert result.errors == {"python_grader_runtime_error"}
    assert "sys.exit(3)" in result.details["python_grader_runtime_error_details"]
    died = grade(pool, "import os\nos._exit(0)")
    assert died.errors == {"python_grader_server_error"}
    assert_pool_recovers(pool)


@pytest.mark.parametrize(
    ("ret", "reward", "errors"),
    [
        ("0.25", 0.25, set()),
        ("1", 1.0, set()),
        ("7.5", 1.0, {"python_grader_out_of_range_error"}),
        ("1e308", 1.0, {"python_grader_out_of_range_error"}),
        ("-2", 0.0, {"python_grader_out_of_range_error"}),
        ("float('nan')", 0.0, {"python_grader_runtime_error"}),
        ("float('inf')", 0.0, {"python_grader_runtime_error"}),
        ("True", 0.0, {"python_grader_runtime_error"}),
        ("10**400", 0.0, {"python_grader_runtime_error"}),
        ("'high'", 0.0, {"python_grader_runtime_error"}),
        ("None", 0.0, {"python_grader_runtime_error"}),
        ("[1]", 0.0, {"python_grader_runtime_error"}),
    ],
)
def test_return_values(pool: PythonGraderPool, ret: str, reward: float, errors: set[str]) -> None:
    result = grade(pool, f"return {ret}")
    assert result.reward == reward and result.errors == errors
    if errors:
        detail = next(iter(result.details.values()))
        assert "grade() " in detail, detail  # the error says what the grader returned
    assert_pool_recovers(pool)


def test_out_of_range_is_counted_per_grader_with_the_clamped_reward() -> None:
    spec = {"type": "python", "name": "p", "source": "def grade(s, i):\n    return float(s['output_text'])\n"}
    with BatchGrader(spec, max_workers=1) as batch:
        result = batch.grade(["-5", "0.5", "3"], [{}, {}, {}])
    assert result.rewards == [0.0, 0.5, 1.0]
    assert result.errors == {"python_grader_out_of_range_error": 2}
    wire = result.results[2].to_dict()["metadata"]
    assert wire["errors"]["python_grader_out_of_range_error"] is True
    assert "3.0" in wire["errors"]["python_grader_out_of_range_error_details"]


def test_exception_details_show_the_graders_traceback(pool: PythonGraderPool) -> None:
    result = grade(pool, "return 1 / 0")
    details = result.details["python_grader_runtime_error_details"]
    assert "ZeroDivisionError" in details and '<grader>' in details and "sandbox_worker" not in details


def test_writes_are_limited(pool: PythonGraderPool) -> None:
    big = grade(pool, "open('out.bin', 'wb').write(b'x' * (64 * 1024 * 1024))\nreturn 1")
    assert big.errors == {"python_grader_runtime_error"}
    assert pool.worker_report()["uid"] == 65534
    target = os.path.abspath(__file__ + ".sandbox-write")
    outside = grade(pool, f"open({target!r}, 'w')\nreturn 1")
    assert outside.errors == {"python_grader_runtime_error"} and not os.path.exists(target)


def test_environment_is_empty(pool: PythonGraderPool) -> None:
    os.environ["RFT_SECRET_FOR_TEST"] = "s3cret"
    try:
        assert grade(pool, "import os\nreturn 1.0 if not os.environ.get('RFT_SECRET_FOR_TEST') else 0.0").reward == 1.0
    finally:
        del os.environ["RFT_SECRET_FOR_TEST"]


def test_source_that_fails_to_load(pool: PythonGraderPool) -> None:
    result = grade(pool, "return 1\nraise")
    assert result.reward == 1.0
    bad = run_grader({"type": "python", "name": "p", "source": "import no_such_module_xyz\ndef grade(s, i): return 1"},
                     "x", {})
    assert bad.errors == {"python_grader_runtime_error"}
    assert "no_such_module_xyz" in bad.details["python_grader_runtime_error_details"]


def test_pool_is_thread_safe_and_recovers_under_concurrency(pool: PythonGraderPool) -> None:
    source = ("def grade(sample, item):\n    if sample['output_text'] == 'die':\n"
              "        import os\n        os._exit(1)\n"
              "    return int(sample['output_text']) / 100\n")
    texts = [str(i) if i % 7 else "die" for i in range(60)]
    results: list[list] = [None] * 4  # type: ignore[list-item]

    def run(k: int) -> None:
        results[k] = pool.grade(source, [({"output_text": t}, {}) for t in texts])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for outcomes in results:
        assert len(outcomes) == len(texts)
        for text, outcome in zip(texts, outcomes, strict=True):
            if text == "die":
                assert outcome.error == "server"
            else:
                assert outcome.value == pytest.approx(int(text) / 100)


def test_batch_grader_closes_its_workers() -> None:
    spec = {"type": "python", "name": "p", "source": "def grade(s, i):\n    return len(s['output_text']) / 10\n"}
    with BatchGrader(spec, max_workers=2) as batch:
        result = batch.grade(["a" * i for i in range(20)], [{}] * 20)
        pids = batch._pool.worker_pids()  # type: ignore[union-attr]
    assert result.rewards == [min(1.0, i / 10) for i in range(20)]
    assert pids
    for pid in pids:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        assert not _alive(pid), f"worker {pid} outlived close()"


def test_workers_die_with_their_parent(tmp_path) -> None:
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = (f"import sys; sys.path.insert(0, {root!r})\n"
              "from graders import PythonGraderPool\n"
              "p = PythonGraderPool(1)\n"
              "p.grade('def grade(s, i):\\n    return 1\\n', [({'output_text': ''}, {})])\n"
              "import psutil\n"
              "print([c.pid for c in psutil.Process().children(recursive=True)], flush=True)\n"
              "import os; os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    pids = eval(out.stdout.strip())  # a list of ints printed by the child
    assert pids
    for pid in pids:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        assert not _alive(pid), f"worker {pid} was orphaned"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_each_worker_runs_on_one_cpu(pool: PythonGraderPool) -> None:
    result = grade(pool, "import os\nreturn 1.0 if len(os.sched_getaffinity(0)) == 1 else 0.0")
    assert result.reward == 1.0 and not result.errors


# -- one grader per worker, a bounded warm pool ---------------------------------------------------

POISON = """
import builtins, math, sys, gc
builtins.float = lambda *a: 1.0
math.isclose = lambda *a, **k: True
sys.modules['__main__'].__dict__['grade'] = lambda s, i: 1.0
for obj in gc.get_objects():
    if type(obj).__name__ == 'Worker' and hasattr(obj, 'send'):
        obj.grade = lambda s, i: 1.0
        obj.key = None
def grade(sample, item):
    return 1.0
"""
HONEST = "import math\ndef grade(sample, item):\n    return float(math.isclose(len(sample['output_text']), 99))\n"


def test_a_worker_runs_one_grader_and_poisoning_does_not_reach_another(pool: PythonGraderPool) -> None:
    call: list[tuple[dict[str, str], dict[str, str]]] = [({"output_text": "x"}, {})]
    for _ in range(3):
        pool.grade(POISON, call)  # A's own later calls may break (it unbound its worker); B must not
        assert pool.grade(HONEST, call)[0].value == 0.0, "grader A's patches reached grader B"
    keys = {w.key for w in pool._all}
    assert len(keys) == len(pool._all), "two live workers share a grader key"


def test_the_pool_stays_bounded_and_evicts_the_least_recently_used_grader() -> None:
    sources = [f"def grade(s, i):\n    return {k / 10}\n" for k in range(4)]
    with PythonGraderPool(size=2) as small:
        for k, source in enumerate(sources):
            assert small.grade(source, [({}, {})])[0].value == k / 10
            assert len(small.worker_pids()) <= 2
        warm = {w.key for w in small._all}
        assert len(warm) == 2
        # the two most recent graders stayed warm: grading them again starts nothing
        before = set(small.worker_pids())
        small.grade(sources[3], [({}, {})])
        small.grade(sources[2], [({}, {})])
        assert set(small.worker_pids()) == before


def test_a_worker_refuses_another_graders_key(pool: PythonGraderPool) -> None:
    from graders.sandbox import _read_frame, _write_frame

    source = "def grade(s, i):\n    return 0.5\n"
    assert pool.grade(source, [({}, {})])[0].value == 0.5
    key = next(iter({w.key for w in pool._all}))
    worker = pool._acquire(key)
    try:
        deadline = time.monotonic() + 5
        _write_frame(worker, {"key": "another-grader", "source": "def grade(s, i):\n    return 1.0\n",
                              "calls": [[{}, {}]]}, deadline)
        frame = _read_frame(worker, deadline)
        assert frame["error"] == "fatal" and "one grader" in frame["details"]
        assert worker.proc.wait(timeout=5) is not None
    finally:
        pool._release(worker, True)


def test_scratch_is_private_limited_and_emptied_after_each_request(pool: PythonGraderPool) -> None:
    fill = grade(pool, "open('/dev/shm/fill', 'wb').write(b'x' * (100 * 1024 * 1024))\nreturn 1")
    assert fill.errors == {"python_grader_runtime_error"}  # EFBIG / ENOSPC, not host memory
    assert not os.path.exists("/dev/shm/fill")
    keep = "import os\ndef grade(s, i):\n    seen = os.listdir('/tmp')\n    open('/tmp/k', 'w').write('1')\n" \
           "    return 0.0 if seen else 1.0\n"
    assert pool.grade(keep, [({}, {})])[0].value == 1.0
    assert pool.grade(keep, [({}, {})])[0].value == 1.0, "a file from the previous request survived"


def test_the_sandbox_sees_only_the_runtime(pool: PythonGraderPool) -> None:
    body = ("import os\nroots = sorted(os.listdir('/'))\n"
            "procs = [p for p in os.listdir('/proc') if p.isdigit()]\n"
            "return 1.0 if not os.path.exists('/home') and not os.path.exists('/etc/passwd') "
            "and len(procs) <= 2 else 0.0")
    result = grade(pool, body)
    assert result.reward == 1.0 and not result.errors
    assert result.sandbox == "bubblewrap"
    assert result.to_dict()["metadata"]["sandbox"] == "bubblewrap"


def test_seccomp_program_is_built_for_known_architectures_only() -> None:
    for arch in ("x86_64", "aarch64"):
        program = sandbox_bwrap.seccomp_program(arch)
        assert program and len(program) % 8 == 0
    with pytest.raises(ValueError, match="riscv"):
        sandbox_bwrap.seccomp_program("riscv64")


def test_address_space_leaves_room_for_the_tmpfs() -> None:
    limits = SandboxLimits(memory_bytes=2 * 1024**3)
    assert limits.address_space_bytes == 2 * 1024**3 - limits.tmp_bytes - limits.shm_bytes


# -- fail closed, and the explicit opt-out -----------------------------------------------------------


def test_without_bubblewrap_python_graders_are_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFT_BWRAP", "/nonexistent/bwrap")
    with PythonGraderPool(size=1) as refused:
        assert refused.mode.startswith("unavailable: bubblewrap is not installed")
        result = grade(refused, "return 1.0")
    assert result.reward == 0.0 and result.errors == {"python_grader_server_error"}
    wire = result.to_dict()["metadata"]
    assert wire["errors"]["python_grader_server_error_type"] == "SandboxUnavailable"
    line = wire["scores"]["other_error_details"]
    assert "\n" not in line and "apt-get install bubblewrap" in line and "RFT_SANDBOX=off" in line
    assert "sandbox" not in wire


def test_a_namespace_failure_names_the_sysctl(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace, likely because the "
                    "kernel does not allow non-privileged user namespaces.' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("RFT_BWRAP", str(fake))
    mode = sandbox_bwrap.sandbox_mode()
    assert mode.startswith("unavailable: bubblewrap cannot create a user namespace")
    assert "kernel.unprivileged_userns_clone=1" in mode and "RFT_SANDBOX=off" in mode


def test_a_job_is_told_when_its_python_grader_runs_unsandboxed(monkeypatch: pytest.MonkeyPatch) -> None:
    from graders import sandbox_warning

    python = {"type": "python", "name": "p", "source": "def grade(s, i):\n    return 1\n"}
    multi = {"type": "multi", "name": "m", "graders": {"p": python}, "calculate_output": "p"}
    exact = {"type": "string_check", "name": "e", "input": "a", "reference": "a", "operation": "eq"}
    assert sandbox_warning(python) is None and sandbox_warning(exact) is None
    monkeypatch.setenv("RFT_SANDBOX", "off")
    assert "sandbox is OFF" in (sandbox_warning(multi) or "")
    assert sandbox_warning(exact) is None
    monkeypatch.setenv("RFT_SANDBOX", "")
    monkeypatch.setenv("RFT_BWRAP", "/nonexistent/bwrap")
    assert "will be refused" in (sandbox_warning(python) or "")


def test_sandbox_off_runs_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFT_SANDBOX", "off")
    with PythonGraderPool(size=1) as off:
        assert off.mode == "off"
        result = grade(off, "return 0.75")
        assert off.worker_report()["sandbox"] == "off"
    assert result.reward == 0.75 and not result.errors
    assert result.to_dict()["metadata"]["sandbox"] == "off"
