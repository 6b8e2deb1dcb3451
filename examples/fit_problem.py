"""Fit a built-in problem through a black box: caustic, digits MLP, spline drawing, a plateau.

Every problem of ``vg.problems`` is a black box with a picture (``render``).
This runs ``vg.minimize`` on one with the settings ``voidgrad bench`` uses
(scaled to the problem), and draws the target, the start, the answer and the
loss against evaluations:

    .venv/bin/python examples/fit_problem.py --problem caustic --method zerograds --budget 4000
    .venv/bin/python examples/fit_problem.py --problem digits_mlp --method zerograds
    .venv/bin/python examples/fit_problem.py --problem splines --method smoothing
    .venv/bin/python examples/fit_problem.py --problem plateau --method smoothing --budget 2000

``caustic``: a glass heightfield (1 024 parameters) must focus light into a
target caustic; photons are splatted into pixels, so the image has no
gradient. ``digits_mlp``: the 35 152 weights of an MLP whose 8-bit output must
draw a digit. ``splines``: support points of curves drawn by a hard
rasterizer. ``plateau``: a square found from its hard-edged rendering, where
the loss is flat almost everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import voidgrad as vg
from voidgrad.bench import method_options, problem_scale


def picture(image: torch.Tensor) -> torch.Tensor:
    """An image as [H, W] or [H, W, 3] for imshow."""
    image = image.detach().float()
    return image.permute(1, 2, 0) if image.ndim == 3 and image.shape[0] == 3 else image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", default="caustic", choices=sorted(vg.problems.PROBLEMS))
    parser.add_argument("--method", default="zerograds")
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: <problem>.png")
    arguments = parser.parse_args()

    problem = vg.problems.make(arguments.problem, seed=arguments.seed)
    options = method_options(
        arguments.method, problem_scale(problem), arguments.budget, {}, problem.dim
    )
    result = vg.minimize(
        problem.loss,
        problem.x0,
        method=arguments.method,
        budget=arguments.budget,
        seed=arguments.seed,
        **options,
    )
    print(result)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = (
        problem.render(problem.x_target)
        if problem.x_target is not None
        else getattr(problem, "target_image", None)
    )
    panels = [("start", problem.render(problem.x0)), ("answer", problem.render(result.x))]
    if target is not None:
        panels.insert(0, ("target", target))
    figure, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.2))
    for axis, (title, image) in zip(axes, panels, strict=False):
        axis.imshow(picture(image), cmap="gray")
        axis.set_title(title)
        axis.axis("off")
    axes[-1].plot(result.history.column("evals"), result.history.column("best"))
    axes[-1].set(xlabel="evaluations", ylabel="best loss", yscale="log")
    axes[-1].set_title(f"{arguments.method} on {arguments.problem}")
    figure.tight_layout()
    out = arguments.out or Path(f"{arguments.problem}.png")
    figure.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
