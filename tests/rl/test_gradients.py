"""vg.rl's policy gradients on one-step bandits with known exact gradients, and its returns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import voidgrad as vg
from tests.conftest import assert_unbiased
from voidgrad.rl.episodes import Episodes
from voidgrad.rl.gradients import (
    episode_surrogates,
    flatten,
    gradient_variance,
    lambda_returns,
    per_episode_gradients,
)

EPISODES = 4000
MU, LOG_STD = 0.5, -0.3
LOGITS = torch.tensor([0.2, -0.4, 0.1])
ARM_REWARDS = torch.tensor([1.0, 0.0, 3.0])


class Constant(nn.Module):
    """A head that ignores the observation: the policy's parameters are the distribution's."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = nn.Parameter(value.clone())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value.expand(obs.shape[0], -1)


class Quadratic(nn.Module):
    """q(s, a) = −(a − 2)²: with V = 0 exactly the bandit's reward."""

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return -((action[:, 0] - 2) ** 2)


def gaussian_policy() -> vg.rl.GaussianPolicy:
    policy = vg.rl.GaussianPolicy(1, 1, log_std=LOG_STD)
    policy.mean = Constant(torch.tensor([MU]))
    return policy


def categorical_policy() -> vg.rl.CategoricalPolicy:
    policy = vg.rl.CategoricalPolicy(1, 3)
    policy.logits = Constant(LOGITS)
    return policy


def bandit(policy: nn.Module, reward, seed: int = 0) -> Episodes:
    """EPISODES one-step episodes of a bandit with a constant observation."""
    generator = torch.Generator().manual_seed(seed)
    obs = torch.ones((EPISODES, 2, 1))
    noise = policy.draw_noise(EPISODES, generator)
    with torch.no_grad():
        drawn = policy.act(policy(obs[:, 0]), noise)
    actions = (
        nn.functional.one_hot(drawn.argmax(-1), drawn.shape[-1]).float()
        if policy.discrete
        else drawn
    )
    return Episodes(
        obs=obs,
        noise=noise.unsqueeze(1),
        actions=actions.unsqueeze(1),
        rewards=reward(actions).unsqueeze(1),
        mask=torch.ones((EPISODES, 1), dtype=torch.bool),
        terminated=torch.ones(EPISODES, dtype=torch.bool),
    )


def quadratic_reward(actions: torch.Tensor) -> torch.Tensor:
    return -((actions[:, 0] - 2) ** 2)


def arm_reward(actions: torch.Tensor) -> torch.Tensor:
    return actions @ ARM_REWARDS


def gradient_samples(estimator, policy, reward, correction=None, baseline=0.0) -> torch.Tensor:
    """Per-episode ĝ of −J: ``[EPISODES, P]``."""
    episodes = bandit(policy, reward)
    values = torch.full((EPISODES, 2), baseline)
    steps = flatten(episodes, lambda_returns(episodes, values, 0.99, 0.95), values)
    surrogates, _ = episode_surrogates(
        estimator, policy, correction, steps, torch.Generator().manual_seed(1), False
    )
    return per_episode_gradients(surrogates, list(policy.parameters())).detach()


def exact_gaussian_gradient() -> torch.Tensor:
    """∇ of −J = E[(a − 2)²] = (μ − 2)² + σ² over (log σ, μ), the policy's parameter order."""
    sigma2 = torch.tensor(2 * LOG_STD).exp()
    return torch.stack([2 * sigma2, torch.tensor(2 * (MU - 2))])


def exact_categorical_gradient() -> torch.Tensor:
    """∇_l of −J = −Σ_k p_k r_k: −p ⊙ (r − p·r)."""
    p = torch.softmax(LOGITS, 0)
    return -p * (ARM_REWARDS - p @ ARM_REWARDS)


def bad_correction(obs_dim: int, action_dim: int) -> vg.rl.ActionCorrection:
    """A deliberately bad q_φ: large random weights (nothing like the reward)."""
    torch.manual_seed(3)
    correction = vg.rl.ActionCorrection(obs_dim, action_dim, width=8)
    for parameter in correction.parameters():
        nn.init.normal_(parameter, std=3.0)
    return correction


@pytest.mark.parametrize("baseline", [0.0, -4.0])
def test_actor_critic_is_unbiased_on_a_gaussian_bandit(baseline):
    samples = gradient_samples("actor_critic", gaussian_policy(), quadratic_reward, None, baseline)
    assert_unbiased(samples, exact_gaussian_gradient())


def test_lax_is_unbiased_with_a_bad_action_dependent_control():
    policy = gaussian_policy()
    samples = gradient_samples("lax", policy, quadratic_reward, bad_correction(1, 1))
    assert_unbiased(samples, exact_gaussian_gradient())


def test_lax_with_the_exact_reward_as_control_cuts_the_variance():
    """b = r(a) leaves only the reparameterization gradient ∇_θ r(a(θ)), a low-variance one."""
    plain = gradient_samples("actor_critic", gaussian_policy(), quadratic_reward)
    lax = gradient_samples("lax", gaussian_policy(), quadratic_reward, Quadratic())
    assert_unbiased(lax, exact_gaussian_gradient())
    assert gradient_variance(lax) < 0.2 * gradient_variance(plain)


def test_actor_critic_is_unbiased_on_a_discrete_bandit():
    samples = gradient_samples("actor_critic", categorical_policy(), arm_reward, None, 1.5)
    assert_unbiased(samples, exact_categorical_gradient())


def test_relax_is_unbiased_with_a_bad_action_dependent_control():
    samples = gradient_samples("relax", categorical_policy(), arm_reward, bad_correction(1, 3))
    assert_unbiased(samples, exact_categorical_gradient())


def test_lambda_returns_discount_bootstrap_and_stop_at_termination():
    gamma = 0.9
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    values = torch.tensor([[0.5, 0.2, 0.1, 10.0], [0.3, 0.4, 7.0, 0.0]])
    episodes = Episodes(
        obs=torch.zeros((2, 4, 1)),
        noise=torch.zeros((2, 3, 1)),
        actions=torch.zeros((2, 3, 1)),
        rewards=rewards,
        mask=mask,
        terminated=torch.tensor([False, True]),  # the first was cut by the time limit
    )
    monte_carlo = lambda_returns(episodes, values, gamma, 1.0)
    cut = [3 + gamma * 10.0]
    cut = [2 + gamma * cut[0], *cut]
    cut = [1 + gamma * cut[0], *cut]
    torch.testing.assert_close(monte_carlo[0], torch.tensor(cut))
    torch.testing.assert_close(monte_carlo[1], torch.tensor([1 + gamma, 1.0, 0.0]))
    one_step = lambda_returns(episodes, values, gamma, 0.0)
    expected = torch.tensor([[1 + gamma * 0.2, 2 + gamma * 0.1, 3 + gamma * 10.0]])
    torch.testing.assert_close(one_step[:1], expected)
    torch.testing.assert_close(one_step[1], torch.tensor([1 + gamma * 0.4, 1.0, 0.0]))


@pytest.mark.parametrize(
    ("gamma", "lam", "values", "message"),
    [
        (1.5, 1.0, torch.zeros(1, 4), r"gamma must be a number in \[0, 1\]"),
        (0.9, -0.5, torch.zeros(1, 4), r"lam must be a number in \[0, 1\]"),
        (0.9, 1.0, torch.zeros(1, 3), r"values must be V at every observation, shape \(1, 4\)"),
    ],
)
def test_lambda_returns_refuses_bad_discounts_and_values(gamma, lam, values, message):
    episodes = Episodes(
        obs=torch.zeros((1, 4, 1)),
        noise=torch.zeros((1, 3, 1)),
        actions=torch.zeros((1, 3, 1)),
        rewards=torch.ones((1, 3)),
        mask=torch.ones((1, 3), dtype=torch.bool),
        terminated=torch.tensor([True]),
    )
    with pytest.raises(ValueError, match=message):
        lambda_returns(episodes, values, gamma, lam)


def test_per_episode_gradients_equal_one_backward_pass_per_episode():
    """The batched passes (in chunks smaller than the batch) give each episode's own gradient."""
    weight = nn.Parameter(torch.tensor([[0.5, -1.0], [2.0, 0.3]]))
    bias = nn.Parameter(torch.tensor([0.1, -0.2]))
    inputs = torch.randn(7, 2, generator=torch.Generator().manual_seed(0))
    surrogates = torch.tanh(inputs @ weight + bias).pow(2).sum(1)
    batched = per_episode_gradients(surrogates, [weight, bias], chunk=3)
    one_by_one = torch.stack(
        [
            torch.cat(
                [g.reshape(-1) for g in torch.autograd.grad(s, [weight, bias], retain_graph=True)]
            )
            for s in surrogates
        ]
    )
    torch.testing.assert_close(batched, one_by_one)


def test_per_episode_gradients_refuse_a_chunk_below_one():
    weight = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="chunk must be an int >= 1"):
        per_episode_gradients(weight * 2, [weight], chunk=0)
