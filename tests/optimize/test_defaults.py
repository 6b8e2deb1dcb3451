"""vg.minimize's budget defaults (optimize/defaults.py): σ anneal, lr decay, the plain kernel."""

from __future__ import annotations

import pytest
import torch

import voidgrad as vg
from voidgrad.bench import pinned
from voidgrad.optimize.defaults import (
    LinearLrDecay,
    default_importance,
    default_lr_schedule,
    default_sigma_schedule,
)


def quadratic(x: torch.Tensor) -> float:
    return float((x - 1).pow(2).sum())


def run_state(dim: int, budget: int, **options: object) -> tuple[vg.OptimizeResult, object]:
    """A run and its state as the last callback saw it."""
    seen = {}

    def keep(record: object, state: object) -> None:
        seen["state"] = state

    result = vg.minimize(
        quadratic,
        torch.zeros(dim),
        budget=budget,
        progress=False,
        callback=keep,
        **options,
        method="smoothing",
    )
    return result, seen["state"]


def test_the_lr_decays_for_a_long_run_in_high_dimension_only() -> None:
    assert default_lr_schedule(1000, 10_000, 1250) == LinearLrDecay(0.01, 1250)
    assert default_lr_schedule(999, 10_000, 1250) is None  # d below 1 000
    assert default_lr_schedule(1000, 5_000, 625) == LinearLrDecay(0.01, 625)
    assert default_lr_schedule(1000, 4_999, 624) is None  # budget below 5 d
    assert repr(default_sigma_schedule(0.2, 50)) == repr(vg.LinearAnneal(0.02, total_steps=50))


def test_minimize_anneals_sigma_over_the_run_unless_told_otherwise() -> None:
    _, state = run_state(3, 80, sigma=0.2)  # 10 steps of 8
    estimator = state.algorithm.estimator
    assert repr(estimator.schedule) == repr(vg.LinearAnneal(0.02, total_steps=10))
    assert estimator.sigma == pytest.approx(0.02)  # at its end
    _, state = run_state(3, 80, sigma=0.2, schedule=None)
    assert state.algorithm.estimator.schedule is None and state.algorithm.estimator.sigma == 0.2


def test_a_flat_step_does_not_advance_the_default_sigma_schedule() -> None:
    def flat_then_quadratic(x: torch.Tensor) -> float:  # flat for x_0 < 5: every estimate is 0
        return 0.0 if float(x[0]) < 5 else float(x.pow(2).sum())

    seen = []
    vg.minimize(
        flat_then_quadratic,
        torch.zeros(2),
        budget=80,
        progress=False,
        callback=lambda record, state: seen.append(state.algorithm.estimator.steps),
        method="smoothing",
    )
    assert seen == [0] * 10  # σ kept its width on all 10 flat steps
    _, state = run_state(2, 80, sigma=0.2)
    assert state.algorithm.estimator.steps == 10  # a quadratic: every step counts
    held = []
    vg.minimize(  # an explicit schedule advances on every step, flat or not
        flat_then_quadratic,
        torch.zeros(2),
        budget=80,
        progress=False,
        schedule=vg.LinearAnneal(0.01, total_steps=10),
        callback=lambda record, state: held.append(state.algorithm.estimator.steps),
        method="smoothing",
    )
    assert held == list(range(1, 11))


def test_the_kernel_is_prdpts_below_1000_parameters_and_plain_from_there() -> None:
    assert run_state(3, 16)[1].algorithm.estimator.importance is True
    assert run_state(1000, 16)[1].algorithm.estimator.importance is False
    assert run_state(3, 16, importance=False)[1].algorithm.estimator.importance is False


def test_minimize_decays_lr_over_a_long_high_dimensional_run_only() -> None:
    _, state = run_state(1000, 5_000, samples=50, lr=0.1)  # 100 steps, 5 d
    assert state.algorithm.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    _, state = run_state(999, 5_000, samples=50, lr=0.1)
    assert state.algorithm.optimizer.param_groups[0]["lr"] == 0.1
    _, state = run_state(1000, 4_950, samples=50, lr=0.1)  # 99 steps, under 5 d
    assert state.algorithm.optimizer.param_groups[0]["lr"] == 0.1
    _, state = run_state(1000, 5_000, samples=50, lr=0.1, lr_schedule=None)
    assert state.algorithm.optimizer.param_groups[0]["lr"] == 0.1


def test_a_run_with_the_default_schedules_resumes_with_a_larger_budget(tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    first = vg.minimize(
        quadratic, torch.zeros(2), budget=40, checkpoint=path, progress=False, method="smoothing"
    )
    more = vg.minimize(
        quadratic, torch.zeros(2), budget=80, checkpoint=path, progress=False, method="smoothing"
    )
    assert first.nevals == 40 and more.nevals == 80


def test_a_bad_lr_schedule_is_refused_naming_it() -> None:
    with pytest.raises(TypeError, match="lr_schedule"):
        vg.minimize(
            quadratic,
            torch.zeros(2),
            budget=16,
            lr_schedule="decay",
            progress=False,
            method="smoothing",
        )


def test_the_bench_keeps_a_constant_lr_unless_told() -> None:
    decay = LinearLrDecay(0.1, 10)
    assert pinned("smoothing", {"lr": 0.1}) == {"lr_schedule": None, "lr": 0.1}
    assert pinned("smoothing", {"lr_schedule": decay})["lr_schedule"] is decay


def test_the_default_rules_name_a_bad_argument() -> None:
    with pytest.raises(ValueError, match="steps"):
        default_lr_schedule(1000, 10_000, 0)
    with pytest.raises(ValueError, match="dim"):
        default_importance(0)
    with pytest.raises(ValueError, match="sigma"):
        default_sigma_schedule(0.0, 10)
    with pytest.raises(ValueError, match="itemsize"):
        vg.ZeroGrads(sigma=0.1, replay="auto").replay_steps(10, 0)
