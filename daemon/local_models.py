"""`GET /v1/models`: the models you can train without downloading anything, with size and a fit verdict.

The built-in models, and every model repo in the local Hugging Face cache (huggingface_hub's own scan). The
verdict is the memory estimate with the default ("auto") settings on this machine's tightest device; the
New-job form re-estimates with its own settings once a model is chosen (pre-flight `estimate_only`).
"""

from __future__ import annotations

from daemon import api
from daemon.hyperparams import DeviceInfo, resolve_hyperparameters
from daemon.memory_estimate import estimate
from daemon.model_shape import ModelShape, ShapeUnavailable, UnknownArchitecture, shape_for
from daemon.models import BUILTIN_MODEL_NAMES, builtin_dir, builtin_ready
from daemon.paths import Paths

#: the training set size the default verdict assumes (batch_size "auto" is min(16, rows))
DEFAULT_ROWS = 1000


def _dir_size(path: object) -> int | None:
    from pathlib import Path

    p = Path(str(path))
    if not p.is_dir():
        return None
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _verdict(model: str, shape: ModelShape | None, device: DeviceInfo) -> tuple[bool | None, str, int | None]:
    if shape is None:
        return None, "no config.json: no estimate", None
    from daemon.devices import cpu_memory

    hp = resolve_hyperparameters(api.ReinforcementHyperparameters(), model=model, train_rows=DEFAULT_ROWS,
                                 valid_rows=64, seed=0, device=device, shape=shape)
    free, total = cpu_memory()
    e = estimate(model, shape, hp, list(device.gpus), free, total)
    return e.fits, e.verdict, shape.parameters


def _shape(model: str, paths: Paths) -> ModelShape | None:
    try:
        return shape_for(model, paths.home, allow_helper=False)  # a list must stay fast: no meta-device helper
    except (ShapeUnavailable, UnknownArchitecture, ValueError):
        return None


def list_models(paths: Paths) -> list[api.LocalModel]:
    device = DeviceInfo.detect()
    out: list[api.LocalModel] = []
    for name in BUILTIN_MODEL_NAMES:
        where = builtin_dir(paths, name)
        fits, verdict, params = _verdict(name, _shape(name, paths), device)
        out.append(api.LocalModel(id=name, source="builtin", owned_by="rft-tui", path=str(where),
                                  size_bytes=_dir_size(where) if builtin_ready(where) else None,
                                  parameters=params, fits=fits, verdict=verdict))
    from huggingface_hub import scan_cache_dir

    try:
        repos = [r for r in scan_cache_dir().repos if r.repo_type == "model"]
    except Exception:  # noqa: BLE001 - no cache (or an unreadable one): nothing cached to offer
        repos = []
    for r in sorted(repos, key=lambda r: r.repo_id):
        fits, verdict, params = _verdict(r.repo_id, _shape(r.repo_id, paths), device)
        out.append(api.LocalModel(id=r.repo_id, source="hub", owned_by=r.repo_id.split("/")[0],
                                  created=int(r.last_modified), path=str(r.repo_path), size_bytes=r.size_on_disk,
                                  parameters=params, fits=fits, verdict=verdict))
    return out
