"""Peak memory and step time of smoothing with stored against regenerated offsets, d = 10⁶ to 10⁸.

What is measured
----------------
One optimisation step, ``bb(θ).backward()`` then ``Adam.step()``, of
``vg.blackbox(F, vg.GaussianSmoothing(0.1, samples, importance=False,
regenerate=...))`` on the scalar black box F(x) = ½‖x‖² (serial backend; its
cost is one pass over a point, so the time is mostly the estimator's). θ is
float32. Each (d, samples, mode) runs in a fresh process with one torch
thread: ``base MB`` is its peak RSS once torch, θ, its gradient and Adam's
two moments exist (4 d floats), before any step; ``peak MB`` is the peak RSS
after the timed steps (no warm-up step: the first counts); the difference is
what a step adds, ``added B/d`` the same per parameter.
``torch.randn(samples, d)`` is timed in the same process after the peak is
read (it would raise it), as the yardstick of one pass over the stored
perturbations.

Run from the repository root (d = 10⁸ needs about 10 GB for the stored mode
and 4 minutes)::

    .venv/bin/python benchmarks/regenerated_memory.py
    .venv/bin/python benchmarks/regenerated_memory.py --dims 1000000 --samples 2 8 --repeats 5
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
d, samples, repeats, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

theta = torch.zeros(d, requires_grad=True)
optimizer = torch.optim.Adam([theta], lr=1e-3)
theta.grad = torch.zeros(d)
optimizer.step()  # Adam's moments exist from here
estimator = vg.GaussianSmoothing(0.1, samples, importance=False,
                                 regenerate=mode == "regenerate", seed=0)
bb = vg.blackbox(lambda x: 0.5 * float(x.pow(2).sum()), estimator)
base = peak_mb()

def step():
    optimizer.zero_grad()
    bb(theta).backward()
    optimizer.step()

def median_seconds(fn, warm):
    if warm:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

step_s = median_seconds(step, warm=False)
peak = peak_mb()
randn_s = median_seconds(lambda: torch.randn(samples, d), warm=True)
print(json.dumps({"d": d, "samples": samples, "mode": mode, "step_s": step_s,
                  "randn_s": randn_s, "ratio": step_s / randn_s,
                  "base_mb": base, "peak_mb": peak, "added_mb": peak - base,
                  "added_per_d_bytes": (peak - base) * 2**20 / d}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--samples", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results = []
    print(
        f"{'d':>10} {'samples':>7} {'mode':>10} {'step s':>8} {'randn s':>8} "
        f"{'step/randn':>10} {'base MB':>8} {'peak MB':>8} {'added B/d':>9}"
    )
    for d in args.dims:
        for samples in args.samples:
            for mode in ("stored", "regenerate"):
                command = [sys.executable, "-c", CHILD, str(d), str(samples)]
                command += [str(args.repeats), mode]
                row = json.loads(
                    subprocess.run(command, capture_output=True, text=True, check=True).stdout
                )
                results.append(row)
                print(
                    f"{d:>10} {samples:>7} {mode:>10} {row['step_s']:>8.3f} "
                    f"{row['randn_s']:>8.3f} {row['ratio']:>10.1f} {row['base_mb']:>8.0f} "
                    f"{row['peak_mb']:>8.0f} {row['added_per_d_bytes']:>9.1f}"
                )
    write_results(
        args.out,
        "regenerated_memory",
        "peak RSS and step time of Gaussian smoothing with stored against regenerated "
        "offsets, one Adam step on F(x) = ½‖x‖², float32",
        results,
        dims=args.dims,
        samples=args.samples,
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
