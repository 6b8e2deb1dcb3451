"""Blender throughput: renders per second in one process and with 1 and 2 worker processes.

What is measured
----------------
``BlenderRenderer(ball_scene, ['objects["Ball"].location'])`` renders the
ball at ``--renders`` random positions, for each engine (Cycles at
``--samples`` spp, no denoising, with Blender's default of all cores and with
one render thread; Workbench) at ``--size``² pixels:

- **in-process**: the renderer called in this process (the scene is loaded
  by a first, untimed render);
- **workers = k**: through ``vg.Evaluator(renderer, backend="process",
  workers=k)``; a first batch of k renders loads the scene in every worker
  and is not timed, then the ``--renders`` are timed as one batch.

Reported: renders per second and seconds per render. Needs the blender extra
(``.venv-integrations`` from ``make test-integrations`` has it).

Run from the repository root::

    .venv-integrations/bin/python benchmarks/blender_throughput.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from common import write_results
from voidgrad.integrations.blender import BlenderRenderer, ball_scene

LOCATION = 'objects["Ball"].location'


def positions(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=generator) * 2 - 1
    return torch.cat([xy, torch.full((n, 1), 0.5)], dim=1)


def in_process(renderer: BlenderRenderer, X: torch.Tensor) -> float:
    renderer(X[0])
    started = time.perf_counter()
    for row in X:
        renderer(row)
    return time.perf_counter() - started


def with_workers(renderer: BlenderRenderer, X: torch.Tensor, workers: int) -> float:
    with vg.Evaluator(renderer, backend="process", workers=workers) as evaluator:
        evaluator(positions(workers, seed=1))
        started = time.perf_counter()
        evaluator(X)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--renders", type=int, default=48)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    arguments = parser.parse_args()
    X = positions(arguments.renders, seed=0)
    results: list[dict[str, Any]] = []
    for engine, threads in (("CYCLES", None), ("CYCLES", 1), ("BLENDER_WORKBENCH", None)):
        renderer = BlenderRenderer(
            ball_scene,
            [LOCATION],
            engine=engine,
            resolution=(arguments.size, arguments.size),
            samples=arguments.samples,
            threads=threads,
        )
        runs = [("in-process", lambda r=renderer: in_process(r, X))]
        runs += [(f"workers={k}", lambda r=renderer, k=k: with_workers(r, X, k)) for k in (1, 2)]
        for mode, run in runs:
            seconds = run()
            results.append(
                {
                    "engine": engine,
                    "threads": "all" if threads is None else threads,
                    "mode": mode,
                    "renders": arguments.renders,
                    "seconds": seconds,
                    "renders_per_second": arguments.renders / seconds,
                }
            )
            print(
                f"{engine:18s} threads={threads or 'all':3} {mode:11s} "
                f"{arguments.renders / seconds:6.1f} renders/s "
                f"({1000 * seconds / arguments.renders:.0f} ms each)"
            )
    write_results(
        arguments.out,
        "blender_throughput",
        "renders per second of BlenderRenderer in-process and with 1 and 2 worker processes",
        results,
        renders=arguments.renders,
        size=arguments.size,
        samples=arguments.samples,
    )


if __name__ == "__main__":
    main()
