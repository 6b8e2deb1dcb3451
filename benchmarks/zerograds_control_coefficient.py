"""ZeroGrads' control coefficient β along a run, against how fast θ moves.

β (``ZeroGrads.control_coefficient``) is the weight the unbiased estimate gives the
surrogate's control variate, fitted online: near 0 the surrogate removes no variance and
the estimate is plain Gaussian smoothing. The surrogate can only learn the local gradient
from samples taken while θ stays within about σ of where they were drawn, so β should
rise when Adam's step (``lr``, in units of the problem's scale s) is small next to σ.
Each run uses the bench's ZeroGrads settings (``voidgrad.bench.method_options``) but the
learning rate, records β after every step and scores the final iterate.

Run from the repository root::

    .venv/bin/python benchmarks/zerograds_control_coefficient.py --problems splines caustic
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from common import write_results
from voidgrad import problems
from voidgrad.bench import method_options, parse_problem, problem_scale


def run(spec: str, lr_factor: float, seed: int, budget: int) -> dict[str, Any]:
    name, arguments = parse_problem(spec)
    problem = problems.make(name, seed=seed, **dict(arguments))
    scale = problem_scale(problem)
    options = method_options("zerograds", scale, budget, {}, problem.dim)
    options["lr"] = lr_factor * scale
    betas: list[float] = []
    result = vg.minimize(
        problem.loss,
        problem.x0.double(),
        method="zerograds",
        budget=budget,
        seed=seed,
        progress=False,
        # the run's state carries the estimator: β after every step, no loop of our own
        callback=lambda record, state: betas.append(state.algorithm.estimator.control_coefficient),
        **options,
    )
    half = len(betas) // 2
    return {
        "problem": spec,
        "lr_factor": lr_factor,
        "seed": seed,
        "final_loss": problem.loss(result.x_last),
        "beta_mean_first_half": statistics.fmean(betas[:half]),
        "beta_mean_second_half": statistics.fmean(betas[half:]),
        "beta_quartiles_second_half": statistics.quantiles(betas[half:], n=4),
        "betas_every_10_steps": betas[::10],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=["splines", "caustic"])
    parser.add_argument("--lr-factors", nargs="+", type=float, default=[0.05, 0.01])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.strftime("%H:%M:%S")
    results = []
    for spec in args.problems:
        for lr_factor in args.lr_factors:
            for seed in range(args.seeds):
                row = run(spec, lr_factor, seed, args.budget)
                results.append(row)
                print(
                    f"{spec:12s} lr {lr_factor:g}·s seed {seed}: final {row['final_loss']:.4g}, "
                    f"β mean {row['beta_mean_first_half']:.3f} → "
                    f"{row['beta_mean_second_half']:.3f}",
                    flush=True,
                )
    write_results(
        args.out,
        "zerograds_control_coefficient",
        "ZeroGrads' control coefficient beta along runs with the bench's settings at two "
        "Adam learning rates (units of the problem's scale), and the final iterate's loss",
        budget=args.budget,
        seeds=args.seeds,
        started=started,
        results=results,
    )


if __name__ == "__main__":
    main()
