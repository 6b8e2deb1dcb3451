r"""Guided smoothing (guided evolution strategies) of a black box F.

Many pipelines have a gradient that is useful but wrong: the autograd of a
differentiable twin, an AD gradient biased at discontinuities, a surrogate's
∇h. Guided evolution strategies (Maheswaranathan et al., ICML 2019) stretch
the smoothing kernel along the recent ones. With U ∈ ℝ^{d×r} an orthonormal
basis of the span of the last k guide vectors (r ≤ k their rank), P = UUᵀ
and α ∈ (0, 1], the perturbations are ε ~ N(0, σ²Σ),

    Σ = α I + (1 − α)(d/r) P,
    ε = σ(√α ξ + √((1 − α) d/r) U ζ),     ξ ~ N(0, I_d), ζ ~ N(0, I_r).

tr Σ = d for every α, so E‖ε‖² = σ²d as for
:class:`~voidgrad.estimators.smoothing.GaussianSmoothing` with the same σ: α
moves the perturbation's length into the guide subspace without changing it.
(The paper writes Σ_p = (α/d) I + ((1 − α)/k) UUᵀ of trace 1 and scale σ_p;
here σ_p = σ√d and Σ = d Σ_p, the same kernel.) The smoothed objective is

    Q_Σ(θ) = E_{ε~N(0,σ²Σ)}[F(θ + ε)],

and both read-outs use antithetic pairs, δF_i = F(θ + ε_i) − F(θ − ε_i):

    correction=False:  ĝ = (1/(2σ²n)) Σ_i ε_i δF_i,           E[ĝ] = Σ ∇Q_Σ(θ)
    correction=True:   ĝ = (1/(2σ²n)) Σ_i Σ⁻¹ε_i δF_i,        E[ĝ] = ∇Q_Σ(θ)

(Stein's lemma: E[ε F(θ + ε)] = σ²Σ ∇Q_Σ(θ)). The first, the default, is
the paper's estimator with β = d: a descent direction for Q_Σ (Σ is positive
definite) with gain α off the subspace and α + (1 − α)d/r along it, so that
it leans toward the guide by 1 + (1 − α)d/(αr) (an SGD step grows by as much
along the guide). It is the one that profits from a good guide: with the
guide equal to ∇F, α = 0.05, d = 100 and 8 evaluations, its mean cosine to
∇F is 0.99 against plain smoothing's 0.19 (measured in the tests). The
second is unbiased for the gradient of the ellipsoidally smoothed F (for a
quadratic F, for ∇F(θ) itself), and pays for it: with the guide along ∇F,
its per-pair terms off the subspace have 1 + (1 − α)d/(αr) times the
variance of plain smoothing's (measured: 100 times at d = 100, α = 0.5), so
it is for when unbiasedness is what counts.
Σ⁻¹ is applied in O(dr), never formed:

    Σ⁻¹ = (1/α)(I − P) + (α + (1 − α)d/r)⁻¹ P.

At α = 1, Σ = I and both are plain Gaussian smoothing of scale σ,
``GaussianSmoothing(sigma, samples, importance=False)``: the same offsets and
estimates, bit for bit, from the same seed (ζ is drawn only where α < 1, so
the streams agree for as long as α stays 1). σ may follow a ``schedule``
advanced by ``step()``
(:meth:`~voidgrad.estimators.scheduled.ScheduledSigma.step`), and
``common_random_numbers`` gives both points of a pair one seed, as for
``GaussianSmoothing``. For vector outputs F is replaced by
⟨v, F⟩ for the incoming gradient v, giving a vector-Jacobian product; the
value is the mean of F over the 2n points. Read out by the shared mirrored
read-out (:mod:`voidgrad.estimators.mirrored`), which drops failed pairs and
estimates the variance from the spread of the pairs.

Adaptive trust (``adapt=True``, ``correction=False``). How much of the
gradient the guide subspace holds is measured from the pairs themselves and α
is moved to suit it. With u_i = ε_i/σ, the coordinates x_i = Uᵀu_i ~ N(0, bI_r),
b = α + (1 − α)d/r, and the rest (I − P)u_i ~ N(0, α(I − P)) are independent,
so for F linear over ±ε_i (exactly so for a quadratic: the even part cancels)

    y_i = δF_i/(2σ) = x_iᵀh + e_i,    h = Uᵀ∇F,  e_i ~ N(0, α‖(I − P)∇F‖²),

a linear regression on n ≥ r + 1 pairs. Least squares gives ĥ and the
residual sum of squares RSS, and from them the unbiased estimates

    ‖(I − P)∇F‖² ≈ RSS/((n − r)α),   ‖P∇F‖² ≈ ‖ĥ‖² − tr((XᵀX)⁻¹) RSS/(n − r).

(For vector outputs ∇F is the Jacobian, the regression has one column per
output and the norms are Frobenius norms.) Regressing first matters: the
residual is free of the part along the subspace, which dominates y_i when α
is small (products of pairs, unbiased without the linear model, measured
10³ times the variance at α = 0.1, d = 50). Curvature or noise beyond the
model enters the residual, so it reads as gradient off the subspace and
pushes α up: the safe side. Each estimate reports the two in
``Estimate.stats`` (``"guide_parallel"``, ``"guide_orthogonal"``) with the
variance of the first and the residual's degrees of freedom n − r. Given X,
ĥ ~ N(h, s²G⁻¹) (G = XᵀX, s² the variance of e_i) and RSS ~ s²χ²_{n−r},
independent, so

    Var(‖P∇F‖² estimate) = 2s⁴ (tr G⁻² + (tr G⁻¹)²/(n − r)) + 4s² hᵀG⁻¹h,

evaluated at ŝ² = RSS/(n − r) and ĥ (E[ĥᵀG⁻¹ĥ] ≥ hᵀG⁻¹h: on the large
side). :meth:`GuidedSmoothing.update`, never ask or tell, folds them into
discounted averages A, B (μ = ``memory``). The fits are far from equally
precise: at h = 0 the first estimate's variance is

    v⁰ = 2α²‖(I − P)∇F‖⁴ c,   c = tr G⁻² + (tr G⁻¹)²/(n − r),

and G = XᵀX ≈ nbI_r (x_i ~ N(0, bI_r)), so c ≈ r(1 + r/(n − r))/(nb)²
and the precision goes as (b/α)²: a fit drawn at α = 0.05 in d = 35 152
(b ≈ 0.95 d) is about 5·10¹¹ times as precise as one at α = 1. A weights
fit j by μ^(t−j) ω_j, ω_j = 1/(2α_j²c_j) (``"guide_parallel_weight"``),
normalised to sum 1: the discounted minimum-variance combination under
h = 0 for a common ‖(I − P)∇F‖, and a function of the draws alone, so that
a fit whose residual happens to be small (large ĥ², small ŝ²) gains no
weight from it. With equal weights one noisy fit at α = 1 that read the
guide's share as large would hold A up for tens of steps after α had left
1, while the precise fits made at the small α show nothing (measured:
digits_mlp, d = 35 152, a surrogate's ∇h as the guide, 60-70 steps at
α = 0.05 per such excursion, up to 40 % worse than plain
smoothing); with these weights the first fit at the new α outweighs it.
Var(A) = Σ_j w_j² v_j over the normalised weights w_j and the fits'
variances v_j. B's terms each have variance 2‖(I − P)∇F‖⁴/(n − r), the same
at every α, so B keeps equal weights μ^(t−j) normalised to sum 1, and its
degrees of freedom are k = 1/Σ_j (w_j²/(n − r)) (Satterthwaite: each term is
a scaled χ²). The share of the gradient in the subspace is ρ = A/(A + B).
The averages assume that the guide's quality persists from one step to the
next while its subspace turns.

α leaves 1 on evidence alone. With 4 pairs a single fit's ρ is so noisy that
it often lands beyond the sharp switch of the maximiser of R below (ρ ≈ 0.1
at d = 50, n = 4) under a guide that holds nothing, and sends α to the floor
for several steps (measured: a random guide cost 12-15 % against plain
smoothing that way). So α is chosen from a lower confidence bound of ρ,

    ρ₋ = A₋/(A₋ + B⁺),   A₋ = A − z√Var(A),   B⁺ = B/(1 − c − z√c)³,  c = 2/(9k),

z = ``z`` (2: about 2.3 % one-sided for each bound, 0 for the point estimate
up to B⁺'s median correction), B⁺ the upper bound of B from the Wilson–Hilferty
approximation of the χ²_k quantile, which is wide for the few degrees of
freedom of the first fits (k = 3: B⁺ = 18 B) and tends to B(1 + z√(2/k)).
ρ₋ = 0 (α = 1) while A₋ ≤ 0 or the bound on B is infinite (1 − c − z√c ≤ 0).
Over hundreds of steps the bound at α = 1 is still crossed by chance now
and then (z = 2 at every step, and A at α = 1 sums few heavy-tailed terms:
ĥ²/(tr G⁻¹ ŝ²) is F(r, n − r) at h = 0). Such an excursion costs one step:
the fit made at the smaller α outweighs the ones before it (above), reads
the share precisely, and α goes back up at the next step.

α is then the value that minimises the error of the estimate's direction,
min_c E‖cĝ − ∇F‖² = ‖∇F‖²(1 − R), i.e. maximises R = (∇FᵀE[ĝ])²/E‖ĝ‖², as
Maheswaranathan et al. (ICML 2019, §3.3) tune α from the fraction ρ of
‖∇F‖² in the subspace. For this estimator, with ‖∇F‖ = 1, s_i = ε_i/σ ~ N(0, Σ)
and Isserlis' theorem (E[‖s‖²(sᵀg)²] = tr Σ · gᵀΣg + 2gᵀΣ²g, tr Σ = d):

    E[ĝ] = Σ∇F,   m = ∇FᵀΣ∇F = α(1 − ρ) + bρ,   q = ‖Σ∇F‖² = α²(1 − ρ) + b²ρ,
    R(α) = n m² / ((n + 1) q + d m),

n the number of pairs. R rises with α at ρ = 0 (α = 1: plain smoothing),
falls with it at ρ = 1, and at ρ = r/d (a random subspace) α = 1 is best.
The next estimate uses the maximiser of R at ρ = ρ₋ over 1 001 evenly spaced
values of α in [``alpha_min``, 1] (the largest, on a tie); ``alpha_min`` > 0
keeps the full-rank part, so that every direction is still explored and a
guide that turns bad is seen. Until the first update α is ``alpha`` (1 by
default with ``adapt``). The α each estimate used is
``Estimate.stats["alpha"]`` (with ``"guide_share"`` ρ and
``"guide_share_bound"`` ρ₋), and the moving averages are part of
``state_dict()``, so that a resumed run continues bit for
bit. Measured (``benchmarks/guided_adaptive.py``: Adam, 400 evaluations,
median final loss of 5 seeds over plain smoothing's, quadratic / staircase):
a fresh random guide each call 1.00 / 0.97 at d = 50 and 1.00 / 1.00 at
d = 200, a fixed wrong direction 1.00 / 1.00 at both (α stays 1 on nearly every
step), and a biased twin's gradient 0.47 / 0.42 at d = 50 and 0.14 / 0.13 at
d = 200. With a ZeroGrads surrogate's ∇h as the guide (about as good as a
random direction; ``benchmarks/guided_zerograds.py``, 500 steps of 8
evaluations, memory 0.9, answer over plain smoothing's per seed 0-4):
digits_mlp (d = 35 152) 0.96, 1, 0.82, 1, 1 and caustic (d = 1 024) 0.99,
1, 0.96, 0.91, 0.99, against 1, 1, 1.19, 1.40, 1 and 0.97, 1, 1, 1, 1 with
equal weights for A. The corrected estimator does not adapt: its variance (tr Σ⁻¹ · m + 1)/n
is least at α = 1 for a good guide, so trust in the guide never pays there.

The guide is ``guide(theta) -> tensor [d]``, any callable, called once per
:meth:`GuidedSmoothing.ask` on a detached copy of θ (``[d]``) before the draws;
no evaluation is charged for it unless it calls the black box itself. The
last k guide vectors are kept as state. U spans them by direction alone (each
is normalised first, so a tiny guide counts as much as a large one); a zero
guide, or one in the span of the others, adds no direction (r < k), and with
none at all (r = 0) the kernel is N(0, σ²I), plain smoothing, whatever α.
One subspace per optimisation: θ must be ``[d]`` or ``[1, d]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from voidgrad.estimators.base import (
    check_random_offsets,
    check_theta,
    check_values,
)
from voidgrad.estimators.mirrored import (
    Mirrored,
    mirrored_context,
    mirrored_estimate,
    mirrored_points,
    mirrored_seeds,
)
from voidgrad.estimators.protocol import Estimate, Query
from voidgrad.estimators.samplers import gaussian
from voidgrad.estimators.scheduled import ScheduledSigma
from voidgrad.estimators.schedules import SigmaSchedule
from voidgrad.validation import (
    check_callable,
    check_flag,
    check_int,
    check_interval,
    check_samples,
    is_number,
)

Guide = Callable[[torch.Tensor], torch.Tensor]

#: How many evenly spaced values of α in [alpha_min, 1] the adaptive α is chosen among.
_ALPHA_GRID = 1000

#: The adaptive state's keys in the state dict (module doc): the moving averages A, B, the
#: variance of A, the inverse 1/k of B's degrees of freedom and A's total weight W.
_TRUST_KEYS = (
    "guide_parallel",
    "guide_orthogonal",
    "guide_parallel_variance",
    "guide_orthogonal_inverse_dof",
    "guide_parallel_weight",
)

#: What a fit reports in ``Estimate.stats`` for :meth:`GuidedSmoothing.update` (module doc).
_FIT_KEYS = (
    "guide_parallel",
    "guide_orthogonal",
    "guide_parallel_variance",
    "guide_residual_dof",
    "guide_parallel_weight",
)


@dataclass(frozen=True)
class GuidedContext(Mirrored):
    """A guided query's :class:`Mirrored` context, with what the adaptive α reads.

    Attributes:
        basis: Uᵀ ``[r, d]``, the subspace the offsets were drawn with.
        alpha: the α they were drawn with.
        share: ρ, the measured share of the gradient in the subspace; None
            before the first update or with a fixed α.
        bound: ρ₋, its lower confidence bound, which chose α; None with ``share``.
        fit: whether tell fits the regression of the module doc (``adapt``).
    """

    basis: torch.Tensor | None = None
    alpha: float = 1.0
    share: float | None = None
    bound: float | None = None
    fit: bool = False


class GuidedSmoothing(ScheduledSigma):
    """Gaussian smoothing stretched along the recent guide vectors (guided ES; module doc).

    Args:
        sigma: the kernel's scale σ: E‖ε‖² = σ²d, as for ``GaussianSmoothing``
            (the initial value if scheduled).
        samples: evaluations per estimate (even: antithetic pairs).
        guide: ``guide(theta) -> tensor [d]``, a direction believed close to
            the gradient (a differentiable twin's, a biased AD gradient),
            called on a detached copy of θ ``[d]`` once per estimate.
        subspace: k, how many of the last guide vectors span the subspace.
        alpha: α ∈ (0, 1], the share of the perturbation's variance kept
            isotropic; 1 is plain smoothing, smaller trusts the guide more.
            None: 0.5, or with ``adapt`` 1 (start from plain smoothing).
        correction: weight each perturbation by Σ⁻¹ε/σ² (unbiased for
            ∇Q_Σ, large variance off the subspace) instead of ε/σ² (Σ∇Q_Σ,
            the paper's guided ES).
        adapt: move α after each :meth:`update` to the value that suits a
            lower confidence bound of the measured share of the gradient in
            the guide subspace (module doc); ``alpha`` is then the first
            estimate's α. Needs ``correction=False`` and more pairs than
            ``subspace`` (samples ≥ 2·subspace + 2).
        alpha_min: with ``adapt``, the least α it may choose, in (0, 1]: the
            share of the variance always kept isotropic.
        memory: with ``adapt``, the weight in [0, 1) of the past in the
            moving averages of the fit (0: the last estimate alone).
        z: with ``adapt``, the width ≥ 0 of the confidence bound in standard
            deviations (module doc); larger leaves α = 1 later.
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
        >>> def twin_gradient(x):  # the gradient of the smooth twin, without the rounding
        ...     return 2 * (x - target)
        >>> est = vg.GuidedSmoothing(sigma=0.1, samples=8, guide=twin_gradient, alpha=0.1, seed=0)
        >>> theta = torch.zeros(50, requires_grad=True)
        >>> vg.blackbox(loss, est)(theta).backward()
        >>> cosine = torch.nn.functional.cosine_similarity(theta.grad, -target, dim=0)
        >>> bool(cosine > 0.9)  # 8 evaluations in 50 dimensions (plain smoothing: 0.26)
        True

        With ``adapt=True`` α starts at 1 and follows the measured quality of
        the guide; one that explains nothing leaves it at 1, plain smoothing:

        >>> noise = torch.Generator().manual_seed(0)
        >>> def useless(x):  # a random direction each call
        ...     return torch.randn(50, generator=noise)
        >>> est = vg.GuidedSmoothing(0.1, 8, useless, adapt=True, seed=0)
        >>> bb = vg.blackbox(loss, est)
        >>> alphas = []
        >>> for _ in range(20):
        ...     bb(theta).backward()
        ...     alphas.append(bb.last_estimate.stats["alpha"])
        >>> round(sum(alphas) / 20, 2)  # the mean α (the twin's gradient as the guide: 0.52)
        1.0
    """

    def __init__(
        self,
        sigma: float,
        samples: int,
        guide: Guide,
        subspace: int = 1,
        alpha: float | None = None,
        correction: bool = False,
        *,
        adapt: bool = False,
        alpha_min: float = 0.05,
        memory: float = 0.8,
        z: float = 2.0,
        schedule: SigmaSchedule | None = None,
        common_random_numbers: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(sigma, schedule, seed)
        self.samples = check_samples(samples, paired=True)
        self.guide: Guide = check_callable(
            "guide", guide, "guide(theta) -> tensor [d]", optional=False
        )
        self.subspace = check_int("subspace", subspace, 1)
        self.correction = check_flag("correction", correction)
        self.adapt = check_flag("adapt", adapt)
        if alpha is None:  # adapt starts from plain smoothing and leaves it on evidence alone
            alpha = 1.0 if self.adapt else 0.5
        self.alpha = check_interval("alpha", alpha, 0, 1, closed_high=True)
        self.alpha_min = check_interval("alpha_min", alpha_min, 0, 1, closed_high=True)
        self.memory = check_interval("memory", memory, 0, 1, closed_low=True)
        self.z = check_interval("z", z, 0, math.inf, closed_low=True)
        self.common_random_numbers = check_flag("common_random_numbers", common_random_numbers)
        if self.adapt:
            _check_adaptive(self)
        self.unbiased = self.correction
        # The last k guide vectors, [m ≤ k, d] in θ's dtype and device; [0, 0] before the first.
        self._guides = torch.zeros(0, 0)
        # adapt: A, B, Var(A), 1/k, W of the module doc and how many fits they hold.
        self._trust = (0.0, 0.0, 0.0, 0.0, 0.0)
        self._fits = 0

    def evaluations(self, dim: int) -> int:
        return self.samples

    @property
    def share(self) -> float | None:
        """ρ = A/(A + B) in [0, 1], the measured share of ‖∇F‖² in the guide subspace; None
        before the first update (or without ``adapt``)."""
        if not self._fits:
            return None
        parallel, orthogonal = self._trust[:2]
        total = parallel + orthogonal
        return min(max(parallel / total, 0.0), 1.0) if total > 0 else 0.0

    @property
    def share_bound(self) -> float | None:
        """ρ₋ = A₋/(A₋ + B⁺) in [0, 1], the lower confidence bound of ρ that chooses α (module
        doc); None before the first update (or without ``adapt``)."""
        if not self._fits:
            return None
        parallel, orthogonal, variance, inverse_dof, _ = self._trust
        low = parallel - self.z * math.sqrt(variance)
        # Wilson–Hilferty: the z-lower quantile of χ²_k/k is about (1 − c − z√c)³, c = 2/(9k).
        c = 2 * inverse_dof / 9
        base = 1 - c - self.z * math.sqrt(c)
        if low <= 0 or base <= 0:
            return 0.0  # no evidence yet that the subspace holds any of the gradient
        return low / (low + orthogonal / base**3)

    def update(self, estimate: Estimate) -> None:
        """With ``adapt``, fold the estimate's fit into the moving averages that choose α
        (module doc)."""
        fit = [value for key in _FIT_KEYS if (value := estimate.stats.get(key)) is not None]
        if not self.adapt or len(fit) < len(_FIT_KEYS):
            return  # nothing to learn: a fixed α, or no fit (too few pairs, a flat F)
        parallel, orthogonal, variance, dof, weight = fit
        mean_a, mean_b, variance_a, inverse_dof, total = self._trust
        # B: weights μ^(t−j) normalised to sum 1; the past keeps μW/(μW + 1) of them, with
        # μW = μ(1 − μ^t)/(1 − μ), the past's weights before normalising (t fits so far).
        memory = self.memory
        past = memory * (1 - memory**self._fits) / (1 - memory)
        keep, new = past / (past + 1), 1 / (past + 1)
        # A: weights μ^(t−j) w_j, w_j the fit's precision at h = 0, so a fit drawn at a small
        # α (a far more precise one) outweighs the noisy ones at α = 1 that came before it.
        past_a = memory * total
        keep_a, new_a = past_a / (past_a + weight), weight / (past_a + weight)
        self._trust = (
            keep_a * mean_a + new_a * parallel,
            keep * mean_b + new * orthogonal,
            keep_a * keep_a * variance_a + new_a * new_a * variance,
            keep * keep * inverse_dof + new * new / dof,
            past_a + weight,
        )
        self._fits += 1

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "guides": self._guides.clone()}
        if self.adapt:
            state.update(zip(_TRUST_KEYS, self._trust, strict=True), fits=self._fits)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        guides = state["guides"]
        if (
            not isinstance(guides, torch.Tensor)
            or not guides.is_floating_point()
            or guides.ndim != 2
            or guides.shape[0] > self.subspace
            or not bool(torch.isfinite(guides).all())
        ):
            got = tuple(guides.shape) if isinstance(guides, torch.Tensor) else guides
            raise ValueError(
                "the estimator's state holds no guide history (a finite floating tensor "
                f"[m, d] with m <= subspace = {self.subspace}); got {got!r}"
            )
        trust = self._check_trust(state) if self.adapt else self._trust
        super().load_state_dict(state)
        self._guides = guides.clone()
        if self.adapt:
            self._trust, self._fits = trust, state["fits"]

    def _check_trust(self, state: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
        """A, B, Var(A), 1/k, W of ``state``, refused unless finite numbers (the last three
        ≥ 0) with a count."""
        values = [state.get(key) for key in _TRUST_KEYS]
        fits = state.get("fits")
        if (
            not all(is_number(value) and math.isfinite(value) for value in values)  # type: ignore[arg-type]
            or not all(value >= 0 for value in values[2:])  # type: ignore[operator]
            or not (isinstance(fits, int) and not isinstance(fits, bool) and fits >= 0)
        ):
            raise ValueError(
                "the estimator's state holds no adaptive trust (finite numbers "
                f"{', '.join(_TRUST_KEYS)}, the last three >= 0, and a count fits >= 0), as "
                "adapt=True needs; got "
                f"{(*values, fits)!r}"
            )
        a, b, variance, inverse_dof, weight = (float(value) for value in values)  # type: ignore[arg-type]
        return a, b, variance, inverse_dof, weight

    def ask(self, params: torch.Tensor, *args: object) -> Query:
        """Call the guide at θ = ``params`` (``[1, d]``), then the points θ ± ε_i:
        ``[1, samples, d]``."""
        theta = check_theta(params)
        if theta.shape[0] != 1:
            raise ValueError(
                "GuidedSmoothing keeps one guide subspace per optimization: theta must be [d] "
                f"or [1, d]; got {tuple(theta.shape)}"
            )
        d = theta.shape[1]
        basis = self._record(theta)
        r = basis.shape[0]
        n = self.samples // 2
        sigma = self.sigma
        wide = torch.promote_types(theta.dtype, torch.float32)
        # With no direction Σ = I; otherwise the isotropic and subspace scales of the module doc.
        share, bound = self.share, self.share_bound
        if not r:
            alpha = 1.0
        elif bound is None:
            alpha = self.alpha
        else:
            alpha = optimal_alpha(bound, d, r, n, self.alpha_min)
        iso = gaussian(self._generator, (1, n, d), sigma * math.sqrt(alpha), theta.dtype)
        offsets = iso.to(theta.device)
        if alpha < 1:
            # ζ is drawn k wide whatever r is, so that the stream does not depend on the guide's
            # rank; at α = 1 not at all, so that it is plain smoothing's while α stays 1.
            sub = sigma * math.sqrt((1 - alpha) * d / r)
            zeta = gaussian(self._generator, (1, n, self.subspace), sub, theta.dtype)
            along = zeta[..., :r].to(device=theta.device, dtype=wide) @ basis
            offsets = offsets + along.to(theta.dtype)
        seeds = mirrored_seeds(self, 1, n, True, self.common_random_numbers)
        check_random_offsets(self.sigma_label, sigma, theta, offsets)
        weights = None
        if self.correction and r:
            # Σ⁻¹x = x/α + (c − 1/α) P x, c = 1/(α + (1 − α)d/r), for x = ε/σ, then /σ: σ² would
            # underflow for a tiny σ. At α = 1, c − 1/α = 0 and the weights are smoothing's.
            scaled = offsets.to(wide) / sigma
            shrink = 1 / (alpha + (1 - alpha) * d / r) - 1 / alpha
            inverse = scaled / alpha + shrink * ((scaled @ basis.mT) @ basis)
            weights = inverse.mul_(1 / sigma)
        context = GuidedContext(
            theta,
            offsets,
            True,
            1 / sigma,
            unit=sigma,
            weights=weights,
            basis=basis,
            alpha=alpha,
            share=share,
            bound=bound,
            fit=self.adapt,
        )
        return Query(inputs=mirrored_points(context), seeds=seeds, context=context)

    def tell(self, query: Query, values: torch.Tensor) -> Estimate:
        """The mean of F over the points, and the guided VJP (module doc); trains nothing.

        ``stats``: ``"alpha"``, the α of the offsets; with ``adapt``, ``"guide_share"``
        and ``"guide_share_bound"`` (ρ and ρ₋, once known) and the fit (when the valid pairs
        outnumber r and F varied): ``"guide_parallel"``, ``"guide_orthogonal"``,
        ``"guide_parallel_variance"`` (its v), ``"guide_residual_dof"`` (n − r) and
        ``"guide_parallel_weight"`` (ω, its precision at h = 0).
        """
        context = mirrored_context(query)
        values = check_values(query, values)
        estimate = mirrored_estimate(context, values)
        if isinstance(context, GuidedContext):
            estimate.stats["alpha"] = context.alpha
            if context.share is not None and context.bound is not None:
                estimate.stats["guide_share"] = context.share
                estimate.stats["guide_share_bound"] = context.bound
            if context.fit and context.basis is not None:
                estimate.stats.update(fit_subspace(context, values))
        return estimate

    def _record(self, theta: torch.Tensor) -> torch.Tensor:
        """Call the guide at ``theta`` (``[1, d]``), keep the last k vectors; U ᵀ ``[r, d]``."""
        d = theta.shape[1]
        guides = self._guides.to(device=theta.device, dtype=theta.dtype)
        if guides.numel() == 0:
            guides = guides.new_zeros((0, d))
        elif guides.shape[1] != d:
            raise ValueError(
                f"theta has {d} parameters but the guide history holds vectors of "
                f"{guides.shape[1]}: use one GuidedSmoothing per optimization"
            )
        vector = check_guide(self.guide(theta[0].detach().clone()), theta)
        self._guides = torch.cat([guides, vector.unsqueeze(0)])[-self.subspace :]
        return orthonormal_span(self._guides, torch.promote_types(theta.dtype, torch.float32))

    def __repr__(self) -> str:
        name = getattr(self.guide, "__qualname__", type(self.guide).__name__)
        return (
            f"GuidedSmoothing(sigma={self.sigma0}, samples={self.samples}, guide={name}, "
            f"subspace={self.subspace}, alpha={self.alpha}, correction={self.correction}"
            + (
                f", adapt=True, alpha_min={self.alpha_min}, memory={self.memory}, z={self.z}"
                if self.adapt
                else ""
            )
            + ("" if self.schedule is None else f", schedule={self.schedule!r}")
            + (", common_random_numbers=True" if self.common_random_numbers else "")
            + ")"
        )


def _check_adaptive(estimator: GuidedSmoothing) -> None:
    """Refuse ``adapt=True`` where it cannot work (module doc), naming what to change."""
    if estimator.correction:
        raise ValueError(
            "adapt=True needs correction=False: the corrected estimator's variance is least at "
            "alpha = 1 for a good guide, so adapting alpha cannot pay; got correction=True"
        )
    if estimator.samples // 2 <= estimator.subspace:
        raise ValueError(
            "adapt=True regresses the pairs' differences on the subspace: samples must give "
            f"more pairs than subspace = {estimator.subspace} (samples >= "
            f"{2 * estimator.subspace + 2}); got samples={estimator.samples}"
        )
    if estimator.alpha < estimator.alpha_min:
        raise ValueError(
            f"alpha, the first estimate's alpha with adapt=True, must lie in [alpha_min, 1] = "
            f"[{estimator.alpha_min:g}, 1]; got {estimator.alpha!r}"
        )


def fit_subspace(context: GuidedContext, values: torch.Tensor) -> dict[str, float]:
    r"""The regression of the module doc: estimates of ‖P∇F‖² and ‖(I − P)∇F‖².

    ``values`` ``[1, 2n, *out]``; pairs with a non-finite value are left out.
    Empty (no fit) unless the valid pairs outnumber the subspace's rank
    r ≥ 1 and some y_i ≠ 0 (F flat there: nothing to learn). Computed in
    float64, as the numbers go to ``stats``.
    """
    assert context.basis is not None
    r = context.basis.shape[0]
    wide = torch.float64
    flat = values.reshape(values.shape[1], -1).to(wide)
    plus, minus = flat.chunk(2)
    valid = torch.isfinite(plus).all(1) & torch.isfinite(minus).all(1)
    n = int(valid.sum())
    sigma = context.unit
    y = (plus[valid] - minus[valid]) / (2 * sigma)  # [n, outputs]
    if r == 0 or n <= r or not bool(y.any()):
        return {}
    offsets = context.offsets
    assert isinstance(offsets, torch.Tensor)  # drawn by ask, never regenerated
    x = (offsets[0, valid].to(wide) / sigma) @ context.basis.to(wide).mT  # [n, r]
    gram = x.mT @ x
    coefficients = torch.linalg.solve(gram, x.mT @ y)  # ĥ, [r, outputs]
    noise = (y - x @ coefficients).pow(2).sum() / (n - r)  # estimates α‖(I − P)∇F‖²
    inverse = torch.linalg.inv(gram)
    trace = inverse.diagonal().sum()
    # Var(‖ĥ‖²) = 2s⁴ tr(G⁻²) + 4s² hᵀG⁻¹h and Var(tr(G⁻¹) ŝ²) = 2s⁴ tr(G⁻¹)²/(n − r).
    spread = (coefficients * (inverse @ coefficients)).sum()
    design = inverse.pow(2).sum() + trace**2 / (n - r)
    variance = 2 * noise**2 * design + 4 * noise * spread
    return {
        "guide_parallel": float(coefficients.pow(2).sum() - trace * noise),
        "guide_orthogonal": float(noise / context.alpha),
        "guide_parallel_variance": float(variance),
        "guide_residual_dof": float(n - r),
        # 1/Var at h = 0 per unit ‖(I − P)∇F‖⁴: a function of the draws alone, never of y.
        "guide_parallel_weight": float(1 / (2 * context.alpha**2 * design)),
    }


def optimal_alpha(share: float, d: int, r: int, n: int, alpha_min: float) -> float:
    """The α in [alpha_min, 1] that maximises R(α) = n m²/((n + 1) q + d m) (module doc).

    ``share`` is ρ, d the dimension, r ≥ 1 the subspace's rank, n the pairs;
    among 1 001 evenly spaced values, the largest on a tie.
    """
    stretch = d / r
    best, best_ratio = 1.0, -math.inf
    for step in range(_ALPHA_GRID, -1, -1):
        alpha = alpha_min + (1 - alpha_min) * step / _ALPHA_GRID
        along = alpha + (1 - alpha) * stretch  # b, the variance along the subspace
        m = alpha * (1 - share) + along * share
        q = alpha * alpha * (1 - share) + along * along * share
        ratio = n * m * m / ((n + 1) * q + d * m)
        if ratio > best_ratio:
            best, best_ratio = alpha, ratio
    return best


def check_guide(vector: object, theta: torch.Tensor) -> torch.Tensor:
    """The guide's output as a detached tensor ``[d]`` in θ's dtype and device, or an error
    naming ``guide`` unless it is a finite real tensor of that shape."""
    d = theta.shape[1]
    if not isinstance(vector, torch.Tensor) or vector.dtype == torch.bool or vector.is_complex():
        got = f"a {vector.dtype} tensor" if isinstance(vector, torch.Tensor) else type(vector)
        raise TypeError(f"guide must return a real tensor of shape [d] = [{d}]; got {got}")
    if tuple(vector.shape) != (d,):
        raise ValueError(
            f"guide must return a tensor of shape [d] = [{d}]; got shape {tuple(vector.shape)}"
        )
    vector = vector.detach().to(device=theta.device, dtype=theta.dtype)
    if not bool(torch.isfinite(vector).all()):
        raise ValueError(
            f"guide must return finite values; got {int((~torch.isfinite(vector)).sum())} "
            f"NaN or infinite of {d} (in theta's dtype {str(theta.dtype).removeprefix('torch.')})"
        )
    return vector


def orthonormal_span(vectors: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Uᵀ ``[r, d]``: an orthonormal basis of the directions of ``vectors`` (``[m, d]``).

    Computed in ``dtype`` (at least float32: LAPACK has no half precision).
    Each vector is normalised first (a zero one dropped), so that the span
    does not depend on their lengths; r is the numerical rank of the
    normalised stack (singular values above max(m, d)·eps times the largest,
    as ``torch.linalg.matrix_rank``), so a repeated or dependent direction is
    counted once.
    """
    rows = vectors.to(dtype)
    # Divide by the largest entry before the norm, so that the norm cannot overflow.
    peak = rows.abs().amax(1, keepdim=True)
    nonzero = peak.squeeze(1) > 0
    rows = rows[nonzero] / peak[nonzero]
    rows = rows / rows.norm(dim=1, keepdim=True)
    if rows.shape[0] == 0:
        return rows
    _, singular, right = torch.linalg.svd(rows, full_matrices=False)
    tolerance = singular[0] * max(rows.shape) * torch.finfo(dtype).eps
    return right[singular > tolerance]
