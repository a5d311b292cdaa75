"""The python grader sandbox, with real worker processes: limits, isolation, recovery."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from graders import BatchGrader, PythonGraderPool, SandboxLimits, run_grader
from graders.impl.python import PythonEngine
from graders.impl.base import Runtime
from graders.spec import parse_grader
from graders.templates import SampleContext

WALL = 1.5


@pytest.fixture(scope="module")
def pool() -> Iterator[PythonGraderPool]:
    with PythonGraderPool(size=2, limits=SandboxLimits(wall_time_s=WALL, memory_bytes=256 * 1024**2)) as p:
        yield p


def grade(pool: PythonGraderPool, body: str, sample: str = "46", item: dict | None = None):
    """Run a one-function grader through the real engine + pool; return its GraderResult."""
    source = "def grade(sample, item):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    engine = PythonEngine(parse_grader({"type": "python", "name": "p", "source": source}))
    return engine.grade_batch([SampleContext(sample, item or {"answer": "46"})], Runtime(pool=pool))[0]


def assert_pool_recovers(pool: PythonGraderPool) -> None:
    ok = grade(pool, "return float(sample['output_text'] == item['answer'])")
    assert ok.reward == 1.0 and not ok.errors


def test_grade_receives_openai_sample_and_item(pool: PythonGraderPool) -> None:
    result = grade(pool, "assert sample['output_json'] == {'a': [1]}\nassert item['answer'] == '46'\n"
                         "assert sample['output_text'] == '{\"a\": [1]}'\nreturn 0.25", sample='{"a": [1]}')
    assert result.reward == 0.25 and not result.errors


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
    assert report["network_namespace"] is True or report["notes"]


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
        ("float('nan')", 0.0, {"python_grader_runtime_error"}),
        ("float('inf')", 0.0, {"python_grader_runtime_error"}),
        ("7.5", 1.0, set()),
        ("-2", 0.0, set()),
        ("0.25", 0.25, set()),
        ("True", 1.0, set()),
        ("'high'", 0.0, {"python_grader_runtime_error"}),
        ("None", 0.0, {"python_grader_runtime_error"}),
        ("[1]", 0.0, {"python_grader_runtime_error"}),
    ],
)
def test_return_values(pool: PythonGraderPool, ret: str, reward: float, errors: set[str]) -> None:
    result = grade(pool, f"return {ret}")
    assert result.reward == reward and result.errors == errors


def test_exception_details_show_the_graders_traceback(pool: PythonGraderPool) -> None:
    result = grade(pool, "return 1 / 0")
    details = result.details["python_grader_runtime_error_details"]
    assert "ZeroDivisionError" in details and '<grader>' in details and "sandbox_worker" not in details


def test_writes_are_limited(pool: PythonGraderPool) -> None:
    big = grade(pool, "open('out.bin', 'wb').write(b'x' * (64 * 1024 * 1024))\nreturn 1")
    assert big.errors == {"python_grader_runtime_error"}
    if os.geteuid() == 0:
        report = pool.worker_report()
        assert report["uid"] == 65534, report
        outside = grade(pool, f"open({os.path.abspath(__file__ + '.sandbox-write')!r}, 'w')\nreturn 1")
        assert outside.errors == {"python_grader_runtime_error"}


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
    source = ("def grade(sample, item):\n    if sample['output_text'] == 'die':\n        import os\n        os._exit(1)\n"
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
        for text, outcome in zip(texts, outcomes):
            if text == "die":
                assert outcome.error == "server"
            else:
                assert outcome.value == pytest.approx(int(text) / 100)


def test_batch_grader_closes_its_workers() -> None:
    spec = {"type": "python", "name": "p", "source": "def grade(s, i):\n    return len(s['output_text']) / 10\n"}
    with BatchGrader(spec, max_workers=2) as batch:
        result = batch.grade(["a" * i for i in range(20)], [{}] * 20)
        pids = [w.proc.pid for w in batch._pool._all]  # type: ignore[union-attr]
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

    script = ("import sys; sys.path.insert(0, %r)\n"
              "from graders import PythonGraderPool\n"
              "p = PythonGraderPool(1)\n"
              "p.grade('def grade(s, i):\\n    return 1\\n', [({'output_text': ''}, {})])\n"
              "print([w.proc.pid for w in p._all], flush=True)\n"
              "import os; os._exit(0)\n") % os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
