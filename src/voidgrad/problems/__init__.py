"""Test problems: black boxes with a known answer, built by name through :func:`make`.

Every problem satisfies the :class:`~voidgrad.problems.base.Problem` protocol:
``name``, ``dim``, ``x0`` (the start, a tensor ``[dim]``), ``x_target`` (a known
minimizer, a tensor ``[dim]``, or ``None``), ``optimum`` (the minimal loss),
``threshold`` (the loss level counted as solved: ``loss(x) <= threshold``),
``render(x)`` (a picture) and ``loss(x) -> float``. The registered problems:

* ``"plateau"``: :class:`PlateauProblem`, find a square from its hard-edged
  rendering; the loss is piecewise constant (deterministic);
* ``"sphere"``, ``"rosenbrock"``, ``"rastrigin"``: :class:`Sphere`,
  :class:`Rosenbrock`, :class:`Rastrigin`, the classic functions in ``dim``
  dimensions (default 10) with seeded starts and a vectorized ``loss_batch``;
* ``"akima"``: :class:`AkimaProblem`, the 1-D Akima spline toy of ZeroGrads
  (deterministic);
* ``"digits_mlp"``: :class:`DigitsMLPProblem`, the 35 152 weights of an MLP
  whose 8-bit-quantized output must reproduce a digit;
* ``"texture"``: :class:`TextureProblem`, a size × size RGB texture (196 608
  parameters at 256) under a scale-independent, quantized MSE;
* ``"splines"``: :class:`SplinesProblem`, support points of curves drawn by a
  hard rasterizer;
* ``"caustic"``: :class:`CausticProblem`, a 32 × 32 B-spline glass heightfield
  whose hard-splatted caustic must match a target (1 024 parameters).

Not a black box to minimize but a distribution to match (for
:func:`voidgrad.adversarial`): :class:`SupershapeMatching`, whose target images
are hard-edged supershapes (:func:`render_supershapes`) drawn from a hidden
log-normal distribution of two shape parameters.

For the distributional estimators (``vg.expectation``): :class:`DitherProblem`,
dithering by expected SSIM, one categorical per pixel (:class:`SSIM` is the
differentiable, batched SSIM it uses).

Task families for meta-learning (:mod:`voidgrad.meta`): :class:`TextureFamily`
(procedural textures, f(u, v) → RGB) and :class:`BRDFFamily` (GGX materials,
f(ω_i, ω_o) → RGB), each with held-out tasks and a suitable :class:`FourierMLP`.

Examples:
    >>> import voidgrad as vg
    >>> problem = vg.problems.make("plateau")
    >>> problem.dim, problem.loss(problem.x_target) == problem.optimum
    (2, True)
    >>> problem.loss(problem.x0) > problem.threshold  # the start is on the plateau
    True
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, overload

from voidgrad.problems.akima import AkimaProblem, AkimaSpline
from voidgrad.problems.appearance import BRDFFamily, FourierMLP, TextureFamily
from voidgrad.problems.base import Point, Problem
from voidgrad.problems.caustic import CausticProblem
from voidgrad.problems.classic import Rastrigin, Rosenbrock, Sphere
from voidgrad.problems.digits_mlp import DigitsMLPProblem
from voidgrad.problems.dither import SSIM, DitherProblem
from voidgrad.problems.plateau import PlateauProblem
from voidgrad.problems.splines import SplinesProblem
from voidgrad.problems.supershape import LearnedLogNormal, SupershapeMatching, render_supershapes
from voidgrad.problems.texture import TextureProblem
from voidgrad.validation import check_seed

PROBLEMS: dict[str, type[Problem]] = {
    "plateau": PlateauProblem,
    "sphere": Sphere,
    "rosenbrock": Rosenbrock,
    "rastrigin": Rastrigin,
    "akima": AkimaProblem,
    "digits_mlp": DigitsMLPProblem,
    "texture": TextureProblem,
    "splines": SplinesProblem,
    "caustic": CausticProblem,
}
"""The problems :func:`make` builds, by name.

Examples:
    >>> from voidgrad.problems import PROBLEMS
    >>> sorted(PROBLEMS)[:3]
    ['akima', 'caustic', 'digits_mlp']
    >>> PROBLEMS["sphere"](dim=2).dim
    2
"""

__all__ = [
    "PROBLEMS",
    "SSIM",
    "AkimaProblem",
    "AkimaSpline",
    "BRDFFamily",
    "CausticProblem",
    "DigitsMLPProblem",
    "DitherProblem",
    "FourierMLP",
    "LearnedLogNormal",
    "PlateauProblem",
    "Point",
    "Problem",
    "Rastrigin",
    "Rosenbrock",
    "Sphere",
    "SplinesProblem",
    "SupershapeMatching",
    "TextureFamily",
    "TextureProblem",
    "make",
    "render_supershapes",
]


@overload
def make(name: Literal["plateau"], seed: int = 0, **kwargs: Any) -> PlateauProblem: ...
@overload
def make(name: Literal["sphere"], seed: int = 0, **kwargs: Any) -> Sphere: ...
@overload
def make(name: Literal["rosenbrock"], seed: int = 0, **kwargs: Any) -> Rosenbrock: ...
@overload
def make(name: Literal["rastrigin"], seed: int = 0, **kwargs: Any) -> Rastrigin: ...
@overload
def make(name: Literal["akima"], seed: int = 0, **kwargs: Any) -> AkimaProblem: ...
@overload
def make(name: str, seed: int = 0, **kwargs: Any) -> Problem: ...


def make(name: str, seed: int = 0, **kwargs: Any) -> Problem:
    """Build the problem called ``name`` with constructor arguments ``kwargs``.

    Args:
        name: one of ``PROBLEMS``.
        seed: a non-negative int, passed to the problems with random instances
            (those whose constructor takes a ``seed``: the classic functions,
            whose start it draws); the deterministic ones (plateau, akima)
            ignore it.
        **kwargs: passed to the problem's constructor (e.g. ``dim=20``).

    Raises:
        ValueError: for an unknown name (listing the known ones) or a bad seed.

    Examples:
        >>> from voidgrad import problems
        >>> problem = problems.make("sphere", seed=0, dim=3)
        >>> problem.name, problem.dim, tuple(problem.x0.shape)
        ('sphere', 3, (3,))
        >>> problem.loss(problem.x_target) == problem.optimum
        True
        >>> problem.loss(problem.x0) > problem.threshold  # not solved at the start
        True
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; known problems: {sorted(PROBLEMS)}")
    check_seed(seed, optional=False)
    factory = PROBLEMS[name]
    if "seed" in inspect.signature(factory).parameters:
        kwargs = {**kwargs, "seed": seed}
    return factory(**kwargs)
