r"""Simultaneous perturbation stochastic approximation (SPSA).

With Rademacher directions Δ_i ∈ {−1, +1}^d and perturbation size c,

    ĝ = (1/n) Σ_i [F(θ + cΔ_i) − F(θ − cΔ_i)] / (2c) · Δ_i^{-1},

where Δ_i^{-1} = Δ_i elementwise. Each direction costs two evaluations, so an
estimate with ``samples`` evaluations averages n = samples/2 directions. For
vector outputs F is replaced by ⟨v, F⟩ (a vector-Jacobian product).

Bias: unbiased for ∇F when F is linear (and for quadratic F: the even part
cancels in the difference and E[Δ_iΔ_j] = δ_ij); O(c²) otherwise. The value is
the mean of F over the 2n points, F(θ) + O(c²).
"""

from __future__ import annotations

import torch

from voidgrad.estimators.base import (
    BlackBoxEstimator,
    MirroredProbe,
    check_positive,
    check_samples,
)


class SPSA(BlackBoxEstimator):
    """SPSA gradient estimator with Rademacher directions.

    Args:
        c: perturbation size.
        samples: evaluations per estimate (even; two per direction).
        common_random_numbers: give both points of a pair the same seed.
        seed: seed of the estimator's generator, for bit-exact replay.
    """

    def __init__(
        self,
        c: float,
        samples: int = 2,
        *,
        common_random_numbers: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        self.c = check_positive("c", c)
        self.samples = check_samples(samples, paired=True)
        self.common_random_numbers = bool(common_random_numbers)

    def probe(self, theta: torch.Tensor) -> MirroredProbe:
        B, d = theta.shape
        n = self.samples // 2
        delta = torch.randint(0, 2, (B, n, d), generator=self._generator).to(theta.dtype)
        delta = delta.mul_(2).sub_(1)
        seeds = self._draw_mirrored_seeds(B, n, True, self.common_random_numbers)
        delta = delta.to(theta.device)
        return MirroredProbe(theta, self.c * delta, delta / self.c, seeds, antithetic=True)

    def __repr__(self) -> str:
        return f"SPSA(c={self.c}, samples={self.samples})"
