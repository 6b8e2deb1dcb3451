r"""The caustic problem of ZeroGrads (Fischer & Ritschel 2024): shape glass to cast a caustic.

**Heightfield.** The parameters x ∈ ℝ^{G²} (G = ``grid``, default 32, so d = 1 024)
are the control points of a uniform bicubic B-spline, read row-major as a grid
C = x.reshape(G, G) whose rows follow v (the y axis) and columns u (the x axis).
Over the unit square [0, 1]², with t = u·(G − 3) ∈ [0, G − 3], span
k = min(⌊t⌋, G − 4) and s = t − k, the 1-D spline is Σ_{m=0}^{3} b_m(s) c_{k+m} with

    b_0 = (1 − s)³/6,  b_1 = (3s³ − 6s² + 4)/6,  b_2 = (−3s³ + 3s² + 3s + 1)/6,  b_3 = s³/6,

so control point i peaks at u_i = (i − 1)/(G − 3). At the photon positions
u_j = v_j = (j + ½)/P, j = 0 … P − 1 (P = ``photons``), these weights form a basis
matrix B ``[P, G]`` and their derivatives d/du = (G − 3)·d/ds a matrix B' ``[P, G]``,
both built once, and the surface and its slopes are

    S = B C Bᵀ,  ∂S/∂u = B C B'ᵀ,  ∂S/∂v = B' C Bᵀ,     h = 0.75 + 0.25·S.

B and B' are kept sparse (the 4 nonzero columns and weights of each row): the
products are four gathers and multiply-adds per factor, in a fixed order.

**Geometry.** A glass block (index of refraction η = ``ior``, default 1.33) hangs
over a receiver plane z = 0. Its top face is flat and its lower face is the
heightfield z = h(u, v), h ≈ 0.875 at the start. Parallel light travels straight
down, i = (0, 0, −1), one photon at each (u_j, v_k), enters the flat top face
without bending, meets the lower face at (u, v, h(u, v)) and refracts there from
glass into air. With the unit normal facing the incoming ray,
n = c1·(−h_u, −h_v, 1), c1 = −n·i = 1/√(1 + g²), g² = h_u² + h_v², Snell's law in
vector form gives the exit direction

    t = η i + (η c1 − √(1 − η²(1 − c1²))) n,     η = n_glass / n_air = ``ior``.

The radicand is 1 − η²(1 − c1²) = w²/(1 + g²) with w² = 1 − (η² − 1) g²; where it is
negative (g > 1/√(η² − 1), a slope angle above arcsin(1/η) ≈ 48.8° for η = 1.33)
the ray is totally internally reflected and dropped, and so is a ray whose surface
point lies at or below the receiver (h ≤ 0). Otherwise

    t = (−(η − w) h_u, −(η − w) h_v, −(η g² + w)) / (1 + g²),  t_z < 0,

and the ray lands after the parameter h/(−t_z) at

    (u, v) − h (η − w)/(η g² + w) · (h_u, h_v),

displaced against the slope by about h (η − 1) ∇h for gentle slopes. (One
refraction only: no re-entry into the glass, no shadowing.)

**Image.** The receiver window [0, 1]² is cut into R × R bins (R = ``resolution``)
and each photon is *hard-splatted*: it adds 1 to the bin (row ⌊yR⌋, column ⌊xR⌋)
it lands in, with no interpolation (counted in a grid padded by a ring of
bins that collects the photons outside the window, then cut off: those are lost). Rows grow
with y, so show images with ``origin="lower"``. The counts N are normalized as in
the reference, I = clip(N / q, 0, 1), q the 99.5 % quantile of the R² bin counts
(linear interpolation between order statistics, numpy's default); when q = 0 the
largest count is used instead, and an image without photons stays 0. Flat glass
casts no caustic: every bin gets (P/R)² photons when R divides P, and the image is
all ones, far from any target (L ≈ 0.81 for seed 0).

**Loss.** L(x) = mean_{ij} (I(x)_{ij} − I(x*)_{ij})², the image MSE against the
target caustic rendered the same way from a hidden control grid x*. As the
photons' bins are integers (floor), L is piecewise constant in x: it changes
only when some photon crosses a bin edge, so its gradient is zero almost
everywhere. For seed 0, a step of 1e-7 on one coordinate changes L for about 1 %
of the coordinates, a step of 1e-3 for about 90 %: the landscape is a fine
staircase that responds to any visible change of the glass.

**Instances.** A ``torch.Generator`` seeded with ``seed`` draws the start
x0 = 0.5 + N(0, 0.05²) per control point (float64), then the hidden target: eight
Gaussian bumps with centres μ_k ~ U[0.15, 0.85]², widths σ_k ~ U[0.06, 0.12] and
amplitudes a_k = ±U[0.1, 0.25] (random signs), evaluated at the control points'
peaks (u_b, v_a):

    x*_{ab} = 0.5 + Σ_k a_k exp(−((u_b − μ_{k,1})² + (v_a − μ_{k,2})²) / (2σ_k²)).

Raised bumps spread the light into dark discs with bright rims, dips focus it
into bright spots and cusps. ``x_target`` = x* (flattened, ``[G²]``), so
L(x*) = 0 = ``optimum`` exactly. The solved level ``threshold`` is, unless given,
10 % of L(x0), computed once at construction (for seed 0 with the defaults:
L(x0) ≈ 0.0692, threshold ≈ 0.00692).

**Cost.** The defaults (P = 256, i.e. 65 536 photons, into R = 64, i.e. 64² bins,
16 photons per bin on average; the reference used 512² photons and a 512² image)
take 3–6 ms per evaluation on one CPU thread (float64; measured on a busy, shared
2-core machine, about 3 ms when it has a core to itself), 10–20 ms to construct.
The photons go in blocks of at most ``BLOCK`` = 32 768, through torch gathers and
element-wise ops with no BLAS call; the square root is numpy's and the floor a
truncation of clamped non-negative numbers, as torch fans those two out to
threads even on small tensors. So every op runs on the calling thread whatever
``torch.get_num_threads()`` says, the cost does not blow up on a busy machine
(a multi-threaded version took 10–40 ms there), and the image is bit-identical
for any thread setting: L(x*) = 0 holds in worker processes too. ``loss_batch``
loops over rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from voidgrad.problems.base import Point
from voidgrad.problems.checks import as_point, check_threshold
from voidgrad.validation import check_seed, is_number

__all__ = ["CausticProblem"]

BASE_HEIGHT = 0.75
"""h = BASE_HEIGHT + HEIGHT_SCALE · S: the height of the glass surface above the receiver."""

HEIGHT_SCALE = 0.25
"""How much one unit of control-point value raises the surface."""

START_MEAN, START_STD = 0.5, 0.05
"""The start draws each control point from N(START_MEAN, START_STD²)."""

BUMPS = 8
"""The number of Gaussian bumps in the hidden target heightfield."""

QUANTILE = 0.995
"""Counts are divided by this quantile of the bins and clipped to [0, 1]."""

THRESHOLD_FRACTION = 0.1
"""The default solved level is this fraction of the loss at the start."""

BLOCK = 32768
"""Photons per block: at most torch's grain size, so that each op runs on one thread."""


class CausticProblem:
    """Shape a glass heightfield so that the caustic it casts matches a target.

    See the module docstring for the geometry, the normalization and the loss.

    Args:
        seed: a non-negative int seeding the start and the hidden target.
        grid: the control grid's side G (an int ≥ 4); dim = G².
        photons: the photon grid's side P (an int ≥ 8): P² parallel rays, one
            per cell centre of the unit square.
        resolution: the image's side R in bins (an int ≥ 4).
        ior: the glass's index of refraction η (a finite number > 1).
        threshold: the solved level (a positive finite number); default 10 % of
            the loss at ``x0``.

    Attributes:
        name: ``"caustic"``; dim: G².
        x0: the start, a float64 tensor ``[G²]``.
        x_target: the hidden control grid, a float64 tensor ``[G²]``.
        target_image: the target caustic, a float32 tensor ``[R, R]``.
        optimum: 0.0, the loss at ``x_target``.
        threshold: the solved level.

    Examples:
        >>> from voidgrad.problems import CausticProblem
        >>> problem = CausticProblem(grid=8, photons=32, resolution=16, seed=0)  # a small instance
        >>> problem.dim, problem.heightfield(problem.x0).ndim, problem.render(problem.x0).shape
        (64, 2, torch.Size([16, 16]))
        >>> problem.loss(problem.x_target) == problem.optimum < problem.loss(problem.x0)
        True
    """

    name = "caustic"
    optimum = 0.0

    def __init__(
        self,
        seed: int = 0,
        grid: int = 32,
        photons: int = 256,
        resolution: int = 64,
        ior: float = 1.33,
        threshold: float | None = None,
    ) -> None:
        check_seed(seed, optional=False)
        for label, value, least in (("grid", grid, 4), ("photons", photons, 8)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{label} must be an int >= {least}; got {value!r}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 4:
            raise ValueError(f"resolution must be an int >= 4 (bins); got {resolution!r}")
        if not is_number(ior) or not math.isfinite(ior) or ior <= 1:
            raise ValueError(f"ior must be a finite number > 1; got {ior!r}")
        threshold = check_threshold(threshold)
        self.seed = seed
        self.grid = grid
        self.photons = photons
        self.resolution = resolution
        self.ior = float(ior)
        self.dim = grid * grid
        positions = (np.arange(photons) + 0.5) / photons
        columns, weights, slopes = _bspline_rows(positions, grid)
        self._positions = torch.from_numpy(positions)
        self._columns = torch.from_numpy(columns)
        self._weights = torch.from_numpy(weights)
        self._slopes = torch.from_numpy(slopes)
        self._block = max(1, BLOCK // photons)

        generator = torch.Generator().manual_seed(seed)
        self.x0 = START_MEAN + START_STD * torch.randn(
            self.dim, generator=generator, dtype=torch.float64
        )
        self.x_target = _bumps(grid, generator)
        self._target = self._image(self.x_target.numpy())
        self.target_image = torch.from_numpy(self._target.astype(np.float32))
        self.threshold = THRESHOLD_FRACTION * self.loss(self.x0) if threshold is None else threshold

    def loss(self, x: Point) -> float:
        """Image MSE between the caustic of ``x`` (shape ``[dim]``) and the target, a float."""
        image = self._image(as_point(x, self.dim).numpy())
        return float(np.mean((image - self._target) ** 2))

    def loss_batch(self, X: torch.Tensor | Any) -> torch.Tensor:
        """L of each row of ``X`` ``[n, dim]``: a float64 tensor ``[n]`` on ``X``'s device.

        Rows are evaluated one by one with :meth:`loss`, so the values agree
        with it exactly.
        """
        batch = torch.as_tensor(X)
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"X must have shape [n, {self.dim}]; got shape {tuple(batch.shape)}")
        values = [self.loss(row) for row in batch.detach().cpu()]
        return torch.tensor(values, dtype=torch.float64, device=batch.device)

    def render(self, x: Point) -> torch.Tensor:
        """The normalized caustic of ``x``: float32 ``[resolution, resolution]`` in [0, 1]."""
        return torch.from_numpy(self._image(as_point(x, self.dim).numpy()).astype(np.float32))

    def heightfield(self, x: Point) -> torch.Tensor:
        """The surface height h at the photon positions: float32 ``[photons, photons]``.

        Rows follow v (y) and columns u (x), as in :meth:`render`.
        """
        along_u, slope_u = self._along_u(as_point(x, self.dim).numpy())
        blocks = [self._surface(along_u, slope_u, *rows)[0] for rows in self._blocks()]
        return torch.cat([block.to(torch.float32) for block in blocks])

    def _image(self, point: np.ndarray) -> np.ndarray:
        """The normalized caustic (float64 ``[R, R]``) of the control points ``point``."""
        counts = self._counts(point).astype(np.float64)
        scale = float(np.quantile(counts, QUANTILE))
        if scale <= 0:
            scale = max(float(counts.max()), 1.0)
        return np.clip(counts / scale, 0.0, 1.0)

    def _blocks(self) -> list[tuple[int, int]]:
        """The photon rows start … stop − 1 of each block (``BLOCK`` photons at most)."""
        starts = range(0, self.photons, self._block)
        return [(start, min(start + self._block, self.photons)) for start in starts]

    def _along_u(self, point: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """0.25·C Bᵀ and 0.25·C B'ᵀ (float64 ``[G, P]``): the controls spread along u."""
        # Built transposed, [P, G], so that the gathers pick contiguous rows.
        controls = (
            HEIGHT_SCALE * torch.from_numpy(point).reshape(self.grid, self.grid).T.contiguous()
        )
        along_u = torch.zeros(self.photons, self.grid, dtype=torch.float64)
        slope_u = torch.zeros_like(along_u)
        for m in range(4):
            used = controls.index_select(0, self._columns[:, m])
            along_u.addcmul_(self._weights[:, m, None], used)
            slope_u.addcmul_(self._slopes[:, m, None], used)
        return along_u.T.contiguous(), slope_u.T.contiguous()

    def _surface(
        self, along_u: torch.Tensor, slope_u: torch.Tensor, start: int, stop: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h, ∂h/∂u and ∂h/∂v (float64 ``[stop − start, P]``) on photon rows start … stop − 1."""
        shape = (stop - start, self.photons)
        height = torch.full(shape, BASE_HEIGHT, dtype=torch.float64)
        h_u = torch.zeros(shape, dtype=torch.float64)
        h_v = torch.zeros(shape, dtype=torch.float64)
        for m in range(4):
            index = self._columns[start:stop, m]
            weight = self._weights[start:stop, m, None]
            rows = along_u.index_select(0, index)
            height.addcmul_(weight, rows)
            h_v.addcmul_(self._slopes[start:stop, m, None], rows)
            h_u.addcmul_(weight, slope_u.index_select(0, index))
        return height, h_u, h_v

    def _counts(self, point: np.ndarray) -> np.ndarray:
        """The photons landing in each bin (int64 ``[R, R]``) for the controls ``point``."""
        along_u, slope_u = self._along_u(point)
        eta = self.ior
        stretch = eta * eta - 1.0
        size = self.resolution
        padded = size + 2  # bins with a border ring that collects the photons outside
        counts = torch.zeros(padded * padded, dtype=torch.int64)
        for start, stop in self._blocks():
            height, h_u, h_v = self._surface(along_u, slope_u, start, stop)
            # Snell's law, simplified (module docstring): g² = |∇h|², w = √(1 − (η² − 1) g²),
            # the photon lands at (u, v) − h (η − w)/(η g² + w) · ∇h; TIR where w² < 0.
            g2 = (h_u * h_u).addcmul_(h_v, h_v)
            kept = (g2 <= 1.0 / stretch) & (height > 0)
            w = g2.mul(-stretch).add_(1.0).clamp_(min=0.0)
            np.sqrt(w.numpy(), out=w.numpy())  # torch.sqrt would fan out to threads
            reach = (eta - w).mul_(height).div_(g2.mul_(eta).add_(w))
            u = self._positions.unsqueeze(0)
            v = self._positions[start:stop].unsqueeze(1)
            # Hard splatting into bin (⌊yR⌋, ⌊xR⌋), shifted by 1 into the padded grid: the
            # shifted coordinates are clamped to [0, R + 1], where truncation is the floor,
            # so photons outside the window land in the border ring (and are cut off
            # below), as do the dropped ones (sent to bin 0).
            index = torch.zeros(kept.shape, dtype=torch.int64)
            for position, slope, stride in ((v, h_v, padded), (u, h_u, 1)):
                hit = torch.addcmul(position, reach, slope, value=-1.0).mul_(size).add_(1.0)
                index.add_(hit.clamp_(0.0, size + 1.0).to(torch.int64), alpha=stride)
            index.masked_fill_(~kept, 0)
            counts += torch.bincount(index.view(-1), minlength=padded * padded)
        return counts.view(padded, padded)[1:-1, 1:-1].numpy()

    def __repr__(self) -> str:
        return (
            f"CausticProblem(seed={self.seed}, grid={self.grid}, photons={self.photons}, "
            f"resolution={self.resolution}, ior={self.ior}, threshold={self.threshold})"
        )


def _bspline_rows(positions: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nonzero entries of the uniform cubic B-spline basis at ``positions`` in [0, 1].

    Row j of B ``[P, G]`` holds b_0 … b_3 at s_j in columns k_j … k_j + 3, and
    row j of B' their derivatives d/du = (G − 3) d/ds. Returns the columns
    (int64 ``[P, 4]``), the weights and the slopes (float64 ``[P, 4]``).
    """
    spans = grid - 3
    t = positions * spans
    k = np.minimum(np.floor(t), spans - 1).astype(np.int64)
    s = t - k
    s2, s3 = s * s, s * s * s
    weights = np.stack([(1 - s) ** 3, 3 * s3 - 6 * s2 + 4, -3 * s3 + 3 * s2 + 3 * s + 1, s3], 1)
    slopes = np.stack([-((1 - s) ** 2), 3 * s2 - 4 * s, -3 * s2 + 2 * s + 1, s2], 1)
    columns = k[:, np.newaxis] + np.arange(4)
    return columns, weights / 6, slopes * (spans / 2)


def _bumps(grid: int, generator: torch.Generator) -> torch.Tensor:
    """The hidden control grid: 0.5 plus seeded Gaussian bumps at the control peaks, ``[G²]``."""

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    centres = uniform(0.15, 0.85, BUMPS, 2)
    widths = uniform(0.06, 0.12, BUMPS)
    sizes = uniform(0.1, 0.25, BUMPS)
    signs = torch.where(uniform(0.0, 1.0, BUMPS) < 0.5, -1.0, 1.0)
    peaks = (torch.arange(grid, dtype=torch.float64) - 1) / (grid - 3)
    du = peaks.view(1, 1, grid) - centres[:, 0].view(BUMPS, 1, 1)
    dv = peaks.view(1, grid, 1) - centres[:, 1].view(BUMPS, 1, 1)
    spread = 2 * widths.view(BUMPS, 1, 1) ** 2
    field = (signs * sizes).view(BUMPS, 1, 1) * torch.exp(-(du * du + dv * dv) / spread)
    return START_MEAN + field.sum(0).reshape(grid * grid)
