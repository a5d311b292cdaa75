"""`python -m daemon.worker.doctor_probe`: what the worker's environment can do, as one JSON object.

Runs in the worker's interpreter (the daemon's own unless `RFT_WORKER_PYTHON` names another), because that is
where torch, CUDA and vLLM have to work; the daemon (`daemon/doctor.py`) turns the answer into ok / warn / fail
lines. torch is imported only if it is installed; vLLM is imported (seconds) only when it is installed and a GPU
is there.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from typing import Any

STACK = ("torch", "transformers", "trl", "peft", "accelerate", "vllm", "bitsandbytes", "torchvision", "torchaudio")


def version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def unmet(package: str, only: tuple[str, ...]) -> list[str]:
    """`package`'s declared requirements on `only` that the installed versions do not satisfy."""
    from packaging.requirements import Requirement

    problems = []
    for text in md.requires(package) or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = req.name.lower()
        if name not in only:
            continue
        have = version(name)
        if have is None:
            problems.append(f"{req} (not installed)")
        elif not req.specifier.contains(have.split("+")[0], prereleases=True):
            problems.append(f"{req} (installed {have})")
    return problems


def trl_vllm_range() -> str | None:
    """TRL's `vllm` extra: the vLLM versions this TRL release supports."""
    for text in md.requires("trl") or []:
        if text.startswith("vllm") and 'extra == "vllm"' in text:
            return text.split(";")[0].strip()
    return None


def torch_facts() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "cuda_runtime": torch.version.cuda,
                           "gpus": []}
    if out["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            with torch.cuda.device(i):
                bf16 = bool(torch.cuda.is_bf16_supported())
            out["gpus"].append({"index": i, "name": torch.cuda.get_device_name(i), "free_bytes": int(free),
                                "total_bytes": int(total), "bf16": bf16})
    return out


def vllm_import() -> str | None:
    """None when `import vllm` works, else the error line."""
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - the error is the answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    return None


def stack_import() -> str | None:
    """None when the worker's own imports work (TRL's GRPOTrainer, PEFT), else the error. A torchvision or
    torchaudio built for another torch (a CUDA wheel beside a CPU torch) breaks this while `import torch` works."""
    try:
        import peft  # noqa: F401
        from trl import GRPOTrainer  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - the error is the answer
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" + (
            f" (cause: {type(cause).__name__}: {str(cause).splitlines()[0][:200]})" if cause is not exc else "")
    return None


def probe() -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable,
                           "versions": {name: version(name) for name in STACK}}
    if out["versions"]["torch"]:
        try:
            out.update(torch_facts())
        except Exception as exc:  # noqa: BLE001 - a broken torch install is a finding, not a crash
            out["torch_error"] = f"{type(exc).__name__}: {exc}"
    if out["versions"]["vllm"]:
        out["vllm_unmet"] = unmet("vllm", ("torch", "transformers"))
        out["trl_vllm_range"] = trl_vllm_range()
        if out.get("cuda_available"):
            out["vllm_import_error"] = vllm_import()
    if out["versions"]["trl"]:
        out["trl_unmet"] = unmet("trl", ("transformers", "accelerate"))
        out["stack_import_error"] = stack_import()
    return out


def main() -> int:
    print(json.dumps(probe()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
