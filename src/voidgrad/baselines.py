"""Baselines for the score-function estimator: ``vg.baselines.LeaveOneOut()`` and friends.

Examples:
    >>> import torch, voidgrad as vg
    >>> estimator = vg.ScoreFunction(baseline=vg.baselines.Constant(0.5), seed=0)
    >>> p = torch.tensor([0.5], requires_grad=True)
    >>> loss = vg.expectation(lambda b: b[:, 0], torch.distributions.Bernoulli(p), 2000, estimator)
    >>> loss.backward()
    >>> round(p.grad.item(), 1)  # d/dp E[b] = 1
    1.0
"""

from voidgrad.estimators.baselines import (
    Baseline,
    Constant,
    Learned,
    LeaveOneOut,
    MovingAverage,
)

__all__ = ["Baseline", "Constant", "Learned", "LeaveOneOut", "MovingAverage"]
