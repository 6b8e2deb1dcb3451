"""What ``vg.rl.train`` records and returns: one record per update, the history, the result."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from voidgrad.rl.networks import Policy
from voidgrad.run.records import Records


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
    """What :func:`~voidgrad.rl.train` returns: the trained networks and the history.

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
