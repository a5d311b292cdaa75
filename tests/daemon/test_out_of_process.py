"""Helpers that load transformers/torch run out of the daemon's process: token counts for `files validate
--tokenizer`, like pre-flight and export. Real daemon, real subprocess, real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.client import ApiRequestError
from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import arithmetic_rows, write_jsonl

HEAVY_LIBRARIES = ("libtorch", "tokenizers", "_C.cpython")  # shared objects torch / tokenizers would map


def mapped_libraries(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[-1] for line in f if line.rstrip().endswith(".so") or ".so." in line}


@pytest.mark.slow
def test_token_counts_come_from_a_subprocess_and_a_bad_tokenizer_names_the_field(daemon: DaemonProcess,
                                                                                  tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(10, 30))
    with daemon.client() as c:
        pid = c.health().pid
        report = c.validate_file({"path": str(data), "tokenizer_model": "builtin:tiny-arith"})
        stats = report.stats.prompt_tokens
        assert stats and stats["sampled_rows"] == 30, stats  # every row sampled (fewer than the 2,000 cap)
        assert 0 < stats["max"] < 64, stats  # character tokens of "10+11=" and the chat template
        try:
            c.validate_file({"path": str(data), "tokenizer_model": str(tmp_path / "no-model-here")})
        except ApiRequestError as e:
            assert e.status_code == 400 and e.param == "tokenizer_model", e.error
            assert e.error.code == "tokenizer_not_found" and "no-model-here" in e.error.message, e.error
        else:
            raise AssertionError("an unknown tokenizer model was accepted")
    loaded = [lib for lib in mapped_libraries(pid) if any(h in lib for h in HEAVY_LIBRARIES)]
    assert not loaded, loaded  # the daemon itself never loaded them
