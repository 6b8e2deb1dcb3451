"""A black box that writes into its argument cannot change a run: the optimizers and the
distributional estimators see the same numbers as with a black box that does not."""

from __future__ import annotations

import pytest
import torch

import voidgrad as vg

TARGET = torch.tensor([3.0, -2.0], dtype=torch.float64)


def loss(x: torch.Tensor) -> float:
    return float(((x - TARGET) ** 2).sum() * 100 + 1)


def loss_then_overwrite(x: torch.Tensor) -> float:
    value = loss(x)
    x.mul_(0).add_(123)
    return value


@pytest.mark.parametrize("method", ["fd", "spsa", "smoothing"])
def test_minimize_gives_the_same_run_whether_or_not_fn_overwrites_its_input(method) -> None:
    def run(fn):
        x0 = torch.tensor([0.5, 0.5], dtype=torch.float64)
        result = vg.minimize(fn, x0, method=method, budget=60, seed=0, progress=False)
        assert x0.tolist() == [0.5, 0.5]
        return result

    clean, dirty = run(loss), run(loss_then_overwrite)
    assert torch.equal(dirty.x, clean.x)
    assert dirty.fun == clean.fun == pytest.approx(loss(clean.x))


@pytest.mark.parametrize("backend", ["serial", "vectorized"])
def test_a_score_function_gradient_ignores_a_cost_that_zeroes_its_samples(backend) -> None:
    """The estimator evaluates log p(z) at the samples after f ran: f must not change them."""

    def constant(z: torch.Tensor) -> torch.Tensor | float:
        return torch.ones(z.shape[0]) if backend == "vectorized" else 1.0

    def constant_then_zero(z: torch.Tensor) -> torch.Tensor | float:
        value = constant(z)
        z.zero_()
        return value

    def gradient(f) -> torch.Tensor:
        theta = torch.tensor([0.3, -0.2], requires_grad=True)
        estimator = vg.ScoreFunction(seed=0)
        evaluator = vg.Evaluator(f, backend=backend)
        dist = torch.distributions.Normal(theta, 1.0)
        vg.expectation(evaluator, dist, samples=16, estimator=estimator).backward()
        assert theta.grad is not None
        return theta.grad

    torch.testing.assert_close(gradient(constant_then_zero), gradient(constant), rtol=0, atol=0)
