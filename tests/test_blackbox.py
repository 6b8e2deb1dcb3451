"""vg.blackbox: shapes, composition with autograd, failure handling, argument checks."""

from __future__ import annotations

import pytest
import torch

import voidgrad as vg


def image(row: torch.Tensor) -> torch.Tensor:
    """A 2x3 'render' of a 2-vector."""
    return torch.outer(
        torch.stack([row[0], row[1]]), torch.tensor([1.0, 2.0, 3.0], dtype=row.dtype)
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_single_and_batched_inputs_have_the_right_shapes_and_dtypes(dtype) -> None:
    bb = vg.blackbox(image, vg.GaussianSmoothing(0.1, 4, seed=0))
    assert bb(torch.zeros(2, dtype=dtype, requires_grad=True)).shape == (2, 3)
    out = bb(torch.zeros(5, 2, dtype=dtype, requires_grad=True))
    assert out.shape == (5, 2, 3) and out.dtype == dtype
    assert bb.evaluator.stats.evals == 4 + 5 * 4


def test_batched_rows_are_independent_calls() -> None:
    theta = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    bb = vg.blackbox(image, vg.FiniteDifferences(1e-3))
    out = bb(theta)
    torch.testing.assert_close(out[0], image(theta[0].detach()), atol=1e-6, rtol=0)
    out[1].sum().backward()
    assert torch.equal(theta.grad[0], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(theta.grad[1], torch.tensor([6.0, 6.0], dtype=torch.float64))


def test_no_gradient_under_no_grad() -> None:
    theta = torch.zeros(2, requires_grad=True)
    with torch.no_grad():
        out = vg.blackbox(image, vg.GaussianSmoothing(0.1, 2, seed=0))(theta)
    assert not out.requires_grad and theta.grad is None


def test_composes_network_to_blackbox_to_loss_with_torch_optim() -> None:
    """A linear layer feeds a black box whose output enters a loss; Adam trains the layer."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2).double()
    inputs = torch.randn(8, 3, dtype=torch.float64)
    target = torch.tensor([0.5, -0.25], dtype=torch.float64)

    def square_error(row: torch.Tensor) -> torch.Tensor:  # a "renderer" without autograd
        return ((row.numpy() - target.numpy()) ** 2).sum()

    bb = vg.blackbox(square_error, vg.GaussianSmoothing(0.05, 4, seed=0))
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    first = None
    for _ in range(150):
        optimizer.zero_grad()
        loss = bb(layer(inputs)).mean()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert layer.weight.grad is not None
    assert loss.item() < 0.05 * first


def test_gradient_flows_only_to_inputs_that_require_it() -> None:
    a = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.5], dtype=torch.float64)
    vg.blackbox(lambda r: r.prod(), vg.FiniteDifferences(1e-4))(torch.cat([a, b])).backward()
    torch.testing.assert_close(a.grad, torch.tensor([1.5], dtype=torch.float64))
    assert b.grad is None


def test_nan_policy_drops_failed_pairs_from_the_estimate() -> None:
    """With on_error='nan' a pair with a failed point is left out; the rest is averaged."""
    theta = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)
    calls = []

    def flaky(row: torch.Tensor) -> torch.Tensor:
        calls.append(row.clone())
        if len(calls) == 2:
            raise RuntimeError("renderer crashed")
        return row.sum()

    estimator = vg.GaussianSmoothing(0.5, 6, importance=False, seed=4)
    evaluator = vg.Evaluator(flaky, on_error="nan")
    value = vg.blackbox(flaky, estimator, evaluator)(theta)
    value.backward()
    assert evaluator.stats.failures == 1

    points = torch.stack(calls)
    kept = [0, 2]  # pair 1 (points 1 and 4) is dropped
    tau = points[:3]
    F = points.sum(1)
    expected = sum(tau[i] / 0.25 * (F[i] - F[i + 3]) / 2 for i in kept) / len(kept)
    torch.testing.assert_close(theta.grad, expected)
    torch.testing.assert_close(value.detach(), F[[0, 2, 3, 5]].mean())


def test_every_sample_failing_is_an_error_even_under_the_nan_policy() -> None:
    def fn(row: torch.Tensor) -> float:
        return float("nan") if row[0] > -5 else 0.0

    ev = vg.Evaluator(fn, on_error="nan")
    ev(torch.full((1, 1), -10.0, dtype=torch.float64))  # the shape is known from now on
    with pytest.raises(vg.EvaluationError, match="every evaluation of the estimate"):
        vg.blackbox(ev, vg.GaussianSmoothing(0.1, 4, seed=0))(
            torch.zeros(1, dtype=torch.float64, requires_grad=True)
        )


def test_raise_policy_propagates_with_the_row() -> None:
    bb = vg.blackbox(lambda r: 1 / 0, vg.SPSA(0.1, seed=0))
    with pytest.raises(vg.EvaluationError, match="ZeroDivisionError"):
        bb(torch.zeros(3, requires_grad=True))


def test_budget_stops_an_optimisation() -> None:
    bb = vg.blackbox(vg.Evaluator(lambda r: r.sum(), budget=10), vg.SPSA(0.1, samples=4, seed=0))
    theta = torch.zeros(2, requires_grad=True)
    bb(theta)
    bb(theta)
    with pytest.raises(vg.BudgetExhausted):
        bb(theta)


@pytest.mark.parametrize(
    ("theta", "error", "message"),
    [
        ([0.0, 1.0], TypeError, "theta must be a torch.Tensor; got list"),
        (torch.zeros(2, dtype=torch.int64), TypeError, "floating dtype; got torch.int64"),
        (torch.zeros(2, 2, 2), ValueError, r"shape \[d\] or \[batch, d\] .* got \(2, 2, 2\)"),
        (torch.zeros(0), ValueError, r"got \(0,\)"),
        (torch.tensor(1.0), ValueError, r"got \(\)"),
        (torch.tensor([0.0, float("nan")]), ValueError, "NaN or infinite"),
    ],
)
def test_bad_theta(theta, error, message) -> None:
    bb = vg.blackbox(lambda r: r.sum(), vg.SPSA(0.1, seed=0))
    with pytest.raises(error, match=message):
        bb(theta)


def test_bad_estimator_and_evaluator() -> None:
    with pytest.raises(TypeError, match="estimator must be a black-box estimator .* got str"):
        vg.blackbox(lambda r: r.sum(), "smoothing")
    with pytest.raises(TypeError, match="evaluator must be a vg.Evaluator; got function"):
        vg.blackbox(lambda r: r.sum(), vg.SPSA(0.1), evaluator=lambda r: r)
    with pytest.raises(ValueError, match="evaluator must wrap the same fn"):
        vg.blackbox(lambda r: r.sum(), vg.SPSA(0.1), evaluator=vg.Evaluator(lambda r: r.sum()))


@pytest.mark.parametrize("importance", [True, False])
def test_the_variance_estimate_matches_the_spread_of_the_estimates(importance) -> None:
    """E[v̂] = tr Cov(ĝ): the mean per-estimate variance estimate over K rows vs their spread."""
    K = 4000
    estimator = vg.GaussianSmoothing(sigma=0.3, samples=6, importance=importance, seed=0)
    evaluator = vg.Evaluator(lambda X: (X**3).sum(1) + X[:, 0] * X[:, 1], backend="vectorized")
    loss_fn = vg.blackbox(evaluator, estimator)
    theta = torch.tensor([0.4, -0.2, 1.0], dtype=torch.float64).expand(K, -1).clone()
    theta.requires_grad_(True)
    loss_fn(theta).sum().backward()
    spread = float(theta.grad.var(0).sum())
    assert loss_fn.last_estimate.stats["variance"] / K == pytest.approx(spread, rel=0.1)


def test_the_backward_pass_only_reads_the_estimate() -> None:
    """Nothing is written to the estimator after the forward pass; the variance goes to the
    estimate's stats."""
    estimator = vg.GaussianSmoothing(sigma=0.3, samples=6, seed=0)
    bb = vg.blackbox(lambda r: float((r**2).sum()), estimator)
    theta = torch.tensor([0.4, -0.2], dtype=torch.float64, requires_grad=True)
    value = bb(theta)
    before = dict(vars(estimator))
    generator = estimator._generator.get_state()
    assert bb.last_estimate is not None and "variance" not in bb.last_estimate.stats
    value.backward()
    assert vars(estimator) == before and torch.equal(estimator._generator.get_state(), generator)
    assert bb.last_estimate.stats["variance"] > 0


def test_the_black_box_trains_the_estimator_only_when_told_to() -> None:
    def parameters(estimator: vg.ZeroGrads) -> list[torch.Tensor]:
        return [p.detach().clone() for p in estimator.surrogate.parameters()]

    theta = torch.tensor([0.4, -0.2], dtype=torch.float64, requires_grad=True)
    for train in (True, False):
        estimator = vg.ZeroGrads(sigma=0.2, samples=4, zero_output=False, seed=0)
        bb = vg.blackbox(lambda r: float((r**2).sum()), estimator, train=train)
        estimator.ask(theta.detach()[None])  # builds the surrogate; asks change no weights
        estimator.reseed(0)
        start = parameters(estimator)
        bb(theta)
        after = parameters(estimator)
        changed = any(not torch.equal(a, b) for a, b in zip(start, after, strict=True))
        assert changed is train
    assert "train=False" in repr(bb)


def test_a_query_of_no_points_evaluates_nothing_and_still_gives_a_gradient() -> None:
    # ZeroGrads with theta_steps=2 asks for points every other step only.
    calls = []

    def fn(x: torch.Tensor) -> float:
        calls.append(1)
        return float((x - 1).pow(2).sum())

    zerograds = vg.ZeroGrads(sigma=0.1, samples=4, unbiased=False, theta_steps=2, seed=0)
    bb = vg.blackbox(fn, zerograds)
    grads = []
    for _ in range(2):
        theta = torch.zeros(3, requires_grad=True)
        bb(theta).backward()
        grads.append(theta.grad)
    assert len(calls) == 4 and bb.evaluator.stats.evals == 4
    assert grads[1].shape == (3,) and torch.isfinite(grads[1]).all()
