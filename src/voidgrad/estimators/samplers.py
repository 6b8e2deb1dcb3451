"""The random draws the estimators share, each from a generator the caller passes.

Black-box estimators draw offsets τ around θ (Gaussian, PRDPT's importance
kernel, Rademacher signs); relaxed and discrete estimators draw uniforms and
Gumbel noise. Antithetic pairs are formed by the estimator that uses them
(θ ± τ), so the draws here are plain. Every function takes a
``torch.Generator`` so that a seeded estimator replays bit for bit.
"""

from __future__ import annotations

import math

import torch


def gaussian(
    generator: torch.Generator, shape: tuple[int, ...], sigma: float, dtype: torch.dtype
) -> torch.Tensor:
    """τ = σε with ε ~ N(0, I): ``shape`` draws of Gaussian noise of scale ``sigma``."""
    return torch.randn(shape, generator=generator, dtype=dtype).mul_(sigma)


def importance_gaussian(
    generator: torch.Generator, shape: tuple[int, int, int], sigma: float, dtype: torch.dtype
) -> torch.Tensor:
    """PRDPT's importance-sampled offsets: τ ∝ |∂κ/∂τ| per dimension.

    From one uniform c ~ U(−1, 1) per entry: τ = sign(c) σ sqrt(−2 ln(1 − |c|)).
    """
    c = torch.rand(shape, generator=generator, dtype=dtype).mul_(2).sub_(1)
    # 1 − |c| = 2 min(u, 1 − u) is uniform on (0, 1]; clamp the measure-zero u = 0.
    magnitude = c.abs().neg_().log1p_().clamp_min_(math.log(torch.finfo(dtype).tiny))
    magnitude.mul_(-2).sqrt_().mul_(sigma)
    # c = 0 gives τ = +0 with weight 0, as sign(c) would.
    return magnitude.copysign_(c)


_BIT_SHIFTS = torch.arange(8, dtype=torch.uint8)


def rademacher(
    shape: tuple[int, int, int], generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """Independent ±1 entries, eight from each random byte (a third of the cost of randint)."""
    *lead, d = shape
    packed = torch.randint(0, 256, (*lead, (d + 7) // 8), generator=generator, dtype=torch.uint8)
    bits = packed.unsqueeze(-1).bitwise_right_shift(_BIT_SHIFTS).bitwise_and_(1)
    return bits.reshape(*lead, -1)[..., :d].to(dtype).mul_(2).sub_(1)


def uniform(
    shape: torch.Size | tuple[int, ...],
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """U(0, 1) noise shaped ``shape`` in ``like``'s dtype and device, kept away from 0 and 1
    (so that its logarithms stay finite); from ``generator``, else torch's global one.
    """
    tiny = torch.finfo(like.dtype).tiny
    eps = torch.finfo(like.dtype).eps
    u = torch.rand(shape, generator=generator, dtype=like.dtype)
    return u.to(like.device).clamp_(tiny, 1 - eps)


def gumbel(
    shape: torch.Size | tuple[int, ...],
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Standard Gumbel noise −log(−log u), u ~ U(0, 1), shaped ``shape`` like ``like``."""
    return uniform(shape, like, generator).log_().neg_().log_().neg_()
