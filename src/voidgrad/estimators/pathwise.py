r"""The pathwise (reparameterization) estimator.

For a reparameterizable p, z = T(θ, ε) with ε ~ p(ε) independent of θ, and a
differentiable f,

    ĝ = (1/N) Σ_i ∂f/∂z (z_i) ∂T/∂θ (θ, ε_i).

Unbiased (under the usual conditions for exchanging ∇ and E), usually with far
lower variance than the score function, but f must be differentiable and p
must have ``rsample``.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from voidgrad.estimators.distributional import (
    DistributionEstimator,
    check_connected,
    plain_estimate,
)
from voidgrad.estimators.protocol import Estimate, Query


class Pathwise(DistributionEstimator):
    """Reparameterization-trick gradients through a differentiable f.

    Args:
        seed: seed of a private sampling stream, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> mu = torch.tensor([1.0, -1.0], requires_grad=True)
        >>> dist = torch.distributions.Normal(mu, 0.1)
        >>> f = lambda z: (z**2).sum(-1)  # differentiable
        >>> loss = vg.expectation(f, dist, samples=1000, estimator=vg.Pathwise(seed=0))
        >>> loss.backward()
        >>> [round(g, 1) for g in mu.grad.tolist()]  # ∇ E[|z|²] = 2μ
        [2.0, -2.0]
    """

    unbiased = True

    def ask(self, dist: Distribution, samples: int) -> Query:
        """z_i = T(θ, ε_i), in θ's graph: f is differentiated at them."""
        if not dist.has_rsample:
            raise ValueError(
                f"Pathwise needs a reparameterizable distribution (has_rsample); "
                f"{type(dist).__name__} has none: use vg.ScoreFunction, or a relaxation "
                "such as vg.GumbelSoftmax for discrete variables"
            )
        with self.sampling():
            z = dist.rsample((samples,))
            seeds = self.draw_seeds((samples,))
        return Query(z, seeds, differentiable=True)

    def tell(self, query: Query, costs: torch.Tensor) -> Estimate:
        """The mean cost, through whose graph autograd carries ĝ."""
        check_connected(query.inputs, costs, "Pathwise")
        return plain_estimate(costs)

    def __repr__(self) -> str:
        return "Pathwise()"
