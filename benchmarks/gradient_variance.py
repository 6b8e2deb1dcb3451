"""Gradient quality along an optimization run: ZeroGrads against smoothing and SPSA.

What is measured
----------------
Each method runs Adam on a problem with the settings ``voidgrad bench`` gives
it (``voidgrad.bench.method_options``) until the evaluation budget is spent.
At ``--checkpoints`` evenly spaced steps the run pauses and, at the current θ,

- **variance**: ``--replicates`` independent estimates are drawn from deep
  copies of the estimator (each with its own seed, so each sees the same
  surrogate, schedule and buffer as the run but fresh samples); reported as
  tr Cov[ĝ] · n, n = evaluations per estimate, i.e. the variance of an
  estimate that costs one evaluation, so methods with different sample
  counts compare at equal cost;
- **alignment**: the mean cosine between those estimates and a reference
  gradient: antithetic Gaussian smoothing with ``--reference-pairs`` pairs at
  σ = 0.2 s (s = the problem's scale). The reference is itself noisy, which
  lowers every method's cosine by the same factor (its split-half cosine is
  reported), so the comparison between methods stands.

The replicate estimates cost evaluations that do not count against the run's
budget and do not change its state.

Run from the repository root::

    .venv/bin/python benchmarks/gradient_variance.py --problem caustic
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from common import write_results
from voidgrad import problems
from voidgrad.bench import method_options, minimize_method, problem_scale
from voidgrad.registry import method as registered_method

METHODS = ("zerograds", "zerograds-reference", "smoothing", "spsa")


def estimator_for(method: str, scale: float, budget: int, dim: int, seed: int) -> Any:
    """The estimator and learning rate the bench would use."""
    options = method_options(method, scale, budget, {}, dim)
    lr = options.pop("lr")
    return registered_method(minimize_method(method)).make(seed=seed, **options), lr


def estimate(estimator: Any, loss: Any, theta: torch.Tensor) -> torch.Tensor:
    x = theta.detach().clone().requires_grad_(True)
    vg.blackbox(loss, estimator)(x).backward()
    assert x.grad is not None
    return x.grad


def replicates(estimator: Any, loss: Any, theta: torch.Tensor, count: int) -> torch.Tensor:
    rows = []
    for k in range(count):
        twin = copy.deepcopy(estimator)
        twin.reseed(10_000 + k)
        rows.append(estimate(twin, loss, theta))
    return torch.stack(rows)


def reference_gradient(
    loss: Any, theta: torch.Tensor, sigma: float, pairs: int, seed: int
) -> tuple[torch.Tensor, float]:
    """Antithetic smoothing with many pairs, and the cosine between its two halves."""
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn((pairs, theta.numel()), generator=generator, dtype=theta.dtype) * sigma
    differences = torch.tensor([loss(theta + e) - loss(theta - e) for e in eps], dtype=theta.dtype)
    terms = differences[:, None] * eps / (2 * sigma**2)
    half = pairs // 2
    split = torch.nn.functional.cosine_similarity(terms[:half].mean(0), terms[half:].mean(0), dim=0)
    return terms.mean(0), float(split)


def run(method: str, args: argparse.Namespace) -> list[dict[str, float]]:
    problem = problems.make(args.problem, seed=args.seed)
    scale = problem_scale(problem)
    estimator, lr = estimator_for(method, scale, args.budget, problem.dim, args.seed)
    per_step = estimator.evaluations(problem.dim)
    steps = args.budget // per_step
    marks = {round(i * (steps - 1) / (args.checkpoints - 1)) for i in range(args.checkpoints)}
    theta = problem.x0.double().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    rows = []
    for step in range(steps):
        if step in marks:
            point = theta.detach().clone()
            grads = replicates(estimator, problem.loss, point, args.replicates)
            reference, split = reference_gradient(
                problem.loss, point, 0.2 * scale, args.reference_pairs, seed=step
            )
            cosines = torch.nn.functional.cosine_similarity(grads, reference[None], dim=1)
            rows.append(
                {
                    "step": step,
                    "evals": step * per_step,
                    "loss": problem.loss(point),
                    "variance_per_eval": float(grads.var(0).sum()) * per_step,
                    "cosine": float(cosines.mean()),
                    "reference_split_cosine": split,
                }
            )
            print(f"{method:22s} " + "  ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()))
        optimizer.zero_grad()
        vg.blackbox(problem.loss, estimator)(theta).backward()
        optimizer.step()
        estimator.step()
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", default="caustic")
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--reference-pairs", type=int, default=500)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.strftime("%H:%M:%S")
    results = [{"method": method, "checkpoints": run(method, args)} for method in args.methods]
    write_results(
        args.out,
        f"gradient_variance_{args.problem}",
        "tr Cov of the gradient estimate per evaluation, and its cosine with a many-sample "
        "smoothing gradient, at checkpoints along an Adam run with the bench's settings",
        problem=args.problem,
        budget=args.budget,
        checkpoints=args.checkpoints,
        replicates=args.replicates,
        reference_pairs=args.reference_pairs,
        seed=args.seed,
        started=started,
        results=results,
    )


if __name__ == "__main__":
    main()
