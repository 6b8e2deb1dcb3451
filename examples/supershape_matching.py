"""Learn a distribution of shapes from pictures alone, through a renderer with no gradient.

Target images show supershapes whose two parameters (m lobes, spike exponent n)
come from a hidden log-normal distribution. ``vg.adversarial`` starts from the
wrong mean and a four times too wide spread, renders samples with a hard-edged
rasterizer, and learns μ and σ from a discriminator's verdicts alone.

    .venv/bin/python examples/supershape_matching.py --steps 800

writes ``supershape_matching.png`` (targets, final renders, parameter curves).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import voidgrad as vg
from voidgrad.problems import SupershapeMatching


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--out", type=Path, default=Path("supershape_matching.png"))
    arguments = parser.parse_args()

    task = SupershapeMatching(seed=0)
    targets = task.targets(1024)
    result = vg.adversarial(task.learner(), task.render, targets, steps=arguments.steps, seed=0)

    scale = result.parameters["log_scale"].exp()
    print(f"learned μ = {result.parameters['loc'].tolist()}, σ = {scale.tolist()}")
    print(f"hidden  μ = {task.hidden_loc.tolist()}, σ = {task.hidden_scale.tolist()}")
    print(f"wrote {result.save_figure(arguments.out, targets)}")


if __name__ == "__main__":
    main()
