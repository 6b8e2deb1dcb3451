r"""Relaxed estimators for discrete variables: Gumbel-softmax (Concrete) and straight-through.

Both differentiate f itself at continuous stand-ins for the discrete sample,
so f must be a differentiable torch function that also accepts relaxed
inputs: numbers in (0, 1) for a Bernoulli, points of the simplex for a
categorical. Both are **biased** for the gradient of E_{b~p(b|θ)}[f(b)].

Gumbel-softmax / Concrete (Maddison et al. 2016; Jang et al. 2016), with
z = T(θ, ε) the logistic / Gumbel perturbation of the logits (``discrete``):

    ĝ = (1/N) Σ_i ∂f/∂σ_λ(z_i) · ∂σ_λ(z_i)/∂θ

It is the pathwise gradient of E_z[f(σ_λ(z))], a different objective whose
value tends to E_b[f(b)] as λ → 0 while the variance of ĝ grows like 1/λ.
With ``hard=True`` (straight-through Gumbel) f is evaluated at the discrete
H(z) and the gradient is still that of σ_λ.

Straight-through (Bengio et al. 2013): f is evaluated at the discrete b and
the gradient passes through E[b] = p(θ) as if ∂b/∂p = 1:

    ĝ = (1/N) Σ_i ∂f/∂b (b_i) · ∂p/∂θ

Exact for f linear in b (then ∂f/∂b is constant and E[f(b)] = f(p)), biased
otherwise.

A Categorical's samples reach f as one-hot vectors ``[..., K]``, not indices.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from voidgrad.estimators.discrete import discrete_logits, relax, sample_relaxed, threshold
from voidgrad.estimators.distributional import (
    DistributionEstimator,
    check_connected,
    plain_estimate,
)
from voidgrad.estimators.protocol import Estimate, Query
from voidgrad.validation import check_flag, check_positive


class GumbelSoftmax(DistributionEstimator):
    """The Concrete relaxation: pathwise gradients at σ_λ(z). Biased; shrinks as λ → 0.

    Args:
        temperature: λ > 0 of the relaxation.
        hard: evaluate f at the discrete H(z), with σ_λ(z)'s gradient
            (straight-through Gumbel).
        seed: seed of a private sampling stream, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> logits = torch.zeros(3, requires_grad=True)
        >>> dist = torch.distributions.OneHotCategorical(logits=logits)
        >>> values = torch.tensor([1.0, 0.0, 2.0])
        >>> loss = vg.expectation(lambda x: x @ values, dist, samples=2000,
        ...                       estimator=vg.GumbelSoftmax(temperature=0.5, seed=0))
        >>> round(loss.item(), 1)  # E = (1 + 0 + 2)/3 for uniform logits (linear f)
        1.0
        >>> loss.backward()
        >>> int(logits.grad.argmax()), int(logits.grad.argmin())  # costliest up, cheapest down
        (2, 1)
    """

    def __init__(self, temperature: float = 0.5, hard: bool = False, *, seed: int | None = None):
        super().__init__(seed)
        self.temperature = check_positive("temperature", temperature)
        self.hard = check_flag("hard", hard)

    def ask(self, dist: Distribution, samples: int) -> Query:
        """σ_λ(z_i) (or H(z_i) carrying σ_λ's gradient), in θ's graph."""
        kind, logits = discrete_logits(dist, "GumbelSoftmax")
        with self.sampling():
            z = sample_relaxed(logits, kind, samples)
            seeds = self.draw_seeds((samples,))
        relaxed = relax(z, kind, self.temperature)
        x = threshold(z, kind) + relaxed - relaxed.detach() if self.hard else relaxed
        return Query(x, seeds, differentiable=True)

    def tell(self, query: Query, costs: torch.Tensor) -> Estimate:
        """The mean cost, through whose graph autograd carries ĝ."""
        check_connected(query.inputs, costs, "GumbelSoftmax")
        return plain_estimate(costs)

    def __repr__(self) -> str:
        return f"GumbelSoftmax(temperature={self.temperature}, hard={self.hard})"


class StraightThrough(DistributionEstimator):
    """f at the discrete sample b, gradient through p as if b were p. Biased unless f is linear.

    Args:
        seed: seed of a private sampling stream, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> logits = torch.zeros(2, requires_grad=True)
        >>> dist = torch.distributions.Bernoulli(logits=logits)
        >>> f = lambda b: b @ torch.tensor([1.0, -1.0])  # linear in b: straight-through is exact
        >>> loss = vg.expectation(f, dist, samples=1000, estimator=vg.StraightThrough(seed=0))
        >>> loss.backward()
        >>> logits.grad  # ∂/∂l (σ(l1) − σ(l2)) at 0 = (0.25, −0.25)
        tensor([ 0.2500, -0.2500])
    """

    def ask(self, dist: Distribution, samples: int) -> Query:
        """b_i, carrying the gradient of p(θ)."""
        kind, logits = discrete_logits(dist, "StraightThrough")
        with self.sampling(), torch.no_grad():
            b = threshold(sample_relaxed(logits, kind, samples), kind)
            seeds = self.draw_seeds((samples,))
        probs = relax(logits, kind, 1.0)
        return Query(b + probs - probs.detach(), seeds, differentiable=True)

    def tell(self, query: Query, costs: torch.Tensor) -> Estimate:
        """The mean cost, through whose graph autograd carries ĝ."""
        check_connected(query.inputs, costs, "StraightThrough")
        return plain_estimate(costs)

    def __repr__(self) -> str:
        return "StraightThrough()"
