"""Run a helper that needs torch/transformers (`python -m daemon.worker.X`) out of the daemon's process.

Pre-flight, export and token counts load heavy libraries; the daemon never imports them. Each helper reads
JSON (or arguments) and prints one JSON object as its last stdout line: the result, or `{"error": ...}`,
which becomes a 400 naming the request field at fault. A helper that runs over its time limit is killed
(504); one that dies without a result is a 500 quoting its last stderr line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from daemon.errors import ApiError, bad_request
from daemon.worker_protocol import worker_python


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "RFT_HOME": str(home), "TOKENIZERS_PARALLELISM": "false"}


def _command(module: str, args: list[str]) -> list[str]:
    return [worker_python(), "-m", module, *args]  # the training stack's interpreter (RFT_WORKER_PYTHON or ours)


def _timed_out(module: str, timeout: float) -> ApiError:
    return ApiError(504, f"{module} took longer than {timeout:.0f} s", type="server_error", code="timeout")


def _result(module: str, returncode: int | None, out: bytes, err: bytes, param: str | None,
            code: str | None) -> dict[str, Any]:
    """The helper's JSON answer, or the ApiError that says why there is none."""
    lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.strip().startswith("{")]
    result: dict[str, Any] = {}
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = {}
    if "error" in result:
        raise bad_request(str(result["error"]), param=param, code=code or module.rsplit(".", 1)[-1] + "_failed")
    if returncode != 0 or not result:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise ApiError(500, f"{module} exited with code {returncode}: {tail[0][:500]}", type="server_error",
                       code="subprocess_failed")
    return result


async def run_module(module: str, args: list[str], stdin: bytes | None, home: Path, timeout: float,
                     param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """From a route (on the event loop): the helper's JSON answer; errors become 400/500/504 ApiErrors."""
    proc = await asyncio.create_subprocess_exec(
        *_command(module, args), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=_env(home), start_new_session=True)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        raise _timed_out(module, timeout) from None
    return _result(module, proc.returncode, out, err, param, code)


def run_module_sync(module: str, args: list[str], stdin: bytes | None, home: Path, timeout: float,
                    param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """From a thread-pool thread (never the event loop): the same contract as `run_module`."""
    proc = subprocess.Popen(_command(module, args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(home), start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        raise _timed_out(module, timeout) from None
    return _result(module, proc.returncode, out, err, param, code)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)  # the helper and anything it started (tokenizer threads, compilers)
    except (ProcessLookupError, PermissionError):
        pass
