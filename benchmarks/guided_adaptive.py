"""Guided smoothing with adaptive α, and the mixing estimator, against plain smoothing.

What is measured
----------------
The final loss F(x) after ``vg.minimize`` (Adam, lr = 0.05) at an equal
budget of evaluations (``--budget``, 8 a step), median over ``--seeds``
seeds, for

- ``smoothing``: ``GaussianSmoothing(0.1, 8, importance=False)``, no guide;
- ``guided-fixed``: ``GuidedSmoothing(0.1, 8, guide, alpha=0.1)``;
- ``guided-adaptive``: ``GuidedSmoothing(0.1, 8, guide, adapt=True,
  alpha=1.0, memory=0.9)`` (α starts at 1, plain smoothing; floor 0.05);
- ``mixed``: ``MixedGradient(0.1, 8, guide)`` (z = 2);

with the guides

- ``twin``: the gradient of a biased smooth twin, 2(x − t) + 0.3 (good);
- ``random``: a fresh N(0, I) vector at every call (useless);
- ``negative``: −∇ of the smooth twin, 2(t − x) (adversarial in sign; a
  guided sampler uses the subspace only, so it is a good guide for it);
- ``fixed``: one fixed random unit direction times 10 (adversarial: wrong and
  constant).

Problems, d = 50, t = linspace(−1, 1), x0 = 0:

- ``quadratic``: F(x) = Σ_k s_k (x_k − t_k)², s = linspace(0.5, 2);
- ``staircase``: F(x) = Σ_k (round(8x_k)/8 − t_k)², no useful gradient.

Reported per row: the median final loss, and its ratio to plain smoothing's
median on the same problem (the cost of a useless guide is the ratio's
excess over 1).

Run from the repository root (about a minute on one thread)::

    .venv/bin/python benchmarks/guided_adaptive.py
    .venv/bin/python benchmarks/guided_adaptive.py --seeds 9 --budget 800
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

import voidgrad as vg
from common import write_results

D = 50
TARGET = torch.linspace(-1.0, 1.0, D, dtype=torch.float64)
SCALES = torch.linspace(0.5, 2.0, D, dtype=torch.float64)
Guide = Callable[[torch.Tensor], torch.Tensor]


def quadratic(x: torch.Tensor) -> float:
    return float(((x - TARGET) ** 2 * SCALES).sum())


def staircase(x: torch.Tensor) -> float:
    return float(((x * 8).round() / 8 - TARGET).pow(2).sum())


PROBLEMS: dict[str, Callable[[torch.Tensor], float]] = {
    "quadratic": quadratic,
    "staircase": staircase,
}


def make_guide(name: str, seed: int) -> Guide:
    """The guide ``name`` (module doc), its randomness seeded by ``seed``."""
    generator = torch.Generator().manual_seed(1000 + seed)
    if name == "twin":
        return lambda x: 2 * (x - TARGET) + 0.3
    if name == "random":
        return lambda x: torch.randn(D, generator=generator, dtype=torch.float64)
    if name == "negative":
        return lambda x: 2 * (TARGET - x)
    direction = torch.randn(D, generator=generator, dtype=torch.float64)
    fixed = 10 * direction / direction.norm()
    return lambda x: fixed


METHODS: dict[str, dict[str, object]] = {
    "guided-fixed": {"method": "guided", "alpha": 0.1},
    "guided-adaptive": {"method": "guided", "adapt": True, "alpha": 1.0, "memory": 0.9},
    "mixed": {"method": "mixed"},
}


def final_loss(problem: str, options: dict[str, object], budget: int, seed: int) -> float:
    fn = PROBLEMS[problem]
    result = vg.minimize(
        fn,
        torch.zeros(D, dtype=torch.float64),
        sigma=0.1,
        samples=8,
        budget=budget,
        lr=0.05,
        seed=seed,
        progress=False,
        **options,  # type: ignore[arg-type]
    )
    return fn(result.x)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per configuration")
    parser.add_argument("--budget", type=int, default=400, help="evaluations per run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    rows: list[dict[str, object]] = []
    print(f"{'problem':10s} {'method':16s} {'guide':9s} {'median':>9s} {'/plain':>7s}")
    for problem in PROBLEMS:
        plain = [
            final_loss(problem, {"method": "smoothing", "importance": False}, args.budget, s)
            for s in seeds
        ]
        baseline = statistics.median(plain)
        rows.append(
            {
                "problem": problem,
                "method": "smoothing",
                "guide": None,
                "losses": plain,
                "median": baseline,
                "ratio": 1.0,
            }
        )
        print(f"{problem:10s} {'smoothing':16s} {'-':9s} {baseline:9.4f} {1.0:7.3f}")
        for guide in ("twin", "random", "negative", "fixed"):
            for method, options in METHODS.items():
                losses = [
                    final_loss(problem, {**options, "guide": make_guide(guide, s)}, args.budget, s)
                    for s in seeds
                ]
                median = statistics.median(losses)
                rows.append(
                    {
                        "problem": problem,
                        "method": method,
                        "guide": guide,
                        "losses": losses,
                        "median": median,
                        "ratio": median / baseline,
                    }
                )
                print(
                    f"{problem:10s} {method:16s} {guide:9s} {median:9.4f} {median / baseline:7.3f}"
                )
    write_results(
        args.out,
        "guided_adaptive",
        "final loss at equal evaluations: plain smoothing, guided (fixed and adaptive alpha), "
        "mixed, under good, useless and adversarial guides",
        rows,
        seeds=args.seeds,
        budget=args.budget,
        dim=D,
    )


if __name__ == "__main__":
    main()
