"""Balance a pole with RELAX policy gradients (vg.rl), next to the actor-critic.

``vg.rl.train`` learns a CartPole-v1 policy from complete episodes. RELAX adds
an action-dependent control variate q_φ(s, z), trained on the gradient's
variance, to the actor-critic's state-value baseline; both stay unbiased. The
picture shows the mean return per update against environment steps, and the
variance of a one-episode gradient estimate along the run.

    .venv/bin/python examples/rl_cartpole.py --steps 40000

writes ``rl_cartpole.png`` and a resumable checkpoint per estimator
(``rl_cartpole-<estimator>.pt``; run again with more ``--steps`` to go on).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import voidgrad as vg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("rl_cartpole.png"))
    arguments = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (returns, variance) = plt.subplots(1, 2, figsize=(10, 3.6))
    for estimator in ("actor_critic", "relax"):
        result = vg.rl.train(
            "CartPole-v1",
            estimator,
            env_steps=arguments.steps,
            seed=arguments.seed,
            checkpoint=arguments.out.with_name(f"{arguments.out.stem}-{estimator}.pt"),
        )
        history = result.history
        print(result)
        steps = history.column("env_steps")
        returns.plot(steps, history.column("mean_return"), label=estimator)
        variance.plot(steps, np.log10(history.column("gradient_variance")), label=estimator)
    returns.set(xlabel="environment steps", ylabel="mean return", title="CartPole-v1")
    variance.set(xlabel="environment steps", ylabel="log10 tr Cov(ĝ), one episode")
    returns.legend()
    figure.tight_layout()
    figure.savefig(arguments.out, dpi=110)
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
