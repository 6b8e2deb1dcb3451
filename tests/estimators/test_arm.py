"""DisARM: replay, unbiasedness against enumeration, variance below REINFORCE, bad input."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Categorical

import voidgrad as vg
from tests.conftest import assert_unbiased, fails_unbiased_check
from tests.estimators.test_score import LOGITS, bernoulli_cost, exact_bernoulli_gradient


def disarm_grads(estimator, K: int = 4000, N: int = 2) -> torch.Tensor:
    batch = LOGITS.expand(K, -1).clone().requires_grad_(True)
    vg.expectation(bernoulli_cost, Bernoulli(logits=batch), N, estimator).sum().backward()
    return batch.grad


def test_unbiased_against_enumeration() -> None:
    assert_unbiased(disarm_grads(vg.DisARM(seed=0)), exact_bernoulli_gradient(LOGITS))


def test_unbiased_with_several_pairs_per_estimate() -> None:
    assert_unbiased(disarm_grads(vg.DisARM(seed=1), N=6), exact_bernoulli_gradient(LOGITS))


def test_the_check_has_power_against_a_dropped_half() -> None:
    """Without the factor ½ the estimate is twice the gradient: the check must reject it."""
    grads = 2 * disarm_grads(vg.DisARM(seed=0))
    assert fails_unbiased_check(grads, exact_bernoulli_gradient(LOGITS))


def test_replay_matches_the_formula() -> None:
    logits = LOGITS.clone().requires_grad_(True)
    seen = []

    def f(b: torch.Tensor) -> torch.Tensor:
        seen.append(b.clone())
        return bernoulli_cost(b)

    loss = vg.expectation(f, Bernoulli(logits=logits), 6, vg.DisARM(seed=2))
    loss.backward()
    (both,) = seen
    b, anti = both[:3], both[3:]
    # the pairs are antithetic: b = 1[u < p] and b̃ = 1[1 − u < p] can both be 1 only if p > ½
    p = torch.sigmoid(LOGITS)
    assert not torch.any((b * anti).bool() & (p < 0.5))
    weight = (-1.0) ** anti * (b != anti) * torch.sigmoid(LOGITS.abs())
    expected = (0.5 * (bernoulli_cost(b) - bernoulli_cost(anti))[:, None] * weight).mean(0)
    torch.testing.assert_close(logits.grad, expected)
    torch.testing.assert_close(loss.detach(), bernoulli_cost(both).mean())


def test_variance_below_reinforce_with_leave_one_out_at_equal_evaluations() -> None:
    """Var(DisARM) < 0.8 Var(REINFORCE-LOO) per component, 2 evaluations each, 9 of 10 seeds."""
    wins = 0
    for seed in range(10):
        disarm = disarm_grads(vg.DisARM(seed=seed), K=300).var(0)
        loo = disarm_grads(vg.ScoreFunction("leave_one_out", seed=seed), K=300).var(0)
        wins += bool((disarm < 0.8 * loo).all())
    assert wins >= 9


def test_bad_input() -> None:
    logits = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="DisARM needs a Bernoulli distribution"):
        vg.expectation(lambda k: k.float(), Categorical(logits=logits), 4, vg.DisARM())
    with pytest.raises(ValueError, match="samples must be even; got 3"):
        vg.expectation(lambda b: b.sum(-1), Bernoulli(logits=logits), 3, vg.DisARM())
    with pytest.raises(ValueError, match=r"needs samples >= 2; got 1"):
        vg.expectation(lambda b: b.sum(-1), Bernoulli(logits=logits), 1, vg.DisARM())
