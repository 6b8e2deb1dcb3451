r"""The 1-D Akima plateau toy of ZeroGrads (Fischer & Ritschel 2024), and Akima's spline.

**Akima's interpolant** (Akima 1970). Given nodes x_0 < … < x_{n−1} with values
y_i, the segment slopes are m_k = (y_{k+1} − y_k)/(x_{k+1} − x_k), k = 0 … n−2,
extended by two slopes at each end by linear extrapolation,

    m_{−1} = 2m_0 − m_1,  m_{−2} = 2m_{−1} − m_0,
    m_{n−1} = 2m_{n−2} − m_{n−3},  m_n = 2m_{n−1} − m_{n−2}.

The derivative at node i weighs the two slopes around it by how much the slopes
change on the far side,

    t_i = (w_1 m_{i−1} + w_2 m_i) / (w_1 + w_2),  w_1 = |m_{i+1} − m_i|,  w_2 = |m_{i−1} − m_{i−2}|,

and t_i = (m_{i−1} + m_i)/2 when both weights vanish (in floating point: when
w_1 + w_2 ≤ 10⁻⁹ · max_i (w_1 + w_2), the rule ``scipy`` uses too). Each interval
[x_k, x_{k+1}] carries the cubic Hermite polynomial with end values y_k, y_{k+1}
and end derivatives t_k, t_{k+1}: with s = x − x_k and h = x_{k+1} − x_k,

    p_k(x) = y_k + t_k s + c_k s² + d_k s³,
    c_k = (3m_k − 2t_k − t_{k+1})/h,  d_k = (t_k + t_{k+1} − 2m_k)/h².

Outside [x_0, x_{n−1}] the spline is constant: x is clamped to the node range.

**The toy.** The spline through

    x = [−100, −2, −1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 100],
    y = [9, 7.5, 7, 6.5, 6, 4, 3.5, 0, 2, 1, 6, 8, 9],

squared, L(x) = S(x)², is a 1-D loss with a long, slowly falling shelf left of
0, a drop to the minimum L(4) = 0, and a local minimum on the far side. The
start is x0 = 1.1; ``x_target`` is x* = 4, a global minimizer with optimum 0.
(The node derivative at 4 is t = −0.75, so S also crosses zero once more, at
x ≈ 4.1163: a second global minimizer.) Beyond, L has a local minimum at
x ≈ 5.846 of value ≈ 0.731, just before the node S(6) = 1. The solved level is
0.01, that is |S(x)| ≤ 0.1: near one of the two roots, well below that local
minimum.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from voidgrad.problems.base import Point
from voidgrad.problems.checks import check_threshold
from voidgrad.validation import is_number

__all__ = ["AKIMA_NODES", "AKIMA_VALUES", "AkimaProblem", "AkimaSpline"]

AKIMA_NODES = (-100.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0)
"""The node positions of the ZeroGrads Akima toy."""

AKIMA_VALUES = (9.0, 7.5, 7.0, 6.5, 6.0, 4.0, 3.5, 0.0, 2.0, 1.0, 6.0, 8.0, 9.0)
"""The spline's values at :data:`AKIMA_NODES`."""


class AkimaSpline:
    """Akima's C¹ piecewise-cubic interpolant through ``(x, y)`` (see the module docstring).

    Args:
        x: the nodes, at least 3 strictly increasing finite numbers.
        y: the values at the nodes, finite, as many as ``x``.

    Attributes:
        nodes, values: the nodes and values, float64 arrays ``[n]``.
        slopes: the node derivatives t_i, a float64 array ``[n]``.

    Examples:
        >>> from voidgrad.problems import AkimaSpline
        >>> spline = AkimaSpline([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 0.0, 1.0])
        >>> spline.value(1.0), spline.value(2.0)  # it interpolates the nodes
        (1.0, 0.0)
        >>> 0.0 < spline.value(0.5) < 1.0
        True
    """

    def __init__(self, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> None:
        nodes = _finite_vector("x", x)
        values = _finite_vector("y", y)
        if nodes.size < 3:
            raise ValueError(f"x must hold at least 3 nodes; got {nodes.size}")
        if values.shape != nodes.shape:
            raise ValueError(f"y must hold as many values as x ({nodes.size}); got {values.size}")
        widths = np.diff(nodes)
        if not (widths > 0).all():
            raise ValueError(f"x must be strictly increasing; got {nodes.tolist()}")
        m = np.diff(values) / widths
        left_1 = 2 * m[0] - m[1]
        left_2 = 2 * left_1 - m[0]
        right_1 = 2 * m[-1] - m[-2]
        right_2 = 2 * right_1 - m[-1]
        # extended[k + 2] = m_k for k = −2 … n
        extended = np.concatenate([[left_2, left_1], m, [right_1, right_2]])
        before = extended[1:-2]  # m_{i−1}
        after = extended[2:-1]  # m_i
        w1 = np.abs(extended[3:] - after)  # |m_{i+1} − m_i|
        w2 = np.abs(before - extended[:-3])  # |m_{i−1} − m_{i−2}|
        total = w1 + w2
        weighted = total > 1e-9 * total.max()
        slopes = (before + after) / 2
        slopes[weighted] = (w1 * before + w2 * after)[weighted] / total[weighted]
        self.nodes = nodes
        self.values = values
        self.slopes = slopes
        self._c = (3 * m - 2 * slopes[:-1] - slopes[1:]) / widths
        self._d = (slopes[:-1] + slopes[1:] - 2 * m) / widths**2
        self._knots = tuple(nodes.tolist())
        self._pieces: tuple[tuple[float, float, float, float], ...] = tuple(
            zip(
                values[:-1].tolist(),
                slopes[:-1].tolist(),
                self._c.tolist(),
                self._d.tolist(),
                strict=True,
            )
        )

    def __call__(self, x: float | np.ndarray) -> np.ndarray:
        """S at each entry of ``x`` (float64, same shape), x clamped to the node range."""
        at = np.clip(np.asarray(x, dtype=np.float64), self.nodes[0], self.nodes[-1])
        k = np.clip(np.searchsorted(self.nodes, at, side="right") - 1, 0, self.nodes.size - 2)
        s = at - self.nodes[k]
        return self.values[k] + s * (self.slopes[k] + s * (self._c[k] + s * self._d[k]))

    def value(self, x: float) -> float:
        """S(x) for one Python float: the same number as ``self(x)``, without numpy's overhead."""
        at = min(max(x, self._knots[0]), self._knots[-1])
        k = min(bisect.bisect_right(self._knots, at) - 1, len(self._knots) - 2)
        y, t, c, d = self._pieces[k]
        s = at - self._knots[k]
        return y + s * (t + s * (c + s * d))

    def __repr__(self) -> str:
        return f"AkimaSpline(x={self.nodes.tolist()}, y={self.values.tolist()})"


class AkimaProblem:
    """Minimize L(x) = S(x)² for the Akima spline S of the ZeroGrads toy (module docstring).

    ``render(x)`` draws a plot of the loss curve: a float32 image
    ``[height, width]`` (default 64 × 128) over x ∈ ``window`` = [−2, 10] and
    L ∈ [0, L_max], L_max the largest loss on the plotted grid. Column j samples
    the cell centre x_j; the pixel in row ⌊L(x_j)/L_max · height⌋ (clipped) is 1,
    rows growing with L (show with ``origin="lower"``); the column holding the
    current x, if inside the window, is 0.5 elsewhere.

    Args:
        start: the start x0 (a finite number, default 1.1).
        threshold: the solved level (default 0.01, i.e. |S(x)| ≤ 0.1).

    Attributes:
        name: ``"akima"``; dim: 1.
        x0, x_target: float64 tensors ``[1]``: the start and x* = 4.
        optimum: 0.0; threshold: the solved level.
        spline: the :class:`AkimaSpline` S.

    Examples:
        >>> from voidgrad.problems import AkimaProblem
        >>> problem = AkimaProblem()
        >>> problem.dim, problem.x_target
        (1, tensor([4.], dtype=torch.float64))
        >>> problem.loss(problem.x_target), problem.loss(problem.x0) > problem.threshold
        (0.0, True)
    """

    name = "akima"
    dim = 1
    optimum = 0.0
    window = (-2.0, 10.0)

    def __init__(self, start: float = 1.1, threshold: float | None = None) -> None:
        if not is_number(start) or not math.isfinite(start):
            raise ValueError(f"start must be a finite number; got {start!r}")
        threshold = check_threshold(threshold)
        self.spline = AkimaSpline(AKIMA_NODES, AKIMA_VALUES)
        self.threshold = 0.01 if threshold is None else threshold
        self.x0 = torch.tensor([float(start)], dtype=torch.float64)
        self.x_target = torch.tensor([4.0], dtype=torch.float64)

    def loss(self, x: Point) -> float:
        """L(x) = S(x)² for one point ``x`` of shape ``[1]``, as a Python float."""
        return self.spline.value(self._scalar(x)) ** 2

    def loss_batch(self, X: torch.Tensor | Any) -> torch.Tensor:
        """L of each row of ``X`` ``[n, 1]``: a float64 tensor ``[n]`` on ``X``'s device."""
        batch = torch.as_tensor(X)
        if batch.ndim != 2 or batch.shape[1] != 1:
            raise ValueError(f"X must have shape [n, 1]; got shape {tuple(batch.shape)}")
        points = batch.detach().cpu().numpy().astype(np.float64)[:, 0]
        if not np.isfinite(points).all():
            raise ValueError("X must hold finite numbers only")
        return torch.from_numpy(self.spline(points) ** 2).to(batch.device)

    def render(self, x: Point, width: int = 128, height: int = 64) -> torch.Tensor:
        """A plot of the loss curve with ``x`` marked: float32 ``[height, width]`` (class doc)."""
        for label, pixels in (("width", width), ("height", height)):
            if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 2:
                raise ValueError(f"{label} must be an int >= 2 (pixels); got {pixels!r}")
        here = self._scalar(x)
        low, high = self.window
        grid = low + (np.arange(width) + 0.5) * (high - low) / width
        curve = self.spline(grid) ** 2
        rows = np.clip((curve / curve.max() * height).astype(np.int64), 0, height - 1)
        image = np.zeros((height, width), dtype=np.float32)
        if low <= here < high:
            image[:, int((here - low) / (high - low) * width)] = 0.5
        image[rows, np.arange(width)] = 1.0
        return torch.from_numpy(image)

    def _scalar(self, x: Point) -> float:
        """The one finite number in ``x`` (shape ``[1]``), or a ValueError."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        try:
            point = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"x must hold 1 number; got a {type(x).__name__}") from None
        if point.shape != (1,):
            raise ValueError(f"x must hold 1 number (shape [1]); got shape {point.shape}")
        if not np.isfinite(point[0]):
            raise ValueError(f"x must hold a finite number; got {point.tolist()}")
        return float(point[0])

    def __repr__(self) -> str:
        return f"AkimaProblem(start={float(self.x0[0])}, threshold={self.threshold})"


def _finite_vector(name: str, value: Sequence[float] | np.ndarray) -> np.ndarray:
    try:
        vector = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers; got {value!r}") from None
    if vector.ndim != 1 or not np.isfinite(vector).all():
        raise ValueError(f"{name} must be a 1-D sequence of finite numbers; got {value!r}")
    return vector
