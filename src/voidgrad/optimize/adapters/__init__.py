"""The derivative-free adapters behind ``vg.minimize``, and ``make_dfo`` that builds them.

Each adapter puts an optimizer in the ask/tell protocol of
:mod:`voidgrad.optimize.dfo`; one module per library:

``"cma"``
    pycma's ``CMAEvolutionStrategy`` (:mod:`~voidgrad.optimize.adapters.cma`):
    full CMA-ES up to ``FULL_CMA_MAX_DIM`` dimensions, separable above.
``"nevergrad:<name>"`` and ``"ga"``
    any optimizer of ``nevergrad.optimizers.registry``, and a real-coded
    genetic algorithm built from nevergrad's ``EvolutionStrategy``
    (:mod:`~voidgrad.optimize.adapters.nevergrad`).
``"annealing"``
    generalized simulated annealing with local search, scipy's
    ``dual_annealing`` algorithm written in ask/tell form
    (:mod:`~voidgrad.optimize.adapters.annealing`); it needs no library.

What they share is in :mod:`~voidgrad.optimize.adapters.base` (failed
evaluations, the replay log behind ``state()``/``restore()``) and
:mod:`~voidgrad.optimize.adapters.runtime` (optional imports, a private numpy
global RNG, single-threaded BLAS). The same ``seed`` gives the same sequence of
asked points, and no adapter changes numpy's global RNG as the caller sees it.
Every adapter has ``close()`` (idempotent; none holds a resource) and
``stop_reason``: None unless the optimizer itself has ended the run (then why;
``ask`` returns None from then on). An ``ask`` that returns None because
``limit`` is too small leaves it None.

pycma and nevergrad are optional: they are imported when an adapter that needs
them is built, and a missing one raises ImportError naming
``pip install 'voidgrad[bench]'``.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import torch

from voidgrad.optimize.adapters.annealing import AnnealingAdapter
from voidgrad.optimize.adapters.base import FAILED_LOSS_BEFORE_ANY_FINITE, AdapterBase
from voidgrad.optimize.adapters.cma import FULL_CMA_MAX_DIM, CMAAdapter, resolve_cma_diagonal
from voidgrad.optimize.adapters.nevergrad import (
    NEVERGRAD_MAX_LOSS,
    NevergradAdapter,
    make_ga,
    make_nevergrad,
)
from voidgrad.optimize.dfo import DFOAdapter
from voidgrad.validation import check_int, check_options

__all__ = [
    "FAILED_LOSS_BEFORE_ANY_FINITE",
    "FULL_CMA_MAX_DIM",
    "KNOWN_DFO",
    "NEVERGRAD_MAX_LOSS",
    "AdapterBase",
    "AnnealingAdapter",
    "CMAAdapter",
    "NevergradAdapter",
    "make_dfo",
    "resolve_cma_diagonal",
]

#: Method names accepted by :func:`make_dfo` (for error messages and docs).
KNOWN_DFO: tuple[str, ...] = ("cma", "annealing", "ga", "nevergrad:<name>")

#: The largest seed: numpy's legacy RandomState, which pycma and nevergrad draw from, takes
#: seeds below 2**32.
SEED_MAX = 2**32 - 1

_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def make_dfo(
    method: str,
    x0: torch.Tensor,
    *,
    budget: int,
    seed: int,
    workers: int = 1,
    **options: Any,
) -> DFOAdapter:
    """Build the ask/tell adapter for a derivative-free ``method``, started at ``x0``.

    Args:
        method: ``"cma"``, ``"annealing"``, ``"ga"`` or ``"nevergrad:<name>"``
            with ``<name>`` a key of ``nevergrad.optimizers.registry``.
        x0: the starting point, a 1-D tensor of d finite values.
        budget: the number of evaluations the driver will allow (>= 1). The
            driver enforces it; nevergrad's optimizers plan with it.
        seed: an integer in [0, 2**32); the same seed gives the same run.
        workers: how many evaluations the driver runs in parallel (>= 1).
            nevergrad asks up to ``workers`` candidates per batch; CMA-ES always
            asks its whole population and annealing one point at a time.
        **options: method-specific options:

            - ``"cma"``: ``sigma0``, ``popsize``, ``diagonal``, ``cma_options``
              (see :class:`~voidgrad.optimize.adapters.cma.CMAAdapter`).
            - ``"nevergrad:<name>"``: ``sigma`` (see
              :class:`~voidgrad.optimize.adapters.nevergrad.NevergradAdapter`).
            - ``"ga"``: ``popsize`` (parents, default 40), ``offsprings``
              (children per selection round, default 20),
              ``recombination_ratio`` (probability of crossover, default 1.0)
              and ``sigma`` (mutation step, default 1.0); see
              :func:`~voidgrad.optimize.adapters.nevergrad.make_ga`.
            - ``"annealing"``: ``bounds``, ``maxiter``, ``initial_temp``,
              ``restart_temp_ratio``, ``visit``, ``accept``, ``no_local_search``
              (see :class:`~voidgrad.optimize.adapters.annealing.AnnealingAdapter`).

    Raises:
        ValueError: an unknown method, nevergrad name or option, or an invalid
            argument (the message names it).
        ImportError: the library behind ``method`` is not installed.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    x = _as_start_point(x0)
    check_int("budget", budget, 1)
    if check_int("seed", seed, 0) > SEED_MAX:
        raise ValueError(f"seed must be an int in [0, 2**32 - 1]; got {seed!r}")
    check_int("workers", workers, 1)
    if method == "cma":
        check_options(
            f"method={method!r}", options, {"sigma0", "popsize", "diagonal", "cma_options"}
        )
        return CMAAdapter(x, seed=seed, **options)
    if method == "annealing":
        check_options(f"method={method!r}", options, {*AnnealingAdapter.OPTIONS, "bounds"})
        return AnnealingAdapter(x, budget=budget, seed=seed, **options)
    if method == "ga":
        known = {"popsize", "offsprings", "recombination_ratio", "sigma"}
        check_options(f"method={method!r}", options, known)
        return make_ga(x, budget=budget, seed=seed, workers=workers, **options)
    if method.startswith("nevergrad:"):
        check_options(f"method={method!r}", options, {"sigma"})
        return make_nevergrad(method, x, budget=budget, seed=seed, workers=workers, **options)
    close = difflib.get_close_matches(method, ["cma", "annealing", "ga"], n=3, cutoff=0.5)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise ValueError(
        f"unknown derivative-free method={method!r}{hint}; known: {', '.join(KNOWN_DFO)}"
    )


def _as_start_point(x0: torch.Tensor) -> np.ndarray:
    """``x0`` as a float64 numpy copy; an error unless it is real, finite, non-empty and 1-D."""
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    if x0.dim() != 1 or x0.numel() == 0:
        raise ValueError(f"x0 must be a non-empty 1-D tensor, got shape {tuple(x0.shape)}")
    if x0.is_complex() or not (x0.is_floating_point() or x0.dtype in _INT_DTYPES):
        raise ValueError(f"x0 must be real, got dtype {x0.dtype}")
    x = x0.detach().to("cpu", torch.float64).numpy().copy()
    if not np.all(np.isfinite(x)):
        raise ValueError("x0 must be finite")
    return x
