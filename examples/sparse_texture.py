"""Recover a 1 024 × 1 024 RGB texture (3 145 728 parameters) through a non-differentiable renderer.

The texture problem's renderer quantizes every texel to 8 bits,
q(x) = round(255 · clamp(x, 0, 1))/255, so its gradient is zero almost
everywhere; the loss after it (the brightness-normalized MSE to a target,
``problem.image_loss``) is ordinary torch. ``vg.blackbox`` makes the renderer
differentiable with Gaussian smoothing, and autograd does the rest:

    render = vg.blackbox(problem.pixels, estimator)
    problem.image_loss(render(theta)).backward()

Pixel k depends on texel k alone, and ``problem.jac_sparsity()`` says so (the
``[d, d]`` identity, sparse). With that pattern the estimator credits each
texel with its own pixel only, so one antithetic pair of renders (2
evaluations a step) gives all d texels a finite difference each: the
evaluations needed do not grow with d. Without it, every texel would be
credited with the change of the whole image, its 3.1 M texels moved at once.

The picture: the target, the start and the answer, each with a zoom on its
centre (a sixteenth of the side) where single pixels show, and the loss of
the iterate against the evaluations spent (that loss is rendered outside the
budget, for the curve only; the optimizer never sees it).

    .venv/bin/python examples/sparse_texture.py                    # size 1024, 100 evaluations
    .venv/bin/python examples/sparse_texture.py --size 256 --evaluations 400

``benchmarks/sparse_texture.py`` measures the same setting over seeds, sizes
and budgets, with variants of σ, the learning rate and the samples a step.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import voidgrad as vg
from voidgrad.problems import TextureProblem

SAMPLES = 2
"""Renders a step: one antithetic pair."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="the texture's side in pixels")
    parser.add_argument("--evaluations", type=int, default=100, help="renders to spend")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("sparse_texture.png"))
    arguments = parser.parse_args(argv)
    if arguments.evaluations < SAMPLES:
        parser.error(f"--evaluations must be at least {SAMPLES}; got {arguments.evaluations}")

    try:
        problem = TextureProblem(size=arguments.size, seed=arguments.seed)
    except ValueError as error:
        parser.error(str(error))
    estimator = vg.GaussianSmoothing(
        sigma=0.02, samples=SAMPLES, jac_sparsity=problem.jac_sparsity(), seed=arguments.seed
    )
    render = vg.blackbox(problem.pixels, estimator)
    theta = problem.x0.float().requires_grad_()  # float32: half the memory of Adam's state
    optimizer = torch.optim.Adam([theta], lr=0.02)

    def current_loss() -> float:
        with torch.no_grad():
            return float(problem.image_loss(problem.pixels(theta)))

    evaluations, losses = [0], [current_loss()]
    started = time.perf_counter()
    while render.evaluator.stats.evals + SAMPLES <= arguments.evaluations:
        optimizer.zero_grad()
        problem.image_loss(render(theta)).backward()
        optimizer.step()
        evaluations.append(render.evaluator.stats.evals)
        losses.append(current_loss())
    seconds = time.perf_counter() - started
    print(
        f"texture {arguments.size}² (d = {problem.dim}): loss {losses[0]:.4g} → {losses[-1]:.4g} "
        f"({losses[-1] / losses[0]:.2%} of the start) in {evaluations[-1]} evaluations, "
        f"{seconds:.0f} s"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    side = max(problem.size // 16, 4)  # the zoom: side × side pixels around the centre
    corner = (problem.size - side) // 2
    zoom = slice(corner, corner + side)
    panels = [
        ("target", problem.target_image),
        ("start", problem.render(problem.x0)),
        (f"answer after {evaluations[-1]} evaluations", problem.render(theta)),
    ]
    figure = plt.figure(figsize=(13, 6.6))
    grid = figure.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.4])
    for column, (title, image) in enumerate(panels):
        whole, detail = figure.add_subplot(grid[0, column]), figure.add_subplot(grid[1, column])
        whole.imshow(image.float().numpy(), interpolation="antialiased")
        whole.add_patch(Rectangle((corner, corner), side, side, fill=False, color="white"))
        whole.set_title(title)
        detail.imshow(image[zoom, zoom].float().numpy(), interpolation="nearest")
        detail.set_title(f"its centre, {side} × {side} pixels", fontsize="medium")
        for axis in (whole, detail):
            axis.axis("off")
    curve = figure.add_subplot(grid[:, 3])
    curve.plot(evaluations, losses)
    curve.axhline(0.01 * losses[0], color="grey", linestyle=":", label="1 % of the start")
    curve.set(xlabel="evaluations (renders)", ylabel="loss of the iterate", yscale="log")
    dimension = f"{problem.dim:,}".replace(",", " ")
    curve.set_title(f"sparse smoothing + Adam, d = {dimension}")
    curve.legend()
    figure.tight_layout()
    figure.savefig(arguments.out, dpi=100)
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
