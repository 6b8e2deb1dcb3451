"""ZeroGrads at scale: time per step and memory at d = 1 024, 35 152 and 196 608.

What is measured
----------------
``vg.minimize(fn, x0, method="zerograds", budget=...)`` on a trivial black
box (``fn(x) = ‖x‖²/d``, vectorized) for ``--steps`` steps, in a fresh
process per dimension so that peak memory is its own:

- **ms per step**: wall time of the run minus the seconds inside ``fn``,
  divided by the steps (sampling, the surrogate's fit and its gradient, the
  optimizer step), after a two-step warm-up run that pays the one-time imports
  (the first ``torch.optim.Adam`` imports torch._dynamo: about 4 s);
- **peak RSS**: the process's maximum resident set size after the run
  (``getrusage``), and the same for a process that only imports voidgrad and
  allocates x0, so the difference is what the run added;
- **surrogate parameters**: the default surrogate's size at that d (a low-rank
  first layer above 4 096 inputs).

Run from the repository root::

    .venv/bin/python benchmarks/zerograds_scaling.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common import write_results

CHILD = """
import json, resource, sys, time, torch, voidgrad as vg
torch.set_num_threads(1)
d, steps, baseline = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
x0 = torch.full((d,), 0.5)
if baseline:
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit()
ev = vg.Evaluator(lambda X: (X ** 2).mean(1), backend="vectorized")
vg.minimize(ev, x0, method="zerograds", budget=32, progress=False)  # one-time imports (dynamo)
ev = vg.Evaluator(lambda X: (X ** 2).mean(1), backend="vectorized")
start = time.perf_counter()
result = vg.minimize(ev, x0, method="zerograds", budget=16 * steps, sigma=0.025, lr=1e-3,
                     progress=False)
wall = time.perf_counter() - start
print(json.dumps({
    "ms_per_step": 1e3 * (wall - ev.stats.seconds) / result.nsteps,
    "steps": result.nsteps,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "loss_start": float((x0 ** 2).mean()), "loss_best": result.fun,
}))
"""

SURROGATE = """
import json, sys, torch, voidgrad as vg
d = int(sys.argv[1])
est = vg.ZeroGrads(sigma=0.025, samples=16)
est._ensure_surrogate(torch.zeros(d))
print(json.dumps({"parameters": sum(p.numel() for p in est.surrogate.parameters())}))
"""


def child(script: str, *args: object) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[1024, 35152, 196608])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rows = []
    for d in args.dims:
        run = child(CHILD, d, args.steps, 0)
        base = child(CHILD, d, args.steps, 1)
        size = child(SURROGATE, d)
        row = {
            "dim": d,
            **run,
            "rss_added_mb": run["rss_mb"] - base["rss_mb"],
            "surrogate_parameters": size["parameters"],
        }
        rows.append(row)
        print(
            f"d={d:>7d}  {row['ms_per_step']:8.1f} ms/step  peak RSS {row['rss_mb']:7.0f} MB "
            f"(+{row['rss_added_mb']:.0f} MB over import)  "
            f"surrogate {row['surrogate_parameters']:,} parameters",
            flush=True,
        )
    write_results(
        args.out,
        "zerograds_scaling",
        "ms per ZeroGrads step (excluding fn) and peak RSS at several d, 1 thread",
        dims=args.dims,
        steps=args.steps,
        samples=16,
        started=time.strftime("%H:%M:%S"),
        parent_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        results=rows,
    )


if __name__ == "__main__":
    main()
