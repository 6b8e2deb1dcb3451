"""The networks of a policy-gradient run: policies, a state value, an action-dependent correction.

A policy maps observations ``[n, obs]`` to the parameters of its action
distribution and turns *noise* into actions, a = T_θ(s, ξ), so that an action
can be recomputed, reparameterized, from the noise that drew it:

* :class:`GaussianPolicy` (continuous): a = μ_θ(s) + σ_θ ⊙ ξ, ξ ~ N(0, I);
* :class:`CategoricalPolicy` (discrete): z = log π_θ(·|s) + ξ, ξ ~ Gumbel(0, 1),
  a = argmax_k z_k (the Gumbel-max view of :mod:`voidgrad.estimators.discrete`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from voidgrad.validation import check_int


def mlp(inputs: int, outputs: int, width: int = 64, depth: int = 2) -> nn.Sequential:
    """A tanh MLP ``inputs → width (× depth) → outputs``."""
    layers: list[nn.Module] = []
    size = inputs
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.Tanh()]
        size = width
    layers.append(nn.Linear(size, outputs))
    return nn.Sequential(*layers)


class Policy(nn.Module, ABC):
    """What ``vg.rl`` needs of a policy: a distribution per observation and actions from noise.

    Subclass it for a policy of your own (another network, a shared trunk).

    Examples:
        >>> import torch, voidgrad as vg
        >>> policy = vg.rl.CategoricalPolicy(obs_dim=4, actions=2)
        >>> isinstance(policy, vg.rl.Policy), policy.discrete, policy.noise_dim, policy.action_size
        (True, True, 2, 2)
    """

    #: Discrete (one-hot actions, Gumbel noise) or continuous actions.
    discrete: bool

    @property
    @abstractmethod
    def noise_dim(self) -> int:
        """Size of ξ per step."""

    @property
    @abstractmethod
    def action_size(self) -> int:
        """Size of a stored action: a itself, or the one-hot vector of a discrete one."""

    @abstractmethod
    def forward(self, obs: torch.Tensor) -> Distribution:
        """π_θ(·|s) for observations ``[n, obs]``."""

    @abstractmethod
    def draw_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """ξ for ``n`` steps: ``[n, noise_dim]``."""

    @abstractmethod
    def act(self, dist: Distribution, noise: torch.Tensor) -> torch.Tensor:
        """T_θ(s, ξ), differentiable in the distribution's parameters (argmax: the action)."""


class GaussianPolicy(Policy):
    """π_θ(a|s) = N(μ_θ(s), diag σ²) with a learned, state-independent log σ.

    Args:
        obs_dim: observation size.
        action_dim: action size.
        width: hidden units of the mean's MLP (two layers).
        log_std: initial log σ of every action dimension.

    Examples:
        >>> import torch, voidgrad as vg
        >>> policy = vg.rl.GaussianPolicy(obs_dim=3, action_dim=2, width=16, log_std=-1.0)
        >>> dist = policy(torch.zeros(5, 3))  # π(·|s) for 5 observations
        >>> dist.mean.shape, round(dist.stddev[0, 0].item(), 4)
        (torch.Size([5, 2]), 0.3679)
        >>> noise = policy.draw_noise(5, torch.Generator().manual_seed(0))
        >>> torch.allclose(policy.act(dist, noise), dist.mean + dist.stddev * noise)  # a = μ + σξ
        True
    """

    discrete = False

    def __init__(self, obs_dim: int, action_dim: int, width: int = 64, log_std: float = 0.0):
        super().__init__()
        check_int("obs_dim", obs_dim, 1)
        self.action_dim = check_int("action_dim", action_dim, 1)
        self.mean = mlp(obs_dim, action_dim, check_int("width", width, 1))
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std)))

    @property
    def noise_dim(self) -> int:
        return self.action_dim

    @property
    def action_size(self) -> int:
        return self.action_dim

    def forward(self, obs: torch.Tensor) -> Normal:
        mean = self.mean(obs)
        return Normal(mean, self.log_std.exp().expand_as(mean))

    def draw_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """ξ ~ N(0, I): ``[n, action_dim]``."""
        return torch.randn((n, self.action_dim), generator=generator)

    def act(self, dist: Distribution, noise: torch.Tensor) -> torch.Tensor:
        """a = μ + σ ξ, differentiable in the distribution's parameters."""
        assert isinstance(dist, Normal)
        return dist.loc + dist.scale * noise


class CategoricalPolicy(Policy):
    """π_θ(a|s) = softmax(MLP_θ(s)) over ``actions`` choices.

    Args:
        obs_dim: observation size.
        actions: number of discrete actions.
        width: hidden units of the MLP (two layers).

    Examples:
        >>> import torch, voidgrad as vg
        >>> policy = vg.rl.CategoricalPolicy(obs_dim=4, actions=3, width=16)
        >>> dist = policy(torch.zeros(2, 4))
        >>> noise = policy.draw_noise(2, torch.Generator().manual_seed(0))  # Gumbel noise
        >>> z = policy.act(dist, noise)  # the relaxed z; the action is its argmax
        >>> z.shape, z.argmax(-1).tolist()[0] in range(3)
        (torch.Size([2, 3]), True)
    """

    discrete = True

    def __init__(self, obs_dim: int, actions: int, width: int = 64):
        super().__init__()
        check_int("obs_dim", obs_dim, 1)
        self.actions = check_int("actions", actions, 1)
        self.logits = mlp(obs_dim, actions, check_int("width", width, 1))

    @property
    def noise_dim(self) -> int:
        return self.actions

    @property
    def action_size(self) -> int:
        return self.actions

    def forward(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(obs))

    def draw_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """ξ ~ Gumbel(0, 1): ``[n, actions]``."""
        u = torch.rand((n, self.actions), generator=generator)
        tiny, eps = torch.finfo(u.dtype).tiny, torch.finfo(u.dtype).eps
        return -torch.log(-torch.log(u.clamp(tiny, 1 - eps)))

    def act(self, dist: Distribution, noise: torch.Tensor) -> torch.Tensor:
        """z = log π + ξ, differentiable in the logits; the action is its argmax."""
        assert isinstance(dist, Categorical)
        return dist.logits + noise


class ActionCorrection(nn.Module):
    """q_φ(s, a): the action-dependent part of the control c_φ(s, a) = V(s) + q_φ(s, a).

    Its output layer starts at zero, so LAX and RELAX begin exactly as the
    actor-critic (q ≡ 0) and learn the correction from the variance.

    Args:
        obs_dim: observation size.
        action_dim: size of a (continuous) or of the relaxed z (discrete: the
            number of actions).
        width: hidden units (two layers).

    Examples:
        >>> import torch, voidgrad as vg
        >>> q = vg.rl.ActionCorrection(obs_dim=4, action_dim=2, width=16)
        >>> q(torch.randn(3, 4), torch.randn(3, 2))  # zero at the start: q ≡ 0
        tensor([0., 0., 0.], grad_fn=<SqueezeBackward1>)
    """

    def __init__(self, obs_dim: int, action_dim: int, width: int = 64):
        super().__init__()
        self.net = mlp(
            check_int("obs_dim", obs_dim, 1) + check_int("action_dim", action_dim, 1),
            1,
            check_int("width", width, 1),
        )
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[n, obs]``, ``[n, a]`` → ``[n]``."""
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


class ValueNetwork(nn.Module):
    """V_ψ(s), the state-value baseline: ``[n, obs]`` → ``[n]``.

    Examples:
        >>> import torch, voidgrad as vg
        >>> vg.rl.ValueNetwork(obs_dim=4, width=16)(torch.zeros(3, 4)).shape
        torch.Size([3])
    """

    def __init__(self, obs_dim: int, width: int = 64):
        super().__init__()
        self.net = mlp(check_int("obs_dim", obs_dim, 1), 1, check_int("width", width, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)
