"""``vg.expectation``: E_{z~p(z|θ)}[f(z)] as a differentiable loss.

``loss = vg.expectation(f, dist, samples=N, estimator=...)`` has the Monte
Carlo mean of f as its value; ``loss.backward()`` puts the estimator's
gradient into the parameters that built ``dist``. It is the bridge of the
ask/tell protocol: the estimator asks for samples, f is called on them
through an Evaluator (vectorized by default: f maps samples
``[N, *sample_shape]`` to costs ``[N]``), so every call is counted, and the
estimator is told the costs (:func:`voidgrad.estimators.distributional.estimate`).
Then, unless ``train=False``, the estimator's learned parts take their step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.distributions import Distribution

from voidgrad.estimators.distributional import DistributionEstimator, estimate, surrogate_of
from voidgrad.estimators.score import ScoreFunction
from voidgrad.evaluation.backends import VectorizedBackend
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.evaluation.outputs import describe_output
from voidgrad.validation import check_flag


def expectation(
    f: Callable[..., object] | Evaluator,
    dist: Distribution,
    samples: int,
    estimator: DistributionEstimator | None = None,
    *,
    train: bool = True,
) -> torch.Tensor:
    """A loss whose value estimates E_{z~dist}[f(z)] and whose gradient is ``estimator``'s.

    Args:
        f: maps a batch of samples ``[N, *dist.batch_shape, *dist.event_shape]``
            to costs ``[N]``; or to ``[N, *dist.batch_shape[:k]]``, making each
            of those leading batch entries an independent expectation. An
            Evaluator may be passed instead (for a per-sample ``fn``, a budget
            or a failure policy); a plain callable gets a vectorized one. A
            seeded estimator hands f the seeds of its samples when f takes a
            ``seed``.
        dist: a ``torch.distributions`` object whose parameters are in the graph.
        samples: N, the number of samples (and evaluations of f).
        estimator: the gradient estimator; ``vg.ScoreFunction()`` by default.
        train: step the estimator's learned parts (the control variate of
            LAX, RELAX and REBAR; a learned or moving-average baseline) on
            this estimate right away, as before. ``False`` trains nothing, so
            computing a loss twice changes nothing; a caller that steps them
            itself takes the whole estimate from
            :func:`voidgrad.estimators.distributional.estimate` and calls
            ``estimator.update(estimate)``.

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
    estimator = ScoreFunction() if estimator is None else estimator
    check_flag("train", train)
    evaluator = f if isinstance(f, Evaluator) else Evaluator(f, backend=_CostsBackend())
    result = estimate(evaluator, dist, samples, estimator)
    if train:
        estimator.update(result)
    return surrogate_of(result)


class _CostsBackend(VectorizedBackend):
    """The vectorized backend of a plain ``f``, whose wrong output is named in f's terms.

    f is called once on all N samples; the commonest slip is to write it for
    one sample (``lambda z: float(z.sum())``), which returns a single number.
    """

    def shape_error(self, output: object, shape: tuple[int, ...], X: torch.Tensor) -> ValueError:
        n = X.shape[0]
        got = f"shape {shape}" if isinstance(output, torch.Tensor | np.ndarray) else None
        return ValueError(
            "f must return costs of shape [N] or [N, *dist.batch_shape[:k]]: one per sample, "
            f"leading dimension {n} (N = {n} samples, passed to f at once as {list(X.shape)}); "
            f"got {got or describe_output(output)}"
        )
