"""``vg.rl.train``: a policy-gradient run with the actor-critic, LAX or RELAX estimator.

:func:`train` checks its arguments, builds the networks and the episode
collector, and hands a :class:`~voidgrad.rl.algorithm.PolicyGradient` to the
one run loop (:func:`voidgrad.run.run`), which owns the budget (environment
steps), the history, the progress bar, the callbacks and the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from voidgrad import registry
from voidgrad.evaluation.evaluator import derived_seed
from voidgrad.rl.algorithm import PolicyGradient, PolicyGradientSettings
from voidgrad.rl.episodes import BatchedRollouts, EnvSpec, EvaluatorRollouts, make_env
from voidgrad.rl.gradients import Estimator, PolicyGradientMethod
from voidgrad.rl.networks import (
    ActionCorrection,
    CategoricalPolicy,
    GaussianPolicy,
    Policy,
    ValueNetwork,
)
from voidgrad.rl.result import RLHistory, RLResult, UpdateRecord
from voidgrad.run import record_callback, run
from voidgrad.run.checkpoint import check_checkpoint_path, identity_value
from voidgrad.validation import check_int

__all__ = ["BACKENDS", "RLHistory", "RLResult", "UpdateRecord", "train"]

BACKENDS = ("batched", "process", "ray")


def train(
    env: EnvSpec,
    estimator: Estimator = "actor_critic",
    *,
    env_steps: int = 100_000,
    episodes_per_update: int = 8,
    policy: Policy | None = None,
    gamma: float = 0.99,
    gae_lambda: float = 0.95,
    lr: float = 3e-3,
    value_lr: float = 1e-2,
    value_steps: int = 10,
    control_lr: float = 1e-3,
    width: int = 64,
    max_episode_steps: int | None = None,
    backend: str = "batched",
    workers: int | None = None,
    seed: int = 0,
    track_variance: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    callback: Callable[[UpdateRecord], bool | None] | None = None,
    progress: bool = True,
) -> RLResult:
    """Train a policy on a gymnasium environment by policy gradients (see :mod:`voidgrad.rl`).

    Each update collects ``episodes_per_update`` complete episodes, fits
    nothing before estimating: λ-returns come from the current value network,
    the policy takes one Adam step along the estimator's gradient, the value
    network ``value_steps`` Adam steps on the returns, and (LAX, RELAX) the
    action-dependent correction q_φ one step on the gradient's variance.

    Args:
        env: a gymnasium id (``"CartPole-v1"``) or a zero-argument factory.
        estimator: a ``"policy-gradient"`` method of :mod:`voidgrad.registry`:
            ``"actor_critic"`` (REINFORCE with a value baseline), ``"lax"``
            (continuous actions) or ``"relax"`` (discrete actions).
        env_steps: stop after this many environment steps (the update that
            crosses it completes).
        episodes_per_update: E, complete episodes per update (≥ 2 to track
            the gradient variance).
        policy: a :class:`~voidgrad.rl.GaussianPolicy` /
            :class:`~voidgrad.rl.CategoricalPolicy` or anything with their
            interface (default: built from the environment's spaces).
        gamma: discount γ.
        gae_lambda: λ of the λ-returns (1: Monte Carlo returns).
        lr: the policy's Adam step size.
        value_lr: the value network's Adam step size.
        value_steps: Adam steps of the value network per update.
        control_lr: the correction's Adam step size (LAX, RELAX).
        width: hidden units of the default networks.
        max_episode_steps: cut episodes here (default: the env's time limit).
        backend: ``"batched"`` (all episodes in this process, one policy call
            per step) or ``"process"`` / ``"ray"`` (one episode per worker task
            through a :class:`~voidgrad.Evaluator`; for slow environments).
        workers: processes or Ray actors of those backends (an int >= 1, or
            None for the CPUs available); not for ``"batched"``.
        seed: seeds the networks, the episodes and the estimator's sampling;
            a run is a function of its seed, whatever the backend.
        track_variance: record the per-update gradient variance (E extra
            backward passes per update; 2E for LAX and RELAX, which also
            record the actor-critic's on the same episodes).
        checkpoint: save the run here every ``checkpoint_every`` updates and at
            the end; a run started with an existing checkpoint resumes it and
            ends bit for bit where an uninterrupted run would, even after a
            SIGKILL (losing at most the updates since the last save). The file
            is the run loop's one layout (:mod:`voidgrad.run`: the networks,
            their optimizers and the return scale under ``"algorithm"``, the
            step count, environment steps and history under ``"loop"``); as
            with :func:`voidgrad.minimize` it holds tensors, numbers and
            strings only (no code runs when it loads), a damaged one raises a
            :class:`~voidgrad.run.checkpoint.CheckpointError` naming it,
            and it resumes only the run that wrote it: ``env`` (the id, or a
            fingerprint of the factory's code), ``estimator``, ``seed``,
            ``episodes_per_update``, ``policy`` (its class's code), ``gamma``,
            ``gae_lambda``, the learning rates, ``value_steps``, ``width`` and
            ``max_episode_steps`` must be the same; ``env_steps`` may grow (a
            finished run continues) and ``backend`` may change.
            ``<checkpoint>.lock`` is locked while the run goes.
        checkpoint_every: updates between checkpoints.
        callback: ``callback(record)`` with each :class:`UpdateRecord`, or
            ``callback(record, state)`` to see the run too (a
            :class:`~voidgrad.run.RunState`: ``state.algorithm.policy``,
            ``.value``, ``.correction``, their optimizers); returning ``True``
            stops the run.
        progress: show a progress bar.

    Examples:
        >>> import voidgrad as vg
        >>> result = vg.rl.train("CartPole-v1", "actor_critic", env_steps=300,
        ...                      episodes_per_update=4, width=16, seed=0, progress=False)
        >>> result.env_steps >= 300, result.updates == len(result.history)
        (True, True)
        >>> record = result.history[-1]  # an UpdateRecord
        >>> record.mean_return > 0 and record.gradient_variance > 0
        True
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    check_int("env_steps", env_steps, 1)
    check_int("checkpoint_every", checkpoint_every, 1)
    if workers is not None:
        check_int("workers", workers, 1)
        if backend == "batched":
            raise ValueError(
                "workers is for backend='process' or 'ray'; backend='batched' runs every "
                f"episode in this process (got workers={workers!r})"
            )
    path = check_checkpoint_path(checkpoint)
    settings = PolicyGradientSettings(
        estimator,
        seed,
        episodes_per_update,
        gamma,
        gae_lambda,
        lr,
        value_lr,
        value_steps,
        control_lr,
        width,
        max_episode_steps,
        track_variance,
    )
    # the policy as given (None for the default), before _networks builds one
    identity = {"env": identity_value(env), "policy": identity_value(policy), **settings.identity()}
    probe = make_env(env)
    try:
        obs_dim, policy, correction = _networks(probe, settings.method, policy, width, seed)
    finally:
        probe.close()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, 2**32 + 1))
        value = ValueNetwork(obs_dim, width)
    rollouts: BatchedRollouts | EvaluatorRollouts = (
        BatchedRollouts(env, episodes_per_update, max_episode_steps)
        if backend == "batched"
        else EvaluatorRollouts(env, policy, backend, workers, max_episode_steps)
    )
    state = run(
        PolicyGradient(policy, value, correction, rollouts, settings),
        env_steps,
        unit="environment steps",
        checkpoint=path,
        identity=identity,
        checkpoint_every=checkpoint_every,
        callbacks=() if callback is None else (record_callback(callback),),
        progress=progress,
        description=estimator,
        postfix=lambda record: {"mean_return": f"{record.mean_return:.4g}"},
    )
    history = state.history
    assert isinstance(history, RLHistory)  # the loop keeps the algorithm's history_type
    return RLResult(
        policy, value, correction, estimator, state.spent, state.step, history, state.message
    )


def _networks(
    env: Any, method: PolicyGradientMethod, policy: Policy | None, width: int, seed: int
) -> tuple[int, Policy, nn.Module | None]:
    """The observation size, the policy and (LAX, RELAX) the correction q_φ, checked against env."""
    import gymnasium

    observations, actions = env.observation_space, env.action_space
    if not isinstance(observations, gymnasium.spaces.Box):
        raise ValueError(f"vg.rl needs Box observations; this env has {observations}")
    obs_dim = int(np.prod(observations.shape))
    if isinstance(actions, gymnasium.spaces.Discrete):
        discrete, action_dim = True, int(actions.n)
    elif isinstance(actions, gymnasium.spaces.Box) and len(actions.shape) == 1:
        discrete, action_dim = False, int(actions.shape[0])
    else:
        raise ValueError(f"vg.rl needs Discrete or 1-D Box actions; this env has {actions}")
    if not method.handles(discrete):
        kind = "discrete" if discrete else "continuous"
        others = [
            name
            for name in registry.names("policy-gradient")
            if registry.method(name, ["policy-gradient"]).make().handles(discrete)
        ]
        raise ValueError(
            f"estimator {method.name!r} needs {method.actions} actions; this env's actions are "
            f"{kind} (estimators for them: {', '.join(repr(name) for name in others)})"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, 2**32))
        if policy is None:
            policy = (
                CategoricalPolicy(obs_dim, action_dim, width)
                if discrete
                else GaussianPolicy(obs_dim, action_dim, width)
            )
        correction = (
            ActionCorrection(obs_dim, action_dim, width) if method.learned_control else None
        )
    if not isinstance(policy, Policy):
        raise TypeError(
            "policy must be a vg.rl.Policy (GaussianPolicy, CategoricalPolicy or a subclass); "
            f"got {type(policy).__name__}"
        )
    if bool(policy.discrete) != discrete:
        kind = "discrete" if discrete else "continuous"
        raise ValueError(f"the policy's actions do not match the env's {kind} action space")
    return obs_dim, policy, correction
