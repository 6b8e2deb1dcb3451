r"""Offsets regenerated from their seeds: smoothing in O(d) memory (MeZO's trick).

A mirrored estimate uses each offset τ_i three times: to make θ + τ_i and
θ − τ_i, and to weight their difference in the vector-Jacobian product.
Stored, the offsets are ``[B, n, d]``, and the points ``[B, 2n, d]`` and the
weights ``[B, n, d]`` come with them: at d = 10⁸ in float32 and 8 samples,
1.6 GB of offsets, 3.2 GB of points and 1.6 GB of weights. Regenerated, each
direction keeps a seed s_i alone and τ_i is drawn again whenever it is needed,

    τ_i = draw(Generator(s_i)),

bit for bit the same each time (on θ's device: a CUDA θ draws with a CUDA
generator, and no offset crosses devices). The points are made a few at a
time, as the evaluator takes them (:class:`RegeneratedPoints`), and the
read-out accumulates ĝ one direction at a time. Beyond θ and the estimate
``[B, d]``, a step then holds one offset, one weight and one chunk of points
of ``[d]`` each: O(d), whatever the number of samples. The price is time: an
antithetic estimate of n pairs draws each τ_i three times (two points and
the read-out) instead of once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from voidgrad.estimators.samplers import gaussian, importance_gaussian

#: The samplers an offset can be regenerated with, by name.
SAMPLERS = {"gaussian": gaussian, "importance": importance_gaussian}

#: A Gaussian draw beyond 10 standard deviations has probability 1.5e-23.
_GAUSSIAN_REACH = 10.0


@dataclass(frozen=True)
class SeededOffsets:
    """Offsets τ_i ``[B, n, d]`` held as one seed per direction (module doc).

    Attributes:
        seeds: ``[B, n]`` int64, the seed of each direction's generator.
        dim: d.
        sigma: the sampler's scale σ.
        sampler: ``"gaussian"`` (τ ~ N(0, σ²I)) or ``"importance"`` (PRDPT's
            kernel; :func:`~voidgrad.estimators.samplers.importance_gaussian`).
        dtype: the offsets' dtype.
        device: where the offsets are drawn: θ's device.
    """

    seeds: torch.Tensor
    dim: int
    sigma: float
    sampler: str
    dtype: torch.dtype
    device: torch.device

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, n, d)``, the shape of the offsets were they stored."""
        B, n = self.seeds.shape
        return B, n, self.dim

    def draw(self, row: int, direction: int) -> torch.Tensor:
        """τ for ``direction`` of parameter ``row``, ``[d]``: the same tensor on every call."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(self.seeds[row, direction]))
        return SAMPLERS[self.sampler](generator, (self.dim,), self.sigma, self.dtype)

    def reach(self) -> float:
        """A bound on |τ_k|: exact for the importance kernel, 10σ for the Gaussian."""
        if self.sampler == "importance":
            tiny = torch.finfo(self.dtype).tiny
            return self.sigma * math.sqrt(-2.0 * math.log(tiny))
        return self.sigma * _GAUSSIAN_REACH


class RegeneratedPoints:
    """The points of a mirrored query, ``[B, M, d]``, made on demand from :class:`SeededOffsets`.

    Point j of row b is θ_b + τ_j for j < n and θ_b − τ_{j−n} after (when
    antithetic), as a stored query orders them. :meth:`rows` makes a chunk of
    the flattened ``[B·M, d]`` points; :func:`voidgrad.blackbox` evaluates a
    query of these one chunk at a time, so only a chunk is ever held.

    Examples:
        >>> import torch
        >>> import voidgrad as vg
        >>> est = vg.GaussianSmoothing(0.1, samples=4, regenerate=True, seed=0)
        >>> points = est.ask(torch.zeros(1, 3)).inputs
        >>> points.shape
        (1, 4, 3)
        >>> first = points.rows(0, 2)  # θ + τ_0, θ + τ_1
        >>> torch.equal(points.rows(2, 4), -first)  # θ − τ_0, θ − τ_1 at θ = 0
        True
    """

    def __init__(self, theta: torch.Tensor, offsets: SeededOffsets, antithetic: bool) -> None:
        self.theta = theta
        self.offsets = offsets
        self.antithetic = antithetic

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, M, d)``: M = 2n when antithetic, n otherwise."""
        B, n, d = self.offsets.shape
        return B, 2 * n if self.antithetic else n, d

    @property
    def dtype(self) -> torch.dtype:
        """The points' dtype (θ's)."""
        return self.theta.dtype

    @property
    def device(self) -> torch.device:
        """The points' device (θ's)."""
        return self.theta.device

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """``[stop − start, d]``: points ``start`` to ``stop`` of the flattened ``[B·M, d]``."""
        B, M, d = self.shape
        if not 0 <= start <= stop <= B * M:
            raise IndexError(f"rows must lie in [0, {B * M}]; got [{start}, {stop})")
        n = self.offsets.shape[1]
        chunk = torch.empty((stop - start, d), dtype=self.dtype, device=self.device)
        for k, flat in enumerate(range(start, stop)):
            row, j = divmod(flat, M)
            offset = self.offsets.draw(row, j % n)
            if j < n:
                torch.add(self.theta[row], offset, out=chunk[k])
            else:
                torch.sub(self.theta[row], offset, out=chunk[k])
        return chunk

    def __repr__(self) -> str:
        return f"RegeneratedPoints(shape={list(self.shape)}, sampler={self.offsets.sampler!r})"
