"""``vg.blackbox``: a black box inside autograd.

``bb = vg.blackbox(fn, estimator)`` is a callable. ``bb(theta)`` evaluates fn
at the points the estimator asks for (one Evaluator call for the whole batch)
and returns the estimator's value; in the backward pass it returns the
estimator's vector-Jacobian product for the incoming gradient. So it composes
with anything differentiable on either side: network → black box → loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from voidgrad.estimators.base import BlackBoxEstimator, Probe
from voidgrad.evaluation.evaluator import Evaluator


class BlackBox:
    """A black box F made differentiable by a gradient estimator.

    Calling it with ``theta`` of shape ``[d]`` returns the estimated value of
    the (smoothed) F at ``theta``, shaped like one output of F; with
    ``[batch, d]`` each row is an independent call and the result is stacked
    ``[batch, ...]``. Gradients flow back to ``theta`` only if it requires them.

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

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        theta2d = _as_parameter_batch(theta)
        value = _BlackBoxFunction.apply(theta2d, self.estimator, self.evaluator)
        return value.squeeze(0) if theta.ndim == 1 else value

    def __repr__(self) -> str:
        return f"BlackBox(estimator={self.estimator!r}, evaluator={self.evaluator!r})"


def blackbox(
    fn: Callable[..., object] | Evaluator,
    estimator: BlackBoxEstimator,
    evaluator: Evaluator | None = None,
) -> BlackBox:
    """Wrap ``fn`` so that autograd differentiates it with ``estimator``.

    Args:
        fn: the black box, called as ``fn(row)`` with a 1-D tensor (or as the
            ``evaluator`` prescribes). It may return a float, tensor or array.
            An Evaluator may be passed here instead, in place of both.
        estimator: a black-box estimator, e.g. ``vg.GaussianSmoothing``.
        evaluator: the Evaluator that runs ``fn`` (for a backend, budget or
            failure policy); by default a serial one.

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
    """
    return BlackBox(fn, estimator, evaluator)


class _BlackBoxFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, theta: torch.Tensor, estimator: BlackBoxEstimator, evaluator: Evaluator
    ) -> torch.Tensor:
        probe: Probe = estimator.probe(theta.detach())
        points = probe.points()
        B, M, d = points.shape
        outputs = evaluator(points.reshape(B * M, d), probe.seeds.reshape(B * M))
        del points  # the backward pass needs only the outputs and the probe
        outputs = outputs.reshape(B, M, *outputs.shape[1:])
        ctx.probe = probe
        ctx.outputs = outputs
        ctx.estimator = estimator
        # The outputs may be wider than theta (a float loss of a float32 theta): the estimate
        # reads them at full precision, the graph continues in theta's dtype.
        return probe.value(outputs).to(theta.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        grad, variance = ctx.probe.backward(ctx.outputs, grad_output.to(ctx.outputs.dtype))
        ctx.estimator.last_variance = None if variance is None else float(variance.sum())
        return grad, None, None


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
