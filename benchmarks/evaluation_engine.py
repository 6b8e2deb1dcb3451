"""The evaluation engine's backends: start-up, per-evaluation overhead, speed-up, reproducibility.

What is measured
----------------
For each backend (serial, process, ray) behind ``vg.Evaluator``:

1. **Start-up**: wall time of the first call on a 2-row batch of a trivial
   function, which starts the pool (process: fork + pipe handshake per
   worker; ray: ``ray.init`` of a local runtime + actor creation).
2. **Overhead per evaluation**: wall time of ``ev(X)`` for 1 000 rows of a
   trivial function (``row[0]``) on the warm pool, divided by 1 000. This is
   dispatch, pickling and bookkeeping, the cost added to every evaluation.
3. **Speed-up** over serial for a CPU-bound function that spins for 20 ms and
   for 200 ms per call (a busy loop, not a sleep), ``--calls`` rows each,
   with ``--workers`` workers: serial wall time / backend wall time.
4. **Reproducibility**: 10 Adam steps of Gaussian smoothing
   (``GaussianSmoothing(sigma=0.2, samples=8, seed=0)``) on a seeded noisy
   quadratic through each backend; the final parameters must be identical
   (bit for bit) to the serial run's.

Run from the repository root (Ray is optional; without it its rows are
skipped)::

    .venv/bin/python benchmarks/evaluation_engine.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import voidgrad as vg
from common import write_results


def trivial(row: torch.Tensor) -> float:
    return float(row[0])


def spin(row: torch.Tensor) -> float:
    """Burns ``row[0]`` seconds of CPU."""
    end = time.perf_counter() + float(row[0])
    count = 0
    while time.perf_counter() < end:
        count += 1
    return float(count > 0)


def noisy_quadratic(row: torch.Tensor, seed: int) -> float:
    noise = torch.randn((), generator=torch.Generator().manual_seed(seed), dtype=row.dtype)
    return float((row**2).sum() + 0.01 * noise)


def make(fn, backend: str, workers: int) -> vg.Evaluator:
    if backend == "serial":
        return vg.Evaluator(fn)
    return vg.Evaluator(fn, backend=backend, workers=workers)


def smoothing_run(backend: str, workers: int) -> list[float]:
    with make(noisy_quadratic, backend, workers) as evaluator:
        theta = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64, requires_grad=True)
        estimator = vg.GaussianSmoothing(sigma=0.2, samples=8, seed=0)
        loss_fn = vg.blackbox(evaluator.fn, estimator, evaluator=evaluator)
        optimizer = torch.optim.Adam([theta], lr=0.05)
        for _ in range(10):
            optimizer.zero_grad()
            loss_fn(theta).backward()
            optimizer.step()
        return theta.detach().tolist()


def timed(evaluator: vg.Evaluator, X: torch.Tensor) -> float:
    start = time.perf_counter()
    evaluator(X)
    return time.perf_counter() - start


def measure(backend: str, args: argparse.Namespace) -> dict[str, object]:
    row: dict[str, object] = {"backend": backend}
    with make(trivial, backend, args.workers) as evaluator:
        row["startup_s"] = timed(evaluator, torch.zeros(2, 1))
        row["overhead_ms_per_eval"] = 1e3 * timed(evaluator, torch.zeros(1000, 1)) / 1000
    with make(spin, backend, args.workers) as evaluator:
        evaluator(torch.zeros(2, 1))  # start the pool outside the timed region
        for ms in (20, 200):
            X = torch.full((args.calls, 1), ms / 1e3, dtype=torch.float64)
            row[f"seconds_{ms}ms"] = timed(evaluator, X)
    row["smoothing_theta"] = smoothing_run(backend, args.workers)
    return row


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["serial", "process", "ray"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calls", type=int, default=20, help="rows per speed-up batch")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for backend in args.backends:
        if backend == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                print("ray is not installed (pip install 'voidgrad[ray]'): skipped")
                continue
        rows.append(measure(backend, args))
    serial = next(r for r in rows if r["backend"] == "serial")
    print(
        f"{'backend':8s} {'start-up':>9s} {'overhead/eval':>14s} "
        f"{'speed-up 20 ms':>15s} {'speed-up 200 ms':>16s}  same smoothing result"
    )
    for row in rows:
        for ms in (20, 200):
            row[f"speedup_{ms}ms"] = serial[f"seconds_{ms}ms"] / row[f"seconds_{ms}ms"]
        row["same_as_serial"] = row["smoothing_theta"] == serial["smoothing_theta"]
        print(
            f"{row['backend']:8s} {row['startup_s']:8.2f}s {row['overhead_ms_per_eval']:11.3f} ms "
            f"{row['speedup_20ms']:14.2f}x {row['speedup_200ms']:15.2f}x  {row['same_as_serial']}"
        )
    write_results(
        args.out,
        "evaluation_engine",
        "start-up, per-evaluation overhead (1000 trivial calls), speed-up over serial for "
        "20 ms and 200 ms CPU-bound calls, identical Gaussian-smoothing runs",
        workers=args.workers,
        calls=args.calls,
        backends=args.backends,
        results=rows,
    )


if __name__ == "__main__":
    main()
