"""Rollout throughput for vg.rl: in-process batching, gymnasium vector envs, Evaluator workers.

What is measured
----------------
Environment steps per second while a (freshly initialised) policy acts, for
E = ``--episodes`` environments side by side, in four ways:

- **vg batched**: ``vg.rl.BatchedRollouts``, complete seeded episodes, one
  policy call per time step for all running episodes (what ``vg.rl.train``
  uses by default);
- **vg process**: ``vg.rl.EvaluatorRollouts`` with ``--workers`` processes,
  one episode per worker task (the policy's weights travel with each task);
- **gymnasium sync / async**: ``gymnasium.vector.SyncVectorEnv`` /
  ``AsyncVectorEnv`` (one process per env) stepped with the same batched
  policy call, auto-resetting, for the same number of steps.

Each runs on CartPole-v1 as it is (a step costs microseconds) and with a
``--delay`` ms of busy computation added to every step, standing in for an expensive
simulator. Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rl_rollouts.py --out benchmarks/results/rl
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import gymnasium
import torch

import voidgrad as vg
from common import write_results


class SlowStep(gymnasium.Wrapper):
    """Computes for ``delay`` seconds in every step: a stand-in for an expensive simulator.

    It spins rather than sleeps, so that it occupies a core as a simulator would.
    """

    def __init__(self, env: gymnasium.Env, delay: float):
        super().__init__(env)
        self.delay = delay

    def step(self, action: Any) -> Any:
        end = time.perf_counter() + self.delay
        while time.perf_counter() < end:
            pass
        return self.env.step(action)


def factory(delay: float):
    def make() -> gymnasium.Env:
        env = gymnasium.make("CartPole-v1")
        return SlowStep(env, delay) if delay > 0 else env

    return make


def episode_rate(rollouts: Any, policy: vg.rl.Policy, episodes: int, steps: int) -> float:
    """Steps per second of collecting whole batches until ``steps`` steps."""
    rollouts.collect(policy, list(range(episodes)))  # warm-up: workers start, envs are made
    done, batch, start = 0, 1, time.perf_counter()
    while done < steps:
        seeds = [batch * episodes + e for e in range(episodes)]
        done += rollouts.collect(policy, seeds).env_steps
        batch += 1
    return done / (time.perf_counter() - start)


def vector_rate(vector: Any, policy: vg.rl.Policy, steps: int) -> float:
    """Steps per second of a gymnasium vector env acting with ``policy`` for ``steps`` steps."""
    generator = torch.Generator().manual_seed(0)
    obs, _ = vector.reset(seed=0)
    count = vector.num_envs
    done, start = 0, time.perf_counter()
    with torch.no_grad():
        while done < steps:
            dist = policy(torch.as_tensor(obs, dtype=torch.float32))
            z = policy.act(dist, policy.draw_noise(count, generator))
            obs, *_ = vector.step(z.argmax(-1).numpy())
            done += count
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20_000, help="steps per fast measurement")
    parser.add_argument("--slow-steps", type=int, default=2_000, help="steps per slow one")
    parser.add_argument("--delay", type=float, default=1.0, help="ms added to each slow step")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rl"))
    args = parser.parse_args()
    torch.manual_seed(0)
    policy = vg.rl.CategoricalPolicy(4, 2)
    rows = []
    for label, delay, steps in (
        ("CartPole-v1", 0.0, args.steps),
        (f"CartPole-v1 + {args.delay:g} ms/step", args.delay / 1000, args.slow_steps),
    ):
        make = factory(delay)
        ways = {
            "vg batched": lambda make=make: vg.rl.BatchedRollouts(make, args.episodes),
            "vg process": lambda make=make: vg.rl.EvaluatorRollouts(
                make, policy, "process", args.workers
            ),
        }
        for name, build in ways.items():
            rollouts = build()
            try:
                rate = episode_rate(rollouts, policy, args.episodes, steps)
            finally:
                rollouts.close()
            rows.append({"env": label, "way": name, "steps_per_second": rate})
            print(f"{label:28s} {name:18s} {rate:10.0f} steps/s", flush=True)
        for name, vector_type in (
            ("gymnasium sync", gymnasium.vector.SyncVectorEnv),
            ("gymnasium async", gymnasium.vector.AsyncVectorEnv),
        ):
            vector = vector_type([make] * args.episodes)
            try:
                rate = vector_rate(vector, policy, steps)
            finally:
                vector.close()
            rows.append({"env": label, "way": name, "steps_per_second": rate})
            print(f"{label:28s} {name:18s} {rate:10.0f} steps/s", flush=True)
    write_results(
        args.out,
        "rl_rollouts",
        "environment steps per second of four ways to run E environments side by side",
        rows,
        episodes=args.episodes,
        workers=args.workers,
        delay_ms=args.delay,
    )


if __name__ == "__main__":
    main()
