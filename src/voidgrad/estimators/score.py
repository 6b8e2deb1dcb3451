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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.distributions import Distribution

from voidgrad.estimators.baselines import Baseline, make_baseline
from voidgrad.estimators.control import score_objective
from voidgrad.estimators.distributional import (
    DistributionEstimator,
    check_fixed_support,
    joint_log_prob,
    require,
    surrogate_loss,
)
from voidgrad.estimators.protocol import Estimate, Query


@dataclass
class ScoreEstimate(Estimate):
    """ScoreFunction's estimate, with what its baseline learns from in ``update``.

    Attributes:
        costs: f at the samples, ``[N, *cost_batch]``.
        dist: the distribution they were drawn from.
    """

    costs: torch.Tensor = field(kw_only=True)
    dist: Distribution = field(kw_only=True)


class ScoreFunction(DistributionEstimator):
    """REINFORCE with an optional baseline. Unbiased where the support does not move with θ.

    Raises ``ValueError`` for a distribution whose support depends on the
    parameters in the graph (see the module docstring). A baseline that
    learns (a moving average, ``Learned``) does so in :meth:`update`, after
    the estimate that used it.

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

    unbiased = True

    def __init__(self, baseline: str | Baseline | None = None, *, seed: int | None = None) -> None:
        super().__init__(seed)
        self.baseline = make_baseline(baseline)
        self.min_samples = 1 if self.baseline is None else self.baseline.min_samples

    def ask(self, dist: Distribution, samples: int) -> Query:
        """z_i ~ p(z|θ), held fixed."""
        check_fixed_support(dist, "ScoreFunction")
        with self.sampling(), torch.no_grad():
            z = dist.sample((samples,))
            seeds = self.draw_seeds((samples,))
        return Query(z, seeds, context=dist)

    def tell(self, query: Query, costs: torch.Tensor) -> ScoreEstimate:
        """The surrogate (1/N) Σ_i (f_i − b_i) log p(z_i|θ); a learned baseline's fit loss."""
        dist = query.context
        log_prob = joint_log_prob(dist, query.inputs, costs.ndim - 1)
        baseline = None if self.baseline is None else self.baseline(costs, dist).detach()
        fit = None if self.baseline is None else self.baseline.fit_loss(costs, dist)
        value = costs.mean(0)
        return ScoreEstimate(
            value=value.detach(),
            loss=surrogate_loss(value, score_objective(costs, log_prob, baseline)),
            auxiliary={} if fit is None else {"baseline": fit},
            costs=costs.detach(),
            dist=dist,
        )

    def update(self, estimate: Estimate) -> None:
        """The baseline learns from the estimate's batch: a fitting step, or its statistics."""
        if self.baseline is None:
            return
        if not isinstance(estimate, ScoreEstimate):
            raise TypeError(
                "estimate must be the ScoreEstimate that ScoreFunction.tell returned; "
                f"got {type(estimate).__name__}"
            )
        fit = estimate.auxiliary.get("baseline")
        if fit is not None:
            self.baseline.step(fit)
        else:
            self.baseline.update(estimate.costs, estimate.dist)

    def state_dict(self) -> dict[str, Any]:
        """The random stream and the baseline's state."""
        baseline = {} if self.baseline is None else self.baseline.state_dict()
        return {**super().state_dict(), "baseline": baseline}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        baseline = require(state, "baseline")
        super().load_state_dict(state)
        if self.baseline is not None:
            self.baseline.load_state_dict(baseline)

    def __repr__(self) -> str:
        return f"ScoreFunction(baseline={self.baseline!r})"
