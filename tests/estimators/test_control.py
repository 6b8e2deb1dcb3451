"""The shared score-function formula (voidgrad.estimators.control): exact arithmetic checks.

Smoothing, SPSA, ZeroGrads and RELAX read their estimates through ``score_estimate``; these
tests pin what it computes: the plain mean, antithetic pairs, dropped samples, a control.
"""

from __future__ import annotations

import math

import pytest
import torch

import voidgrad as vg
from voidgrad.estimators.control import score_estimate

GENERATOR = torch.Generator().manual_seed(0)
COSTS = torch.randn(6, generator=GENERATOR, dtype=torch.float64)
SCORES = torch.randn(6, 3, generator=GENERATOR, dtype=torch.float64)


def test_it_is_the_mean_of_cost_times_score() -> None:
    expected = sum(COSTS[i] * SCORES[i] for i in range(6)) / 6
    torch.testing.assert_close(score_estimate(COSTS, SCORES), expected, rtol=1e-15, atol=0)


def test_a_control_is_subtracted_and_its_gradient_added() -> None:
    control = torch.randn(6, generator=GENERATOR, dtype=torch.float64)
    shift = torch.randn(3, generator=GENERATOR, dtype=torch.float64)
    expected = score_estimate(COSTS - control, SCORES) + shift
    torch.testing.assert_close(score_estimate(COSTS, SCORES, control, shift), expected)
    # c = f: only the control's gradient is left, exactly
    assert torch.equal(score_estimate(COSTS, SCORES, COSTS, shift), shift)


def test_antithetic_pairs_are_the_plain_mean_over_both_points() -> None:
    half = SCORES[:3]
    mirrored = torch.cat([half, -half])  # s(−τ) = −s(τ)
    torch.testing.assert_close(
        score_estimate(COSTS, half, antithetic=True), score_estimate(COSTS, mirrored)
    )


def test_equal_values_at_a_pair_cancel_exactly_whatever_their_size() -> None:
    """f s with s ~ τ/σ² would leave a residue of order |f|/σ if weighted before differencing."""
    sigma = 1e-8
    tau = torch.randn(4, 5, generator=GENERATOR, dtype=torch.float64) * sigma
    costs = torch.full((8,), 1e6, dtype=torch.float64)
    assert torch.equal(
        score_estimate(costs, tau / sigma / sigma, antithetic=True), torch.zeros(5).double()
    )


def test_dropped_samples_leave_the_mean_of_the_kept_ones() -> None:
    valid = torch.tensor([True, False, True, True, False, True])
    costs = torch.where(valid, COSTS, math.nan)
    kept = score_estimate(COSTS[valid], SCORES[valid])
    torch.testing.assert_close(score_estimate(costs, SCORES, valid=valid), kept)
    pairs = torch.tensor([True, False, True])
    torch.testing.assert_close(
        score_estimate(costs.clone().nan_to_num(), SCORES[:3], antithetic=True, valid=pairs),
        score_estimate(COSTS[[0, 2, 3, 5]], SCORES[[0, 2]], antithetic=True),
    )


def test_batches_and_dtypes_are_kept_apart() -> None:
    batch = torch.stack([COSTS, 2 * COSTS])
    estimate = score_estimate(batch, SCORES.float().expand(2, 6, 3))
    assert estimate.dtype == torch.float64 and estimate.shape == (2, 3)
    torch.testing.assert_close(estimate[1], 2 * estimate[0])


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return (x**2).sum()


def test_zerograds_drops_a_pair_with_a_failed_point_and_refuses_when_none_is_left() -> None:
    estimator = vg.ZeroGrads(sigma=0.2, samples=6, seed=0)
    theta = torch.zeros(1, 3, dtype=torch.float64)
    query = estimator.ask(theta)
    values = torch.stack([quadratic(x) for x in query.inputs[0]]).reshape(1, 6)
    one_failed = values.clone()
    one_failed[0, 1] = math.nan  # pair 1 loses its + point
    gradient = estimator.tell(query, one_failed).vjp(torch.ones(1, dtype=torch.float64))[0]
    assert torch.isfinite(gradient).all()

    all_pairs_failed = values.clone()
    all_pairs_failed[0, :3] = math.nan  # every pair loses one point; the − points are finite
    with pytest.raises(ValueError, match="every antithetic pair of this ZeroGrads step"):
        estimator.tell(query, all_pairs_failed)
