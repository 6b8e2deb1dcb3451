r"""The score-function (REINFORCE, likelihood-ratio) estimator.

For L(θ) = E_{z~p(z|θ)}[f(z)], with z_i ~ p(z|θ) and baselines b_i,

    ĝ = (1/N) Σ_i (f(z_i) − b_i) ∇_θ log p(z_i | θ).

f is only evaluated, never differentiated, so it may be any black box, and z
may be discrete. Unbiased for every distribution with a differentiable
``log_prob`` and a support that does not depend on θ, whenever b_i does not
depend on z_i (see ``baselines``). Where the support moves with θ
(``Uniform(low, high)`` with its bounds in the graph), ∇_θ E[f] has a
boundary term that ∇ log p cannot see: such distributions are refused.
Gaussian smoothing of a black box is this estimator for p = N(θ, σ²I).
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from voidgrad.estimators.baselines import Baseline, make_baseline
from voidgrad.estimators.distributional import (
    DistributionEstimator,
    Evaluate,
    check_fixed_support,
    joint_log_prob,
    surrogate_loss,
)


class ScoreFunction(DistributionEstimator):
    """REINFORCE with an optional baseline. Unbiased where the support does not move with θ.

    Raises ``ValueError`` for a distribution whose support depends on the
    parameters in the graph (see the module docstring).

    Args:
        baseline: ``None``, a :class:`~voidgrad.baselines.Baseline` (such as
            ``vg.baselines.Learned(net)``), or ``"moving_average"`` /
            ``"leave_one_out"``.
        seed: seed of a private sampling stream, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> mu = torch.tensor([0.5], requires_grad=True)
        >>> dist = torch.distributions.Normal(mu, 1.0)
        >>> f = lambda z: (z[:, 0] > 0).float()  # a step: no pathwise gradient
        >>> estimator = vg.ScoreFunction(baseline="moving_average", seed=0)
        >>> loss = vg.expectation(f, dist, samples=4000, estimator=estimator)
        >>> round(loss.item(), 1)  # P(z > 0) = Φ(0.5) ≈ 0.69
        0.7
        >>> loss.backward()
        >>> abs(mu.grad.item() - 0.352) < 0.05  # φ(0.5) ≈ 0.352
        True
    """

    def __init__(self, baseline: str | Baseline | None = None, *, seed: int | None = None) -> None:
        super().__init__(seed)
        self.baseline = make_baseline(baseline)
        self.min_samples = 1 if self.baseline is None else self.baseline.min_samples

    def loss(self, evaluate: Evaluate, dist: Distribution, samples: int) -> torch.Tensor:
        check_fixed_support(dist, "ScoreFunction")
        with self.sampling(), torch.no_grad():
            z = dist.sample((samples,))
        costs = evaluate(z)
        log_prob = joint_log_prob(dist, z, costs.ndim - 1)
        centred = costs if self.baseline is None else costs - self.baseline(costs, dist)
        if self.baseline is not None:
            self.baseline.update(costs, dist)
        return surrogate_loss(costs.mean(0), (centred.detach() * log_prob).mean(0))

    def __repr__(self) -> str:
        return f"ScoreFunction(baseline={self.baseline!r})"
