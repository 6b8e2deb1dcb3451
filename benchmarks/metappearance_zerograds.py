"""Does a meta-learned surrogate initialisation shorten ZeroGrads' warm-up?

What is measured
----------------
A family of black-box problems (``--family``: ``vg.problems.Rosenbrock`` or
``vg.problems.Sphere`` in ``--dim`` dimensions, one instance per seed: the
seed draws the start) is split into training instances (seeds ≥ 1 000) and
held-out instances (seeds 0 … ``--held-out`` − 1), which meta-training never
sees. ZeroGrads runs with the bench's settings for ``zerograds``
(``voidgrad.bench.method_options``: σ = 0.5 s annealed to 0.05 s over the run,
4 evaluations a step, Adam at 0.05 s, s the instance's scale), in its moving
frame.

1. **Where the surrogate works.** ZeroGrads with its default surrogate runs
   ``--steps`` steps on each of ``--train-instances`` training instances; every
   visited (θ_t, σ_t) is kept.
2. **Meta-training.** A task is one visited (θ, σ) of one training instance.
   Each call of the task draws what one ZeroGrads step fits in the moving
   frame: antithetic u ~ N(0, I) (``--task-samples`` of them), targets
   y = L(θ + σu) centred and divided by their spread, and returns the MSE of
   f(u) to them. ``vg.meta.MetaLearner`` learns the initialisation of an
   ``MLPSurrogate`` of ZeroGrads' default shape (3 × 64, leaky ReLU) and
   per-parameter step sizes, with ``fit_steps`` inner steps (one ZeroGrads
   step's worth of fitting), for ``--meta-steps`` outer steps.
3. **Warm-up.** On every held-out instance, ``--seeds`` times (a ZeroGrads
   seed of its own per run), ZeroGrads runs ``--steps`` steps from the start
   with (a) its default surrogate (zero output layer) and (b) a copy of the meta-learned
   initialisation, handed over as ``surrogate=``; ZeroGrads then fits it with
   its usual Adam steps (the learned Meta-SGD step sizes are not used); and,
   as a control, (c) the meta-learned initialisation frozen (``fit_steps=0``),
   which isolates what the family's prior alone does from faster fitting. Each
   in the reference mode (``unbiased=False``: the step is ∇h(θ)) and in the
   default control-variate mode. Same seeds and offsets ε for every start,
   same evaluations per step: equal budgets.

Reported: the median over (instance, seed) runs of the loss at the iterate,
relative to the loss at the start, after several step counts; and the median
number of steps until that relative loss first falls to ``--level`` (runs
that never do count as ``--steps`` + 1); and in how many runs each start gets
there in fewer / more steps than the default start on the same run. The loss
at the iterate is computed off-budget for the report; ZeroGrads itself sees
only its 4 evaluations a step.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/metappearance_zerograds.py \\
        --family rosenbrock --plot --out benchmarks/results/metappearance_zerograds
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

import voidgrad as vg
from common import write_results
from voidgrad.bench import ZEROGRADS_SAMPLES, method_options, problem_scale
from voidgrad.estimators.surrogate import MLPSurrogate, Standardization, fit_targets
from voidgrad.problems import Rosenbrock, Sphere

FAMILIES = {"rosenbrock": Rosenbrock, "sphere": Sphere}
TRAINING_SEEDS_FROM = 1000
"""Training instances have seeds from here on; held-out ones are 0, 1, …: never shared."""
FIT_STEPS = 3
"""ZeroGrads' default ``fit_steps``: Adam steps on the surrogate per ZeroGrads step."""
MODES = {"reference": False, "unbiased": True}
"""Report name -> ZeroGrads' ``unbiased`` flag."""
INITS = {"default": FIT_STEPS, "meta": FIT_STEPS, "meta, frozen": 0}
"""Surrogate start -> ZeroGrads' ``fit_steps``. The frozen meta-learned surrogate is never
fitted: what it gives is the family's prior alone, which tells that apart from faster fitting."""

Visit = tuple[Any, torch.Tensor, float]
"""A training instance, a θ that ZeroGrads visited on it, and σ there."""


def zerograds_run(
    problem: Any,
    steps: int,
    seed: int,
    unbiased: bool,
    surrogate: torch.nn.Module | None,
    fit_steps: int = FIT_STEPS,
    visits: list[Visit] | None = None,
) -> list[float]:
    """L at the iterate before each of ``steps`` ZeroGrads + Adam steps and after the last.

    With ``visits``, every (problem, θ_t, σ_t) a step probes around is appended to it.
    """
    options = method_options(
        "zerograds", problem_scale(problem), steps * ZEROGRADS_SAMPLES, {}, problem.dim
    )
    lr = options.pop("lr")
    estimator = vg.ZeroGrads(
        **options, fit_steps=fit_steps, unbiased=unbiased, surrogate=surrogate, seed=seed
    )
    theta = problem.x0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    loss = vg.blackbox(vg.Evaluator(problem.loss_batch, backend="vectorized"), estimator)
    losses = [problem.loss(theta.detach())]
    for _ in range(steps):
        if visits is not None:
            visits.append((problem, theta.detach().clone(), estimator.sigma))
        optimizer.zero_grad()
        loss(theta).backward()
        optimizer.step()
        estimator.step()
        losses.append(problem.loss(theta.detach()))
    return losses


class LocalFitTask:
    """What ZeroGrads' surrogate fits in one step around θ (moving frame), as a meta task.

    Each call draws antithetic offsets u ~ N(0, I), evaluates y = L(θ + σu), centres y and
    divides it by its spread (``fit_targets``, as ZeroGrads does) and returns MSE(f(u), targets).
    """

    def __init__(self, visit: Visit, samples: int, seed: int) -> None:
        self.problem, self.theta, self.sigma = visit
        self.samples = samples
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        half = torch.randn(
            (self.samples // 2, self.problem.dim), generator=self.generator, dtype=torch.float64
        )
        u = torch.cat([half, -half])
        y = self.problem.loss_batch(self.theta + self.sigma * u)
        _, targets, _ = fit_targets(y, [], "moving", Standardization())
        return functional.mse_loss(f(u.float()), targets.float())


def meta_learn_surrogate(
    visits: list[Visit], arguments: argparse.Namespace, dim: int
) -> tuple[MLPSurrogate, list[dict[str, float]], float]:
    """The meta-learned initialisation as a ready surrogate, the meta history, seconds taken."""
    model = default_surrogate(dim, arguments.meta_seed)

    def sample_task(generator: torch.Generator) -> LocalFitTask:
        index = int(torch.randint(len(visits), (1,), generator=generator))
        seed = int(torch.randint(2**62, (1,), generator=generator))
        return LocalFitTask(visits[index], arguments.task_samples, seed)

    learner = vg.meta.MetaLearner(
        model,
        inner_steps=FIT_STEPS,
        inner_lr=arguments.inner_lr,
        first_order=arguments.first_order,
        meta_lr=arguments.meta_lr,
        meta_batch=arguments.meta_batch,
        seed=arguments.meta_seed,
    )
    started = time.perf_counter()
    history = learner.meta_fit(sample_task, arguments.meta_steps, progress=False)
    seconds = time.perf_counter() - started
    return learner.initialization(), history, seconds


def default_surrogate(dim: int, seed: int) -> MLPSurrogate:
    """A network like ZeroGrads' default surrogate at this d (3 × 64, zero output layer)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLPSurrogate(dim)


def steps_to_level(relative_losses: list[float], level: float) -> int:
    """The first step at which the relative loss is at most ``level``; one past the end if none."""
    return next(
        (step for step, value in enumerate(relative_losses) if value <= level),
        len(relative_losses),
    )


def summarize(
    runs: dict[str, list[list[float]]], report_steps: list[int], level: float, steps: int
) -> dict[str, dict[str, Any]]:
    """Per (mode, init) key: median relative loss at ``report_steps`` and steps to ``level``.

    Also, run by run against the default start of the same mode (same instance, same
    offsets ε): in how many runs the level is reached in fewer and in more steps.
    """
    reached = {
        key: [steps_to_level(curve, level) for curve in curves] for key, curves in runs.items()
    }
    summary = {}
    for key, curves in runs.items():
        default = reached[f"{key.split('/')[0]}/default"]
        summary[key] = {
            "median_relative_loss": {
                step: statistics.median(curve[step] for curve in curves) for step in report_steps
            },
            "steps_to_level": reached[key],
            "median_steps_to_level": statistics.median(reached[key]),
            "never_reached": sum(r > steps for r in reached[key]),
            "fewer_steps_than_default": sum(
                r < d for r, d in zip(reached[key], default, strict=True)
            ),
            "more_steps_than_default": sum(
                r > d for r, d in zip(reached[key], default, strict=True)
            ),
        }
    return summary


def print_table(summary: dict[str, dict[str, Any]], report_steps: list[int], level: float) -> None:
    header = " | ".join(f"step {s}" for s in report_steps)
    print(
        f"| mode | start | {header} | median steps to {level:g} · L(x0) | runs never there | "
        "runs faster / slower than default |"
    )
    print("|---|---|" + "---|" * (len(report_steps) + 3))
    for key, row in summary.items():
        mode, init = key.split("/")
        cells = " | ".join(f"{row['median_relative_loss'][s]:.3g}" for s in report_steps)
        print(
            f"| {mode} | {init} | {cells} | {row['median_steps_to_level']:g} | "
            f"{row['never_reached']} | {row['fewer_steps_than_default']} / "
            f"{row['more_steps_than_default']} |"
        )


def plot(path: Path, runs: dict[str, list[list[float]]], title: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, len(MODES), sharey=True)
    for axis, mode in zip(axes, MODES, strict=True):
        for init, colour in zip(INITS, ("tab:gray", "tab:blue", "tab:orange"), strict=True):
            curves = torch.tensor(runs[f"{mode}/{init}"])
            low, median, high = torch.quantile(
                curves, torch.tensor([0.25, 0.5, 0.75], dtype=curves.dtype), dim=0
            )
            axis.plot(median, color=colour, label=f"{init} init (median)")
            axis.fill_between(range(len(median)), low, high, color=colour, alpha=0.2)
        axis.set_yscale("log")
        axis.set_xlabel("ZeroGrads step")
        axis.set_title(f"{mode} mode")
        axis.legend()
    axes[0].set_ylabel("L(θ_t) / L(x0), quartiles over runs")
    figure.suptitle(title)
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="rosenbrock", choices=list(FAMILIES))
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100, help="ZeroGrads steps per run")
    parser.add_argument("--train-instances", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3, help="ZeroGrads seeds per instance")
    parser.add_argument("--task-samples", type=int, default=ZEROGRADS_SAMPLES)
    parser.add_argument("--meta-steps", type=int, default=1000)
    parser.add_argument("--meta-batch", type=int, default=8)
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--inner-lr", type=float, default=1e-2)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--meta-seed", type=int, default=0)
    parser.add_argument("--report-steps", type=int, nargs="+", default=[5, 10, 25, 50, 100])
    parser.add_argument("--level", type=float, default=0.1, help="relative loss for steps-to")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--plot", action="store_true", help="also save a PNG next to the JSON")
    arguments = parser.parse_args()
    report_steps = [s for s in arguments.report_steps if s <= arguments.steps]
    family = FAMILIES[arguments.family]

    visits: list[Visit] = []
    for index in range(arguments.train_instances):
        problem = family(arguments.dim, seed=TRAINING_SEEDS_FROM + index)
        zerograds_run(problem, arguments.steps, problem.seed, True, None, visits=visits)
    surrogate, history, meta_seconds = meta_learn_surrogate(visits, arguments, arguments.dim)
    window = max(1, len(history) // 10)
    first, last = (
        statistics.mean(r["meta_loss"] for r in part)
        for part in (history[:window], history[-window:])
    )
    print(
        f"meta_fit: {arguments.meta_steps} steps in {meta_seconds:.0f} s on {len(visits)} "
        f"visited points of {arguments.train_instances} training instances; meta loss "
        f"{first:.3f} (first tenth) -> {last:.3f} (last tenth)"
    )

    runs: dict[str, list[list[float]]] = {f"{m}/{i}": [] for m in MODES for i in INITS}
    for index in range(arguments.held_out):
        problem = family(arguments.dim, seed=index)
        # a seed per run: instances of a family are alike, and a seed shared across them
        # would give every instance the same offsets ε
        for seed in range(index * arguments.seeds, (index + 1) * arguments.seeds):
            for mode, unbiased in MODES.items():
                for init, fit_steps in INITS.items():
                    # ZeroGrads draws its own network's seed up front, so every start
                    # of this run sees the same offsets ε
                    start = None if init == "default" else copy.deepcopy(surrogate)
                    losses = zerograds_run(
                        problem, arguments.steps, seed, unbiased, start, fit_steps
                    )
                    runs[f"{mode}/{init}"].append([value / losses[0] for value in losses])
    summary = summarize(runs, report_steps, arguments.level, arguments.steps)
    print(
        f"{arguments.family}, d = {arguments.dim}: median L(θ_t)/L(x0) over "
        f"{arguments.held_out} held-out instances × {arguments.seeds} seeds"
    )
    print_table(summary, report_steps, arguments.level)
    name = f"metappearance_zerograds_{arguments.family}"
    write_results(
        arguments.out,
        name,
        "ZeroGrads' loss over its first steps from its default surrogate and from a "
        "meta-learned initialisation, on held-out instances of a family",
        [{"summary": summary, "relative_losses": runs}],
        **{key: value for key, value in vars(arguments).items() if key != "out"},
        meta_fit_seconds=meta_seconds,
        meta_loss_first_tenth=first,
        meta_loss_last_tenth=last,
        visited_points=len(visits),
    )
    if arguments.plot:
        plot(
            arguments.out / f"{name}.png",
            runs,
            f"ZeroGrads warm-up on held-out {arguments.family} (d = {arguments.dim})",
        )


if __name__ == "__main__":
    main()
