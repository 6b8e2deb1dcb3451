"""Match a target image by moving an object in Blender (Cycles) with Gaussian smoothing.

The ball of ``voidgrad.integrations.blender.ball_scene`` must move from (−0.3, 0.3)
to where a target render shows it, (0.6, −0.4). The image loss has no
gradient Blender could give; ``vg.GaussianSmoothing`` estimates it from
antithetic renders, which run in two Blender worker processes.

    .venv-integrations/bin/python examples/blender_match.py --steps 60

writes ``blender_match.png`` (target, start, result, distance curve).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import voidgrad as vg
from voidgrad.integrations.blender import BlenderRenderer, ball_scene

TARGET = (0.6, -0.4)
START = (-0.3, 0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("blender_match.png"))
    arguments = parser.parse_args()

    renderer = BlenderRenderer(
        ball_scene,
        ['objects["Ball"].location[0]', 'objects["Ball"].location[1]'],
        resolution=(32, 32),
        samples=8,
    )
    target = renderer(torch.tensor(TARGET))
    estimator = vg.GaussianSmoothing(
        sigma=0.5,
        samples=8,
        schedule=vg.LinearAnneal(0.05, total_steps=arguments.steps),
        common_random_numbers=True,
        seed=0,
    )
    theta = torch.tensor(START, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.08)
    distances = [float(theta.detach().sub(torch.tensor(TARGET)).norm())]
    started = time.perf_counter()
    with vg.Evaluator(renderer, backend="process", workers=arguments.workers) as evaluator:
        render = vg.blackbox(renderer, estimator, evaluator)
        for _ in range(arguments.steps):
            loss = (render(theta) - target).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            estimator.step()
            distances.append(float(theta.detach().sub(torch.tensor(TARGET)).norm()))
        renders = evaluator.stats.evals
    seconds = time.perf_counter() - started
    print(f"ball at {theta.detach().tolist()} (target {TARGET}); |θ − θ*| = {distances[-1]:.3f}")
    print(f"{renders} renders in {seconds:.0f} s with {arguments.workers} Blender workers")
    save_picture(arguments.out, renderer, theta.detach(), target, distances)


def save_picture(
    path: Path,
    renderer: BlenderRenderer,
    theta: torch.Tensor,
    target: torch.Tensor,
    distances: list[float],
) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: pip install voidgrad[plot] gives the picture")
        return
    figure = Figure(figsize=(12, 3.2), layout="constrained")
    axes = figure.subplots(1, 4)
    pictures = (
        ("target", target),
        ("start", renderer(torch.tensor(START))),
        ("result", renderer(theta)),
    )
    for axis, (title, image) in zip(axes, pictures, strict=False):
        axis.imshow(image[..., :3].clamp(0, 1).pow(1 / 2.2).numpy())
        axis.set_title(title)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[3].semilogy(distances)
    axes[3].set_xlabel("step")
    axes[3].set_ylabel("|θ − θ*|")
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
