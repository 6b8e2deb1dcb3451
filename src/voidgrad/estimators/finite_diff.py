r"""Finite differences along the coordinate axes.

With step h and unit vectors e_k,

    forward:  ĝ_k = [⟨v, F(θ + h e_k)⟩ − ⟨v, F(θ)⟩] / h̃_k,            h̃_k = (θ_k + h) − θ_k
    central:  ĝ_k = [⟨v, F(θ + h e_k)⟩ − ⟨v, F(θ − h e_k)⟩] / h̃_k,    h̃_k = (θ_k + h) − (θ_k − h)

(d + 1 and 2d evaluations). h̃_k is the step actually taken: θ_k ± h rounded
to θ's dtype, so the quotient is exact for a linear F even where the dtype
cannot represent θ_k + h (float16, or float32 at large |θ_k|); dividing by h
or 2h instead would be off by the rounding, 2.4% for float16 at θ = 1 and
h = 0.01. Where h is below the resolution at θ_k, the points equal θ, h̃_k = 0,
the estimate of that coordinate is 0 and a
:class:`~voidgrad.errors.NumericalWarning` says so.

Deterministic given F. Bias O(h) (forward) or O(h²) (central) for smooth F;
exact for linear F (and central is exact for quadratic F). On a plateau both
are exactly zero, which is why smoothing exists.

The value is F(θ) for the forward scheme (it is one of the points) and the
mean of the 2d central points, F(θ) + O(h²), for the central scheme. The
points batch has d + 1 or 2d rows of length d: meant for small d.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from voidgrad.estimators.base import (
    BlackBoxEstimator,
    check_representable,
    check_theta,
    check_values,
    project,
    warn_unresolved,
)
from voidgrad.estimators.protocol import Estimate, Query
from voidgrad.validation import check_flag, check_positive

Scheme = Literal["forward", "central"]


class FiniteDifferences(BlackBoxEstimator):
    """Coordinate-wise finite differences.

    Args:
        h: step size (the step actually taken, θ_k + h rounded to θ's dtype, is
            what the difference is divided by).
        scheme: ``"forward"`` or ``"central"``.
        common_random_numbers: pass one seed to all points of an estimate, so a
            noisy F's noise cancels in the differences.
        seed: seed of the generator that draws those seeds.

    Examples:
        >>> import torch, voidgrad as vg
        >>> ev = vg.Evaluator(lambda x: float((x**2).sum()))
        >>> bb = vg.blackbox(ev, vg.FiniteDifferences(h=1e-3))  # central: 2d evaluations
        >>> theta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
        >>> bb(theta).backward()
        >>> theta.grad  # exact for a quadratic
        tensor([ 2.0000, -4.0000,  1.0000], dtype=torch.float64)
        >>> ev.stats.evals
        6
    """

    def __init__(
        self,
        h: float,
        scheme: Scheme = "central",
        *,
        common_random_numbers: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        if scheme not in ("forward", "central"):
            raise ValueError(f"scheme must be 'forward' or 'central'; got {scheme!r}")
        self.h = check_positive("h", h)
        self.scheme: Scheme = scheme
        self.common_random_numbers = check_flag("common_random_numbers", common_random_numbers)

    def evaluations(self, dim: int) -> int:
        return dim + 1 if self.scheme == "forward" else 2 * dim

    def ask(self, params: torch.Tensor, *args: object) -> Query:
        """The points θ ± h e_k (central) or θ + h e_k and θ (forward) for θ = ``params``."""
        theta = check_theta(params)
        B, d = theta.shape
        M = self.evaluations(d)
        if self.common_random_numbers:
            seeds = self.draw_seeds((B, 1)).expand(B, M)
        else:
            seeds = self.draw_seeds((B, M))
        axes = _axes(theta, self.h, self.scheme)
        check_representable("h", self.h, theta, axes.upper, axes.lower, axes.steps)
        dead = axes.steps == 0
        warn_unresolved("h", self.h, theta, dead, dead)
        return Query(inputs=_points(axes), seeds=seeds, context=axes)

    def tell(self, query: Query, values: torch.Tensor) -> Estimate:
        """F(θ) (forward) or the mean of the points (central), and the differences' VJP."""
        axes = query.context
        if not isinstance(axes, _Axes):
            raise TypeError(
                "query must come from FiniteDifferences.ask(); its context is "
                f"{type(axes).__name__}"
            )
        values = check_values(query, values)
        value = values[:, -1] if axes.scheme == "forward" else values.mean(1)

        def vjp(v: torch.Tensor) -> tuple[torch.Tensor, None]:
            return _differences(axes, project(values, v)), None

        return Estimate(value=value, vjp=vjp)

    def __repr__(self) -> str:
        return f"FiniteDifferences(h={self.h}, scheme={self.scheme!r})"


@dataclass(frozen=True)
class _Axes:
    """θ ``[B, d]``, the coordinates θ_k + h and θ_k − h (or θ_k) as the dtype holds them, and
    h̃_k, the steps actually taken between them (0 where h is lost)."""

    theta: torch.Tensor
    scheme: Scheme
    upper: torch.Tensor
    lower: torch.Tensor
    steps: torch.Tensor


def _axes(theta: torch.Tensor, h: float, scheme: Scheme) -> _Axes:
    upper = theta + h
    lower = theta - h if scheme == "central" else theta
    return _Axes(theta, scheme, upper, lower, upper - lower)


def _points(axes: _Axes) -> torch.Tensor:
    """``[B, M, d]``: θ with coordinate k set to θ_k + h (rows k), then θ_k − h or θ itself."""
    theta = axes.theta
    d = theta.shape[1]
    M = d + 1 if axes.scheme == "forward" else 2 * d
    points = theta.unsqueeze(1).repeat(1, M, 1)
    index = torch.arange(d, device=theta.device)
    points[:, index, index] = axes.upper
    if axes.scheme == "central":
        points[:, index + d, index] = axes.lower
    return points


def _differences(axes: _Axes, projected: torch.Tensor) -> torch.Tensor:
    """ĝ_k = (⟨v, F⟩ at the upper point − at the lower one) / h̃_k; 0 where h̃_k = 0."""
    d = axes.theta.shape[1]
    differences = projected[:, :d] - projected[:, d:]
    steps = axes.steps.to(differences.dtype)
    # A lost step (0) gives 0 (warned in ask), not the 0/0 or noise/0 of the quotient.
    return torch.where(steps == 0, 0.0, differences / torch.where(steps == 0, 1.0, steps))
