"""ScoreFunction with each baseline: replay, unbiasedness (CLT, enumeration), variance."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal

import voidgrad as vg
from tests.conftest import assert_unbiased, fails_unbiased_check

WEIGHTS = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def bernoulli_cost(b: torch.Tensor) -> torch.Tensor:
    """A non-linear cost of 3 bits, with an offset that makes baselines matter."""
    return (b @ WEIGHTS - 0.3) ** 2 + b[..., 0] * b[..., 2] + 5.0


def exact_bernoulli_gradient(logits: torch.Tensor) -> torch.Tensor:
    """∇ Σ_b p(b|θ) f(b) by enumerating the 8 states."""
    logits = logits.detach().clone().requires_grad_(True)
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)
    probs = Bernoulli(logits=logits).log_prob(states).sum(-1).exp()
    (grad,) = torch.autograd.grad((probs * bernoulli_cost(states)).sum(), logits)
    return grad


def bernoulli_estimates(estimator: vg.ScoreFunction, logits: torch.Tensor, K: int, N: int = 4):
    """K independent gradient estimates: one expectation per row of a [K, 3] batch."""
    batch = logits.expand(K, -1).clone().requires_grad_(True)
    loss = vg.expectation(bernoulli_cost, Bernoulli(logits=batch), N, estimator)
    assert loss.shape == (K,)
    loss.sum().backward()
    return batch.grad


LOGITS = torch.tensor([0.3, -1.0, 0.8], dtype=torch.float64)
BASELINES = [
    pytest.param(None, id="none"),
    pytest.param(vg.baselines.Constant(5.5), id="constant"),
    pytest.param("leave_one_out", id="leave_one_out"),
]


@pytest.mark.parametrize("baseline", BASELINES)
def test_unbiased_for_bernoulli_against_enumeration(baseline) -> None:
    grads = bernoulli_estimates(vg.ScoreFunction(baseline, seed=0), LOGITS, K=4000)
    assert_unbiased(grads, exact_bernoulli_gradient(LOGITS))


def test_moving_average_baseline_is_unbiased_once_it_holds_a_value() -> None:
    estimator = vg.ScoreFunction("moving_average", seed=0)
    bernoulli_estimates(estimator, LOGITS, K=50)  # primes the average
    assert estimator.baseline.value > 4
    grads = bernoulli_estimates(estimator, LOGITS, K=4000)
    assert_unbiased(grads, exact_bernoulli_gradient(LOGITS))


class HalfOwnCost(vg.baselines.Baseline):
    """A deliberately wrong baseline: it looks at the sample's own cost."""

    def __call__(self, costs: torch.Tensor, dist=None) -> torch.Tensor:
        return 0.5 * costs


def test_check_has_power_against_a_baseline_that_sees_its_own_sample() -> None:
    grads = bernoulli_estimates(vg.ScoreFunction(HalfOwnCost(), seed=0), LOGITS, K=4000)
    assert fails_unbiased_check(grads, exact_bernoulli_gradient(LOGITS))


def test_unbiased_for_categorical_against_enumeration() -> None:
    table = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    logits = torch.tensor([0.2, -0.4, 1.0, 0.0], dtype=torch.float64)
    K = 4000
    batch = logits.expand(K, -1).clone().requires_grad_(True)
    # Categorical's batch_shape is [K] and its event is a scalar index.
    loss = vg.expectation(
        lambda k: table[k], Categorical(logits=batch), 3, vg.ScoreFunction("leave_one_out", seed=1)
    )
    loss.sum().backward()
    exact = logits.clone().requires_grad_(True)
    (truth,) = torch.autograd.grad((exact.softmax(-1) * table).sum(), exact)
    assert_unbiased(batch.grad, truth)


def test_unbiased_for_gaussians_against_the_closed_form() -> None:
    """E[z²] = μ² + s² under N(μ, s²): ∇_μ = 2μ, ∇_s = 2s."""
    K = 4000
    mu = torch.full((K, 1), 0.7, dtype=torch.float64, requires_grad=True)
    scale = torch.full((K, 1), 1.3, dtype=torch.float64, requires_grad=True)
    loss = vg.expectation(
        lambda z: z[..., 0] ** 2, Normal(mu, scale), 4, vg.ScoreFunction("leave_one_out", seed=2)
    )
    loss.sum().backward()
    assert_unbiased(mu.grad, torch.tensor([1.4], dtype=torch.float64))
    assert_unbiased(scale.grad, torch.tensor([2.6], dtype=torch.float64))


def test_replay_matches_the_formula() -> None:
    logits = torch.tensor([0.3, -1.0, 0.8], dtype=torch.float64, requires_grad=True)
    seen = []

    def cost(b: torch.Tensor) -> torch.Tensor:
        seen.append(b.clone())
        return bernoulli_cost(b)

    estimator = vg.ScoreFunction("leave_one_out", seed=3)
    loss = vg.expectation(cost, Bernoulli(logits=logits), 5, estimator)
    loss.backward()
    (z,) = seen
    c = bernoulli_cost(z)
    b = (c.sum() - c) / 4
    score = z - torch.sigmoid(logits.detach())  # ∇_logits log Bernoulli(z; σ(logits))
    torch.testing.assert_close(logits.grad, ((c - b)[:, None] * score).mean(0))
    torch.testing.assert_close(loss.detach(), c.mean())


def test_seed_replays_and_leaves_the_global_generator_alone() -> None:
    state = torch.get_rng_state()

    def run(seed: int) -> torch.Tensor:
        return bernoulli_estimates(vg.ScoreFunction(seed=seed), LOGITS, K=5)

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))
    assert torch.equal(torch.get_rng_state(), state)


def test_leave_one_out_reduces_variance() -> None:
    """Per-component variance of LOO < 0.8 x that of no baseline, in at least 9 of 10 seeds."""
    wins = 0
    for seed in range(10):
        plain = bernoulli_estimates(vg.ScoreFunction(seed=seed), LOGITS, K=300).var(0)
        loo = bernoulli_estimates(vg.ScoreFunction("leave_one_out", seed=seed), LOGITS, K=300)
        wins += bool((loo.var(0) < 0.8 * plain).all())
    assert wins >= 9


@pytest.mark.parametrize(
    ("baseline", "error", "message"),
    [
        ("mean", ValueError, "baseline must be None, a vg.baselines.Baseline or one of"),
        (3, ValueError, "got 3"),
    ],
)
def test_bad_baselines(baseline, error, message) -> None:
    with pytest.raises(error, match=message):
        vg.ScoreFunction(baseline)


def test_leave_one_out_needs_two_samples() -> None:
    theta = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"needs samples >= 2; got 1"):
        vg.expectation(
            lambda b: b.sum(-1), Bernoulli(logits=theta), 1, vg.ScoreFunction("leave_one_out")
        )


def test_learned_baseline_is_unbiased_and_lowers_variance() -> None:
    """After fitting to the costs, the learned baseline is unbiased and beats no baseline."""
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 1).double()
    estimator = vg.ScoreFunction(vg.baselines.Learned(module, lr=0.1), seed=4)
    for _ in range(100):
        bernoulli_estimates(estimator, LOGITS, K=16)
    grads = bernoulli_estimates(estimator, LOGITS, K=4000)
    assert_unbiased(grads, exact_bernoulli_gradient(LOGITS))
    plain = bernoulli_estimates(vg.ScoreFunction(seed=4), LOGITS, K=4000)
    assert torch.all(grads.var(0) < 0.8 * plain.var(0))
