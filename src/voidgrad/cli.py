"""The ``voidgrad`` command line.

``voidgrad demo`` optimises the plateau problem (a hard-edged square rasterizer,
see :mod:`voidgrad.problems.plateau`) three ways with the same budget of
function evaluations and Adam:

* autograd through the hard rasterizer: the gradient is exactly zero, stuck;
* ``vg.blackbox`` with central finite differences: zero on the plateau, stuck;
* ``vg.blackbox`` with Gaussian smoothing (PRDPT) and an annealed σ: converges.

It prints a table of evaluations, final image loss and parameter error (both
measured with the true, unsmoothed loss at the final parameters) and writes
``<out>/plateau.png`` when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import torch

import voidgrad as vg
from voidgrad import registry
from voidgrad.optimize.result import History, StepRecord
from voidgrad.problems import PROBLEMS, PlateauProblem, make
from voidgrad.run import Algorithm, RunState, Stop
from voidgrad.run import run as run_loop

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass(frozen=True)
class DemoSettings:
    """Settings of ``voidgrad demo``; the defaults are the tuned ones.

    The budget is ``steps * samples`` evaluations for every method: finite
    differences spend 4 per step (central, d = 2) and so take ``2 * steps``
    steps; autograd spends one render per step.
    """

    steps: int = 200
    seed: int = 0
    samples: int = 8
    sigma: float = 0.25
    sigma_min: float = 0.02
    constant_fraction: float = 0.2
    lr: float = 0.01
    lr_final_fraction: float = 0.1
    fd_step: float = 1e-3

    @property
    def budget(self) -> int:
        """Evaluations allowed to each method."""
        return self.steps * self.samples


@dataclass
class MethodRun:
    """One method's trajectory: true image loss after each step, against evaluations."""

    label: str
    evaluations: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    theta: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    image_loss: float = float("nan")
    parameter_error: float = float("nan")

    def record(self, evaluations: int, loss: float) -> None:
        """Append one point of the loss curve."""
        self.evaluations.append(evaluations)
        self.losses.append(loss)

    def finish(self, theta: torch.Tensor, problem: PlateauProblem) -> None:
        """Store the final parameters and their true (unsmoothed) metrics."""
        self.theta = theta.detach().clone()
        self.image_loss = problem.loss(self.theta)
        self.parameter_error = float((self.theta - problem.x_target).norm())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voidgrad`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    settings = DemoSettings(steps=args.steps, seed=args.seed)
    start = time.perf_counter()
    problem = make("plateau", seed=settings.seed)
    runs = run_demo(problem, settings)
    print(format_table(runs))
    if not args.no_plot:
        path = plot_demo(problem, runs, Path(args.out) / "plateau.png")
        if path is not None:
            print(f"figure: {path}")
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voidgrad",
        description="voidgrad: gradient-based optimisation through non-differentiable programs.",
    )
    parser.add_argument("--version", action="version", version=f"voidgrad {vg.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="autograd vs finite differences vs Gaussian smoothing on a hard-edged rasterizer",
        description=(
            "Optimise the position of a square in a hard-edged rendering three ways "
            "with the same evaluation budget; print a table and write a figure."
        ),
    )
    defaults = DemoSettings()
    demo.add_argument(
        "--out", default="voidgrad-demo", help="folder for plateau.png (default voidgrad-demo)"
    )
    demo.add_argument(
        "--steps",
        type=_positive_int,
        default=defaults.steps,
        help=(
            f"optimisation steps of Gaussian smoothing (default {defaults.steps}); every "
            f"method gets steps x {defaults.samples} evaluations"
        ),
    )
    demo.add_argument(
        "--seed",
        type=_non_negative_int,
        default=defaults.seed,
        help="seed of the smoothing estimator (default 0)",
    )
    demo.add_argument("--no-plot", action="store_true", help="skip the figure")
    bench = commands.add_parser(
        "bench",
        help="methods x problems x seeds at equal evaluation budgets, with a report",
        description=(
            "Run every method on every problem for several seeds with the same budget of "
            "evaluations; write results.json, report.md and one plot per problem. Every "
            "setting is checked, and every method started once on every problem, before the "
            "first run. A finished run is kept when it was run with the same settings (budget, "
            "options, workers, problem arguments), so an interrupted benchmark resumes; any "
            "other is run again. Exits with 1 after the report when some runs failed."
        ),
    )
    bench.set_defaults(usage_error=bench.error)
    bench.add_argument(
        "--problems",
        required=True,
        help="comma-separated problems, NAME, NAME:DIM or NAME:KEY=VALUE "
        f"(e.g. plateau,rastrigin:1000,texture:size=64); NAME is one of: {', '.join(PROBLEMS)}",
    )
    bench.add_argument(
        "--methods",
        required=True,
        help=f"comma-separated methods: {', '.join(registry.names(*registry.RUNNABLE))}",
    )
    bench.add_argument("--budget", type=_positive_int, required=True, help="evaluations per run")
    bench.add_argument("--seeds", type=_positive_int, default=3, help="seeds per cell (default 3)")
    bench.add_argument("--out", required=True, help="output folder")
    bench.add_argument(
        "--workers", type=_positive_int, default=1, help="worker processes per run (default 1)"
    )
    bench.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="override a method option, e.g. smoothing.sigma=0.5, or zerograds.lr=0.02s for "
        "0.02 times each problem's scale, or smoothing.lr_decay=0.01 to decay the learning "
        "rate linearly to 1%% of its start over the run (repeatable)",
    )
    bench.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (by default each run shows one on a terminal: evaluations "
        "spent of the budget and the best loss so far)",
    )
    return parser


def _bench(args: argparse.Namespace) -> int:
    """Run ``voidgrad bench``: 0 when every cell finished, 1 when some failed.

    A setting that cannot run (bad problem arguments or options, options for a
    method not in the run, a missing optional dependency, an unwritable
    ``--out``) is a usage error, exit status 2, before any cell runs. Each run
    shows a progress bar when stderr is a terminal, unless ``--no-progress``.
    """
    from voidgrad.bench import BenchSettings, SettingsError, parse_options, run_bench

    usage_error: Callable[[str], NoReturn] = args.usage_error
    try:
        options = parse_options(args.option)
    except ValueError as error:
        usage_error(str(error))
    settings = BenchSettings(
        problems=[p for p in args.problems.split(",") if p],
        methods=[m for m in args.methods.split(",") if m],
        budget=args.budget,
        seeds=args.seeds,
        out=Path(args.out),
        workers=args.workers,
        options=options,
    )
    try:
        results = run_bench(settings, progress=_show_progress() and not args.no_progress)
    except SettingsError as error:
        usage_error(str(error))
    print(f"report: {Path(args.out) / 'report.md'}")
    failed = [cell for cell in results["cells"] if cell["error"] is not None]
    if not failed:
        return 0
    print(
        f"voidgrad bench: {len(failed)} of {len(results['cells'])} cells failed (the report "
        "lists them; they run again next time):",
        file=sys.stderr,
    )
    for cell in failed:
        print(
            f"  {cell['problem']} {cell['method']} seed {cell['seed']}: {cell['error']}",
            file=sys.stderr,
        )
    return 1


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int; got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int; got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative int; got {text}")
    return value


def run_demo(problem: PlateauProblem, settings: DemoSettings) -> list[MethodRun]:
    """Run autograd, finite differences and Gaussian smoothing with equal budgets.

    Each is Adam with lr decaying linearly to ``lr_final_fraction`` of itself,
    in the one run loop (:mod:`voidgrad.run`): the black-box methods through
    ``vg.minimize``, autograd as an :class:`~voidgrad.run.Algorithm` of its own.
    """
    budget = settings.budget
    autograd = MethodRun("autograd")
    autograd.record(0, problem.loss(problem.x0))
    descent = _AutogradDescent(problem, settings)
    run_loop(
        descent,
        budget,
        callbacks=[lambda state: autograd.record(state.spent, problem.loss(descent.theta))],
        progress=_show_progress(),
        description=f"{autograd.label:>18}",
    )
    autograd.finish(descent.theta, problem)
    finite = _minimize(
        "finite differences",
        problem,
        settings,
        "fd",
        budget // (2 * problem.dim),
        h=settings.fd_step,
    )
    smooth = _minimize(
        "gaussian smoothing",
        problem,
        settings,
        "smoothing",
        settings.steps,
        sigma=settings.sigma,
        samples=settings.samples,
        schedule=vg.LinearAnneal(
            settings.sigma_min,
            total_steps=settings.steps,
            constant_steps=int(settings.constant_fraction * settings.steps),
        ),
    )
    return [autograd, finite, smooth]


def _show_progress() -> bool:
    """A bar on a terminal, none in logs and pipes."""
    return sys.stderr.isatty()


def _decay(settings: DemoSettings, steps: int) -> Callable[[torch.optim.Optimizer], Any]:
    """lr falls linearly to ``lr_final_fraction`` of itself over ``steps`` steps."""
    return lambda optimizer: torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0, end_factor=settings.lr_final_fraction, total_iters=steps
    )


def _minimize(
    label: str,
    problem: PlateauProblem,
    settings: DemoSettings,
    method: str,
    steps: int,
    **options: Any,
) -> MethodRun:
    """``vg.minimize`` with Adam and the decay, recording the true loss after each step."""
    curve = MethodRun(label)
    curve.record(0, problem.loss(problem.x0))
    result = vg.minimize(
        problem.loss,
        problem.x0,
        method=method,
        budget=settings.budget,
        seed=settings.seed,
        lr=settings.lr,
        lr_schedule=_decay(settings, steps),
        progress=_show_progress(),
        callback=lambda record, state: curve.record(
            record.evals, problem.loss(state.algorithm.theta.detach())
        ),
        **options,
    )
    curve.finish(result.x_last, problem)
    return curve


class _AutogradDescent(Algorithm):
    """Adam through the hard rasterizer by autograd: one render a step, and a zero gradient."""

    kind = "voidgrad.demo.autograd"
    history_type = History

    def __init__(self, problem: PlateauProblem, settings: DemoSettings) -> None:
        self.problem = problem
        self.theta = problem.x0.clone().requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.theta], lr=settings.lr)
        self.decay = _decay(settings, settings.budget)(self.optimizer)

    def step(self, state: RunState) -> StepRecord | Stop:
        if state.remaining < 1:
            return Stop(f"budget of {state.budget} renders spent")
        self.optimizer.zero_grad()
        loss = self.problem.loss_hard(self.theta)
        loss.backward()
        self.optimizer.step()
        self.decay.step()
        state.spent += 1
        return StepRecord(
            state.step + 1, state.spent, float(loss.detach()), math.nan, state.seconds
        )

    def state_dict(self) -> dict[str, Any]:
        return {"theta": self.theta.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            self.theta.copy_(state["theta"])
        self.optimizer.load_state_dict(state["optimizer"])


def format_table(runs: Sequence[MethodRun]) -> str:
    """The results as a plain-text table."""
    header = f"{'method':<20}{'evaluations':>12}{'image loss':>12}{'param error':>13}"
    rows = [
        f"{r.label:<20}{r.evaluations[-1]:>12d}{r.image_loss:>12.6f}{r.parameter_error:>13.4f}"
        for r in runs
    ]
    return "\n".join([header, "-" * len(header), *rows])


def plot_demo(problem: PlateauProblem, runs: Sequence[MethodRun], path: Path) -> Path | None:
    """Write the figure to ``path``; return ``None`` (and say so) without matplotlib.

    Uses matplotlib's object-oriented API, whose PNG output goes through Agg:
    no display and no pyplot state.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError:
        print("matplotlib is not installed: `pip install voidgrad[plot]` gives the figure")
        return None
    fig = Figure(figsize=(13, 6.2), layout="constrained")
    grid = fig.add_gridspec(2, 5, height_ratios=[1, 1.05])
    side = problem.square / problem.size
    corner = (float(problem.x_target[0]) - side / 2, float(problem.x_target[1]) - side / 2)
    panels = [("target", problem.x_target), ("start", problem.x0)]
    panels += [(f"{r.label}\nerror {r.parameter_error:.3f}", r.theta) for r in runs]
    for column, (title, theta) in enumerate(panels):
        ax = fig.add_subplot(grid[0, column])
        ax.imshow(problem.render(theta).numpy(), cmap="gray", origin="lower", extent=(0, 1, 0, 1))
        ax.add_patch(Rectangle(corner, side, side, fill=False, ec="tab:red", ls="--", lw=1))
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    _plot_curves(fig.add_subplot(grid[1, :]), runs)
    fig.suptitle("plateau: a hard-edged square rasterizer (dashed red: target)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _plot_curves(ax: Axes, runs: Sequence[MethodRun]) -> None:
    """True image loss against evaluations, one line per method."""
    # autograd and finite differences overlap: draw the first wide and pale
    styles: dict[str, dict[str, Any]] = {
        "autograd": {"lw": 6, "alpha": 0.4, "label": "autograd (gradient exactly 0)"},
        "finite differences": {"ls": "--", "lw": 2, "label": "finite differences (0 on plateau)"},
    }
    for run in runs:
        style: dict[str, Any] = {"lw": 2, "label": run.label, **styles.get(run.label, {})}
        ax.plot(run.evaluations, run.losses, **style)
    ax.set_xlabel("function evaluations (the same budget for each method)")
    ax.set_ylabel("true image loss (MSE)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
