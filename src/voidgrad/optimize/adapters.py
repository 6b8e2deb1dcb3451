"""The derivative-free adapters behind ``vg.minimize``, and ``make_dfo`` that builds them.

Each adapter wraps a library optimizer in the ask/tell protocol of
:mod:`voidgrad.optimize.dfo` without reimplementing it:

``"cma"``
    pycma's ``CMAEvolutionStrategy`` (:class:`CMAAdapter`): full CMA-ES up to
    ``FULL_CMA_MAX_DIM`` dimensions, separable (diagonal) CMA-ES above.
``"nevergrad:<name>"``
    any optimizer of ``nevergrad.optimizers.registry`` (:class:`NevergradAdapter`).
``"ga"``
    a real-coded genetic algorithm: nevergrad's ``EvolutionStrategy`` with
    recombination and (μ+λ) selection (see :func:`make_dfo`).
``"annealing"``
    scipy's ``dual_annealing`` (:class:`AnnealingAdapter`), chosen over
    nevergrad's simulated-annealing variants because it was far better on
    Rastrigin and Rosenbrock in d=10 (see the class docstring).

Shared conventions
------------------
- Reproducible: the same ``seed`` gives the same sequence of asked points.
  No adapter touches numpy's global RNG: pycma draws from a private
  ``RandomState`` (its ``randn`` option), nevergrad from a private
  ``RandomState`` on its parametrization, scipy from a private ``Generator``.
  Some nevergrad optimizers still call ``np.random.*`` directly, so the cma and
  nevergrad adapters swap a private global state in around every library call
  and restore the caller's afterwards (the caller's draws are unaffected; this
  is not safe against *other threads* drawing from ``np.random`` meanwhile, and
  costs about 0.25 ms per ask or tell). Importing nevergrad also draws from the
  global RNG; the import is wrapped the same way.
- Failed evaluations: any non-finite loss (the driver sends NaN) is told to
  pycma and nevergrad as ``worst + max(1, |worst|)``, where ``worst`` is the
  largest finite loss told so far (this batch included), or
  ``FAILED_LOSS_BEFORE_ANY_FINITE`` (1e20) before any finite loss: it ranks
  below every real point. For nevergrad the value is capped at
  ``NEVERGRAD_MAX_LOSS`` (4e20): nevergrad clips larger losses to 5e20 with a
  warning. scipy's dual_annealing is told +inf, which it handles natively.
  The cma and annealing adapters recommend the best finitely evaluated point,
  so never a failed one while a finite one exists.
- Checkpoints hold no optimizer object. ``state()`` is plain data (tensors,
  ints, strings): the seed, the budget and, per told batch, the ``limit``
  passed to ``ask``, the number of points asked, an 8-byte hash of them, and
  the losses told. ``restore(state)`` rebuilds the library optimizer from that
  seed and the adapter's own settings and replays the batches: the same seed
  and losses make it ask the same points (checked against the hashes; a
  mismatch raises :class:`~voidgrad.optimize.dfo.ReplayDiverged`). The state
  takes O(evaluations) memory, not O(evaluations·d); restoring costs the
  library's own ask/tell work for every recorded batch (for full CMA-ES in
  d=1000 about 46 ms a generation) and no evaluation of the objective.
  ``state()`` refuses while a batch is out (between ``ask`` and ``tell``):
  take checkpoints after ``tell``.
- Every adapter has ``close()`` (idempotent; only the annealing adapter holds a
  resource, its worker thread) and ``stop_reason``: None unless the optimizer
  itself has ended the run (then why; ``ask`` returns None from then on). An
  ``ask`` that returns None because ``limit`` is too small leaves it None.

pycma, nevergrad and scipy are optional: they are imported when an adapter
that needs them is built, and a missing one raises ImportError naming
``pip install 'voidgrad[bench]'``.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import inspect
import math
import os
import queue
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from voidgrad.optimize.dfo import DFOAdapter, ReplayDiverged
from voidgrad.validation import check_unit_interval

#: Method names accepted by :func:`make_dfo` (for error messages and docs).
KNOWN_DFO: tuple[str, ...] = ("cma", "annealing", "ga", "nevergrad:<name>")

#: Largest dimension for which ``diagonal=None`` picks full CMA-ES. Full CMA keeps
#: d×d matrices (O(d²) memory) and eigendecomposes the covariance (O(d³) time):
#: about 46 ms per iteration at d=1000 and 800 ms at d=4000; at d=10⁴ the
#: matrices alone take about 1.6 GB. Above this, separable CMA-ES (O(d) memory
#: and time per sample) is used.
FULL_CMA_MAX_DIM = 2000

#: What a failed evaluation is told as before any finite loss has been seen.
FAILED_LOSS_BEFORE_ANY_FINITE = 1e20

#: The largest loss told to nevergrad (it clips at 5e20 with a warning).
NEVERGRAD_MAX_LOSS = 4e20

_INSTALL_HINT = "pip install 'voidgrad[bench]'"

_CMA_OWNED_OPTIONS = frozenset(
    {"seed", "randn", "verbose", "verb_log", "verb_disp", "popsize", "CMA_diagonal"}
)


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
            driver enforces it; adapters use it to plan (nevergrad, scipy).
        seed: an integer in [0, 2**32); the same seed gives the same run.
        workers: how many evaluations the driver runs in parallel (>= 1).
            nevergrad asks up to ``workers`` candidates per batch; CMA-ES always
            asks its whole population and annealing one point at a time.
        **options: method-specific options:

            - ``"cma"``: ``sigma0``, ``popsize``, ``diagonal``, ``cma_options``
              (see :class:`CMAAdapter`).
            - ``"nevergrad:<name>"``: ``sigma`` (see :class:`NevergradAdapter`).
            - ``"ga"``: ``popsize`` (parents, default 40), ``offsprings``
              (children per selection round, default 20),
              ``recombination_ratio`` (probability of crossover, default 1.0)
              and ``sigma`` (mutation step, default 1.0).
            - ``"annealing"``: ``bounds``, ``maxiter``, ``initial_temp``,
              ``restart_temp_ratio``, ``visit``, ``accept``, ``no_local_search``
              (see :class:`AnnealingAdapter`).

    ``"ga"`` is nevergrad's ``EvolutionStrategy(recombination_ratio=1,
    popsize=40, offsprings=20, only_offsprings=False)`` (registered there as
    ``RecMixES``), a steady-state real-coded genetic algorithm: a population of
    ``popsize`` parents (first drawn as x0 + sigma·N(0, I)); each child is a
    parent taken in turn, mutated by a Gaussian step of scale ``sigma`` and,
    with probability ``recombination_ratio``, crossed with a uniformly chosen
    population member by intermediate (averaging) crossover; after every
    ``offsprings`` children, truncation selection keeps the best ``popsize`` of
    parents and children together (elitist, μ+λ). It is the most GA-like
    optimizer nevergrad has for continuous variables (its "RecombiningGA" is a
    (1+1) search, "GeneticDE" is differential evolution, which did better in
    our measurements and is available as ``"nevergrad:GeneticDE"``).

    Raises:
        ValueError: an unknown method, nevergrad name or option, or an invalid
            argument (the message names it).
        ImportError: the library behind ``method`` is not installed.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    x = _as_start_point(x0)
    _check_int("budget", budget, low=1)
    _check_int("seed", seed, low=0, high=2**32 - 1)
    _check_int("workers", workers, low=1)
    if method == "cma":
        _check_options(method, options, {"sigma0", "popsize", "diagonal", "cma_options"})
        return CMAAdapter(x, seed=seed, **options)
    if method == "annealing":
        _check_options(method, options, set(AnnealingAdapter.SCIPY_OPTIONS) | {"bounds"})
        return AnnealingAdapter(x, budget=budget, seed=seed, **options)
    if method == "ga":
        _check_options(method, options, {"popsize", "offsprings", "recombination_ratio", "sigma"})
        return _make_ga(x, budget=budget, seed=seed, workers=workers, **options)
    if method.startswith("nevergrad:"):
        _check_options(method, options, {"sigma"})
        ng = _import_optional("nevergrad")
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
            method, registry[name], x, budget=budget, seed=seed, workers=workers, **options
        )
    close = difflib.get_close_matches(method, ["cma", "annealing", "ga"], n=3, cutoff=0.5)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise ValueError(
        f"unknown derivative-free method={method!r}{hint}; known: {', '.join(KNOWN_DFO)}"
    )


# --------------------------------------------------------------------------- adapters


class _AdapterBase:
    """What the adapters share: bookkeeping, and the batch log ``state()`` returns and replays.

    The bookkeeping: the batch out, failures, the best point, stopping.
    """

    name: str
    #: Whether the library plans with the budget, so a replay must use the recorded one
    #: (otherwise a restored adapter keeps its own, and a resumed run may go on longer).
    plans_with_budget = False

    def __init__(self, name: str, d: int, *, seed: int, budget: int = 0) -> None:
        self.name = name
        self.d = d
        self._seed = seed
        self._budget = budget
        self._clear()

    def _clear(self) -> None:
        """Forget the run: no batch out, no failures or best point, an empty log."""
        #: Why the optimizer ended the run (None while it goes on).
        self.stop_reason: str | None = None
        self._pending_rows: int | None = None
        self._pending_limit = 0
        self._pending_hash = 0
        self._worst: float | None = None
        self._best_x: np.ndarray | None = None
        self._best_y = math.inf
        self._limits: list[int] = []
        self._rows: list[int] = []
        self._hashes: list[int] = []
        self._losses: list[np.ndarray] = []

    def close(self) -> None:
        """Release what the adapter holds; idempotent. The default holds nothing."""

    def ask(self, limit: int) -> torch.Tensor | None:
        """Candidates to evaluate next (see :class:`~voidgrad.optimize.dfo.DFOAdapter`)."""
        raise NotImplementedError

    def tell(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """The losses of the batch just asked (see :class:`~voidgrad.optimize.dfo.DFOAdapter`)."""
        raise NotImplementedError

    def _start(self) -> None:
        """Build the library optimizer afresh from the settings, ``_seed`` and ``_budget``."""
        raise NotImplementedError

    # -- checkpoints

    def state(self) -> dict[str, Any]:
        """The run so far as plain data (tensors, ints, strings); see the module docstring.

        Per told batch: the ``limit`` passed to ``ask`` (``limits``), the points
        asked (``rows``), an 8-byte hash of them (``hashes``), and the losses
        told, NaN for failures (``losses``, all batches end to end).
        """
        self._check_no_batch_out()
        losses = np.concatenate(self._losses) if self._losses else np.zeros(0)
        return {
            "kind": type(self).__name__,
            "name": self.name,
            "d": self.d,
            "seed": self._seed,
            "budget": self._budget,
            "limits": torch.tensor(self._limits, dtype=torch.int64),
            "rows": torch.tensor(self._rows, dtype=torch.int64),
            "hashes": torch.tensor(self._hashes, dtype=torch.int64),
            "losses": torch.from_numpy(losses.astype(np.float64)),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a ``state()`` of an adapter of the same class, d and settings.

        The library optimizer is rebuilt with the state's seed (and, if it
        plans with the budget, its budget) and this adapter's other settings,
        and every recorded batch is asked again and told its recorded losses.
        Costs the library's own work for each batch, no objective evaluation.

        Raises:
            ValueError: ``state`` is not a state of this kind of adapter.
            ReplayDiverged: the replay asked other points than the recorded
                ones (other settings, another library version).
        """
        limits, rows, hashes, losses, seed, budget = self._check_state(state)
        self.close()
        self._seed = seed
        self._budget = budget if self.plans_with_budget else max(self._budget, len(losses))
        self._clear()
        self._start()
        offset = 0
        for batch, (limit, k, expected) in enumerate(zip(limits, rows, hashes, strict=True)):
            X = self.ask(limit)
            if X is None or X.shape[0] != k or self._pending_hash != expected:
                self._pending_rows = None
                asked = (
                    "nothing"
                    if X is None
                    else f"{X.shape[0]} points"
                    if X.shape[0] != k
                    else "other points"
                )
                raise ReplayDiverged(
                    f"{self.name}: replaying batch {batch + 1} of {len(rows)}, the optimizer "
                    f"asked {asked} where {k} were recorded (other settings, such as workers "
                    "or options, or another version of the library?)"
                )
            self.tell(X, torch.from_numpy(losses[offset : offset + k].copy()))
            offset += k

    def _check_state(
        self, state: Mapping[str, Any]
    ) -> tuple[list[int], list[int], list[int], np.ndarray, int, int]:
        """The parts of a ``state()``, checked against this adapter (ValueError if they misfit)."""
        kind = type(self).__name__
        if not isinstance(state, Mapping) or state.get("kind") != kind:
            found = state.get("kind") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"state must be a {kind} state from state(); got {found!r}")
        if state.get("d") != self.d:
            raise ValueError(f"state is for d={state.get('d')!r}, this adapter has d={self.d}")
        for key in ("seed", "budget"):
            _check_int(f"state {key}", state.get(key), low=0)
        log = []
        for key, dtype in (("limits", torch.int64), ("rows", torch.int64), ("hashes", torch.int64)):
            value = state.get(key)
            if not isinstance(value, torch.Tensor) or value.dtype != dtype or value.ndim != 1:
                raise ValueError(f"state {key!r} must be a 1-D {dtype} tensor")
            log.append(value.tolist())
        limits, rows, hashes = log
        losses = state.get("losses")
        if not isinstance(losses, torch.Tensor) or losses.dtype != torch.float64:
            raise ValueError("state 'losses' must be a float64 tensor")
        if not len(limits) == len(rows) == len(hashes) or losses.shape != (sum(rows),):
            raise ValueError("state holds a log whose lengths do not agree")
        if any(not 1 <= k <= limit for k, limit in zip(rows, limits, strict=True)):
            raise ValueError("state holds batches of more points than their limit, or none")
        return limits, rows, hashes, losses.numpy(), int(state["seed"]), int(state["budget"])

    # -- helpers for subclasses

    def _check_limit(self, limit: int) -> None:
        _check_int("limit", limit, low=0)
        if self._pending_rows is not None:
            raise RuntimeError(
                f"{self.name}: ask() called again before tell() returned the previous batch"
            )
        self._pending_limit = limit

    def _stop(self, reason: str) -> None:
        self.stop_reason = reason

    def _hand_out(self, X: np.ndarray) -> torch.Tensor:
        points = np.array(X, dtype=np.float64, copy=True)
        self._pending_rows = points.shape[0]
        self._pending_hash = _hash_points(points)
        return torch.from_numpy(points)

    def _take_back(self, X: torch.Tensor, Y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Check a told batch and log it; return (X, losses to tell the library) as float64."""
        if self._pending_rows is None:
            raise RuntimeError(f"{self.name}: tell() without a batch from ask()")
        k = self._pending_rows
        if not isinstance(X, torch.Tensor) or tuple(X.shape) != (k, self.d):
            shape = tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__
            raise ValueError(f"X must be the [{k}, {self.d}] batch just asked, got {shape}")
        if not isinstance(Y, torch.Tensor) or tuple(Y.shape) != (k,):
            shape = tuple(Y.shape) if isinstance(Y, torch.Tensor) else type(Y).__name__
            raise ValueError(f"Y must be the [{k}] losses of the batch just asked, got {shape}")
        x = X.detach().to("cpu", torch.float64).numpy()
        y = Y.detach().to("cpu", torch.float64).numpy()
        self._pending_rows = None
        self._limits.append(self._pending_limit)
        self._rows.append(k)
        self._hashes.append(self._pending_hash)
        self._losses.append(y.copy())
        finite = np.isfinite(y)
        if finite.any():
            batch_worst = float(y[finite].max())
            self._worst = batch_worst if self._worst is None else max(self._worst, batch_worst)
            i = int(np.argmin(np.where(finite, y, math.inf)))
            if y[i] < self._best_y:
                self._best_y = float(y[i])
                self._best_x = x[i].copy()
        if self._worst is None:
            penalty = FAILED_LOSS_BEFORE_ANY_FINITE
        else:
            penalty = self._worst + max(1.0, abs(self._worst))
        return x, np.where(finite, y, penalty)

    def _check_no_batch_out(self) -> None:
        if self._pending_rows is not None:
            raise RuntimeError(
                f"{self.name}: state() between ask() and tell(); checkpoint after tell()"
            )


def _hash_points(points: np.ndarray) -> int:
    """An 8-byte hash of a batch's shape and values, as a signed int (an int64 tensor entry)."""
    digest = hashlib.blake2b(repr(points.shape).encode(), digest_size=8)
    digest.update(np.ascontiguousarray(points).tobytes())
    return int.from_bytes(digest.digest(), "little", signed=True)


class CMAAdapter(_AdapterBase):
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
        _import_optional("cma")
        d = x0.size
        super().__init__("cma", d, seed=seed)
        if sigma0 is None:
            sigma0 = 0.3 * max(1.0, float(np.max(np.abs(x0))))
        _check_positive("sigma0", sigma0)
        if popsize is not None:
            _check_int("popsize", popsize, low=2)
        if diagonal is not None and not isinstance(diagonal, bool):
            raise ValueError(f"diagonal must be True, False or None, got {diagonal!r}")
        if cma_options is not None:
            if not isinstance(cma_options, Mapping):
                raise ValueError(f"cma_options must be a mapping, got {type(cma_options)}")
            owned = sorted(_CMA_OWNED_OPTIONS & set(cma_options))
            if owned:
                raise ValueError(
                    f"cma_options may not set {', '.join(owned)}: the adapter owns them "
                    "(use seed=, popsize=, diagonal=)"
                )
        separable = resolve_cma_diagonal(d, diagonal)
        if not separable:
            _check_full_cma_memory(d)
        self._x0 = x0.tolist()
        self._sigma0 = float(sigma0)
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
        self._blas = _SingleThreadBLAS()
        self._start()

    def _start(self) -> None:
        cma = _import_optional("cma")
        rng = np.random.RandomState(self._seed)
        self._globals = _PrivateGlobalRNG(self._seed)
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
            self._stop("cma stopped: " + ", ".join(f"{k}={v}" for k, v in stop.items()))
            return None
        if self._solutions is None:
            return None  # the driver's budget ends the run; not a stop of CMA itself
        return self._hand_out(np.asarray(self._solutions, dtype=np.float64))

    def tell(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """Tell pycma the population's losses (failures as a worse-than-any loss)."""
        _, losses = self._take_back(X, Y)
        solutions, self._solutions = self._solutions, None
        with self._library_call():
            self.es.tell(solutions, losses.tolist())

    def recommendation(self) -> torch.Tensor:
        """The best finitely evaluated point, or pycma's mean before any."""
        if self._best_x is not None:
            return torch.from_numpy(self._best_x.copy())
        mean = np.asarray(self.es.result.xfavorite, dtype=np.float64)
        return torch.from_numpy(mean.copy())

    @contextlib.contextmanager
    def _library_call(self) -> Iterator[None]:
        with self._globals.active(), self._blas.limited():
            yield


class NevergradAdapter(_AdapterBase):
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
        _import_optional("nevergrad")
        super().__init__(name, x0.size, seed=seed, budget=budget)
        _check_positive("sigma", sigma)
        self.workers = workers
        self._optimizer_cls = optimizer_cls
        self._x0 = x0.copy()
        self._sigma = float(sigma)
        self._blas = _SingleThreadBLAS()
        self._start()

    def _start(self) -> None:
        ng = _import_optional("nevergrad")
        self._globals = _PrivateGlobalRNG(self._seed)
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
        _, losses = self._take_back(X, Y)
        candidates, self._candidates = self._candidates, []
        with self._library_call():
            for candidate, loss in zip(candidates, losses, strict=True):
                self.optimizer.tell(candidate, min(float(loss), NEVERGRAD_MAX_LOSS))

    def recommendation(self) -> torch.Tensor:
        """nevergrad's ``provide_recommendation().value``."""
        with self._library_call():
            value = self.optimizer.provide_recommendation().value
        return torch.from_numpy(np.array(value, dtype=np.float64).ravel())

    @contextlib.contextmanager
    def _library_call(self) -> Iterator[None]:
        with self._globals.active(), self._blas.limited():
            yield


def _make_ga(
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
    """The ``"ga"`` method: nevergrad's ``EvolutionStrategy`` as a genetic algorithm (make_dfo)."""
    ng = _import_optional("nevergrad")
    _check_int("popsize", popsize, low=2)
    _check_int("offsprings", offsprings, low=1)
    ratio = check_unit_interval("recombination_ratio", recombination_ratio)
    ga = ng.families.EvolutionStrategy(
        recombination_ratio=ratio,
        popsize=popsize,
        offsprings=offsprings,
        only_offsprings=False,
        ranker="simple",
    )
    return NevergradAdapter("ga", ga, x0, budget=budget, seed=seed, workers=workers, sigma=sigma)


class AnnealingAdapter(_AdapterBase):
    """scipy's ``dual_annealing`` in the ask/tell protocol (method ``"annealing"``).

    ``dual_annealing`` calls the objective itself, so it runs in a daemon worker
    thread whose objective hands each point to ``ask`` and blocks until ``tell``
    brings its loss back: one point per batch (``workers`` cannot parallelize
    it). The thread starts at the first ``ask``; ``close()`` (also run when the
    adapter is garbage-collected) stops it, so **the driver should call
    close() when the run ends or is abandoned**.

    Args:
        x0: the first point evaluated.
        budget: scipy's ``maxfun``. scipy may overrun it to finish a local
            search; the driver's budget still holds (it stops asking).
        seed: seeds a private ``numpy.random.Generator`` for scipy.
        bounds: ``(lower, upper)``, each a number or d numbers, required by
            dual_annealing; default ``x0 ± 5·max(1, |x0|)`` per coordinate
            (wide around the start, scaled to it). x0 must lie inside.
        **scipy_options: ``maxiter``, ``initial_temp``, ``restart_temp_ratio``,
            ``visit``, ``accept`` and ``no_local_search``, passed to
            ``scipy.optimize.dual_annealing`` (defaults are scipy's; ``maxiter``
            counts annealing iterations, and when scipy finishes before the
            budget ``ask`` returns None).

    Failed evaluations are told to scipy as +inf, not as the finite stand-in of
    the other adapters: dual_annealing handles non-finite energies itself (it
    redraws a non-finite start, rejects such moves, and discards non-finite
    local-search results), and on a sphere in d=5 where every third evaluation
    fails that reached 0.007-0.03 in 2000 evaluations against 0.16-0.27 with
    the finite stand-in (whose cliffs derail the finite-difference local
    search). If scipy raises during the run (it gives up after 1000 non-finite
    restarts, for instance), ``ask`` returns None with ``stop_reason`` naming
    the error; before any evaluation (a bad setting) the error is raised.

    ``recommendation()`` is the best finitely evaluated point (x0 before any).
    ``restore()`` replays the recorded losses through a fresh scipy run, which
    asks the same points since it is deterministic given the seed (cost:
    scipy's own work for each replayed evaluation, no objective calls). A
    restored run takes the budget of the adapter it is restored into (scipy
    uses ``maxfun`` only to stop), so a resumed run can be given more.

    Why scipy rather than nevergrad (3 seeds, 5000 evaluations, best loss):
    Rastrigin d=10 from 3·ones, dual_annealing 5.4e-13 on all three seeds,
    nevergrad's ``SADiscreteLenglerOnePlusOneExp09Auto``/``LinAuto`` and a
    Gaussian ``ParametrizedOnePlusOne(annealing=...)`` stayed at 90 (the start);
    Rosenbrock d=10 from zeros, dual_annealing 6.1e-11 vs 9 (the start).
    """

    SCIPY_OPTIONS: tuple[str, ...] = (
        "maxiter",
        "initial_temp",
        "restart_temp_ratio",
        "visit",
        "accept",
        "no_local_search",
    )

    def __init__(
        self,
        x0: np.ndarray,
        *,
        budget: int,
        seed: int,
        bounds: tuple[Any, Any] | None = None,
        **scipy_options: Any,
    ) -> None:
        _import_optional("scipy.optimize")
        super().__init__("annealing", x0.size, seed=seed, budget=budget)
        unknown = sorted(set(scipy_options) - set(self.SCIPY_OPTIONS))
        if unknown:
            raise ValueError(f"unknown annealing option(s): {', '.join(unknown)}")
        if "maxiter" in scipy_options:
            _check_int("maxiter", scipy_options["maxiter"], low=1)
        if "no_local_search" in scipy_options and not isinstance(
            scipy_options["no_local_search"], bool
        ):
            raise ValueError("no_local_search must be a bool")
        self._config: dict[str, Any] = {
            "x0": x0.copy(),
            "bounds": _annealing_bounds(x0, bounds),
            "options": dict(scipy_options),
        }
        self._worker: _AnnealingWorker | None = None
        self._closer: weakref.finalize | None = None

    def _start(self) -> None:
        """Nothing to build: the scipy run starts in its thread at the first ``ask``."""

    def ask(self, limit: int) -> torch.Tensor | None:
        """The next point scipy wants, ``[1, d]``; None if ``limit`` is 0 or scipy finished."""
        self._check_limit(limit)
        if self.stop_reason is not None or limit == 0:
            return None
        if self._worker is None:
            self._start_worker()
        assert self._worker is not None
        try:
            kind, payload = self._worker.next_request()
        except Exception as e:
            self._stop(f"dual_annealing stopped: {e!r}")
            self.close()
            if not self._rows:
                raise  # before any evaluation: a bad setting, not the run's fate
            return None
        if kind == "done":
            self._stop(f"dual_annealing finished: {'; '.join(payload.message)}")
            self.close()
            return None
        return self._hand_out(payload[None, :])

    def tell(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """Hand the loss back to the waiting scipy run (a failure as +inf, see the class doc)."""
        self._take_back(X, Y)
        y = float(Y[0])
        assert self._worker is not None
        self._worker.reply(y if math.isfinite(y) else math.inf)

    def recommendation(self) -> torch.Tensor:
        """The best finitely evaluated point, or x0 before any."""
        best = self._best_x if self._best_x is not None else self._config["x0"]
        return torch.from_numpy(np.array(best, dtype=np.float64))

    def close(self) -> None:
        """Stop the worker thread (idempotent); later ``ask`` calls start no new one."""
        if self._closer is not None:
            self._closer()
            self._closer = None
        if self._worker is not None and self.stop_reason is None:
            self.stop_reason = "closed"
        self._worker = None

    def _start_worker(self) -> None:
        self._worker = _AnnealingWorker(
            {**self._config, "seed": self._seed, "budget": self._budget}
        )
        # Stop the thread if the adapter is dropped without close(); the worker
        # holds no reference to the adapter, so it can be collected.
        self._closer = weakref.finalize(self, self._worker.stop)


# --------------------------------------------------------------------------- annealing thread


class _StopAnnealing(BaseException):
    """Raised inside scipy's objective to unwind a run that is being closed."""


_STOP = object()


class _AnnealingWorker:
    """Runs ``dual_annealing`` in a daemon thread; the objective round-trips through queues."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._requests: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._replies: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(
            target=self._run, args=(dict(config),), name="voidgrad-annealing", daemon=True
        )
        self._thread.start()

    def next_request(self) -> tuple[str, Any]:
        """("eval", x) for the next point, or ("done", scipy's result); re-raises scipy errors."""
        while True:
            try:
                kind, payload = self._requests.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the dual_annealing thread died silently") from None
                continue
            if kind == "error":
                raise payload
            return kind, payload

    def reply(self, loss: float) -> None:
        self._replies.put(loss)

    def stop(self) -> None:
        """Unwind the scipy run at its next objective call and wait for the thread."""
        self._replies.put(_STOP)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)

    def _run(self, config: dict[str, Any]) -> None:
        requests, replies = self._requests, self._replies

        def objective(x: np.ndarray) -> float:
            requests.put(("eval", np.array(x, dtype=np.float64, copy=True)))
            loss = replies.get()
            if loss is _STOP:
                raise _StopAnnealing
            return float(loss)

        try:
            from scipy.optimize import dual_annealing

            rng = np.random.default_rng(config["seed"])
            seeding = (
                {"rng": rng}
                if "rng" in inspect.signature(dual_annealing).parameters
                else {"seed": rng}
            )
            # inf - inf in scipy's finite differences next to failed points (thread-local).
            with np.errstate(invalid="ignore", over="ignore"):
                result = dual_annealing(
                    objective,
                    list(zip(*config["bounds"], strict=True)),
                    x0=config["x0"],
                    maxfun=config["budget"],
                    **seeding,
                    **config["options"],
                )
        except _StopAnnealing:
            return
        except BaseException as e:  # hand every failure to the thread that asks
            requests.put(("error", e))
            return
        requests.put(("done", result))


def _annealing_bounds(x0: np.ndarray, bounds: tuple[Any, Any] | None) -> tuple[Any, Any]:
    """Validate ``bounds`` (or build the default x0 ± 5·max(1, |x0|)) as two float arrays."""
    if bounds is None:
        half = 5.0 * np.maximum(1.0, np.abs(x0))
        return x0 - half, x0 + half
    try:
        low, high = bounds
        lower, upper = (
            np.broadcast_to(np.asarray(b, dtype=np.float64), x0.shape).copy() for b in (low, high)
        )
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"bounds must be a pair (lower, upper) of numbers or {x0.size}-vectors: {e}"
        ) from e
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise ValueError("bounds must be finite (dual_annealing needs a box)")
    if not np.all(lower < upper):
        raise ValueError("bounds must have lower < upper in every coordinate")
    if not np.all((lower <= x0) & (x0 <= upper)):
        raise ValueError("x0 must lie inside bounds")
    return lower, upper


# --------------------------------------------------------------------------- helpers


def resolve_cma_diagonal(d: int, diagonal: bool | None) -> bool:
    """Whether CMA-ES in ``d`` dimensions runs separable: ``diagonal``, or d > FULL_CMA_MAX_DIM."""
    return d > FULL_CMA_MAX_DIM if diagonal is None else diagonal


def _available_memory_bytes() -> int | None:
    """The memory available to new allocations (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def _check_full_cma_memory(d: int) -> None:
    """Refuse full CMA-ES whose ~3·d²·8-byte matrices exceed half the available memory."""
    available = _available_memory_bytes()
    needed = 3 * d * d * 8
    if available is not None and needed > available / 2:
        raise ValueError(
            f"full CMA-ES (diagonal=False) in d={d} needs about {_gib(needed)} for its "
            f"covariance matrices (3·d²·8 bytes), more than half of the {_gib(available)} "
            f"available; use diagonal=True (separable CMA-ES, O(d) memory)"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


class _PrivateGlobalRNG:
    """A private state for numpy's global RNG, swapped in around library calls.

    Libraries that draw from ``np.random.*`` directly then draw from this state
    (reproducible from the seed), and the caller's global state is restored
    untouched afterwards. Not safe against other threads using ``np.random``
    during the call.
    """

    def __init__(self, seed: int) -> None:
        # A stream distinct from the library's own RandomState(seed).
        entropy = np.random.SeedSequence([seed, 0x5EED]).generate_state(8)
        self.state: Any = np.random.RandomState(entropy).get_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        saved = np.random.get_state()
        np.random.set_state(self.state)
        try:
            yield
        finally:
            self.state = np.random.get_state()
            np.random.set_state(saved)


class _SingleThreadBLAS:
    """Limits BLAS to one thread inside ``limited()`` when threadpoolctl is installed."""

    def __init__(self) -> None:
        self._controller: Any = None
        self._available = True

    def limited(self) -> contextlib.AbstractContextManager[Any]:
        if self._available and self._controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                self._available = False
            else:
                # Built once: it scans the loaded libraries (~10 ms); limit() is ~20 µs.
                self._controller = ThreadpoolController()
        if self._controller is None:
            return contextlib.nullcontext()
        return self._controller.limit(limits=1, user_api="blas")


def _import_optional(module: str) -> Any:
    """Import an optional dependency, or raise ImportError with the install command.

    numpy's global RNG is restored afterwards: importing nevergrad draws from it
    (some optimizers are registered with randomly drawn settings).
    """
    import importlib

    saved = np.random.get_state()
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise ImportError(
            f"this method needs {top!r}, which is not installed: {_INSTALL_HINT}"
        ) from e
    finally:
        np.random.set_state(saved)


def _as_start_point(x0: torch.Tensor) -> np.ndarray:
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


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _check_int(name: str, value: Any, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{name} must be >= {low}{upper}, got {value}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}")


def _check_options(method: str, options: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"unknown option(s) for method={method!r}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known)) or 'none'}"
        )
