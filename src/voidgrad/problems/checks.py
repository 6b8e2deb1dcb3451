"""Argument checks every problem shares: seeds, thresholds, points and batches of points."""

from __future__ import annotations

import math
from typing import Any

import torch

from voidgrad.problems.base import Point
from voidgrad.validation import is_number


def check_threshold(threshold: object) -> float | None:
    """``None`` (use the problem's default) or a positive finite number, as a float."""
    if threshold is None:
        return None
    if not is_number(threshold) or not math.isfinite(threshold) or threshold <= 0:  # type: ignore[arg-type, operator]
        raise ValueError(f"threshold must be a positive finite number; got {threshold!r}")
    return float(threshold)  # type: ignore[arg-type]


def all_finite(values: torch.Tensor) -> bool:
    """Whether every entry is finite: a finite sum settles it cheaply, else look at each."""
    return math.isfinite(float(values.sum())) or bool(torch.isfinite(values).all())


def as_point(x: Point, dim: int) -> torch.Tensor:
    """``x`` as a float64 CPU tensor ``[dim]`` of finite numbers, or a ValueError naming ``x``."""
    if isinstance(x, torch.Tensor):
        point = x.detach().to("cpu", torch.float64)
    else:
        try:
            point = torch.as_tensor(x, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"x must hold {dim} numbers; got a {type(x).__name__}") from None
    if point.shape != (dim,):
        raise ValueError(
            f"x must hold {dim} numbers (shape [{dim}]); got shape {tuple(point.shape)}"
        )
    if not all_finite(point):
        raise ValueError("x must hold finite numbers only")
    return point


def as_rows(X: torch.Tensor | Any, dim: int) -> tuple[torch.Tensor, torch.device]:
    """``X`` as float64 CPU rows ``[n, dim]`` of finite numbers, and the device it came on."""
    batch = torch.as_tensor(X)
    if batch.ndim != 2 or batch.shape[1] != dim:
        raise ValueError(f"X must have shape [n, {dim}]; got shape {tuple(batch.shape)}")
    rows = batch.detach().to("cpu", torch.float64)
    if not all_finite(rows):
        raise ValueError("X must hold finite numbers only")
    return rows, batch.device
