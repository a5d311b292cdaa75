"""Grader files through a real daemon: list/read/save, 409 on a stale save, safe names, watch events."""

from __future__ import annotations

import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from daemon import api
from daemon.client import ApiRequestError
from tests.support.daemon_proc import DaemonProcess, wait_until

REPO = Path(__file__).resolve().parents[2]
EXACT = (REPO / "examples" / "graders" / "exact_match.json").read_text()


@pytest.fixture(scope="module")
def gdaemon() -> Iterator[DaemonProcess]:
    """One real daemon for this module (each test uses its own file names); starting one takes seconds."""
    home = Path(tempfile.mkdtemp(prefix="rft-g-"))
    proc = DaemonProcess(home).start()
    yield proc
    proc.stop()
    shutil.rmtree(home, ignore_errors=True)


def test_list_read_save_and_spec_errors(gdaemon: DaemonProcess) -> None:
    folder = gdaemon.paths.graders
    for old in folder.iterdir():
        old.unlink()
    (folder / "exact.json").write_text(EXACT)
    (folder / "tolerance.py").write_text((REPO / "examples" / "graders" / "numeric_tolerance.py").read_text())
    (folder / "notes.txt").write_text("not a grader")
    (folder / "broken.yaml").write_text("type: [unclosed\n")
    with gdaemon.client() as c:
        listed = {g.name: g for g in c.list_grader_files().data}
        assert set(listed) == {"exact.json", "tolerance.py", "broken.yaml"}
        assert listed["exact.json"].valid and listed["exact.json"].format == "json"
        assert listed["tolerance.py"].valid and listed["tolerance.py"].format == "python"
        assert listed["broken.yaml"].valid is False and "broken.yaml:" in listed["broken.yaml"].errors[0]
        assert listed["exact.json"].content is None  # the list stays light

        got = c.get_grader_file("exact.json")
        assert got.content == EXACT and got.bytes == len(EXACT.encode())

        # a spec-invalid grader (parses, wrong fields) is saved, flagged with its errors
        bad_spec = json.dumps({"type": "string_check", "name": "x", "input": "{{sample.output_text}}"})
        saved = c.save_grader_file("draft.json", bad_spec)
        assert saved.valid is False and any("reference" in e or "operation" in e for e in saved.errors)
        assert (folder / "draft.json").read_text() == bad_spec

        yaml_text = ("type: string_check\nname: y\ninput: '{{sample.output_text}}'\nreference: '{{item.answer}}'\n"
                     "operation: eq\n")
        saved = c.save_grader_file("y.yml", yaml_text)
        assert saved.valid is True and saved.errors == [] and saved.format == "yaml"
        assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]  # atomic write left no temp file


@pytest.mark.parametrize("name, content, where", [
    ("bad.json", '{\n  "type": "string_check",\n  "name": \n}', "bad.json:4:1"),
    ("bad.yaml", "type: string_check\nname: [x\n", "bad.yaml:3:1"),
    ("bad.py", "def grade(sample, item)\n    return 1.0\n", "bad.py:1:"),
    ("list.json", "[1, 2]", "list.json:1:1"),
])
def test_unparseable_content_is_refused_with_its_position(gdaemon: DaemonProcess, name: str, content: str,
                                                           where: str) -> None:
    with gdaemon.client() as c:
        with pytest.raises(ApiRequestError) as ei:
            c.save_grader_file(name, content)
    assert ei.value.status_code == 400 and ei.value.param == "content"
    assert where in str(ei.value)
    assert not (gdaemon.paths.graders / name).exists()


def test_spec_errors_of_a_saved_file_name_its_line_or_field(gdaemon: DaemonProcess) -> None:
    """A draft that parses but is not a valid grader is kept, and its errors point into the file."""
    draft = ("type: string_check\nname: y\ninput: '{{sample.output_text}}'\nreference: '{{item.answer}}'\n"
             "operation: equals\n")
    multi = json.dumps({"type": "multi", "name": "m", "calculate_output": "a + b",
                        "graders": {"a": json.loads(EXACT)}}, indent=2)
    with gdaemon.client() as c:
        saved = c.save_grader_file("draft.yaml", draft)
        assert not saved.valid and saved.errors[0].startswith("draft.yaml:5:1: invalid grader spec: operation: ")
        saved = c.save_grader_file("sum.json", multi)
        assert not saved.valid and saved.errors == [
            "sum.json: calculate_output: unknown grader names ['b']; the graders are ['a']"]
        listed = {g.name: g for g in c.list_grader_files().data}
        assert listed["draft.yaml"].errors == c.get_grader_file("draft.yaml").errors
    for name in ("draft.yaml", "sum.json"):
        (gdaemon.paths.graders / name).unlink()


def test_stale_save_gets_409_and_fresh_save_succeeds(gdaemon: DaemonProcess) -> None:
    with gdaemon.client() as c:
        first = c.save_grader_file("g.json", EXACT)
        # someone else (an editor in another pane) rewrites the file
        path = gdaemon.paths.graders / "g.json"
        path.write_text(EXACT.replace("exact", "exact2"))
        os.utime(path, (first.modified_at + 5, first.modified_at + 5))
        with pytest.raises(ApiRequestError) as ei:
            c.save_grader_file("g.json", EXACT, expected_modified_at=first.modified_at)
        assert ei.value.status_code == 409 and "changed on disk" in str(ei.value)
        assert "exact2" in path.read_text()  # the other writer's content survived
        current = c.get_grader_file("g.json")
        again = c.save_grader_file("g.json", EXACT, expected_modified_at=current.modified_at)
        assert again.content == EXACT
        path.unlink()
        with pytest.raises(ApiRequestError) as ei:
            c.save_grader_file("g.json", EXACT, expected_modified_at=again.modified_at)
        assert ei.value.status_code == 409 and "deleted" in str(ei.value)


@pytest.mark.parametrize("name", ["..%2F..%2Fetc%2Fpasswd.json", "..json", ".hidden.json", "a..b.json",
                                  "grader.exe", "%2Etmp.json", "x%00.json"])
def test_unsafe_names_are_refused(gdaemon: DaemonProcess, name: str) -> None:
    with httpx.Client(transport=httpx.HTTPTransport(uds=gdaemon.socket), base_url="http://d") as h:
        put = h.put(f"/v1/graders/{name}", json={"content": EXACT})
        get = h.get(f"/v1/graders/{name}")
    assert put.status_code in (400, 404) and get.status_code in (400, 404)
    assert "error" in put.json() and "error" in get.json()
    leaked = [p for p in gdaemon.paths.home.rglob("*") if p.name.endswith(("passwd.json", ".exe"))]
    assert leaked == [] and not (gdaemon.paths.home.parent / "etc").exists()
    if put.status_code == 400:
        assert put.json()["error"]["param"] == "name"


def test_missing_grader_file_is_404(gdaemon: DaemonProcess) -> None:
    with gdaemon.client() as c:
        with pytest.raises(ApiRequestError) as ei:
            c.get_grader_file("nope.json")
    assert ei.value.status_code == 404 and "nope.json" in str(ei.value)


def test_external_edits_produce_grader_changed_events(gdaemon: DaemonProcess) -> None:
    events: queue.Queue[api.StreamEvent] = queue.Queue()
    client = gdaemon.client()

    def listen() -> None:
        try:
            for ev in client.stream():
                if ev.type is api.StreamEventType.grader_changed:
                    events.put(ev)
        except Exception:  # noqa: BLE001 - closed by the test at the end
            pass

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    with gdaemon.client() as c:
        wait_until(lambda: c.health() is not None, what="daemon")
    path = gdaemon.paths.graders / "ext.json"

    def expect(change: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                ev = events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if ev.data == {"name": "ext.json", "change": change}:
                return
        raise AssertionError(f"no grader.changed {change} event for ext.json within 15s")

    # the stream subscription is asynchronous: keep touching until the first event arrives
    def added() -> bool:
        path.write_text(EXACT)
        try:
            ev = events.get(timeout=0.5)
        except queue.Empty:
            path.unlink(missing_ok=True)
            return False
        return ev.data in ({"name": "ext.json", "change": "added"}, {"name": "ext.json", "change": "modified"})

    wait_until(added, timeout=20, what="a grader.changed event after writing ext.json")
    while not events.empty():
        events.get_nowait()
    path.write_text(EXACT.replace("exact", "exact_v2"))
    expect("modified")
    path.unlink()
    expect("deleted")
    (gdaemon.paths.graders / "ignored.txt").write_text("x")
    client.close()


@pytest.mark.slow
def test_daemon_with_the_watcher_shuts_down_cleanly(daemon: DaemonProcess) -> None:
    (daemon.paths.graders / "x.json").write_text(EXACT)
    with daemon.client() as c:
        assert [g.name for g in c.list_grader_files().data] == ["x.json"]
    started = time.monotonic()
    daemon.stop()
    assert daemon.proc is not None and daemon.proc.returncode == 0
    assert time.monotonic() - started < 10
    assert "Traceback" not in daemon.log()
