"""ZeroGrads at scale: time per step and memory at d = 1 024, 35 152 and 196 608.

What is measured
----------------
``--steps`` steps of Adam on ``vg.ZeroGrads`` on a trivial vectorized black
box (``fn(x) = ‖x‖²/d``, whose cost is negligible), in a fresh process per
(dimension, network) so that peak memory is its own:

- **ms per step**: sampling, the evaluation call, the surrogate's fit and its
  gradient, and the optimizer step, after a two-step warm-up that pays the
  one-time imports (the first ``torch.optim.Adam`` imports torch._dynamo);
- **peak RSS**: the process's maximum resident set size (``getrusage``), and
  the increase over a process that only imports voidgrad and allocates x0;
- **surrogate parameters**.

Two networks: ``ours``, the defaults (4 samples, 3 × 64 leaky-ReLU MLP, no
encoding, a rank-32 first layer above 4 096 inputs), and ``reference``, the
reference code's high-dimensional surrogate (20 samples, 8 × 128, six
positional-encoding frequencies, a full first layer: 327M weights at
d = 196 608). ``--networks`` picks which; the reference at 196 608 needs
about 6 GB and tens of seconds per step.

Run from the repository root::

    .venv/bin/python benchmarks/zerograds_scaling.py
    .venv/bin/python benchmarks/zerograds_scaling.py --networks reference --dims 1024 35152
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common import write_results
from voidgrad.bench import reference_zerograds_options

CHILD = """
import json, resource, sys, time, torch, voidgrad as vg
torch.set_num_threads(1)
d, steps, baseline = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
options = json.loads(sys.argv[4])
x0 = torch.full((d,), 0.5)
if baseline:
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit()
fn = lambda X: (X ** 2).mean(1)

def run(steps):
    estimator = vg.ZeroGrads(sigma=0.025, seed=0, **options)
    theta = x0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=1e-3)
    loss = vg.blackbox(vg.Evaluator(fn, backend="vectorized"), estimator)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(theta).backward()
        optimizer.step()
    return estimator

run(2)  # one-time costs: the first Adam step imports torch._dynamo (about 4 s)
start = time.perf_counter()
estimator = run(steps)
wall = time.perf_counter() - start
print(json.dumps({
    "ms_per_step": 1e3 * wall / steps,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "surrogate_parameters": sum(p.numel() for p in estimator.surrogate.parameters()),
}))
"""

NETWORKS = ("ours", "reference")


def network_options(network: str, dim: int) -> dict[str, object]:
    """ZeroGrads options (σ aside) for our defaults or the bench's reference set-up.

    The reference's first layer is kept full at every d (the bench factorizes it above
    200 000 encoded inputs), since its cost is what this measures.
    """
    if network == "ours":
        return {}
    options = reference_zerograds_options(1.0, dim)
    del options["sigma"], options["lr"]
    return {**options, "low_rank_above": 10**12}


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
    parser.add_argument("--networks", nargs="+", default=["ours"], choices=NETWORKS)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rows = []
    for network in args.networks:
        for d in args.dims:
            options = json.dumps(network_options(network, d))
            run = child(CHILD, d, args.steps, 0, options)
            base = child(CHILD, d, args.steps, 1, options)
            row = {
                "network": network,
                "dim": d,
                **run,
                "rss_added_mb": run["rss_mb"] - base["rss_mb"],
            }
            rows.append(row)
            print(
                f"{network:9s} d={d:>7d}  {row['ms_per_step']:9.1f} ms/step  "
                f"peak RSS {row['rss_mb']:7.0f} MB (+{row['rss_added_mb']:.0f} MB over import)  "
                f"surrogate {row['surrogate_parameters']:,} parameters",
                flush=True,
            )
    write_results(
        args.out,
        "zerograds_scaling",
        "ms per ZeroGrads step and peak RSS at several d, 1 thread, ours and the reference's "
        "surrogate",
        dims=args.dims,
        networks={name: network_options(name, max(args.dims)) for name in args.networks},
        steps=args.steps,
        started=time.strftime("%H:%M:%S"),
        results=rows,
    )


if __name__ == "__main__":
    main()
