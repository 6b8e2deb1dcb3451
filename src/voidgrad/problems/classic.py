r"""Classic smooth test functions: sphere, Rosenbrock and Rastrigin in any dimension.

For x ∈ ℝ^d,

    sphere:      L(x) = Σ_{i=1}^{d} x_i²,
    Rosenbrock:  L(x) = Σ_{i=1}^{d−1} [100 (x_{i+1} − x_i²)² + (1 − x_i)²]      (d ≥ 2),
    Rastrigin:   L(x) = Σ_{i=1}^{d} [x_i² + A (1 − cos 2π x_i)],  A = 10,

the last being the usual 10·d + Σ (x_i² − 10 cos 2π x_i) written so that it is
exactly 0 at 0. Each has optimum L* = 0, at x* = 0 (sphere, Rastrigin) and at
x* = (1, …, 1) (Rosenbrock).

Starts are seeded: a ``torch.Generator`` seeded with ``seed`` draws u ~ U[0, 1)^d
(float64) and

    sphere, Rastrigin:  x0 = 5.12 · (2u − 1),              uniform in [−5.12, 5.12]^d,
    Rosenbrock:         x0 = c + 0.5 · (2u − 1),  c = (−1.2, 1, −1.2, 1, …),

that is the usual Rastrigin box, and the classic start of Rosenbrock (1960),
(−1.2, 1), repeated and jittered uniformly by at most 0.5 per coordinate.

Solved levels (``threshold``; x is solved when L(x) ≤ threshold) are fixed
numbers, independent of the dimension and the start, and can be overridden:

    sphere:      1e-4, that is ‖x − x*‖ ≤ 0.01;
    Rosenbrock:  1e-4, at the bottom of the curved valley, near x*;
    Rastrigin:   0.5, below every other local minimum (a coordinate with
                 |x_i| ≥ 1/2 adds at least ≈ 0.995), so L(x) ≤ 0.5 forces
                 |x_i| < 0.051 for all i: the global basin has been found.

``loss`` takes one point and returns a Python float; ``loss_batch`` evaluates
the rows of a matrix ``[n, d]`` at once. ``render(x)`` draws the landscape on a
2-D slice: the loss on a ``size`` × ``size`` grid of cell centres over a fixed
window in the first two coordinates, the others held at ``x``; columns follow
x_1 and rows x_2 (show with ``origin="lower"``). For d = 1 it is one row ``[1, size]``.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np
import torch

from voidgrad.problems.base import Point
from voidgrad.problems.checks import as_point, check_threshold
from voidgrad.validation import check_seed

__all__ = ["Rastrigin", "Rosenbrock", "Sphere"]

Array = TypeVar("Array", torch.Tensor, np.ndarray)


class _ClassicProblem:
    """Shared machinery of the classic functions: validation, starts, batching, rendering.

    Subclasses set ``name``, ``min_dim``, ``default_threshold`` and ``window``
    (the render window (low, high) per rendered axis) and implement
    ``_values`` (the loss of the rows of a tensor ``[..., d]``), ``_start`` and
    ``_minimizer``.
    """

    name: str
    min_dim: int = 1
    default_threshold: float
    window: tuple[tuple[float, float], tuple[float, float]]
    optimum = 0.0

    def __init__(self, dim: int = 10, seed: int = 0, threshold: float | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < self.min_dim:
            raise ValueError(f"dim must be an int >= {self.min_dim} for {self.name}; got {dim!r}")
        check_seed(seed, optional=False)
        threshold = check_threshold(threshold)
        self.dim = dim
        self.seed = seed
        self.threshold = self.default_threshold if threshold is None else threshold
        generator = torch.Generator().manual_seed(seed)
        unit = torch.rand(dim, generator=generator, dtype=torch.float64)
        self.x0 = self._start(unit)
        self.x_target: torch.Tensor = self._minimizer()

    def loss(self, x: Point) -> float:
        """L(x) for one point ``x`` of shape ``[dim]``, as a Python float."""
        return float(self._values(as_point(x, self.dim).numpy()))

    def loss_batch(self, X: torch.Tensor | Any) -> torch.Tensor:
        """L of each row of ``X`` ``[n, dim]``: a tensor ``[n]``.

        The result has ``X``'s floating dtype and device (float64 for a
        non-floating ``X``, which may also be an array or nested sequence).
        """
        batch = torch.as_tensor(X)
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"X must have shape [n, {self.dim}]; got shape {tuple(batch.shape)}")
        if not batch.is_floating_point():
            batch = batch.to(torch.float64)
        if not bool(torch.isfinite(batch).all()):
            raise ValueError("X must hold finite numbers only")
        return self._values(batch)

    def render(self, x: Point, size: int = 64) -> torch.Tensor:
        """The loss on a 2-D slice through ``x``: float32 ``[size, size]`` (``[1, size]`` if d = 1).

        Pixel (row i, column j) holds L at x with x_1 and x_2 replaced by the
        centres of cell j of the first window axis and cell i of the second.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError(f"size must be an int >= 2 (pixels); got {size!r}")
        point = as_point(x, self.dim).numpy()
        axes = [low + (np.arange(size) + 0.5) * (high - low) / size for low, high in self.window]
        grid = np.tile(point, (size if self.dim >= 2 else 1, size, 1))
        grid[:, :, 0] = axes[0][np.newaxis, :]
        if self.dim >= 2:
            grid[:, :, 1] = axes[1][:, np.newaxis]
        return torch.from_numpy(self._values(grid).astype(np.float32))

    def _values(self, X: Array) -> Array:
        """L of each row of ``X`` ``[..., d]`` (a tensor or an array): ``[...]``."""
        raise NotImplementedError

    def _start(self, unit: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _minimizer(self) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, seed={self.seed}, threshold={self.threshold})"
        )


class Sphere(_ClassicProblem):
    """L(x) = Σ x_i²: optimum 0 at x* = 0, start uniform in [−5.12, 5.12]^d.

    Args:
        dim: the dimension d (an int ≥ 1).
        seed: a non-negative int seeding the start.
        threshold: the solved level (default 1e-4, i.e. within 0.01 of x*).

    Examples:
        >>> import torch
        >>> from voidgrad.problems import Sphere
        >>> problem = Sphere(dim=3, seed=0)
        >>> problem.loss(torch.tensor([1.0, 2.0, 0.0]))
        5.0
        >>> problem.loss_batch(torch.ones(4, 3))  # one loss per row
        tensor([3., 3., 3., 3.])
    """

    name = "sphere"
    default_threshold = 1e-4
    window = ((-5.12, 5.12), (-5.12, 5.12))

    def _values(self, X: Array) -> Array:
        return (X * X).sum(-1)

    def _start(self, unit: torch.Tensor) -> torch.Tensor:
        return 5.12 * (2 * unit - 1)

    def _minimizer(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=torch.float64)


class Rosenbrock(_ClassicProblem):
    """L(x) = Σ_{i<d} [100 (x_{i+1} − x_i²)² + (1 − x_i)²]: optimum 0 at x* = (1, …, 1).

    The start is (−1.2, 1, −1.2, 1, …) jittered uniformly by at most 0.5 per
    coordinate. The render window is [−2, 2] × [−1, 3], the classic banana view.

    Args:
        dim: the dimension d (an int ≥ 2).
        seed: a non-negative int seeding the start.
        threshold: the solved level (default 1e-4).

    Examples:
        >>> import torch
        >>> from voidgrad.problems import Rosenbrock
        >>> problem = Rosenbrock(dim=4)
        >>> problem.x_target
        tensor([1., 1., 1., 1.], dtype=torch.float64)
        >>> problem.loss(problem.x_target), problem.loss(torch.zeros(4))
        (0.0, 3.0)
    """

    name = "rosenbrock"
    min_dim = 2
    default_threshold = 1e-4
    window = ((-2.0, 2.0), (-1.0, 3.0))

    def _values(self, X: Array) -> Array:
        head, tail = X[..., :-1], X[..., 1:]
        valley = tail - head * head
        return (100 * valley * valley + (1 - head) ** 2).sum(-1)

    def _start(self, unit: torch.Tensor) -> torch.Tensor:
        classic = torch.tensor([-1.2, 1.0], dtype=torch.float64).repeat(self.dim)[: self.dim]
        return classic + 0.5 * (2 * unit - 1)

    def _minimizer(self) -> torch.Tensor:
        return torch.ones(self.dim, dtype=torch.float64)


class Rastrigin(_ClassicProblem):
    """L(x) = Σ [x_i² + 10 (1 − cos 2π x_i)]: optimum 0 at x* = 0.

    Every integer point is (close to) a local minimum, of value ≈ Σ k_i² there.

    Args:
        dim: the dimension d (an int ≥ 1).
        seed: a non-negative int seeding the start, uniform in [−5.12, 5.12]^d.
        threshold: the solved level (default 0.5, below every other local minimum).

    Examples:
        >>> import torch
        >>> from voidgrad.problems import Rastrigin
        >>> problem = Rastrigin(dim=2)
        >>> problem.loss(torch.zeros(2)), round(problem.loss(torch.ones(2)), 6)  # near a local min
        (0.0, 2.0)
        >>> problem.loss(torch.ones(2)) > problem.threshold
        True
    """

    name = "rastrigin"
    default_threshold = 0.5
    window = ((-5.12, 5.12), (-5.12, 5.12))
    amplitude = 10.0

    def _values(self, X: Array) -> Array:
        cos = torch.cos if isinstance(X, torch.Tensor) else np.cos
        return (X * X + self.amplitude * (1 - cos(2 * math.pi * X))).sum(-1)

    def _start(self, unit: torch.Tensor) -> torch.Tensor:
        return 5.12 * (2 * unit - 1)

    def _minimizer(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=torch.float64)
