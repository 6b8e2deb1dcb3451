"""A ``vg.minimize`` method, built: the run-loop algorithm for a method name and its options.

:func:`build_algorithm` is what ``vg.minimize`` does once its arguments are
checked, and what ``method="auto"`` does with the method it chose: look the
method up in :mod:`voidgrad.registry`, fill in the budget's defaults
(:mod:`voidgrad.optimize.defaults`) and return a
:class:`~voidgrad.optimize.algorithms.GradientDescent` or a
:class:`~voidgrad.optimize.algorithms.DerivativeFree`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from voidgrad.estimators.scheduled import ScheduledSigma
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.optimize.algorithms import (
    DerivativeFree,
    GradientDescent,
    LrSchedule,
    MinimizeAlgorithm,
    OptimizerSpec,
)
from voidgrad.optimize.best import BestPoint
from voidgrad.optimize.defaults import (
    AUTO,
    default_importance,
    default_lr_schedule,
    default_sigma_schedule,
)
from voidgrad.registry import Method
from voidgrad.validation import check_int

#: ``vg.minimize``'s learning rate when the caller gives none (gradient methods).
DEFAULT_LR = 1e-2


def build_algorithm(
    entry: Method,
    options: Mapping[str, Any],
    *,
    evaluator: Evaluator,
    x0: torch.Tensor,
    budget: int,
    seed: int,
    optimizer: OptimizerSpec,
    lr: float | None,
    lr_schedule: LrSchedule | str | None,
    best: BestPoint,
    spent: int = 0,
) -> MinimizeAlgorithm:
    """The algorithm that runs ``entry`` (a blackbox or derivative-free method) with ``options``.

    ``budget`` is the run's and ``spent`` what went before the method started
    (``method="auto"``'s probe): the method gets ``budget - spent``, and the
    budget's defaults are chosen for ``budget``.

    For a gradient method, without a ``schedule`` in ``options`` a σ schedule
    anneals over the budget's steps and holds on flat steps, without
    ``importance`` the kernel is the dimension's, ``lr_schedule="auto"``
    is the budget's (see :mod:`voidgrad.optimize.defaults`), and ``lr=None``
    is ``DEFAULT_LR`` (0.01).

    Raises:
        ValueError: ``budget`` is smaller than one step of the method.
    """
    check_int("spent", spent, 0)
    method = entry.name
    if entry.kind == "derivative-free":
        start = entry.make(seed=seed, **options)
        return DerivativeFree(evaluator, x0, method, start, budget - spent, best)
    if entry.kind != "blackbox":
        raise ValueError(f"method {method!r} is of kind {entry.kind!r}: not one step by step")
    estimator = entry.make(seed=seed, **options)
    cost = estimator.evaluations(x0.numel())
    if cost > budget - spent:
        left = "" if spent == 0 else f" (less {spent} spent before it)"
        raise ValueError(
            f"budget {budget}{left} is too small for one step of {method!r}, which needs "
            f"{cost} evaluations"
        )
    steps = (budget - spent) // cost
    chosen: dict[str, Any] = {}
    if "schedule" not in options and isinstance(estimator, ScheduledSigma):
        chosen["schedule"] = default_sigma_schedule(estimator.sigma0, steps)
    if "importance" not in options and hasattr(estimator, "importance"):
        chosen["importance"] = default_importance(x0.numel())
    if chosen:
        estimator = entry.make(seed=seed, **options, **chosen)
    if isinstance(lr_schedule, str):
        if lr_schedule != AUTO:
            raise ValueError(f"lr_schedule must be a callable, None or 'auto'; got {lr_schedule!r}")
        lr_schedule = default_lr_schedule(x0.numel(), budget, steps)
    return GradientDescent(
        evaluator,
        x0,
        estimator,
        optimizer,
        DEFAULT_LR if lr is None else lr,
        lr_schedule,
        best,
        hold_when_flat="schedule" in chosen,
    )
