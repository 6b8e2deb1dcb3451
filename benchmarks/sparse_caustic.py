"""What a detected dependency pattern buys on the caustic problem, at equal evaluations.

What is measured
----------------
``vg.problems.CausticProblem`` (d = 1 024 heightfield control points, a 64 × 64
image) split into a renderer and a loss, loss(x) = image_loss(render(x)):

- **render(x)**: the photon counts N(x) ``[R²]`` (float64), the black box: each
  photon is refracted by the spline surface around it (4 × 4 control points)
  and splatted into one bin, so a bin depends on the control points whose
  photons can land in it;
- **image_loss(N)**: the problem's normalization and loss in torch,
  I = clip(N / q, 0, 1) with q the 99.5 % quantile of N (``torch.quantile``,
  the same linear interpolation as numpy's), then mean (I − I*)² against the
  target image I* (the same normalization of the target's counts). It equals
  ``problem.loss`` (the script checks it at x0 and stops if it does not).

The normalization belongs in the loss: as the problem's own image
(``problem.render``, after it) every pixel depends on q, which depends on all
the counts, so the pattern of the normalized image is denser; the script
detects that pattern too (``--image-groups``), for the figures.

*Detection.* ``vg.detect_sparsity(render, x0, step=h, groups=G)`` on each
seed's start (render is deterministic: the photons sit on a fixed grid);
reported: the evaluations, the nonzeros per output (pixel) and per parameter,
the candidates after each round, and the outputs that never moved. At the
last iterate of the longest sparse run on the first seed, and at x0 with the
next seed, the pattern is detected again (not charged to any run): the share
of each that x0's pattern holds says how reproducible a detection of this
hard-edged renderer is, and how far the dependencies drift as the glass
bends (a dependency missing from the pattern is dropped from the gradient).

*Optimization*, per seed and budget (evaluations), all with the options
``voidgrad bench`` gives ``smoothing`` on caustic
(``voidgrad.bench.method_options``: σ = 0.5 s annealed linearly to 0.05 s over
the run's steps, 8 samples a step, antithetic, importance-sampled kernel, Adam
with lr = 0.05 s, s = ``problem_scale``):

- ``scalar``: what the bench runs, ``vg.minimize(problem.loss, x0,
  method="smoothing")``: smoothing of the scalar loss;
- ``vector``: Adam on image_loss(``vg.blackbox(render,
  vg.GaussianSmoothing(...))``(θ)): the renderer smoothed, its outputs
  credited to every parameter;
- ``sparse``: the same with ``jac_sparsity=`` the detected pattern; the
  detection's evaluations are charged to the run, whose steps (and σ's
  anneal) fit in the budget left.

Answer = the lower of the last iterate's loss (one evaluation outside the
budget) and the best loss among the evaluated points (for ``vector`` and
``sparse``: image_loss of each render, no evaluation), as in
``voidgrad bench``.

Run from the repository root (about 5 minutes on one thread; an evaluation
takes 3-5 ms)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sparse_caustic.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sparse_caustic.py --seeds 0 --budgets 2000
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from common import write_results
from voidgrad.bench import method_options, problem_scale
from voidgrad.problems import CausticProblem
from voidgrad.problems.caustic import QUANTILE

METHODS = ("scalar", "vector", "sparse")
"""The three ways of smoothing the same loss (module doc)."""


class CausticSplit:
    """The caustic problem as render (photon counts, the black box) and image_loss (torch).

    ``render`` takes rows ``[N, d]`` and returns the counts ``[N, R²]``
    (float64, on the rows' device); it remembers the lowest image_loss among
    the rows it rendered (``best``), which costs no evaluation.
    """

    def __init__(self, problem: CausticProblem) -> None:
        self.problem = problem
        self.best = math.inf
        # The counts are the problem's own (its private _counts): the renderer before the
        # normalization, which is differentiable and belongs to the loss.
        self.target = self.normalized(self.counts(problem.x_target.unsqueeze(0)))[0]

    def counts(self, X: torch.Tensor) -> torch.Tensor:
        """N(x) ``[N, R²]`` per row of ``X`` ``[N, d]``, float64 on ``X``'s device."""
        rows = X.detach().to("cpu", torch.float64)
        counts = [torch.from_numpy(self.problem._counts(row.numpy())).reshape(-1) for row in rows]
        return torch.stack(counts).to(device=X.device, dtype=torch.float64)

    def render(self, X: torch.Tensor) -> torch.Tensor:
        """The black box: the counts of each row, with the best image_loss remembered."""
        counts = self.counts(X)
        with torch.no_grad():
            self.best = min(self.best, float(self.image_loss(counts).min()))
        return counts

    @staticmethod
    def normalized(counts: torch.Tensor) -> torch.Tensor:
        """I = clip(N / q, 0, 1), q the 99.5 % quantile of each row (max(N, 1) when q = 0)."""
        scale = torch.quantile(counts, QUANTILE, dim=-1, keepdim=True)
        fallback = counts.amax(-1, keepdim=True).clamp(min=1.0)
        scale = torch.where(scale > 0, scale, fallback)
        return (counts / scale).clamp(0.0, 1.0)

    def image_loss(self, counts: torch.Tensor) -> torch.Tensor:
        """mean (I − I*)² of the counts ``[..., R²]``: the problem's loss, differentiable in N."""
        difference = self.normalized(counts) - self.target.to(counts)
        return difference.pow(2).mean(-1)

    def image(self, X: torch.Tensor) -> torch.Tensor:
        """The problem's normalized image ``[N, R²]`` (``problem.render``, float32): denser."""
        images = [self.problem.render(row).reshape(-1) for row in X.detach().cpu()]
        return torch.stack(images).to(X.device)


def pattern_summary(found: vg.DetectedSparsity) -> dict[str, Any]:
    """The evaluations and the nonzeros per output and per parameter of a detection."""
    pattern = found.pattern
    outputs, d = pattern.shape
    transposed = pattern.transposed(torch.float32, torch.device("cpu"))
    per_parameter = (transposed.crow_indices()[1:] - transposed.crow_indices()[:-1]).double()
    per_output = torch.bincount(transposed.col_indices().long(), minlength=outputs).double()
    return {
        "evaluations": found.evaluations,
        "nnz": pattern.nnz,
        "density": pattern.nnz / (outputs * d),
        "per_output": distribution(per_output),
        "per_parameter": distribution(per_parameter),
        "candidates": list(found.candidates),
        "silent_outputs": found.silent_outputs,
    }


def distribution(counts: torch.Tensor) -> dict[str, float]:
    """Mean, median, 90 % quantile and maximum of ``counts``."""
    return {
        "mean": float(counts.mean()),
        "median": float(counts.median()),
        "p90": float(torch.quantile(counts, 0.9)),
        "max": float(counts.max()),
    }


def detect(
    fn: Any, x: torch.Tensor, step: float, groups: int, repeats: int, seed: int
) -> dict[str, Any]:
    """One detection (or its refusal), timed; the pattern under ``"found"`` when there is one."""
    evaluator = vg.Evaluator(fn, backend="vectorized")
    began = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found = vg.detect_sparsity(
                evaluator, x, step=step, groups=groups, repeats=repeats, seed=seed
            )
    except ValueError as error:
        if "max_candidates" not in str(error):
            raise
        return {
            "step": step,
            "groups": groups,
            "repeats": repeats,
            "refused": str(error),
            "evaluations": evaluator.stats.evals,
            "seconds": time.perf_counter() - began,
        }
    return {
        "step": step,
        "groups": groups,
        "repeats": repeats,
        "refused": None,
        **pattern_summary(found),
        "warnings": [str(w.message) for w in caught],
        "seconds": time.perf_counter() - began,
        "found": found,
    }


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the pattern object (for the JSON)."""
    return {key: value for key, value in record.items() if key != "found"}


def bench_options(problem: CausticProblem, budget: int) -> dict[str, Any]:
    """The bench's smoothing options on ``problem`` for a run of ``budget`` evaluations."""
    return method_options("smoothing", problem_scale(problem), budget, {}, problem.dim)


def run_scalar(problem: CausticProblem, seed: int, budget: int) -> dict[str, Any]:
    """``voidgrad bench``'s smoothing cell: vg.minimize on the scalar loss."""
    began = time.perf_counter()
    result = vg.minimize(
        problem.loss,
        problem.x0.double(),
        method="smoothing",
        budget=budget,
        seed=seed,
        progress=False,
        **bench_options(problem, budget),
    )
    last = problem.loss(result.x_last)
    return {
        "evaluations": result.nevals,
        "best_evaluated": result.fun,
        "last": last,
        "answer": min(result.fun, last),
        "seconds": time.perf_counter() - began,
    }


def run_vector(
    problem: CausticProblem,
    seed: int,
    budget: int,
    detection: dict[str, Any] | None,
) -> dict[str, Any]:
    """Adam on image_loss(smoothed render(θ)), with the detected pattern when given."""
    charged = 0 if detection is None else detection["evaluations"]
    left = budget - charged
    options = bench_options(problem, left)
    split = CausticSplit(problem)
    evaluator = vg.Evaluator(split.render, backend="vectorized", budget=left)
    estimator = vg.GaussianSmoothing(
        options["sigma"],
        options["samples"],
        schedule=options["schedule"],
        jac_sparsity=None if detection is None else detection["found"],
        seed=seed,
    )
    render = vg.blackbox(evaluator, estimator)
    theta = problem.x0.double().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=options["lr"])
    began = time.perf_counter()
    while evaluator.stats.evals + options["samples"] <= left:
        optimizer.zero_grad()
        split.image_loss(render(theta)).backward()
        optimizer.step()
        estimator.step()
    last = problem.loss(theta.detach())
    return {
        "evaluations": charged + evaluator.stats.evals,
        "detection_evaluations": charged,
        "best_evaluated": split.best,
        "last": last,
        "answer": min(split.best, last),
        "seconds": time.perf_counter() - began,
        "x_last": theta.detach(),
    }


def summarize(runs: list[dict[str, Any]], budgets: Sequence[int]) -> list[dict[str, Any]]:
    """Median [min, max] answer per method and budget, over the seeds."""
    rows = []
    for budget in budgets:
        for method in METHODS:
            answers = [r["answer"] for r in runs if r["budget"] == budget and r["method"] == method]
            if answers:
                rows.append(
                    {
                        "budget": budget,
                        "method": method,
                        "seeds": len(answers),
                        "answer_median": statistics.median(answers),
                        "answer_min": min(answers),
                        "answer_max": max(answers),
                    }
                )
    return rows


def print_detection(label: str, record: dict[str, Any]) -> None:
    if record["refused"]:
        print(f"{label}: refused after {record['evaluations']} evaluations", flush=True)
        return
    print(
        f"{label}: {record['evaluations']} evaluations, nnz {record['nnz']} "
        f"({100 * record['density']:.2f} %), per output mean {record['per_output']['mean']:.1f} "
        f"max {record['per_output']['max']:.0f}, per parameter mean "
        f"{record['per_parameter']['mean']:.1f} max {record['per_parameter']['max']:.0f}, "
        f"candidates {record['candidates']}, silent {record['silent_outputs']}, "
        f"{record['seconds']:.1f} s",
        flush=True,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--step", type=float, default=0.01, help="the detection's step h")
    parser.add_argument("--groups", type=int, default=64, help="the detection's groups G")
    parser.add_argument("--repeats", type=int, default=1, help="the detection's repeats")
    parser.add_argument(
        "--image-groups",
        type=int,
        nargs="*",
        default=[64, 1024],
        help="G for detecting the normalized image's pattern on the first seed (figures only)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    detections, image_detections, runs = [], [], []
    drift = None
    for seed in args.seeds:
        problem = CausticProblem(seed=seed)
        split = CausticSplit(problem)
        x0 = problem.x0.double()
        start = problem.loss(x0)
        through_split = float(split.image_loss(split.counts(x0.unsqueeze(0)))[0])
        if not math.isclose(start, through_split, rel_tol=1e-12, abs_tol=0.0):
            raise SystemExit(f"image_loss(render(x0)) = {through_split} != loss(x0) = {start}")
        detection = detect(split.counts, x0, args.step, args.groups, args.repeats, seed)
        detections.append({"seed": seed, "start_loss": start, **public(detection)})
        print_detection(f"seed {seed} counts, G {args.groups}, h {args.step}", detection)
        if seed == args.seeds[0]:
            for groups in args.image_groups:
                image_detections.append(
                    {"seed": seed, **public(detect(split.image, x0, args.step, groups, 1, seed))}
                )
                print_detection(f"seed {seed} normalized image, G {groups}", image_detections[-1])
        for budget in args.budgets:
            for method in args.methods:
                if method == "scalar":
                    outcome = run_scalar(problem, seed, budget)
                else:
                    pattern = detection if method == "sparse" else None
                    if pattern is not None and pattern["refused"]:
                        continue
                    outcome = run_vector(problem, seed, budget, pattern)
                x_last = outcome.pop("x_last", None)
                if (
                    method == "sparse"
                    and seed == args.seeds[0]
                    and budget == max(args.budgets)
                    and x_last is not None
                ):
                    drift = pattern_drift(split, x_last, detection, args)
                runs.append(
                    {"seed": seed, "budget": budget, "method": method, "start": start, **outcome}
                )
                print(
                    f"seed {seed} budget {budget:>5} {method:<6} answer {outcome['answer']:.5f} "
                    f"(best evaluated {outcome['best_evaluated']:.5f}, last "
                    f"{outcome['last']:.5f}), {outcome['seconds']:.0f} s",
                    flush=True,
                )
    summary = summarize(runs, args.budgets)
    for row in summary:
        print(
            f"budget {row['budget']:>5} {row['method']:<6} answer median "
            f"{row['answer_median']:.5f} [{row['answer_min']:.5f}, {row['answer_max']:.5f}] "
            f"({row['seeds']} seeds)"
        )
    write_results(
        args.out,
        "sparse_caustic",
        "the caustic's detected dependency pattern (counts and normalized image) and the best "
        "loss of scalar, vector and sparse-vector Gaussian smoothing at equal evaluations",
        [
            *({"kind": "detection", **record} for record in detections),
            *({"kind": "image_detection", **record} for record in image_detections),
            *([] if drift is None else [{"kind": "drift", **drift}]),
            *({"kind": "run", **record} for record in runs),
            *({"kind": "summary", **record} for record in summary),
        ],
        seeds=args.seeds,
        budgets=args.budgets,
        methods=args.methods,
        step=args.step,
        groups=args.groups,
        repeats=args.repeats,
        image_groups=args.image_groups,
        threads=args.threads,
        bench_options={
            str(budget): {
                key: repr(value) for key, value in bench_options(CausticProblem(0), budget).items()
            }
            for budget in args.budgets
        },
    )


def pattern_drift(
    split: CausticSplit, x_last: torch.Tensor, detection: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """The share of a later detection that x0's pattern holds, at x0 again and at ``x_last``.

    Detected again at x0 with the next seed (other groups and moves), the
    share says how reproducible a detection of this hard-edged renderer is;
    at the last iterate, how far the dependencies drifted beyond that.
    """
    start = dense_pattern(detection)
    shares: dict[str, Any] = {}
    for label, point, seed in (
        ("x0, next seed", split.problem.x0.double(), args.seeds[0] + 1),
        ("last iterate", x_last, args.seeds[0]),
    ):
        later = detect(split.counts, point, args.step, args.groups, args.repeats, seed)
        print_detection(f"pattern at {label}", later)
        if later["refused"]:
            shares[label] = public(later)
            continue
        held = int((start & dense_pattern(later)).sum())
        share = held / max(1, later["nnz"])
        print(f"x0's pattern holds {held} of its {later['nnz']} ({100 * share:.1f} %)", flush=True)
        shares[label] = {**public(later), "held_by_start_pattern": held, "share_held": share}
    return shares


def dense_pattern(detection: dict[str, Any]) -> torch.Tensor:
    """A detection's pattern as a dense bool ``[d, outputs]`` (4 M entries for the caustic)."""
    transposed = detection["found"].pattern.transposed(torch.float32, torch.device("cpu"))
    return transposed.to_dense().bool()


if __name__ == "__main__":
    main()
