"""Gradient variance of each unbiased estimator relative to plain REINFORCE, at equal evaluations.

What is measured
----------------
Two problems with exact gradients:

- ``bits``: E_{b~Bernoulli(σ(l))}[f(b)], 3 bits, l = (0.3, −1, 0.8),
  f(b) = (w·b − 0.3)² + b₀b₂ + 5, w = (1, −2, 0.5) (the test suite's case;
  the offset 5 is what baselines remove);
- ``toy``: the RELAX toy E[(b − 0.499)²] at θ = 0.

For each estimator, K = ``--draws`` independent gradient estimates (one
vectorized call, K independent expectations), each spending ``--evals``
evaluations of f (REBAR: 3 per sample, so ⌊evals/3⌋ samples; DisARM: evals/2
pairs). Reported per estimator: total variance Σ_d Var(ĝ_d), its ratio to
REINFORCE's, and the largest |mean − exact| in standard errors (a bias check).
Learned controls (RELAX) are first trained for ``--train-steps`` calls on
batches of 32 at the same parameters, then frozen for the measurement.

Run from the repository root::

    .venv/bin/python benchmarks/variance_ratios.py
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Bernoulli

import voidgrad as vg
from common import write_results

WEIGHTS = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def bits_cost(b: torch.Tensor) -> torch.Tensor:
    return (b @ WEIGHTS - 0.3) ** 2 + b[..., 0] * b[..., 2] + 5.0


def toy_cost(b: torch.Tensor) -> torch.Tensor:
    return (b[..., 0] - 0.499) ** 2


PROBLEMS: dict[str, tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]] = {
    "bits": (torch.tensor([0.3, -1.0, 0.8], dtype=torch.float64), bits_cost),
    "toy": (torch.zeros(1, dtype=torch.float64), toy_cost),
}


def exact_gradient(logits: torch.Tensor, f) -> torch.Tensor:
    logits = logits.clone().requires_grad_(True)
    states = torch.tensor(
        list(itertools.product([0.0, 1.0], repeat=logits.numel())), dtype=torch.float64
    )
    probs = Bernoulli(logits=logits).log_prob(states).sum(-1).exp()
    (grad,) = torch.autograd.grad((probs * f(states)).sum(), logits)
    return grad


class Control(nn.Module):
    """RELAX's control: an MLP of σ(z) with 10 tanh units."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 10), nn.Tanh(), nn.Linear(10, 1)).double()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.sigmoid(z)).squeeze(-1)


def estimates(estimator, logits: torch.Tensor, f, samples: int, K: int) -> torch.Tensor:
    batch = logits.expand(K, -1).clone().requires_grad_(True)
    vg.expectation(f, Bernoulli(logits=batch), samples, estimator).sum().backward()
    return batch.grad


def estimators(d: int, evals: int, seed: int) -> dict[str, tuple[object, int]]:
    """name -> (estimator, samples) spending ``evals`` evaluations per estimate."""
    return {
        "reinforce": (vg.ScoreFunction(seed=seed), evals),
        "reinforce+loo": (vg.ScoreFunction("leave_one_out", seed=seed), evals),
        "disarm": (vg.DisARM(seed=seed), evals),
        "rebar": (vg.REBAR(seed=seed), max(1, evals // 3)),
        "relax": (vg.RELAX(Control(d), seed=seed), evals),
        "relax+relaxed_f": (vg.RELAX(Control(d), relaxed_f=True, seed=seed), max(1, evals // 3)),
    }


def measure(problem: str, args: argparse.Namespace) -> list[dict[str, float | str]]:
    logits, f = PROBLEMS[problem]
    truth = exact_gradient(logits, f)
    torch.manual_seed(args.seed)
    rows = []
    for name, (estimator, samples) in estimators(logits.numel(), args.evals, args.seed).items():
        if isinstance(estimator, vg.RELAX):
            for _ in range(args.train_steps):
                estimates(estimator, logits, f, samples, 32)
            estimator.train_control = False
        grads = estimates(estimator, logits, f, samples, args.draws)
        variance = float(grads.var(0).sum())
        se = grads.std(0) / args.draws**0.5
        rows.append(
            {
                "problem": problem,
                "estimator": name,
                "samples": samples,
                "total_variance": variance,
                "max_bias_in_se": float(((grads.mean(0) - truth).abs() / se).max()),
            }
        )
    reference = rows[0]["total_variance"]
    for row in rows:
        row["ratio_to_reinforce"] = float(row["total_variance"]) / float(reference)
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evals", type=int, default=6, help="evaluations per estimate")
    parser.add_argument("--draws", type=int, default=20_000)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    rows = [row for problem in PROBLEMS for row in measure(problem, args)]
    print(
        f"{'problem':8s} {'estimator':16s} {'N':>3s} {'Σ Var':>11s} {'ratio':>9s} {'bias/se':>8s}"
    )
    for row in rows:
        print(
            f"{row['problem']:8s} {row['estimator']:16s} {row['samples']:3d} "
            f"{row['total_variance']:11.4g} {row['ratio_to_reinforce']:9.3g} "
            f"{row['max_bias_in_se']:8.2f}"
        )
    write_results(
        args.out,
        "variance_ratios",
        "total gradient variance of each estimator / REINFORCE's at equal evaluations",
        evals=args.evals,
        draws=args.draws,
        train_steps=args.train_steps,
        seed=args.seed,
        results=rows,
    )


if __name__ == "__main__":
    main()
