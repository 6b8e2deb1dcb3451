"""What ``vg.detect_sparsity`` finds, and what it costs, on black boxes whose pattern is known.

What is measured
----------------
Synthetic vectorized black boxes F: R^d → R^d (rows ``[N, d]`` → ``[N, d]``,
float32) with a known ``[d, d]`` dependency pattern, probed at a random point
θ ~ U(0, 1)^d with step h = ``--step``:

- ``blur2``, ``blur4``: a banded blur, F_o = Σ_{m<k} x_{(o−m) mod d},
  k = 2 and 4 parameters per output;
- ``random3``: F_o = Σ_{m<3} x_{c(o, m)}, the columns c(o, m) drawn
  uniformly (seeded); a repeated column counts once in the true pattern;
- ``quantized``: ``blur2`` rounded to the probe's step, h · round(F/h): a
  hard-edged output. Each move alone (h to 2h) crosses a step, but two moves
  of one group can cancel below it; probed with ``repeats`` 1, 2 and 3;
- ``quantized-weak``: the same with x_{o−1} weighted ½, h · round((x_o +
  ½ x_{o−1})/h): that dependency alone moves F_o by ½h to h, below a step
  about a quarter of the time, and has to show in every round to be kept.

For every d in ``--dims`` and G in ``--groups`` (default filter rounds and
tolerance), one detection per black box; recorded: the evaluations spent
(counted by the ``vg.Evaluator``, so a refused decoding still says what it
cost; ``idle_probes``: those of the last digit round that moved an empty
group, i.e. evaluated θ itself, as that digit takes fewer than G values), the
dependencies found, the false ones (found, not true), the missed
ones (true, not found), the outputs that never moved, the candidates after
each round, the wall time and the part of it spent in F (the Evaluator's
own timing; the rest is the detector's: building the points, comparing the
outputs, decoding), and the module doc's estimate of the false
dependencies left, Σ_o (k^D − k)(k/G)^filter_rounds. A decoding the detector
refuses (more than ``max_candidates`` candidate pairs: Σ_o k^D grows as
k^⌈log_G d⌉) is recorded as refused, with the evaluations spent before it.
``quantized`` runs at the dims ``--quantized-dims`` only, ``quantized-weak``
at ``--weak-dims``.

Run from the repository root (about 3.5 minutes on one thread; d = 10⁶ takes
4-60 s a detection)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sparsity_detection.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sparsity_detection.py --dims 1000 --groups 32
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from common import write_results

MAX_CANDIDATES = 50_000_000
"""``vg.detect_sparsity``'s default refusal level, recorded with the results."""


@dataclass(frozen=True)
class Box:
    """A black box ``fn`` (rows → rows of outputs), its true pattern as sorted keys o·d + j."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    truth: torch.Tensor
    per_output: int


def blur(d: int, k: int, weights: Sequence[float] | None = None) -> Box:
    """F_o = Σ_{m<k} w_m x_{(o−m) mod d} (w_m = 1 unless given): k neighbours per output."""
    weights = [1.0] * k if weights is None else weights

    def fn(X: torch.Tensor) -> torch.Tensor:
        out = X.mul(weights[0])
        for m in range(1, k):
            out.add_(X.roll(m, 1), alpha=weights[m])
        return out

    outputs = torch.arange(d).repeat_interleave(k)
    columns = (outputs - torch.arange(k).repeat(d)) % d
    return Box(f"blur{k}", fn, torch.unique(outputs * d + columns), k)


def random_pattern(d: int, k: int, seed: int) -> Box:
    """F_o = Σ_{m<k} x_{c(o, m)}, the columns drawn uniformly."""
    generator = torch.Generator().manual_seed(seed)
    columns = torch.randint(0, d, (d, k), generator=generator)

    def fn(X: torch.Tensor) -> torch.Tensor:
        out = X[:, columns[:, 0]]
        for m in range(1, k):
            out.add_(X[:, columns[:, m]])
        return out

    keys = torch.arange(d).unsqueeze(1) * d + columns
    return Box(f"random{k}", fn, torch.unique(keys), k)


def quantized(d: int, step: float, weak: bool) -> Box:
    """``blur2`` (x_{o−1} weighted ½ if ``weak``) rounded to steps of h: h · round(F/h)."""
    inner = blur(d, 2, [1.0, 0.5] if weak else None)

    def fn(X: torch.Tensor) -> torch.Tensor:
        return inner.fn(X).div_(step).round_().mul_(step)

    return Box("quantized-weak" if weak else "quantized", fn, inner.truth, 2)


def found_keys(found: vg.DetectedSparsity) -> torch.Tensor:
    """The detected pattern's dependencies as sorted keys o·d + j (through the public Sᵀ)."""
    transposed = found.pattern.transposed(torch.float32, torch.device("cpu"))
    d = found.pattern.shape[1]
    crow = transposed.crow_indices().long()
    parameters = torch.arange(d).repeat_interleave(crow[1:] - crow[:-1])
    return torch.sort(transposed.col_indices().long() * d + parameters).values


def digit_count(d: int, groups: int) -> int:
    """D = ⌈log_G d⌉, the digit rounds (as ``vg.detect_sparsity`` counts them)."""
    return max(1, math.ceil(math.log(d) / math.log(groups) - 1e-12))


def expected_false(d: int, k: int, groups: int, filter_rounds: int) -> float:
    """The module doc's estimate of the false dependencies left: d (k^D − k)(k/G)^f."""
    return d * (k ** digit_count(d, groups) - k) * (k / groups) ** filter_rounds


def idle_probes(d: int, groups: int, repeats: int) -> int:
    """Probes of the last digit round whose group is empty: evaluations of θ itself.

    The numbers 0 … d − 1 have only ⌊(d − 1)/G^{D−1}⌋ + 1 values of their
    last digit, but the round evaluates all G groups.
    """
    used = (d - 1) // groups ** (digit_count(d, groups) - 1) + 1
    return (groups - used) * repeats


def detect(
    box: Box, d: int, groups: int, repeats: int, step: float, filter_rounds: int, seed: int
) -> dict[str, Any]:
    """One detection of ``box`` at d and G; the counts against its true pattern."""
    theta = torch.rand(d, generator=torch.Generator().manual_seed(seed))
    evaluator = vg.Evaluator(box.fn, backend="vectorized")
    record: dict[str, Any] = {
        "box": box.name,
        "d": d,
        "groups": groups,
        "repeats": repeats,
        "true": int(box.truth.numel()),
        "expected_false": expected_false(d, box.per_output, groups, filter_rounds),
        "idle_probes": idle_probes(d, groups, repeats),
    }
    began = time.perf_counter()
    try:
        found = vg.detect_sparsity(
            evaluator,
            theta,
            step=step,
            groups=groups,
            filter_rounds=filter_rounds,
            repeats=repeats,
            max_candidates=MAX_CANDIDATES,
            seed=seed,
        )
    except ValueError as error:
        if "max_candidates" not in str(error):
            raise
        record.update(
            refused=str(error),
            evaluations=evaluator.stats.evals,
            seconds=time.perf_counter() - began,
            black_box_seconds=evaluator.stats.seconds,
        )
        return record
    seconds = time.perf_counter() - began
    keys = found_keys(found)
    hits = int(torch.isin(keys, box.truth, assume_unique=True).sum())
    record.update(
        refused=None,
        evaluations=found.evaluations,
        found=int(keys.numel()),
        false=int(keys.numel()) - hits,
        missed=int(box.truth.numel()) - hits,
        silent_outputs=found.silent_outputs,
        candidates=list(found.candidates),
        seconds=seconds,
        black_box_seconds=evaluator.stats.seconds,
    )
    return record


def print_record(record: dict[str, Any]) -> None:
    head = (
        f"{record['box']:<14} d {record['d']:>8} G {record['groups']:>4} "
        f"r {record['repeats']}  evals {record['evaluations']:>5} "
        f"(idle {record['idle_probes']:>3})"
    )
    if record["refused"]:
        print(
            f"{head}  refused (max_candidates)  {record['seconds']:6.1f} s "
            f"(F {record['black_box_seconds']:.1f} s)",
            flush=True,
        )
        return
    print(
        f"{head}  true {record['true']:>8} found {record['found']:>8} "
        f"false {record['false']:>6} (expected {record['expected_false']:.3g}) "
        f"missed {record['missed']:>5} silent {record['silent_outputs']:>4}  "
        f"{record['seconds']:6.1f} s (F {record['black_box_seconds']:.1f} s)",
        flush=True,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--groups", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--boxes", nargs="+", default=["blur2", "blur4", "random3"])
    parser.add_argument("--quantized-dims", type=int, nargs="*", default=[1000, 100_000])
    parser.add_argument("--weak-dims", type=int, nargs="*", default=[1000])
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--filter-rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    known = {"blur2", "blur4", "random3"}
    if not set(args.boxes) <= known:
        parser.error(f"--boxes: unknown {sorted(set(args.boxes) - known)}; known {sorted(known)}")
    return args


def make_box(name: str, d: int, seed: int) -> Box:
    return random_pattern(d, 3, seed) if name == "random3" else blur(d, int(name[-1]))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for d in args.dims:
        for name in args.boxes:
            box = make_box(name, d, args.seed)
            for groups in args.groups:
                results.append(detect(box, d, groups, 1, args.step, args.filter_rounds, args.seed))
                print_record(results[-1])
    hard_edged = [(d, False) for d in args.quantized_dims] + [(d, True) for d in args.weak_dims]
    for d, weak in hard_edged:
        box = quantized(d, args.step, weak)
        for groups in args.groups:
            for repeats in args.repeats:
                results.append(
                    detect(box, d, groups, repeats, args.step, args.filter_rounds, args.seed)
                )
                print_record(results[-1])
    write_results(
        args.out,
        "sparsity_detection",
        "evaluations, found / false / missed dependencies and wall time of vg.detect_sparsity "
        "on synthetic black boxes with known patterns",
        results,
        dims=args.dims,
        groups=args.groups,
        boxes=args.boxes,
        quantized_dims=args.quantized_dims,
        weak_dims=args.weak_dims,
        repeats=args.repeats,
        step=args.step,
        filter_rounds=args.filter_rounds,
        max_candidates=MAX_CANDIDATES,
        seed=args.seed,
        threads=args.threads,
    )


if __name__ == "__main__":
    main()
