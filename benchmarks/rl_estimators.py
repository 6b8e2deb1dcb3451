"""Actor-critic against LAX (continuous actions) and RELAX (discrete): returns and variance.

What is measured
----------------
For each environment and estimator, ``vg.rl.train`` runs ``--steps``
environment steps on each of ``--seeds`` (same budget, same settings, the
library's defaults otherwise). Besides CartPole-v1 (RELAX) and
InvertedPendulum-v5 (LAX; needs ``voidgrad[mujoco]``), a one-step bandit with
reward −(a − 2)² (``--bandit-steps``, 64 episodes per update, control step
size 1e-2) shows the case where the action is all that matters. Along every run
it records, per update:

- the mean return of the update's episodes (the learning curve);
- tr Cov of a one-episode policy-gradient estimate (from the spread of the
  update's per-episode gradients), i.e. the gradient variance along training;
- for LAX and RELAX also the actor-critic's variance on the *same* episodes
  and policy (q ≡ 0): a paired measure of what the learned correction removes.

Reported per (env, estimator), medians over seeds: the final return (mean
over the last 10 % of updates), the mean return over the whole run (area
under the learning curve), the median log10 variance over updates and, for
LAX/RELAX, the median log10 of the paired ratio var / var(actor-critic).

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rl_estimators.py --out benchmarks/results/rl
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

import voidgrad as vg
from common import write_results


class QuadraticBandit(gymnasium.Env):
    """One step, reward −(a − 2)²: the action is all that matters (a control's best case)."""

    observation_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-5, 5, (1,), np.float32)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action: Any) -> Any:
        return np.ones(1, np.float32), float(-((action[0] - 2) ** 2)), True, False, {}


PAIRS = {
    "CartPole-v1": ("actor_critic", "relax"),
    "InvertedPendulum-v5": ("actor_critic", "lax"),
    "Pendulum-v1": ("actor_critic", "lax"),
    "bandit": ("actor_critic", "lax"),
}
#: what vg.rl.train gets for each name besides the defaults: the env and its options. The
#: bandit's 64 one-step episodes per update give the variance objective enough samples,
#: and its correction a larger step (with the defaults, 8 and 1e-3, q learns too little).
SPECS: dict[str, tuple[Any, dict[str, Any]]] = {
    "bandit": (
        QuadraticBandit,
        {"max_episode_steps": 1, "episodes_per_update": 64, "control_lr": 1e-2},
    ),
}


def summarize(history: vg.rl.RLHistory) -> dict[str, float]:
    returns = np.array(history.column("mean_return"))
    variance = np.log10(history.column("gradient_variance"))
    reference = np.log10(history.column("actor_critic_variance"))
    tail = max(1, len(returns) // 10)
    summary = {
        "final_return": float(returns[-tail:].mean()),
        "average_return": float(returns.mean()),
        "log10_variance": float(np.median(variance)),
    }
    if np.isfinite(reference).all():
        summary["log10_ratio_to_actor_critic"] = float(np.median(variance - reference))
    return summary


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(run["env"] for run in runs))
    figure, axes = plt.subplots(2, len(envs), figsize=(5 * len(envs), 7), squeeze=False)
    colors = {"actor_critic": "tab:blue", "lax": "tab:red", "relax": "tab:red"}
    for column, env in enumerate(envs):
        for run in (r for r in runs if r["env"] == env):
            style = {"color": colors[run["estimator"]], "alpha": 0.7, "lw": 1}
            label = run["estimator"] if run["seed"] == runs[0]["seed"] else None
            axes[0, column].plot(run["env_steps"], run["mean_return"], label=label, **style)
            axes[1, column].plot(run["env_steps"], np.log10(run["gradient_variance"]), **style)
        axes[0, column].set_title(env)
        axes[0, column].set_ylabel("mean return")
        axes[1, column].set_ylabel("log10 tr Cov(ĝ), one episode")
        axes[1, column].set_xlabel("environment steps")
        axes[0, column].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--envs", nargs="+", default=["CartPole-v1", "InvertedPendulum-v5", "bandit"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--bandit-steps", type=int, default=12_800)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rl"))
    args = parser.parse_args()
    runs = []
    for env in args.envs:
        for estimator in PAIRS[env]:
            for seed in args.seeds:
                start = time.perf_counter()
                spec, options = SPECS.get(env, (env, {}))
                result = vg.rl.train(
                    spec,
                    estimator,
                    env_steps=args.bandit_steps if env == "bandit" else args.steps,
                    seed=seed,
                    progress=False,
                    **options,
                )
                history = result.history
                run = {
                    "env": env,
                    "estimator": estimator,
                    "seed": seed,
                    "seconds": time.perf_counter() - start,
                    **{
                        name: history.column(name)
                        for name in (
                            "env_steps",
                            "mean_return",
                            "gradient_variance",
                            "actor_critic_variance",
                        )
                    },
                    **summarize(history),
                }
                runs.append(run)
                print(
                    f"{env} {estimator} seed {seed}: final {run['final_return']:.1f}, "
                    f"average {run['average_return']:.1f}, log10 var {run['log10_variance']:.2f}, "
                    f"{run['seconds']:.0f} s",
                    flush=True,
                )
    print(
        f"\n{'env':22s} {'estimator':13s} {'final':>8s} {'mean':>8s} {'log var':>8s} {'ratio':>7s}"
    )
    for env in args.envs:
        for estimator in PAIRS[env]:
            mine = [r for r in runs if r["env"] == env and r["estimator"] == estimator]
            medians = {
                key: statistics.median(r[key] for r in mine)
                for key in ("final_return", "average_return", "log10_variance")
            }
            ratio = (
                f"{statistics.median(r['log10_ratio_to_actor_critic'] for r in mine):7.2f}"
                if "log10_ratio_to_actor_critic" in mine[0]
                else "      -"
            )
            print(
                f"{env:22s} {estimator:13s} {medians['final_return']:8.1f} "
                f"{medians['average_return']:8.1f} {medians['log10_variance']:8.2f} {ratio}"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    plot(runs, args.out / "rl_estimators.png")
    write_results(
        args.out,
        "rl_estimators",
        "returns and policy-gradient variance of actor-critic vs LAX / RELAX at equal env steps",
        runs,
        steps=args.steps,
        seeds=args.seeds,
    )


if __name__ == "__main__":
    main()
