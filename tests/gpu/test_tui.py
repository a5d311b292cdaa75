"""The TUI side of issue 14 against a real daemon: the New-job form lists the models here with size and fit,
shows the memory estimate and follows the settings; a model that clearly won't fit is refused next to the model
field and goes through with "force"; the command palette's Doctor opens the report. 80x24 as well."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gpu.configs import LLAMA_8B, write_model_dir
from tests.support.daemon_proc import DaemonProcess
from tests.tui import test_new_job
from tests.tui.conftest import make_app, static_text, until
from tests.tui.test_new_job import _error, _fill, _form

form_daemon = test_new_job.form_daemon  # the form tests' daemon fixture (fake worker, files, graders)

LLAMA_70B = {**LLAMA_8B, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
             "num_attention_heads": 64}


def _estimate(screen: Any) -> str:
    return static_text(screen.query_one("#nj-estimate"))


@pytest.mark.slow
async def test_form_lists_models_and_follows_the_estimate(form_daemon: tuple[DaemonProcess, dict[str, str]],
                                                          tmp_path: Path) -> None:
    d, ids = form_daemon
    app = make_app(d, stream=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _form(pilot)
        await until(pilot, lambda: screen.local_models is not None, what="the local models")
        builtin = next(m for m in screen.local_models if m.id == "builtin:tiny-arith")
        assert builtin.source == "builtin" and builtin.fits
        _fill(screen, ids["train"], ids["valid"])
        first = await until(pilot, lambda: screen.estimate, timeout=30, what="an estimate")
        assert first.model == "builtin:tiny-arith" and first.fits and "memory" in _estimate(screen)
        # a setting changes: the estimate follows (4 prompts x 8 completions -> micro-batch 32)
        screen.query_one("#hp-batch_size").value = "4"
        changed = await until(pilot, lambda: screen.estimate if screen.estimate.assumptions["micro_batch"] == 32
                              else None, timeout=30, what="the estimate for batch_size 4")
        assert changed.activations_bytes < first.activations_bytes  # 128 -> 32 completions per micro-step
        # a model directory far too big for this machine: estimated, refused next to the model field, then forced
        huge = write_model_dir(tmp_path, "llama-70b", LLAMA_70B)
        screen.query_one("#nj-model").value = str(huge)
        big = await until(pilot, lambda: screen.estimate if screen.estimate.model == str(huge) else None, timeout=30,
                          what="the 70B estimate")
        assert big.clearly_does_not_fit and "does not fit" in _estimate(screen)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "will not fit" in _error(screen, "model"), timeout=30, what="the refusal")
        screen.query_one("#nj-force").value = True
        await pilot.press("ctrl+s")
        await until(pilot, lambda: type(app.screen).__name__ == "JobScreen", timeout=30, what="the forced job")
        with d.client() as c:
            job = c.list_jobs(limit=1).data[0]
            assert job.model == str(huge)
            c.cancel_job(job.id)


@pytest.mark.slow
async def test_palette_doctor_opens_the_report(form_daemon: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, _ = form_daemon
    app = make_app(d, stream=False)
    async with app.run_test(size=(80, 24)) as pilot:
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "Doctor" in commands
        app.action_doctor()
        modal = await until(pilot, lambda: app.screen if type(app.screen).__name__ == "TextModal" else None,
                            timeout=120, what="the doctor report")
        text = static_text(modal.query_one("#text-body"))
        assert "torch:" in text and "sandbox:" in text and "disk:" in text
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ != "TextModal", what="the report closed")
