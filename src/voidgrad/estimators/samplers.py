"""The random draws the estimators share, each from a generator the caller passes.

Black-box estimators draw offsets τ around θ (Gaussian, orthogonal Gaussian,
PRDPT's importance kernel, Rademacher signs); relaxed and discrete estimators draw uniforms and
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
    """τ = σε with ε ~ N(0, I): ``shape`` draws of Gaussian noise of scale ``sigma``.

    Drawn on the generator's device.
    """
    return torch.randn(shape, generator=generator, dtype=dtype, device=generator.device).mul_(sigma)


def orthogonal_gaussian(
    generator: torch.Generator, shape: tuple[int, int, int], sigma: float, dtype: torch.dtype
) -> torch.Tensor:
    r"""τ_i = σ r_i q_i: Gaussian offsets ``[B, n, d]`` whose directions are orthogonal in blocks.

    Orthogonal evolution strategies (Choromanski et al. 2018). Each row's n
    directions fall into ⌈n/m⌉ independent blocks of m = min(n, d) (the last
    one cut to n); per block, m i.i.d. Gaussian vectors g_1 … g_m ~ N(0, I_d)
    are orthonormalised by a QR decomposition, G = [g_1 … g_m] = QR, with the
    columns of Q signed so that diag(R) > 0 (that is Gram–Schmidt on
    g_1, g_2, …), and each q_i is given back the length of the vector it came
    from:

        τ_i = σ ‖g_i‖ q_i,    ‖g_i‖ ~ χ(d),    q_i ⊥ q_j within a block.

    Gram–Schmidt is blind to the lengths of the g_i, so Q depends on their
    directions only, which are independent of the lengths; with diag(R) > 0
    the frame Q is uniform (Haar) on the orthonormal m-frames. Hence each τ_i
    is marginally N(0, σ²I) as with :func:`gaussian` (an estimator that is
    unbiased with i.i.d. offsets stays unbiased), the lengths are i.i.d. χ(d)
    independent of the frame, and τ_i · τ_j = 0 for two directions of one
    block. Blocks, and rows, are independent.

    For d = 1 a block holds one direction, q_1 = sign(g_1), and τ = σ g: the
    same numbers as :func:`gaussian` (float32 and float64), nothing to
    orthogonalise. The QR runs in at least float32 (LAPACK has no half
    precision) on the generator's device; its cost is O(n m d) per row and its
    memory about three times that of the offsets.
    """
    B, n, d = shape
    m = min(n, d)
    if m == 0:  # d = 0 (or n = 0): nothing to draw
        return torch.empty(shape, dtype=dtype)
    blocks = -(-n // m)
    wide = torch.promote_types(dtype, torch.float32)
    g = torch.randn((B, blocks, m, d), generator=generator, dtype=wide)
    q, r = torch.linalg.qr(g.mT)  # g.mT [.., d, m] is already column-major: no copy for LAPACK
    # sign(diag R) as ±1 (never 0), so that every q_i keeps its length.
    signs = torch.ones((), dtype=wide).copysign(r.diagonal(dim1=-2, dim2=-1))
    scale = g.norm(dim=-1).mul_(signs).mul_(sigma)
    offsets = q.mT.mul_(scale.unsqueeze(-1)).reshape(B, blocks * m, d)
    return offsets[:, :n].to(dtype).contiguous()


def importance_gaussian(
    generator: torch.Generator, shape: tuple[int, ...], sigma: float, dtype: torch.dtype
) -> torch.Tensor:
    """PRDPT's importance-sampled offsets: τ ∝ |∂κ/∂τ| per dimension.

    From one uniform c ~ U(−1, 1) per entry: τ = sign(c) σ sqrt(−2 ln(1 − |c|)),
    so |τ| ≤ σ sqrt(−2 ln t), t the dtype's smallest normal number. Drawn on
    the generator's device.
    """
    c = torch.rand(shape, generator=generator, dtype=dtype, device=generator.device)
    c.mul_(2).sub_(1)
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
