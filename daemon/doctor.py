"""`GET /v1/doctor` / `rft-tui doctor`: is this machine ready to train, and if not, what fixes it.

Each line is ok / warn / fail with the fix. The torch/CUDA/vLLM facts come from the worker's interpreter
(`python -m daemon.worker.doctor_probe`, run through daemon.helper_process: the daemon never imports torch);
the rest (sandbox, disk, Hugging Face cache, memory) is read here. Runs in a thread-pool thread.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from daemon import api
from daemon.devices import cpu_memory, driver_present
from daemon.errors import ApiError
from daemon.helper_process import run_module_sync
from daemon.paths import Paths

GiB = 2**30
PROBE_TIMEOUT_S = 180.0
PINNED = {"torch": "2.13.0", "transformers": "5.24.0", "trl": "1.16.0", "peft": "0.21.2", "vllm": "0.30.0",
          "bitsandbytes": "0.50.2"}
SETUP_GPU = "scripts/setup.sh gpu (installs the [gpu] extra: vLLM, bitsandbytes; docs/gpu.md)"


def check(name: str, status: str, detail: str, fix: str | None = None) -> api.DoctorCheck:
    return api.DoctorCheck(name=name, status=status, detail=detail, fix=fix)  # type: ignore[arg-type]


def driver_version() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def stack_checks(p: dict[str, Any]) -> list[api.DoctorCheck]:
    """Python, torch, CUDA, each GPU, vLLM and bitsandbytes, from the probe's answer."""
    out = [check("python", "ok" if sys.version_info >= (3, 11) else "fail",
                 f"daemon {platform.python_version()} ({sys.executable}); worker {p.get('python')} "
                 f"({p.get('executable')})", None if sys.version_info >= (3, 11) else "Python 3.11 or newer")]
    v = p.get("versions", {})
    torch_v = v.get("torch")
    if not torch_v:
        out.append(check("torch", "fail", "not installed in the worker's environment", "scripts/setup.sh"))
        return out
    torch_status = "ok" if torch_v.split("+")[0] == PINNED["torch"] else "warn"
    out.append(check("torch", torch_status if "torch_error" not in p else "fail",
                     f"{torch_v}" + (f"; {p['torch_error']}" if "torch_error" in p else ""),
                     None if torch_status == "ok" else f"the tested pin is torch=={PINNED['torch']}"))
    driver = driver_version()
    runtime = p.get("cuda_runtime")
    gpu_box = driver is not None or driver_present()
    if p.get("cuda_available"):
        out.append(check("cuda", "ok", f"runtime {runtime}, driver {driver or 'unknown'}"))
    elif gpu_box and not runtime:
        out.append(check("cuda", "fail", f"an NVIDIA driver ({driver or 'present'}) but torch {torch_v} is a CPU "
                         "build", SETUP_GPU))
    elif gpu_box:
        out.append(check("cuda", "fail", f"torch {torch_v} (CUDA {runtime}) cannot use the driver "
                         f"({driver or 'version unknown'})", "a driver new enough for that CUDA runtime "
                         "(nvidia-smi shows the highest CUDA it supports)"))
    else:
        out.append(check("cuda", "warn", "no NVIDIA GPU: training runs on the CPU (the built-in model is fine; "
                         "real 0.5-8B models need a GPU)", "a machine with an NVIDIA GPU, then " + SETUP_GPU))
    for g in p.get("gpus", []):
        free, total = g["free_bytes"], g["total_bytes"]
        status = "ok" if free >= 8 * GiB else "warn"
        out.append(check(f"gpu {g['index']}", status, f"{g['name']}: {free / GiB:.1f} of {total / GiB:.1f} GiB "
                         f"free, bf16 {'yes' if g['bf16'] else 'no (fp16 instead)'}",
                         None if status == "ok" else "free GPU memory (other processes hold it: nvidia-smi)"))
    out.append(vllm_check(p, bool(p.get("cuda_available"))))
    bnb = v.get("bitsandbytes")
    out.append(check("bitsandbytes", "ok" if bnb or not p.get("cuda_available") else "warn",
                     f"{bnb}" if bnb else "not installed (only quantization: 4bit needs it)",
                     None if bnb or not p.get("cuda_available") else SETUP_GPU))
    if p.get("stack_import_error"):
        v = p.get("versions", {})
        builds = ", ".join(f"{k} {v[k]}" for k in ("torch", "torchvision", "torchaudio") if v.get(k))
        out.append(check("training stack", "fail", f"the worker's imports fail: {p['stack_import_error']}",
                         f"torch, torchvision and torchaudio must be builds of one kind, all CUDA or all CPU "
                         f"({builds}); reinstall them together, or {SETUP_GPU}"))
    else:
        out.append(check("training stack", "ok", "TRL's GRPOTrainer and PEFT import"))
    if p.get("trl_unmet"):
        out.append(check("trl", "fail", "TRL's requirements are not met: " + "; ".join(p["trl_unmet"]),
                         "scripts/setup.sh"))
    return out


def vllm_check(p: dict[str, Any], cuda: bool) -> api.DoctorCheck:
    v = p.get("versions", {}).get("vllm")
    if not v:
        if cuda:
            return check("vllm", "warn", "not installed: rollouts use HF generate (slower)", SETUP_GPU)
        return check("vllm", "ok", "not installed (not needed without a GPU)")
    problems = list(p.get("vllm_unmet") or [])
    trl_range = p.get("trl_vllm_range")
    if trl_range:
        from packaging.requirements import Requirement

        if not Requirement(trl_range).specifier.contains(v.split("+")[0], prereleases=True):
            problems.append(f"TRL {p['versions'].get('trl')} supports {trl_range}")
    if p.get("vllm_import_error"):
        problems.append(f"import vllm fails: {p['vllm_import_error']}")
    if problems:
        return check("vllm", "fail", f"{v}: " + "; ".join(problems), SETUP_GPU)
    return check("vllm", "ok", f"{v}: compatible with torch {p['versions'].get('torch')}, transformers "
                 f"{p['versions'].get('transformers')}, TRL {p['versions'].get('trl')}"
                 + ("" if cuda else " (no GPU here: unused)"))


def sandbox_check() -> api.DoctorCheck:
    from graders.sandbox_bwrap import sandbox_mode

    mode = sandbox_mode()
    if mode == "bubblewrap":
        return check("sandbox", "ok", "python graders run in bubblewrap (user namespaces work)")
    if mode == "off":
        return check("sandbox", "warn", "OFF (RFT_SANDBOX=off): python grader code runs with this user's access",
                     "unset RFT_SANDBOX once bubblewrap works")
    detail, _, fix = mode.removeprefix("unavailable: ").partition(": ")
    return check("sandbox", "fail", detail, fix or None)


def disk_check(paths: Paths) -> api.DoctorCheck:
    home = paths.home if paths.home.exists() else paths.home.parent
    usage = shutil.disk_usage(home)
    status = "ok" if usage.free >= 20 * GiB else "warn" if usage.free >= 2 * GiB else "fail"
    return check("disk", status, f"{usage.free / GiB:.1f} GiB free in {paths.home}",
                 None if status == "ok" else "free space: checkpoints and models need tens of GiB")


def memory_check() -> api.DoctorCheck:
    free, total = cpu_memory()
    return check("memory", "ok" if free >= 4 * GiB else "warn", f"{free / GiB:.1f} of {total / GiB:.1f} GiB RAM "
                 "available", None if free >= 4 * GiB else "close other programs")


def hf_cache() -> tuple[api.DoctorCheck, list[api.LocalModel]]:
    """The Hugging Face cache and the models in it (huggingface_hub's own scan), with sizes."""
    from huggingface_hub import constants, scan_cache_dir

    where = Path(constants.HF_HUB_CACHE)
    if not where.exists():
        return check("hf cache", "ok", f"{where}: empty (hub models download there on first use)"), []
    try:
        info = scan_cache_dir(where)
    except Exception as exc:  # noqa: BLE001 - a corrupted cache is a finding
        return check("hf cache", "warn", f"{where}: cannot scan ({exc})", "hf cache scan; hf cache delete"), []
    models = [api.LocalModel(id=r.repo_id, source="hub", size_bytes=r.size_on_disk, path=str(r.repo_path))
              for r in sorted(info.repos, key=lambda r: r.repo_id) if r.repo_type == "model"]
    warn = [str(w) for w in info.warnings][:3]
    detail = f"{where}: {len(models)} model(s), {info.size_on_disk / GiB:.2f} GiB"
    return check("hf cache", "warn" if warn else "ok", detail + (f"; {'; '.join(warn)}" if warn else ""),
                 "hf cache scan" if warn else None), models


def run(paths: Paths) -> api.DoctorReport:
    started = time.perf_counter()
    try:
        probe = run_module_sync("daemon.worker.doctor_probe", [], None, paths.home, PROBE_TIMEOUT_S)
        checks = stack_checks(probe)
    except ApiError as e:
        checks = [check("worker environment", "fail", f"the probe failed: {e.message}", "scripts/setup.sh")]
    cache, models = hf_cache()
    checks += [sandbox_check(), disk_check(paths), memory_check(), cache]
    return api.DoctorReport(ok=all(c.status != "fail" for c in checks), checks=checks, models=models,
                            elapsed_s=round(time.perf_counter() - started, 2))
