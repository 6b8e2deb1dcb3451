"""Guided smoothing with a ZeroGrads surrogate's ∇h as the guide (issue 23, target (c)).

What is measured
----------------
On ``caustic`` (d = 1 024) and ``digits_mlp`` (d = 35 152), per seed (the
seed fixes the problem instance, its start and every method's random
stream), at an equal budget of evaluations, the bench's answer
(``voidgrad.bench.run_cell``): the lower of the final iterate's loss (one
evaluation outside the budget) and the best evaluated loss; the final
iterate's loss is recorded too. Methods:

- ``smoothing``: plain Gaussian smoothing, ``GaussianSmoothing(importance=False)``,
  antithetic, the bench's ``smoothing`` options;
- ``zerograds``: Adam on the guide alone, ZeroGrads' own biased estimate
  ∇h(θ) (``unbiased=False``), the bench's ``zerograds`` options; the
  surrogate is fitted on its own samples;
- ``guided-0.5`` and ``guided-adaptive``: ``GuidedSmoothing(subspace=1)``
  with α = 0.5, or ``adapt=True`` from α = 1 (``memory=0.9``, floor 0.05),
  the guide ``ZeroGrads.as_guide()`` of a surrogate fitted on the guided
  run's own evaluations (``Evaluator.add_listener(zerograds.observe)``): no
  evaluation beyond the guided run's.

Shared by every method (s = ``voidgrad.bench.problem_scale``, T = budget //
samples steps): ``samples`` evaluations a step (8), Adam with lr = 0.05 s
decayed linearly to ``--lr-decay`` (0.01) times that over T steps
(``voidgrad.bench.LinearLrDecay``), σ = 0.5 s annealed linearly to 0.05 s
over T steps (``LinearAnneal``, the ``schedule`` of every estimator, the
guide surrogate's too: the run's callback advances it with each step). Both
surrogates (the one ``zerograds`` follows and the guide's) are
``vg.ZeroGrads``' defaults otherwise: a 3 × 64 leaky-ReLU MLP (rank-32
first layer above 4 096 inputs), moving frame, standardized targets, 3 Adam
fits a step at lr 1e-3, no replay, seeded with the run's seed (the same
initial network).

With ``--alignment-pairs M`` the guided runs also measure how well the
guide points, at steps T/4, T/2, 3T/4 and T, outside the budget (the
problem's loss called directly, never the run's evaluator, with its own
random stream, so the run itself is unchanged): two independent plain
smoothing estimates r₁, r₂ of ∇Q_σ(θ) with M antithetic pairs each at the
run's current σ, and the guide vector g there; since the estimates' errors
are independent of each other and of g, cos(r₁, r₂) ≈ c² and
cos(g, r_k) ≈ c·cos(g, ∇Q_σ), c the estimates' own cosine to ∇Q_σ, so

    cos(g, ∇Q_σ) ≈ mean_k cos(g, r_k) / √cos(r₁, r₂),

whose square is the share of ‖∇Q_σ‖² along the guide (for r = 1, the ρ
that ``adapt`` estimates).

Printed: per problem and method, median [min, max] over seeds of the
answer, the median final iterate's loss, and the seeds on which each guided
variant beats both baselines. Written: the per-seed records to
``--out``/guided_zerograds.json.

Run from the repository root (about 20 minutes on one thread at the
defaults)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/guided_zerograds.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/guided_zerograds.py --problems caustic \\
        --seeds 3 --caustic-budget 1000
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
from voidgrad.bench import method_options, problem_scale

METHODS = ("smoothing", "zerograds", "guided-0.5", "guided-adaptive")
GUIDED = {
    "guided-0.5": {"alpha": 0.5},
    "guided-adaptive": {"alpha": 1.0, "adapt": True, "memory": 0.9},
}


def smoothing_estimate(
    loss: Any, theta: torch.Tensor, sigma: float, pairs: int, generator: torch.Generator
) -> torch.Tensor:
    """Plain antithetic smoothing's ∇Q_σ(θ) from ``pairs`` pairs, 256 pairs at a time."""
    total = torch.zeros_like(theta)
    for start in range(0, pairs, 256):
        n = min(256, pairs - start)
        u = torch.randn(n, theta.numel(), generator=generator, dtype=theta.dtype)
        u = u.to(theta.device)  # drawn on the CPU: the same directions on any device
        difference = loss(theta + sigma * u) - loss(theta - sigma * u)
        total += difference.to(theta.dtype) @ u
    return total / (2 * sigma * pairs)


def alignment(
    loss: Any, theta: torch.Tensor, sigma: float, guide: torch.Tensor, pairs: int, seed: int
) -> dict[str, float]:
    """cos(g, ∇Q_σ) estimated from two independent smoothing estimates (module doc)."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    first, second = (smoothing_estimate(loss, theta, sigma, pairs, generator) for _ in range(2))
    cosine = torch.nn.functional.cosine_similarity
    between = float(cosine(first, second, dim=0))
    to_guide = 0.5 * float(cosine(guide, first, dim=0) + cosine(guide, second, dim=0))
    return {
        "estimates_cosine": between,
        "guide_cosine_to_estimates": to_guide,
        "guide_cosine": to_guide / between**0.5 if between > 0 else float("nan"),
    }


def run(
    name: str,
    method: str,
    seed: int,
    budget: int,
    samples: int,
    lr_decay: float,
    alignment_pairs: int = 0,
) -> dict[str, Any]:
    """One run of ``method`` on problem ``name`` (instance ``seed``); the bench's answer."""
    problem = problems.make(name, seed=seed)
    x0 = problem.x0.double()
    scale = problem_scale(problem)
    common = {"samples": samples, "lr_decay": lr_decay}
    if method == "zerograds":
        options = method_options("zerograds", scale, budget, {**common, "unbiased": False})
    else:
        options = method_options("smoothing", scale, budget, {**common, "importance": False})
    shares: list[float] = []
    alignments: list[dict[str, float]] = []
    steps = budget // samples
    checkpoints = {max(1, steps * k // 4) for k in range(1, 5)}
    evaluator = vg.Evaluator(problem.loss_batch, backend="vectorized", seed=seed)
    callback = None
    if method in GUIDED:
        # The guide surrogate reads its inputs at the guided run's σ (its moving frame's
        # scale): the same schedule, advanced with each step.
        surrogate = vg.ZeroGrads(
            sigma=options["sigma"],
            samples=samples,
            unbiased=False,
            schedule=options["schedule"],
            seed=seed,
        )
        evaluator.add_listener(surrogate.observe)
        options.update(GUIDED[method], method="guided", guide=surrogate.as_guide())
        options.pop("importance")

        def callback(record: Any, state: Any) -> None:
            surrogate.step()
            estimator = state.algorithm.estimator
            if estimator.share is not None:
                shares.append(estimator.share)
            if alignment_pairs and record.step in checkpoints:
                theta = state.algorithm.theta.detach()
                guide = surrogate.as_guide()(theta)
                alignments.append(
                    {
                        "step": record.step,
                        **alignment(
                            problem.loss_batch,
                            theta,
                            estimator.sigma,
                            guide,
                            alignment_pairs,
                            seed,
                        ),
                    }
                )

    else:
        options["method"] = method
    start = time.perf_counter()
    result = vg.minimize(
        evaluator,
        x0,
        budget=budget,
        seed=seed,
        progress=False,
        callback=callback,
        **options,
    )
    seconds = time.perf_counter() - start
    last = problem.loss(result.x_last)  # scoring, outside the budget
    return {
        "problem": name,
        "dim": problem.dim,
        "method": method,
        "seed": seed,
        "budget": budget,
        "scale": scale,
        "start_loss": problem.loss(x0),
        "nevals": result.nevals,
        "steps": result.nsteps,
        "fun": result.fun,
        "last": last,
        "answer": min(result.fun, last),
        "mean_share": statistics.fmean(shares) if shares else None,
        "alignment": alignments,
        "seconds": seconds,
    }


def spread(values: list[float]) -> str:
    """median [min, max]."""
    return f"{statistics.median(values):.4g} [{min(values):.4g}, {max(values):.4g}]"


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per problem and method: medians, ranges, and the seeds a guided run beats both baselines."""
    summary = []
    for name in dict.fromkeys(r["problem"] for r in rows):
        by = {
            m: {r["seed"]: r for r in rows if r["problem"] == name and r["method"] == m}
            for m in METHODS
        }
        for method, runs in by.items():
            if not runs:
                continue
            answers = [r["answer"] for r in runs.values()]
            entry: dict[str, Any] = {
                "problem": name,
                "method": method,
                "seeds": len(runs),
                "answer_median": statistics.median(answers),
                "answer_min": min(answers),
                "answer_max": max(answers),
                "last_median": statistics.median(r["last"] for r in runs.values()),
                "seconds_median": statistics.median(r["seconds"] for r in runs.values()),
            }
            if method in GUIDED and by["smoothing"] and by["zerograds"]:
                entry["beats_both_seeds"] = sum(
                    run["answer"] < by["smoothing"][seed]["answer"]
                    and run["answer"] < by["zerograds"][seed]["answer"]
                    for seed, run in runs.items()
                    if seed in by["smoothing"] and seed in by["zerograds"]
                )
            summary.append(entry)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=["caustic", "digits_mlp"])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 … n−1")
    parser.add_argument("--caustic-budget", type=int, default=4000)
    parser.add_argument("--digits-budget", type=int, default=4000)
    parser.add_argument("--samples", type=int, default=8, help="evaluations a step, every method")
    parser.add_argument("--lr-decay", type=float, default=0.01, help="final lr / initial lr")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--alignment-pairs",
        type=int,
        default=0,
        help="pairs of each reference estimate of the guide's alignment (0: not measured)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    budgets = {"caustic": args.caustic_budget, "digits_mlp": args.digits_budget}
    rows = []
    for name in args.problems:
        for seed in range(args.seeds):
            for method in args.methods:
                row = run(
                    name,
                    method,
                    seed,
                    budgets[name],
                    args.samples,
                    args.lr_decay,
                    args.alignment_pairs if method in GUIDED else 0,
                )
                rows.append(row)
                print(
                    f"{name:10s} seed {seed} {method:16s} answer {row['answer']:.4g} "
                    f"last {row['last']:.4g} ({row['seconds']:.0f} s)"
                    + "".join(
                        f"  cos(g, ∇Q) at step {a['step']}: {a['guide_cosine']:.3f}"
                        for a in row["alignment"]
                    ),
                    flush=True,
                )
    summary = summarize(rows)
    print(f"\n{'problem':10s} {'method':16s} {'answer: median [min, max]':34s} last (median)")
    for entry in summary:
        runs = [
            r for r in rows if r["problem"] == entry["problem"] and r["method"] == entry["method"]
        ]
        beats = entry.get("beats_both_seeds")
        print(
            f"{entry['problem']:10s} {entry['method']:16s} "
            f"{spread([r['answer'] for r in runs]):34s} {entry['last_median']:.4g}"
            + ("" if beats is None else f"  beats both on {beats}/{entry['seeds']} seeds")
        )
    write_results(
        args.out,
        "guided_zerograds",
        "bench answer at equal evaluations: plain smoothing, Adam on ZeroGrads' biased ∇h, "
        "guided smoothing with the ∇h of a surrogate fitted on the guided run's evaluations",
        [
            {**entry, "runs": [r for r in rows if (r["problem"], r["method"]) == key]}
            for entry in summary
            for key in [(entry["problem"], entry["method"])]
        ],
        seeds=args.seeds,
        budgets={name: budgets[name] for name in args.problems},
        samples=args.samples,
        lr_decay=args.lr_decay,
        alignment_pairs=args.alignment_pairs,
        sigma="0.5 s annealed linearly to 0.05 s over budget // samples steps",
        lr="0.05 s, decayed linearly to lr_decay times that",
    )


if __name__ == "__main__":
    main()
