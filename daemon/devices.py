"""The devices a job can train on, found without importing torch (the daemon never does).

GPUs come from `nvidia-smi --query-gpu` (name, total/free memory, compute capability: bf16 needs >= 8.0),
restricted to `CUDA_VISIBLE_DEVICES`; the CPU's memory is what psutil says is available. The memory-fit
estimate compares against these numbers and the `"auto"` rules for precision and vLLM read them.
`RFT_DEVICE=cpu` forces the CPU (tests, or a GPU box that should not be used).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

NVIDIA_SMI_TIMEOUT_S = 5.0
QUERY = "index,name,memory.total,memory.free,compute_cap"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: float | None

    @property
    def bf16(self) -> bool:
        """Ampere (8.0) and newer do bf16 in hardware; older GPUs train in fp16."""
        return self.compute_capability is not None and self.compute_capability >= 8.0


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=index,name,memory.total,memory.free,compute_cap --format=csv,noheader,nounits`."""
    gpus: list[Gpu] = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        try:
            cc = float(parts[4]) if len(parts) > 4 and parts[4] not in ("", "[N/A]", "N/A") else None
            gpus.append(Gpu(int(parts[0]), parts[1], int(float(parts[2])) * 2**20, int(float(parts[3])) * 2**20, cc))
        except ValueError:
            continue
    return gpus


def visible(gpus: list[Gpu], spec: str | None) -> list[Gpu]:
    """The GPUs `CUDA_VISIBLE_DEVICES` leaves (indices; UUIDs and other forms keep all of them)."""
    if spec is None:
        return gpus
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    if not wanted:
        return []
    if not all(w.isdigit() for w in wanted):
        return gpus
    by_index = {g.index: g for g in gpus}
    return [by_index[int(w)] for w in wanted if int(w) in by_index]


def query_gpus() -> list[Gpu]:
    """Every visible NVIDIA GPU with its free memory now; [] without a driver or with RFT_DEVICE=cpu."""
    if os.environ.get("RFT_DEVICE", "").lower() == "cpu":
        return []
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return visible(parse_nvidia_smi(out.stdout), os.environ.get("CUDA_VISIBLE_DEVICES"))


def driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def cpu_memory() -> tuple[int, int]:
    """(available, total) bytes of RAM."""
    import psutil

    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total)
