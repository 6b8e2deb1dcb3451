"""Guided smoothing with adaptive α, and the mixing estimator, against plain smoothing.

What is measured
----------------
The final loss F(x) after ``vg.minimize`` (Adam, lr = 0.05) at an equal
budget of evaluations (``--budget``, 8 a step), median over ``--seeds``
seeds, for

- ``smoothing``: ``GaussianSmoothing(0.1, 8, importance=False)``, no guide;
- ``guided-fixed``: ``GuidedSmoothing(0.1, 8, guide, alpha=0.1)``;
- ``guided-adaptive``: ``GuidedSmoothing(0.1, 8, guide, adapt=True,
  memory=0.9)`` (α starts at 1, plain smoothing, and leaves it on the lower
  confidence bound of the guide's share, z = 2; floor 0.05);
- ``mixed``: ``MixedGradient(0.1, 8, guide)`` (z = 2);
- ``guide-alone``: Adam (the same lr) on the guide itself, for as many steps
  as the others take (budget / 8); it evaluates F only at the end;

with the guides

- ``twin``: the gradient of a biased smooth twin, 2(x − t) + 0.3 (good);
- ``random``: a fresh N(0, I) vector at every call (useless);
- ``negative``: −∇ of the smooth twin, 2(t − x) (adversarial in sign; a
  guided sampler uses the subspace only, so it is a good guide for it);
- ``fixed``: one fixed random unit direction times 10 (adversarial: wrong and
  constant).

Problems, d = 50 and 200 (``--dims``), t = linspace(−1, 1), x0 = 0:

- ``quadratic``: F(x) = Σ_k s_k (x_k − t_k)², s = linspace(0.5, 2);
- ``staircase``: F(x) = Σ_k (round(8x_k)/8 − t_k)², no useful gradient.

Reported per row: the median final loss with its [min, max] over the seeds,
and the median's ratio to plain smoothing's median on the same problem and
dimension (the cost of a useless guide is the ratio's excess over 1).

Run from the repository root (about two minutes on one thread)::

    .venv/bin/python benchmarks/guided_adaptive.py
    .venv/bin/python benchmarks/guided_adaptive.py --seeds 9 --budget 800 --dims 50
    .venv/bin/python benchmarks/guided_adaptive.py --methods guided-adaptive
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

import voidgrad as vg
from common import write_results

Guide = Callable[[torch.Tensor], torch.Tensor]
GUIDES = ("twin", "random", "negative", "fixed")


def target(d: int) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, d, dtype=torch.float64)


def make_problem(name: str, d: int) -> Callable[[torch.Tensor], float]:
    """The problem ``name`` (module doc) in ``d`` dimensions."""
    t = target(d)
    if name == "quadratic":
        scales = torch.linspace(0.5, 2.0, d, dtype=torch.float64)
        return lambda x: float(((x - t) ** 2 * scales).sum())
    return lambda x: float(((x * 8).round() / 8 - t).pow(2).sum())


PROBLEMS = ("quadratic", "staircase")


def make_guide(name: str, d: int, seed: int) -> Guide:
    """The guide ``name`` (module doc) in ``d`` dimensions, its randomness seeded by ``seed``."""
    generator = torch.Generator().manual_seed(1000 + seed)
    t = target(d)
    if name == "twin":
        return lambda x: 2 * (x - t) + 0.3
    if name == "random":
        return lambda x: torch.randn(d, generator=generator, dtype=torch.float64)
    if name == "negative":
        return lambda x: 2 * (t - x)
    direction = torch.randn(d, generator=generator, dtype=torch.float64)
    fixed = 10 * direction / direction.norm()
    return lambda x: fixed


METHODS: dict[str, dict[str, object]] = {
    "guided-fixed": {"method": "guided", "alpha": 0.1},
    "guided-adaptive": {"method": "guided", "adapt": True, "memory": 0.9},
    "mixed": {"method": "mixed"},
    "guide-alone": {},
}


def guide_alone_loss(problem: str, d: int, guide: Guide, steps: int) -> float:
    """F after ``steps`` Adam steps (lr = 0.05) along the guide alone, from x0 = 0."""
    x = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=0.05)
    for _ in range(steps):
        x.grad = guide(x.detach()).to(x.dtype)
        optimizer.step()
    return make_problem(problem, d)(x.detach())


def final_loss(problem: str, d: int, options: dict[str, object], budget: int, seed: int) -> float:
    fn = make_problem(problem, d)
    result = vg.minimize(
        fn,
        torch.zeros(d, dtype=torch.float64),
        sigma=0.1,
        samples=8,
        budget=budget,
        lr=0.05,
        seed=seed,
        progress=False,
        **options,  # type: ignore[arg-type]
    )
    return fn(result.x)


def summary(losses: list[float]) -> str:
    """``median [min, max]``."""
    return f"{statistics.median(losses):9.4f} [{min(losses):.4f}, {max(losses):.4f}]"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per configuration")
    parser.add_argument("--budget", type=int, default=400, help="evaluations per run")
    parser.add_argument("--dims", type=int, nargs="+", default=[50, 200], help="dimensions d")
    parser.add_argument(
        "--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS), help="methods"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    rows: list[dict[str, object]] = []
    header = f"{'d':>4s} {'problem':10s} {'method':16s} {'guide':9s} {'median [min, max]':>30s}"
    print(f"{header} /plain")
    for d in args.dims:
        for problem in PROBLEMS:
            plain = [
                final_loss(problem, d, {"method": "smoothing", "importance": False}, args.budget, s)
                for s in seeds
            ]
            baseline = statistics.median(plain)
            configurations = [("smoothing", None, plain)]
            for guide in GUIDES:
                for method in args.methods:
                    if method == "guide-alone":
                        steps = args.budget // 8
                        losses = [
                            guide_alone_loss(problem, d, make_guide(guide, d, s), steps)
                            for s in seeds
                        ]
                    else:
                        losses = [
                            final_loss(
                                problem,
                                d,
                                {**METHODS[method], "guide": make_guide(guide, d, s)},
                                args.budget,
                                s,
                            )
                            for s in seeds
                        ]
                    configurations.append((method, guide, losses))
            for method, guide, losses in configurations:
                median = statistics.median(losses)
                rows.append(
                    {
                        "dim": d,
                        "problem": problem,
                        "method": method,
                        "guide": guide,
                        "losses": losses,
                        "median": median,
                        "min": min(losses),
                        "max": max(losses),
                        "ratio": median / baseline,
                    }
                )
                print(
                    f"{d:4d} {problem:10s} {method:16s} {guide or '-':9s} {summary(losses):>30s} "
                    f"{median / baseline:6.3f}",
                    flush=True,
                )
    write_results(
        args.out,
        "guided_adaptive",
        "final loss at equal evaluations: plain smoothing, guided (fixed and adaptive alpha), "
        "mixed and Adam on the guide alone, under good, useless and adversarial guides",
        rows,
        seeds=args.seeds,
        budget=args.budget,
        dims=args.dims,
        methods=args.methods,
    )


if __name__ == "__main__":
    main()
