r"""What every test problem offers: the :class:`Problem` protocol.

A problem is a scalar black box L: ℝ^dim → ℝ with a known answer. It offers

* ``name``: the key it is registered under in :data:`voidgrad.problems.PROBLEMS`;
* ``dim``: the number of parameters d;
* ``x0``: the start, a tensor ``[d]``;
* ``x_target``: a known minimizer x*, a tensor ``[d]``, or ``None`` when unknown;
* ``optimum``: the known minimal loss L* = min_x L(x) (so L(x*) = L* when
  ``x_target`` is given);
* ``threshold``: a loss level τ ≥ L* that counts as solved, for reporting the
  evaluations needed to reach it: x is solved when L(x) ≤ τ;
* ``loss(x) -> float``: L(x) for a point ``x`` of shape ``[d]``;
* ``render(x) -> Tensor``: a picture of the problem at ``x`` (what a picture is
  depends on the problem and is documented there).

The protocol is structural: a class satisfies it by offering these members,
without inheriting from anything. It is ``runtime_checkable``, so
``isinstance(p, Problem)`` checks that the members exist (not their types).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

Point = Sequence[float] | torch.Tensor | np.ndarray
"""What ``loss`` and ``render`` accept: a tensor, an array or a sequence of d numbers.

Examples:
    >>> import numpy as np, torch
    >>> from voidgrad import problems
    >>> sphere = problems.make("sphere", dim=2)
    >>> sphere.loss([3.0, 4.0]) == sphere.loss(np.array([3.0, 4.0])) == sphere.loss(
    ...     torch.tensor([3.0, 4.0])
    ... )
    True
"""

__all__ = ["Point", "Problem"]


@runtime_checkable
class Problem(Protocol):
    """A scalar black box with a start, a known optimum and a solved level (see module doc).

    Examples:
        >>> from voidgrad.problems import Problem, make
        >>> def solved(problem: Problem, x) -> bool:  # works for every registered problem
        ...     return problem.loss(x) <= problem.threshold
        >>> problem = make("rosenbrock", dim=2)
        >>> solved(problem, problem.x0), solved(problem, problem.x_target)
        (False, True)
    """

    @property
    def name(self) -> str:
        """The name the problem is registered under."""
        ...

    @property
    def dim(self) -> int:
        """The number of parameters d."""
        ...

    @property
    def x0(self) -> torch.Tensor:
        """The start, a tensor ``[d]``."""
        ...

    @property
    def x_target(self) -> torch.Tensor | None:
        """A known minimizer, a tensor ``[d]``, or ``None`` when unknown."""
        ...

    @property
    def optimum(self) -> float:
        """The known minimal loss value L*."""
        ...

    @property
    def threshold(self) -> float:
        """The loss level τ counted as solved: x is solved when ``loss(x) <= threshold``."""
        ...

    def loss(self, x: Point) -> float:
        """The loss at ``x`` (shape ``[d]``) as a Python float."""
        ...

    def render(self, x: Point) -> torch.Tensor:
        """A picture of the problem at ``x`` (shape ``[d]``)."""
        ...
