r"""One policy-gradient update as an algorithm of the one run loop (:mod:`voidgrad.run`).

Update u of a run with seed s collects E complete episodes with seeds
``derived_seed(s, u·E + e)``, then (:mod:`voidgrad.rl.gradients` has the math)::

    R̂ = λ-returns from the current V            (nothing is fitted before estimating)
    ĝ = the estimator's gradient of −J           (its sampling seeded by derived_seed(s, 2³³ + u))
    φ ← Adam step on ‖ĝ‖²                        (LAX, RELAX: q_φ lowers the variance)
    θ ← Adam step along ĝ                        (after φ's step, which differentiates through θ)
    V ← value_steps Adam steps on (V(s_t) − R̂_t)²

Every random draw of an update is a function of (s, u), so the networks, their
optimizers and the running return scale are the whole state: a run resumed
from them is the uninterrupted run, bit for bit, whatever the backend. The
budget counts environment steps; the update that crosses it completes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from voidgrad import registry
from voidgrad.estimators.protocol import step_auxiliary
from voidgrad.evaluation.evaluator import derived_seed
from voidgrad.rl.episodes import BatchedRollouts, EvaluatorRollouts
from voidgrad.rl.gradients import (
    Estimator,
    PolicyGradientMethod,
    episode_surrogates,
    flatten,
    gradient_variance,
    lambda_returns,
    per_episode_gradients,
)
from voidgrad.rl.networks import Policy
from voidgrad.rl.result import RLHistory, UpdateRecord
from voidgrad.run import Algorithm, RunState, Stop
from voidgrad.validation import check_int, check_positive, check_unit_interval

#: Seed offset of an update's estimator sampling (episodes use offsets below it).
_SAMPLING = 2**33


@dataclass(frozen=True)
class PolicyGradientSettings:
    """What defines a policy-gradient run besides its networks and environment.

    Built once by :func:`voidgrad.rl.train` from its arguments (checked here,
    each error naming its argument), taken whole by :class:`PolicyGradient`,
    and the source of the checkpoint's identity (:meth:`identity`).

    Attributes:
        estimator: a ``"policy-gradient"`` method of :mod:`voidgrad.registry`:
            ``"actor_critic"``, ``"lax"`` or ``"relax"``.
        seed: seeds the networks, the episodes and the estimator's sampling.
        episodes_per_update: E, episodes per update.
        gamma: discount γ.
        gae_lambda: λ of the λ-returns.
        lr: the policy's Adam step size.
        value_lr: the value network's Adam step size.
        value_steps: Adam steps of V per update.
        control_lr: q_φ's Adam step size.
        width: hidden units of the default networks.
        max_episode_steps: cut episodes here (None: the env's time limit).
        track_variance: record the per-update gradient variance.

    Examples:
        >>> from voidgrad.rl.algorithm import PolicyGradientSettings
        >>> settings = PolicyGradientSettings("relax", seed=0, episodes_per_update=4, lr=1e-2)
        >>> sorted(settings.identity())[:4]
        ['control_lr', 'episodes_per_update', 'estimator', 'gae_lambda']
        >>> PolicyGradientSettings("relax", seed=0, episodes_per_update=4, gamma=2.0)
        Traceback (most recent call last):
        ...
        ValueError: gamma must be a number in [0, 1]; got 2.0
    """

    estimator: Estimator
    seed: int
    episodes_per_update: int
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lr: float = 3e-3
    value_lr: float = 1e-2
    value_steps: int = 10
    control_lr: float = 1e-3
    width: int = 64
    max_episode_steps: int | None = None
    track_variance: bool = True

    def __post_init__(self) -> None:
        registry.method(self.estimator, ["policy-gradient"], argument="estimator")
        check_int("seed", self.seed, 0)
        check_int("episodes_per_update", self.episodes_per_update, 1)
        check_int("value_steps", self.value_steps, 0)
        check_unit_interval("gamma", self.gamma)
        check_unit_interval("gae_lambda", self.gae_lambda)
        for name in ("lr", "value_lr", "control_lr"):
            check_positive(name, getattr(self, name))

    @property
    def method(self) -> PolicyGradientMethod:
        """The estimator's entry of :mod:`voidgrad.registry`: its action spaces, its q_φ."""
        entry = registry.method(self.estimator, ["policy-gradient"], argument="estimator")
        method = entry.make()
        assert isinstance(method, PolicyGradientMethod)
        return method

    def identity(self) -> dict[str, Any]:
        """The settings a checkpoint must match: all but ``track_variance``, which only records."""
        return {k: v for k, v in asdict(self).items() if k != "track_variance"}


class PolicyGradient(Algorithm):
    """Policy-gradient updates from batches of complete episodes (see the module doc).

    Args:
        policy: π_θ.
        value: V, the state-value baseline.
        correction: q_φ for LAX and RELAX; None for the actor-critic.
        rollouts: collects the episodes (closed when the run ends).
        settings: the estimator, seed, episodes per update, discount and step sizes.

    Attributes:
        policy, value, correction: the networks being trained.
        settings: as given.
        policy_optimizer, value_optimizer, control_optimizer: their Adam
            optimizers (``control_optimizer`` is None without q_φ).
        return_scale: the running spread of the returns, the units of q_φ's
            output (None before the first update).

    Examples:
        >>> import voidgrad as vg
        >>> from voidgrad.rl.algorithm import PolicyGradient, PolicyGradientSettings
        >>> from voidgrad.run import run
        >>> policy, value = vg.rl.CategoricalPolicy(4, 2, 8), vg.rl.ValueNetwork(4, 8)
        >>> rollouts = vg.rl.BatchedRollouts("CartPole-v1", 2)
        >>> settings = PolicyGradientSettings("actor_critic", seed=0, episodes_per_update=2)
        >>> algorithm = PolicyGradient(policy, value, None, rollouts, settings)
        >>> state = run(algorithm, 100, unit="environment steps", progress=False)
        >>> state.spent >= 100, state.history[-1].update == state.step
        (True, True)
    """

    kind = "vg.rl.train"
    history_type = RLHistory

    def __init__(
        self,
        policy: Policy,
        value: nn.Module,
        correction: nn.Module | None,
        rollouts: BatchedRollouts | EvaluatorRollouts,
        settings: PolicyGradientSettings,
    ) -> None:
        self.policy = policy
        self.value = value
        self.correction = correction
        self.rollouts = rollouts
        self.settings = settings
        self.policy_optimizer = torch.optim.Adam(policy.parameters(), lr=settings.lr)
        self.value_optimizer = torch.optim.Adam(value.parameters(), lr=settings.value_lr)
        self.control_optimizer = (
            None
            if correction is None
            else torch.optim.Adam(correction.parameters(), lr=settings.control_lr)
        )
        self.return_scale: float | None = None

    def step(self, state: RunState) -> UpdateRecord | Stop:
        if state.spent >= state.budget:
            return Stop(f"{state.spent} environment steps taken (budget {state.budget})")
        update, settings = state.step, self.settings
        episodes = settings.episodes_per_update
        seeds = [derived_seed(settings.seed, update * episodes + e) for e in range(episodes)]
        batch = self.rollouts.collect(self.policy, seeds)
        with torch.no_grad():
            values = self.value(batch.obs)
        returns = lambda_returns(batch, values, settings.gamma, settings.gae_lambda)
        steps = flatten(batch, returns, values)
        generator = torch.Generator().manual_seed(derived_seed(settings.seed, _SAMPLING + update))
        if self.return_scale is None:  # the first batch sets the units of q_φ's output
            self.return_scale = _spread(steps.returns)
        scale = self.return_scale
        correction = self.correction
        surrogates, square_norm = episode_surrogates(
            settings.estimator,
            self.policy,
            correction,
            steps,
            generator,
            correction is not None,
            scale,
        )
        parameters = list(self.policy.parameters())
        variance = reference_variance = math.nan
        if settings.track_variance:
            variance = _variance(surrogates, parameters, scale)
            if correction is not None:
                plain, _ = episode_surrogates(
                    "actor_critic", self.policy, None, steps, generator, False, scale
                )
                reference_variance = _variance(plain, parameters, scale)
        self.policy_optimizer.zero_grad()
        surrogates.mean().backward(inputs=parameters, retain_graph=correction is not None)
        if correction is not None and self.control_optimizer is not None:
            step_auxiliary(self.control_optimizer, list(correction.parameters()), square_norm)
        self.policy_optimizer.step()  # after the variance step, which differentiates through θ
        value_loss = _fit_value(
            self.value, self.value_optimizer, steps.obs, steps.returns, settings.value_steps
        )
        # later batches use a running spread, fixed before they are drawn (ĝ stays unbiased)
        self.return_scale = 0.9 * scale + 0.1 * _spread(steps.returns)
        state.spent += batch.env_steps
        return UpdateRecord(
            update=update + 1,
            env_steps=state.spent,
            mean_return=float(batch.returns.mean()),
            gradient_variance=variance,
            actor_critic_variance=reference_variance,
            value_loss=value_loss,
            seconds=state.seconds,
        )

    def state_dict(self) -> dict[str, Any]:
        correction, control = self.correction, self.control_optimizer
        return {
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "correction": None if correction is None else correction.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "control_optimizer": None if control is None else control.state_dict(),
            "return_scale": self.return_scale,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        if self.correction is not None and self.control_optimizer is not None:
            self.correction.load_state_dict(state["correction"])
            self.control_optimizer.load_state_dict(state["control_optimizer"])
        scale = state["return_scale"]
        self.return_scale = None if scale is None else float(scale)

    def close(self) -> None:
        self.rollouts.close()


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
