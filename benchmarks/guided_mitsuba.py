"""Guided smoothing with Mitsuba's AD gradient as the guide, on the occluded-light scene.

What is measured
----------------
The scene of ``examples/mitsuba_occluded_light.py`` on a small film: a light
that starts behind an occluding panel, so the image is black and the image
loss flat, must move to the target position (0.8, 0.3). The loss is the mean
squared error to the target image (64 spp). From the plateau start, at equal
render budgets, per seed:

- ``guided``: ``vg.GuidedSmoothing(σ, 8, guide, adapt=True,
  common_random_numbers=True)`` through the
  ``scalar_rgb`` renderer, the guide ``MitsubaRenderer.ad_guide``: Mitsuba's
  AD gradient of the same loss (``llvm_ad_rgb``, ``direct`` integrator, which
  does not differentiate the moving shadow edge). A step costs 8 renders plus
  one guide call, counted as 2 renders (a primal and an adjoint render);
- ``smoothing``: ``vg.GaussianSmoothing(σ, 8, common_random_numbers=True)``,
  8 renders a step;
- ``ad``: Adam on the AD gradient alone (the guide's output), 2 renders a step.

All use Adam (lr 0.05) from (−1.6, −1.0); both smoothings anneal σ linearly
from 1 to 0.02 over their steps (``vg.LinearAnneal``). Reported per method: the median over
seeds of the last iterate's distance to the target and its image MSE (judged
at 64 spp, seed 2), and each seed's figures.

Run from the repository root with the integrations venv (a few minutes on one
core; the AD guide runs in a child process)::

    OMP_NUM_THREADS=1 .venv-integrations/bin/python benchmarks/guided_mitsuba.py
    OMP_NUM_THREADS=1 .venv-integrations/bin/python benchmarks/guided_mitsuba.py --budget 800
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from mitsuba_occluded_light import (
    START,
    TARGET,
    mean_square_error,
    occluded_light_scene,
    place_light,
    place_light_ad,
    smoothing_descent,
)

from common import write_results
from voidgrad.integrations.mitsuba import ADGuide, MitsubaRenderer

GUIDE_RENDERS = 2  # a guide call: one primal and one adjoint render


def ad_descent(guide: ADGuide, steps: int) -> dict[str, Any]:
    """Adam on the guide's gradient alone from START."""
    theta = torch.tensor(START, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        theta.grad = guide(theta.detach())
        optimizer.step()
    return {"path": [theta.tolist()], "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=1600, help="renders per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--size", type=int, default=32, help="film width and height")
    parser.add_argument("--spp", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    arguments = parser.parse_args()
    budget, size, spp = arguments.budget, arguments.size, arguments.spp

    scene = functools.partial(occluded_light_scene, size=size)
    target = MitsubaRenderer(scene, place_light, spp=64)(torch.tensor(TARGET))
    judge = MitsubaRenderer(scene, place_light, spp=64, seed=2)
    judged_target = judge(torch.tensor(TARGET))
    renderer = MitsubaRenderer(scene, place_light, spp=spp)
    loss = functools.partial(mean_square_error, target=target)
    steps = {"guided": budget // (8 + GUIDE_RENDERS), "smoothing": budget // 8}
    steps["ad"] = budget // GUIDE_RENDERS

    def judged(theta: list[float]) -> dict[str, float]:
        error = float(torch.tensor(theta).sub(torch.tensor(TARGET)).norm())
        mse = float(mean_square_error(judge(torch.tensor(theta)), judged_target))
        return {"parameter_error": error, "image_mse": mse}

    runs: list[dict[str, Any]] = []
    with renderer.ad_guide(loss, apply=place_light_ad, spp=spp) as guide:
        for seed in arguments.seeds:
            for method in ("guided", "smoothing", "ad"):
                if method == "ad":
                    run = ad_descent(guide, steps["ad"])
                else:
                    run = smoothing_descent(
                        steps[method],
                        1,
                        spp,
                        guide=guide if method == "guided" else None,
                        size=size,
                        seed=seed,
                    )
                row = {"method": method, "seed": seed, "steps": steps[method]}
                row.update(judged(run["path"][-1]), seconds=run["seconds"])
                row["final_theta"] = run["path"][-1]
                runs.append(row)
                print(
                    f"seed {seed} {method:9s} |θ − θ*| = {row['parameter_error']:.3f}  "
                    f"image MSE = {row['image_mse']:.2e}  ({row['seconds']:.0f} s)"
                )

    summary = []
    start_error = judged(list(START))
    for method in ("guided", "smoothing", "ad"):
        rows = [row for row in runs if row["method"] == method]
        summary.append(
            {
                "method": method,
                "steps": steps[method],
                "median_parameter_error": statistics.median(r["parameter_error"] for r in rows),
                "median_image_mse": statistics.median(r["image_mse"] for r in rows),
                "runs": rows,
            }
        )
    print(f"start: |θ − θ*| = {start_error['parameter_error']:.3f}")
    for row in summary:
        print(
            f"{row['method']:9s} median |θ − θ*| = {row['median_parameter_error']:.3f}  "
            f"median image MSE = {row['median_image_mse']:.2e}  ({row['steps']} steps)"
        )
    write_results(
        arguments.out,
        "guided_mitsuba",
        "occluded light: guided smoothing (Mitsuba AD guide) vs smoothing vs Adam on AD, "
        "equal renders",
        summary,
        budget=budget,
        seeds=arguments.seeds,
        size=size,
        spp=spp,
        guide_renders_per_call=GUIDE_RENDERS,
        alpha=0.5,
        samples=8,
        lr=0.05,
        sigma="1 -> 0.02 linear",
        start=start_error,
    )


if __name__ == "__main__":
    main()
