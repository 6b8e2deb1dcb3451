"""The contract every registered estimator keeps, checked over the whole registry.

An estimator added to ``voidgrad.registry`` is picked up here with no further
test code: its seeded ask/tell replays bit for bit, its ``state_dict`` survives
a weights-only file and continues the run exactly, bad arguments are refused
naming them, and, where it claims to be unbiased (``estimator.unbiased``), the
mean of its estimates matches a closed-form gradient within the CLT tolerance
of TESTING.md (z = 5 per component; these run under ``make test-all``, the
per-estimator files hold the fast ones).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Normal

from tests.conftest import assert_unbiased, fails_unbiased_check
from voidgrad import registry
from voidgrad.estimators.distributional import DistributionEstimator
from voidgrad.estimators.protocol import Estimate, Estimator

BLACKBOX = registry.names("blackbox", presets=False)
DISTRIBUTION = registry.names("distribution", presets=False)
D = 3
Z = 5.0


def build(name: str, seed: int) -> Estimator:
    """The registry's estimator, with the options it requires and no others."""
    entry = registry.method(name, ["blackbox", "distribution"])
    options: dict[str, Any] = {}
    if "control" in entry.required:
        torch.manual_seed(0)
        options["control"] = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    if "guide" in entry.required:  # any deterministic direction field
        options["guide"] = torch.cos
    estimator = entry.make(seed=seed, **options)
    assert isinstance(estimator, Estimator)
    return estimator


def round_trip(state: dict[str, Any]) -> dict[str, Any]:
    """The state through a file loaded weights-only: what a checkpoint gives back."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# --------------------------------------------------------------------------- black boxes

CENTRE = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
WEIGHTS = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)


def quadratic(points: torch.Tensor) -> torch.Tensor:
    """F(x) = Σ_k w_k (x_k − c_k)² at points ``[..., d]``: smoothing adds only a constant."""
    return ((points - CENTRE) ** 2 * WEIGHTS).sum(-1)


def blackbox_round(estimator: Estimator, theta: torch.Tensor) -> tuple[torch.Tensor, Estimate]:
    """One ask → evaluate → tell → update → step; the VJP for an incoming gradient of 1."""
    query = estimator.ask(theta)
    estimate = estimator.tell(query, quadratic(query.inputs))
    assert estimate.vjp is not None
    grad, _ = estimate.vjp(torch.ones(theta.shape[0], dtype=theta.dtype))
    estimator.update(estimate)
    estimator.step()
    return grad, estimate


THETA = torch.tensor([[0.2, 0.3, -0.4]], dtype=torch.float64)


@pytest.mark.parametrize("name", BLACKBOX)
def test_blackbox_seeded_replay_is_bit_exact(name: str) -> None:
    first, second = build(name, 3), build(name, 3)
    for _ in range(3):
        query_a, query_b = first.ask(THETA), second.ask(THETA)
        assert torch.equal(query_a.inputs, query_b.inputs)
        assert torch.equal(query_a.seeds, query_b.seeds)
        a = first.tell(query_a, quadratic(query_a.inputs))
        b = second.tell(query_b, quadratic(query_b.inputs))
        assert a.vjp is not None and b.vjp is not None
        assert torch.equal(a.value, b.value)
        ones = torch.ones(1, dtype=torch.float64)
        assert torch.equal(a.vjp(ones)[0], b.vjp(ones)[0])
        for estimator, estimate in ((first, a), (second, b)):
            estimator.update(estimate)
            estimator.step()


@pytest.mark.parametrize("name", BLACKBOX)
def test_blackbox_state_dict_continues_the_run_exactly(name: str) -> None:
    running = build(name, 3)
    for _ in range(3):
        blackbox_round(running, THETA)
    resumed = build(name, 11)  # another seed: the state must carry the stream
    resumed.load_state_dict(round_trip(running.state_dict()))
    for _ in range(2):
        expected, _ = blackbox_round(running, THETA)
        got, _ = blackbox_round(resumed, THETA)
        assert torch.equal(expected, got)


@pytest.mark.parametrize("name", BLACKBOX + DISTRIBUTION)
def test_bad_arguments_are_refused_naming_them(name: str) -> None:
    entry = registry.method(name, ["blackbox", "distribution"])
    with pytest.raises(ValueError, match="seed"):
        build(name, -1)
    with pytest.raises(TypeError, match="not_an_option"):
        entry.make(seed=0, not_an_option=1, **dict.fromkeys(entry.required))


def blackbox_estimates(estimator: Estimator, draws: int) -> torch.Tensor:
    """``draws`` independent gradient estimates at θ, ``[draws, d]``."""
    return torch.cat([blackbox_round(estimator, THETA)[0] for _ in range(draws)])


@pytest.mark.slow
@pytest.mark.parametrize("name", BLACKBOX)
def test_blackbox_unbiased_where_claimed(name: str) -> None:
    estimator = build(name, 5)
    if not estimator.unbiased:
        pytest.skip(f"{name} does not claim to be unbiased")
    truth = 2 * WEIGHTS * (THETA[0] - CENTRE)  # the smoothed quadratic's gradient
    estimates = blackbox_estimates(estimator, 400)
    assert_unbiased(estimates, truth, Z)
    assert fails_unbiased_check(1.5 * estimates, truth, Z)  # the check sees a 50% bias


# --------------------------------------------------------------------------- distributions

DIST_WEIGHTS = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
TARGETS = torch.tensor([0.0, 1.0, 0.3], dtype=torch.float64)


@dataclass(frozen=True)
class Case:
    """A distribution with parameters θ, a differentiable f, and ∇_θ E[f] in closed form."""

    name: str
    make: Callable[[torch.Tensor], Distribution]
    theta: torch.Tensor
    truth: torch.Tensor

    @staticmethod
    def cost(z: torch.Tensor) -> torch.Tensor:
        """f(z) = Σ_k w_k (z_k − t_k)²: a polynomial, defined on relaxed samples too."""
        return ((z - TARGETS) ** 2 * DIST_WEIGHTS).sum(-1)


def normal_case() -> Case:
    mu = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    # E[(z − t)²] = (μ − t)² + 1 for z ~ N(μ, 1)
    return Case("normal", lambda theta: Normal(theta, 1.0), mu, 2 * DIST_WEIGHTS * (mu - TARGETS))


def bernoulli_case() -> Case:
    logits = torch.tensor([0.4, -0.3, 1.0], dtype=torch.float64)
    p = torch.sigmoid(logits)
    # E[(b − t)²] = p (1 − t)² + (1 − p) t², and dp/dlogit = p (1 − p)
    truth = DIST_WEIGHTS * ((1 - TARGETS) ** 2 - TARGETS**2) * p * (1 - p)
    return Case("bernoulli", lambda theta: Bernoulli(logits=theta), logits, truth)


def case_for(name: str) -> Case:
    """The first case whose distribution the estimator accepts (asked of a throwaway one)."""
    estimator = build(name, 0)
    assert isinstance(estimator, DistributionEstimator)
    refusals = []
    for case in (normal_case(), bernoulli_case()):
        theta = case.theta.clone().requires_grad_(True)
        try:
            estimator.ask(case.make(theta), 2 * estimator.min_samples)
        except (ValueError, TypeError) as error:
            refusals.append(f"{case.name}: {error}")
            continue
        return case
    raise AssertionError(f"{estimator!r} accepts no test distribution: {refusals}")


def distribution_round(
    estimator: Estimator, case: Case, samples: int = 8
) -> tuple[torch.Tensor, Estimate]:
    """One ask → evaluate → tell → update; the gradient of the estimate's loss with respect to θ."""
    theta = case.theta.clone().requires_grad_(True)
    query = estimator.ask(case.make(theta), samples)
    inputs = query.inputs if query.differentiable else query.inputs.detach()
    estimate = estimator.tell(query, case.cost(inputs))
    assert estimate.loss is not None
    (grad,) = torch.autograd.grad(estimate.loss.sum(), theta, retain_graph=True)
    estimator.update(estimate)
    estimator.step()
    return grad, estimate


@pytest.mark.parametrize("name", DISTRIBUTION)
def test_distribution_seeded_replay_is_bit_exact(name: str) -> None:
    first, second = build(name, 3), build(name, 3)
    case = case_for(name)
    for _ in range(3):
        grad_a, a = distribution_round(first, case)
        grad_b, b = distribution_round(second, case)
        assert torch.equal(a.value, b.value) and torch.equal(grad_a, grad_b)


@pytest.mark.parametrize("name", DISTRIBUTION)
def test_distribution_state_dict_continues_the_run_exactly(name: str) -> None:
    running = build(name, 3)
    case = case_for(name)
    for _ in range(3):
        distribution_round(running, case)
    resumed = build(name, 3)
    resumed.load_state_dict(round_trip(running.state_dict()))
    for _ in range(2):
        expected, _ = distribution_round(running, case)
        got, _ = distribution_round(resumed, case)
        assert torch.equal(expected, got)


@pytest.mark.slow
@pytest.mark.parametrize("name", DISTRIBUTION)
def test_distribution_unbiased_where_claimed(name: str) -> None:
    estimator = build(name, 5)
    if not estimator.unbiased:
        pytest.skip(f"{name} does not claim to be unbiased")
    case = case_for(name)
    estimates = torch.stack([distribution_round(estimator, case)[0] for _ in range(400)])
    assert_unbiased(estimates, case.truth, Z)
    assert fails_unbiased_check(1.5 * estimates, case.truth, Z)


def test_the_contract_covers_every_registered_estimator() -> None:
    assert set(BLACKBOX) >= {"smoothing", "spsa", "fd", "zerograds"}
    assert set(DISTRIBUTION) >= {"score", "pathwise", "rebar", "relax", "lax", "disarm"}
