r"""Gaussian smoothing (PRDPT / evolution strategies) of a black box F.

The smoothed objective convolves F with a Gaussian kernel κ = N(0, σ²I),

    Q(θ) = κ⋆F(θ) = E_{τ~κ}[F(θ + τ)],

which has no plateaus wherever F varies within a few σ. Its gradient is the
score-function estimator of E_{z~N(θ,σ²I)}[F(z)]:

    ∇Q(θ) = E_{τ~κ}[(τ/σ²) F(θ + τ)].                                   (plain)

PRDPT importance-samples the derivative kernel instead. In each dimension k
τ_k is drawn ∝ |∂κ/∂τ_k|, i.e. a random sign times a Rayleigh(σ) magnitude,

    τ_k = s_k σ sqrt(−2 ln u_k),   s_k = ±1,  u_k ~ U(0, 1),

and the weight ∂_kκ / q becomes the constant magnitude sqrt(2/π)/σ:

    ĝ_k = (1/n) Σ_i sign(τ_ik) sqrt(2/π)/σ · F(θ + τ_i).               (importance)

With antithetic pairs (τ, −τ) both become central differences,

    ĝ = (1/2n) Σ_i W_i [F(θ + τ_i) − F(θ − τ_i)],

with W_i = τ_i/σ² (plain) or sign(τ_i) sqrt(2/π)/σ (importance); constant and
even parts of F cancel exactly. For vector outputs, F is replaced by ⟨v, F⟩ for
the incoming gradient v, giving the vector-Jacobian product of Q.

The plain estimator is :func:`voidgrad.estimators.control.score_estimate`
with scores s_i = ε_i/σ² and c = 0, read out by the shared mirrored read-out
(:mod:`voidgrad.estimators.mirrored`, which also drops failed directions).

Bias: the plain estimator is unbiased for ∇(κ⋆F). The importance estimator
is unbiased for the gradient of F smoothed with the per-dimension kernel
κ_k ⊗ Π_{j≠k} q_j (PRDPT's code does the same: the off-dimensions are drawn
from the Rayleigh-shaped q, not κ). Both kernels are symmetric, so for a
quadratic F both estimators are unbiased for the true gradient ∇F(θ).

Orthogonal directions (``directions="orthogonal"``, plain kernel only;
Choromanski et al. 2018). The n directions of an estimate are drawn
orthogonal in blocks of min(n, d), each rescaled to a χ(d) length
(:func:`~voidgrad.estimators.samplers.orthogonal_gaussian`); with
``antithetic`` they are the antithetic-orthogonal pairs ±τ_i. Each τ_i is
still N(0, σ²I), so the estimator stays unbiased. Its per-direction terms
h_i = W_i δF_i are parallel to τ_i, so two from one block are orthogonal and
their cross term E[h_i · h_j] = ‖∇Q‖² of the i.i.d. draw becomes 0:

    tr Cov(ĝ_orth) = tr Cov(ĝ_iid) − (P/n²) ‖∇Q‖²,

P the number of ordered pairs of directions sharing a block (n(n − 1) for
n ≤ d). For n ≤ d that is (E‖h‖² − n‖∇Q‖²)/n against (E‖h‖² − ‖∇Q‖²)/n: on
a quadratic, antithetic, E‖h‖² = (d + 2)‖∇F‖², a ratio i.i.d./orthogonal of
(d + 1)/(d + 2 − n), from 1 + O(n/d) for few directions to (d + 1)/2 at
n = d (and for every n that is a multiple of d). The variance the estimate
reports (from the spread of its own per-direction terms, as if they were
independent) is then too large, by P/(n(n − 1)) ‖∇Q‖² ≤ ‖∇Q‖² in
expectation: conservative. With ``jac_sparsity`` the credited terms are no
longer parallel to τ_i and keep part of their cross terms, so the gain is
smaller; the estimate stays unbiased. The importance kernel draws each
coordinate's magnitude on its own (a Rayleigh), a law no rotation preserves,
so it takes i.i.d. directions only.

Memory. Stored, an estimate holds the offsets ``[B, n, d]``, the points
``[B, M, d]`` and, in the backward pass, the weights ``[B, n, d]``: about
(2.5 M + 1) d numbers beyond θ for M samples. With ``regenerate=True`` it
holds one seed per direction instead and draws each τ_i again when it is
needed (:mod:`~voidgrad.estimators.regenerated`): :func:`voidgrad.blackbox`
then evaluates the points a chunk at a time (one row per worker of the
evaluator's backend) and the VJP is accumulated direction by direction, so
the peak is the estimate ``[B, d]`` plus a few ``[d]`` tensors and a chunk of
points, whatever M. Each τ_i is then drawn three times (two points and the
read-out, antithetic) instead of once, from its own generator on θ's device,
so the estimates differ from the stored ones in their draws, not in their law.
Measured (``benchmarks/regenerated_memory.py``: one Adam step through
``vg.blackbox`` on a scalar F, float32, serial backend, 8 samples), a step
adds to the memory of θ, its gradient and Adam's moments: at d = 10⁷, 78
bytes per parameter stored and 24 regenerated; at d = 10⁸, 7.1 GB stored
(peak 9.8 GB) and 1.9 GB regenerated (peak 4.5 GB), in about the same time.

The returned value is the mean of F over all evaluated points, an unbiased
estimate of F smoothed by the sampling kernel (κ itself when
``importance=False``).

Resolution. θ ± τ is rounded to θ's dtype, and the weights use the τ that was
drawn, not the rounded step: the rounding error varies from draw to draw and
averages out (it dithers), so the estimate stays unbiased for a linear F
down to σ ≈ half the spacing s_k of floats at θ_k (measured: 0.98 at σ = s/2,
1.000 at σ = s, where weights from the rounded steps would give 1.02 and
1.08). Below s_k/2 most points round to θ and the estimate shrinks toward 0
(0.43 at σ = s/4, exactly 0 once every point equals θ): there a
:class:`~voidgrad.errors.NumericalWarning` names sigma.
"""

from __future__ import annotations

import math

import torch

from voidgrad.estimators.base import (
    check_offset_reach,
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
from voidgrad.estimators.regenerated import SeededOffsets
from voidgrad.estimators.samplers import gaussian, importance_gaussian, orthogonal_gaussian
from voidgrad.estimators.scheduled import ScheduledSigma
from voidgrad.estimators.schedules import SigmaSchedule
from voidgrad.estimators.sparsity import as_sparsity, sparsity_repr
from voidgrad.validation import check_flag, check_samples

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

#: The plain kernel's direction samplers, by the name ``directions`` takes.
_DIRECTIONS = {"iid": gaussian, "orthogonal": orthogonal_gaussian}


class GaussianSmoothing(ScheduledSigma):
    """Gaussian smoothing of a black box: value and gradient of κ⋆F (PRDPT, ES).

    Args:
        sigma: the kernel's standard deviation σ (initial value if scheduled).
        samples: evaluations per estimate; even when ``antithetic``.
        antithetic: evaluate each perturbation τ together with −τ.
        importance: PRDPT's importance-sampled derivative kernel; ``False``
            gives the plain Gaussian (ES) estimator.
        schedule: maps (σ_0, step) to σ; ``None`` keeps σ constant. Advance it
            with ``step()`` once per optimisation step
            (:meth:`~voidgrad.estimators.scheduled.ScheduledSigma.step`).
        common_random_numbers: give both points of an antithetic pair the same
            seed (when F accepts a ``seed``), so a noisy F's noise cancels in
            their difference.
        jac_sparsity: which outputs of F depend on which parameters, an
            ``[outputs, d]`` pattern (torch sparse, dense bool or
            ``scipy.sparse``; :mod:`~voidgrad.estimators.sparsity`): each
            parameter is credited only with the outputs that depend on it, so
            the variance grows with the parameters per output, not with d. An
            output with an empty row gets no credit. None: every output
            depends on every parameter.
        directions: ``"iid"`` (independent Gaussian offsets) or
            ``"orthogonal"``: offsets orthogonal in blocks of min(n, d) with
            χ(d) lengths (module doc), still unbiased, with a lower variance
            that matters when the directions per estimate approach d. Needs
            ``importance=False``; with ``antithetic``, antithetic-orthogonal.
        regenerate: keep a seed per direction instead of the offsets, and
            draw them again when needed: O(d) memory whatever ``samples``, at
            three draws per direction instead of one (module doc, "Memory").
            Takes i.i.d. directions only (an orthogonal block is drawn whole).
        seed: seed of the estimator's generator, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> schedule = vg.LinearAnneal(sigma_min=0.01, total_steps=100)
        >>> est = vg.GaussianSmoothing(sigma=0.1, samples=256, schedule=schedule, seed=0)
        >>> bb = vg.blackbox(lambda x: float((x**2).sum()), est)
        >>> theta = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> bb(theta).backward()
        >>> [round(g) for g in theta.grad.tolist()]  # ∇(x²) = 2x
        [2, -4]
        >>> est.step()  # once per optimisation step: σ follows the anneal
        >>> round(est.sigma, 4)
        0.0991
    """

    unbiased = True

    def __init__(
        self,
        sigma: float,
        samples: int,
        antithetic: bool = True,
        importance: bool = True,
        schedule: SigmaSchedule | None = None,
        *,
        common_random_numbers: bool = False,
        jac_sparsity: object = None,
        directions: str = "iid",
        regenerate: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(sigma, schedule, seed)
        self.jac_sparsity = as_sparsity(jac_sparsity)
        self.antithetic = check_flag("antithetic", antithetic)
        self.samples = check_samples(samples, paired=self.antithetic)
        self.importance = check_flag("importance", importance)
        self.directions = _check_directions(directions, self.importance)
        self.regenerate = check_flag("regenerate", regenerate)
        if self.regenerate and self.directions != "iid":
            raise ValueError(
                f"regenerate=True needs directions='iid': an orthogonal block is drawn whole, "
                f"not one direction at a time; got directions={self.directions!r}"
            )
        self.common_random_numbers = check_flag("common_random_numbers", common_random_numbers)

    def evaluations(self, dim: int) -> int:
        return self.samples

    def ask(self, params: torch.Tensor, *args: object) -> Query:
        """The points θ ± τ_i (or θ + τ_i) for θ = ``params`` (``[B, d]``): ``[B, samples, d]``."""
        theta = check_theta(params)
        B, d = theta.shape
        n = self.samples // 2 if self.antithetic else self.samples
        sigma = self.sigma
        offsets: torch.Tensor | SeededOffsets
        if self.regenerate:
            offsets = SeededOffsets(
                torch.randint(0, 2**62, (B, n), generator=self._generator),
                d,
                sigma,
                "importance" if self.importance else "gaussian",
                theta.dtype,
                theta.device,
            )
            # A tensor of the bound in θ's dtype (inf where it overflows), as wide as θ.
            reach = torch.tensor(offsets.reach(), dtype=theta.dtype, device=theta.device)
            reach = reach.expand_as(theta)
        else:
            draw = importance_gaussian if self.importance else _DIRECTIONS[self.directions]
            offsets = draw(self._generator, (B, n, d), sigma, theta.dtype).to(theta.device)
            reach = offsets.abs().amax(1)
        seeds = mirrored_seeds(self, B, n, self.antithetic, self.common_random_numbers)
        check_offset_reach(self.sigma_label, sigma, theta, reach)
        if self.importance:  # W = sign(τ) sqrt(2/π)/σ
            context = Mirrored(
                theta,
                offsets,
                self.antithetic,
                _SQRT_2_OVER_PI / sigma,
                sign_weights=True,
                sparsity=self.jac_sparsity,
            )
        else:  # W = τ/σ² = (τ/σ)(1/σ): σ² would underflow for σ < 1e-154
            context = Mirrored(
                theta, offsets, self.antithetic, 1 / sigma, unit=sigma, sparsity=self.jac_sparsity
            )
        return Query(inputs=mirrored_points(context), seeds=seeds, context=context)

    def tell(self, query: Query, values: torch.Tensor) -> Estimate:
        """The mean of F over the points, and the smoothing VJP (module doc); trains nothing."""
        return mirrored_estimate(mirrored_context(query), check_values(query, values))

    def __repr__(self) -> str:
        return (
            f"GaussianSmoothing(sigma={self.sigma0}, samples={self.samples}, "
            f"antithetic={self.antithetic}, importance={self.importance}, "
            f"schedule={self.schedule!r}{sparsity_repr(self.jac_sparsity)}"
            f"{'' if self.directions == 'iid' else f', directions={self.directions!r}'}"
            f"{', regenerate=True' if self.regenerate else ''})"
        )


def _check_directions(directions: object, importance: bool) -> str:
    """``directions``, refused unless a name in ``_DIRECTIONS`` that the kernel supports."""
    if not isinstance(directions, str) or directions not in _DIRECTIONS:
        raise ValueError(f"directions must be one of {sorted(_DIRECTIONS)}; got {directions!r}")
    if directions != "iid" and importance:
        raise ValueError(
            f"directions={directions!r} needs importance=False: the importance kernel draws "
            "each coordinate's magnitude on its own (a Rayleigh), which no rotation preserves; "
            "got importance=True"
        )
    return directions
