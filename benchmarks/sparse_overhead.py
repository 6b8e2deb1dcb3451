"""Sparse smoothing's per-step overhead and peak memory at d = 10⁵ to 10⁷.

What is measured
----------------
One estimate of ``vg.GaussianSmoothing(σ, samples)`` (ask → values → tell →
VJP) on a black box whose output is its input (``F(x) = x``, d outputs, cost
nil, so the time is the estimator's own), with and without ``jac_sparsity``
(a banded pattern: output o reads parameters o … o + k − 1, cyclic, k = 4),
and ``torch.randn(samples, d)`` in the same process as the yardstick of one
pass over the perturbations' memory. Median of ``--repeats`` steps after one
warm-up, one torch thread; each (d, mode) in a fresh process, so that its
peak RSS (``getrusage``) is its own.

Run from the repository root::

    .venv/bin/python benchmarks/sparse_overhead.py
    .venv/bin/python benchmarks/sparse_overhead.py --dims 100000 1000000 --samples 2 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import write_results

CHILD = """
import json, resource, statistics, sys, time, torch, voidgrad as vg
torch.set_num_threads(1)
d, samples, repeats, mode, k = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                sys.argv[4], int(sys.argv[5]))
pattern = None
if mode == "sparse":
    rows = torch.arange(d).repeat_interleave(k)
    cols = (torch.arange(d).unsqueeze(1) + torch.arange(k)).reshape(-1) % d
    pattern = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(d * k), (d, d),
                                      check_invariants=True)
theta, v = torch.zeros(1, d), torch.ones(1, d)
estimator = vg.GaussianSmoothing(0.1, samples, jac_sparsity=pattern, seed=0)

def step():
    query = estimator.ask(theta)
    estimate = estimator.tell(query, query.inputs)  # F(x) = x
    return estimate.vjp(v)

def randn():
    return torch.randn(samples, d)

def median_seconds(fn):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

step_s = median_seconds(step)
randn_s = median_seconds(randn)
print(json.dumps({"d": d, "samples": samples, "mode": mode, "step_s": step_s,
                  "randn_s": randn_s, "ratio": step_s / randn_s,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--samples", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--band", type=int, default=4, help="parameters per output, k")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results = []
    print(
        f"{'d':>10} {'samples':>7} {'mode':>6} {'step s':>9} {'randn s':>9} "
        f"{'step/randn':>10} {'peak MB':>8}"
    )
    for d in args.dims:
        for samples in args.samples:
            for mode in ("dense", "sparse"):
                command = [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(d),
                    str(samples),
                    str(args.repeats),
                    mode,
                    str(args.band),
                ]
                row = json.loads(
                    subprocess.run(command, capture_output=True, text=True, check=True).stdout
                )
                results.append(row)
                print(
                    f"{d:>10} {samples:>7} {mode:>6} {row['step_s']:>9.4f} "
                    f"{row['randn_s']:>9.4f} {row['ratio']:>10.1f} {row['rss_mb']:>8.0f}"
                )
    write_results(
        args.out,
        "sparse_overhead",
        "per-step overhead and peak RSS of sparse "
        "smoothing against dense smoothing and torch.randn(samples, d)",
        results,
        dims=args.dims,
        samples=args.samples,
        repeats=args.repeats,
        band=args.band,
    )


if __name__ == "__main__":
    main()
