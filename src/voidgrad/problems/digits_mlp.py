r"""The digits-MLP problem: the weights of a small MLP must draw a digit, through 8-bit output.

A multilayer perceptron 256 → 32 → 32 → 784 with a fixed input maps its
weights to a 28 × 28 image. With u ∈ [0, 1)^256 fixed and x = (W₁, b₁, W₂, b₂, W₃, b₃),

    h₁ = relu(W₁ u + b₁),   h₂ = relu(W₂ h₁ + b₂),   y = sigmoid(W₃ h₂ + b₃) ∈ (0, 1)^784,

and the image is y quantized to 8 bits, q = round(255 · y)/255 (round half to
even, as ``torch.round``), pixel p = 28 · row + column. The loss is the image MSE

    L(x) = mean_p (q_p − t_p)²

against a target digit t. The quantization makes L piecewise constant in x:
its gradient is zero almost everywhere, though it changes under moves that
push some output across a rounding boundary.

**Parameters.** x ∈ ℝ^35152 holds, in this order, W₁ (32 × 256, row-major:
``W₁[j, i]`` weighs input i into unit j, the layout of ``torch.nn.Linear``),
b₁ (32), W₂ (32 × 32), b₂ (32), W₃ (784 × 32), b₃ (784):
256·32 + 32 + 32·32 + 32 + 32·784 + 784 = 35 152 numbers. :meth:`DigitsMLPProblem.unpack`
splits a point into these six tensors.

**Target.** The first "3" of scikit-learn's bundled 8 × 8 digits
(``sklearn.datasets.load_digits().images[3]``, the UCI optical digits), stored
here as a literal (:data:`DIGIT_THREE`, values 0 … 16, copied at development
time, so scikit-learn is not needed at run time). It is scaled to [0, 1] (÷ 16),
upsampled to 28 × 28 by bilinear interpolation with half-pixel centres
(``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``:
output pixel i samples the source at (i + ½) · 8/28 − ½, clamped to [0, 7]),
and quantized to 8 bits like the output, t = round(255 · ·)/255.

**Instance.** A ``torch.Generator`` seeded with ``seed`` draws u ~ U[0, 1)^256
first, then the start x0 as PyTorch's default ``nn.Linear`` initialization
does: every weight and bias of a layer with fan-in m uniform in
[−1/√m, 1/√m] (m = 256, 32, 32), all in float64. The seed thus fixes both the
input and the start; the target is the same for every seed.

**Optimum and threshold.** No particular minimizer is singled out
(``x_target`` is ``None``): the minimizers form a huge set. The optimum 0 is a
lower bound of the MSE and is attained, because the target is 8-bit quantized
like the output: given any weights, the output biases b₃ = logit(t̃) − W₃ h₂
with t̃ = t, except 0.25/255 where t = 0 and 254.75/255 where t = 1, reproduce
t exactly (a known, easy escape for a method that finds the biases; the
benchmark asks whether gradient estimators find it through the quantization).
The solved level is the fixed MSE ``threshold`` = 0.01 (an RMS pixel error of
0.1 on the [0, 1] scale: the digit is clearly recognizable), independent of
the seed; the loss at x0 is about 0.14 (every output near sigmoid(0) = ½).

``loss`` evaluates one point, ``loss_batch`` the rows of a matrix ``[n, d]``
with batched matrix products, both in float64 through the same code (about
0.15 ms per point on one CPU thread, 0.09 ms per row in batches of 64);
``render(x)`` returns the quantized
28 × 28 output image (row 0 on top, as the digit is drawn).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch.nn import functional

from voidgrad.problems.base import Point
from voidgrad.problems.checks import as_point, as_rows, check_threshold
from voidgrad.validation import check_seed

__all__ = ["DIGIT_THREE", "DigitsMLPProblem"]

DIGIT_THREE = (
    (0, 0, 7, 15, 13, 1, 0, 0),
    (0, 8, 13, 6, 15, 4, 0, 0),
    (0, 2, 1, 13, 13, 0, 0, 0),
    (0, 0, 2, 15, 11, 1, 0, 0),
    (0, 0, 0, 1, 12, 12, 1, 0),
    (0, 0, 0, 0, 1, 10, 8, 0),
    (0, 0, 8, 4, 5, 14, 9, 0),
    (0, 0, 7, 13, 13, 9, 0, 0),
)
"""``sklearn.datasets.load_digits().images[3]``: the first "3", 8 × 8 values in 0 … 16."""

DIGIT_INDEX = 3
"""The index of :data:`DIGIT_THREE` in ``load_digits().images``."""

LEVELS = 255
"""Output quantization: 8 bits, q = round(255 · y)/255."""


class DigitsMLPProblem:
    """Find MLP weights whose 8-bit output, for a fixed input, is a digit (module docstring).

    Args:
        seed: a non-negative int seeding the fixed input u and the start x0.
        threshold: the solved level, an MSE (default 0.01).

    Attributes:
        name: ``"digits_mlp"``; dim: 35 152.
        widths: the layer widths (256, 32, 32, 784); image_size: 28.
        x0: the start, a float64 tensor ``[dim]`` (default-``nn.Linear``-like).
        x_target: ``None`` (the minimizers form a large set; see the module doc).
        optimum: 0.0, attained; threshold: the solved level.
        input: the fixed input u, a float64 tensor ``[256]``.
        target_image: the target t, a float64 tensor ``[28, 28]`` of multiples of 1/255.

    Examples:
        >>> from voidgrad.problems import DigitsMLPProblem
        >>> problem = DigitsMLPProblem(seed=0)
        >>> problem.dim, problem.render(problem.x0).shape  # 35 152 weights draw a 28 × 28 digit
        (35152, torch.Size([28, 28]))
        >>> problem.loss(problem.x0) > problem.threshold
        True
    """

    name = "digits_mlp"
    widths = (256, 32, 32, 784)
    image_size = 28
    dim = sum(a * b + b for a, b in itertools.pairwise(widths))
    optimum = 0.0
    default_threshold = 0.01
    x_target: torch.Tensor | None = None

    def __init__(self, seed: int = 0, threshold: float | None = None) -> None:
        check_seed(seed, optional=False)
        threshold = check_threshold(threshold)
        self.seed = seed
        self.threshold = self.default_threshold if threshold is None else threshold
        generator = torch.Generator().manual_seed(seed)
        self.input = torch.rand(self.widths[0], generator=generator, dtype=torch.float64)
        pieces = []
        for fan_in, fan_out in itertools.pairwise(self.widths):
            bound = 1 / math.sqrt(fan_in)
            for count in (fan_in * fan_out, fan_out):
                unit = torch.rand(count, generator=generator, dtype=torch.float64)
                pieces.append(bound * (2 * unit - 1))
        self.x0 = torch.cat(pieces)
        digit = torch.tensor(DIGIT_THREE, dtype=torch.float64) / 16
        upsampled = functional.interpolate(
            digit[None, None],
            size=(self.image_size, self.image_size),
            mode="bilinear",
            align_corners=False,
        )[0, 0]
        self._target_levels = torch.round(LEVELS * upsampled).reshape(-1)
        self.target_image = (self._target_levels / LEVELS).reshape(self.image_size, self.image_size)

    def loss(self, x: Point) -> float:
        """L(x) for one point ``x`` of shape ``[dim]``, as a Python float."""
        return float(self._losses(as_point(x, self.dim)[None])[0])

    def loss_batch(self, X: torch.Tensor | Any) -> torch.Tensor:
        """L of each row of ``X`` ``[n, dim]``: a float64 tensor ``[n]`` on ``X``'s device."""
        rows, device = as_rows(X, self.dim)
        return self._losses(rows).to(device)

    def render(self, x: Point) -> torch.Tensor:
        """The quantized output image q at ``x``: float32 ``[28, 28]``, values k/255."""
        levels = self._levels(as_point(x, self.dim)[None])[0]
        return (levels / LEVELS).reshape(self.image_size, self.image_size).to(torch.float32)

    def unpack(self, x: Point) -> tuple[torch.Tensor, ...]:
        """``x`` split into (W₁, b₁, W₂, b₂, W₃, b₃), float64 views of shapes [32, 256], [32], …"""
        return tuple(t[0] for t in self._layers(as_point(x, self.dim)[None]))

    def _layers(self, X: torch.Tensor) -> list[torch.Tensor]:
        """The weights and biases of each row of ``X`` ``[n, dim]``: [n, out, in] and [n, out]."""
        n = X.shape[0]
        layers = []
        start = 0
        for fan_in, fan_out in itertools.pairwise(self.widths):
            weight = X[:, start : start + fan_in * fan_out].reshape(n, fan_out, fan_in)
            start += fan_in * fan_out
            layers += [weight, X[:, start : start + fan_out]]
            start += fan_out
        return layers

    def _levels(self, X: torch.Tensor) -> torch.Tensor:
        """round(255 · y) for each row of ``X`` ``[n, dim]`` (float64): ``[n, 784]``."""
        W1, b1, W2, b2, W3, b3 = self._layers(X)
        hidden = torch.relu(torch.matmul(W1, self.input) + b1)
        hidden = torch.relu(torch.baddbmm(b2[:, :, None], W2, hidden[:, :, None]))
        output = torch.sigmoid(torch.baddbmm(b3[:, :, None], W3, hidden))[:, :, 0]
        return torch.round(LEVELS * output)

    def _losses(self, X: torch.Tensor) -> torch.Tensor:
        difference = self._levels(X) - self._target_levels
        return (difference * difference).mean(1) / LEVELS**2

    def __repr__(self) -> str:
        return f"DigitsMLPProblem(seed={self.seed}, threshold={self.threshold})"
