"""Step-size schedule, σ schedule and kernel of ``vg.minimize``'s smoothing, against the budget.

What is measured
----------------
For each problem p (built as ``voidgrad.bench.make_problem`` builds it, the
seed fixing instance and start; s = ``voidgrad.bench.problem_scale(p)``), each
budget B and each seed, one run of::

    vg.minimize(p.loss, p.x0.double(), method="smoothing", budget=B, seed=seed,
                lr=0.05 s, sigma=0.5 s, samples=8, progress=False, checkpoint=None, ...)

under each *setting* ``LR/SIGMA/KERNEL`` (``--settings``):

- LR, the learning rate's factor over the run's T = B // 8 steps (t = 0 … T−1,
  a ``torch.optim.lr_scheduler.LambdaLR`` stepped once per step):
  ``const`` 1; ``linear`` 1 − 0.99 t/T; ``stable`` (stable-decay) 1 for
  t < T/2, then linear to 0.01 at T; ``cosine`` 0.01 + 0.495 (1 + cos(π t/T));
- SIGMA: ``const`` σ = 0.5 s throughout, or ``anneal`` linearly to 0.05 s over
  the T steps (``vg.LinearAnneal(sigma_min=0.05 s, total_steps=T)``);
- KERNEL: ``plain`` (``importance=False``: antithetic Gaussian samples) or
  ``prdpt`` (``importance=True``: PRDPT's importance-sampled kernel).

Recorded per run: the loss of the final iterate ``result.x_last``, evaluated
once outside the budget (``last``), the best evaluated loss ``result.fun``
(``best``; a perturbed point, which in high dimension is far worse than the
iterate), the steps and the wall time. The summary prints, per setting, a
table problem × budget of the median [min, max] over seeds of ``last``, and
the median of each setting's ``last`` over the constant-lr one's, seed by
seed (ratio < 1: the setting is better).

The default grid (``DEFAULT_BUDGETS``, 7 settings × 3 seeds) took about 40
minutes of one core of a loaded 2-core machine: small-d problems at 20 d and
500 d (``plateau`` and ``akima``, d = 2 and 1, at 80 and 1 000 evaluations: 20 d
would be 2-5 steps), ``splines`` at 20 d and 100 d, ``texture:size=32`` at 1 d
and 25 d, ``digits_mlp`` at 0.11 d only, ``caustic`` at 4 d only.

Run from the repository root, one thread::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/budget_schedules.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/budget_schedules.py \\
        --problems sphere:20 --budgets-per-dim 20 500 --seeds 3 --settings const/const/plain
    .venv/bin/python benchmarks/budget_schedules.py --summarize benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from common import write_results
from voidgrad.bench import Cell, make_problem, parse_problem, problem_scale

SAMPLES = 8
"""Evaluations per step (4 antithetic pairs): T = B // SAMPLES steps."""

END_FACTOR = 0.01
"""Where every decaying lr schedule ends, as a fraction of the starting lr."""

LR_SHAPES = ("const", "linear", "stable", "cosine")
SIGMAS = ("const", "anneal")
KERNELS = ("plain", "prdpt")

DEFAULT_SETTINGS = (
    "const/const/plain",
    "linear/const/plain",
    "stable/const/plain",
    "cosine/const/plain",
    "const/anneal/plain",
    "linear/anneal/plain",
    "linear/const/prdpt",
)
"""The lr schedules at constant σ and the plain kernel; σ annealed at the constant lr and
the linear decay; the PRDPT kernel at the linear decay."""

DEFAULT_BUDGETS: dict[str, tuple[int, ...]] = {
    "sphere:20": (400, 10_000),
    "rosenbrock:10": (200, 5_000),
    "plateau": (80, 1_000),
    "akima": (80, 1_000),
    "splines": (800, 4_000),
    "texture:size=32": (3_072, 76_800),
    "digits_mlp": (4_000,),
    "caustic": (4_096,),
}
"""Budgets (evaluations) per problem when neither ``--budgets`` nor ``--budgets-per-dim``
is given; cheap problems first, so an interrupted run has them."""


@dataclass(frozen=True)
class LrShape:
    """An ``lr_schedule`` for ``vg.minimize``: lr times ``factor(t)`` over ``total_steps`` T.

    ``const``: 1; ``linear``: 1 − (1 − e) t/T; ``stable``: 1 for t < T/2, then
    linear to e at T; ``cosine``: e + (1 − e)(1 + cos(π t/T))/2; e = ``END_FACTOR``,
    t clipped at T.
    """

    shape: str
    total_steps: int

    def factor(self, step: int) -> float:
        fraction = min(step, self.total_steps) / self.total_steps
        if self.shape == "const":
            return 1.0
        if self.shape == "linear":
            return 1.0 - (1.0 - END_FACTOR) * fraction
        if self.shape == "stable":
            return 1.0 - (1.0 - END_FACTOR) * max(0.0, 2.0 * fraction - 1.0)
        if self.shape == "cosine":
            return END_FACTOR + (1.0 - END_FACTOR) * 0.5 * (1.0 + math.cos(math.pi * fraction))
        raise ValueError(f"lr shape must be one of {LR_SHAPES}; got {self.shape!r}")

    def __call__(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, self.factor)


def parse_setting(text: str) -> tuple[str, str, str]:
    """``"linear/anneal/plain"`` -> ("linear", "anneal", "plain"), each part checked."""
    parts = text.split("/")
    if len(parts) != 3:
        raise ValueError(f"a setting reads LR/SIGMA/KERNEL; got {text!r}")
    for part, known, name in zip(
        parts, (LR_SHAPES, SIGMAS, KERNELS), ("LR", "SIGMA", "KERNEL"), strict=True
    ):
        if part not in known:
            raise ValueError(f"setting {text!r}: {name} must be one of {known}; got {part!r}")
    return parts[0], parts[1], parts[2]


def run_one(spec: str, budget: int, seed: int, setting: str) -> dict[str, Any]:
    """One ``vg.minimize`` run of ``setting`` on problem ``spec`` with ``budget`` and ``seed``."""
    lr_shape, sigma_shape, kernel = parse_setting(setting)
    name, arguments = parse_problem(spec)
    problem = make_problem(Cell(name, arguments, "smoothing", seed))
    scale = problem_scale(problem)
    steps = budget // SAMPLES
    options: dict[str, Any] = {"importance": kernel == "prdpt"}
    if sigma_shape == "anneal":
        options["schedule"] = vg.LinearAnneal(sigma_min=0.05 * scale, total_steps=steps)
    start = time.perf_counter()
    result = vg.minimize(
        problem.loss,
        problem.x0.double(),
        method="smoothing",
        budget=budget,
        seed=seed,
        lr=0.05 * scale,
        sigma=0.5 * scale,
        samples=SAMPLES,
        progress=False,
        checkpoint=None,
        lr_schedule=None if lr_shape == "const" else LrShape(lr_shape, steps),
        **options,
    )
    seconds = time.perf_counter() - start
    return {
        "problem": spec,
        "dim": problem.dim,
        "scale": scale,
        "budget": budget,
        "budget_per_dim": budget / problem.dim,
        "steps": result.nsteps,
        "seed": seed,
        "setting": setting,
        "start_loss": problem.loss(problem.x0.double()),
        "last": problem.loss(result.x_last),  # scoring, outside the budget
        "best": result.fun,
        "optimum": problem.optimum,
        "nevals": result.nevals,
        "seconds": seconds,
    }


def _cell(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3g} [{min(values):.3g}, {max(values):.3g}]"


def overview(rows: list[dict[str, Any]], key: str = "last") -> str:
    """Markdown: problem × budget rows, one column per setting: the median of ``key`` over
    seeds; the lowest median of a row in bold."""
    settings = list(dict.fromkeys(row["setting"] for row in rows))
    cells = list(dict.fromkeys((row["problem"], row["budget"]) for row in rows))
    lines = [
        f"| problem | budget (B/d, steps) | {' | '.join(f'`{s}`' for s in settings)} |",
        "|---|---|" + "---|" * len(settings),
    ]
    for problem, budget in cells:
        mine = [r for r in rows if (r["problem"], r["budget"]) == (problem, budget)]
        medians = {
            setting: statistics.median(r[key] for r in mine if r["setting"] == setting)
            for setting in settings
            if any(r["setting"] == setting for r in mine)
        }
        lowest = min(medians.values())
        texts = [
            "–"
            if setting not in medians
            else f"**{medians[setting]:.3g}**"
            if medians[setting] == lowest
            else f"{medians[setting]:.3g}"
            for setting in settings
        ]
        head = f"{budget} ({mine[0]['budget_per_dim']:.3g} d, {mine[0]['steps']})"
        lines.append(f"| {problem} | {head} | {' | '.join(texts)} |")
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]], key: str = "last") -> str:
    """Markdown: per setting, problem × budget → median [min, max] of ``key`` over seeds, and
    the median ratio to ``const/const/plain`` seed by seed (with its wins)."""
    problems = list(dict.fromkeys(row["problem"] for row in rows))
    settings = list(dict.fromkeys(row["setting"] for row in rows))
    by = {(r["problem"], r["budget"], r["setting"], r["seed"]): r[key] for r in rows}
    lines: list[str] = []
    for setting in settings:
        lines += [
            f"\n#### `{setting}` ({key})\n",
            "| problem | d | budget | B/d | steps | median [min, max] | ratio to const (median) "
            "| seeds better |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for problem in problems:
            budgets = sorted({r["budget"] for r in rows if r["problem"] == problem})
            for budget in budgets:
                mine = [
                    r
                    for r in rows
                    if (r["problem"], r["budget"], r["setting"]) == (problem, budget, setting)
                ]
                if not mine:
                    continue
                values = [r[key] for r in mine]
                ratios = [
                    r[key] / by[(problem, budget, "const/const/plain", r["seed"])]
                    for r in mine
                    if (problem, budget, "const/const/plain", r["seed"]) in by
                    and by[(problem, budget, "const/const/plain", r["seed"])] > 0
                ]
                wins = sum(ratio < 1 for ratio in ratios)
                ratio = f"{statistics.median(ratios):.3g}" if ratios else "–"
                lines.append(
                    f"| {problem} | {mine[0]['dim']} | {budget} | {mine[0]['budget_per_dim']:.3g} "
                    f"| {mine[0]['steps']} | {_cell(values)} | {ratio} "
                    f"| {wins}/{len(ratios)} |"
                )
    return "\n".join(lines)


def paired(rows: list[dict[str, Any]], a: str, b: str, key: str = "last") -> str:
    """Markdown: per problem × budget, setting ``a``'s ``key`` over ``b``'s seed by seed: the
    median ratio, its range, and on how many seeds ``a`` is lower (ties: equal values)."""
    by = {(r["problem"], r["budget"], r["setting"], r["seed"]): r for r in rows}
    lines = [
        f"| problem | budget (B/d, steps) | `{a}` / `{b}`: median [min, max] "
        f"| `{a}` lower | ties |",
        "|---|---|---|---|---|",
    ]
    for problem, budget in dict.fromkeys((r["problem"], r["budget"]) for r in rows):
        pairs = [
            (by[(problem, budget, a, seed)], by[(problem, budget, b, seed)])
            for (p, bud, setting, seed) in by
            if (p, bud, setting) == (problem, budget, a) and (problem, budget, b, seed) in by
        ]
        if not pairs:
            continue
        ties = sum(x[key] == y[key] for x, y in pairs)
        ratios = [x[key] / y[key] for x, y in pairs if y[key] > 0]
        lower = sum(x[key] < y[key] for x, y in pairs)
        head = f"{budget} ({pairs[0][0]['budget_per_dim']:.3g} d, {pairs[0][0]['steps']})"
        text = _cell(ratios) if ratios else "–"
        lines.append(f"| {problem} | {head} | {text} | {lower}/{len(pairs)} | {ties} |")
    return "\n".join(lines)


def budgets_for(spec: str, args: argparse.Namespace) -> list[int]:
    """The budgets of ``spec``: ``--budgets``, ``--budgets-per-dim`` × d, or the default."""
    if args.budgets:
        return list(args.budgets)
    if args.budgets_per_dim:
        name, arguments = parse_problem(spec)
        dim = make_problem(Cell(name, arguments, "smoothing", 0)).dim
        return [max(2 * SAMPLES, round(k * dim / SAMPLES) * SAMPLES) for k in args.budgets_per_dim]
    if spec not in DEFAULT_BUDGETS:
        raise ValueError(
            f"problem {spec!r} has no default budgets ({sorted(DEFAULT_BUDGETS)}); "
            "give --budgets or --budgets-per-dim"
        )
    return list(DEFAULT_BUDGETS[spec])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=list(DEFAULT_BUDGETS))
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--budgets", nargs="+", type=int, help="evaluations, every problem")
    group.add_argument(
        "--budgets-per-dim", nargs="+", type=float, help="multiples of each problem's d"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … SEEDS−1")
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="budget_schedules", help="the JSON's file stem")
    parser.add_argument(
        "--compare",
        nargs=2,
        action="append",
        metavar=("A", "B"),
        help="with --summarize: also setting A's loss over setting B's, seed by seed",
    )
    parser.add_argument(
        "--summarize",
        type=Path,
        nargs="+",
        help="print the tables of these JSON files; run nothing",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1; got {args.seeds}")
    for budget in args.budgets or ():
        if budget < SAMPLES:
            parser.error(f"--budgets must be at least {SAMPLES} (one step); got {budget}")
    for multiple in args.budgets_per_dim or ():
        if multiple <= 0:
            parser.error(f"--budgets-per-dim must be positive; got {multiple}")
    for setting in args.settings:
        try:
            parse_setting(setting)
        except ValueError as error:
            parser.error(f"--settings: {error}")
    for spec in args.problems:
        try:
            parse_problem(spec)
        except ValueError as error:
            parser.error(f"--problems: {error}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.summarize:
        # json only: the files hold numbers and strings, nothing that executes
        rows = [row for path in args.summarize for row in json.loads(path.read_text())["results"]]
        for key in ("last", "best"):
            print(f"\n### median of {key} over seeds\n")
            print(overview(rows, key))
        for a, b in args.compare or ():
            print(f"\n### `{a}` against `{b}` (last)\n")
            print(paired(rows, a, b))
        print(summary(rows))
        print(summary(rows, "best"))
        return
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []

    def save() -> Path:
        return write_results(
            args.out,
            args.name,
            "final-iterate and best evaluated loss of vg.minimize smoothing per lr/σ schedule "
            "and kernel, per budget",
            rows,
            problems=args.problems,
            budgets=args.budgets,
            budgets_per_dim=args.budgets_per_dim,
            seeds=args.seeds,
            settings=args.settings,
            samples=SAMPLES,
            end_factor=END_FACTOR,
        )

    for spec in args.problems:
        for budget in budgets_for(spec, args):
            for seed in range(args.seeds):
                for setting in args.settings:
                    row = run_one(spec, budget, seed, setting)
                    rows.append(row)
                    print(
                        f"{spec:16s} B={budget:6d} seed={seed} {setting:20s} "
                        f"last={row['last']:.4g} best={row['best']:.4g} {row['seconds']:.1f}s",
                        flush=True,
                    )
                    save()  # after each run: an interrupted run keeps what it measured
    print(summary(rows))


if __name__ == "__main__":
    main()
