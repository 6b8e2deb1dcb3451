"""GumbelSoftmax and StraightThrough: replay, and their bias tested for what it is."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal, OneHotCategorical

import voidgrad as vg
from tests.conftest import fails_unbiased_check
from tests.estimators.test_score import LOGITS, bernoulli_cost, exact_bernoulli_gradient

LINEAR = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def batched_grads(estimator, logits: torch.Tensor, f, K: int, N: int = 4) -> torch.Tensor:
    batch = logits.expand(K, -1).clone().requires_grad_(True)
    vg.expectation(f, Bernoulli(logits=batch), N, estimator).sum().backward()
    return batch.grad


def test_gumbel_softmax_replays_its_formula() -> None:
    logits = LOGITS.clone().requires_grad_(True)
    seen = []

    def f(y: torch.Tensor) -> torch.Tensor:
        seen.append(y.detach().clone())
        return bernoulli_cost(y)

    loss = vg.expectation(f, Bernoulli(logits=logits), 5, vg.GumbelSoftmax(0.7, seed=0))
    loss.backward()
    (y,) = seen
    z = 0.7 * torch.logit(y)  # y = σ(z/λ), z = l + logistic noise
    noise = z - LOGITS
    by_hand = LOGITS.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        bernoulli_cost(torch.sigmoid((by_hand + noise) / 0.7)).mean(), by_hand
    )
    torch.testing.assert_close(logits.grad, grad)
    torch.testing.assert_close(loss.detach(), bernoulli_cost(y).mean())


def test_gumbel_softmax_bias_shrinks_with_the_temperature() -> None:
    """Mean estimate approaches the exact gradient as λ falls (K = 4000 draws each)."""
    truth = exact_bernoulli_gradient(LOGITS)
    errors = []
    for temperature in (2.0, 0.5, 0.1):
        grads = batched_grads(vg.GumbelSoftmax(temperature, seed=1), LOGITS, bernoulli_cost, 4000)
        errors.append(float((grads.mean(0) - truth).norm()))
    assert errors[0] > errors[1] > errors[2]
    grads = batched_grads(vg.GumbelSoftmax(2.0, seed=1), LOGITS, bernoulli_cost, 4000)
    assert fails_unbiased_check(grads, truth)


def test_hard_gumbel_evaluates_f_at_discrete_points() -> None:
    seen = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach())
        return x @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)

    logits = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    dist = OneHotCategorical(logits=logits)
    vg.expectation(f, dist, 8, vg.GumbelSoftmax(0.5, hard=True, seed=2)).backward()
    hard = seen[0].round()
    torch.testing.assert_close(seen[0], hard, rtol=0, atol=1e-12)
    assert torch.equal(hard.sum(-1), torch.ones(8, dtype=torch.float64))
    assert logits.grad.abs().sum() > 0


def test_categorical_samples_reach_f_as_one_hot_vectors() -> None:
    table = torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64)
    logits = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    loss = vg.expectation(
        lambda x: (x @ table).sum(-1), Categorical(logits=logits), 6, vg.GumbelSoftmax(seed=3)
    )
    loss.backward()
    assert logits.grad.shape == (2, 3)


def test_straight_through_is_exact_for_linear_costs() -> None:
    """f(b) = w·b: ∂f/∂b = w is constant, so every estimate equals the exact gradient."""
    grads = batched_grads(vg.StraightThrough(seed=4), LOGITS, lambda b: b @ LINEAR, 50)
    p = torch.sigmoid(LOGITS)
    torch.testing.assert_close(grads, (LINEAR * p * (1 - p)).expand(50, -1))


def test_straight_through_is_biased_for_nonlinear_costs() -> None:
    grads = batched_grads(vg.StraightThrough(seed=5), LOGITS, bernoulli_cost, 4000)
    assert fails_unbiased_check(grads, exact_bernoulli_gradient(LOGITS))


def test_straight_through_for_categoricals_is_exact_for_linear_costs() -> None:
    table = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    logits = torch.tensor([0.2, -0.4, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    vg.expectation(
        lambda x: x @ table, Categorical(logits=logits), 7, vg.StraightThrough(seed=6)
    ).backward()
    exact = logits.detach().clone().requires_grad_(True)
    (truth,) = torch.autograd.grad((exact.softmax(-1) * table).sum(), exact)
    torch.testing.assert_close(logits.grad, truth)


@pytest.mark.parametrize("estimator", [vg.GumbelSoftmax(0.5), vg.StraightThrough()])
def test_relaxed_estimators_need_a_discrete_distribution(estimator) -> None:
    loc = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="needs a Bernoulli, Categorical or OneHotCategorical"):
        vg.expectation(lambda z: z.sum(-1), Normal(loc, 1.0), 4, estimator)


@pytest.mark.parametrize("estimator", [vg.GumbelSoftmax(0.5), vg.StraightThrough()])
def test_relaxed_estimators_need_a_differentiable_f(estimator) -> None:
    logits = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="not connected to the samples"):
        vg.expectation(lambda b: b.detach().sum(-1), Bernoulli(logits=logits), 1, estimator)


@pytest.mark.parametrize("hard", ["False", 0, None])
def test_hard_must_be_a_bool(hard) -> None:
    """bool("False") is True: a string would silently turn on the straight-through variant."""
    with pytest.raises(TypeError, match="hard must be True or False"):
        vg.GumbelSoftmax(0.5, hard=hard)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), "hot"])
def test_temperature_must_be_positive(temperature) -> None:
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        vg.GumbelSoftmax(temperature)
