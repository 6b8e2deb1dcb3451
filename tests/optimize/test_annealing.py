"""Simulated annealing in ask/tell form: its math, the ask/limit contract, failures, replay."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from tests.optimize.test_adapters import build, drive, sphere
from voidgrad.optimize.adapters import annealing
from voidgrad.optimize.dfo import ReplayDiverged

NAN = float("nan")


def flaky(X: torch.Tensor) -> torch.Tensor:
    """The sphere, failing (NaN) at x0 = 0, where x_0 > 1.5, and where |x_1 - 0.7| < 0.1."""
    failed = (X.abs().sum(1) == 0) | (X[:, 0] > 1.5) | ((X[:, 1] - 0.7).abs() < 0.1)
    return torch.where(failed, torch.tensor(NAN, dtype=X.dtype), sphere(X))


# --------------------------------------------------------------------------- the math


def test_temperature_schedule_starts_at_initial_temp_and_falls() -> None:
    temperatures = [annealing.temperature(t, 100.0, 2.62) for t in range(1, 50)]
    assert temperatures[0] == pytest.approx(100.0)
    assert all(a > b for a, b in itertools.pairwise(temperatures))
    # T(t) = T1 (2^(q-1) - 1) / ((1 + t)^(q-1) - 1) at t = 9
    assert temperatures[8] == pytest.approx(100.0 * (2**1.62 - 1) / (10**1.62 - 1))


def test_visiting_law_is_cauchy_with_scale_t_at_q_2() -> None:
    # q_v = 2: the Tsallis visiting law is Cauchy-Lorentz of scale T (step = T X / |Y|).
    for temperature in (0.01, 1.0, 250.0):
        assert annealing.visiting_scale(temperature, 2.0) == pytest.approx(temperature, rel=1e-12)


def test_visiting_steps_are_those_of_scipy_dual_annealing() -> None:
    dual = pytest.importorskip("scipy.optimize._dual_annealing")
    for q, temperature in ((2.62, 5230.0), (2.62, 0.3), (1.7, 12.0), (2.9, 1.0)):
        reference = dual.VisitingDistribution(
            np.zeros(1), np.ones(1), q, np.random.default_rng(0)
        ).visit_fn(temperature, 1000)
        x, y = np.random.default_rng(0).normal(size=(1000, 2)).T
        ours = annealing.visiting_scale(temperature, q) * x / np.abs(y) ** ((q - 1) / (3 - q))
        np.testing.assert_allclose(ours, reference, rtol=1e-9)


def test_acceptance_is_generalized_metropolis() -> None:
    assert annealing.acceptance(0.0, 2.0, -5.0) == 1.0
    assert annealing.acceptance(math.inf, 2.0, -5.0) == 0.0
    # [1 - (1 - q_a) dE / T]_+^(1 / (1 - q_a)), and zero past the cut-off dE = T / (1 - q_a)
    assert annealing.acceptance(0.1, 2.0, -5.0) == pytest.approx((1 - 6 * 0.1 / 2) ** (1 / 6))
    assert annealing.acceptance(2.0 / 6 + 1e-9, 2.0, -5.0) == 0.0
    # q_a -> 1 is Metropolis, exp(-dE / T)
    assert annealing.acceptance(0.7, 2.0, 1 - 1e-7) == pytest.approx(math.exp(-0.35), rel=1e-5)


def test_local_search_is_quasi_newton_on_an_ill_conditioned_quadratic() -> None:
    # Steepest descent needs hundreds of steps here (condition number 100); L-BFGS a few.
    scales = np.array([1.0, 3.0, 10.0, 30.0, 100.0])

    def f(x: np.ndarray) -> float:
        return float(scales @ (x - 1.0) ** 2)

    lower, upper = np.full(5, -10.0), np.full(5, 10.0)
    search = annealing.local_search((f(np.zeros(5)), np.zeros(5)), lower, upper)
    x, evals = next(search), 1
    with pytest.raises(StopIteration) as end:
        while True:
            x = search.send(f(x))
            evals += 1
    e, best = end.value.value
    assert e < 1e-9 and np.allclose(best, 1.0, atol=1e-4)
    assert evals < 250  # 6 evaluations per gradient and step: under 40 iterations


# --------------------------------------------------------------------------- ask/tell


def test_ask_gives_one_point_whatever_the_limit_and_none_for_zero() -> None:
    adapter = build("annealing")
    assert adapter.ask(0) is None and adapter.stop_reason is None
    first = adapter.ask(1)
    assert first is not None and first.shape == (1, 5) and torch.equal(first[0], torch.zeros(5))
    adapter.tell(first, sphere(first))
    assert adapter.ask(0) is None  # asks nothing and does not move the search on
    second = adapter.ask(1000)
    again = build("annealing")
    again.tell(again.ask(1), sphere(first))  # type: ignore[arg-type]
    assert second is not None and second.shape == (1, 5)
    assert torch.equal(second, again.ask(1))


def test_annealing_finishing_before_the_budget_ends_the_run() -> None:
    adapter = build("annealing", maxiter=1, no_local_search=True)
    asked = drive(adapter, 500)
    assert len(asked) == 1 + 2 * 5  # x0, then one chain of 2d visits
    assert adapter.stop_reason == "annealing finished: maxiter=1 iterations done"
    assert adapter.ask(10) is None


def test_a_chain_moves_every_coordinate_then_each_alone() -> None:
    X = torch.cat(drive(build("annealing", maxiter=1, no_local_search=True), 500))
    moved = torch.stack([(X[i] != X[i - 1]).sum() for i in range(1, len(X))])
    # the first d visits move all d coordinates (from the accepted point); the last d one each
    assert (moved[5:] <= 2).all() and (moved[:5] >= 4).any()


def test_points_stay_in_bounds_through_visits_and_local_search() -> None:
    adapter = build("annealing", bounds=(-0.5, 0.5))
    X = torch.cat(drive(adapter, 300))
    assert X.min() >= -0.5 and X.max() <= 0.5
    # the minimum in the box is the corner 0.5 (the sphere's centre is at 1): found exactly
    assert torch.equal(adapter.recommendation(), torch.full((5,), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="x0 must lie inside bounds"):
        build("annealing", bounds=(1.0, 2.0))
    with pytest.raises(ValueError, match="lower < upper"):
        build("annealing", bounds=(1.0, -1.0))
    with pytest.raises(ValueError, match="bounds must be finite"):
        build("annealing", bounds=(-math.inf, 1.0))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("visit", 1.3, r"visit must be a number in \(1.4, 3\)"),
        ("visit", 3.0, r"visit must be a number in \(1.4, 3\)"),
        ("accept", 1.0, r"accept must be a number in \(-inf, 1\)"),
        ("restart_temp_ratio", 1.0, "restart_temp_ratio must be a number in"),
        ("initial_temp", 0.0, "initial_temp must be a finite number > 0"),
        ("maxiter", 0, "maxiter must be an int >= 1"),
        ("visit", "2.6", "visit must be a number"),
    ],
)
def test_settings_are_checked_when_built(option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build("annealing", **{option: value})


def test_no_local_search_must_be_a_flag() -> None:
    with pytest.raises(TypeError, match="no_local_search must be True or False"):
        build("annealing", no_local_search="yes")


# --------------------------------------------------------------------------- failures


def test_a_failed_start_is_replaced_and_failures_are_never_kept() -> None:
    adapter = build("annealing", budget=400)
    X = torch.cat(drive(adapter, 400, flaky))
    Y = flaky(X)
    assert torch.isnan(Y[0]) and torch.isfinite(Y[1])  # x0 failed: a random start instead
    assert len(X) == 400 and adapter.stop_reason is None
    rec = adapter.recommendation()
    assert torch.isfinite(flaky(rec[None])).all()
    assert float(sphere(rec[None])[0]) == float(Y[torch.isfinite(Y)].min())
    assert float(sphere(rec[None])[0]) < 1e-6  # the failures cost evaluations, not the run


def test_a_loss_that_always_fails_ends_the_run_after_max_starts() -> None:
    adapter = build("annealing", budget=5000)
    asked = drive(adapter, 5000, lambda X: torch.full((len(X),), NAN, dtype=X.dtype))
    assert len(asked) == annealing.MAX_STARTS
    assert adapter.stop_reason is not None and "not finite" in adapter.stop_reason
    assert torch.equal(adapter.recommendation(), torch.zeros(5, dtype=torch.float64))


# --------------------------------------------------------------------------- replay


def test_same_seed_same_run_whatever_the_global_rng() -> None:
    np.random.seed(1)
    first = torch.cat(drive(build("annealing", seed=7, budget=300), 300, flaky))
    np.random.seed(2)
    second = torch.cat(drive(build("annealing", seed=7, budget=300), 300, flaky))
    other = torch.cat(drive(build("annealing", seed=8, budget=300), 300, flaky))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("cut", [1, 11, 30, 57, 140])
def test_restore_replays_bit_exactly_at_any_cut(cut: int) -> None:
    # Cuts in the start, the first chain, the local search's gradient and line search, later.
    straight = torch.cat(drive(build("annealing", budget=300), 300, flaky))
    first = build("annealing", budget=300)
    drive(first, cut, flaky)
    resumed = build("annealing", seed=5, budget=300)  # the state carries the seed
    resumed.restore(first.state())
    assert torch.equal(torch.cat(drive(resumed, 300 - cut, flaky)), straight[cut:])


def test_annealing_resumes_with_a_larger_budget() -> None:
    short = build("annealing", budget=100)
    drive(short, 100)
    resumed = build("annealing", budget=300)
    resumed.restore(short.state())
    tail = torch.cat(drive(resumed, 200))
    assert torch.equal(torch.cat(drive(build("annealing", budget=300), 300))[100:], tail)


def test_a_replay_with_other_settings_is_refused() -> None:
    adapter = build("annealing", budget=100)
    drive(adapter, 30)
    other = build("annealing", budget=100, visit=2.5)
    with pytest.raises(ReplayDiverged, match=r"replaying batch 2 of 30, the optimizer asked"):
        other.restore(adapter.state())
