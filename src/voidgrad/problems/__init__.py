"""Test problems: black boxes with a known answer, built by name through :func:`make`.

Every problem has ``name``, ``dim``, ``x0`` (the start, a tensor ``[dim]``),
``x_target`` (the known answer), ``render(x)`` and ``loss(x) -> float``.
"""

from __future__ import annotations

from typing import Any

from voidgrad.problems.plateau import PlateauProblem

PROBLEMS: dict[str, type[PlateauProblem]] = {"plateau": PlateauProblem}

__all__ = ["PROBLEMS", "PlateauProblem", "make"]


def make(name: str, seed: int = 0, **kwargs: Any) -> PlateauProblem:
    """Build the problem called ``name`` with constructor arguments ``kwargs``.

    Args:
        name: one of ``PROBLEMS`` (now just ``"plateau"``).
        seed: a non-negative int for problems with random instances; the
            plateau problem is deterministic and ignores it.
        **kwargs: passed to the problem's constructor.

    Raises:
        ValueError: for an unknown name (listing the known ones) or a bad seed.
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; known problems: {sorted(PROBLEMS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    return PROBLEMS[name](**kwargs)
