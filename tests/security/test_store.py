"""A private store that fails clearly: modes, a database locked by another process, a full disk, a corrupt
or empty database, and a graders folder holding symlinks and FIFOs. Real daemon, real SQLite, real files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.paths import Paths
from tests.support.daemon_proc import REPO, DaemonProcess, wait_until
from tests.support.jobs import arithmetic_rows, job_request, make_files, write_jsonl

FAKE = {"RFT_WORKER_MODULE": "tests.support.fake_worker"}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _http(d: DaemonProcess, timeout: float = 30) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=d.socket), base_url="http://rft", timeout=timeout)


# ---------------------------------------------------------------------------------------------- modes


@pytest.mark.slow
def test_store_is_private_after_real_use(daemon_factory, rft_home: Path, tmp_path: Path) -> None:
    """Import, a job (writes metrics, events, checkpoints, a log) and a grader save: nothing readable by others."""
    d: DaemonProcess = daemon_factory(env=FAKE)
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=4, eval_interval=2))
        wait_until(lambda: c.get_job(job.id).status.is_terminal(), 60, what="the job to finish")
        c.save_grader_file("mine.json", json.dumps({"type": "string_check", "name": "x", "input": "a",
                                                    "reference": "a", "operation": "eq"}))
    paths = d.paths
    assert mode(paths.home) == 0o700
    for p in (paths.db, Path(f"{paths.db}-wal"), Path(f"{paths.db}-shm"), paths.daemon_log,
              paths.graders / "mine.json", paths.job_log(job.id)):
        assert mode(p) == 0o600, f"{p} is {mode(p):o}"
    datasets = list(paths.files.glob("*.jsonl"))
    assert len(datasets) == 2 and all(mode(p) == 0o400 for p in datasets)
    loose = [f"{p} {mode(p):o}" for p in paths.home.rglob("*")
             if not p.is_symlink() and not p.is_socket() and mode(p) & 0o077]
    assert not loose, loose


@pytest.mark.slow
def test_a_loose_existing_home_is_tightened_and_said_once(daemon_factory, rft_home: Path) -> None:
    paths = Paths(rft_home)
    for sub in ("files", "graders", "jobs/ftjob-old"):
        (rft_home / sub).mkdir(parents=True, exist_ok=True)
    (rft_home / "graders" / "old.json").write_text("{}")
    (rft_home / "jobs" / "ftjob-old" / "worker.log").write_text("old log\n")
    for p in [rft_home, *rft_home.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    d: DaemonProcess = daemon_factory(env=FAKE)
    lines = [ln for ln in d.log().splitlines() if "private" in ln]
    assert len(lines) == 1, d.log()
    assert "home 0755->0700" in lines[0] and "graders/old.json 0644->0600" in lines[0], lines[0]
    assert mode(rft_home) == 0o700 and mode(rft_home / "graders" / "old.json") == 0o600
    assert mode(rft_home / "jobs" / "ftjob-old" / "worker.log") == 0o600
    d.stop()
    daemon_factory(env=FAKE)  # nothing left to tighten: nothing said
    assert len([ln for ln in paths.daemon_log.read_text().splitlines() if "private" in ln]) == 1


# ---------------------------------------------------------------------------------------------- lock


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")  # (locking_mode=EXCLUSIVE cannot be had while the daemon holds the WAL open)
print("locked", flush=True)
sys.stdin.readline()  # hold until the test says so (or 60 s pass: the test is gone)
conn.execute("COMMIT")
"""


@pytest.fixture
def lock_holder(rft_home: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def hold(db: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


@pytest.mark.slow
def test_a_database_locked_by_another_process_never_stalls_the_daemon(
        daemon_factory, lock_holder, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory(env=FAKE)
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
    extra = write_jsonl(tmp_path / "extra.jsonl", arithmetic_rows(200, 5))
    holder = lock_holder(d.paths.db)
    latencies: list[float] = []
    with _http(d) as h:
        def health() -> dict[str, object]:
            t = time.monotonic()
            r = h.get("/v1/health")
            latencies.append(time.monotonic() - t)
            assert r.status_code == 200
            return r.json()

        assert health()["store"] == "busy"
        writes: dict[str, tuple[int, dict[str, object], float]] = {}

        def write(name: str, method: str, url: str, body: dict[str, object]) -> None:
            with _http(d) as w:
                t = time.monotonic()
                r = w.request(method, url, json=body)
                writes[name] = (r.status_code, r.json(), time.monotonic() - t)

        threads = [threading.Thread(target=write, args=("import", "POST", "/v1/files/import", {"path": str(extra)})),
                   threading.Thread(target=write, args=("job", "POST", "/v1/fine_tuning/jobs",
                                                        job_request(train, valid, max_steps=2)))]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):  # health keeps answering while the writes wait
            assert health()["store"] == "busy"
        for t in threads:
            t.join()
        assert h.get("/v1/files").status_code == 200  # readers go on (WAL)
        for name, (status, body, took) in writes.items():
            assert status == 503, (name, body)
            err = body["error"]
            assert err["code"] == "store_busy" and str(d.paths.db) in err["message"], err  # type: ignore[index]
            assert took < 8, (name, took)
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(10)
        assert health()["store"] == "ok"
        assert h.post("/v1/files/import", json={"path": str(extra)}).status_code == 200
    print(f"/v1/health under an external exclusive lock: {len(latencies)} calls, "
          f"max {max(latencies) * 1000:.0f} ms, median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms; "
          f"writes answered 503 after {', '.join(f'{k} {v[2]:.1f} s' for k, v in writes.items())}")
    assert max(latencies) < 1.0, latencies


# ---------------------------------------------------------------------------------------------- corrupt db


def _start_and_fail(home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RFT_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "daemon.server", "--home", str(home)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("content", [b"", os.urandom(8192), b"SQLite format 3\x00" + b"\xff" * 4080],
                         ids=["empty", "garbage", "damaged-header"])
def test_an_unusable_database_stops_start_up_with_one_line(rft_home: Path, content: bytes) -> None:
    db = Paths(rft_home).db
    db.write_bytes(content)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    result = _start_and_fail(rft_home)
    assert result.returncode != 0
    lines = [ln for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert str(db) in lines[0] and "Move it aside" in lines[0] and "Traceback" not in result.stderr
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and db.stat().st_size == len(content)
    assert not Path(f"{db}-wal").exists()


# ---------------------------------------------------------------------------------------------- graders


@pytest.mark.slow
def test_graders_folder_serves_only_regular_files(daemon_factory, rft_home: Path) -> None:
    d: DaemonProcess = daemon_factory(env=FAKE)
    folder = d.paths.graders
    (folder / "good.json").write_text(json.dumps({"type": "string_check", "name": "g", "input": "a",
                                                  "reference": "a", "operation": "eq"}))
    os.symlink("/etc/shadow" if os.path.exists("/etc/shadow") else "/etc/passwd", folder / "shadow.json")
    os.mkfifo(folder / "x.json")
    os.symlink(folder / "good.json", folder / "alias.json")
    with _http(d, timeout=10) as h:
        listed = {g["name"]: g for g in h.get("/v1/graders").json()["data"]}
        assert set(listed) == {"good.json", "shadow.json", "x.json", "alias.json"}
        assert listed["good.json"]["valid"]
        for name, kind in (("shadow.json", "symlink"), ("x.json", "FIFO"), ("alias.json", "symlink")):
            assert not listed[name]["valid"] and kind in listed[name]["errors"][0], listed[name]
            t = time.monotonic()
            r = h.get(f"/v1/graders/{name}")
            assert 400 <= r.status_code < 500 and time.monotonic() - t < 5, r.text
            assert r.json()["error"]["code"] == "grader_file_not_regular"
            assert "root:" not in r.text
        assert h.get("/v1/health").status_code == 200  # no thread is stuck on the FIFO
        saved = h.put("/v1/graders/x.json", json={"content": '{"type": "string_check", "name": "x", '
                                                             '"input": "a", "reference": "a", "operation": "eq"}'})
        assert saved.status_code == 200 and stat.S_ISREG(os.lstat(folder / "x.json").st_mode)
        assert h.get("/v1/graders/x.json").json()["valid"]


# ---------------------------------------------------------------------------------------------- disk full


def _mount_tmpfs(where: Path, size: str) -> str | None:
    """Mount a small tmpfs (root only); the reason it cannot be done otherwise."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "mounting a small tmpfs needs root"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                       capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot mount a tmpfs here: {r.stderr.strip()}"


@pytest.fixture
def small_disk() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="rft-full-"))
    reason = _mount_tmpfs(where, "60m")
    if reason:
        where.rmdir()
        pytest.skip(reason)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)
    shutil.rmtree(where, ignore_errors=True)


def _big_dataset(path: Path, seed: int, mb: int = 6) -> Path:
    pad = "x" * 900
    with path.open("w") as f:
        for i in range(mb * 1024):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"{seed}-{i} {pad}"}], "answer": "1"}) + "\n")
    return path


@pytest.mark.slow
def test_a_full_disk_is_a_clear_507_and_leaves_nothing_half_written(daemon_factory, small_disk: Path,
                                                                   tmp_path: Path) -> None:
    home = small_disk / "home"
    d = DaemonProcess(home, env=FAKE)
    d.start()
    try:
        with _http(d) as h:
            full = None
            for i in range(20):
                r = h.post("/v1/files/import", json={"path": str(_big_dataset(tmp_path / f"d{i}.jsonl", i))})
                (tmp_path / f"d{i}.jsonl").unlink()
                if r.status_code != 200:
                    full = r
                    break
            assert full is not None, "the 60 MB disk never filled"
            assert full.status_code == 507, full.text
            err = full.json()["error"]
            assert err["code"] == "disk_full" and str(d.paths.home) in err["message"] and "free" in err["message"]
            print(f"import #{i + 1} on the 60 MB tmpfs: {full.status_code} {err}")
            rows = {f["id"] for f in h.get("/v1/files", params={"limit": 1000}).json()["data"]}
            stored = {p.name for p in d.paths.files.iterdir()}
            assert not [n for n in stored if n.startswith(".")], stored  # no temp files left
            assert len([n for n in stored if n.endswith(".jsonl")]) == len(rows) == i, (stored, rows)
            # a grader save on the full disk: the same clear answer, no temp file left
            filler = home / "filler"
            with open(filler, "wb") as f, pytest.raises(OSError):
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            g = h.put("/v1/graders/new.json", json={"content": json.dumps(
                {"type": "string_check", "name": "n", "input": "a", "reference": "a", "operation": "eq"})})
            assert g.status_code == 507 and g.json()["error"]["code"] == "disk_full", g.text
            assert not list(d.paths.graders.iterdir())
            ids = sorted(rows)
            job = h.post("/v1/fine_tuning/jobs", json=job_request(ids[0], ids[1], max_steps=2))
            assert job.status_code == 507 and job.json()["error"]["code"] == "disk_full", job.text  # SQLITE_FULL
            filler.unlink()
            assert h.get("/v1/health").json()["status"] == "ok"  # and it keeps serving
            assert h.get("/v1/fine_tuning/jobs").json()["data"] == []  # no half-created job
        d.stop()
        orphan = d.paths.files / ("0" * 64 + ".jsonl")
        orphan.write_text("{}\n")
        d.start()  # the start-up sweep removes stored copies no row points at
        assert not orphan.exists()
    finally:
        d.stop()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full for a real ENOSPC")
def test_a_worker_that_fills_the_disk_fails_with_that_reason(rft_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's failure message for a real ENOSPC (also when re-raised, as torch does) names the store."""
    from daemon.worker.__main__ import _failure_message

    monkeypatch.setenv("RFT_HOME", str(rft_home))
    with pytest.raises(OSError) as real:
        with open("/dev/full", "wb", buffering=0) as f:
            f.write(b"checkpoint")
    try:
        try:
            raise real.value
        except OSError as e:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from e
    except RuntimeError as wrapped:
        for exc in (real.value, wrapped):
            message = _failure_message(exc)
            assert message.startswith("disk full:") and str(rft_home) in message and "free" in message, message
