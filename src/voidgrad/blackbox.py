"""``vg.blackbox``: a black box inside autograd.

``bb = vg.blackbox(fn, estimator)`` is a callable. ``bb(theta)`` asks the
estimator for the points to evaluate, evaluates fn at all of them in one
Evaluator call (counted, parallel), tells the estimator the values, and
returns the estimate's value; in the backward pass it returns the estimate's
vector-Jacobian product for the incoming gradient. So it composes with
anything differentiable on either side: network → black box → loss.

A call is for a gradient: with grad mode on, ``theta`` must require grad
(a leaf made with ``requires_grad=True``, or a tensor computed from
parameters that require it), or the call is refused before any evaluation
is spent. To evaluate the estimate's value alone, call it under
``torch.no_grad()`` or ``torch.inference_mode()``.

Training. An estimator never trains itself: a learned part (ZeroGrads'
surrogate) reports its training loss in ``estimate.auxiliary`` and is stepped
by whoever calls :meth:`~voidgrad.estimators.protocol.Estimator.update`. With
``train=True`` (the default) that is the black box itself, right after each
tell, so a plain user's ZeroGrads learns as it goes; with ``train=False`` it
never is, and the caller (a run loop) calls
``estimator.update(bb.last_estimate)`` when it chooses: evaluating twice then
trains nothing. The backward pass only reads the estimate; where the
estimator knows the variance of its VJP, the backward pass records it as
``bb.last_estimate.stats["variance"]`` (tr Cov, summed over rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from voidgrad.estimators.base import BlackBoxEstimator
from voidgrad.estimators.protocol import Estimate, Query
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.validation import check_flag


class BlackBox:
    """A black box F made differentiable by a gradient estimator.

    Calling it with ``theta`` of shape ``[d]`` returns the estimated value of
    the (smoothed) F at ``theta``, shaped like one output of F; with
    ``[batch, d]`` each row is an independent call and the result is stacked
    ``[batch, ...]``. The result is in ``theta``'s dtype, so that it continues
    ``theta``'s graph; the estimate at the outputs' own precision (float64 for
    a Python float or a float64 NumPy array) is ``last_estimate.value``.
    ``theta`` must require grad unless grad mode is off (module docstring).

    Attributes:
        last_estimate: the estimate of the last call (its value, VJP,
            auxiliary losses and stats), or None before the first; it holds
            that call's outputs until the next call.

    Examples:
        >>> import torch, voidgrad as vg
        >>> bb = vg.BlackBox(lambda x: x * 2, vg.FiniteDifferences(h=1e-2))  # vector output
        >>> theta = torch.ones(4, 3, requires_grad=True)  # a batch of 4 independent calls
        >>> out = bb(theta)
        >>> out.shape
        torch.Size([4, 3])
        >>> out.sum().backward()
        >>> theta.grad[0]  # exact: the differences are divided by the steps actually taken
        tensor([2., 2., 2.])
    """

    def __init__(
        self,
        fn: Callable[..., object] | Evaluator,
        estimator: BlackBoxEstimator,
        evaluator: Evaluator | None = None,
        *,
        train: bool = True,
    ) -> None:
        if not isinstance(estimator, BlackBoxEstimator):
            raise TypeError(
                "estimator must be a black-box estimator such as vg.GaussianSmoothing, "
                f"vg.SPSA or vg.FiniteDifferences; got {type(estimator).__name__}"
            )
        if isinstance(fn, Evaluator) and evaluator is None:
            evaluator = fn
            fn = evaluator.fn
        if evaluator is None:
            evaluator = Evaluator(fn)
        elif not isinstance(evaluator, Evaluator):
            raise TypeError(f"evaluator must be a vg.Evaluator; got {type(evaluator).__name__}")
        elif evaluator.fn != fn:  # == so that two accesses of a bound method match
            raise ValueError("evaluator must wrap the same fn that is passed to blackbox")
        self.fn = fn
        self.estimator = estimator
        self.evaluator = evaluator
        self.train = check_flag("train", train)
        self.last_estimate: Estimate | None = None

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        theta2d = _as_parameter_batch(theta)
        if torch.is_grad_enabled() and not theta2d.requires_grad:
            # Checked before ask: a refused call spends no evaluation and no random draw.
            raise ValueError(
                "theta does not require grad, so the black box's estimate would spend its "
                "evaluations and no gradient could reach theta; make theta a leaf that requires "
                "grad (theta.requires_grad_(), or torch.tensor(..., requires_grad=True)) or "
                "compute it from parameters that do, or call the black box under "
                "torch.no_grad() to evaluate it without a gradient"
            )
        with torch.no_grad():
            query = self.estimator.ask(theta2d.detach())
            values = _evaluate(self.evaluator, query)
            estimate = self.estimator.tell(query, values)
        self.last_estimate = estimate
        self.estimator._last_stats = estimate.stats  # for the deprecated last_variance
        if self.train:
            self.estimator.update(estimate)
        value = _BlackBoxFunction.apply(theta2d, estimate)
        return value.squeeze(0) if theta.ndim == 1 else value

    def __repr__(self) -> str:
        return (
            f"BlackBox(estimator={self.estimator!r}, evaluator={self.evaluator!r}, "
            f"train={self.train})"
        )


def blackbox(
    fn: Callable[..., object] | Evaluator,
    estimator: BlackBoxEstimator,
    evaluator: Evaluator | None = None,
    *,
    train: bool = True,
) -> BlackBox:
    """Wrap ``fn`` so that autograd differentiates it with ``estimator``.

    Args:
        fn: the black box, called as ``fn(row)`` with a 1-D tensor (or as the
            ``evaluator`` prescribes). It may return a float, tensor or array.
            An Evaluator may be passed here instead, in place of both.
        estimator: a black-box estimator, e.g. ``vg.GaussianSmoothing``.
        evaluator: the Evaluator that runs ``fn`` (for a backend, budget or
            failure policy); by default a serial one.
        train: step the estimator's learned parts (``estimator.update``) right
            after each estimate; ``False`` leaves that to the caller, with
            ``estimator.update(bb.last_estimate)`` (module doc).

    Examples:
        >>> import torch, voidgrad as vg
        >>> def step(x):  # a staircase: zero gradient almost everywhere
        ...     return float(torch.floor(4 * x).pow(2).sum())
        >>> bb = vg.blackbox(step, vg.GaussianSmoothing(sigma=0.5, samples=64, seed=0))
        >>> theta = torch.tensor([1.0, -1.0], requires_grad=True)
        >>> bb(theta).backward()
        >>> theta.grad.shape
        torch.Size([2])
        >>> bool(theta.grad[0] > 0), bool(theta.grad[1] < 0)
        (True, True)

        A run loop that steps ZeroGrads' surrogate itself:

        >>> zerograds = vg.ZeroGrads(sigma=0.1, samples=4, seed=0)
        >>> bb = vg.blackbox(lambda x: float(x.pow(2).sum()), zerograds, train=False)
        >>> bb(theta).backward()  # the estimate, from the surrogate as it stands
        >>> zerograds.update(bb.last_estimate)  # now the surrogate learns from it
    """
    return BlackBox(fn, estimator, evaluator, train=train)


class _BlackBoxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, estimate: Estimate) -> torch.Tensor:
        ctx.estimate = estimate
        # The outputs may be wider than theta (a float loss of a float32 theta): the estimate
        # reads them at full precision, the graph continues in theta's dtype.
        return estimate.value.to(theta.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        estimate: Estimate = ctx.estimate
        assert estimate.vjp is not None
        grad, variance = estimate.vjp(grad_output)
        if variance is not None:
            estimate.stats["variance"] = float(variance.sum())
        return grad, None


def _evaluate(evaluator: Evaluator, query: Query) -> torch.Tensor:
    """The values ``[B, M, *out]`` of the query's points, evaluated by ``evaluator``.

    Points made on demand (:class:`~voidgrad.estimators.regenerated.RegeneratedPoints`)
    are evaluated in chunks of one row per worker of the backend, so that only
    a chunk of them is ever held; the whole query must fit in the budget
    before the first chunk runs, as it must for one call. A query of no
    points evaluates nothing.
    """
    inputs, seeds = query.inputs, query.seeds.reshape(-1)
    B, M, d = inputs.shape
    if B * M == 0:  # a step that reuses earlier evaluations (ZeroGrads' theta_steps)
        return torch.zeros((B, M), dtype=inputs.dtype, device=inputs.device)
    if isinstance(inputs, torch.Tensor):
        values = evaluator(inputs.reshape(B * M, d), seeds)
    else:
        evaluator.check_budget(B * M)
        chunk = max(1, getattr(evaluator.backend, "workers", None) or 1)
        values = torch.cat(
            [
                evaluator(
                    inputs.rows(start, min(start + chunk, B * M)), seeds[start : start + chunk]
                )
                for start in range(0, B * M, chunk)
            ]
        )
    return values.reshape(B, M, *values.shape[1:])


def _as_parameter_batch(theta: object) -> torch.Tensor:
    if not isinstance(theta, torch.Tensor):
        raise TypeError(f"theta must be a torch.Tensor; got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise TypeError(f"theta must have a floating dtype; got {theta.dtype}")
    if theta.ndim not in (1, 2) or theta.shape[-1] == 0 or theta.numel() == 0:
        raise ValueError(
            f"theta must have shape [d] or [batch, d] with d >= 1; got {tuple(theta.shape)}"
        )
    if not torch.isfinite(theta).all():
        raise ValueError("theta contains NaN or infinite values")
    return theta.unsqueeze(0) if theta.ndim == 1 else theta
