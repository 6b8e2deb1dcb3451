r"""Guides for :class:`~voidgrad.estimators.guided.GuidedSmoothing`: useful, biased gradients.

A guide is any ``guide(theta) -> tensor [d]``; these build one from what a
pipeline already has.

* :func:`autograd`: the autograd gradient ∇F̃(θ) of a differentiable twin F̃
  of the black box (a soft rasterizer, a simulator without contacts, a
  smoothed renderer). F̃ may differ from F: guided smoothing uses its
  direction to shape the perturbations, and its estimate stays a smoothing
  estimate of F.

Examples:
    >>> import torch, voidgrad as vg
    >>> guide = vg.guides.autograd(lambda x: (x**2).sum())  # a twin's gradient, 2x
    >>> guide(torch.tensor([1.0, -2.0]))
    tensor([ 2., -4.])
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from voidgrad.validation import check_callable, check_differentiable_scalar


def autograd(
    twin: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The guide θ ↦ ∇F̃(θ) of a differentiable twin F̃ (``twin(theta) -> scalar tensor``).

    The twin is called on a leaf copy of θ with grad enabled (also when the
    caller runs under ``torch.no_grad()``, as the estimators' ``ask`` does);
    it must return a real scalar tensor connected to θ. Its evaluations are
    not counted in any budget.

    Raises (when the guide is called):
        TypeError: the twin returned something other than a real scalar tensor.
        ValueError: the twin's value does not depend on θ (no gradient path).

    Examples:
        >>> import torch, voidgrad as vg
        >>> steps = lambda x: torch.floor(4 * x).sum()  # the black box: flat almost everywhere
        >>> twin = lambda x: (4 * x).sum()  # its smooth twin
        >>> guide = vg.guides.autograd(twin)
        >>> guide(torch.zeros(3))
        tensor([4., 4., 4.])
        >>> estimator = vg.GuidedSmoothing(0.1, 8, guide, alpha=0.1, seed=0)
    """
    check_callable("twin", twin, optional=False)

    def guide(theta: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            leaf = theta.detach().clone().requires_grad_(True)
            value = check_differentiable_scalar("twin", twin(leaf), "theta")
            (gradient,) = torch.autograd.grad(value.reshape(()), leaf, allow_unused=True)
        return torch.zeros_like(leaf) if gradient is None else gradient

    return guide
