"""Batches of complete episodes, collected in-process or through an Evaluator.

An update of :func:`voidgrad.rl.train` learns from E complete episodes. Each
episode e has its own seed: it seeds the environment's reset and the noise ξ
that draws the actions (:mod:`voidgrad.rl.networks`), so an episode is a pure
function of (policy, seed) — the same whichever way it was collected, and a
resumed run replays exactly.

Two collectors, one result (:class:`Episodes`):

* :class:`BatchedRollouts` steps E environments in this process, one policy
  call per time step for all episodes still running (fast for cheap
  simulators: no transfer of anything);
* :class:`EvaluatorRollouts` sends one episode per row through a
  :class:`~voidgrad.Evaluator` (``"process"`` or ``"ray"`` workers), for
  environments slow enough that running them side by side pays for shipping
  the policy's weights (see ``benchmarks/rl_rollouts.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from voidgrad.rl.networks import Policy
from voidgrad.validation import check_int

EnvSpec = str | Callable[[], Any]


def make_env(env: EnvSpec) -> Any:
    """A gymnasium environment from an id (``"CartPole-v1"``) or a zero-argument factory."""
    if isinstance(env, str):
        import gymnasium

        return gymnasium.make(env)
    if callable(env):
        return env()
    raise TypeError(f"env must be a gymnasium id or a callable returning an env; got {env!r}")


def episode_limit(env: Any, max_episode_steps: int | None) -> int:
    """T, the longest episode: ``max_episode_steps``, else the env's registered time limit."""
    if max_episode_steps is not None:
        return check_int("max_episode_steps", max_episode_steps, 1)
    spec = getattr(env, "spec", None)
    limit = getattr(spec, "max_episode_steps", None)
    if limit is None:
        raise ValueError(
            "this environment has no time limit; pass max_episode_steps so that every episode ends"
        )
    return int(limit)


@dataclass
class Episodes:
    """E complete episodes, padded to T steps.

    Attributes:
        obs: ``[E, T + 1, obs]``; row ``lengths[e]`` holds the observation after
            the last step (for bootstrapping a truncated episode).
        noise: ``[E, T, k]``, the ξ that drew each action.
        actions: ``[E, T, a]``: the sampled action before clipping to the
            action space (continuous), or one-hot (discrete).
        rewards: ``[E, T]``.
        mask: ``[E, T]``, True on the steps that happened.
        terminated: ``[E]``, True where the episode reached a terminal state
            (its return after the end is 0); False where the time limit cut it.

    Examples:
        >>> import torch, voidgrad as vg
        >>> episodes = vg.rl.Episodes(  # two episodes padded to T = 3 steps: lengths 3 and 2
        ...     obs=torch.zeros(2, 4, 1), noise=torch.zeros(2, 3, 1), actions=torch.zeros(2, 3, 1),
        ...     rewards=torch.ones(2, 3), mask=torch.tensor([[True] * 3, [True, True, False]]),
        ...     terminated=torch.tensor([True, True]))
        >>> episodes.lengths.tolist(), episodes.returns.tolist(), episodes.env_steps
        ([3, 2], [3.0, 2.0], 5)
    """

    obs: torch.Tensor
    noise: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    terminated: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """Steps of each episode: ``[E]``."""
        return self.mask.sum(1)

    @property
    def returns(self) -> torch.Tensor:
        """Undiscounted return of each episode: ``[E]``."""
        return (self.rewards * self.mask).sum(1)

    @property
    def env_steps(self) -> int:
        """Environment steps taken, all episodes together."""
        return int(self.mask.sum())


def collect(envs: list[Any], policy: Policy, seeds: list[int], limit: int) -> Episodes:
    """Run one episode in each of ``envs`` (seeded by ``seeds``), at most ``limit`` steps each.

    Episodes all start at t = 0 and step together, so the running ones share
    one batched policy call per step. Each episode's noise is drawn up front
    from its own seed.
    """
    count = len(envs)
    noise = torch.stack([policy.draw_noise(limit, torch.Generator().manual_seed(s)) for s in seeds])
    first = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    obs = np.zeros((count, limit + 1, np.size(first[0])), dtype=np.float32)
    obs[:, 0] = np.reshape(first, (count, -1))
    actions = np.zeros((count, limit, policy.action_size), dtype=np.float32)
    rewards = np.zeros((count, limit), dtype=np.float32)
    lengths = np.full(count, limit)
    terminated = np.zeros(count, dtype=bool)
    running = np.arange(count)
    with torch.no_grad():
        for t in range(limit):
            if running.size == 0:
                break
            dist = policy(torch.from_numpy(obs[running, t]))
            drawn = policy.act(dist, noise[running, t]).numpy()
            if policy.discrete:
                choices = drawn.argmax(-1)
                actions[running, t, choices] = 1.0
            else:
                actions[running, t] = drawn
            still = []
            for i, e in enumerate(running):
                if policy.discrete:
                    step_action: Any = int(choices[i])
                else:
                    space = envs[e].action_space
                    step_action = np.clip(drawn[i], space.low, space.high)
                observation, reward, done, truncated, _ = envs[e].step(step_action)
                obs[e, t + 1] = np.reshape(observation, -1)
                rewards[e, t] = reward
                if done or truncated:
                    lengths[e] = t + 1
                    terminated[e] = bool(done)
                else:
                    still.append(e)
            running = np.asarray(still, dtype=int)
    return Episodes(
        obs=torch.from_numpy(obs),
        noise=noise,
        actions=torch.from_numpy(actions),
        rewards=torch.from_numpy(rewards),
        mask=torch.from_numpy(np.arange(limit) < lengths[:, None]),
        terminated=torch.from_numpy(terminated),
    )


class BatchedRollouts:
    """E environments stepped in this process (see the module doc).

    Args:
        env: a gymnasium id or a zero-argument factory.
        episodes: E, episodes per batch (one environment each).
        max_episode_steps: T (default: the environment's time limit).

    Examples:
        >>> import voidgrad as vg
        >>> rollouts = vg.rl.BatchedRollouts("CartPole-v1", episodes=2, max_episode_steps=50)
        >>> episodes = rollouts.collect(vg.rl.CategoricalPolicy(obs_dim=4, actions=2), seeds=[0, 1])
        >>> episodes.rewards.shape[0], bool(episodes.lengths.max() <= 50)
        (2, True)
        >>> rollouts.close()
    """

    def __init__(self, env: EnvSpec, episodes: int, max_episode_steps: int | None = None):
        self.envs = [make_env(env) for _ in range(check_int("episodes", episodes, 1))]
        self.limit = episode_limit(self.envs[0], max_episode_steps)

    def collect(self, policy: Policy, seeds: list[int]) -> Episodes:
        return collect(self.envs, policy, seeds, self.limit)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class EpisodeFunction:
    """One episode as a black box: ``fn(policy weights [P], seed) -> packed episode [T + 1, C]``.

    The environment is made on first use in each worker and kept there.
    Columns: obs | noise | action | reward | mask | terminated (see :func:`pack`).
    """

    def __init__(self, env: EnvSpec, policy: Policy, limit: int):
        self.env = env
        self.policy = copy.deepcopy(policy)
        self.limit = limit
        self._env: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_env": None}

    def __call__(self, weights: torch.Tensor, seed: int) -> torch.Tensor:
        if self._env is None:
            self._env = make_env(self.env)
        nn.utils.vector_to_parameters(
            weights.to(torch.get_default_dtype()), self.policy.parameters()
        )
        return pack(collect([self._env], self.policy, [seed], self.limit))[0]


def pack(episodes: Episodes) -> torch.Tensor:
    """Episodes as one tensor ``[E, T + 1, C]`` (the last step row is padding)."""
    count, limit = episodes.rewards.shape

    def steps(x: torch.Tensor) -> torch.Tensor:  # [E, T, c] -> [E, T + 1, c]
        return torch.cat([x, x.new_zeros((count, 1, x.shape[-1]))], dim=1)

    ended = episodes.terminated.to(torch.float32).reshape(count, 1, 1).expand(count, limit + 1, 1)
    return torch.cat(
        [
            episodes.obs,
            steps(episodes.noise),
            steps(episodes.actions),
            steps(episodes.rewards.unsqueeze(-1)),
            steps(episodes.mask.unsqueeze(-1).to(torch.float32)),
            ended,
        ],
        dim=-1,
    )


def unpack(packed: torch.Tensor, obs_dim: int, noise_dim: int) -> Episodes:
    """The inverse of :func:`pack`."""
    obs, noise, rest = packed.split(
        [obs_dim, noise_dim, packed.shape[-1] - obs_dim - noise_dim], -1
    )
    actions, reward, mask, ended = rest.split([rest.shape[-1] - 3, 1, 1, 1], -1)
    return Episodes(
        obs=obs,
        noise=noise[:, :-1],
        actions=actions[:, :-1],
        rewards=reward[:, :-1, 0],
        mask=mask[:, :-1, 0] > 0.5,
        terminated=ended[:, 0, 0] > 0.5,
    )


class EvaluatorRollouts:
    """One episode per row through a :class:`~voidgrad.Evaluator` (see the module doc).

    Args:
        env: a gymnasium id or a zero-argument factory (it must pickle with
            cloudpickle to reach the workers).
        policy: the policy whose architecture the workers rebuild.
        backend: ``"process"`` or ``"ray"`` (any backend the Evaluator takes).
        workers: processes or actors (default: the CPUs available).
        max_episode_steps: T (default: the environment's time limit).
        timeout: seconds one episode may take before its worker is replaced.
        retries: further tries of an episode whose worker died.

    Examples:
        >>> import voidgrad as vg
        >>> policy = vg.rl.CategoricalPolicy(obs_dim=4, actions=2)
        >>> rollouts = vg.rl.EvaluatorRollouts(
        ...     "CartPole-v1", policy, backend="process", workers=1, max_episode_steps=50
        ... )
        >>> episodes = rollouts.collect(policy, seeds=[0, 1])  # one episode per worker task
        >>> episodes.rewards.shape[0], rollouts.evaluator.stats.evals
        (2, 2)
        >>> rollouts.close()
    """

    def __init__(
        self,
        env: EnvSpec,
        policy: Policy,
        backend: str = "process",
        workers: int | None = None,
        max_episode_steps: int | None = None,
        timeout: float | None = None,
        retries: int = 0,
    ):
        from voidgrad.evaluation import Evaluator

        probe = make_env(env)
        self.limit = episode_limit(probe, max_episode_steps)
        self.obs_dim = int(np.prod(probe.observation_space.shape))
        probe.close()
        self.evaluator = Evaluator(
            EpisodeFunction(env, policy, self.limit),
            backend,
            workers=workers,
            timeout=timeout,
            retries=retries,
        )

    def collect(self, policy: Policy, seeds: list[int]) -> Episodes:
        weights = nn.utils.parameters_to_vector(policy.parameters()).detach()
        packed = self.evaluator(weights.expand(len(seeds), -1), seeds)
        return unpack(packed, self.obs_dim, policy.noise_dim)

    def close(self) -> None:
        self.evaluator.close()
