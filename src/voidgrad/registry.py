"""One table of the methods voidgrad runs: what builds each, its kind, its defaults.

``vg.minimize``, ``voidgrad bench``, ``vg.rl.train`` and the command line
read this table; a method is added here once and each of them knows it. A :class:`Method` holds

- ``kind``: ``"auto"`` (``vg.minimize``'s default, which chooses one of the
  others: :mod:`voidgrad.optimize.auto`), ``"blackbox"`` (a gradient
  estimator for ``vg.blackbox`` and ``vg.minimize``), ``"derivative-free"`` (a library optimizer behind
  ``vg.minimize``; ``pip install 'voidgrad[bench]'``), ``"distribution"`` (an
  estimator for ``vg.expectation``) or ``"policy-gradient"`` (an estimator
  for ``vg.rl.train``);
- ``build(seed=..., **options)``: the estimator, for a derivative-free
  method the function ``start(x0, *, budget, workers=1)`` that makes its
  ask/tell adapter, for a policy gradient the
  :class:`~voidgrad.rl.gradients.PolicyGradientMethod` ``vg.rl.train`` reads; :meth:`Method.make` merges ``defaults`` under the caller's
  options first and checks the ``required`` ones;
- ``defaults``: what ``vg.minimize`` uses when the caller sets nothing;
- ``scaled``: the bench's options on a problem of scale s (the root-mean-square
  distance per coordinate from the start to the answer), budget and dimension;
  the same for every problem, none tuned per problem;
- ``preset_of``: for a bench preset, the method it runs with other options.

``nevergrad:<name>`` is one entry for every optimizer of
``nevergrad.optimizers.registry``, matched by its prefix.

| method | kind | defaults | required | bench options (s: the problem's scale) | needs | what it is |
|---|---|---|---|---|---|---|
| `auto` | auto | – | – | scale = s: the unit every other method's bench options are in. | – | vg.minimize's default: a method chosen from d, the budget and a probe of x0's loss. |
| `smoothing` | blackbox | sigma=0.1, samples=8 | – | PRDPT's: σ = 0.5 s annealed linearly to 0.05 s over the run, 8 samples, lr = 0.05 s. | – | Gaussian smoothing (PRDPT, evolution strategies): antithetic, importance-sampled. |
| `spsa` | blackbox | c=0.1, samples=2 | – | c = 0.1 s, 2 samples a step, lr = 0.05 s. | – | Simultaneous perturbation (SPSA): Rademacher directions, central differences. |
| `fd` | blackbox | h=0.001, scheme='central' | – | h = 0.001 s, lr = 0.05 s. | – | Finite differences along every axis: 2d evaluations a step (central). |
| `zerograds` | blackbox | sigma=0.1, samples=4 | – | σ = 0.5 s annealed linearly to 0.05 s over the run, 4 samples a step, lr = 0.05 s. | – | ZeroGrads: a neural surrogate fitted to Gaussian samples, differentiated. |
| `zerograds-reference` | blackbox | sigma=0.1, samples=4 | – | The reference code's ZeroGrads (see reference_zerograds_options), at s and d. | – | Bench preset of zerograds: the reference implementation's settings. |
| `guided` | blackbox | sigma=0.1, samples=8 | guide | – | – | Guided smoothing (guided ES): perturbations stretched along a user's guide gradients. |
| `mixed` | blackbox | sigma=0.1, samples=8 | guide | – | – | A guide gradient and smoothing mixed by inverse variance, with a bias check (Suh et al.). |
| `cma` | derivative-free | – | – | σ0 = 0.3 s. | bench | CMA-ES (pycma): full below 2 000 dimensions, separable above. |
| `annealing` | derivative-free | – | – | – | – | Dual annealing (scipy's dual_annealing algorithm in ask/tell form). |
| `ga` | derivative-free | – | – | – | bench | A real-coded genetic algorithm (nevergrad's EvolutionStrategy, μ+λ). |
| `nevergrad:<name>` | derivative-free | – | – | – | bench | Any optimizer of nevergrad.optimizers.registry, by name. |
| `score` | distribution | – | – | – | – | Score function (REINFORCE) with an optional baseline. |
| `pathwise` | distribution | – | – | – | – | Pathwise (reparameterization) gradients through a differentiable f. |
| `gumbel_softmax` | distribution | – | – | – | – | Gumbel-softmax (Concrete) relaxation of discrete samples. |
| `straight_through` | distribution | – | – | – | – | Straight-through: f at the discrete sample, gradient through its probabilities. |
| `rebar` | distribution | – | – | – | – | REBAR: RELAX with the relaxed f as control variate. |
| `relax` | distribution | – | control | – | – | RELAX: score function with a learned control variate, reparameterized. |
| `lax` | distribution | – | control | – | – | LAX: score function with a learned control variate, continuous z. |
| `disarm` | distribution | – | – | – | – | DisARM: antithetic pairs for Bernoulli variables. |
| `actor_critic` | policy-gradient | – | – | – | rl | Actor-critic: REINFORCE with a value baseline, any action space. |
| `lax` | policy-gradient | – | – | – | rl | LAX: a learned action-dependent control variate, continuous actions. |
| `relax` | policy-gradient | – | – | – | rl | RELAX: a learned control variate at the relaxed action, discrete actions. |

("–": nothing beyond the class's own defaults; the bench's ``lr`` is the
step size of ``vg.minimize``'s Adam.) :func:`table` renders this table from
the entries, and a test keeps the two equal.

Examples:
    >>> from voidgrad import registry
    >>> registry.method("spsa").make(seed=0)
    SPSA(c=0.1, samples=2)
    >>> registry.method("nevergrad:NGOpt").kind
    'derivative-free'
    >>> registry.method("zerograd")
    Traceback (most recent call last):
    ...
    ValueError: unknown method 'zerograd' (did you mean 'zerograds'?); known methods: ...
"""  # noqa: E501 (the table's rows are as long as they are)

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from types import MappingProxyType
from typing import Any, Literal

import torch

from voidgrad.estimators import (
    LAX,
    REBAR,
    RELAX,
    SPSA,
    DisARM,
    FiniteDifferences,
    GaussianSmoothing,
    GuidedSmoothing,
    GumbelSoftmax,
    MixedGradient,
    Pathwise,
    ScoreFunction,
    StraightThrough,
    ZeroGrads,
)
from voidgrad.estimators.schedules import LinearAnneal
from voidgrad.validation import check_int, check_positive

Kind = Literal["auto", "blackbox", "distribution", "derivative-free", "policy-gradient"]
KINDS: tuple[Kind, ...] = ("auto", "blackbox", "derivative-free", "distribution", "policy-gradient")

#: The methods ``vg.minimize`` and ``voidgrad bench`` run.
RUNNABLE: tuple[Kind, ...] = ("auto", "blackbox", "derivative-free")

#: The optimizers ``vg.minimize`` steps a gradient method with, by name.
OPTIMIZERS: Mapping[str, type[torch.optim.Optimizer]] = MappingProxyType(
    {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
        "rmsprop": torch.optim.RMSprop,
    }
)

#: The prefix of the nevergrad family: ``nevergrad:<name>``.
NEVERGRAD = "nevergrad:"

ZEROGRADS_SAMPLES = 4
"""Evaluations per step of the bench's ``zerograds`` (its σ schedule counts steps)."""


@dataclass(frozen=True)
class BenchScale:
    """What a bench cell's scale-relative options depend on.

    Args:
        scale: s, the problem's scale (``voidgrad.bench.problem_scale``).
        budget: the cell's evaluations.
        dim: the problem's dimension d.
        overrides: the options the caller sets (a schedule spans the run's
            steps, budget // samples, with ``samples`` as overridden).
    """

    scale: float
    budget: int
    dim: int = 1
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive("scale", self.scale)
        check_int("budget", self.budget, 1)
        check_int("dim", self.dim, 1)

    def steps(self, default_samples: int) -> int:
        """budget // samples (at least 2), samples as overridden; 2 when that is not an int > 0."""
        samples = self.overrides.get("samples", default_samples)
        if isinstance(samples, int) and samples > 0:
            return max(2, self.budget // samples)
        return 2


def _annealed(at: BenchScale, samples: int) -> dict[str, Any]:
    """σ = 0.5 s annealed linearly to 0.05 s over the run's steps, lr = 0.05 s (PRDPT)."""
    return {
        "sigma": 0.5 * at.scale,
        "samples": samples,
        "lr": 0.05 * at.scale,
        "schedule": LinearAnneal(0.05 * at.scale, total_steps=at.steps(samples)),
    }


def _bench_auto(at: BenchScale) -> dict[str, Any]:
    """scale = s: the unit every other method's bench options are in."""
    return {"scale": at.scale}


def _auto(*, seed: int | None = None, **options: Any) -> Any:
    """``method="auto"``'s build, imported on first use (it builds the other methods).

    ``seed`` is accepted for the common signature; ``vg.minimize`` seeds the run.
    """
    from voidgrad.optimize.auto import Auto

    unknown = sorted(set(options) - {"scale", "guide", "jac_sparsity"})
    if unknown:
        raise ValueError(
            f"method='auto' takes the options scale, guide and jac_sparsity; got "
            f"{', '.join(unknown)}, which belong to a named method: pass method='smoothing' "
            "(or another) with them"
        )
    return Auto(**options)


def _bench_smoothing(at: BenchScale) -> dict[str, Any]:
    """PRDPT's: σ = 0.5 s annealed linearly to 0.05 s over the run, 8 samples, lr = 0.05 s."""
    return {**_annealed(at, 8), "importance": True}


def _bench_zerograds(at: BenchScale) -> dict[str, Any]:
    """σ = 0.5 s annealed linearly to 0.05 s over the run, 4 samples a step, lr = 0.05 s."""
    return _annealed(at, ZEROGRADS_SAMPLES)


def _bench_spsa(at: BenchScale) -> dict[str, Any]:
    """c = 0.1 s, 2 samples a step, lr = 0.05 s."""
    return {"c": 0.1 * at.scale, "samples": 2, "lr": 0.05 * at.scale}


def _bench_fd(at: BenchScale) -> dict[str, Any]:
    """h = 0.001 s, lr = 0.05 s."""
    return {"h": 1e-3 * at.scale, "lr": 0.05 * at.scale}


def _bench_cma(at: BenchScale) -> dict[str, Any]:
    """σ0 = 0.3 s."""
    return {"sigma0": 0.3 * at.scale}


def _bench_zerograds_reference(at: BenchScale) -> dict[str, Any]:
    """The reference code's ZeroGrads (see reference_zerograds_options), at s and d."""
    return reference_zerograds_options(at.scale, at.dim)


def reference_zerograds_options(scale: float, dim: int) -> dict[str, Any]:
    """ZeroGrads as the reference code's ``optimize_with_proxy`` runs it, at the bench's budgets.

    From the reference (``mfischer-ucl/zerograds`` at 7490db8; the research
    notes, ``zerograds_prdpt.md`` §2.1-2.3):

    * its estimate ∇h(θ) (``unbiased=False``), read before the step's samples
      are fitted (``order="step-first"``: the loop steps θ with the old
      surrogate, then fits; §2.1 step 3);
    * θ itself into the network (``inputs="raw"``: its ``normalize_fn`` is the
      identity on the caustic, MNIST-MLP and texture tasks) and the losses
      themselves as targets (``targets="raw"``: ``criterion_proxy`` is the MSE
      on them; §2.1 step 4), so the ``frame`` (``"fixed"``: the landscape,
      not offsets from θ) changes nothing;
    * 20 evaluations a step (B = 10 antithetic pairs), inner smoothing ρ = 0.1,
      k_θ = 1 θ step per batch (the caustic, texture, Rosenbrock and LED tasks;
      §2.3), 4 on MNIST-MLP, k_φ = 3 fits (10 on MNIST-MLP) at lr_φ = 1e-4 above 1 000
      parameters, 1e-3 below (the toy, Rosenbrock and LED tasks);
    * its networks (§2.2): 3×64 without encoding below 1 000 parameters,
      8×128 with positional encoding above, L = 6 frequencies (caustic,
      texture) or 3 on the MLP task, recognised here by its dimension
      (35 152, the MNIST MLP's weights, which the bench's ``digits_mlp``
      shares); PyTorch's default initialization, and leaky ReLU on the
      output too (``activate_output``).

    Changed, for the bench's budgets and scales: lr_θ = 0.01 s where the
    reference's is 1e-4 on the caustic (≈ 0.0011 s at its s ≈ 0.09),
    1.25e-5 on MNIST-MLP and 1e-5 on the texture (they move θ by almost
    nothing in a few hundred steps); σ = 0.2 s where the reference's is
    0.0125 on the caustic (≈ 0.14 s) and 0.025 on MNIST-MLP and the texture;
    and a rank-32 first layer above 200 000
    encoded inputs, because the reference's full first layer there (up to
    327M weights) does not fit a 2-core time budget.
    """
    mlp = dim == 35_152
    network = (
        {"width": 128, "depth": 8, "encoding_levels": 3 if mlp else 6}
        if dim >= 1000
        else {"width": 64, "depth": 3, "encoding_levels": 0}
    )
    return {
        "sigma": 0.2 * scale,
        "schedule": None,  # σ fixed, as in the reference (not vg.minimize's anneal)
        "samples": 20,
        "lr": 0.01 * scale,
        "inner_sigma": 0.1,
        "fit_steps": 10 if mlp else 3,
        "surrogate_lr": 1e-4 if dim >= 1000 else 1e-3,
        "unbiased": False,
        "frame": "fixed",
        "inputs": "raw",
        "targets": "raw",
        "order": "step-first",
        "theta_steps": 4 if mlp else 1,
        "zero_output": False,
        "activate_output": True,
        "low_rank_above": 200_000,
        **network,
    }


def _make_dfo(
    name: str, x0: torch.Tensor, *, budget: int, seed: int, workers: int = 1, **options: Any
) -> Any:
    """``make_dfo``, imported on first use: its libraries are the optional ``bench`` extra."""
    from voidgrad.optimize.adapters import make_dfo

    return make_dfo(name, x0, budget=budget, seed=seed, workers=workers, **options)


def _dfo(name: str, *, seed: int, **options: Any) -> Callable[..., Any]:
    """A derivative-free method's build: ``start(x0, *, budget, workers=1)`` -> its adapter."""
    return partial(_make_dfo, name, seed=seed, **options)


def _policy_gradient(
    name: str, actions: str, learned_control: bool, *, seed: int | None = None
) -> Any:
    """A policy-gradient method's build (imported on first use: ``vg.rl`` reads the registry).

    ``seed`` is accepted for the common signature; ``vg.rl.train`` seeds the run.
    """
    from voidgrad.rl.gradients import PolicyGradientMethod

    return PolicyGradientMethod(name, actions, learned_control)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Method:
    """One entry of the table (see the module doc).

    Args:
        name: what ``method=`` names it (``nevergrad:<name>`` for the family).
        kind: ``"blackbox"``, ``"derivative-free"`` or ``"distribution"``.
        build: ``build(seed=..., **options)`` -> the estimator (for a
            derivative-free method: ``start(x0, *, budget, workers=1)``).
        summary: one line for the docs and the command line's help.
        defaults: options :meth:`make` sets when the caller does not.
        required: options the caller must give (no default can stand in).
        scaled: the bench's options on a problem (:class:`BenchScale`).
        extra: the pip extra it needs (``pip install 'voidgrad[<extra>]'``).
        preset_of: for a bench preset, the method it runs.
    """

    name: str
    kind: Kind
    build: Callable[..., Any]
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    scaled: Callable[[BenchScale], dict[str, Any]] | None = None
    extra: str | None = None
    preset_of: str | None = None

    def __post_init__(self) -> None:
        # read-only: one table shared by every caller
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    def make(self, *, seed: int | None = None, **options: Any) -> Any:
        """``build(seed=seed, **{**defaults, **options})``, once the required options are given."""
        missing = [name for name in self.required if name not in options]
        if missing:
            raise ValueError(
                f"method {self.name!r} needs the option(s) {', '.join(missing)} "
                "(no default can stand in)"
            )
        return self.build(seed=seed, **{**self.defaults, **options})

    def bench_options(self, at: BenchScale) -> dict[str, Any]:
        """The bench's options on a problem at ``at``; {} when it has none of its own."""
        return {} if self.scaled is None else self.scaled(at)


# vg.minimize chooses the kernel by dimension (optimize/defaults.py).
_SMOOTHING_DEFAULTS = {"sigma": 0.1, "samples": 8}
_ZEROGRADS_DEFAULTS = {"sigma": 0.1, "samples": ZEROGRADS_SAMPLES}

METHODS: tuple[Method, ...] = (
    Method(
        "auto",
        "auto",
        _auto,
        "vg.minimize's default: a method chosen from d, the budget and a probe of x0's loss.",
        scaled=_bench_auto,
    ),
    Method(
        "smoothing",
        "blackbox",
        GaussianSmoothing,
        "Gaussian smoothing (PRDPT, evolution strategies): antithetic, importance-sampled.",
        _SMOOTHING_DEFAULTS,
        scaled=_bench_smoothing,
    ),
    Method(
        "spsa",
        "blackbox",
        SPSA,
        "Simultaneous perturbation (SPSA): Rademacher directions, central differences.",
        {"c": 0.1, "samples": 2},
        scaled=_bench_spsa,
    ),
    Method(
        "fd",
        "blackbox",
        FiniteDifferences,
        "Finite differences along every axis: 2d evaluations a step (central).",
        {"h": 1e-3, "scheme": "central"},
        scaled=_bench_fd,
    ),
    Method(
        "zerograds",
        "blackbox",
        ZeroGrads,
        "ZeroGrads: a neural surrogate fitted to Gaussian samples, differentiated.",
        _ZEROGRADS_DEFAULTS,
        scaled=_bench_zerograds,
    ),
    Method(
        "zerograds-reference",
        "blackbox",
        ZeroGrads,
        "Bench preset of zerograds: the reference implementation's settings.",
        _ZEROGRADS_DEFAULTS,
        scaled=_bench_zerograds_reference,
        preset_of="zerograds",
    ),
    Method(
        "guided",
        "blackbox",
        GuidedSmoothing,
        "Guided smoothing (guided ES): perturbations stretched along a user's guide gradients.",
        _SMOOTHING_DEFAULTS,
        required=("guide",),
    ),
    Method(
        "mixed",
        "blackbox",
        MixedGradient,
        "A guide gradient and smoothing mixed by inverse variance, with a bias check (Suh et al.).",
        _SMOOTHING_DEFAULTS,
        required=("guide",),
    ),
    Method(
        "cma",
        "derivative-free",
        partial(_dfo, "cma"),
        "CMA-ES (pycma): full below 2 000 dimensions, separable above.",
        scaled=_bench_cma,
        extra="bench",
    ),
    Method(
        "annealing",
        "derivative-free",
        partial(_dfo, "annealing"),
        "Dual annealing (scipy's dual_annealing algorithm in ask/tell form).",
    ),
    Method(
        "ga",
        "derivative-free",
        partial(_dfo, "ga"),
        "A real-coded genetic algorithm (nevergrad's EvolutionStrategy, μ+λ).",
        extra="bench",
    ),
    Method(
        f"{NEVERGRAD}<name>",
        "derivative-free",
        partial(_dfo, f"{NEVERGRAD}<name>"),
        "Any optimizer of nevergrad.optimizers.registry, by name.",
        extra="bench",
    ),
    Method(
        "score",
        "distribution",
        ScoreFunction,
        "Score function (REINFORCE) with an optional baseline.",
    ),
    Method(
        "pathwise",
        "distribution",
        Pathwise,
        "Pathwise (reparameterization) gradients through a differentiable f.",
    ),
    Method(
        "gumbel_softmax",
        "distribution",
        GumbelSoftmax,
        "Gumbel-softmax (Concrete) relaxation of discrete samples.",
    ),
    Method(
        "straight_through",
        "distribution",
        StraightThrough,
        "Straight-through: f at the discrete sample, gradient through its probabilities.",
    ),
    Method(
        "rebar",
        "distribution",
        REBAR,
        "REBAR: RELAX with the relaxed f as control variate.",
    ),
    Method(
        "relax",
        "distribution",
        RELAX,
        "RELAX: score function with a learned control variate, reparameterized.",
        required=("control",),
    ),
    Method(
        "lax",
        "distribution",
        LAX,
        "LAX: score function with a learned control variate, continuous z.",
        required=("control",),
    ),
    Method(
        "disarm",
        "distribution",
        DisARM,
        "DisARM: antithetic pairs for Bernoulli variables.",
    ),
    Method(
        "actor_critic",
        "policy-gradient",
        partial(_policy_gradient, "actor_critic", "any", False),
        "Actor-critic: REINFORCE with a value baseline, any action space.",
        extra="rl",
    ),
    Method(
        "lax",
        "policy-gradient",
        partial(_policy_gradient, "lax", "continuous", True),
        "LAX: a learned action-dependent control variate, continuous actions.",
        extra="rl",
    ),
    Method(
        "relax",
        "policy-gradient",
        partial(_policy_gradient, "relax", "discrete", True),
        "RELAX: a learned control variate at the relaxed action, discrete actions.",
        extra="rl",
    ),
)
"""The table, in the order the docs list it."""


def names(*kinds: str, presets: bool = True) -> list[str]:
    """The names of the methods of the given kinds (all without one), in the table's order.

    ``presets=False`` leaves out the bench presets (``vg.minimize`` runs
    their ``preset_of`` method instead).

    Examples:
        >>> from voidgrad import registry
        >>> registry.names("blackbox", presets=False)
        ['smoothing', 'spsa', 'fd', 'zerograds', 'guided', 'mixed']
    """
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return [
        entry.name
        for entry in METHODS
        if (not kinds or entry.kind in kinds) and (presets or entry.preset_of is None)
    ]


def method(
    name: object,
    kinds: Iterable[str] | None = None,
    *,
    presets: bool = True,
    argument: str = "method",
) -> Method:
    """The entry named ``name``; ``nevergrad:<name>`` gives the family's entry for that name.

    A name is unique within a kind; where two kinds share one (``lax``,
    ``relax``: a distribution estimator and a policy gradient), the entry of
    the first accepted kind in the table's order is returned.

    Args:
        name: a method's name.
        kinds: the kinds the caller runs (default: all); another kind's name is
            refused, saying what it is.
        presets: whether a bench preset is accepted (``vg.minimize`` refuses
            them, naming the method they run).
        argument: the caller's name for the argument, used in the messages.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: an unknown name (listing the known ones, with a "did you
            mean" and, for an optimizer's name, a pointer to ``optimizer=``),
            one of another kind, or a refused preset.
    """
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a string; got {type(name).__name__}")
    accepted = tuple(KINDS if kinds is None else kinds)
    entry = _lookup(name, accepted)
    if entry is None:
        raise ValueError(_unknown(name, accepted, presets, argument))
    if entry.kind not in accepted:
        raise ValueError(
            f"{argument} {name!r} is of kind {entry.kind!r} ({entry.summary.rstrip('.')}); the "
            f"{argument}s here: {', '.join(names(*accepted, presets=presets))}"
        )
    if entry.preset_of is not None and not presets:
        raise ValueError(
            f"method {name!r} is a voidgrad bench preset: {entry.preset_of!r} with the options "
            f"voidgrad.registry.method({name!r}).bench_options gives; run "
            f"method={entry.preset_of!r} with those"
        )
    return entry


def _lookup(name: str, kinds: tuple[str, ...]) -> Method | None:
    """The entry of ``name`` (of one of ``kinds`` first), the nevergrad family's, or None."""
    matches = [entry for entry in METHODS if entry.name == name]
    for entry in matches:
        if entry.kind in kinds:
            return entry
    if matches:
        return matches[0]
    if name.startswith(NEVERGRAD) and name != NEVERGRAD:
        family = next(entry for entry in METHODS if entry.name.startswith(NEVERGRAD))
        return replace(family, name=name, build=partial(_dfo, name))
    return None


def _unknown(name: str, kinds: tuple[str, ...], presets: bool, argument: str) -> str:
    """The message for an unknown ``name``: did you mean, optimizer=, the known names."""
    known = list(dict.fromkeys(names(*kinds, presets=presets)))
    # the family is written as the name would read in it: "nevergrd:NGOpt" ~ "nevergrad:NGOpt"
    candidates = [
        f"{NEVERGRAD}{name.partition(':')[2]}" if n.startswith(NEVERGRAD) and ":" in name else n
        for n in known
    ]
    if name.lower() in OPTIMIZERS and "blackbox" in kinds:
        hint = f" ({name!r} is an optimizer: pass optimizer={name.lower()!r} and a method)"
    else:
        close = difflib.get_close_matches(name, candidates, n=3)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown {argument} {name!r}{hint}; known {argument}s: {', '.join(known)}"


def table() -> str:
    """The Markdown table of the module doc, rendered from :data:`METHODS`."""
    rows = [
        "| method | kind | defaults | required | bench options (s: the problem's scale) "
        "| needs | what it is |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in METHODS:
        defaults = ", ".join(f"{key}={value!r}" for key, value in entry.defaults.items())
        bench = _first_line(entry.scaled.__doc__) if entry.scaled is not None else ""
        cells = [
            f"`{entry.name}`",
            entry.kind,
            defaults,
            ", ".join(entry.required),
            bench,
            entry.extra or "",
            entry.summary,
        ]
        rows.append("| " + " | ".join(cell or "–" for cell in cells) + " |")
    return "\n".join(rows)


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc else ""
