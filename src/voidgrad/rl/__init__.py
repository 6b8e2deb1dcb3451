r"""``vg.rl``: policy gradients with action-dependent control variates (LAX and RELAX for RL).

Seed 004 ("Reinforcement Learning", "Actor Critic", "LAX for RL"): the
policy gradient ∇_θ E[Σ_t r_t] = E[Σ_t ∇_θ log π_θ(a_t|s_t) R_t] is estimated
from episodes with

* ``"actor_critic"``: REINFORCE with a state-value control variate V(s_t);
* ``"lax"`` (continuous actions): a control b_φ(s_t, a_t) = V(s_t) + q_φ(s_t, a_t)
  that depends on the action too, its bias removed by the reparameterization
  gradient ∇_θ b_φ(s_t, a_t(θ)) — unbiased whatever q_φ is;
* ``"relax"`` (discrete actions): the same through the Gumbel-max relaxation.

q_φ is trained to minimize the gradient's variance. The math is in
:mod:`voidgrad.rl.gradients`; it calls the functions behind ``vg.LAX`` and
``vg.RELAX``. Environments are gymnasium ones (``pip install voidgrad[rl]``);
episodes run in this process or, for slow simulators, through the evaluation
engine's process and Ray workers (:mod:`voidgrad.rl.episodes`).

Examples:
    >>> import voidgrad as vg
    >>> result = vg.rl.train("CartPole-v1", "relax", env_steps=2_000, progress=False)
    >>> result.history.column("mean_return")[-1] > 0
    True
"""

from voidgrad.rl.episodes import BatchedRollouts, Episodes, EvaluatorRollouts
from voidgrad.rl.gradients import lambda_returns
from voidgrad.rl.networks import (
    ActionCorrection,
    CategoricalPolicy,
    GaussianPolicy,
    Policy,
    ValueNetwork,
)
from voidgrad.rl.result import RLHistory, RLResult, UpdateRecord
from voidgrad.rl.train import train

__all__ = [
    "ActionCorrection",
    "BatchedRollouts",
    "CategoricalPolicy",
    "Episodes",
    "EvaluatorRollouts",
    "GaussianPolicy",
    "Policy",
    "RLHistory",
    "RLResult",
    "UpdateRecord",
    "ValueNetwork",
    "lambda_returns",
    "train",
]
