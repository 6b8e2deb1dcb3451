"""Dither an image by maximizing its expected SSIM: one categorical choice per pixel.

Every pixel picks black or white (``--levels`` greys in general); the choices
are independent categoricals with free logits θ, and the cost of a sample is
1 − SSIM(image, target), a black box to the score-function estimator:

    minimize  E_{x ~ OneHotCategorical(θ)} [1 − SSIM(x @ palette, target)]

through ``vg.expectation`` with ``vg.ScoreFunction("leave_one_out")`` and
Adam on θ. The picture shows the target, the most likely image under θ, one
sample, and the expected SSIM along the run.

    .venv/bin/python examples/dither_ssim.py --steps 1000

``benchmarks/dither_ssim.py`` compares estimators (RELAX, REBAR,
Gumbel-softmax) on the same problem.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.distributions import OneHotCategorical

import voidgrad as vg
from voidgrad.problems import DitherProblem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("dither_ssim.png"))
    arguments = parser.parse_args()

    torch.manual_seed(0)
    problem = DitherProblem("procedural", arguments.size, arguments.levels)
    logits = torch.zeros(arguments.size, arguments.size, arguments.levels, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    estimator = vg.ScoreFunction("leave_one_out", seed=0)
    expected_ssim = []
    for _ in range(arguments.steps):
        loss = vg.expectation(
            problem.cost, OneHotCategorical(logits=logits), arguments.samples, estimator
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        expected_ssim.append(1 - float(loss.detach()))
    with torch.no_grad():
        likeliest = problem.palette[logits.argmax(-1)]
        sample = problem.render(OneHotCategorical(logits=logits).sample())
    print(f"expected SSIM {expected_ssim[-1]:.3f}, most likely image {problem.ssim(likeliest):.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(13, 3.3))
    for axis, image, title in zip(
        axes,
        (problem.target, likeliest, sample),
        ("target", "most likely under θ", "a sample"),
        strict=False,
    ):
        axis.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(title)
        axis.axis("off")
    axes[-1].plot(expected_ssim)
    axes[-1].set(xlabel="step", ylabel="expected SSIM (estimate)")
    figure.tight_layout()
    figure.savefig(arguments.out, dpi=100)
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
