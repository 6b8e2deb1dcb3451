"""Real external engines as black boxes: :mod:`~voidgrad.integrations.mitsuba` (Mitsuba 3)
and :mod:`~voidgrad.integrations.blender` (Blender).

Each module imports its engine lazily, so ``import voidgrad`` never needs it;
using one without its extra installed raises an ImportError that names the
extra (``pip install voidgrad[mitsuba]``). What both renderers share — checking
the names θ is written into, and cutting θ into one slice per name — is here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_parameter_names(parameters: object, what: str) -> None:
    """Accept a non-empty sequence of names (``what``, e.g. "bpy.data paths") or a function."""
    if callable(parameters):
        return
    if isinstance(parameters, str) or not (
        isinstance(parameters, Sequence) and all(isinstance(name, str) for name in parameters)
    ):
        raise TypeError(f"parameters must be a sequence of {what} or a function")
    if not parameters:
        raise ValueError("parameters names no scene parameter")


def split_theta(
    theta: torch.Tensor, sizes: Sequence[int], names: Sequence[str]
) -> list[list[float]]:
    """θ ``[d]`` cut into consecutive slices of ``sizes``, one per name; d must be their sum."""
    dim = sum(sizes)
    if theta.numel() != dim:
        raise ValueError(f"θ must have {dim} numbers for {list(names)}; got {theta.numel()}")
    slices, start = [], 0
    for size in sizes:
        slices.append(theta[start : start + size].tolist())
        start += size
    return slices
