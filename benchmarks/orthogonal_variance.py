"""Gradient variance of Gaussian smoothing with orthogonal directions against i.i.d. ones.

What is measured
----------------
``vg.GaussianSmoothing(importance=False)`` with ``directions="iid"`` and with
``directions="orthogonal"`` (blocks of min(n, d) orthogonalised Gaussians with
χ(d) lengths), at the same number of evaluations, for n = 8 directions and
n = d directions per estimate, antithetic (2n evaluations) and plain (n
evaluations). For each configuration, K = ``--draws`` independent gradient
estimates at one point (rows of one batch); reported: the total variance
tr Cov(ĝ) = Σ_k Var(ĝ_k) of each, their ratio i.i.d./orthogonal with a
jackknife standard error over 20 groups of estimates, and two checks against
theory:

- ``Δ/pred``: the measured reduction tr Cov_iid − tr Cov_orth over the one
  ``voidgrad.estimators.smoothing`` derives, (P/n²) ‖∇Q‖² (P ordered pairs of
  directions sharing a block), with ‖∇Q‖² from the mean of all 2K estimates
  less its own variance: 1 up to noise, which is large where the reduction is
  small against tr Cov_iid (the plain rows);
- ``quad.``: the ratio (d + 1)/(d + 2 − n) that a quadratic gives for n ≤ d,
  antithetic.

Problems:

- ``quadratic``: F(x) = ½ xᵀAx + bᵀx in d = 100, A = diag(logspace(−1, 1)),
  b and θ ~ N(0, I) (seeded), σ = 0.1;
- ``rosenbrock``: ``vg.problems.Rosenbrock(dim=100)`` at its start x0, σ = 0.01;
- ``texture``: ``vg.problems.TextureProblem(size=6)`` (d = 108, a quantized,
  piecewise-constant loss) at its start x0, σ = 0.05, evaluated by its own
  ``loss_batch`` (about 0.15 ms a point, the bulk of the run time).

Run from the repository root (about a minute on one thread)::

    .venv/bin/python benchmarks/orthogonal_variance.py
    .venv/bin/python benchmarks/orthogonal_variance.py --draws 2000 --problems quadratic
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

import voidgrad as vg
from common import write_results

GROUPS = 20
"""Jackknife groups of estimates for the standard error of a ratio."""


@dataclass(frozen=True)
class Case:
    """A black box ``fn`` (rows ``[N, d]`` → ``[N]``), the point θ and the bandwidth σ."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    theta: torch.Tensor
    sigma: float


def quadratic_case(seed: int) -> Case:
    d = 100
    generator = torch.Generator().manual_seed(seed)
    diagonal = torch.logspace(-1, 1, d, dtype=torch.float64)
    b = torch.randn(d, generator=generator, dtype=torch.float64)
    theta = torch.randn(d, generator=generator, dtype=torch.float64)
    return Case(lambda X: 0.5 * (X * X) @ diagonal + X @ b, theta, 0.1)


def rosenbrock_case(seed: int) -> Case:
    problem = vg.problems.Rosenbrock(dim=100, seed=seed)
    return Case(problem.loss_batch, problem.x0, 0.01)


def texture_case(seed: int) -> Case:
    problem = vg.problems.TextureProblem(size=6, seed=seed)
    return Case(problem.loss_batch, problem.x0, 0.05)


CASES: dict[str, Callable[[int], Case]] = {
    "quadratic": quadratic_case,
    "rosenbrock": rosenbrock_case,
    "texture": texture_case,
}


def gradients(estimator: vg.GaussianSmoothing, case: Case, K: int, chunk: int) -> torch.Tensor:
    """``[K, d]`` independent estimates at θ, ``chunk`` batch rows per call."""
    evaluator = vg.Evaluator(case.fn, backend="vectorized")
    blackbox = vg.blackbox(evaluator, estimator)
    parts = []
    for start in range(0, K, chunk):
        batch = case.theta.expand(min(chunk, K - start), -1).clone().requires_grad_(True)
        blackbox(batch).sum().backward()
        parts.append(batch.grad)
    return torch.cat(parts)


def total_variance(grads: torch.Tensor) -> float:
    return float(grads.var(0).sum())


def jackknife_ratio_se(iid: torch.Tensor, orth: torch.Tensor) -> float:
    """Standard error of tr Cov_iid / tr Cov_orth by leaving out one of ``GROUPS`` groups."""
    keep = [torch.ones(iid.shape[0], dtype=torch.bool) for _ in range(GROUPS)]
    for group, mask in enumerate(keep):
        mask[group::GROUPS] = False
    ratios = torch.tensor([total_variance(iid[m]) / total_variance(orth[m]) for m in keep])
    return float(ratios.std(correction=0) * math.sqrt(GROUPS - 1))


def pairs_in_blocks(n: int, d: int) -> int:
    """P: ordered pairs of directions sharing a block of min(n, d) (the last block cut)."""
    m = min(n, d)
    sizes = [m] * (n // m) + ([n % m] if n % m else [])
    return sum(size * (size - 1) for size in sizes)


def measure(name: str, args: argparse.Namespace) -> list[dict[str, object]]:
    case = CASES[name](args.seed)
    d = case.theta.numel()
    rows: list[dict[str, object]] = []
    for antithetic in (True, False):
        for n in (8, d):
            samples = 2 * n if antithetic else n
            chunk = max(1, args.points_per_call // samples)
            grads = {
                directions: gradients(
                    vg.GaussianSmoothing(
                        case.sigma,
                        samples,
                        antithetic,
                        importance=False,
                        directions=directions,
                        seed=args.seed + 1,
                    ),
                    case,
                    args.draws,
                    chunk,
                )
                for directions in ("iid", "orthogonal")
            }
            iid, orth = total_variance(grads["iid"]), total_variance(grads["orthogonal"])
            # ‖∇Q‖²: E‖mean‖² = ‖∇Q‖² + tr Cov(mean); both samplers are unbiased.
            pooled = torch.cat(list(grads.values()))
            mean_square = float(pooled.mean(0).pow(2).sum()) - 0.5 * (iid + orth) / (2 * args.draws)
            predicted = pairs_in_blocks(n, d) / n**2 * mean_square
            rows.append(
                {
                    "problem": name,
                    "d": d,
                    "sigma": case.sigma,
                    "antithetic": antithetic,
                    "directions_n": n,
                    "evaluations": samples,
                    "var_iid": iid,
                    "var_orthogonal": orth,
                    "ratio": iid / orth,
                    "ratio_se": jackknife_ratio_se(grads["iid"], grads["orthogonal"]),
                    "reduction": iid - orth,
                    "reduction_predicted": predicted,
                    "quadratic_theory": (d + 1) / (d + 2 - n) if antithetic and n <= d else None,
                }
            )
            print(format_row(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'problem':10s} {'d':>4s} {'pairs':>5s} {'n':>4s} {'evals':>5s} {'tr Cov iid':>11s} "
    f"{'tr Cov orth':>11s} {'ratio':>7s} {'± se':>6s} {'Δ/pred':>7s} {'quad.':>7s}"
)


def format_row(row: dict[str, object]) -> str:
    theory = row["quadratic_theory"]
    return (
        f"{row['problem']:10s} {row['d']:4d} {'±' if row['antithetic'] else '+':>5s} "
        f"{row['directions_n']:4d} {row['evaluations']:5d} {row['var_iid']:11.4g} "
        f"{row['var_orthogonal']:11.4g} {row['ratio']:7.3f} {row['ratio_se']:6.3f} "
        f"{row['reduction'] / row['reduction_predicted']:7.3f} "
        f"{'' if theory is None else f'{theory:7.3f}':>7s}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=500, help="estimates per configuration")
    parser.add_argument("--problems", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument(
        "--points-per-call", type=int, default=20_000, help="points evaluated per batch call"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.draws < 2 * GROUPS:
        parser.error(f"--draws must be at least {2 * GROUPS} (jackknife groups); got {args.draws}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    print(HEADER)
    rows = [row for name in args.problems for row in measure(name, args)]
    write_results(
        args.out,
        "orthogonal_variance",
        "tr Cov of the Gaussian-smoothing gradient, i.i.d. / orthogonal directions, equal samples",
        rows,
        draws=args.draws,
        problems=args.problems,
        points_per_call=args.points_per_call,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
