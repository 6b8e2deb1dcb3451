r"""DisARM: antithetic, Rao-Blackwellized gradients for Bernoulli variables.

For b ~ Bernoulli(σ(α)) with logits α ∈ R^D and a black-box f, draw
u ~ U(0, 1)^D and the antithetic pair

    b = 1[u < σ(α)],   b̃ = 1[1 − u < σ(α)].

Both are Bernoulli(σ(α)). DisARM (Dong, Mnih & Tucker 2020) is

    ĝ_d = ½ (f(b) − f(b̃)) (−1)^{b̃_d} 1[b_d ≠ b̃_d] σ(|α_d|),

ARM with the antithetic uniform integrated out. Unbiased; its variance
never exceeds ARM's. With N samples it averages N/2 independent pairs, each
pair costing two evaluations, so N must be even. f is evaluated at discrete
samples only, never differentiated.
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Distribution

from voidgrad.estimators.distributional import (
    DistributionEstimator,
    parameter_surrogate,
    plain_estimate,
    surrogate_loss,
)
from voidgrad.estimators.protocol import Estimate, Query
from voidgrad.estimators.samplers import uniform


class DisARM(DistributionEstimator):
    """DisARM for Bernoulli distributions: antithetic pairs, two evaluations each. Unbiased.

    Args:
        seed: seed of a private sampling stream, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> logits = torch.zeros(2, requires_grad=True)
        >>> dist = torch.distributions.Bernoulli(logits=logits)
        >>> f = lambda b: (b - torch.tensor([1.0, 0.0])).pow(2).sum(-1)  # best: b = (1, 0)
        >>> loss = vg.expectation(f, dist, samples=2000, estimator=vg.DisARM(seed=0))
        >>> round(loss.item(), 1)
        1.0
        >>> loss.backward()
        >>> bool(logits.grad[0] < 0), bool(logits.grad[1] > 0)  # raise p1, lower p2
        (True, True)
    """

    unbiased = True

    min_samples = 2

    def ask(self, dist: Distribution, samples: int) -> Query:
        """The pairs b, b̃ from shared uniforms: ``[b_1..b_{N/2}, b̃_1..b̃_{N/2}]``."""
        if not isinstance(dist, Bernoulli):
            raise ValueError(
                f"DisARM needs a Bernoulli distribution; got {type(dist).__name__} "
                "(use vg.RELAX or vg.ScoreFunction for categoricals)"
            )
        if samples % 2:
            raise ValueError(f"DisARM draws antithetic pairs: samples must be even; got {samples}")
        logits = dist.logits
        with self.sampling(), torch.no_grad():
            u = uniform((samples // 2, *logits.shape), logits)
            seeds = self.draw_seeds((samples,))
        probs = torch.sigmoid(logits.detach())
        b = torch.cat([u < probs, 1 - u < probs]).to(logits.dtype)
        return Query(b, seeds, context=logits)

    def tell(self, query: Query, costs: torch.Tensor) -> Estimate:
        """ĝ averaged over the pairs, routed into the logits."""
        logits = query.context
        if not logits.requires_grad:
            return plain_estimate(costs)
        pairs = costs.shape[0] // 2
        b, b_anti = query.inputs[:pairs], query.inputs[pairs:]
        difference = costs[:pairs] - costs[pairs:]
        difference = difference.reshape(*difference.shape, *[1] * (b.ndim - difference.ndim))
        sign = 1 - 2 * b_anti  # (−1)^{b̃}
        weight = sign * (b != b_anti).to(b.dtype) * torch.sigmoid(logits.detach().abs())
        grad = (0.5 * difference * weight).mean(0)
        value = costs.mean(0)
        surrogate = parameter_surrogate([grad], [logits], costs.ndim - 1)
        return Estimate(value=value.detach(), loss=surrogate_loss(value, surrogate))

    def __repr__(self) -> str:
        return "DisARM()"
