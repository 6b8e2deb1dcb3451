"""Learn where and how big a ball tends to be from Blender renders alone (vg.adversarial).

Target images show the ball of ``voidgrad.integrations.blender.ball_scene`` at
x ~ Normal(0.3, 0.3) with scale ~ LogNormal(log 0.8, 0.15), rendered by
Blender's Workbench engine. ``vg.adversarial`` starts from x ~ Normal(−0.6,
0.8), scale ~ LogNormal(0, 0.5) and learns the four parameters from a
discriminator's verdicts; every render runs in one of two Blender worker
processes.

    .venv-integrations/bin/python examples/blender_adversarial.py --steps 300

writes ``blender_adversarial.png`` (targets, renders, parameter curves).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

import voidgrad as vg
from voidgrad.integrations.blender import BlenderRenderer, ball_scene

HIDDEN_LOC = torch.tensor([0.3, math.log(0.8)])
HIDDEN_STD = torch.tensor([0.3, 0.15])


def place_ball(bpy: Any, theta: torch.Tensor) -> None:
    """θ = (x, log scale): the ball slides along x and grows, resting on the floor."""
    ball = bpy.data.objects["Ball"]
    x, scale = float(theta[0]), math.exp(float(theta[1]))
    ball.location = (x, 0.0, 0.5 * scale)
    ball.scale = (scale, scale, scale)


class BallDistribution(nn.Module):
    """(x, log scale) ~ Normal(loc, exp(log_std)), independent components."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.tensor([-0.6, 0.0]))
        self.log_std = nn.Parameter(torch.tensor([0.8, 0.5]).log())

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.log_std.exp()), 1)


def hidden_samples(n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return HIDDEN_LOC + HIDDEN_STD * torch.randn(n, 2, generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("blender_adversarial.png"))
    arguments = parser.parse_args()

    renderer = BlenderRenderer(
        ball_scene, place_ball, engine="BLENDER_WORKBENCH", resolution=(32, 32), channels_first=True
    )
    started = time.perf_counter()
    with vg.Evaluator(renderer, backend="process", workers=arguments.workers) as evaluator:
        targets = evaluator(hidden_samples(256))[:, :3]
        result = vg.adversarial(
            BallDistribution(),
            lambda z: evaluator(z)[:, :3],
            targets,
            steps=arguments.steps,
            samples=arguments.samples,
            seed=0,
        )
        renders = evaluator.stats.evals
    seconds = time.perf_counter() - started
    loc, std = result.parameters["loc"], result.parameters["log_std"].exp()
    print(f"learned (x, log scale): mean {loc.tolist()}, std {std.tolist()}")
    print(f"hidden  (x, log scale): mean {HIDDEN_LOC.tolist()}, std {HIDDEN_STD.tolist()}")
    print(f"{renders} Blender renders in {seconds:.0f} s ({renders / seconds:.1f}/s)")
    print(f"wrote {result.save_figure(arguments.out, targets)}")


if __name__ == "__main__":
    main()
