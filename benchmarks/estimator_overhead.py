"""Estimator overhead per optimisation step, excluding the black box's own time.

What is measured
----------------
One *step* is the full user-facing path of an optimisation step::

    theta.grad = None                        # not timed (optimizer.zero_grad)
    t0 = perf_counter()
    loss = bb(theta)                         # theta: float32 [d], requires_grad
    t1 = perf_counter()
    loss.backward()
    t2 = perf_counter()

with ``bb = vg.blackbox(fn, estimator, evaluator=vg.Evaluator(fn, backend=...))``.
Everything voidgrad does on that path is included: validating theta, drawing
the perturbations, building the ``[B, M, d]`` points tensor, the Evaluator's
bookkeeping (seed list, per-row output checks, stacking), the autograd
Function, and the vector-Jacobian product in the backward pass.

The black box is trivial (``fn(row) = row[0]`` for the serial backend,
``fn(X) = X[:, 0]`` for the vectorized one), and the seconds spent inside it
are subtracted anyway: the Evaluator times every call of ``fn`` and adds the
times to ``evaluator.stats.seconds``; its increase over the step is removed::

    overhead = (t2 - t0) - (stats.seconds after - stats.seconds before)

So ``overhead`` is what the estimator and the plumbing cost on top of the
black box, the number to compare against an expensive ``fn``'s run time.

Configurations: ``vg.GaussianSmoothing`` (antithetic, importance=True and
importance=False), ``vg.SPSA`` and ``vg.FiniteDifferences`` (central) with
``samples = 8`` evaluations per step (finite differences always needs 2d), at
d = 2, 1 000, 100 000 and 1 000 000, each with the ``serial`` and
``vectorized`` backends. Finite differences is run only for d up to
``--fd-max-dim`` (default 1 000): beyond that its 2d evaluations per step and
its ``[2d, d]`` points tensor (4 * 2d^2 bytes: 80 GB at d = 100 000) are not
feasible; the skipped cases are listed in the output.

Each configuration is warmed up (``--warmup`` steps), then timed for
``--repeats`` steps, or, by default, for as many steps as fit in
``--target-seconds`` (between ``--min-repeats`` and ``--max-repeats``), so that
the large d cases take fewer repetitions and the whole run stays well under a
minute on two cores per ``--threads`` value.

Reported per configuration: the median and the 10th / 90th percentiles of the
overhead per step, plus the medians of its forward and backward parts, of the
time inside ``fn`` and of the minor page faults per step (``getrusage``; a
large tensor allocated anew each step is mapped afresh and faulted in page by
page, which at d = 1e6 is a large share of the overhead).
``torch.set_num_threads`` is set from ``--threads`` (default 1, as evaluation
workers run; ``--threads 1 2`` measures both).

Run from the repository root::

    .venv/bin/python benchmarks/estimator_overhead.py
    .venv/bin/python benchmarks/estimator_overhead.py --threads 1 2 --dims 2 1000

The table goes to stdout, the numbers and metadata (torch version, threads,
platform, date) to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import voidgrad as vg
from common import run_metadata

DEFAULT_DIMS: tuple[int, ...] = (2, 1_000, 100_000, 1_000_000)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "estimator_overhead.json"
SAMPLES = 8
BACKENDS: tuple[str, ...] = ("serial", "vectorized")


@dataclass(frozen=True)
class EstimatorSpec:
    """A named estimator configuration; ``make`` builds a fresh, seeded instance."""

    name: str
    make: Callable[[], vg.BlackBoxEstimator]
    #: Evaluations per step as a function of d.
    evals: Callable[[int], int]
    #: Whether the estimator needs O(d) evaluations (finite differences).
    per_dimension: bool = False


ESTIMATORS: tuple[EstimatorSpec, ...] = (
    EstimatorSpec(
        "GaussianSmoothing(importance=True)",
        lambda: vg.GaussianSmoothing(
            sigma=0.1, samples=SAMPLES, antithetic=True, importance=True, seed=0
        ),
        lambda d: SAMPLES,
    ),
    EstimatorSpec(
        "GaussianSmoothing(importance=False)",
        lambda: vg.GaussianSmoothing(
            sigma=0.1, samples=SAMPLES, antithetic=True, importance=False, seed=0
        ),
        lambda d: SAMPLES,
    ),
    EstimatorSpec(
        "SPSA",
        lambda: vg.SPSA(c=0.1, samples=SAMPLES, seed=0),
        lambda d: SAMPLES,
    ),
    EstimatorSpec(
        "FiniteDifferences(central)",
        lambda: vg.FiniteDifferences(h=1e-3, scheme="central", seed=0),
        lambda d: 2 * d,
        per_dimension=True,
    ),
)


def serial_fn(row: torch.Tensor) -> torch.Tensor:
    """The trivial black box for the serial backend: one row ``[d]`` to a scalar."""
    return row[0]


def vectorized_fn(X: torch.Tensor) -> torch.Tensor:
    """The trivial black box for the vectorized backend: ``[n, d]`` to ``[n]``."""
    return X[:, 0]


@dataclass
class StepTimes:
    """Per-step timings in seconds, one entry per timed step."""

    overhead: list[float] = field(default_factory=list)
    forward_overhead: list[float] = field(default_factory=list)
    backward: list[float] = field(default_factory=list)
    fn: list[float] = field(default_factory=list)
    page_faults: list[int] = field(default_factory=list)


@dataclass
class Result:
    """The summary of one (estimator, backend, d, threads) configuration, in milliseconds."""

    estimator: str
    backend: str
    d: int
    threads: int
    evals_per_step: int
    repeats: int
    warmup: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    forward_median_ms: float
    backward_median_ms: float
    fn_median_ms: float
    page_faults_median: float


def one_step(
    bb: vg.BlackBox, theta: torch.Tensor, evaluator: vg.Evaluator
) -> tuple[float, float, float, int]:
    """Run one step; return (forward wall, backward wall, seconds inside fn, page faults).

    Page faults are the process's minor faults during the step (first touches
    of freshly mapped memory: large tensors allocated anew each step), read
    outside the timed region.
    """
    theta.grad = None
    fn_before = evaluator.stats.seconds
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    loss = bb(theta)
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
    fn_seconds = evaluator.stats.seconds - fn_before
    if theta.grad is None:  # pragma: no cover - a broken estimator, not a timing
        raise RuntimeError("backward produced no gradient")
    return t1 - t0, t2 - t1, fn_seconds, faults


def choose_repeats(
    step_seconds: float, target_seconds: float, min_repeats: int, max_repeats: int
) -> int:
    """As many steps as fit in ``target_seconds``, clamped to [min_repeats, max_repeats]."""
    if step_seconds <= 0:
        return max_repeats
    return max(min_repeats, min(max_repeats, math.ceil(target_seconds / step_seconds)))


def measure(
    spec: EstimatorSpec,
    backend: str,
    d: int,
    threads: int,
    *,
    warmup: int,
    repeats: int | None,
    target_seconds: float,
    min_repeats: int,
    max_repeats: int,
) -> Result:
    """Time ``repeats`` steps of one configuration after ``warmup`` untimed ones."""
    fn = serial_fn if backend == "serial" else vectorized_fn
    evaluator = vg.Evaluator(fn, backend=backend)
    bb = vg.blackbox(fn, spec.make(), evaluator=evaluator)
    generator = torch.Generator().manual_seed(d)
    theta = (0.1 * torch.randn(d, generator=generator)).requires_grad_(True)

    gc.collect()
    warm_times = [sum(one_step(bb, theta, evaluator)[:2]) for _ in range(max(1, warmup))]
    if repeats is None:
        repeats = choose_repeats(
            float(np.median(warm_times)), target_seconds, min_repeats, max_repeats
        )

    times = StepTimes()
    for _ in range(repeats):
        forward, backward, fn_seconds, faults = one_step(bb, theta, evaluator)
        times.overhead.append(forward + backward - fn_seconds)
        times.forward_overhead.append(forward - fn_seconds)
        times.backward.append(backward)
        times.fn.append(fn_seconds)
        times.page_faults.append(faults)

    overhead = np.asarray(times.overhead) * 1e3
    return Result(
        estimator=spec.name,
        backend=backend,
        d=d,
        threads=threads,
        evals_per_step=spec.evals(d),
        repeats=repeats,
        warmup=max(1, warmup),
        median_ms=float(np.median(overhead)),
        p10_ms=float(np.percentile(overhead, 10)),
        p90_ms=float(np.percentile(overhead, 90)),
        mean_ms=float(overhead.mean()),
        min_ms=float(overhead.min()),
        forward_median_ms=float(np.median(times.forward_overhead) * 1e3),
        backward_median_ms=float(np.median(times.backward) * 1e3),
        fn_median_ms=float(np.median(times.fn) * 1e3),
        page_faults_median=float(np.median(times.page_faults)),
    )


def format_table(results: Sequence[Result]) -> str:
    """A fixed-width table of the results."""
    header = (
        f"{'estimator':<36} {'backend':<10} {'d':>9} {'evals':>6} {'reps':>5} "
        f"{'median ms':>10} {'p10':>9} {'p90':>9} {'fwd ms':>9} {'bwd ms':>8} {'fn ms':>8} "
        f"{'faults':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.estimator:<36} {r.backend:<10} {r.d:>9,} {r.evals_per_step:>6,} {r.repeats:>5} "
            f"{r.median_ms:>10.3f} {r.p10_ms:>9.3f} {r.p90_ms:>9.3f} "
            f"{r.forward_median_ms:>9.3f} {r.backward_median_ms:>8.3f} {r.fn_median_ms:>8.3f} "
            f"{r.page_faults_median:>7.0f}{' *' if is_noisy(r) else ''}"
        )
    if any(is_noisy(r) for r in results):
        lines.append(
            "* noisy: p90 > 2 x p10 (often other processes competing for the cores); re-run"
        )
    return "\n".join(lines)


def is_noisy(result: Result) -> bool:
    """Whether the spread suggests interference rather than the code's own cost."""
    return result.p90_ms > 2 * result.p10_ms


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    """What the numbers depend on: versions, threads, machine, date, settings."""
    return run_metadata(
        "estimator_overhead",
        "wall time of loss = bb(theta); loss.backward() minus the seconds inside fn "
        "(evaluator.stats.seconds delta), per step",
        threads=list(args.threads),
        samples=SAMPLES,
        dtype="float32",
        dims=list(args.dims),
        backends=list(args.backends),
        warmup=args.warmup,
        repeats=args.repeats,
        target_seconds=args.target_seconds,
        min_repeats=args.min_repeats,
        max_repeats=args.max_repeats,
        fd_max_dim=args.fd_max_dim,
        black_box={"serial": "fn(row) = row[0]", "vectorized": "fn(X) = X[:, 0]"},
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Estimator overhead per optimisation step (bb(theta) + backward), "
            "excluding the black box's own time."
        )
    )
    parser.add_argument(
        "--dims",
        type=int,
        nargs="+",
        default=list(DEFAULT_DIMS),
        help="parameter dimensions d (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=(
            "timed steps per configuration; by default as many as fit in --target-seconds, "
            "between --min-repeats and --max-repeats"
        ),
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch.set_num_threads values to measure with (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="JSON output path (default: benchmarks/results/estimator_overhead.json)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="Evaluator backends (default: both)",
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps first (default: %(default)s)"
    )
    parser.add_argument(
        "--target-seconds",
        type=float,
        default=1.5,
        help="timed seconds per configuration without --repeats (default: %(default)s)",
    )
    parser.add_argument("--min-repeats", type=int, default=10, help="(default: %(default)s)")
    parser.add_argument("--max-repeats", type=int, default=300, help="(default: %(default)s)")
    parser.add_argument(
        "--fd-max-dim",
        type=int,
        default=1_000,
        help="largest d for FiniteDifferences, which needs 2d evaluations (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if any(d < 1 for d in args.dims):
        parser.error("--dims must be positive")
    if any(t < 1 for t in args.threads):
        parser.error("--threads must be positive")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be positive")
    if args.min_repeats < 1 or args.max_repeats < args.min_repeats:
        parser.error("need 1 <= --min-repeats <= --max-repeats")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    results: list[Result] = []
    skipped: list[dict[str, Any]] = []
    started = time.perf_counter()
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(
            f"\n== torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
            f"samples={SAMPLES}, float32; overhead = step wall time - time inside fn =="
        )
        block: list[Result] = []
        for d in args.dims:
            for spec in ESTIMATORS:
                if spec.per_dimension and d > args.fd_max_dim:
                    if threads == args.threads[0]:
                        gigabytes = 4 * 2 * d * d / 1e9
                        skipped.append(
                            {
                                "estimator": spec.name,
                                "d": d,
                                "reason": (
                                    f"needs 2d = {2 * d:,} evaluations per step and a "
                                    f"[{2 * d:,}, {d:,}] float32 points tensor "
                                    f"({gigabytes:,.1f} GB); run only for d <= "
                                    f"{args.fd_max_dim:,} (--fd-max-dim)"
                                ),
                            }
                        )
                    continue
                for backend in args.backends:
                    result = measure(
                        spec,
                        backend,
                        d,
                        threads,
                        warmup=args.warmup,
                        repeats=args.repeats,
                        target_seconds=args.target_seconds,
                        min_repeats=args.min_repeats,
                        max_repeats=args.max_repeats,
                    )
                    block.append(result)
                    print(
                        f"  {spec.name:<36} {backend:<10} d={d:<9,} "
                        f"median {result.median_ms:9.3f} ms",
                        flush=True,
                    )
        results.extend(block)
        print()
        print(format_table(block))

    if skipped:
        print("\nNot run:")
        for entry in skipped:
            print(f"  {entry['estimator']} at d={entry['d']:,}: {entry['reason']}")
    elapsed = time.perf_counter() - started
    print(
        "\nms per step; fwd = forward overhead (bb(theta) minus fn), bwd = loss.backward(), "
        "fn = time inside the black box (excluded from median/p10/p90), faults = minor "
        "page faults per step (medians)."
    )
    print(f"Total benchmark time: {elapsed:.1f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = metadata(args)
    meta["total_seconds"] = elapsed
    payload = {
        "metadata": meta,
        "results": [{**asdict(r), "noisy": is_noisy(r)} for r in results],
        "skipped": skipped,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
