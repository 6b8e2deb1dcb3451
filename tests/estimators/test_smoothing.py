"""GaussianSmoothing: exact replay, unbiasedness (CLT), value, CRN, schedule, errors."""

from __future__ import annotations

import math

import pytest
import torch

import voidgrad as vg
from tests.conftest import assert_unbiased, fails_unbiased_check

VARIANTS = [
    pytest.param(dict(importance=True, antithetic=True), id="importance-antithetic"),
    pytest.param(dict(importance=True, antithetic=False), id="importance-plain"),
    pytest.param(dict(importance=False, antithetic=True), id="gaussian-antithetic"),
    pytest.param(dict(importance=False, antithetic=False), id="gaussian-plain"),
]

A = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, -0.5], [0.0, -0.5, 1.0]], dtype=torch.float64)
b = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)


def quadratic(X: torch.Tensor) -> torch.Tensor:
    """F(x) = ½ xᵀAx + bᵀx for a batch X [n, 3]."""
    return 0.5 * torch.einsum("ni,ij,nj->n", X, A, X) + X @ b


def estimates(estimator: vg.BlackBoxEstimator, fn, theta: torch.Tensor, K: int):
    """K independent (value, gradient) estimates at theta, one per batch row."""
    batch = theta.expand(K, -1).clone().requires_grad_(True)
    bb = vg.blackbox(vg.Evaluator(fn, backend="vectorized"), estimator)
    value = bb(batch)
    value.sum().backward()
    return value.detach(), batch.grad


def test_replay_importance_antithetic_matches_the_formula() -> None:
    theta = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64, requires_grad=True)
    sigma, samples, seed = 0.5, 6, 123
    bb = vg.blackbox(
        lambda r: quadratic(r[None])[0], vg.GaussianSmoothing(sigma, samples, seed=seed)
    )
    value = bb(theta)
    value.backward()

    g = torch.Generator().manual_seed(seed)
    c = torch.rand((1, 3, 3), generator=g, dtype=torch.float64) * 2 - 1
    tau = (torch.sign(c) * sigma * torch.sqrt(-2 * torch.log(1 - c.abs())))[0]
    F_plus = quadratic(theta.detach() + tau)
    F_minus = quadratic(theta.detach() - tau)
    weights = torch.sign(tau) * math.sqrt(2 / math.pi) / sigma
    grad = (weights * (F_plus - F_minus)[:, None]).sum(0) / (2 * 3)
    torch.testing.assert_close(theta.grad, grad)
    torch.testing.assert_close(value.detach(), torch.cat([F_plus, F_minus]).mean())


def test_replay_gaussian_plain_matches_the_formula() -> None:
    theta = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64, requires_grad=True)
    sigma, samples, seed = 0.25, 5, 7
    estimator = vg.GaussianSmoothing(sigma, samples, antithetic=False, importance=False, seed=seed)
    value = vg.blackbox(lambda r: quadratic(r[None])[0], estimator)(theta)
    value.backward()

    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((1, 5, 3), generator=g, dtype=torch.float64)[0]
    F = quadratic(theta.detach() + sigma * eps)
    torch.testing.assert_close(theta.grad, (eps / sigma * F[:, None]).mean(0))
    torch.testing.assert_close(value.detach(), F.mean())


@pytest.mark.parametrize("options", VARIANTS)
def test_gradient_of_a_quadratic_is_unbiased(options) -> None:
    theta = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)
    estimator = vg.GaussianSmoothing(0.4, 4, seed=1, **options)
    _, grads = estimates(estimator, quadratic, theta, K=4000)
    assert_unbiased(grads, A @ theta + b)


@pytest.mark.parametrize("importance", [True, False])
def test_check_has_power_against_a_dropped_factor(importance) -> None:
    """The same tolerance rejects the estimator with a wrong constant (sqrt(2/π) or 1/σ)."""
    theta = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)
    sigma = 0.4
    _, grads = estimates(
        vg.GaussianSmoothing(sigma, 4, importance=importance, seed=1), quadratic, theta, K=4000
    )
    wrong = math.sqrt(math.pi / 2) if importance else sigma
    assert fails_unbiased_check(grads * wrong, A @ theta + b)


@pytest.mark.parametrize("options", VARIANTS)
def test_vjp_of_a_linear_map_is_unbiased(options) -> None:
    J = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([0.7, -1.3], dtype=torch.float64)
    theta = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    K = 4000
    batch = theta.expand(K, -1).clone().requires_grad_(True)
    estimator = vg.GaussianSmoothing(0.3, 4, seed=2, **options)
    images = vg.blackbox(vg.Evaluator(lambda X: X @ J.T, backend="vectorized"), estimator)(batch)
    assert images.shape == (K, 2)
    (images @ v).sum().backward()
    assert_unbiased(batch.grad, J.T @ v)


@pytest.mark.parametrize(
    ("importance", "second_moment"), [(False, 1.0), (True, 2.0)], ids=["gaussian", "importance"]
)
def test_value_is_the_mean_of_the_sampling_kernel(importance, second_moment) -> None:
    """E[F(θ+τ)] = F(θ) + ½ E[τ_k²] tr(A); E[τ_k²] = σ² for κ and 2σ² for the Rayleigh q."""
    theta = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)
    sigma = 0.4
    values, _ = estimates(
        vg.GaussianSmoothing(sigma, 4, importance=importance, seed=3), quadratic, theta, K=4000
    )
    truth = quadratic(theta[None])[0] + 0.5 * second_moment * sigma**2 * A.trace()
    assert_unbiased(values[:, None], truth[None])


def test_antithetic_pairs_cancel_even_functions_exactly() -> None:
    theta = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    bb = vg.blackbox(lambda r: (r**2).sum() + 5.0, vg.GaussianSmoothing(1.0, 8, seed=0))
    bb(theta).backward()
    torch.testing.assert_close(theta.grad, torch.zeros(4, dtype=torch.float64))


def test_same_seed_replays_bit_for_bit_and_other_seeds_differ() -> None:
    theta = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float32)

    def run(seed: int) -> torch.Tensor:
        return estimates(vg.GaussianSmoothing(0.2, 8, seed=seed), quadratic, theta.double(), K=3)[1]

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_common_random_numbers_share_a_seed_within_each_pair() -> None:
    seen: list[int] = []

    def noisy(row: torch.Tensor, seed: int) -> float:
        seen.append(seed)
        return (
            float(row.sum()) + torch.randn((), generator=torch.Generator().manual_seed(seed)).item()
        )

    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    estimator = vg.GaussianSmoothing(0.1, 6, common_random_numbers=True, seed=0)
    vg.blackbox(noisy, estimator)(theta).backward()
    assert seen[:3] == seen[3:] and len(set(seen[:3])) == 3

    seen.clear()
    vg.blackbox(noisy, vg.GaussianSmoothing(0.1, 6, seed=0))(theta)
    assert len(set(seen)) == 6


def test_common_random_numbers_cancel_the_noise_of_each_pair_exactly() -> None:
    def noisy(X: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(int(s)) for s in seed]
        return quadratic(X) + torch.stack([torch.randn((), generator=g) for g in generators])

    theta = torch.tensor([[0.3, -0.2, 1.0]], dtype=torch.float64)

    def gradient(fn, crn: bool) -> torch.Tensor:
        estimator = vg.GaussianSmoothing(0.1, 8, common_random_numbers=crn, seed=0)
        batch = theta.clone().requires_grad_(True)
        vg.blackbox(vg.Evaluator(fn, backend="vectorized"), estimator)(batch).sum().backward()
        return batch.grad

    torch.testing.assert_close(gradient(noisy, crn=True), gradient(quadratic, crn=True))
    assert not torch.allclose(gradient(noisy, crn=False), gradient(quadratic, crn=False))


def test_schedule_anneals_sigma_with_step() -> None:
    schedule = vg.LinearAnneal(sigma_min=0.1, total_steps=4, constant_steps=2)
    estimator = vg.GaussianSmoothing(0.5, 2, schedule=schedule, seed=0)
    sigmas = []
    for _ in range(6):
        sigmas.append(estimator.sigma)
        estimator.step()
    assert sigmas == pytest.approx([0.5, 0.5, 0.5, 0.3, 0.1, 0.1])


def test_sigma_used_by_the_draw_follows_the_schedule() -> None:
    theta = torch.zeros(1, 1000, dtype=torch.float64)
    estimator = vg.GaussianSmoothing(
        1.0, 2, importance=False, seed=0, schedule=vg.LinearAnneal(0.01, total_steps=1)
    )
    before = estimator.ask(theta).inputs.std()
    estimator.step()
    after = estimator.ask(theta).inputs.std()
    assert 0.9 < before < 1.1 and 0.009 < after < 0.011


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(sigma=0.0, samples=2), "sigma must be a finite number > 0; got 0.0"),
        (dict(sigma=-1, samples=2), "sigma must be a finite number > 0; got -1"),
        (dict(sigma=float("nan"), samples=2), "sigma must be a finite number > 0"),
        (dict(sigma=0.1, samples=0), "samples must be a positive int; got 0"),
        (dict(sigma=0.1, samples=3), "samples must be even .* got 3"),
        (dict(sigma=0.1, samples=2, seed=-1), "seed must be a non-negative int or None; got -1"),
        (
            dict(sigma=0.1, samples=2, schedule=vg.LinearAnneal(0.5, 10)),
            r"schedule.sigma_min \(0.5\) must not exceed sigma \(0.1\)",
        ),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        vg.GaussianSmoothing(**kwargs)


@pytest.mark.parametrize(
    ("estimator", "flag"),
    [
        (vg.GaussianSmoothing, "antithetic"),
        (vg.GaussianSmoothing, "importance"),
        (vg.GaussianSmoothing, "common_random_numbers"),
        (vg.SPSA, "common_random_numbers"),
        (vg.ZeroGrads, "unbiased"),
    ],
)
def test_flags_must_be_bools(estimator, flag) -> None:
    # bool("False") is True: a flag read from a config file must not flip silently.
    with pytest.raises(TypeError, match=f"{flag} must be True or False; got 'False'"):
        estimator(0.1, 2, **{flag: "False"})


def test_odd_samples_are_fine_without_antithetic_pairs() -> None:
    assert vg.GaussianSmoothing(0.1, 3, antithetic=False).samples == 3


def test_schedule_must_be_callable() -> None:
    with pytest.raises(TypeError, match="schedule must be callable or None; got float"):
        vg.GaussianSmoothing(0.1, 2, schedule=0.5)
