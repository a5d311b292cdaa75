"""End to end: the real `rft-tui` in tmux (send-keys, capture-pane) against a real daemon.

Open, see the Jobs screen, open help, fill in the New-job form and start a job on the built-in model (real
GRPO training by the real worker), watch the Rewards tab gain rows, cancel the job, quit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon_proc import REPO, DaemonProcess
from tests.support.jobs import EXACT_GRADER, arithmetic_rows, write_jsonl

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
RFT_TUI = str(Path(sys.executable).parent / "rft-tui")
pytestmark = pytest.mark.skipif(not os.path.exists(TMUX), reason="tmux is not installed (apt-get install tmux)")


class Tmux:
    """A private tmux server (its own -L socket), so tests never touch a user's sessions."""

    def __init__(self, width: int = 100, height: int = 30) -> None:
        self.server = f"rft-e2e-{uuid.uuid4().hex[:8]}"
        self.size = (width, height)

    def run(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.server, *args], capture_output=True, text=True, check=True,
                              timeout=20).stdout

    def start(self, command: str, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        self.run("new-session", "-d", "-s", "main", "-x", str(self.size[0]), "-y", str(self.size[1]),
                 f"env {exports} {command}")
        self.run("set-option", "-t", "main", "remain-on-exit", "on")

    def keys(self, *keys: str, target: str = "main:0") -> None:
        self.run("send-keys", "-t", target, *keys)

    def screen(self, target: str = "main:0") -> str:
        return self.run("capture-pane", "-p", "-t", target)

    def wait_for(self, predicate: Callable[[str], object] | str, timeout: float = 30.0, target: str = "main:0",
                 what: str = "") -> str:
        check = (lambda s: predicate in s) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen(target)
            if check(text):
                return text
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what or predicate!r}; the screen shows:\n{text}")

    def pane_dead(self, target: str = "main:0") -> bool:
        return self.run("display-message", "-p", "-t", target, "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        subprocess.run([TMUX, "-L", self.server, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    yield t
    t.kill()


def metric_steps(screen: str) -> list[int]:
    """Step numbers in the first column of the metrics table as shown."""
    return [int(m.group(1)) for m in re.finditer(r"^\s(\d+)\s+\d\.\d{3}\s", screen, re.MULTILINE)]


@pytest.mark.slow
def test_open_help_new_job_form_watch_rewards_cancel_quit(tmux: Tmux, daemon_factory: Callable[..., DaemonProcess],
                                                          model_cache: Path, tmp_path: Path) -> None:
    d = daemon_factory(env={"RFT_MODEL_CACHE": str(model_cache), "RFT_CANCEL_GRACE_S": "10"})
    with d.client() as c:  # the files a user imported earlier (`rft-tui files add ...`)
        c.import_file(str(write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(10, 64))))
        c.import_file(str(write_jsonl(tmp_path / "valid.jsonl", arithmetic_rows(80, 8))))
    (d.paths.graders / "exact.json").write_text(json.dumps(EXACT_GRADER))  # a grader file the user keeps
    env = {"RFT_HOME": str(d.home), "TERM": "xterm-256color", "PYTHONPATH": str(REPO)}
    tmux.start(f"{RFT_TUI} --socket {d.socket}", env)

    tmux.wait_for(lambda s: "No jobs yet" in s and "New job" in s, what="the Jobs screen with its footer")
    tmux.keys("?")
    # help opens at its top: the title and the screen's own first key (n, New job) are on screen
    tmux.wait_for(lambda s: "Keys — Jobs" in s and re.search(r"\bn\s+New job\s+Start a new", s),
                  what="the help screen, at its top")
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "Keys — Jobs" not in s and "No jobs yet" in s, what="help to close")

    # the New-job form: pick the files and the grader, create with ctrl+s
    tmux.keys("n")
    tmux.wait_for(lambda s: "New fine-tuning job" in s and "builtin:tiny-arith" in s, what="the New-job form")
    tmux.keys("Tab")  # past "models here" (the model list), keeping the typed default model

    def chosen(field: str, choice: str) -> Callable[[str], object]:
        return lambda s: re.search(rf"{field}\s+(✓ )?{choice}", s) and "Dismiss menu" not in s

    for field, choice, shown in (("training file", "train", "train.jsonl · 64 rows"),
                                 ("validation file", "valid", "valid.jsonl · 8 rows"),
                                 ("grader", "exact", "exact.json")):
        tmux.keys("Tab", "Enter")  # focus the next Select and open its list
        tmux.wait_for(lambda s: "Dismiss menu" in s, what=f"the {field} list to open")
        for attempt in range(3):
            tmux.keys("-l", choice)  # type to search, then take it
            tmux.keys("Enter")
            try:
                tmux.wait_for(chosen(field, choice), timeout=10, what=f"{shown} chosen as the {field}")
                break
            except AssertionError:
                # on a loaded box the keys can reach the list before it has focus (it then stays open, nothing
                # chosen): type again, as a person would; a list that closed on the wrong choice still fails
                if attempt == 2 or "Dismiss menu" not in tmux.screen():
                    raise
    tmux.keys("C-s")
    tmux.wait_for(lambda s: "Overview" in s and "running" in s, timeout=60, what="the new job's screen, running")

    with d.client() as c:
        job = c.list_jobs().data[0]
    assert job.model == "builtin:tiny-arith" and job.method["reinforcement"]["grader"] == EXACT_GRADER

    tmux.keys("2")
    first = tmux.wait_for(lambda s: len(metric_steps(s)) >= 2, timeout=120, what="metric rows on the Rewards tab")
    last_seen = max(metric_steps(first))
    later = tmux.wait_for(lambda s: metric_steps(s) and max(metric_steps(s)) >= last_seen + 2, timeout=120,
                          what="the Rewards tab to gain rows")
    assert max(metric_steps(later)) > last_seen

    tmux.keys("c")
    tmux.wait_for("Cancel job", what="the cancel confirmation")
    tmux.keys("y")
    tmux.wait_for("cancelled", timeout=60, what="the job to be cancelled")
    with d.client() as c:
        assert c.get_job(job.id).status.value == "cancelled"

    tmux.keys("q")
    deadline = time.monotonic() + 15
    while not tmux.pane_dead() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tmux.pane_dead(), tmux.screen()
