"""SPSA: exact replay, unbiasedness on linear and quadratic F, errors."""

from __future__ import annotations

import pytest
import torch

import voidgrad as vg
from tests.conftest import assert_unbiased, fails_unbiased_check


def linear(X: torch.Tensor) -> torch.Tensor:
    return X @ torch.tensor([1.5, -2.0, 0.25, 4.0], dtype=X.dtype) + 3.0


def spsa_gradients(estimator: vg.SPSA, fn, theta: torch.Tensor, K: int) -> torch.Tensor:
    batch = theta.expand(K, -1).clone().requires_grad_(True)
    vg.blackbox(vg.Evaluator(fn, backend="vectorized"), estimator)(batch).sum().backward()
    return batch.grad


def test_replay_matches_the_formula() -> None:
    theta = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    c, seed = 0.05, 11

    def fn(row: torch.Tensor) -> torch.Tensor:
        return torch.sin(row).sum() + row[0] * row[2]

    vg.blackbox(fn, vg.SPSA(c, samples=4, seed=seed))(theta).backward()

    g = torch.Generator().manual_seed(seed)
    packed = torch.randint(0, 256, (1, 2, 1), generator=g, dtype=torch.uint8)[0, :, 0].tolist()
    # Δ_ij is bit j of the i-th random byte, mapped {0, 1} -> {-1, +1}.
    delta = torch.tensor(
        [[2.0 * ((byte >> j) & 1) - 1 for j in range(3)] for byte in packed], dtype=torch.float64
    )
    x = theta.detach()
    grad = sum((fn(x + c * d) - fn(x - c * d)) / (2 * c) * d for d in delta) / 2
    torch.testing.assert_close(theta.grad, grad)


def test_unbiased_on_linear_functions() -> None:
    theta = torch.tensor([0.1, 0.2, -0.3, 0.4], dtype=torch.float64)
    grads = spsa_gradients(vg.SPSA(0.1, samples=2, seed=0), linear, theta, K=4000)
    truth = torch.tensor([1.5, -2.0, 0.25, 4.0], dtype=torch.float64)
    assert_unbiased(grads, truth)
    assert fails_unbiased_check(grads * 2, truth)  # the c-instead-of-2c slip is caught


def test_unbiased_on_quadratic_functions() -> None:
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)

    def quadratic(X: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("ni,ij,nj->n", X, A, X)

    theta = torch.tensor([1.0, -1.0], dtype=torch.float64)
    assert_unbiased(
        spsa_gradients(vg.SPSA(0.3, samples=4, seed=1), quadratic, theta, 4000), A @ theta
    )


def test_one_direction_in_one_dimension_is_the_central_difference() -> None:
    theta = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    vg.blackbox(lambda r: r[0] ** 3, vg.SPSA(0.1, seed=0))(theta).backward()
    torch.testing.assert_close(
        theta.grad, torch.tensor([(0.8**3 - 0.6**3) / 0.2], dtype=torch.float64)
    )


def test_one_dimension_in_float16_divides_by_the_step_actually_taken() -> None:
    # 1 ± 0.01 rounds to 1 + 10/1024 and 1 − 20/2048: dividing by 2c gave 0.9766.
    theta = torch.ones(1, dtype=torch.float16, requires_grad=True)
    vg.blackbox(lambda r: float(r[0]), vg.SPSA(0.01, seed=0))(theta).backward()
    assert theta.grad is not None and theta.grad.item() == 1.0


def test_unbiased_where_the_dtype_rounds_each_coordinate_differently() -> None:
    # float32 at 1e4 and 3e4: θ ± 1e-3 moves by 0.98e-3 and 1.95e-3, so dividing by c
    # overestimated the second slope by 1.95×. Outputs stay small, hence exact.
    theta = torch.tensor([1e4, 3e4], dtype=torch.float32)
    slopes = torch.tensor([2.0, -1.0], dtype=torch.float64)

    def linear_about_theta(X: torch.Tensor) -> torch.Tensor:
        return (X.double() - theta.double()) @ slopes

    grads = spsa_gradients(vg.SPSA(1e-3, samples=2, seed=0), linear_about_theta, theta, K=4000)
    assert_unbiased(grads.double(), slopes)


def test_directions_are_balanced_independent_signs() -> None:
    estimator = vg.SPSA(0.5, samples=2000, seed=0)
    delta = estimator.ask(torch.zeros(1, 13, dtype=torch.float64)).inputs[0, :1000] / 0.5
    assert set(delta.unique().tolist()) == {-1.0, 1.0}
    correlation = delta.T @ delta / delta.shape[0]  # ≈ I within 5 standard errors
    identity = torch.eye(13, dtype=torch.float64)
    torch.testing.assert_close(correlation, identity, atol=5 / 1000**0.5, rtol=0)


def test_common_random_numbers_pair_the_seeds() -> None:
    seen: list[int] = []
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    vg.blackbox(
        lambda r, seed: seen.append(seed) or 0.0,
        vg.SPSA(0.1, samples=4, common_random_numbers=True, seed=0),
    )(theta)
    assert seen[:2] == seen[2:] and seen[0] != seen[1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(c=0), "c must be a finite number > 0; got 0"),
        (dict(c=0.1, samples=3), "samples must be even .* got 3"),
        (dict(c=0.1, samples=-2), "samples must be a positive int; got -2"),
        (dict(c=0.1, seed=1.5), "seed must be a non-negative int or None; got 1.5"),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        vg.SPSA(**kwargs)
