"""The Gumbel-max view of discrete variables, and above all the conditional sample z̃ ~ p(z|b, θ).

The conditional sample is where other libraries went wrong (a ``log1p(p)``
standing in for ``log(1 − p)``; a θ detached so that ∂z̃/∂θ was lost), so it
is tested directly against its exact distribution: the probability integral
transform of z̃ under the exact conditional CDF must be uniform (a
Kolmogorov-Smirnov test at √n·D ≤ 2.5, false-failure probability ≈ 2·e^{-12.5}
≈ 7e-6 under a fresh seed), and that test must reject a wrong formula.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from voidgrad.estimators.discrete import (
    discrete_kind,
    relax,
    sample_conditional,
    sample_relaxed,
    score,
    threshold,
)

KS_BOUND = 2.5


def ks_uniform(u: torch.Tensor) -> float:
    """√n · sup |F_n(x) − x| of the flattened ``u`` against U(0, 1)."""
    u = u.flatten().sort().values.double()
    n = u.numel()
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    d = torch.maximum(ranks / n - u, u - (ranks - 1) / n).max()
    return float(d) * n**0.5


def logistic_cdf(t: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(t - loc)


def bernoulli_conditional_pit(logits, b, z) -> torch.Tensor:
    """F(z | b): the exact CDF of the logistic z ~ Logistic(l, 1) given 1[z > 0] = b."""
    at_zero = logistic_cdf(torch.zeros_like(logits), logits)
    cdf = logistic_cdf(z, logits)
    return torch.where(b > 0.5, (cdf - at_zero) / (1 - at_zero), cdf / at_zero)


LOGITS = torch.tensor([-2.0, -0.3, 0.0, 0.7, 3.0], dtype=torch.float64)


def draw_bernoulli_conditional(n: int, seed: int, sampler=sample_conditional):
    torch.manual_seed(seed)
    b = threshold(sample_relaxed(LOGITS, "bernoulli", n), "bernoulli")
    return b, sampler(LOGITS, b, "bernoulli")


def test_bernoulli_conditional_has_the_exact_conditional_distribution() -> None:
    b, z = draw_bernoulli_conditional(20_000, seed=0)
    assert torch.equal(threshold(z, "bernoulli"), b)
    for column in range(LOGITS.numel()):
        pit = bernoulli_conditional_pit(LOGITS[column], b[:, column], z[:, column])
        assert ks_uniform(pit) < KS_BOUND


def log1p_bug_conditional(logits, b, kind):
    """The bug class: log1p(p) used where log(1 − p) belongs."""
    p = torch.sigmoid(logits)
    v = torch.rand(b.shape, dtype=logits.dtype)
    u = torch.where(b > 0.5, 1 - p + v * p, v * (1 - p))
    return torch.log(p) + torch.log1p(p) + torch.log(u) - torch.log1p(-u)


def test_the_distribution_check_rejects_the_log1p_bug() -> None:
    b, z = draw_bernoulli_conditional(20_000, seed=0, sampler=log1p_bug_conditional)
    statistics = [
        ks_uniform(bernoulli_conditional_pit(LOGITS[c], b[:, c], z[:, c]))
        for c in range(LOGITS.numel())
    ]
    assert max(statistics) > KS_BOUND


CAT_LOGITS = torch.tensor([0.5, -1.0, 0.0, 1.5], dtype=torch.float64).log_softmax(-1)


def gumbel_cdf(t: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    return torch.exp(-torch.exp(-(t - loc)))


def test_categorical_conditional_has_the_exact_conditional_distribution() -> None:
    """Given b, z̃_b ~ Gumbel(log Σ p = 0) and z̃_k ~ Gumbel(l_k) truncated below z̃_b."""
    torch.manual_seed(1)
    b = threshold(sample_relaxed(CAT_LOGITS, "categorical", 40_000), "categorical")
    z = sample_conditional(CAT_LOGITS, b, "categorical")
    assert torch.equal(threshold(z, "categorical"), b)
    top = (z * b).sum(-1)
    assert ks_uniform(gumbel_cdf(top, torch.tensor(0.0))) < KS_BOUND
    truncated = gumbel_cdf(z, CAT_LOGITS) / gumbel_cdf(top[:, None], CAT_LOGITS)
    for k in range(CAT_LOGITS.numel()):
        others = b[:, k] < 0.5
        assert ks_uniform(truncated[others, k]) < KS_BOUND


def test_the_categorical_check_rejects_unnormalized_probabilities() -> None:
    """Using p_k = exp(l_k) of shifted logits shifts z̃_b: the test must see it."""
    torch.manual_seed(1)
    b = threshold(sample_relaxed(CAT_LOGITS, "categorical", 40_000), "categorical")
    z = sample_conditional(CAT_LOGITS, b, "categorical") + 0.05
    top = (z * b).sum(-1)
    assert ks_uniform(gumbel_cdf(top, torch.tensor(0.0))) > KS_BOUND


def test_unconditional_samples_have_the_discrete_distribution() -> None:
    torch.manual_seed(2)
    n = 40_000
    bits = threshold(sample_relaxed(LOGITS, "bernoulli", n), "bernoulli")
    p = torch.sigmoid(LOGITS)
    assert torch.all((bits.mean(0) - p).abs() <= 5 * (p * (1 - p) / n).sqrt())
    one_hot = threshold(sample_relaxed(CAT_LOGITS, "categorical", n), "categorical")
    q = CAT_LOGITS.exp()
    assert torch.all((one_hot.mean(0) - q).abs() <= 5 * (q * (1 - q) / n).sqrt())


@pytest.mark.parametrize("kind", ["bernoulli", "categorical"])
def test_conditional_sample_keeps_its_dependence_on_theta(kind) -> None:
    """∂z̃/∂θ at fixed noise matches finite differences (dropping it biases RELAX)."""
    logits = (LOGITS if kind == "bernoulli" else CAT_LOGITS).clone()
    torch.manual_seed(3)
    b = threshold(sample_relaxed(logits, kind, 6), kind)

    def conditional(theta: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(4)  # the same v at every call
        return sample_conditional(theta, b, kind)

    assert torch.autograd.gradcheck(conditional, (logits.requires_grad_(True),))
    (grad,) = torch.autograd.grad(conditional(logits).sum(), logits)
    assert grad.abs().sum() > 0


def test_score_is_the_gradient_of_the_log_probability() -> None:
    torch.manual_seed(5)
    logits = CAT_LOGITS.clone().requires_grad_(True)
    b = threshold(sample_relaxed(logits.detach(), "categorical", 3), "categorical")
    log_prob = torch.distributions.OneHotCategorical(logits=logits).log_prob(b)
    for i in range(3):
        (grad,) = torch.autograd.grad(log_prob[i], logits, retain_graph=True)
        torch.testing.assert_close(score(logits.detach(), b, "categorical")[i], grad)


def test_relaxation_tends_to_the_threshold_as_the_temperature_falls() -> None:
    torch.manual_seed(6)
    z = sample_relaxed(CAT_LOGITS, "categorical", 100)
    hard = threshold(z, "categorical")
    assert torch.allclose(relax(z, "categorical", 1e-4), hard, atol=1e-6)
    torch.testing.assert_close(relax(z, "categorical", 1.0), functional.softmax(z, -1))


def test_kind_names_the_families_and_refuses_the_rest() -> None:
    assert discrete_kind(torch.distributions.Bernoulli(logits=LOGITS), "X") == "bernoulli"
    assert discrete_kind(torch.distributions.Categorical(logits=LOGITS), "X") == "categorical"
    one_hot = torch.distributions.OneHotCategorical(logits=LOGITS)
    assert discrete_kind(one_hot, "X") == "one_hot"
    with pytest.raises(ValueError, match="RELAX needs a Bernoulli, Categorical or OneHot"):
        discrete_kind(torch.distributions.Normal(0.0, 1.0), "RELAX")
