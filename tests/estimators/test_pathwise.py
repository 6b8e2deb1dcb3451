"""Pathwise: unbiasedness against a closed form, and its two clear errors."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal

import voidgrad as vg
from tests.conftest import assert_unbiased


def test_unbiased_for_gaussians_against_the_closed_form() -> None:
    K = 2000
    mu = torch.full((K, 1), 0.7, dtype=torch.float64, requires_grad=True)
    scale = torch.full((K, 1), 1.3, dtype=torch.float64, requires_grad=True)
    loss = vg.expectation(lambda z: z[..., 0] ** 2, Normal(mu, scale), 2, vg.Pathwise(seed=0))
    loss.sum().backward()
    assert_unbiased(mu.grad, torch.tensor([1.4], dtype=torch.float64))
    assert_unbiased(scale.grad, torch.tensor([2.6], dtype=torch.float64))


def test_replay_is_the_derivative_along_the_sample() -> None:
    mu = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    seen = []

    def cost(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.detach().clone())
        return z[..., 0] ** 3

    vg.expectation(cost, Normal(mu, 1.0), 3, vg.Pathwise(seed=1)).backward()
    torch.testing.assert_close(mu.grad, (3 * seen[0][:, 0] ** 2).mean(0, keepdim=True))


def test_needs_rsample() -> None:
    theta = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="Bernoulli has none: use vg.ScoreFunction"):
        vg.expectation(lambda b: b.sum(-1), Bernoulli(logits=theta), 4, vg.Pathwise())


def test_needs_f_connected_to_the_samples() -> None:
    mu = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="not connected to the samples"):
        vg.expectation(lambda z: z.detach().sum(-1), Normal(mu, 1.0), 4, vg.Pathwise())
    with pytest.raises(ValueError, match="not connected to the samples"):
        vg.expectation(lambda z: z.detach().numpy().sum(-1), Normal(mu, 1.0), 4, vg.Pathwise())
