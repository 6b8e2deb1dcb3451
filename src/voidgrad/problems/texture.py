r"""The texture problem: the pixels of an 8-bit RGB texture, matched up to brightness.

The parameters are the texture itself: x ∈ ℝ^d, d = 3 · size², read as an
image ``[size, size, 3]`` (channel-last: x[3 · (size · row + column) + channel]),
and the "renderer" is the identity followed by 8-bit quantization,

    q(x) = round(255 · clamp(x, 0, 1)) / 255      (round half to even, as ``torch.round``).

The loss compares the images normalized by their mean, so that it ignores
the overall brightness (a texture and its scaled copy c · t are equally good):
with m(a) the mean of all 3 · size² entries of a,

    L(x) = mean_k ( q_k/m(q) − t_k/m(t) )²
         = mean_k ( (q_k/m(q) − 1) − (t_k/m(t) − 1) )²,

the mean running over every pixel and channel, and one global mean (not one
per channel), so colour balance matters and only a common scale is free.
Where m(q) = 0 (an all-black texture) q/m(q) is taken as 1 everywhere, the
value every constant texture has. Quantization makes L piecewise constant in x:
a coordinate moved less than to the next rounding boundary changes nothing
(and nothing changes below 0 or above 1), so the gradient is zero almost
everywhere.

**Target.** A procedural texture t, drawn from a ``torch.Generator`` seeded
with ``seed`` on the pixel centres (u, v) = ((column + ½)/size, (row + ½)/size),
so that a smaller ``size`` samples the same picture more coarsely. Per channel c,

    t_c(u, v) = a_c + b_c u + e_c v                       (a colour gradient)
              + A_c sin(2π f (u cos θ + v sin θ) + φ)       (stripes),

a_c ~ U(0.3, 0.6), b_c, e_c ~ U(−0.25, 0.25), A_c ~ U(0.05, 0.15), one stripe
frequency f ~ U(3, 8) (cycles per side), angle θ ~ U(0, π) and phase φ ~ U(0, 2π);
then four discs (centre ~ U(0.15, 0.85)², radius ~ U(0.05, 0.15), colour
~ U(0.1, 1)³) are painted over it in order, with hard edges (a pixel whose
centre is inside takes the disc's colour). Finally t is clipped to
[1/255, 1] and quantized to 8 bits, t = round(255 · t)/255, so that its
entries lie in (0, 1] and q(t) = t.

**Start, answer, threshold.** The same generator then draws the start
x0 = 0.5 + N(0, 0.05²) per entry (a noisy grey). ``x_target`` is t flattened
channel-last, where L = 0 = ``optimum`` (exactly: both sides are the same
numbers); so is every x whose quantization q(x) is a positive multiple of t.
The solved level is the fixed ``threshold`` = 1e-3, an RMS error of about 3 %
of the mean brightness per entry; the loss at x0 is 0.046 to 0.27 for seeds
0 … 3 (the
variance of t/m(t), which depends on the seed, plus the start's noise,
(0.05/0.5)² = 0.01).

``loss`` evaluates one point (float64; about 0.5 ms at size 256 on one CPU
thread), ``loss_batch`` the rows of a matrix ``[n, d]``, one row after the
other (a texture fills the cache, so this beats a ``[n, d]`` vectorization);
``render(x)`` returns the quantized texture q(x), float32 ``[size, size, 3]``.

**The renderer and its loss, apart.** L = ℓ ∘ q splits into a non-differentiable
"renderer" and a differentiable loss of its image, so that a black-box
estimator need only handle the renderer and autograd does the rest:

* ``pixels(x)`` is q(x) flattened as the parameters are, float64 ``[d]`` on
  x's device (rows ``[n, d]`` give ``[n, d]``): the renderer as a black box;
* ``image_loss(y)`` is ℓ(y) = mean_k ( y_k/m(y) − t_k/m(t) )² for any real
  image y ``[d]`` (or rows ``[n, d]``), a differentiable float64 tensor, with
  y/m(y) taken as 1 everywhere where m(y) ≤ 0. It computes exactly what
  ``loss`` computes, so ``image_loss(pixels(x)) == loss(x)`` bit for bit on
  the CPU (on a GPU, up to the order of the last sum's terms);
* ``jac_sparsity()`` is the exact dependency pattern of ``pixels``: output k
  depends on parameter k alone, the ``[d, d]`` identity as a sparse COO
  tensor (d nonzeros; for ``jac_sparsity=`` of
  :class:`~voidgrad.GaussianSmoothing` and :class:`~voidgrad.SPSA`).

With that pattern a smoothing estimator credits each texel with its own
pixel only, so one antithetic pair gives every coordinate a finite
difference of its own: the estimate's variance does not grow with d.
``size=1024`` (d = 3 145 728) builds in under a second with a peak of about 0.1 GB.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from voidgrad.problems.base import Point
from voidgrad.problems.checks import all_finite, as_point, as_rows, check_threshold
from voidgrad.validation import check_seed

__all__ = ["TextureProblem"]

LEVELS = 255
"""8-bit quantization: q = round(255 · clamp(x, 0, 1))/255."""

DISCS = 4
"""The number of discs painted on the target."""


class TextureProblem:
    """Recover an RGB texture from its brightness-normalized 8-bit MSE (module docstring).

    Args:
        size: the texture's side in pixels (an int ≥ 4; default 256, d = 196 608).
        seed: a non-negative int seeding the target texture and the start.
        threshold: the solved level (default 1e-3).

    Attributes:
        name: ``"texture"``; dim: 3 · size².
        x0: the start 0.5 + N(0, 0.05²), a float64 tensor ``[dim]``.
        x_target: the target texture t flattened channel-last, float64 ``[dim]``.
        target_image: t as a float64 tensor ``[size, size, 3]``.
        optimum: 0.0, the loss at ``x_target``; threshold: the solved level.

    Examples:
        >>> import torch
        >>> from voidgrad.problems import TextureProblem
        >>> problem = TextureProblem(size=16, seed=0)
        >>> problem.dim, problem.render(problem.x0).shape  # one RGB value per pixel
        (768, torch.Size([16, 16, 3]))
        >>> problem.loss(problem.x_target), problem.loss_batch(torch.stack([problem.x0] * 2)).shape
        (0.0, torch.Size([2]))

        The renderer as a black box, its loss in torch and the pattern that links them:

        >>> image = problem.pixels(problem.x0)  # q(x0), flattened as x0 is
        >>> float(problem.image_loss(image)) == problem.loss(problem.x0)
        True
        >>> pattern = problem.jac_sparsity()  # pixel k depends on texel k alone
        >>> pattern.shape, pattern.is_sparse, pattern.values().numel()
        (torch.Size([768, 768]), True, 768)
    """

    name = "texture"
    optimum = 0.0
    default_threshold = 1e-3

    def __init__(self, size: int = 256, seed: int = 0, threshold: float | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 4:
            raise ValueError(f"size must be an int >= 4 (pixels); got {size!r}")
        check_seed(seed, optional=False)
        threshold = check_threshold(threshold)
        self.size = size
        self.seed = seed
        self.dim = 3 * size * size
        self.threshold = self.default_threshold if threshold is None else threshold
        generator = torch.Generator().manual_seed(seed)
        self.target_image = _procedural_texture(size, generator)
        self.x_target = self.target_image.reshape(-1)
        self.x0 = 0.5 + 0.05 * torch.randn(self.dim, generator=generator, dtype=torch.float64)
        self._normalized_target = _normalized_levels(LEVELS * self.x_target, overwrite=True)
        # the normalized target per device image_loss has met, copied there once
        self._targets: dict[torch.device, torch.Tensor] = {
            self._normalized_target.device: self._normalized_target
        }

    def loss(self, x: Point) -> float:
        """L(x) for one point ``x`` of shape ``[dim]``, as a Python float."""
        return float(self._loss_row(as_point(x, self.dim)))

    def loss_batch(self, X: torch.Tensor | Any) -> torch.Tensor:
        """L of each row of ``X`` ``[n, dim]``: a float64 tensor ``[n]`` on ``X``'s device."""
        rows, device = as_rows(X, self.dim)
        return self._losses(rows).to(device)

    def render(self, x: Point) -> torch.Tensor:
        """The quantized texture q(x): float32 ``[size, size, 3]``, values k/255."""
        levels = torch.round(LEVELS * as_point(x, self.dim).clamp(0, 1))
        return (levels / LEVELS).reshape(self.size, self.size, 3).to(torch.float32)

    def pixels(self, x: torch.Tensor | Any) -> torch.Tensor:
        """The renderer q(x) = round(255 · clamp(x, 0, 1))/255, flattened as the parameters are.

        Args:
            x: a point ``[dim]`` or rows ``[n, dim]`` (a tensor on any device, an
                array or a sequence) of finite numbers.

        Returns:
            float64 ``[dim]`` (or ``[n, dim]``) on x's device; no gradient flows
            through it (module doc: this is the black box).
        """
        points = _as_points("x", x, self.dim)
        return torch.round(LEVELS * points.clamp(0, 1)) / LEVELS

    def image_loss(self, image: torch.Tensor) -> torch.Tensor:
        """ℓ(y) = mean_k ( y_k/m(y) − t_k/m(t) )²: L from an image, differentiable in it.

        Args:
            image: y, a floating tensor ``[dim]`` or rows ``[n, dim]`` of finite
                numbers, flattened as :meth:`pixels` returns it (any device; it
                may require grad).

        Returns:
            a float64 tensor ``[]`` (or ``[n]``) on y's device, in y's autograd
            graph. ``image_loss(pixels(x)) == loss(x)`` exactly (module doc).
        """
        if not isinstance(image, torch.Tensor) or not image.is_floating_point():
            raise TypeError(
                f"image must be a floating torch tensor [{self.dim}] or [n, {self.dim}] "
                f"(as pixels returns it); got {_describe(image)}"
            )
        levels = LEVELS * _as_points("image", image, self.dim)
        target = self._targets.get(levels.device)
        if target is None:
            target = self._targets[levels.device] = self._normalized_target.to(levels.device)
        # levels is a fresh tensor: overwrite it unless autograd records the arithmetic
        overwrite = not (levels.requires_grad and torch.is_grad_enabled())
        if levels.ndim == 1:
            return _loss_of_levels(levels, target, overwrite=overwrite)
        return torch.stack([_loss_of_levels(row, target, overwrite=overwrite) for row in levels])

    def jac_sparsity(self) -> torch.Tensor:
        """The pattern of :meth:`pixels`: the ``[dim, dim]`` identity, a sparse COO bool tensor.

        Output k (pixel k's channel, flattened channel-last) depends on
        parameter k alone: ``dim`` nonzeros, never a dense ``[dim, dim]`` matrix.
        """
        index = torch.arange(self.dim).expand(2, -1)
        return torch.sparse_coo_tensor(
            index,
            torch.ones(self.dim, dtype=torch.bool),
            (self.dim, self.dim),
            is_coalesced=True,  # sorted and unique by construction
            check_invariants=False,
        )

    def _losses(self, X: torch.Tensor) -> torch.Tensor:
        """L of each row of ``X`` ``[n, dim]`` (float64), one row at a time (cache-friendly)."""
        if X.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64)
        return torch.stack([self._loss_row(row) for row in X])

    def _loss_row(self, x: torch.Tensor) -> torch.Tensor:
        levels = x.clamp(0, 1).mul_(LEVELS).round_()
        return _loss_of_levels(levels, self._normalized_target, overwrite=True)

    def __repr__(self) -> str:
        return f"TextureProblem(size={self.size}, seed={self.seed}, threshold={self.threshold})"


def _normalized_levels(levels: torch.Tensor, *, overwrite: bool) -> torch.Tensor:
    """ℓ/m(ℓ) for levels ℓ = 255 · y ``[d]`` of an image y, 1 everywhere where m(ℓ) ≤ 0.

    The 1/255 of y cancels. For a quantized image the levels are the integers
    k = round(255 · clamp(x, 0, 1)): their sum is exact in float64 (in any
    order), hence so is the mean, and the same levels give bit-identical
    results. ``torch.where`` keeps m(ℓ) ≤ 0 free of a host sync and of a 0/0
    in the gradient. With ``overwrite`` the result is written into ``levels``
    (no autograd graph then): a fresh texture-sized tensor costs more than the
    arithmetic on it (``loss`` takes about 0.5 ms at d = 196 608 in place, 3 ms not).
    """
    total = levels.sum()
    positive = total > 0
    mean = torch.where(positive, total / levels.numel(), 1.0)
    if overwrite:
        return levels.div_(mean).masked_fill_(~positive, 1.0)
    return torch.where(positive, levels / mean, 1.0)


def _loss_of_levels(
    levels: torch.Tensor, normalized_target: torch.Tensor, *, overwrite: bool
) -> torch.Tensor:
    """mean_k (ℓ_k/m(ℓ) − t_k/m(t))² for levels ℓ ``[d]``: ``loss`` and ``image_loss`` share it."""
    normalized = _normalized_levels(levels, overwrite=overwrite)
    difference = normalized.sub_(normalized_target) if overwrite else normalized - normalized_target
    return torch.dot(difference, difference) / levels.numel()


def _describe(value: object) -> str:
    """A short description of ``value`` for an error: a tensor's dtype and shape, else its type."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _as_points(name: str, value: torch.Tensor | Any, dim: int) -> torch.Tensor:
    """``value`` as float64 ``[dim]`` or ``[n, dim]`` on its own device, or an error naming it.

    A tensor keeps its device and its autograd graph (the conversion is
    differentiable); anything else becomes a CPU tensor.
    """
    try:
        points = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"{name} must hold {dim} numbers (shape [{dim}] or [n, {dim}]); got {_describe(value)}"
        ) from None
    if points.ndim not in (1, 2) or points.shape[-1] != dim:
        raise ValueError(
            f"{name} must have shape [{dim}] or [n, {dim}]; got shape {tuple(points.shape)}"
        )
    if not all_finite(points.detach()):
        raise ValueError(f"{name} must hold finite numbers only")
    return points


def _procedural_texture(size: int, generator: torch.Generator) -> torch.Tensor:
    """The seeded target texture, float64 ``[size, size, 3]`` of multiples of 1/255 (module doc)."""

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    v, u = torch.meshgrid(centres, centres, indexing="ij")  # v grows with the row
    offset = uniform(0.3, 0.6, 3)
    slope_u = uniform(-0.25, 0.25, 3)
    slope_v = uniform(-0.25, 0.25, 3)
    amplitude = uniform(0.05, 0.15, 3)
    frequency = float(uniform(3.0, 8.0, 1))
    angle = float(uniform(0.0, math.pi, 1))
    phase = float(uniform(0.0, 2 * math.pi, 1))
    along = u * math.cos(angle) + v * math.sin(angle)
    stripes = torch.sin(2 * math.pi * frequency * along + phase)
    texture = offset + slope_u * u[..., None] + slope_v * v[..., None]
    texture = texture + amplitude * stripes[..., None]
    for _ in range(DISCS):
        centre = uniform(0.15, 0.85, 2)
        radius = float(uniform(0.05, 0.15, 1))
        colour = uniform(0.1, 1.0, 3)
        inside = (u - centre[0]) ** 2 + (v - centre[1]) ** 2 <= radius**2
        texture = torch.where(inside[..., None], colour, texture)
    return torch.round(LEVELS * texture.clamp(1 / LEVELS, 1)) / LEVELS
