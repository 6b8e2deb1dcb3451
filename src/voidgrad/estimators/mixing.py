r"""Mixing a biased gradient with smoothing by inverse variance, with a bias check (Suh et al.).

A guide g₁ = ``guide(θ)`` (a differentiable twin's gradient, a biased AD
gradient) has a small variance and an unknown bias; the zeroth-order
smoothing estimate ĝ₀ has no bias and a large variance. Suh et al. (ICML
2022, "Do differentiable simulators give better policy gradients?", the
α-order gradient) combine them as

    ĝ = γ g₁ + (1 − γ) ĝ₀,    γ = V₀ / (V₀ + V₁)   (inverse-variance weights),

V₀ = tr Cov(ĝ₀) and V₁ = tr Cov(g₁), and fall back to γ = 0 where the data
contradict the guide. ĝ₀ is plain antithetic Gaussian smoothing,
``GaussianSmoothing(sigma, samples, importance=False)`` (the same offsets and
estimate, bit for bit, from the same seed), with V₀ estimated from the
spread of its n pairs by the shared mirrored read-out
(:mod:`voidgrad.estimators.mirrored`). The guide is called once per estimate,
at θ; its variance V₁ is ``guide_variance`` (0, the default, for a
deterministic guide, whose only error is its bias: then γ = 1 whenever the
check passes, and ĝ = g₁).

The bias check. Were g₁ unbiased for ∇Q (Q the Gaussian-smoothed F), the
difference g₁ − ĝ₀ would have mean 0 and E‖g₁ − ĝ₀‖² = V₀ + V₁. With few
pairs in many dimensions V₀ is large and this norm hardly sees a bias (a
guide of −∇F passes it at d = 50, n = 4), so the difference is also tested
along the guide's direction e = g₁/‖g₁‖, where ĝ₀'s variance V₀ₑ (from the
same pairs, read out as a one-dimensional estimate) is about (‖∇Q‖² + ⟨∇Q, e⟩²)/n
instead of (d + 1)‖∇Q‖²/n. The guide is used (γ as above) only if both

    ‖g₁ − ĝ₀‖² ≤ z² (V₀ + V₁)    and    (⟨g₁ − ĝ₀, e⟩)² ≤ z² (V₀ₑ + V₁),

z = ``z``; otherwise γ = 0 and ĝ = ĝ₀ exactly. (Suh et al. bound γ‖g₁ − ĝ₀‖
by a tolerance; the bound here is the noise of ĝ₀ itself, so it needs no
scale from the user.) With fewer than two valid pairs V₀ is unknown and
ĝ = ĝ₀. For an incoming gradient v (F scalar), g₁ enters as v·g₁. σ may
follow a ``schedule`` advanced by :meth:`~voidgrad.estimators.scheduled.ScheduledSigma.step`, and
``common_random_numbers`` gives both points of a pair one seed, as for
``GaussianSmoothing`` (whose estimate ĝ₀ stays bit for bit).

What it estimates: in general a biased gradient of Q, between g₁ and ∇Q;
ĝ₀ (unbiased for ∇Q) whenever the check fails. The reported variance is
(1 − γ)² V₀ + γ² V₁, the bias not included. ``Estimate.stats`` records
``"gamma"``, the weight of the guide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from voidgrad.estimators.base import (
    check_random_offsets,
    check_theta,
    check_values,
)
from voidgrad.estimators.guided import Guide, check_guide
from voidgrad.estimators.mirrored import (
    Mirrored,
    mirrored_context,
    mirrored_estimate,
    mirrored_points,
    mirrored_seeds,
    mirrored_vjp,
)
from voidgrad.estimators.protocol import Estimate, Query
from voidgrad.estimators.samplers import gaussian
from voidgrad.estimators.scheduled import ScheduledSigma
from voidgrad.estimators.schedules import SigmaSchedule
from voidgrad.validation import (
    check_callable,
    check_flag,
    check_interval,
    check_positive,
    check_samples,
)

VJP = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass(frozen=True)
class MixedContext(Mirrored):
    """A mixed query's :class:`Mirrored` context, with the guide at each θ (``[B, d]``)."""

    guides: torch.Tensor | None = None


class MixedGradient(ScheduledSigma):
    """Inverse-variance mixing of a guide and Gaussian smoothing, with a bias check (module doc).

    Args:
        sigma: the smoothing kernel's scale σ (the initial value if scheduled).
        samples: evaluations per estimate (even, at least 4: two antithetic
            pairs give ĝ₀'s variance).
        guide: ``guide(theta) -> tensor [d]``, the biased gradient g₁, called
            on a detached copy of each row of θ once per estimate.
        guide_variance: V₁ ≥ 0, the trace of the guide's covariance if it is
            random; 0 for a deterministic guide.
        z: the bias check's bound, in standard deviations of the difference
            (module doc); larger trusts the guide more often.
        schedule: maps (σ_0, step) to σ; ``None`` keeps σ constant. Advance it
            with ``step()`` once per optimisation step
            (:meth:`~voidgrad.estimators.scheduled.ScheduledSigma.step`).
        common_random_numbers: give both points of an antithetic pair the same
            seed (when F accepts a ``seed``), so a noisy F's noise cancels in
            their difference.
        seed: seed of the estimator's generator, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> target = torch.linspace(-1.0, 1.0, 50)
        >>> def loss(x):  # a staircase: no useful gradient of its own
        ...     return float(((x * 8).round() / 8 - target).pow(2).sum())
        >>> def twin_gradient(x):  # the smooth twin's gradient, slightly off
        ...     return 2 * (x - target) + 0.05
        >>> est = vg.MixedGradient(sigma=0.1, samples=8, guide=twin_gradient, seed=0)
        >>> theta = torch.zeros(50, requires_grad=True)
        >>> bb = vg.blackbox(loss, est)
        >>> bb(theta).backward()
        >>> bb.last_estimate.stats["gamma"]  # the check passed: the guide, wholly
        1.0
        >>> far = vg.MixedGradient(0.1, 8, lambda x: 100 * twin_gradient(x), seed=0)
        >>> bb = vg.blackbox(loss, far)
        >>> bb(theta).backward()
        >>> bb.last_estimate.stats["gamma"]  # 100 times too long: smoothing alone
        0.0
    """

    def __init__(
        self,
        sigma: float,
        samples: int,
        guide: Guide,
        guide_variance: float = 0.0,
        z: float = 2.0,
        *,
        schedule: SigmaSchedule | None = None,
        common_random_numbers: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(sigma, schedule, seed)
        self.samples = check_samples(samples, paired=True)
        if self.samples < 4:
            raise ValueError(
                "samples must be at least 4 (two antithetic pairs, for the variance of the "
                f"smoothing estimate); got {samples!r}"
            )
        self.guide: Guide = check_callable(
            "guide", guide, "guide(theta) -> tensor [d]", optional=False
        )
        self.guide_variance = check_interval(
            "guide_variance", guide_variance, 0, float("inf"), closed_low=True
        )
        self.z = check_positive("z", z)
        self.common_random_numbers = check_flag("common_random_numbers", common_random_numbers)

    def evaluations(self, dim: int) -> int:
        return self.samples

    def ask(self, params: torch.Tensor, *args: object) -> Query:
        """Call the guide at each row of θ = ``params`` (``[B, d]``), then the points θ ± ε_i:
        ``[B, samples, d]``."""
        theta = check_theta(params)
        B, d = theta.shape
        guides = torch.stack(
            [check_guide(self.guide(row.detach().clone()), row[None]) for row in theta]
        )
        n = self.samples // 2
        sigma = self.sigma
        offsets = gaussian(self._generator, (B, n, d), sigma, theta.dtype).to(theta.device)
        seeds = mirrored_seeds(self, B, n, True, self.common_random_numbers)
        check_random_offsets(self.sigma_label, sigma, theta, offsets)
        context = MixedContext(theta, offsets, True, 1 / sigma, unit=sigma, guides=guides)
        return Query(inputs=mirrored_points(context), seeds=seeds, context=context)

    def tell(self, query: Query, values: torch.Tensor) -> Estimate:
        """The mean of F over the points, and the mixed VJP (module doc); trains nothing.

        F must be scalar: the guide is a gradient ``[d]``. ``stats["gamma"]``
        is the guide's weight, averaged over the rows.
        """
        context = mirrored_context(query)
        values = check_values(query, values)
        if not isinstance(context, MixedContext) or context.guides is None:
            raise TypeError("query must come from MixedGradient.ask()")
        if values[0, 0].numel() != 1:
            raise ValueError(
                "MixedGradient needs a scalar F (its guide is a gradient [d]); got outputs of "
                f"shape {tuple(values.shape[2:])}"
            )
        smoothing = mirrored_estimate(context, values)
        assert smoothing.vjp is not None
        scalar = values.reshape(values.shape[:2])
        # γ depends on ĝ₀, which does not depend on v for a scalar F up to the factor v:
        # decide it once, at v = 1, so that the value and every VJP agree.
        gamma = self._gamma(context, scalar, smoothing.vjp)
        stats = {"gamma": float(gamma.mean())}
        vjp0 = smoothing.vjp

        def vjp(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            grad0, variance0 = vjp0(v)
            scale = v.reshape(-1, 1).to(grad0.dtype)
            guide = scale * context.guides.to(grad0.dtype)  # type: ignore[union-attr]
            # γ = 0 gives ĝ₀ exactly: 0·g₁ adds a (signed) zero.
            mixed = gamma[:, None] * guide + (1 - gamma[:, None]) * grad0
            if variance0 is None:
                return mixed, None
            noise = gamma**2 * scale[:, 0] ** 2 * self.guide_variance
            return mixed, (1 - gamma) ** 2 * variance0 + noise

        return Estimate(value=smoothing.value, vjp=vjp, stats=stats)

    def _gamma(self, context: MixedContext, values: torch.Tensor, vjp0: VJP) -> torch.Tensor:
        """γ per row ``[B]``: V₀/(V₀ + V₁) where the bias check passes, else 0 (module doc)."""
        B = values.shape[0]
        grad0, variance0 = vjp0(torch.ones(B, dtype=values.dtype, device=values.device))
        if variance0 is None:
            return torch.zeros(B, dtype=grad0.dtype, device=grad0.device)
        wide = torch.promote_types(grad0.dtype, torch.float32)
        guides = context.guides.to(wide)  # type: ignore[union-attr]
        grad0, variance0 = grad0.to(wide), variance0.to(wide)
        v1 = self.guide_variance
        z2 = self.z**2
        difference = guides - grad0
        passes = difference.pow(2).sum(1) <= z2 * (variance0 + v1)
        # Along e = g₁/‖g₁‖: ĝ₀ read out as a one-dimensional estimate from the offsets ⟨ε_i, e⟩.
        length = guides.norm(dim=1, keepdim=True)
        direction = torch.where(length > 0, guides / length, 0.0)
        offsets = context.offsets
        assert isinstance(offsets, torch.Tensor)
        along = (offsets.to(wide) @ direction.unsqueeze(-1)).to(offsets.dtype)  # [B, n, 1]
        # The σ the offsets were drawn with: the schedule may have stepped since the ask.
        sigma = context.unit
        line = Mirrored(context.theta[:, :1], along, True, 1 / sigma, unit=sigma)
        grad_e, variance_e = mirrored_vjp(line, values)
        assert variance_e is not None
        gap = length[:, 0] - grad_e[:, 0].to(wide)
        passes &= (gap.pow(2) <= z2 * (variance_e.to(wide) + v1)) | (length[:, 0] == 0)
        total = variance0 + v1
        gamma = torch.where(total > 0, variance0 / total, torch.ones_like(total))
        return torch.where(passes, gamma, 0.0).to(grad0.dtype)

    def __repr__(self) -> str:
        name = getattr(self.guide, "__qualname__", type(self.guide).__name__)
        return (
            f"MixedGradient(sigma={self.sigma0}, samples={self.samples}, guide={name}, "
            f"guide_variance={self.guide_variance}, z={self.z}"
            + ("" if self.schedule is None else f", schedule={self.schedule!r}")
            + (", common_random_numbers=True" if self.common_random_numbers else "")
            + ")"
        )
