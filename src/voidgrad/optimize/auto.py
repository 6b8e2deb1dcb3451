r"""``method="auto"``, ``vg.minimize``'s default: the method chosen from the problem and a probe.

The first step of an ``auto`` run is a *probe* (:func:`probe_points`,
:func:`read_probe`), a handful of evaluations at and next to x0, counted in
the budget like any other:

* **noise**: when ``fn`` takes a ``seed``, x0 is evaluated three times with
  three seeds; any difference makes the loss *noisy*;
* **smoothness**: along K = 3 Gaussian directions z_k, the loss at
  x0 + h z_k and x0 + 2h z_k, with h = √ε₆₄ · max(1, max|x0|), the step of a
  forward difference in float64. With Δ₁ = f(x0 + h z) − f(x0) and
  Δ₂ = f(x0 + 2h z) − f(x0), a loss with a continuous second derivative has
  Δ₂/Δ₁ = 2 + O(h); the loss is *smooth* where |Δ₂/Δ₁ − 2| ≤ 0.1 on every
  direction. A piecewise-constant loss (a hard-edged render) gives Δ₁ = 0,
  noise or discontinuities give other ratios, and so does a loss computed in
  float32 (its round-off is far above h): for all of these a
  finite-difference gradient is useless.
* **scale**, only when no ``scale`` is given: along 2 more Gaussian
  directions u_j, the loss at x0 + t u_j for t = max(1, max|x0|) · 2^-k,
  k = 0 … 12; the step that first changes the loss by a quarter of |f(x0)|
  is about half the distance to a minimum near 0 (:func:`read_probe`).

Then :func:`choose` picks, with d = x0's size, B the run's budget (the
probe's evaluations included; the method gets what the probe left) and
s = ``scale``:

1. a ``guide`` given: guided smoothing with the adaptive α
   (``vg.GuidedSmoothing(adapt=True)``), σ = 0.5 s, 8 samples, lr = 0.05 s;
   a ``jac_sparsity`` given (``fn`` returns per-output losses, minimized in
   sum): smoothing with it, σ and lr as in 4 (SPSA with it where B < d, as
   in 3);
2. smooth, noise-free and B ≥ 20 d: ``"annealing"`` (dual annealing, whose
   local search is L-BFGS on forward differences: the tool for a smooth
   deterministic loss, and a global one);
3. B < d (fewer evaluations than parameters): ``"spsa"``, c = 0.1 s,
   lr = 0.05 s (two evaluations a step: the most steps);
4. otherwise ``"smoothing"``: σ = 0.5 s annealed to 0.05 s, 8 samples,
   lr = 0.05 s, the budget's kernel and lr schedule
   (:mod:`voidgrad.optimize.defaults`).

These are the bench's settings of each method (:mod:`voidgrad.registry`)
at s; which one wins where is measured in
``benchmarks/reports/auto-2026-12-03``. A budget too small for the probe
skips it and chooses by d and B alone.

``scale`` is the distance per coordinate from x0 to where the answer may be;
without it, the smaller of x0's root-mean-square (1 where x0 is 0) and the
probe's measured scale. The probe costs 7 evaluations (9 when ``fn`` takes a
seed), 26 more for the scale; a part is left out when the probe would cost
over 5 % of the budget (the scale first, then the whole probe). The choice, with
its reason and the probe's figures, is logged (logger
``voidgrad.optimize.auto``, level INFO) and returned in
``OptimizeResult.choice``; a resumed run keeps the choice its checkpoint
recorded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from voidgrad.estimators.sparsity import as_sparsity
from voidgrad.evaluation.evaluator import Evaluator
from voidgrad.optimize.algorithms import LrSchedule, MinimizeAlgorithm, OptimizerSpec
from voidgrad.optimize.best import BestPoint
from voidgrad.optimize.build import build_algorithm
from voidgrad.optimize.result import StepRecord
from voidgrad.registry import RUNNABLE
from voidgrad.registry import method as registered_method
from voidgrad.run import RunState, Stop
from voidgrad.validation import check_callable, check_int, check_positive

logger = logging.getLogger(__name__)

#: Gaussian directions the smoothness probe steps along.
PROBE_DIRECTIONS = 3
#: Repeated evaluations of x0 (beyond the first) that tell a noisy fn.
PROBE_REPEATS = 2
#: The probe runs only when its cost is at most this fraction of the budget.
PROBE_MAX_FRACTION = 0.05
#: Δ₂/Δ₁ may differ from 2 by this much on a smooth loss.
SMOOTH_RATIO_TOLERANCE = 0.1
#: Dual annealing is chosen for a smooth loss from this many evaluations per parameter.
ANNEALING_MIN_BUDGET_PER_DIM = 20
#: Without a ``scale``: steps t_k = max(1, max|x0|) · 2^-k, k < this, along each direction …
SCALE_LADDER_STEPS = 13
#: … of this many Gaussian directions; the scale is the smallest step that changes the loss …
SCALE_DIRECTIONS = 2
#: … by this fraction of |f(x0)|.
SCALE_CHANGE = 0.25


@dataclass(frozen=True)
class Probe:
    """What the probe measured at x0.

    Attributes:
        evaluations: evaluations it spent.
        loss: f(x0) (the first evaluation).
        step: h, the finite-difference step it tried.
        noisy: whether repeated evaluations of x0 with other seeds differed.
        smooth: whether Δ₂/Δ₁ was within ``SMOOTH_RATIO_TOLERANCE`` of 2 on every direction.
        ratios: Δ₂/Δ₁ per direction (NaN where Δ₁ = 0 or a value was not finite).
        scale: the measured scale (see :func:`read_probe`), None where it was
            not measured (a ``scale`` was given, or the budget was too small)
            or could not be (f(x0) 0 or not finite).
    """

    evaluations: int
    loss: float
    step: float
    noisy: bool
    smooth: bool
    ratios: tuple[float, ...]
    scale: float | None = None

    def state_dict(self) -> dict[str, Any]:
        """The probe as plain data (numbers, bools, a list), for a checkpoint."""
        return {**asdict(self), "ratios": list(self.ratios)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Probe:
        """The probe a :meth:`state_dict` holds; ValueError if it is not one."""
        try:
            probe = cls(
                evaluations=int(state["evaluations"]),
                loss=float(state["loss"]),
                step=float(state["step"]),
                noisy=bool(state["noisy"]),
                smooth=bool(state["smooth"]),
                ratios=tuple(float(r) for r in state["ratios"]),
                scale=None if state["scale"] is None else float(state["scale"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"probe must be a probe's state_dict: {error!r}") from error
        return probe


@dataclass(frozen=True)
class AutoChoice:
    """What ``method="auto"`` chose, and why.

    Attributes:
        method: the method that ran (a name of :mod:`voidgrad.registry`).
        options: its options (``lr`` included for a gradient method).
        reason: why, in words.
        probe: the probe's figures (None where the budget was too small for it).
        budget: the evaluations the method was given (the run's, less the probe's).
    """

    method: str
    options: Mapping[str, Any] = field(repr=False)
    reason: str
    probe: Probe | None
    budget: int

    @property
    def run_budget(self) -> int:
        """The run's budget when it chose: the method's and the probe's evaluations."""
        return self.budget + (0 if self.probe is None else self.probe.evaluations)

    def __str__(self) -> str:
        return f"{self.method}: {self.reason}"


def probe_step(x0: torch.Tensor) -> float:
    """h = √ε(float64) · max(1, max|x0|): the step of a float64 forward difference."""
    return math.sqrt(torch.finfo(torch.float64).eps) * max(1.0, float(x0.abs().max()))


def scale_steps(x0: torch.Tensor) -> list[float]:
    """The scale ladder's steps: max(1, max|x0|) · 2^-k for k < ``SCALE_LADDER_STEPS``."""
    top = max(1.0, float(x0.abs().max()))
    return [top * 2.0**-k for k in range(SCALE_LADDER_STEPS)]


def probe_points(
    x0: torch.Tensor, step: float, repeats: int, generator: torch.Generator, ladder: bool = False
) -> torch.Tensor:
    """The probe's rows: x0 (1 + ``repeats`` times), then x0 + h z_k, then x0 + 2h z_k.

    The K = ``PROBE_DIRECTIONS`` directions z_k ~ N(0, I) are drawn from
    ``generator`` on x0's device, in x0's dtype. With ``ladder``, then
    x0 + t u_j for each step t of :func:`scale_steps` along each of
    ``SCALE_DIRECTIONS`` more directions u_j.
    """
    check_int("repeats", repeats, 0)
    d = x0.numel()
    Z = torch.randn(PROBE_DIRECTIONS, d, generator=generator, dtype=x0.dtype, device=x0.device)
    rows = [x0.expand(1 + repeats, -1), x0 + step * Z, x0 + 2 * step * Z]
    if ladder:
        U = torch.randn(SCALE_DIRECTIONS, d, generator=generator, dtype=x0.dtype, device=x0.device)
        t = torch.tensor(scale_steps(x0), dtype=x0.dtype, device=x0.device)
        rows.append((x0 + t[None, :, None] * U[:, None, :]).reshape(-1, d))
    return torch.cat(rows)


def read_probe(
    Y: torch.Tensor, step: float, repeats: int, steps: list[float] | None = None
) -> Probe:
    """The :class:`Probe` from the losses ``Y`` (``[n]``) of :func:`probe_points`' rows.

    ``steps``: the ladder's (:func:`scale_steps`), where the rows have one.
    The measured scale is then, per ladder direction, the smallest step t
    with |f(x0 + t u) − f(x0)| ≥ ``SCALE_CHANGE`` · |f(x0)| (the largest step
    where none is); the scale is twice their geometric mean over the
    directions: in a bowl f = a‖x − x*‖² with f(x*) = 0 a step of t per
    coordinate changes f by about (t/s)² f(x0), s the root-mean-square
    distance to x*, so the step found is about s/2. It assumes a loss whose
    minimum is near 0 (an image difference, a squared error); for one far
    from 0 it comes out too large, and x0's magnitude bounds it.
    """
    expected = probe_cost(repeats, ladder=steps is not None)
    if Y.shape != (expected,):
        raise ValueError(
            f"Y must hold the losses of the probe's {expected} rows, shape ({expected},); got "
            f"shape {tuple(Y.shape)}"
        )
    values = Y.detach().double().cpu()
    at_x0 = values[: 1 + repeats]
    probed = values[1 + repeats :]
    first, second = probed[: 2 * PROBE_DIRECTIONS].split(PROBE_DIRECTIONS)
    f0 = at_x0[0]
    noisy = bool(torch.isfinite(at_x0).all()) and bool((at_x0 != f0).any())
    delta1, delta2 = first - f0, second - f0
    ratios = torch.where(delta1 != 0, delta2 / delta1, torch.full_like(delta1, math.nan))
    ratios = torch.where(torch.isfinite(ratios), ratios, torch.full_like(ratios, math.nan))
    smooth = not noisy and bool(((ratios - 2).abs() <= SMOOTH_RATIO_TOLERANCE).all())
    scale = None
    if steps is not None and math.isfinite(f0) and f0 != 0:
        changes = (probed[2 * PROBE_DIRECTIONS :].view(SCALE_DIRECTIONS, -1) - f0).abs()
        reached = changes >= SCALE_CHANGE * abs(float(f0))  # NaN: not reached
        found = [
            min((t for t, hit in zip(steps, row.tolist(), strict=True) if hit), default=steps[0])
            for row in reached
        ]
        scale = 2 * math.exp(sum(math.log(t) for t in found) / len(found))
    return Probe(
        evaluations=values.numel(),
        loss=float(f0),
        step=step,
        noisy=noisy,
        smooth=smooth,
        ratios=tuple(ratios.tolist()),
        scale=scale,
    )


def probe_cost(repeats: int, ladder: bool = False) -> int:
    """Evaluations of a probe that repeats x0 ``repeats`` more times, with or without the ladder."""
    return (
        1
        + repeats
        + 2 * PROBE_DIRECTIONS
        + (SCALE_DIRECTIONS * SCALE_LADDER_STEPS if ladder else 0)
    )


def choose(
    dim: int,
    budget: int,
    scale: float,
    probe: Probe | None,
    guide: Callable[..., Any] | None = None,
    jac_sparsity: object = None,
) -> AutoChoice:
    """The method, its options and the reason, for ``dim`` parameters and ``budget`` evaluations.

    ``budget`` is the run's, the probe's evaluations included (the rules
    compare it with d; the method gets what the probe left); the rules are
    the module doc's.

    Examples:
        >>> from voidgrad.optimize.auto import Probe, choose
        >>> smooth = Probe(7, loss=1.0, step=1.5e-8, noisy=False, smooth=True, ratios=(2.0,) * 3)
        >>> choose(dim=10, budget=1_000, scale=1.0, probe=smooth).method
        'annealing'
        >>> choose(dim=10_000, budget=1_000, scale=1.0, probe=smooth).method
        'spsa'
        >>> choose(dim=10, budget=100, scale=1.0, probe=None).method
        'smoothing'
    """
    check_int("dim", dim, 1)
    check_int("budget", budget, 1)
    check_positive("scale", scale)
    left = budget - (0 if probe is None else probe.evaluations)
    if left < 1:
        raise ValueError(f"budget {budget} leaves nothing after the probe's {budget - left}")
    per_dim = f"{budget / dim:.3g} evaluations per parameter"

    def chosen(method: str, options: dict[str, Any], reason: str) -> AutoChoice:
        return AutoChoice(method, options, reason, probe, left)

    lr = {"lr": 0.05 * scale}
    spsa = {"c": 0.1 * scale, "samples": 2, **lr}
    smoothing = {"sigma": 0.5 * scale, "samples": 8, **lr}
    if guide is not None:
        return chosen(
            "guided",
            {**smoothing, "guide": guide, "adapt": True},
            "a guide gradient was given: guided smoothing, trusting the guide as far as its "
            "measured share of the gradient allows",
        )
    if jac_sparsity is not None:
        sparse = f"per-output losses with a jac_sparsity pattern and {per_dim}"
        credit = "crediting each parameter with its outputs only"
        if budget < dim:
            return chosen(
                "spsa", {**spsa, "jac_sparsity": jac_sparsity}, f"{sparse}: SPSA {credit}"
            )
        return chosen(
            "smoothing",
            {**smoothing, "jac_sparsity": jac_sparsity},
            f"{sparse}: Gaussian smoothing {credit}",
        )
    if probe is not None and probe.smooth and budget >= ANNEALING_MIN_BUDGET_PER_DIM * dim:
        return chosen(
            "annealing",
            {},
            f"the loss changed in proportion to steps of {probe.step:.2g} and 2× that along "
            f"{PROBE_DIRECTIONS} random directions (smooth to float64 round-off, noise-free) "
            f"and the budget is {per_dim}: dual annealing, whose local search uses "
            "finite-difference gradients",
        )
    probed = "" if probe is None else f"{_why_not_smooth(probe)}; "
    if budget < dim:
        return chosen(
            "spsa",
            spsa,
            f"{probed}the budget is {per_dim}: SPSA, two evaluations a step, the most steps",
        )
    return chosen(
        "smoothing",
        smoothing,
        f"{probed}the budget is {per_dim}: Gaussian smoothing with σ annealed from 0.5 to "
        "0.05 times the scale",
    )


def _why_not_smooth(probe: Probe) -> str:
    if probe.noisy:
        return "repeated evaluations at x0 differed (a noisy loss)"
    ratios = ", ".join("flat" if math.isnan(r) else f"{r:.3g}" for r in probe.ratios)
    return (
        f"finite differences along {PROBE_DIRECTIONS} random directions at steps "
        f"{probe.step:.2g} and 2× that did not scale as a smooth loss's (ratios {ratios}, "
        "2 expected)"
    )


@dataclass(frozen=True)
class Auto:
    """The registry's build of ``method="auto"``: its options, checked.

    Args:
        scale: the distance per coordinate from x0 to where the answer may
            be (σ, c, lr are set in its units); default: guessed by the probe
            (:meth:`~voidgrad.optimize.auto.Auto.scale_for`).
        guide: a guide gradient ``guide(theta) -> tensor [d]``; with it,
            guided smoothing runs.
        jac_sparsity: which of ``fn``'s per-output losses depend on which
            parameters (``[m, d]``); with it, ``fn`` returns m losses, their
            sum is minimized and smoothing (SPSA below d evaluations) credits
            each parameter with its outputs only.
    """

    scale: float | None = None
    guide: Callable[..., Any] | None = None
    jac_sparsity: object = None

    def __post_init__(self) -> None:
        if self.scale is not None:
            check_positive("scale", self.scale)
        check_callable("guide", self.guide, "guide(theta) -> tensor [d]")
        as_sparsity(self.jac_sparsity)  # a bad pattern is named now, not at the first step

    def scale_for(self, x0: torch.Tensor, probe: Probe | None = None) -> float:
        """``scale``, else the smaller of x0's root-mean-square (1 where 0) and the probe's."""
        if self.scale is not None:
            return float(self.scale)
        rms = float(x0.double().pow(2).mean().sqrt())
        rms = rms if rms > 0 else 1.0
        return rms if probe is None or probe.scale is None else min(rms, probe.scale)


class AutoAlgorithm(MinimizeAlgorithm):
    """``method="auto"``: probe, choose, then run the chosen method's algorithm.

    Attributes:
        choice: the :class:`AutoChoice` (None before the first step).
        chosen: the chosen method's algorithm (None before the first step):
            for a gradient method its ``theta``, ``estimator``, ``optimizer``.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        x0: torch.Tensor,
        auto: Auto,
        *,
        seed: int,
        optimizer: OptimizerSpec,
        lr: float | None,
        lr_schedule: LrSchedule | str | None,
        best: BestPoint,
    ) -> None:
        super().__init__(evaluator, best)
        self.x0 = x0
        self.auto = auto
        self.seed = seed
        self.optimizer = optimizer
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.choice: AutoChoice | None = None
        self.chosen: MinimizeAlgorithm | None = None

    def step(self, state: RunState) -> StepRecord | Stop:
        if self.chosen is not None:
            return self.chosen.step(state)
        repeats = PROBE_REPEATS if self.evaluator.accepts_seed else 0
        affordable = PROBE_MAX_FRACTION * state.budget
        if probe_cost(repeats) > affordable:
            self._choose(None, state.budget)
            assert self.chosen is not None
            return self.chosen.step(state)
        ladder = self.auto.scale is None and probe_cost(repeats, ladder=True) <= affordable
        step = probe_step(self.x0)
        generator = torch.Generator(device=self.x0.device).manual_seed(self.seed)
        before = self.evaluator.stats.evals
        Y = self.evaluator(probe_points(self.x0, step, repeats, generator, ladder))
        state.spent += self.evaluator.stats.evals - before
        losses = self.best.losses(Y)  # per-output losses summed, as the run minimizes them
        probe = read_probe(losses, step, repeats, scale_steps(self.x0) if ladder else None)
        self._choose(probe, state.budget)
        return StepRecord(
            step=state.step + 1,
            evals=state.spent,
            loss=probe.loss,
            best=self.best.loss,
            seconds=state.seconds,
        )

    def _choose(self, probe: Probe | None, budget: int) -> None:
        """Choose for a run of ``budget`` evaluations, and build the chosen algorithm."""
        scale = self.auto.scale_for(self.x0, probe)
        choice = choose(
            self.x0.numel(), budget, scale, probe, self.auto.guide, self.auto.jac_sparsity
        )
        options = dict(choice.options)
        lr = options.pop("lr", None)
        if self.lr is not None:
            lr = self.lr
        self.chosen = build_algorithm(
            registered_method(choice.method, RUNNABLE, presets=False),
            options,
            evaluator=self.evaluator,
            x0=self.x0,
            budget=budget,
            spent=budget - choice.budget,
            seed=self.seed,
            optimizer=self.optimizer,
            lr=lr,
            lr_schedule=self.lr_schedule,
            best=self.best,
        )
        self.choice = choice
        if self.auto.scale is None and choice.method != "annealing":
            logger.info(
                "method='auto' chose %s; its settings are in units of scale=%.4g, guessed "
                "(the smaller of x0's root-mean-square and the step that changed the loss "
                "by a quarter): pass scale= (the distance per coordinate to where the "
                "answer may be) to set it",
                choice,
                scale,
            )
        else:
            logger.info("method='auto' chose %s", choice)

    def x_last(self) -> torch.Tensor:
        """The chosen method's final iterate or recommendation (x0 before it ran)."""
        return self.x0 if self.chosen is None else self.chosen.x_last()

    def state_dict(self) -> dict[str, Any]:
        if self.choice is None or self.chosen is None:
            return {"choice_budget": -1, "probe": None, "chosen": None, **self.best.state_dict()}
        probe = self.choice.probe
        return {
            "choice_budget": self.choice.run_budget,
            "probe": None if probe is None else probe.state_dict(),
            "chosen": self.chosen.state_dict(),
            **self.best.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        budget = state["choice_budget"]
        if not isinstance(budget, int):
            raise ValueError(f"choice_budget must be an int; got {type(budget).__name__}")
        self.best.load_state_dict(state)
        if budget < 0:
            return
        probe = None if state["probe"] is None else Probe.from_state(state["probe"])
        self._choose(probe, budget)
        assert self.chosen is not None
        self.chosen.load_state_dict(state["chosen"])

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()
