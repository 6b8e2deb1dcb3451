r"""The plateau problem (PRDPT, Fischer & Ritschel 2023): find a square by its picture.

A hard-edged rasterizer draws an axis-aligned square of ``square`` × ``square``
pixels, centred at θ = (x, y) ∈ [0, 1]², into a ``size`` × ``size`` image:
pixel (row i, column j) has its centre at ((j + ½)/size, (i + ½)/size) and is
either covered (1) or not (0), with no anti-aliasing. Row i grows with y, so
show images with ``origin="lower"``. The loss is the image MSE against the
picture of the square at the target position,

    L(θ) = mean_{ij} (I(θ)_{ij} − I(θ*)_{ij})².

Covered columns are those whose centre p satisfies x − s ≤ p < x + s with
s = square / (2·size); the half-open interval always holds exactly ``square``
pixel centres, and the centre is clamped to [s, 1 − s] so the square always
lies inside the image. Hence the loss is piecewise constant in θ: its gradient
is zero almost everywhere, and whenever the square misses the target square it
equals the constant 2·square²/size², so that neither autograd nor finite
differences see where to go. Gaussian smoothing does.

The loss is zero on a cell one pixel wide around the target; ``x_target`` is
the centre of that cell (the target position rounded to the pixel grid), the
point that a symmetric smoothing kernel converges to. The optimum is 0. A
position counts as solved (``threshold``) when the rendered square is at most one
pixel off the target square along each axis: off by (a, b) whole pixels, with
|a|, |b| ≤ square, the two squares differ in 2·(square² − (square − |a|)(square − |b|))
pixels, which is at most 2·(2·square − 1) exactly when |a| ≤ 1 and |b| ≤ 1, so

    threshold = 2·(2·square − 1)/size²,

below the plateau level 2·square²/size² whenever square ≥ 2 (about a fifth of it
for the default square of 10 pixels). A 1-pixel square one pixel off already
misses the target entirely, so for square = 1 the threshold is 0: solved only
on the target cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Position = Sequence[float] | torch.Tensor | np.ndarray


class PlateauProblem:
    """Recover a square's position from its hard-edged rendering.

    Args:
        size: the image's side in pixels (an int ≥ 8).
        square: the square's side in pixels (an int, 1 ≤ square < size).
        start: the start position (x, y), each in [0, 1].
        target: the target position (x, y), each in [0, 1]; the target image
            is rendered there.

    Attributes:
        name: ``"plateau"``.
        dim: 2, the parameters being the square's centre (x, y).
        x0: the start position, a float32 tensor ``[2]``.
        x_target: the known answer, a float32 tensor ``[2]``: the centre of the
            cell of positions that render the target image exactly.
        target_image: the target image, a float32 tensor ``[size, size]``.
        optimum: 0.0, the loss at ``x_target``.
        threshold: 2·(2·square − 1)/size², the largest loss of a square at most
            one pixel off the target along each axis (0 for square = 1; see the
            module docstring).

    Examples:
        >>> import torch
        >>> from voidgrad.problems import PlateauProblem
        >>> problem = PlateauProblem(size=32, square=6)
        >>> problem.render(problem.x0).shape
        torch.Size([32, 32])
        >>> start = problem.loss(problem.x0)
        >>> problem.loss(problem.x0 + 1e-3) == start  # piecewise constant: a zero gradient
        True
        >>> problem.loss(problem.x_target) <= problem.threshold < start
        True
    """

    name = "plateau"
    dim = 2
    optimum = 0.0

    def __init__(
        self,
        size: int = 64,
        square: int = 10,
        start: Position = (0.72, 0.68),
        target: Position = (0.3, 0.35),
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8 (pixels); got {size!r}")
        if isinstance(square, bool) or not isinstance(square, int) or not 1 <= square < size:
            raise ValueError(
                f"square must be an int with 1 <= square < size ({size}); got {square!r}"
            )
        self.size = size
        self.square = square
        start_xy = _check_position("start", start)
        target_xy = _check_position("target", target)
        corner = self._corners(np.array(target_xy))
        self.x0 = torch.tensor(start_xy, dtype=torch.float32)
        self.x_target = torch.tensor((corner + square / 2) / size, dtype=torch.float32)
        self._target = self._draw(corner)
        self.target_image = torch.from_numpy(self._target.astype(np.float32))
        self._columns = torch.arange(size, dtype=torch.float64)
        self.threshold = 2 * (2 * square - 1) / size**2 if square > 1 else 0.0

    @property
    def half_width(self) -> float:
        """The square's half side s in image units."""
        return self.square / (2 * self.size)

    def render(self, x: Position) -> torch.Tensor:
        """The image ``[size, size]`` (float32, values 0 or 1) of the square centred at ``x``."""
        return torch.from_numpy(self._draw(self._corners(_as_xy(x))).astype(np.float32))

    def loss(self, x: Position) -> float:
        """Image MSE between the rendering at ``x`` and the target image."""
        image = self._draw(self._corners(_as_xy(x)))
        return float(np.mean((image - self._target) ** 2))

    def render_hard(self, x: torch.Tensor) -> torch.Tensor:
        """The same image as :meth:`render`, built from torch ops that autograd can trace.

        Coverage comes from ``torch.ceil`` and ``torch.sign``, whose derivatives
        are zero, so the image is differentiable through autograd and its
        gradient with respect to ``x`` is exactly zero: what autograd makes of a
        hard-edged rasterizer. Returns float32 ``[size, size]``.
        """
        if not isinstance(x, torch.Tensor) or x.shape != (2,):
            raise ValueError(f"x must be a tensor of shape [2]; got {_describe(x)}")
        x64 = x.to(torch.float64)
        corner = torch.ceil(x64 * self.size - 0.5 - self.square / 2)
        corner = corner.clamp(0, self.size - self.square)
        j = self._columns.to(x.device)
        # j is covered iff corner <= j < corner + square; both are integers, so the
        # arguments of sign are never zero and the steps are exactly 0 or 1.
        inside = _step(j.unsqueeze(0) - corner.unsqueeze(1) + 0.5) * _step(
            corner.unsqueeze(1) + self.square - 0.5 - j.unsqueeze(0)
        )
        return (inside[1].unsqueeze(1) * inside[0].unsqueeze(0)).to(torch.float32)

    def loss_hard(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`loss` through :meth:`render_hard`: a 0-d tensor with an exactly zero gradient."""
        target = self.target_image.to(x.device)
        return ((self.render_hard(x) - target) ** 2).mean()

    def _corners(self, xy: np.ndarray) -> np.ndarray:
        """Index of the first covered column and row, clamped so the square fits."""
        corner = np.ceil(xy * self.size - 0.5 - self.square / 2)
        return np.clip(corner, 0, self.size - self.square)

    def _draw(self, corner: np.ndarray) -> np.ndarray:
        column, row = int(corner[0]), int(corner[1])
        image = np.zeros((self.size, self.size))
        image[row : row + self.square, column : column + self.square] = 1.0
        return image

    def __repr__(self) -> str:
        return (
            f"PlateauProblem(size={self.size}, square={self.square}, "
            f"start={self.x0.tolist()}, x_target={self.x_target.tolist()})"
        )


def _step(t: torch.Tensor) -> torch.Tensor:
    """1 where t > 0 and 0 where t < 0, with a zero derivative (t is never 0 here)."""
    return (torch.sign(t) + 1) / 2


def _check_position(name: str, value: Position) -> tuple[float, float]:
    try:
        xy = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (x, y); got {value!r}") from None
    if len(xy) != 2 or not all(math.isfinite(v) and 0 <= v <= 1 for v in xy):
        raise ValueError(f"{name} must be two numbers (x, y), each in [0, 1]; got {value!r}")
    return xy[0], xy[1]


def _as_xy(x: Position) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    xy = np.asarray(x, dtype=np.float64)
    if xy.shape != (2,) or not np.isfinite(xy).all():
        raise ValueError(f"x must hold two finite numbers (x, y); got {xy!r}")
    return xy


def _describe(x: object) -> str:
    shape = getattr(x, "shape", None)
    return f"{type(x).__name__} of shape {tuple(shape)}" if shape is not None else type(x).__name__
