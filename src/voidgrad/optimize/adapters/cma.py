"""pycma's CMA-ES in the ask/tell protocol (method ``"cma"``).

Full CMA-ES up to ``FULL_CMA_MAX_DIM`` dimensions, separable (diagonal) CMA-ES
above. pycma draws from a private ``RandomState`` (its ``randn`` option) and runs
on a private numpy global state with BLAS on one thread (see
:mod:`~voidgrad.optimize.adapters.runtime`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from voidgrad.optimize.adapters import runtime
from voidgrad.optimize.adapters.base import AdapterBase
from voidgrad.optimize.adapters.runtime import (
    PrivateGlobalRNG,
    SingleThreadBLAS,
    import_optional,
    library_call,
)
from voidgrad.validation import check_int, check_positive

#: Largest dimension for which ``diagonal=None`` picks full CMA-ES. Full CMA keeps
#: d×d matrices (O(d²) memory) and eigendecomposes the covariance (O(d³) time):
#: about 46 ms per iteration at d=1000 and 800 ms at d=4000; at d=10⁴ the
#: matrices alone take about 1.6 GB. Above this, separable CMA-ES (O(d) memory
#: and time per sample) is used.
FULL_CMA_MAX_DIM = 2000

#: The options this adapter sets itself; ``cma_options`` may not.
OWNED_OPTIONS = frozenset(
    {"seed", "randn", "verbose", "verb_log", "verb_disp", "popsize", "CMA_diagonal"}
)


class CMAAdapter(AdapterBase):
    """pycma's ``CMAEvolutionStrategy`` in the ask/tell protocol (method ``"cma"``).

    Args:
        x0: the starting mean, shape [d].
        seed: seeds a private ``numpy.random.RandomState`` that pycma samples
            from (its ``randn`` option). pycma's own ``seed`` option is not used:
            it reseeds numpy's *global* RNG (and 0 would mean "from the clock").
        sigma0: the initial step size; default ``0.3 * max(1, max|x0|)``
            (pycma suggests about a quarter to a third of the search range;
            without a range, 0.3 per unit of the start's scale).
        popsize: the population λ; default pycma's ``4 + 3 ln d``.
        diagonal: True for separable CMA-ES (``CMA_diagonal=True``: O(d) memory
            and time per sample), False for full CMA-ES (O(d²) memory, O(d³)
            eigendecompositions), None (default) for full CMA-ES up to
            ``FULL_CMA_MAX_DIM`` = 2000 dimensions and separable above.
            ``diagonal=False`` is refused (ValueError) when its covariance
            matrices, about 3·d²·8 bytes, exceed half the available memory.
        cma_options: further pycma options (``cma.CMAOptions()``), e.g.
            ``{"tolflatfitness": 1e9}`` to keep going on plateaus; the options
            this adapter owns (seed, randn, verbosity, popsize, CMA_diagonal)
            are refused there.

    ``ask(limit)`` returns the whole population if it fits in ``limit``, else
    None. It also returns None once pycma's remaining stopping criteria fire,
    and ``stop_reason`` says which. Those are the x-space ones (``tolx``,
    ``tolxstagnation``, ``tolupsigma``, ``tolfacupx``, ``tolconditioncov``,
    ``noeffectaxis``, ``noeffectcoord``): the search distribution has collapsed
    or degenerated. The f-space ones are off by default (``tolfun=0``,
    ``tolfunhist=0``, ``tolflatfitness=10**9``, ``tolstagnation=0``) because on
    plateaus, ties and generations of failed evaluations they end the run
    spuriously (pycma's default stops after one flat generation); set them in
    ``cma_options`` to restore them. ``maxiter`` and ``maxfevals`` are off: the
    driver owns the budget. pycma never prints or writes files
    (``verbose=-9``, ``verb_log=0``, ``verb_disp=0``).

    With ``threadpoolctl`` installed, BLAS is limited to one thread during
    ``ask``/``tell`` (and restored after): pycma's small matrix work with an
    oversubscribed OpenBLAS (busy evaluation workers) was measured 4-20× slower.
    Without it, BLAS threading is left alone.

    ``recommendation()`` is the best finitely evaluated point (pycma's
    ``xbest`` without the stand-in losses of failed points), or the mean before
    any. ``restore()`` replays the recorded generations through a fresh
    ``CMAEvolutionStrategy`` (the budget plays no part).
    """

    def __init__(
        self,
        x0: np.ndarray,
        *,
        seed: int,
        sigma0: float | None = None,
        popsize: int | None = None,
        diagonal: bool | None = None,
        cma_options: Mapping[str, Any] | None = None,
    ) -> None:
        import_optional("cma")
        d = x0.size
        super().__init__("cma", d, seed=seed)
        if sigma0 is None:
            sigma0 = 0.3 * max(1.0, float(np.max(np.abs(x0))))
        sigma0 = check_positive("sigma0", sigma0)
        if popsize is not None:
            check_int("popsize", popsize, 2)
        if diagonal is not None and not isinstance(diagonal, bool):
            raise ValueError(f"diagonal must be True, False or None, got {diagonal!r}")
        if cma_options is not None:
            if not isinstance(cma_options, Mapping):
                raise ValueError(f"cma_options must be a mapping, got {type(cma_options)}")
            owned = sorted(OWNED_OPTIONS & set(cma_options))
            if owned:
                raise ValueError(
                    f"cma_options may not set {', '.join(owned)}: the adapter owns them "
                    "(use seed=, popsize=, diagonal=)"
                )
        separable = resolve_cma_diagonal(d, diagonal)
        if not separable:
            check_full_cma_memory(d)
        self._x0 = x0.tolist()
        self._sigma0 = sigma0
        self._opts: dict[str, Any] = {
            "seed": np.nan,  # "do nothing": never touch numpy's global RNG
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            "maxiter": np.inf,
            "maxfevals": np.inf,
            # f-space termination is off: on plateaus, ties and generations of failures
            # (told as equal stand-in losses) it would end the run spuriously.
            "tolfun": 0,
            "tolfunhist": 0,
            "tolflatfitness": 10**9,
            "tolstagnation": 0,
            "CMA_diagonal": separable,
        }
        if popsize is not None:
            self._opts["popsize"] = popsize
        self._opts.update(cma_options or {})
        self._blas = SingleThreadBLAS()
        self._start()

    def _start(self) -> None:
        cma = import_optional("cma")
        rng = np.random.RandomState(self._seed)
        self._globals = PrivateGlobalRNG(self._seed)
        with self._library_call():
            #: The pycma ``CMAEvolutionStrategy`` (read-only use, e.g. ``es.opts``).
            self.es = cma.CMAEvolutionStrategy(
                list(self._x0), self._sigma0, {**self._opts, "randn": rng.randn}
            )
        self._solutions: list[np.ndarray] | None = None

    @property
    def popsize(self) -> int:
        """The population size λ: the rows of every batch."""
        return int(self.es.popsize)

    def ask(self, limit: int) -> torch.Tensor | None:
        """The next population ``[λ, d]``, or None if λ > ``limit`` or pycma has stopped."""
        self._check_limit(limit)
        if self.stop_reason is not None:
            return None
        with self._library_call():
            stop = dict(self.es.stop())
            if not stop and self.popsize <= limit:
                self._solutions = self.es.ask()
        if stop:
            self.stop_reason = "cma stopped: " + ", ".join(f"{k}={v}" for k, v in stop.items())
            return None
        if self._solutions is None:
            return None  # the driver's budget ends the run; not a stop of CMA itself
        return self._hand_out(np.asarray(self._solutions, dtype=np.float64))

    def tell(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """Tell pycma the population's losses (failures as a worse-than-any loss)."""
        losses = self._take_back(X, Y)
        solutions, self._solutions = self._solutions, None
        with self._library_call():
            self.es.tell(solutions, losses.tolist())

    def recommendation(self) -> torch.Tensor:
        """The best finitely evaluated point, or pycma's mean before any."""
        if self._best_x is not None:
            return torch.from_numpy(self._best_x.copy())
        mean = np.asarray(self.es.result.xfavorite, dtype=np.float64)
        return torch.from_numpy(mean.copy())

    def _library_call(self) -> contextlib.AbstractContextManager[None]:
        return library_call(self._globals, self._blas)


def resolve_cma_diagonal(d: int, diagonal: bool | None) -> bool:
    """Whether CMA-ES in ``d`` dimensions runs separable: ``diagonal``, or d > FULL_CMA_MAX_DIM."""
    return d > FULL_CMA_MAX_DIM if diagonal is None else diagonal


def check_full_cma_memory(d: int) -> None:
    """Refuse full CMA-ES whose ~3·d²·8-byte matrices exceed half the available memory."""
    available = runtime.available_memory_bytes()
    needed = 3 * d * d * 8
    if available is not None and needed > available / 2:
        raise ValueError(
            f"full CMA-ES (diagonal=False) in d={d} needs about {_gib(needed)} for its "
            f"covariance matrices (3·d²·8 bytes), more than half of the {_gib(available)} "
            f"available; use diagonal=True (separable CMA-ES, O(d) memory)"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"
