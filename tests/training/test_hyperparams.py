"""The documented "auto" rules (docs/hyperparameters.md), checked without training anything."""

from __future__ import annotations

from typing import Any

from daemon.api import ReinforcementHyperparameters as HP
from daemon.api import ResolvedHyperparameters
from daemon.hyperparams import DeviceInfo, check_resolved, resolve_hyperparameters

CPU = DeviceInfo("cpu", 1, None)


def resolve(model: str = "builtin:tiny-arith", train_rows: int = 1500, valid_rows: int = 200,
            device: DeviceInfo = CPU, **hp: Any) -> ResolvedHyperparameters:
    return resolve_hyperparameters(HP(**hp), model=model, train_rows=train_rows, valid_rows=valid_rows, seed=5,
                                   device=device)


def test_builtin_model_defaults_learn_on_cpu():
    r = resolve()
    assert r.batch_size == 16 and r.num_generations == 8
    assert r.learning_rate == 5e-4 and r.lora_r == 16 and r.lora_alpha == 32
    assert r.max_steps == 94 * 4  # ceil(1500/16) steps per epoch, enough epochs for ~300 steps
    assert r.eval_interval == r.max_steps // 10 and r.eval_samples == 64
    assert r.max_completion_length == 6 and r.precision == "fp32" and r.num_processes == 1
    assert r.seed == 5


def test_given_values_win_and_multipliers_scale():
    r = resolve(learning_rate_multiplier=2.0, compute_multiplier=0.5, max_steps=7, eval_interval=3)
    assert r.learning_rate == 1e-3 and r.num_generations == 4
    assert r.max_steps == 7 and r.eval_interval == 3


def test_small_datasets_cap_batch_and_eval_samples():
    r = resolve(train_rows=5, valid_rows=10)
    assert r.batch_size == 5 and r.eval_samples == 10 and r.n_epochs == 10


def test_one_process_per_gpu_and_uneven_split_is_rejected():
    r = resolve(device=DeviceInfo("cuda", 4, None))
    assert r.num_processes == 4 and r.precision == "bf16"
    bad = resolve(batch_size=3, num_generations=3, num_processes=2)
    assert any(param == "num_processes" for param, _ in check_resolved(bad))
    assert not check_resolved(resolve(num_processes=2))
