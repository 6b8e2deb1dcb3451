r"""Simulated annealing in ask/tell form (method ``"annealing"``).

The algorithm is that of scipy's ``dual_annealing``: generalized simulated
annealing (Tsallis & Stariolo 1996; Xiang et al. 1997) with a local search from
the best point found (Xiang et al., The R Journal 5/1, 2013). It is written here
as a coroutine: the search is a Python generator that *yields* each point it
wants evaluated and is *sent* that point's loss, so ``ask`` reads the point it
is paused at and ``tell`` sends the loss and runs it to the next one. Every
random draw comes from a ``numpy.random.Generator`` seeded by ``seed``, so the
same seed and losses give the same points, and ``restore`` replays a log
bit-exactly.

Why not a library: ``scipy.optimize.dual_annealing`` (and the L-BFGS-B local
search inside it) calls the objective itself, with no ask/tell interface; the
previous adapter ran it on a worker thread that blocked inside the objective
until ``tell``. nevergrad's bridge for such optimizers
(``nevergrad/optimization/recaster.py``) is the same construction, a
``threading.Thread`` and two queues, so it would swap one thread for another;
nevergrad's own annealing variants stayed at the start on Rastrigin in d=10.
A generator gives the ask/tell interface without a thread, in a few functions.

The math, with :math:`q_v` = ``visit``, :math:`q_a` = ``accept``, :math:`T_1` =
``initial_temp`` and iteration :math:`t = 1, 2, \dots` since the last (re)start:

- Temperature: :math:`T(t) = T_1 \frac{2^{q_v-1} - 1}{(1+t)^{q_v-1} - 1}`.
- Visiting distribution (a Cauchy-Lorentz law distorted by :math:`q_v`), per
  moved coordinate :math:`\Delta x = \sigma(T)\, X / |Y|^{(q_v-1)/(3-q_v)}` with
  :math:`X, Y \sim N(0, 1)` and
  :math:`\sigma(T) = (f_6 / (f_4 T^{1/(q_v-1)}))^{-(q_v-1)/(3-q_v)}`, where
  :math:`f_4 = \sqrt\pi (q_v-1)^{4-q_v} / (2^{(2-q_v)/(q_v-1)} (3-q_v))` and
  :math:`f_6 = 1 / (\mathrm{sinc}(a)\,\Gamma(1+a))`, :math:`a = 3/2 - 1/(q_v-1)`:
  heavy-tailed, so it keeps jumping far as it cools. The new point is wrapped
  periodically into the bounds.
- Acceptance of a point no better than the current one, :math:`\Delta E \ge 0`
  (generalized Metropolis; Metropolis's :math:`e^{-\Delta E/T_s}` as
  :math:`q_a \to 1`):
  :math:`p = [1 - (1-q_a)\,\Delta E / T_s]_+^{1/(1-q_a)}`, :math:`T_s = T(t)/t`.
  Better points are always accepted.
- Each iteration is a chain of 2d visits from the current point: the first d
  move every coordinate, then coordinate k alone for k = 1..d. After a chain
  that improved the best point, a local search starts from it; after a long
  run without improvement (1000 iterations, then d), from the chain's lowest
  point. When :math:`T(t)` falls below ``restart_temp_ratio``·:math:`T_1` the
  annealing restarts from a uniform point in the bounds with t = 1.
- Local search: L-BFGS (10 pairs) on forward-difference gradients (step
  :math:`\sqrt{\epsilon}\max(1, |x_i|)`, inward at an upper bound; d
  evaluations each), with Armijo backtracking along the step clipped to the
  bounds; it stops at a relative decrease under 2.2e-9 or a projected gradient
  under 1e-5 (scipy's L-BFGS-B tolerances), or after min(max(6d, 100), 1000)
  iterations. Clipping is simpler than L-BFGS-B's treatment of active bounds;
  it is the same method for minima inside the box.

A failed evaluation (any non-finite loss) is an energy of +inf: the chain never
accepts it, a gradient with a failed probe ends the local search, a failed
line-search point is a step to halve. A failed start is replaced by a uniform
point in the bounds, 1000 times at most, after which the run ends.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from voidgrad.optimize.adapters.base import AdapterBase
from voidgrad.validation import check_flag, check_int, check_interval, check_positive

#: A search: yields the points to evaluate, is sent their losses, returns why it ended.
Search = Generator[np.ndarray, float, str]
#: An energy and the point it was measured at.
Point = tuple[float, np.ndarray]

#: Visiting steps beyond this are redrawn uniformly within it (they wrap into the box).
TAIL_LIMIT = 1e8
#: How many starting points are tried before the run gives up on a failing objective.
MAX_STARTS = 1000
#: The forward-difference step relative to max(1, |x_i|): sqrt of float64's epsilon.
FD_STEP = math.sqrt(np.finfo(np.float64).eps)
#: Iterations without a better best point before a local search from the chain's lowest.
PATIENCE = 1000
#: L-BFGS history length, Armijo constant, halvings, and stopping tolerances (scipy's).
LBFGS_PAIRS, ARMIJO, HALVINGS, FTOL, GTOL = 10, 1e-4, 30, 2.2e-9, 1e-5


@dataclass(frozen=True)
class Settings:
    """The annealing's settings (see :class:`AnnealingAdapter` for their meaning)."""

    lower: np.ndarray
    upper: np.ndarray
    maxiter: int
    initial_temp: float
    restart_temp_ratio: float
    visit: float
    accept: float
    local_search: bool


class AnnealingAdapter(AdapterBase):
    """Generalized simulated annealing with local search, ask/tell (method ``"annealing"``).

    One point per batch (``workers`` cannot parallelize a Markov chain), asked
    while ``limit`` >= 1. The algorithm and its math are in the module
    docstring.

    Args:
        x0: the first point evaluated.
        budget: recorded in ``state()``; the annealing does not plan with it (the
            driver's budget ends the run), so a restored run may be given more.
        seed: seeds the private ``numpy.random.Generator`` of every draw.
        bounds: ``(lower, upper)``, each a number or d numbers; default
            ``x0 ± 5·max(1, |x0|)`` per coordinate (wide around the start,
            scaled to it). x0 must lie inside. Every asked point lies inside.
        maxiter: annealing iterations (chains of 2d visits) before the run
            finishes (then ``ask`` returns None and ``stop_reason`` says so).
        initial_temp: :math:`T_1` > 0 (default 5230, scipy's).
        restart_temp_ratio: restart when the temperature falls below this
            fraction of ``initial_temp``; in (0, 1), default 2e-5.
        visit: :math:`q_v` in (1.4, 3), default 2.62; larger gives heavier
            tails. Below 1.4 the visiting law has no finite scale.
        accept: :math:`q_a` < 1, default -5; lower accepts worse points less.
        no_local_search: True for annealing alone.

    ``recommendation()`` is the best finitely evaluated point, or x0 before any.
    """

    #: The options ``make_dfo`` accepts besides ``bounds``.
    OPTIONS: tuple[str, ...] = (
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
        maxiter: int = 1000,
        initial_temp: float = 5230.0,
        restart_temp_ratio: float = 2e-5,
        visit: float = 2.62,
        accept: float = -5.0,
        no_local_search: bool = False,
    ) -> None:
        super().__init__("annealing", x0.size, seed=seed, budget=budget)
        lower, upper = annealing_bounds(x0, bounds)
        self._x0 = x0.copy()
        self._settings = Settings(
            lower=lower,
            upper=upper,
            maxiter=check_int("maxiter", maxiter, 1),
            initial_temp=check_positive("initial_temp", initial_temp),
            restart_temp_ratio=check_interval("restart_temp_ratio", restart_temp_ratio, 0.0, 1.0),
            visit=check_interval("visit", visit, 1.4, 3.0),
            accept=check_interval("accept", accept, -math.inf, 1.0),
            local_search=not check_flag("no_local_search", no_local_search),
        )
        self._start()

    def _start(self) -> None:
        rng = np.random.default_rng(self._seed)
        self._search = anneal(self._x0.copy(), self._settings, rng)
        self._point: np.ndarray | None = next(self._search)

    def ask(self, limit: int) -> torch.Tensor | None:
        """The next point, ``[1, d]``; None if ``limit`` is 0 or the annealing has finished."""
        self._check_limit(limit)
        if self._point is None or limit == 0:
            return None
        return self._hand_out(self._point[None, :])

    def tell(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """Send the loss (a failure as +inf) and run the search to its next point."""
        self._take_back(X, Y)
        loss = float(Y[0])
        try:
            self._point = self._search.send(loss if math.isfinite(loss) else math.inf)
        except StopIteration as end:
            self._point = None
            self.stop_reason = f"annealing finished: {end.value}"

    def recommendation(self) -> torch.Tensor:
        """The best finitely evaluated point, or x0 before any."""
        best = self._best_x if self._best_x is not None else self._x0
        return torch.from_numpy(best.copy())


# --------------------------------------------------------------------------- the search


def anneal(x0: np.ndarray, s: Settings, rng: np.random.Generator) -> Search:
    """The annealing of the module docstring, from ``x0``, as a generator of points."""
    d = x0.size
    start = yield from _finite_start(x0, s, rng)
    if start is None:
        return f"the loss was not finite at x0 nor at {MAX_STARTS - 1} random points"
    current = best = chain_low = start
    waited, patience = 0, PATIENCE
    iteration = 0
    while True:
        for t in range(1, s.maxiter + 1):
            if iteration >= s.maxiter:
                return f"maxiter={s.maxiter} iterations done"
            heat = temperature(t, s.initial_temp, s.visit)
            if heat < s.restart_temp_ratio * s.initial_temp:
                restart = yield from _finite_start(rng.uniform(s.lower, s.upper), s, rng)
                if restart is None:
                    return f"the loss was not finite at {MAX_STARTS} random restart points"
                current = restart
                break
            waited += 1
            improved = t == 1
            for j in range(2 * d):
                x = _visit(current[1], j, heat, s, rng)
                e = yield x
                if e < current[0]:
                    current = (e, x)
                    if e < best[0]:
                        best, improved, waited = current, True, 0
                elif rng.uniform() <= acceptance(e - current[0], heat / t, s.accept):
                    current = (e, x)
                if waited >= patience and (j == 0 or current[0] < chain_low[0]):
                    chain_low = current
            if s.local_search and improved:
                found = yield from local_search(best, s.lower, s.upper)
                if found[0] < best[0]:
                    best = current = found
                    waited = 0
            if s.local_search and waited >= patience:
                chain_low = yield from local_search(chain_low, s.lower, s.upper)
                waited, patience = 0, d
                if chain_low[0] < best[0]:
                    best = current = chain_low
            iteration += 1


def _finite_start(
    x: np.ndarray, s: Settings, rng: np.random.Generator
) -> Generator[np.ndarray, float, Point | None]:
    """``x`` and its energy, or the first of up to MAX_STARTS − 1 uniform redraws that is finite."""
    for _ in range(MAX_STARTS):
        e = yield x
        if math.isfinite(e):
            return e, x
        x = rng.uniform(s.lower, s.upper)
    return None


def temperature(t: int, initial_temp: float, visit: float) -> float:
    """T(t) = T_1 (2^(q_v−1) − 1) / ((1 + t)^(q_v−1) − 1), T_1 = initial_temp, q_v = visit."""
    return initial_temp * (2.0 ** (visit - 1) - 1) / ((1.0 + t) ** (visit - 1) - 1)


def visiting_scale(temperature: float, visit: float) -> float:
    """σ(T) of the visiting distribution (module docstring), for q_v = ``visit`` in (1.4, 3)."""
    q = visit
    f4 = math.sqrt(math.pi) * (q - 1) ** (4 - q) / (2 ** ((2 - q) / (q - 1)) * (3 - q))
    a = 1.5 - 1 / (q - 1)
    f6 = 1 / (float(np.sinc(a)) * math.gamma(1 + a))
    return (f6 / (f4 * temperature ** (1 / (q - 1)))) ** (-(q - 1) / (3 - q))


def _visit(
    x: np.ndarray, j: int, temperature: float, s: Settings, rng: np.random.Generator
) -> np.ndarray:
    """Visit j of a chain from ``x``: all coordinates for j < d, else coordinate j − d alone."""
    d = x.size
    moved = slice(None) if j < d else slice(j - d, j - d + 1)
    n = d if j < d else 1
    X, Y = rng.normal(size=(2, n))
    with np.errstate(divide="ignore"):  # Y = 0 is an infinite step, redrawn below
        step = (
            visiting_scale(temperature, s.visit) * X / np.abs(Y) ** ((s.visit - 1) / (3 - s.visit))
        )
    step = np.where(
        np.abs(step) > TAIL_LIMIT, np.sign(step) * TAIL_LIMIT * rng.uniform(size=n), step
    )
    out = x.copy()
    out[moved] = _wrap(x[moved] + step, s.lower[moved], s.upper[moved])
    return out


def _wrap(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``x`` wrapped periodically into [lower, upper)."""
    return lower + np.mod(x - lower, upper - lower)


def acceptance(delta: float, step_temperature: float, accept: float) -> float:
    """p = [1 − (1 − q_a) ΔE / T_s]_+^(1/(1 − q_a)) for ΔE >= 0 (0 for a failure, ΔE = inf)."""
    base = 1.0 - (1.0 - accept) * delta / step_temperature
    return base ** (1.0 / (1.0 - accept)) if base > 0 else 0.0


# --------------------------------------------------------------------------- local search


def local_search(
    start: Point, lower: np.ndarray, upper: np.ndarray
) -> Generator[np.ndarray, float, Point]:
    """L-BFGS with forward differences, clipped to the bounds; returns where it stopped.

    That point is never higher than ``start``: every accepted step decreases the loss.
    """
    e, x = start
    g = yield from _gradient(x, e, upper)
    pairs: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=LBFGS_PAIRS)
    for _ in range(min(max(6 * x.size, 100), 1000)):
        if g is None or np.max(np.abs(x - np.clip(x - g, lower, upper))) <= GTOL:
            break
        p = _lbfgs_direction(g, pairs)
        if g @ p >= 0:  # not a descent direction: forget the curvature pairs
            pairs.clear()
            p = _lbfgs_direction(g, pairs)
        step = yield from _armijo(e, x, g, p, lower, upper)
        if step is None:
            break
        e_new, x_new = step
        if e - e_new <= FTOL * max(abs(e), abs(e_new), 1.0):
            return e_new, x_new  # too little gain to go on
        g_new = yield from _gradient(x_new, e_new, upper)
        if g_new is not None:
            s, y = x_new - x, g_new - g
            if s @ y > np.finfo(np.float64).eps * (y @ y):  # keep H positive definite
                pairs.append((s, y))
        e, x, g = e_new, x_new, g_new
    return e, x


def _gradient(
    x: np.ndarray, e: float, upper: np.ndarray
) -> Generator[np.ndarray, float, np.ndarray | None]:
    """The forward-difference gradient at ``x`` (d evaluations), or None at a failed probe."""
    h = FD_STEP * np.maximum(1.0, np.abs(x))
    h = np.where(x + h > upper, -h, h)
    g = np.empty_like(x)
    for i in range(x.size):
        probe = x.copy()
        probe[i] += h[i]
        e_i = yield probe
        if not math.isfinite(e_i):
            return None
        g[i] = (e_i - e) / (probe[i] - x[i])
    return g


def _lbfgs_direction(g: np.ndarray, pairs: deque[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """−H·g by the two-loop recursion; with no pairs, the unit steepest-descent step."""
    if not pairs:
        return -g / max(float(np.linalg.norm(g)), 1e-300)
    q = g.copy()
    coefficients = []
    for s, y in reversed(pairs):
        rho = 1.0 / (y @ s)
        alpha = rho * (s @ q)
        q -= alpha * y
        coefficients.append((rho, alpha))
    s, y = pairs[-1]
    q *= (s @ y) / (y @ y)
    for (s, y), (rho, alpha) in zip(pairs, reversed(coefficients), strict=True):
        q += (alpha - rho * (y @ q)) * s
    return -q


def _armijo(
    e: float, x: np.ndarray, g: np.ndarray, p: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> Generator[np.ndarray, float, Point | None]:
    """The first clipped step x + 2^−k p with sufficient decrease, or None (no such step)."""
    t = 1.0
    for _ in range(HALVINGS):
        x_new = np.clip(x + t * p, lower, upper)
        if np.array_equal(x_new, x):
            return None
        e_new = yield x_new
        # min(0, ·): a step the clipping turned uphill must still not go up
        if e_new <= e + ARMIJO * min(0.0, float(g @ (x_new - x))):
            return e_new, x_new
        t *= 0.5
    return None


# --------------------------------------------------------------------------- arguments


def annealing_bounds(x0: np.ndarray, bounds: tuple[Any, Any] | None) -> tuple[Any, Any]:
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
        raise ValueError("bounds must be finite (annealing visits a box)")
    if not np.all(lower < upper):
        raise ValueError("bounds must have lower < upper in every coordinate")
    if not np.all((lower <= x0) & (x0 <= upper)):
        raise ValueError("x0 must lie inside bounds")
    return lower, upper
