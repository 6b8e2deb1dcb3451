"""nevergrad's optimizers in the ask/tell protocol (``"nevergrad:<name>"``), and the
genetic algorithm ``"ga"`` built from nevergrad's ``EvolutionStrategy``.

nevergrad draws from a private ``RandomState`` on its parametrization, and runs
on a private numpy global state with BLAS on one thread (see
:mod:`~voidgrad.optimize.adapters.runtime`). Failed evaluations are told as the
stand-in loss of :mod:`~voidgrad.optimize.adapters.base`, capped at
``NEVERGRAD_MAX_LOSS``.
"""

from __future__ import annotations

import contextlib
import difflib
from typing import Any

import numpy as np
import torch

from voidgrad.optimize.adapters.base import AdapterBase
from voidgrad.optimize.adapters.runtime import (
    PrivateGlobalRNG,
    SingleThreadBLAS,
    import_optional,
    library_call,
)
from voidgrad.validation import check_int, check_positive, check_unit_interval

#: The largest loss told to nevergrad (it clips at 5e20 with a warning).
NEVERGRAD_MAX_LOSS = 4e20


def make_nevergrad(
    method: str, x0: np.ndarray, *, budget: int, seed: int, workers: int, **options: Any
) -> NevergradAdapter:
    """The ``"nevergrad:<name>"`` method: the optimizer ``<name>`` of nevergrad's registry.

    Raises:
        ValueError: ``<name>`` is not a key of ``nevergrad.optimizers.registry``
            (the message lists close matches).
    """
    ng = import_optional("nevergrad")
    name = method.removeprefix("nevergrad:")
    registry = ng.optimizers.registry
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ValueError(
            f"unknown nevergrad optimizer {name!r} in method={method!r}{hint} "
            f"(the names are the keys of nevergrad.optimizers.registry)"
        )
    return NevergradAdapter(
        method, registry[name], x0, budget=budget, seed=seed, workers=workers, **options
    )


class NevergradAdapter(AdapterBase):
    """A nevergrad optimizer in the ask/tell protocol (``"nevergrad:<name>"`` and ``"ga"``).

    Args:
        name: the method name reported as ``name``.
        optimizer_cls: a nevergrad optimizer class or configured optimizer (a
            value of ``nevergrad.optimizers.registry``).
        x0: the start, the ``init`` of an ``ng.p.Array``.
        budget: passed to nevergrad as ``budget``.
        workers: passed to nevergrad as ``num_workers``.
        seed: seeds the parametrization's own ``random_state``
            (``np.random.RandomState(seed)``), which the optimizer draws from.
        sigma: the Array's mutation scale (``set_mutation(sigma=...)``); most
            nevergrad optimizers scale their initial steps by it. Default 1.0,
            nevergrad's.

    ``ask(limit)`` asks ``min(workers, limit)`` candidates and keeps them for
    ``tell``. ``recommendation()`` is nevergrad's
    ``provide_recommendation().value``. ``restore()`` rebuilds the optimizer
    with the recorded seed and the budget it was first built with (some
    nevergrad optimizers plan with it), whatever the budget of the adapter
    restored into, and replays the recorded batches.
    """

    plans_with_budget = True

    def __init__(
        self,
        name: str,
        optimizer_cls: Any,
        x0: np.ndarray,
        *,
        budget: int,
        seed: int,
        workers: int = 1,
        sigma: float = 1.0,
    ) -> None:
        import_optional("nevergrad")
        super().__init__(name, x0.size, seed=seed, budget=budget)
        sigma = check_positive("sigma", sigma)
        self.workers = workers
        self._optimizer_cls = optimizer_cls
        self._x0 = x0.copy()
        self._sigma = sigma
        self._blas = SingleThreadBLAS()
        self._start()

    def _start(self) -> None:
        ng = import_optional("nevergrad")
        self._globals = PrivateGlobalRNG(self._seed)
        param = ng.p.Array(init=self._x0.copy())
        if self._sigma != 1.0:
            param.set_mutation(sigma=self._sigma)
        param.random_state = np.random.RandomState(self._seed)
        with self._library_call():
            #: The nevergrad optimizer.
            self.optimizer = self._optimizer_cls(
                parametrization=param, budget=self._budget, num_workers=self.workers
            )
        self._candidates: list[Any] = []

    def ask(self, limit: int) -> torch.Tensor | None:
        """``min(workers, limit)`` candidates ``[k, d]``, or None if ``limit`` is 0."""
        self._check_limit(limit)
        k = min(self.workers, limit)
        if k == 0:
            return None
        with self._library_call():
            self._candidates = [self.optimizer.ask() for _ in range(k)]
        values = [np.asarray(c.value, dtype=np.float64).ravel() for c in self._candidates]
        return self._hand_out(np.stack(values))

    def tell(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """Tell each asked candidate its loss (failures as a worse-than-any loss, capped)."""
        losses = self._take_back(X, Y)
        candidates, self._candidates = self._candidates, []
        with self._library_call():
            for candidate, loss in zip(candidates, losses, strict=True):
                self.optimizer.tell(candidate, min(float(loss), NEVERGRAD_MAX_LOSS))

    def recommendation(self) -> torch.Tensor:
        """nevergrad's ``provide_recommendation().value``."""
        with self._library_call():
            value = self.optimizer.provide_recommendation().value
        return torch.from_numpy(np.array(value, dtype=np.float64).ravel())

    def _library_call(self) -> contextlib.AbstractContextManager[None]:
        return library_call(self._globals, self._blas)


def make_ga(
    x0: np.ndarray,
    *,
    budget: int,
    seed: int,
    workers: int,
    popsize: int = 40,
    offsprings: int = 20,
    recombination_ratio: float = 1.0,
    sigma: float = 1.0,
) -> NevergradAdapter:
    """The ``"ga"`` method: nevergrad's ``EvolutionStrategy`` as a genetic algorithm.

    ``EvolutionStrategy(recombination_ratio=1, popsize=40, offsprings=20,
    only_offsprings=False)`` (registered in nevergrad as ``RecMixES``) is a
    steady-state real-coded genetic algorithm: a population of ``popsize``
    parents (first drawn as x0 + sigma·N(0, I)); each child is a parent taken in
    turn, mutated by a Gaussian step of scale ``sigma`` and, with probability
    ``recombination_ratio``, crossed with a uniformly chosen population member
    by intermediate (averaging) crossover; after every ``offsprings`` children,
    truncation selection keeps the best ``popsize`` of parents and children
    together (elitist, μ+λ). It is the most GA-like optimizer nevergrad has for
    continuous variables (its "RecombiningGA" is a (1+1) search, "GeneticDE" is
    differential evolution, which did better in our measurements and is
    available as ``"nevergrad:GeneticDE"``).
    """
    ng = import_optional("nevergrad")
    check_int("popsize", popsize, 2)
    check_int("offsprings", offsprings, 1)
    ratio = check_unit_interval("recombination_ratio", recombination_ratio)
    ga = ng.families.EvolutionStrategy(
        recombination_ratio=ratio,
        popsize=popsize,
        offsprings=offsprings,
        only_offsprings=False,
        ranker="simple",
    )
    return NevergradAdapter("ga", ga, x0, budget=budget, seed=seed, workers=workers, sigma=sigma)
