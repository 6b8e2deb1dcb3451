r"""The splines problem: the support points of a few curves, matched through a hard rasterizer.

**Curves.** The parameters are the support points of ``curves`` Catmull-Rom
splines with ``points`` points each, in canvas units ([0, 1]² is the canvas):
x ∈ ℝ^d, d = 2 · curves · points, read as an array ``[curves, points, 2]``
(curve-major; each point (x, y)). A curve through P_0 … P_{m−1} (m = ``points``)
is padded with the reflected end points P_{−1} = 2P_0 − P_1 and
P_m = 2P_{m−1} − P_{m−2}, and segment k = 0 … m − 2 runs from P_k to P_{k+1},

    C_k(s) = ½ [ 2P_k + (P_{k+1} − P_{k−1}) s + (2P_{k−1} − 5P_k + 4P_{k+1} − P_{k+2}) s²
                 + (−P_{k−1} + 3P_k − 3P_{k+1} + P_{k+2}) s³ ],   s ∈ [0, 1]

(uniform Catmull-Rom: C¹, through every support point).

**Rasterizer.** Each segment is sampled at S = canvas + 1 equally spaced
parameters s = 0, 1/(S − 1), …, 1: samples at most ½ pixel apart on a segment
up to half the canvas side long (the hidden curves' segments are about 0.15
of it at the defaults; a much longer one, e.g. to a point far off the canvas,
is sampled more sparsely and its stroke may break up into dots). Pixel
(row i, column j) of the ``canvas`` × ``canvas`` image has its centre
((j + ½)/canvas, (i + ½)/canvas) (rows grow with y: show with
``origin="lower"``) and is 1 when its centre lies within ``width``/2 pixels
of some sample, else 0: the union of discs of diameter ``width`` along the
curves, a hard 0/1 image without anti-aliasing (what is off the canvas is
dropped). I(x) is thus piecewise constant in x.

**Loss.** The target image I* = I(x*) is drawn from hidden support points x*.
Both binary images are blurred by the same fixed Gaussian G of standard
deviation ``blur`` pixels (separable, B = G I Gᵀ with
G_{ik} = exp(−(i − k)²/2σ²) / Σ_m exp(−m²/2σ²), zero outside the canvas; no
blur for ``blur`` = 0), and

    L(x) = mean_{ij} (G I(x) Gᵀ − G I* Gᵀ)²_{ij}.

The blur acts on the binary images only, so L stays piecewise constant (its
gradient is zero almost everywhere), but it lets the loss respond when a
curve passes near the target's curves and not only when it overlaps them:
a less flat landscape (``blur`` = 2 pixels by default).

**Instance.** A ``torch.Generator`` seeded with ``seed`` draws the hidden
points as random walks: per curve a start ~ U(0.25, 0.75)² and a heading
~ U(0, 2π); each next point is a step of length 0.6/(points − 1) (so every
curve's polygon is at most 0.6 long) after turning the heading by N(0, 0.5²) radians,
clamped to [0.1, 0.9]². Then the start x0 = x* + ``offset`` · N(0, 1) per
coordinate (default 0.1, 6.4 pixels on the default canvas: the curves are
visibly off). ``x_target`` = x* flattened, where L = 0 = ``optimum``.

**Threshold.** Relative to the loss of an empty canvas,
L_blank = mean (G I* Gᵀ)² (every curve drawn off the canvas): solved is
L ≤ ``threshold`` = 0.1 · L_blank by default (``threshold`` may also be
given as a number). With the default settings (seeds 0 … 4), moving every
hidden support point by −1, 0 or +1 pixel in x and in y at random costs
0.04 to 0.12 · L_blank, so solved means about "every point within a pixel";
x0 is at 0.8 to 1.26 · L_blank: curves drawn in the wrong place can cost
more than no curves at all.

``loss`` evaluates one point, ``loss_batch`` the rows of ``[n, d]`` at once
(at the defaults, on one CPU thread, about 0.8 ms a point, 0.26 ms per row in
batches of 32); ``render(x)``
returns the binary image I(x), float32 ``[canvas, canvas]``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from voidgrad.problems.base import Point
from voidgrad.problems.checks import as_point, check_threshold
from voidgrad.validation import check_int, check_interval, check_positive, check_seed

__all__ = ["SplinesProblem"]

SOLVED_FRACTION = 0.1
"""The default threshold as a fraction of the empty canvas's loss."""

WALK_LENGTH = 0.6
"""The length of each hidden curve's control polygon, in canvas units."""

TURN = 0.5
"""The standard deviation of the hidden walks' turns, in radians."""


class SplinesProblem:
    """Recover the support points of Catmull-Rom curves from a hard rendering (module docstring).

    Args:
        curves: the number of curves (an int ≥ 1; default 4).
        points: support points per curve (an int ≥ 2; default 5).
        canvas: the image side in pixels (an int ≥ 8; default 64).
        width: the stroke width in pixels (a positive number; default 2).
        blur: the standard deviation of the Gaussian blur of both images, in
            pixels (a number ≥ 0, 0 for none; default 2).
        offset: the standard deviation of the start's offset from the hidden
            points, in canvas units (a number ≥ 0; default 0.1).
        seed: a non-negative int seeding the hidden points and the start.
        threshold: the solved level (default 0.1 times the loss of an empty canvas).

    Attributes:
        name: ``"splines"``; dim: 2 · curves · points.
        x0: the start, a float64 tensor ``[dim]``.
        x_target: the hidden support points x*, a float64 tensor ``[dim]``.
        target_image: I(x*), a float32 tensor ``[canvas, canvas]`` of 0 and 1.
        blank_loss: L_blank, the loss of an empty canvas.
        optimum: 0.0, the loss at ``x_target``; threshold: the solved level.

    Examples:
        >>> from voidgrad.problems import SplinesProblem
        >>> problem = SplinesProblem(curves=2, points=3, canvas=32, seed=0)
        >>> problem.dim, problem.render(problem.x0).shape  # (x, y) of 2 × 3 support points
        (12, torch.Size([32, 32]))
        >>> start, answer = problem.loss(problem.x0), problem.loss(problem.x_target)
        >>> answer == problem.optimum < problem.threshold < start
        True
    """

    name = "splines"
    optimum = 0.0

    def __init__(
        self,
        curves: int = 4,
        points: int = 5,
        canvas: int = 64,
        width: float = 2.0,
        blur: float = 2.0,
        offset: float = 0.1,
        seed: int = 0,
        threshold: float | None = None,
    ) -> None:
        check_int("curves", curves, 1)
        check_int("points", points, 2)
        check_int("canvas", canvas, 8)
        check_positive("width", width)
        check_interval("blur", blur, 0, math.inf, closed_low=True)
        check_interval("offset", offset, 0, math.inf, closed_low=True)
        check_seed(seed, optional=False)
        threshold = check_threshold(threshold)
        self.curves = curves
        self.points = points
        self.canvas = canvas
        self.width = float(width)
        self.blur = float(blur)
        self.offset = float(offset)
        self.seed = seed
        self.dim = 2 * curves * points
        samples = canvas + 1
        s = torch.linspace(0, 1, samples, dtype=torch.float64)[:, None]
        self._basis = (
            0.5
            * torch.cat(
                [
                    -s + 2 * s**2 - s**3,
                    2 - 5 * s**2 + 3 * s**3,
                    s + 4 * s**2 - 3 * s**3,
                    s**3 - s**2,
                ],
                dim=1,
            ).T.contiguous()
        )  # [4, S]: weights of P_{k−1}, P_k, P_{k+1}, P_{k+2}
        radius = self.width / 2
        self._offsets = torch.arange(math.floor(2 * radius) + 1, dtype=torch.float64)
        self._blur_matrix = _gaussian_matrix(canvas, self.blur)
        generator = torch.Generator().manual_seed(seed)
        self.x_target = _random_walks(curves, points, generator).reshape(-1)
        self.x0 = self.x_target + self.offset * torch.randn(
            self.dim, generator=generator, dtype=torch.float64
        )
        target = self._images(self.x_target[None])
        self.target_image = target[0].to(torch.float32)
        self._blurred_target = self._blurred(target)[0]
        self.blank_loss = float((self._blurred_target**2).mean())
        self.threshold = SOLVED_FRACTION * self.blank_loss if threshold is None else threshold

    def loss(self, x: Point) -> float:
        """L(x) for one point ``x`` of shape ``[dim]``, as a Python float."""
        return float(self._losses(as_point(x, self.dim)[None])[0])

    def loss_batch(self, X: torch.Tensor | Any) -> torch.Tensor:
        """L of each row of ``X`` ``[n, dim]``: a float64 tensor ``[n]`` on ``X``'s device."""
        batch = torch.as_tensor(X)
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"X must have shape [n, {self.dim}]; got shape {tuple(batch.shape)}")
        rows = batch.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(rows).all()):
            raise ValueError("X must hold finite numbers only")
        return self._losses(rows).to(batch.device)

    def render(self, x: Point) -> torch.Tensor:
        """The binary image I(x): float32 ``[canvas, canvas]`` of 0 and 1 (row i grows with y)."""
        return self._images(as_point(x, self.dim)[None])[0].to(torch.float32)

    def _losses(self, X: torch.Tensor) -> torch.Tensor:
        if X.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64)
        difference = self._blurred(self._images(X)) - self._blurred_target
        return (difference * difference).mean((1, 2))

    def _blurred(self, images: torch.Tensor) -> torch.Tensor:
        if self._blur_matrix is None:
            return images
        return self._blur_matrix @ images @ self._blur_matrix.T

    def _images(self, X: torch.Tensor) -> torch.Tensor:
        """The binary images I of the rows of ``X`` ``[n, dim]`` (float64): ``[n, canvas, canvas]``.

        Every sample's candidate pixels are the K × K block from its first
        possibly covered column and row (K = ⌊width⌋ + 1 covers a disc of
        diameter ``width``); the covered ones are set to 1 in one scatter.
        """
        n, size = X.shape[0], self.canvas
        support = X.reshape(n, self.curves, self.points, 2) * size  # in pixels
        padded = torch.cat(
            [
                2 * support[:, :, :1] - support[:, :, 1:2],
                support,
                2 * support[:, :, -1:] - support[:, :, -2:-1],
            ],
            dim=2,
        )
        windows = padded.unfold(2, 4, 1)  # [n, curves, points − 1, 2, 4]
        samples = (windows @ self._basis).transpose(-1, -2).reshape(n, -1, 2)  # [n, N, 2]
        radius = self.width / 2
        corner = torch.ceil(samples - radius - 0.5)  # the first pixel index that may be hit
        cells = corner[..., None] + self._offsets  # [n, N, 2, K]: candidate columns, rows
        gap = cells + 0.5 - samples[..., None]
        # a candidate off the canvas gets an infinite gap, so it is never hit
        gap = torch.where((cells >= 0) & (cells < size), gap * gap, math.inf)
        hit = gap[:, :, 0, :, None] + gap[:, :, 1, None, :] <= radius**2
        image = torch.arange(n, dtype=torch.float64)[:, None, None, None] * size * size
        flat = image + cells[:, :, 1, None, :] * size + cells[:, :, 0, :, None]
        dump = n * size * size  # misses land in one extra pixel, dropped below
        index = torch.where(hit, flat, dump).long().reshape(-1)
        images = torch.zeros(dump + 1, dtype=torch.float64)
        images.index_fill_(0, index, 1.0)
        return images[:-1].reshape(n, size, size)

    def __repr__(self) -> str:
        return (
            f"SplinesProblem(curves={self.curves}, points={self.points}, canvas={self.canvas}, "
            f"width={self.width}, blur={self.blur}, offset={self.offset}, seed={self.seed}, "
            f"threshold={self.threshold})"
        )


def _random_walks(curves: int, points: int, generator: torch.Generator) -> torch.Tensor:
    """The hidden support points, float64 ``[curves, points, 2]`` in [0.1, 0.9]² (module doc)."""
    step = WALK_LENGTH / (points - 1)
    walks = torch.empty(curves, points, 2, dtype=torch.float64)
    for curve in range(curves):
        position = 0.25 + 0.5 * torch.rand(2, generator=generator, dtype=torch.float64)
        heading = float(2 * math.pi * torch.rand(1, generator=generator, dtype=torch.float64))
        walks[curve, 0] = position
        for k in range(1, points):
            heading += TURN * float(torch.randn(1, generator=generator, dtype=torch.float64))
            direction = torch.tensor([math.cos(heading), math.sin(heading)], dtype=torch.float64)
            position = (position + step * direction).clamp(0.1, 0.9)
            walks[curve, k] = position
    return walks


def _gaussian_matrix(size: int, sigma: float) -> torch.Tensor | None:
    """G ``[size, size]``, G_ik = exp(−(i − k)²/2σ²)/Z, Z the kernel's full sum; None if σ = 0."""
    if sigma == 0:
        return None
    lags = torch.arange(-size + 1, size, dtype=torch.float64)
    total = float(torch.exp(-(lags**2) / (2 * sigma**2)).sum())
    index = torch.arange(size, dtype=torch.float64)
    lag = index[:, None] - index[None, :]
    return torch.exp(-(lag**2) / (2 * sigma**2)) / total
