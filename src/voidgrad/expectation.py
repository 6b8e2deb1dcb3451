"""``vg.expectation``: E_{z~p(z|θ)}[f(z)] as a differentiable loss.

``loss = vg.expectation(f, dist, samples=N, estimator=...)`` has the Monte
Carlo mean of f as its value; ``loss.backward()`` puts the estimator's
gradient into the parameters that built ``dist``. f is called through an
Evaluator (vectorized by default: f maps samples ``[N, *sample_shape]`` to
costs ``[N]``), so every call is counted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution

from voidgrad.errors import EvaluationError
from voidgrad.estimators.distributional import DistributionEstimator
from voidgrad.estimators.score import ScoreFunction
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.validation import check_samples


def expectation(
    f: Callable[..., object] | Evaluator,
    dist: Distribution,
    samples: int,
    estimator: DistributionEstimator | None = None,
) -> torch.Tensor:
    """A loss whose value estimates E_{z~dist}[f(z)] and whose gradient is ``estimator``'s.

    Args:
        f: maps a batch of samples ``[N, *dist.batch_shape, *dist.event_shape]``
            to costs ``[N]``; or to ``[N, *dist.batch_shape[:k]]``, making each
            of those leading batch entries an independent expectation. An
            Evaluator may be passed instead (for a per-sample ``fn``, a budget
            or a failure policy); a plain callable gets a vectorized one.
        dist: a ``torch.distributions`` object whose parameters are in the graph.
        samples: N, the number of samples (and evaluations of f).
        estimator: the gradient estimator; ``vg.ScoreFunction()`` by default.

    Returns:
        The loss, of shape ``dist.batch_shape[:k]`` (a scalar for costs ``[N]``).

    Examples:
        >>> import torch, voidgrad as vg
        >>> probs = torch.tensor([0.2, 0.7], requires_grad=True)
        >>> dist = torch.distributions.Bernoulli(probs=probs)
        >>> estimator = vg.ScoreFunction(baseline="leave_one_out", seed=0)
        >>> loss = vg.expectation(lambda b: b.sum(-1), dist, samples=1000, estimator=estimator)
        >>> round(loss.item(), 1)  # E[b1 + b2] = 0.2 + 0.7
        0.9
        >>> loss.backward()
        >>> probs.grad  # d/dp E[b1 + b2] = (1, 1)
        tensor([1.0..., 1.0...])
    """
    if not isinstance(dist, Distribution):
        raise TypeError(
            f"dist must be a torch.distributions.Distribution; got {type(dist).__name__}"
        )
    estimator = ScoreFunction() if estimator is None else estimator
    if not isinstance(estimator, DistributionEstimator):
        raise TypeError(
            "estimator must be a distribution estimator such as vg.ScoreFunction or vg.Pathwise; "
            f"got {type(estimator).__name__}"
        )
    check_samples(samples, paired=False)
    if samples < estimator.min_samples:
        raise ValueError(f"{estimator!r} needs samples >= {estimator.min_samples}; got {samples}")
    evaluator = f if isinstance(f, Evaluator) else Evaluator(f, backend="vectorized")

    def evaluate(z: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
        costs = evaluator(z, differentiable=differentiable)
        _check_costs(costs, dist, samples)
        return costs

    return estimator.loss(evaluate, dist, samples)


def _check_costs(costs: torch.Tensor, dist: Distribution, samples: int) -> None:
    batch = tuple(dist.batch_shape)
    kept = tuple(costs.shape[1:])
    if costs.shape[0] != samples or kept != batch[: len(kept)]:
        raise ValueError(
            f"f must return costs of shape [N] or [N, *dist.batch_shape[:k]] with N = {samples} "
            f"and batch_shape {batch}; got {tuple(costs.shape)}"
        )
    if not torch.isfinite(costs).all():
        row = int((~torch.isfinite(costs.reshape(samples, -1)).all(1)).nonzero()[0, 0])
        raise EvaluationError(
            f"f returned a non-finite cost for sample {row}; an expectation needs every "
            "sample's cost",
            row=row,
            params=None,
        )
