"""How much variance any gradient-based control variate can remove, along a smoothing run.

ZeroGrads' unbiased mode subtracts a surrogate h from each sample: with antithetic
pairs the smoothing estimate is the mean of Δ_i ε_i/σ², Δ_i = (F(θ+ε_i) − F(θ−ε_i))/2,
and a surrogate replaces Δ_i by its residual Δ_i − (h(θ+ε_i) − h(θ−ε_i))/2. Near θ a
surrogate's difference is ε·∇h, and the best linear predictor of Δ from ε is ε·g with
g = ∇F_σ(θ) = E[Δ ε]/σ² (Stein's lemma), so no surrogate that is locally linear at the
scale σ can remove more than the share

    R² = E[(ε·g)²] / E[Δ²] = σ² ‖g‖² / E[Δ²]

of the variance of the differences, even with the *exact* smoothed gradient. ‖g‖² is
estimated without bias from independent groups of pairs, Σ_{j<k} g_j·g_k over the
group pairs, so the noise of a finite reference does not shrink R².

Also reported: ``cross_fit_ratio``, the variance of the control-variate estimate on one
half of the pairs with g estimated from the other half, over that of the plain estimate
(what a surrogate that had seen those many pairs at this very θ could achieve; above 1
when the fitted g is noisier than the signal it would remove).

The points are taken along an Adam run of Gaussian smoothing with the bench's settings
(σ annealed from 0.5 s to 0.05 s, s the problem's scale), at its start, middle and end,
at the σ of that step. Run from the repository root::

    .venv/bin/python benchmarks/zerograds_control_ceiling.py --problems splines caustic
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from common import write_results
from voidgrad import problems
from voidgrad.bench import method_options, parse_problem, problem_scale

GROUPS = 4


def differences(
    loss: Any, theta: torch.Tensor, sigma: float, pairs: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets ε ``[pairs, d]`` ~ N(0, σ²I) and Δ = (F(θ+ε) − F(θ−ε))/2 ``[pairs]``."""
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn((pairs, theta.numel()), generator=generator, dtype=theta.dtype) * sigma
    delta = torch.tensor([(loss(theta + e) - loss(theta - e)) / 2 for e in eps], dtype=theta.dtype)
    return eps, delta


def ceiling(eps: torch.Tensor, delta: torch.Tensor, sigma: float) -> dict[str, float]:
    """R² of the exact smoothed gradient's linear prediction, and the cross-fitted ratio."""
    groups = [
        (e * d[:, None]).mean(0) / sigma**2
        for e, d in zip(eps.chunk(GROUPS), delta.chunk(GROUPS), strict=True)
    ]
    products = torch.tensor(
        [float(groups[j] @ groups[k]) for j in range(GROUPS) for k in range(j + 1, GROUPS)]
    )
    second_moment = float(delta.pow(2).mean())
    shares = products * sigma**2 / second_moment
    half = len(delta) // 2
    fitted = (eps[half:] * delta[half:, None]).mean(0) / sigma**2
    plain = eps[:half] * delta[:half, None] / sigma**2
    controlled = eps[:half] * (delta[:half] - eps[:half] @ fitted)[:, None] / sigma**2
    return {
        "r2": float(shares.mean()),
        "r2_spread": float(shares.std() / math.sqrt(len(shares))),
        "cross_fit_ratio": float(controlled.var(0).sum() / plain.var(0).sum()),
        "zero_differences": float((delta == 0).double().mean()),
    }


def run(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    name, arguments = parse_problem(spec)
    problem = problems.make(name, seed=args.seed, **dict(arguments))
    scale = problem_scale(problem)
    options = method_options("smoothing", scale, args.budget, {}, problem.dim)
    lr = options.pop("lr")
    estimator = vg.GaussianSmoothing(seed=args.seed, **options)
    steps = args.budget // estimator.samples
    marks = {0: "start", steps // 2: "middle", steps - 1: "end"}
    pairs = max(args.min_pairs, math.ceil(args.pairs_per_root_dim * math.sqrt(problem.dim)))
    theta = problem.x0.double().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    rows = []
    for step in range(steps):
        if step in marks:
            point, sigma = theta.detach().clone(), estimator.sigma
            eps, delta = differences(problem.loss, point, sigma, pairs, seed=step)
            row = {"point": marks[step], "step": step, "sigma": sigma, "pairs": pairs}
            row |= {"loss": problem.loss(point), **ceiling(eps, delta, sigma)}
            rows.append(row)
            print(
                f"{spec:16s} "
                + "  ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                ),
                flush=True,
            )
        optimizer.zero_grad()
        vg.blackbox(problem.loss, estimator)(theta).backward()
        optimizer.step()
        estimator.step()
    return {"problem": spec, "dim": problem.dim, "scale": scale, "points": rows}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=["splines", "caustic"])
    parser.add_argument("--budget", type=int, default=4000, help="of the smoothing run")
    parser.add_argument("--min-pairs", type=int, default=1000)
    parser.add_argument(
        "--pairs-per-root-dim",
        type=float,
        default=40.0,
        help="pairs = this · sqrt(d), so R²'s noise (about sqrt(d)/pairs) stays near 0.05",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.strftime("%H:%M:%S")
    results = [run(spec, args) for spec in args.problems]
    write_results(
        args.out,
        "zerograds_control_ceiling",
        "the share R² of the antithetic differences' variance that the exact smoothed "
        "gradient's linear prediction explains (the most a locally linear control variate "
        "can remove), at the start, middle and end of a smoothing run",
        budget=args.budget,
        seed=args.seed,
        started=started,
        results=results,
    )


if __name__ == "__main__":
    main()
