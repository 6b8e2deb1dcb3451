r"""Policy gradients from a batch of episodes: actor-critic, LAX and RELAX.

With returns R̂_t (λ-returns from a value baseline V, :func:`lambda_returns`)
the gradient of the expected return J(θ) is estimated per episode as a sum
over its steps:

actor-critic   ĝ = Σ_t ∇ log π(a_t|s_t) [R̂_t − V(s_t)]
LAX            ĝ = Σ_t ∇ log π(a_t|s_t) [R̂_t − b_φ(s_t, a_t)] + ∇_θ b_φ(s_t, a_t(θ))
RELAX          ĝ = Σ_t ∇ log π(a_t|s_t) [R̂_t − b_φ(s_t, z̃_t)] + ∇_θ [b_φ(s_t, z_t) − b_φ(s_t, z̃_t)]

with b_φ(s, a) = V(s) + q_φ(s, a) (:class:`~voidgrad.rl.networks.ActionCorrection`);
a_t(θ) = μ_θ(s_t) + σ_θ ξ_t is the action recomputed from its noise, z_t =
log π_θ(·|s_t) + ξ_t its Gumbel variable and z̃_t ~ p(z | a_t, s_t). The actor-
critic is LAX with q ≡ 0. All three have the same expectation for any q_φ
(the action-dependent terms cancel in expectation over a_t given s_t), and the
per-step gradients are computed by the very functions behind ``vg.LAX`` and
``vg.RELAX`` (:func:`~voidgrad.estimators.relax.lax_gradients`,
:func:`~voidgrad.estimators.relax.relax_gradient`). As there, φ is trained to
reduce the variance, on Σ_t ‖ĝ_t‖² with ĝ_t the gradient with respect to step
t's distribution parameters. The code works in the cost convention of
those functions (cost f = −R̂, control c = −b), so its surrogates' gradients
are ĝ of −J, ready for a minimizing optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.distributions import Categorical, Normal
from torch.nn import functional

from voidgrad.estimators.discrete import sample_conditional
from voidgrad.estimators.distributional import parameter_surrogate
from voidgrad.estimators.relax import lax_gradients, relax_gradient, square_norm
from voidgrad.rl.episodes import Episodes
from voidgrad.rl.networks import Policy
from voidgrad.validation import check_int, check_unit_interval

Estimator = Literal["actor_critic", "lax", "relax"]


@dataclass(frozen=True)
class PolicyGradientMethod:
    """What a policy-gradient estimator needs; the registry's ``"policy-gradient"`` entries.

    Attributes:
        name: the estimator, as :func:`episode_surrogates` takes it.
        actions: the action spaces it handles: ``"any"``, ``"continuous"``
            (a 1-D Box) or ``"discrete"``.
        learned_control: whether it learns an action-dependent correction q_φ.
    """

    name: Estimator
    actions: Literal["any", "continuous", "discrete"]
    learned_control: bool

    def handles(self, discrete: bool) -> bool:
        """Whether it runs on discrete (True) or continuous (False) actions."""
        return self.actions == "any" or (self.actions == "discrete") == discrete


def lambda_returns(
    episodes: Episodes, values: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    r"""R̂_t = V(s_t) + Â_t with Â_t = Σ_l (γλ)^l δ_{t+l}, δ_t = r_t + γ V(s_{t+1}) − V(s_t).

    ``values`` is V at every row of ``episodes.obs`` (``[E, T + 1]``); after a
    terminal step V(s_{t+1}) counts as 0, after a time-limit cut it is
    bootstrapped. λ = 1 gives the Monte Carlo return (bootstrapped at a cut),
    λ = 0 the one-step target. Returns ``[E, T]``, 0 on padding.

    Examples:
        >>> import torch, voidgrad as vg
        >>> episodes = vg.rl.Episodes(  # one terminated episode of 3 steps, reward 1 each
        ...     obs=torch.zeros(1, 4, 1), noise=torch.zeros(1, 3, 1), actions=torch.zeros(1, 3, 1),
        ...     rewards=torch.ones(1, 3), mask=torch.ones(1, 3, dtype=torch.bool),
        ...     terminated=torch.tensor([True]))
        >>> vg.rl.lambda_returns(episodes, torch.zeros(1, 4), gamma=1.0, lam=1.0)  # Monte Carlo
        tensor([[3., 2., 1.]])
        >>> vg.rl.lambda_returns(episodes, torch.zeros(1, 4), gamma=0.5, lam=1.0)
        tensor([[1.7500, 1.5000, 1.0000]])
    """
    check_unit_interval("gamma", gamma)
    check_unit_interval("lam", lam)
    count, limit = episodes.rewards.shape
    if values.shape != (count, limit + 1):
        raise ValueError(
            f"values must be V at every observation, shape {(count, limit + 1)}; "
            f"got {tuple(values.shape)}"
        )
    alive = torch.cat([episodes.mask, episodes.mask.new_zeros((count, 1))], dim=1)
    next_values = values[:, 1:].clone()
    ends = episodes.lengths - 1
    rows = torch.arange(count)
    next_values[rows, ends] = torch.where(
        episodes.terminated, torch.zeros(()), values[rows, ends + 1]
    )
    advantages = torch.zeros((count, limit + 1))
    for t in reversed(range(limit)):
        delta = episodes.rewards[:, t] + gamma * next_values[:, t] - values[:, t]
        advantages[:, t] = delta + gamma * lam * alive[:, t + 1] * advantages[:, t + 1]
    return (advantages[:, :limit] + values[:, :limit]) * episodes.mask


@dataclass
class StepBatch:
    """The steps of a batch of episodes, flattened: the valid ones only."""

    obs: torch.Tensor  # [S, obs]
    noise: torch.Tensor  # [S, k]
    actions: torch.Tensor  # [S, a]
    returns: torch.Tensor  # [S]
    baseline: torch.Tensor  # [S], V(s_t), no graph
    episode: torch.Tensor  # [S], index of each step's episode
    episodes: int


def flatten(episodes: Episodes, returns: torch.Tensor, values: torch.Tensor) -> StepBatch:
    """Keep the steps that happened, in episode order."""
    mask = episodes.mask
    index = torch.arange(mask.shape[0]).unsqueeze(1).expand_as(mask)
    return StepBatch(
        obs=episodes.obs[:, :-1][mask],
        noise=episodes.noise[mask],
        actions=episodes.actions[mask],
        returns=returns[mask],
        baseline=values[:, :-1][mask].detach(),
        episode=index[mask],
        episodes=mask.shape[0],
    )


def episode_surrogates(
    estimator: Estimator,
    policy: Policy,
    correction: nn.Module | None,
    steps: StepBatch,
    generator: torch.Generator,
    create_graph: bool,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-episode surrogates ``[E]`` whose θ-gradients are ĝ of −J/s, and Σ_t‖ĝ_t‖².

    Returns and V enter divided by ``scale`` s (a typical size of the
    returns) and q_φ works in those units, so that a correction that starts
    at zero can reach the returns' size whatever the reward scale; dividing
    by a constant changes neither the direction nor the unbiasedness. The
    surrogates route the per-step gradients into the policy's parameters
    (``parameter_surrogate``); Σ_t ‖ĝ_t‖² keeps its graph to φ when
    ``create_graph`` (for the variance step).
    """
    dist = policy(steps.obs)
    costs = -steps.returns.unsqueeze(0) / scale
    baseline = -steps.baseline.unsqueeze(0) / scale
    if estimator == "relax":
        assert isinstance(dist, Categorical) and correction is not None
        logits = dist.logits
        z = logits + steps.noise
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            conditioned = sample_conditional(logits, steps.actions, "categorical")
        grads = [
            relax_gradient(
                costs,
                logits,
                steps.actions.unsqueeze(0),
                "categorical",
                baseline - correction(steps.obs, z).unsqueeze(0),
                baseline - correction(steps.obs, conditioned).unsqueeze(0),
                create_graph,
            )
        ]
        params = [logits]
    else:
        if isinstance(dist, Normal):
            params = [dist.loc, dist.scale]
            log_prob = dist.log_prob(steps.actions).sum(-1)
        else:
            assert isinstance(dist, Categorical)
            params = [dist.logits]
            log_prob = dist.log_prob(steps.actions.argmax(-1))
        if estimator == "lax":
            assert correction is not None
            at_sample = baseline - correction(steps.obs, steps.actions).unsqueeze(0)
            reparameterized = baseline - correction(
                steps.obs, policy.act(dist, steps.noise)
            ).unsqueeze(0)
        else:
            at_sample = reparameterized = baseline
        grads = lax_gradients(
            costs, log_prob.unsqueeze(0), at_sample, reparameterized, params, create_graph
        )
    per_step = parameter_surrogate(grads, params, 1)
    per_episode = torch.zeros(steps.episodes, dtype=per_step.dtype).index_add(
        0, steps.episode, per_step
    )
    return per_episode, square_norm(grads)


def per_episode_gradients(
    surrogates: torch.Tensor, parameters: list[nn.Parameter], chunk: int = 256
) -> torch.Tensor:
    """∇_θ of each episode's surrogate, flattened: ``[E, P]``.

    One batched backward pass per ``chunk`` episodes (rows of the identity as the
    incoming gradients), not one pass per episode: each pass runs through the whole
    batch's graph, so a pass per episode would cost O(E²).
    """
    check_int("chunk", chunk, 1)
    count = surrogates.shape[0]
    rows = []
    for start in range(0, count, chunk):
        episodes = torch.arange(start, min(start + chunk, count))
        selectors = functional.one_hot(episodes, count).to(surrogates.dtype)
        grads = torch.autograd.grad(
            surrogates,
            parameters,
            grad_outputs=selectors,
            is_grads_batched=True,
            retain_graph=True,
            materialize_grads=True,
        )
        rows.append(torch.cat([g.reshape(len(selectors), -1) for g in grads], dim=1))
    return torch.cat(rows)


def gradient_variance(per_episode: torch.Tensor) -> float:
    """tr Cov of the one-episode gradient estimate: Σ_j Var(ĝ_j), unbiased over E ≥ 2 episodes."""
    if per_episode.shape[0] < 2:
        return float("nan")
    centred = per_episode - per_episode.mean(0)
    return float((centred**2).sum() / (per_episode.shape[0] - 1))
