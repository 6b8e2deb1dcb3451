r"""Simultaneous perturbation stochastic approximation (SPSA).

With Rademacher directions Δ_i ∈ {−1, +1}^d and perturbation size c,

    ĝ = (1/n) Σ_i [F(θ + cΔ_i) − F(θ − cΔ_i)] / (2c) · Δ_i^{-1},

where Δ_i^{-1} = Δ_i elementwise. Each direction costs two evaluations, so an
estimate with ``samples`` evaluations averages n = samples/2 directions. For
vector outputs F is replaced by ⟨v, F⟩ (a vector-Jacobian product).

The 2c of coordinate k is the step actually taken, 2c̃_k = (θ_k + c) − (θ_k − c)
in θ's dtype (the same for Δ_ik = ±1, since both signs evaluate the same two
values of θ_k), so a linear F is still estimated without bias where the dtype
rounds θ_k ± c (float16, or float32 at large |θ_k|). Where c is below the
resolution at θ_k, c̃_k = 0, that coordinate's estimate is 0 and a
:class:`~voidgrad.errors.NumericalWarning` says so.

Bias: unbiased for ∇F when F is linear (and for quadratic F: the even part
cancels in the difference and E[Δ_iΔ_j] = δ_ij); O(c²) otherwise. The value is
the mean of F over the 2n points, F(θ) + O(c²).
"""

from __future__ import annotations

import torch

from voidgrad.estimators.base import (
    BlackBoxEstimator,
    check_representable,
    check_theta,
    check_values,
    warn_unresolved,
)
from voidgrad.estimators.mirrored import (
    Mirrored,
    mirrored_context,
    mirrored_estimate,
    mirrored_points,
    mirrored_seeds,
)
from voidgrad.estimators.protocol import Estimate, Query
from voidgrad.estimators.samplers import rademacher
from voidgrad.estimators.sparsity import as_sparsity, sparsity_repr
from voidgrad.validation import check_flag, check_positive, check_samples


class SPSA(BlackBoxEstimator):
    """SPSA gradient estimator with Rademacher directions.

    Args:
        c: perturbation size.
        samples: evaluations per estimate (even; two per direction).
        common_random_numbers: give both points of a pair the same seed.
        jac_sparsity: which outputs of F depend on which parameters, an
            ``[outputs, d]`` pattern, as for
            :class:`~voidgrad.estimators.smoothing.GaussianSmoothing`.
        seed: seed of the estimator's generator, for bit-exact replay.

    Examples:
        >>> import torch, voidgrad as vg
        >>> weights = torch.tensor([1.0, -2.0, 3.0])
        >>> bb = vg.blackbox(lambda x: float(x @ weights), vg.SPSA(c=0.1, samples=2000, seed=0))
        >>> theta = torch.zeros(3, requires_grad=True)
        >>> bb(theta).backward()  # 1000 random ±1 directions, two evaluations each
        >>> [round(g) for g in theta.grad.tolist()]
        [1, -2, 3]
    """

    def __init__(
        self,
        c: float,
        samples: int = 2,
        *,
        common_random_numbers: bool = False,
        jac_sparsity: object = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        self.c = check_positive("c", c)
        self.jac_sparsity = as_sparsity(jac_sparsity)
        self.samples = check_samples(samples, paired=True)
        self.common_random_numbers = check_flag("common_random_numbers", common_random_numbers)

    def ask(self, params: torch.Tensor, *args: object) -> Query:
        """The points θ ± cΔ_i for θ = ``params`` (``[B, d]``): ``[B, samples, d]``."""
        theta = check_theta(params)
        B, d = theta.shape
        n = self.samples // 2
        offsets = rademacher((B, n, d), self._generator, theta.dtype).mul_(self.c)
        offsets = offsets.to(theta.device)
        seeds = mirrored_seeds(self, B, n, True, self.common_random_numbers)
        # c as the dtype holds it (every offset is ±c), and c̃ = half the step actually taken.
        c = offsets.reshape(-1)[:1].abs()
        upper, lower = theta + c, theta - c
        taken = upper - lower
        check_representable("c", self.c, theta, upper, lower, taken)
        lost = taken == 0
        warn_unresolved("c", self.c, theta, lost, lost)
        # W_k = Δ_k/c̃_k = sign(offsets)·2/(2c̃_k), so that (1/2n) Σ W (F⁺ − F⁻) is the SPSA
        # average; a lost coordinate gets weight 0 rather than 1/0.
        wide = taken.to(torch.promote_types(taken.dtype, torch.float32))
        scale = torch.where(lost, 0.0, 2 / torch.where(lost, 1.0, wide))
        context = Mirrored(
            theta, offsets, True, scale, sign_weights=True, sparsity=self.jac_sparsity
        )
        return Query(inputs=mirrored_points(context), seeds=seeds, context=context)

    def tell(self, query: Query, values: torch.Tensor) -> Estimate:
        """The mean of F over the points, and the SPSA VJP (module doc); trains nothing."""
        return mirrored_estimate(mirrored_context(query), check_values(query, values))

    def evaluations(self, dim: int) -> int:
        return self.samples

    def __repr__(self) -> str:
        return f"SPSA(c={self.c}, samples={self.samples}{sparsity_repr(self.jac_sparsity)})"
