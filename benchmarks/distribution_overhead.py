"""Per-step overhead of each distributional estimator, excluding the cost function's own time.

What is measured
----------------
One step through the public API, as a training loop runs it::

    logits.grad = None                                   # not timed
    t0 = perf_counter()
    loss = vg.expectation(evaluator, dist, samples=16, estimator=estimator)
    loss.sum().backward()
    t1 = perf_counter()
    overhead = (t1 - t0) - (seconds inside f during the step)

``dist`` is built inside the timed region from ``logits`` (``[B, D]`` leaf,
float32): ``Bernoulli(logits)`` for the discrete estimators,
``Normal(logits, 1)`` for the continuous ones. f is a vectorized, cheap
differentiable cost (``(x - 0.45)² summed over D``) so that every estimator
can use it; the Evaluator times every call (``evaluator.stats.seconds``) and
that time is subtracted, so the figure is what the estimator adds on top of
the black box: sampling, the conditional samples, the control variate's
forward and double-backward pass and its optimizer step (RELAX, LAX, REBAR),
surrogate construction and backward.

REBAR evaluates f three times per sample (3N evaluations), the others N.
Controls for RELAX and LAX: an MLP D → 64 → 1 with tanh.

Configurations: D = 200 latents in one expectation (B = 1, the VAE-like
case) and B = 64 independent expectations of D = 200 (a mini-batch).
Reported: median and p10/p90 over ``--repeats`` steps after ``--warmup``.

Run from the repository root::

    .venv/bin/python benchmarks/distribution_overhead.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Normal

import voidgrad as vg
from common import write_results

SAMPLES = 16


def cost(x: torch.Tensor) -> torch.Tensor:
    return ((x - 0.45) ** 2).sum(-1)


def mlp(d: int) -> nn.Module:
    class Control(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 1))

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.net(z).squeeze(-1)

    return Control()


def configurations(d: int) -> dict[str, tuple[Callable[[], vg.DistributionEstimator], str]]:
    """name -> (estimator factory, 'discrete' or 'continuous')."""
    return {
        "score": (lambda: vg.ScoreFunction(seed=0), "discrete"),
        "score+loo": (lambda: vg.ScoreFunction("leave_one_out", seed=0), "discrete"),
        "score+learned": (
            lambda: vg.ScoreFunction(vg.baselines.Learned(nn.Linear(d, 1)), seed=0),
            "discrete",
        ),
        "gumbel_softmax": (lambda: vg.GumbelSoftmax(0.5, seed=0), "discrete"),
        "gumbel_st": (lambda: vg.GumbelSoftmax(0.5, hard=True, seed=0), "discrete"),
        "straight_through": (lambda: vg.StraightThrough(seed=0), "discrete"),
        "disarm": (lambda: vg.DisARM(seed=0), "discrete"),
        "rebar": (lambda: vg.REBAR(seed=0), "discrete"),
        "relax": (lambda: vg.RELAX(mlp(d), seed=0), "discrete"),
        "relax+relaxed_f": (lambda: vg.RELAX(mlp(d), relaxed_f=True, seed=0), "discrete"),
        "pathwise": (lambda: vg.Pathwise(seed=0), "continuous"),
        "score(normal)": (lambda: vg.ScoreFunction("leave_one_out", seed=0), "continuous"),
        "lax": (lambda: vg.LAX(mlp(d), seed=0), "continuous"),
    }


def make_dist(kind: str, logits: torch.Tensor) -> Distribution:
    return Bernoulli(logits=logits) if kind == "discrete" else Normal(logits, 1.0)


def measure(
    make: Callable[[], vg.DistributionEstimator], kind: str, B: int, d: int, args
) -> dict[str, float]:
    estimator = make()
    evaluator = vg.Evaluator(cost, backend="vectorized")
    logits = torch.zeros(B, d, requires_grad=True)
    times = []
    for step in range(args.warmup + args.repeats):
        logits.grad = None
        before = evaluator.stats.seconds
        start = time.perf_counter()
        loss = vg.expectation(evaluator, make_dist(kind, logits), SAMPLES, estimator)
        loss.sum().backward()
        elapsed = time.perf_counter() - start
        if step >= args.warmup:
            times.append(1e3 * (elapsed - (evaluator.stats.seconds - before)))
    deciles = statistics.quantiles(times, n=10)
    return {
        "median_ms": statistics.median(times),
        "p10_ms": deciles[0],
        "p90_ms": deciles[-1],
        "evals_per_step": evaluator.stats.evals / (args.warmup + args.repeats),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=200, help="latents per expectation, D")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="values of B")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for name, (make, kind) in configurations(args.dim).items():
        for B in args.batches:
            row = {
                "estimator": name,
                "B": B,
                "D": args.dim,
                **measure(make, kind, B, args.dim, args),
            }
            results.append(row)
            print(
                f"{name:18s} B={B:<3d} median {row['median_ms']:7.2f} ms "
                f"(p10 {row['p10_ms']:.2f}, p90 {row['p90_ms']:.2f}), "
                f"{row['evals_per_step']:.0f} evaluations/step",
                flush=True,
            )
    write_results(
        args.out,
        "distribution_overhead",
        "wall time of vg.expectation(...) + backward per step minus the seconds inside f",
        samples=SAMPLES,
        dim=args.dim,
        batches=args.batches,
        warmup=args.warmup,
        repeats=args.repeats,
        dtype="float32",
        results=results,
    )


if __name__ == "__main__":
    main()
