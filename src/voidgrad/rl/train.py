"""``vg.rl.train``: a policy-gradient loop with the actor-critic, LAX or RELAX estimator."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from voidgrad.estimators.relax import variance_step
from voidgrad.evaluation.evaluator import derived_seed
from voidgrad.optimize.checkpoint import (
    FORMAT,
    check_checkpoint_path,
    check_same_run,
    identity_value,
    load_checkpoint,
    restoring,
    run_lock,
    save_checkpoint,
)
from voidgrad.optimize.result import Records
from voidgrad.rl.episodes import BatchedRollouts, EnvSpec, EvaluatorRollouts, make_env
from voidgrad.rl.gradients import (
    ESTIMATORS,
    Estimator,
    episode_surrogates,
    flatten,
    gradient_variance,
    lambda_returns,
    per_episode_gradients,
)
from voidgrad.rl.networks import (
    ActionCorrection,
    CategoricalPolicy,
    GaussianPolicy,
    Policy,
    ValueNetwork,
)
from voidgrad.validation import check_int, check_positive, check_unit_interval

BACKENDS = ("batched", "process", "ray")
_KIND = "vg.rl.train"
_SAVED = (
    "policy",
    "value",
    "correction",
    "policy_optimizer",
    "value_optimizer",
    "control_optimizer",
    "update",
    "env_steps",
    "seconds",
    "return_scale",
    "history",
)


@dataclass(frozen=True)
class UpdateRecord:
    """One update of a run.

    Attributes:
        update: 1-based update number.
        env_steps: environment steps so far.
        mean_return: mean undiscounted return of this update's episodes.
        gradient_variance: tr Cov of a one-episode policy-gradient estimate,
            from the spread of this update's per-episode gradients (NaN when
            not tracked).
        actor_critic_variance: for LAX and RELAX, the same quantity for the
            actor-critic estimate (q ≡ 0) on the same episodes and policy: the
            paired reference that shows what q_φ removes (NaN otherwise).
        value_loss: mean squared error of V on this update's returns, before
            its fit.
        seconds: wall time since the run started (summed over resumed parts).

    Examples:
        >>> import voidgrad as vg
        >>> records = []
        >>> _ = vg.rl.train("CartPole-v1", "relax", env_steps=150, width=16, seed=0,
        ...                 callback=records.append, progress=False)
        >>> record = records[0]
        >>> record.update, record.mean_return > 0, record.actor_critic_variance > 0
        (1, True, True)
    """

    update: int
    env_steps: int
    mean_return: float
    gradient_variance: float
    actor_critic_variance: float
    value_loss: float
    seconds: float


class RLHistory(Records[UpdateRecord]):
    """The per-update records of a ``vg.rl.train`` run, oldest first.

    Examples:
        >>> import voidgrad as vg
        >>> result = vg.rl.train("CartPole-v1", env_steps=150, width=16, seed=0, progress=False)
        >>> history = result.history  # one UpdateRecord per update
        >>> history.column("update")[:2]
        [1, 2]
        >>> history.column("env_steps")[-1] == result.env_steps
        True
    """

    record_type = UpdateRecord


@dataclass
class RLResult:
    """What :func:`train` returns: the trained networks and the history.

    Examples:
        >>> import torch, voidgrad as vg
        >>> result = vg.rl.train("CartPole-v1", env_steps=150, width=16, seed=0, progress=False)
        >>> result.estimator, result.correction is None  # the actor-critic has no q_φ
        ('actor_critic', True)
        >>> obs = torch.zeros(1, 4)
        >>> result.policy(obs).probs.shape, result.value(obs).shape
        (torch.Size([1, 2]), torch.Size([1]))
    """

    policy: Policy
    value: nn.Module
    correction: nn.Module | None
    estimator: str
    env_steps: int
    updates: int
    history: RLHistory = field(default_factory=RLHistory)
    message: str = ""

    def __repr__(self) -> str:
        last = self.history[-1].mean_return if self.history else float("nan")
        return (
            f"RLResult(estimator={self.estimator!r}, env_steps={self.env_steps}, "
            f"updates={self.updates}, last_mean_return={last:.4g}, message={self.message!r})"
        )


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
        estimator: ``"actor_critic"`` (REINFORCE with a value baseline),
            ``"lax"`` (continuous actions) or ``"relax"`` (discrete actions).
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
            the end; a run started with an existing checkpoint resumes it. As
            with :func:`voidgrad.minimize`, the file holds tensors, numbers and
            strings only (no code runs when it loads), a damaged one raises a
            :class:`~voidgrad.optimize.checkpoint.CheckpointError` naming it,
            and it resumes only the run that wrote it: ``env`` (the id, or a
            fingerprint of the factory's code), ``estimator``, ``seed``,
            ``episodes_per_update``, ``policy`` (its class's code), ``gamma``,
            ``gae_lambda``, the learning rates, ``value_steps``, ``width`` and
            ``max_episode_steps`` must be the same; ``env_steps`` may grow.
            ``<checkpoint>.lock`` is locked while the run goes.
        checkpoint_every: updates between checkpoints.
        callback: called with each :class:`UpdateRecord`; returning ``True``
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
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    check_int("env_steps", env_steps, 1)
    episodes = check_int("episodes_per_update", episodes_per_update, 1)
    check_int("value_steps", value_steps, 0)
    check_int("checkpoint_every", checkpoint_every, 1)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    check_int("seed", seed, 0)
    if workers is not None:
        check_int("workers", workers, 1)
        if backend == "batched":
            raise ValueError(
                "workers is for backend='process' or 'ray'; backend='batched' runs every "
                f"episode in this process (got workers={workers!r})"
            )
    path = check_checkpoint_path(checkpoint)
    check_unit_interval("gamma", gamma)
    check_unit_interval("gae_lambda", gae_lambda)
    for name, step_size in (("lr", lr), ("value_lr", value_lr), ("control_lr", control_lr)):
        check_positive(name, step_size)

    identity = {
        "env": identity_value(env),
        "estimator": estimator,
        "seed": seed,
        "episodes_per_update": episodes,
        "policy": identity_value(policy),
        "gamma": gamma,
        "gae_lambda": gae_lambda,
        "lr": lr,
        "value_lr": value_lr,
        "value_steps": value_steps,
        "control_lr": control_lr,
        "width": width,
        "max_episode_steps": max_episode_steps,
    }
    with contextlib.nullcontext() if path is None else run_lock(path):
        probe = make_env(env)
        obs_dim, policy, correction = _networks(probe, estimator, policy, width, seed)
        probe.close()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(seed, 2**32 + 1))
            value = ValueNetwork(obs_dim, width)
        policy_optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        value_optimizer = torch.optim.Adam(value.parameters(), lr=value_lr)
        control_optimizer = (
            None if correction is None else torch.optim.Adam(correction.parameters(), lr=control_lr)
        )
        history = RLHistory()
        update, steps_done, seconds_before = 0, 0, 0.0
        return_scale: float | None = None
        saved = None if path is None else load_checkpoint(path, _KIND, _SAVED)
        if saved is not None:
            assert path is not None
            check_same_run(saved["run"], identity, path)
            with restoring(path):
                policy.load_state_dict(saved["policy"])
                value.load_state_dict(saved["value"])
                policy_optimizer.load_state_dict(saved["policy_optimizer"])
                value_optimizer.load_state_dict(saved["value_optimizer"])
                if correction is not None and control_optimizer is not None:
                    correction.load_state_dict(saved["correction"])
                    control_optimizer.load_state_dict(saved["control_optimizer"])
                update, steps_done = int(saved["update"]), int(saved["env_steps"])
                seconds_before = float(saved["seconds"])
                return_scale = (
                    None if saved["return_scale"] is None else float(saved["return_scale"])
                )
                history = RLHistory(UpdateRecord(**record) for record in saved["history"])

        started = time.perf_counter()
        message = ""

        def snapshot() -> dict[str, Any]:
            return {
                "format": FORMAT,
                "kind": _KIND,
                "run": identity,
                "policy": policy.state_dict(),
                "value": value.state_dict(),
                "correction": None if correction is None else correction.state_dict(),
                "policy_optimizer": policy_optimizer.state_dict(),
                "value_optimizer": value_optimizer.state_dict(),
                "control_optimizer": (
                    None if control_optimizer is None else control_optimizer.state_dict()
                ),
                "update": update,
                "env_steps": steps_done,
                "seconds": seconds_before + time.perf_counter() - started,
                "return_scale": return_scale,
                "history": history.to_dicts(),
            }

        rollouts: BatchedRollouts | EvaluatorRollouts = (
            BatchedRollouts(env, episodes, max_episode_steps)
            if backend == "batched"
            else EvaluatorRollouts(env, policy, backend, workers, max_episode_steps)
        )
        bar = tqdm(total=env_steps, initial=min(steps_done, env_steps), disable=not progress)
        try:
            while steps_done < env_steps:
                seeds = [derived_seed(seed, update * episodes + e) for e in range(episodes)]
                batch = rollouts.collect(policy, seeds)
                with torch.no_grad():
                    values = value(batch.obs)
                returns = lambda_returns(batch, values, gamma, gae_lambda)
                steps = flatten(batch, returns, values)
                generator = torch.Generator().manual_seed(derived_seed(seed, 2**33 + update))
                if return_scale is None:  # the first batch sets the units of q_φ's output
                    return_scale = _spread(steps.returns)
                surrogates, square_norm = episode_surrogates(
                    estimator,
                    policy,
                    correction,
                    steps,
                    generator,
                    correction is not None,
                    return_scale,
                )
                parameters = list(policy.parameters())
                variance = reference_variance = math.nan
                if track_variance:
                    variance = _variance(surrogates, parameters, return_scale)
                    if correction is not None:
                        plain, _ = episode_surrogates(
                            "actor_critic", policy, None, steps, generator, False, return_scale
                        )
                        reference_variance = _variance(plain, parameters, return_scale)
                policy_optimizer.zero_grad()
                surrogates.mean().backward(inputs=parameters, retain_graph=correction is not None)
                if correction is not None and control_optimizer is not None:
                    variance_step(control_optimizer, list(correction.parameters()), square_norm)
                policy_optimizer.step()  # after the variance step, which differentiates through θ
                value_loss = _fit_value(
                    value, value_optimizer, steps.obs, steps.returns, value_steps
                )
                # later batches use a running spread, fixed before they are drawn (ĝ stays unbiased)
                return_scale = 0.9 * return_scale + 0.1 * _spread(steps.returns)
                update += 1
                steps_done += batch.env_steps
                record = UpdateRecord(
                    update=update,
                    env_steps=steps_done,
                    mean_return=float(batch.returns.mean()),
                    gradient_variance=variance,
                    actor_critic_variance=reference_variance,
                    value_loss=value_loss,
                    seconds=seconds_before + time.perf_counter() - started,
                )
                history.append(record)
                bar.update(min(batch.env_steps, max(env_steps - bar.n, 0)))
                bar.set_postfix(mean_return=f"{record.mean_return:.4g}", refresh=False)
                if callback is not None and callback(record) is True:
                    message = "stopped by the callback"
                    break
                if path is not None and update % checkpoint_every == 0:
                    save_checkpoint(path, snapshot())
        finally:
            bar.close()
            rollouts.close()
        message = message or f"{steps_done} environment steps taken (budget {env_steps})"
        if path is not None:
            save_checkpoint(path, snapshot())
        return RLResult(policy, value, correction, estimator, steps_done, update, history, message)


def _networks(
    env: Any, estimator: str, policy: Policy | None, width: int, seed: int
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
    if estimator == "lax" and discrete:
        raise ValueError("LAX needs continuous actions; use estimator='relax' for Discrete ones")
    if estimator == "relax" and not discrete:
        raise ValueError("RELAX needs discrete actions; use estimator='lax' for Box ones")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, 2**32))
        if policy is None:
            policy = (
                CategoricalPolicy(obs_dim, action_dim, width)
                if discrete
                else GaussianPolicy(obs_dim, action_dim, width)
            )
        correction = (
            None if estimator == "actor_critic" else ActionCorrection(obs_dim, action_dim, width)
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


def _variance(surrogates: torch.Tensor, parameters: list[nn.Parameter], scale: float) -> float:
    """tr Cov of one episode's ĝ of −J in the returns' units (s × the surrogates' gradient)."""
    return gradient_variance(per_episode_gradients(surrogates, parameters)) * scale**2


def _spread(returns: torch.Tensor) -> float:
    """A typical size of the returns: their standard deviation, or their mean size, or 1."""
    for candidate in (returns.std() if returns.numel() > 1 else None, returns.abs().mean()):
        if candidate is not None and float(candidate) > 1e-8:
            return float(candidate)
    return 1.0


def _fit_value(
    value: nn.Module,
    optimizer: torch.optim.Optimizer,
    obs: torch.Tensor,
    returns: torch.Tensor,
    steps: int,
) -> float:
    """``steps`` Adam steps of V on the squared error to the returns; the error before them."""
    with torch.no_grad():
        before = float(((value(obs) - returns) ** 2).mean())
    for _ in range(steps):
        optimizer.zero_grad()
        ((value(obs) - returns) ** 2).mean().backward()
        optimizer.step()
    return before
