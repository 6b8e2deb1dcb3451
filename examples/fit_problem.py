"""Fit a built-in problem through a black box: caustic, digits MLP, spline drawing, a plateau.

Every problem of ``vg.problems`` is a black box with a picture (``render``).
This runs ``vg.minimize`` on one with the settings ``voidgrad bench`` uses
(scaled to the problem), and draws the target, the start, the answer and the
loss against evaluations:

    .venv/bin/python examples/fit_problem.py --problem caustic --method zerograds --budget 4000
    .venv/bin/python examples/fit_problem.py --problem digits_mlp --method zerograds
    .venv/bin/python examples/fit_problem.py --problem splines --method smoothing
    .venv/bin/python examples/fit_problem.py --problem plateau --method smoothing --budget 2000
    .venv/bin/python examples/fit_problem.py --problem digits_mlp --method spsa --budget 16000 \
        --option lr_decay=0.1
    .venv/bin/python examples/fit_problem.py --problem caustic:photons=128:resolution=32 \
        --method smoothing --budget 30000 --option importance=false --option lr_decay=0.01

A problem may carry constructor arguments, as in ``voidgrad bench --problems``
(``caustic:photons=128:resolution=32``: 128² photons into 32 × 32 bins). Each
``--option KEY=VALUE`` overrides one of the method's settings as ``voidgrad
bench --option METHOD.KEY=VALUE`` does: ``sigma=0.2s`` is in units of the
problem's scale, and ``lr_decay=f`` decays the learning rate linearly to f
times its start over the run.

``caustic``: a glass heightfield (1 024 parameters) must focus light into a
target caustic; photons are splatted into pixels, so the image has no
gradient. ``digits_mlp``: the 35 152 weights of an MLP whose 8-bit output must
draw a digit. ``splines``: support points of curves drawn by a hard
rasterizer. ``plateau``: a square found from its hard-edged rendering, where
the loss is flat almost everywhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import voidgrad as vg
from voidgrad.bench import method_options, parse_options, parse_problem, problem_scale


def problem_spec(text: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """``--problem``: ``NAME`` or ``NAME:KEY=VALUE[:KEY=VALUE...]``, read as the bench does."""
    try:
        return parse_problem(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def settings(method: str, problem: Any, budget: int, pairs: Sequence[str]) -> dict[str, Any]:
    """``vg.minimize``'s options for ``method``: the bench's, scaled to ``problem``, then ``pairs``.

    ``pairs`` are the ``--option`` values, ``KEY=VALUE`` each: ``voidgrad bench
    --option METHOD.KEY=VALUE`` for this method, so ``sigma=0.2s`` is 0.2 s (s
    the problem's scale) and ``lr_decay=f`` decays lr linearly to f·lr.
    """
    for pair in pairs:
        key, equals, _ = pair.partition("=")
        if not equals or not key or "." in key:
            raise ValueError(
                f"--option must read KEY=VALUE, a setting of --method {method} "
                f"(e.g. lr_decay=0.01); got {pair!r}"
            )
    overrides = parse_options([f"{method}.{pair}" for pair in pairs]).get(method, {})
    return method_options(method, problem_scale(problem), budget, overrides, problem.dim)


def picture(image: torch.Tensor) -> torch.Tensor:
    """An image as [H, W] or [H, W, 3] for imshow."""
    image = image.detach().float()
    return image.permute(1, 2, 0) if image.ndim == 3 and image.shape[0] == 3 else image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--problem",
        default="caustic",
        type=problem_spec,
        metavar="NAME[:KEY=VALUE...]",
        help=f"one of {sorted(vg.problems.PROBLEMS)}, with constructor arguments, e.g. "
        "caustic:resolution=32",
    )
    parser.add_argument("--method", default="zerograds")
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one of the method's settings, e.g. lr_decay=0.01, importance=false, "
        "sigma=0.2s (in units of the problem's scale); repeatable",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: <problem>.png")
    arguments = parser.parse_args()

    name, problem_arguments = arguments.problem
    try:
        problem = vg.problems.make(name, seed=arguments.seed, **dict(problem_arguments))
        options = settings(arguments.method, problem, arguments.budget, arguments.option)
    except ValueError as error:
        parser.error(str(error))
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
    axes[-1].set_title(f"{arguments.method} on {name}")
    figure.tight_layout()
    out = arguments.out or Path(f"{name}.png")
    figure.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
