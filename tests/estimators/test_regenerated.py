"""GaussianSmoothing(regenerate=True): offsets kept as seeds, O(d) memory (regenerated.py).

Tiers: the points and read-out replayed against the stored read-out on the same offsets
(dense, sparse, failed directions), unbiasedness against the exact gradient (CLT), the
chunked evaluation and budget through vg.blackbox, resumption, and the errors.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import voidgrad as vg
from tests.conftest import assert_unbiased
from voidgrad.errors import NumericalWarning
from voidgrad.estimators.mirrored import Mirrored, mirrored_estimate, mirrored_points
from voidgrad.estimators.regenerated import RegeneratedPoints, SeededOffsets

D = 6


def seeded(B: int, n: int, sampler: str, sigma: float = 0.3) -> SeededOffsets:
    seeds = torch.arange(B * n, dtype=torch.int64).reshape(B, n) * 7919 + 11
    return SeededOffsets(seeds, D, sigma, sampler, torch.float64, torch.device("cpu"))


def stored(offsets: SeededOffsets) -> torch.Tensor:
    """The offsets ``[B, n, d]`` the seeds stand for, drawn once each."""
    B, n, _ = offsets.shape
    return torch.stack([torch.stack([offsets.draw(b, i) for i in range(n)]) for b in range(B)])


def contexts(offsets: SeededOffsets, antithetic: bool, importance: bool, **extra: object):
    """The same read-out with offsets as seeds and as a stored tensor."""
    B = offsets.shape[0]
    theta = torch.linspace(-1, 1, B * D, dtype=torch.float64).reshape(B, D)
    sigma = offsets.sigma
    if importance:
        options = {"weight_scale": 0.8 / sigma, "sign_weights": True}
    else:
        options = {"weight_scale": 1 / sigma, "unit": sigma}
    options.update(extra)
    lazy = Mirrored(theta, offsets, antithetic, **options)
    return lazy, Mirrored(theta, stored(offsets), antithetic, **options)


def test_a_direction_is_drawn_the_same_every_time_and_differs_between_directions() -> None:
    offsets = seeded(2, 3, "gaussian")
    assert torch.equal(offsets.draw(1, 2), offsets.draw(1, 2))
    assert not torch.equal(offsets.draw(1, 2), offsets.draw(1, 1))
    assert offsets.draw(0, 0).shape == (D,) and offsets.draw(0, 0).dtype == torch.float64


def test_the_importance_reach_bounds_the_draws() -> None:
    offsets = seeded(1, 64, "importance", sigma=0.5)
    drawn = stored(offsets)
    assert drawn.abs().max() <= offsets.reach()
    assert seeded(1, 1, "gaussian", sigma=0.5).reach() == pytest.approx(5.0)


@pytest.mark.parametrize("antithetic", [True, False])
def test_points_are_the_stored_points_in_the_same_order(antithetic: bool) -> None:
    lazy, eager = contexts(seeded(2, 3, "gaussian"), antithetic, importance=False)
    points = mirrored_points(lazy)
    expected = mirrored_points(eager)
    assert isinstance(points, RegeneratedPoints)
    assert points.shape == tuple(expected.shape)
    B, M, d = points.shape
    assert torch.equal(points.rows(0, B * M), expected.reshape(B * M, d))
    assert torch.equal(points.rows(2, 5), expected.reshape(B * M, d)[2:5])
    assert points.rows(3, 3).shape == (0, d)


def test_rows_out_of_range_are_refused() -> None:
    points = mirrored_points(contexts(seeded(1, 2, "gaussian"), True, False)[0])
    with pytest.raises(IndexError, match=r"rows must lie in \[0, 4\]; got \[2, 5\)"):
        points.rows(2, 5)


@pytest.mark.parametrize("importance", [False, True])
@pytest.mark.parametrize("antithetic", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_the_read_out_equals_the_stored_read_out(
    importance: bool, antithetic: bool, sparse: bool
) -> None:
    pattern = torch.eye(D, dtype=torch.bool) | torch.eye(D, dtype=torch.bool).roll(1, 1)
    extra = {"sparsity": vg.estimators.sparsity.JacobianSparsity(pattern)} if sparse else {}
    lazy, eager = contexts(
        seeded(2, 4, "importance" if importance else "gaussian"), antithetic, importance, **extra
    )
    B = mirrored_points(lazy).shape[0]
    values = torch.sin(3 * mirrored_points(eager)) + mirrored_points(eager).roll(1, -1)
    values[1, 2] = float("nan")  # a failed evaluation drops its direction in both
    v = torch.linspace(0.5, 1.5, B * D, dtype=torch.float64).reshape(B, D)
    lazy_estimate, eager_estimate = (
        mirrored_estimate(lazy, values),
        mirrored_estimate(eager, values),
    )
    torch.testing.assert_close(lazy_estimate.value, eager_estimate.value, rtol=0, atol=0)
    (lazy_grad, lazy_var), (eager_grad, eager_var) = lazy_estimate.vjp(v), eager_estimate.vjp(v)
    torch.testing.assert_close(lazy_grad, eager_grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lazy_var, eager_var, rtol=1e-10, atol=1e-12)


def test_unbiased_for_the_gradient_of_a_quadratic() -> None:
    # κ⋆F of a quadratic has F's own gradient: A θ + b.
    A = torch.diag(torch.linspace(1, 3, D, dtype=torch.float64))
    b = torch.linspace(-1, 1, D, dtype=torch.float64)
    theta = torch.linspace(0.2, 0.7, D, dtype=torch.float64)
    estimator = vg.GaussianSmoothing(0.5, 4, importance=False, regenerate=True, seed=3)
    grads = []
    for _ in range(800):
        query = estimator.ask(theta[None])
        points = query.inputs.rows(0, 4)
        values = (0.5 * (points @ A * points).sum(-1) + points @ b).reshape(1, 4)
        grads.append(estimator.tell(query, values).vjp(torch.ones(1, dtype=torch.float64))[0][0])
    assert_unbiased(torch.stack(grads), A @ theta + b)


def test_blackbox_evaluates_one_row_per_call_and_gives_the_replayed_estimate() -> None:
    shapes = []

    def batch(X: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(X.shape))
        return X.pow(2).sum(1)

    evaluator = vg.Evaluator(batch, backend="vectorized")
    estimator = vg.GaussianSmoothing(0.1, 6, regenerate=True, seed=0)
    theta = torch.ones(D, requires_grad=True)
    vg.blackbox(batch, estimator, evaluator)(theta).backward()
    assert shapes == [(1, D)] * 6 and evaluator.stats.evals == 6
    replay = vg.GaussianSmoothing(0.1, 6, regenerate=True, seed=0)  # ask/tell by hand
    query = replay.ask(torch.ones(1, D))
    values = query.inputs.rows(0, 6).pow(2).sum(1).reshape(1, 6)
    assert torch.equal(theta.grad, replay.tell(query, values).vjp(torch.ones(1))[0][0])


def test_a_query_over_the_budget_is_refused_before_any_chunk_runs() -> None:
    evaluator = vg.Evaluator(lambda x: float(x.sum()), budget=5)
    bb = vg.blackbox(evaluator, vg.GaussianSmoothing(0.1, 6, regenerate=True, seed=0))
    with pytest.raises(vg.BudgetExhausted):
        bb(torch.ones(D, requires_grad=True))
    assert evaluator.stats.evals == 0


def test_a_resumed_estimator_continues_bit_for_bit() -> None:
    def run(estimator: vg.GaussianSmoothing, steps: int) -> list[torch.Tensor]:
        bb = vg.blackbox(lambda x: float(torch.cos(x).sum()), estimator)
        grads = []
        for _ in range(steps):
            theta = torch.ones(D, requires_grad=True)
            bb(theta).backward()
            grads.append(theta.grad)
        return grads

    first = vg.GaussianSmoothing(0.2, 4, regenerate=True, seed=5)
    run(first, 2)
    resumed = vg.GaussianSmoothing(0.2, 4, regenerate=True, seed=99)
    resumed.load_state_dict(first.state_dict())
    for a, b in zip(run(first, 2), run(resumed, 2), strict=True):
        assert torch.equal(a, b)


def test_a_sigma_below_the_resolution_warns_as_stored_offsets_do() -> None:
    estimator = vg.GaussianSmoothing(1e-9, 2, regenerate=True, seed=0)
    with pytest.warns(NumericalWarning, match="sigma"):
        estimator.ask(torch.ones(1, D))


def test_a_sigma_that_overflows_is_refused() -> None:
    estimator = vg.GaussianSmoothing(1e38, 2, regenerate=True, seed=0)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="sigma"):
        estimator.ask(torch.ones(1, D))


def test_bad_options_are_refused() -> None:
    with pytest.raises(TypeError, match="regenerate"):
        vg.GaussianSmoothing(0.1, 2, regenerate="yes")
    with pytest.raises(ValueError, match="regenerate=True needs directions='iid'"):
        vg.GaussianSmoothing(0.1, 2, importance=False, directions="orthogonal", regenerate=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_offsets_are_drawn_on_the_device_of_theta() -> None:
    estimator = vg.GaussianSmoothing(0.1, 4, importance=False, regenerate=True, seed=0)
    theta = torch.ones(D, device="cuda", requires_grad=True)
    bb = vg.blackbox(lambda x: x.pow(2).sum(), estimator)
    bb(theta).backward()
    assert theta.grad.device.type == "cuda"
    query = estimator.ask(theta.detach()[None])
    assert query.inputs.rows(0, 1).device.type == "cuda"


def test_minimize_runs_with_regenerated_offsets() -> None:
    def loss(x: torch.Tensor) -> float:
        return float((x - 1).pow(2).sum())

    result = vg.minimize(
        loss,
        torch.zeros(D),
        budget=800,
        lr=0.05,
        regenerate=True,
        progress=False,
        seed=0,
        method="smoothing",
    )
    assert result.nevals == 800 and loss(result.x_last) < 0.05 * loss(torch.zeros(D))
