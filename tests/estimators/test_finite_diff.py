"""FiniteDifferences: the formulas, their exactness and order, seeds, errors."""

from __future__ import annotations

import pytest
import torch

import voidgrad as vg


def cubic(row: torch.Tensor) -> torch.Tensor:
    return (row**3).sum() + row[0] * row[1]


def cubic_gradient(x: torch.Tensor) -> torch.Tensor:
    return 3 * x**2 + torch.stack([x[1], x[0]])


@pytest.mark.parametrize("scheme", ["forward", "central"])
def test_exact_on_linear_functions(scheme) -> None:
    a = torch.tensor([2.0, -3.0], dtype=torch.float64)
    theta = torch.tensor([0.4, 0.9], dtype=torch.float64, requires_grad=True)
    value = vg.blackbox(lambda r: r @ a + 1, vg.FiniteDifferences(1e-2, scheme))(theta)
    value.backward()
    torch.testing.assert_close(theta.grad, a)


def test_replay_forward_and_value_is_f_at_theta() -> None:
    theta = torch.tensor([0.4, 0.9], dtype=torch.float64, requires_grad=True)
    h = 1e-3
    bb = vg.blackbox(cubic, vg.FiniteDifferences(h, "forward"))
    value = bb(theta)
    value.backward()
    x = theta.detach()
    expected = torch.stack([(cubic(x + h * e) - cubic(x)) / h for e in torch.eye(2).double()])
    torch.testing.assert_close(theta.grad, expected)
    torch.testing.assert_close(value.detach(), cubic(x))
    assert bb.evaluator.stats.evals == 3


@pytest.mark.parametrize(("scheme", "order"), [("forward", 1), ("central", 2)])
def test_error_shrinks_with_the_order_of_the_scheme(scheme, order) -> None:
    x = torch.tensor([0.4, 0.9], dtype=torch.float64)
    errors = []
    for h in (1e-2, 1e-3):
        theta = x.clone().requires_grad_(True)
        vg.blackbox(cubic, vg.FiniteDifferences(h, scheme))(theta).backward()
        errors.append((theta.grad - cubic_gradient(x)).abs().max())
    assert errors[1] / errors[0] == pytest.approx(10.0**-order, rel=0.05)


def test_vector_outputs_give_the_vjp() -> None:
    J = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 5.0]], dtype=torch.float64)
    v = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
    theta = torch.tensor([0.1, 0.2], dtype=torch.float64, requires_grad=True)
    (vg.blackbox(lambda r: J @ r, vg.FiniteDifferences(1e-3))(theta) @ v).backward()
    torch.testing.assert_close(theta.grad, J.T @ v)


@pytest.mark.parametrize("scheme", ["forward", "central"])
@pytest.mark.parametrize(
    ("dtype", "x", "h"),
    [
        (torch.float16, 1.0, 1e-2),  # 1 ± 0.01 rounds to 1 + 10/1024 and 1 − 20/2048
        (torch.float32, 1e4, 1e-3),  # float32 spacing at 1e4 is 2^-10 ≈ 0.98e-3
        (torch.float32, 3e4, 1e-3),  # spacing 2^-9: θ + h rounds to θ + 1.95e-3
    ],
)
def test_the_difference_is_divided_by_the_step_actually_taken(scheme, dtype, x, h) -> None:
    # A slope-1 function whose outputs are exact in the dtype: the quotient is exactly 1.
    # Dividing by h (or 2h) instead gave 0.9766 (float16) and 0.977 or 1.95 (float32).
    theta = torch.tensor([x], dtype=dtype, requires_grad=True)
    vg.blackbox(lambda r: float(r[0].double() - x), vg.FiniteDifferences(h, scheme))(
        theta
    ).backward()
    assert theta.grad is not None and theta.grad.item() == 1.0


def test_plateau_gives_exactly_zero() -> None:
    theta = torch.tensor([0.3, 0.3], dtype=torch.float64, requires_grad=True)
    vg.blackbox(lambda r: float(r[0] > 0.5), vg.FiniteDifferences(1e-3))(theta).backward()
    assert torch.equal(theta.grad, torch.zeros(2, dtype=torch.float64))


def test_common_random_numbers_give_all_points_one_seed() -> None:
    seen: list[int] = []
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    vg.blackbox(
        lambda r, seed: seen.append(seed) or 0.0,
        vg.FiniteDifferences(0.1, common_random_numbers=True, seed=0),
    )(theta)
    assert len(seen) == 6 and len(set(seen)) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(h=0.0), "h must be a finite number > 0; got 0.0"),
        (dict(h=1e-3, scheme="backward"), "scheme must be 'forward' or 'central'; got 'backward'"),
        (dict(h=1e-3, seed=-1), "seed must be a non-negative int or None; got -1"),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        vg.FiniteDifferences(**kwargs)
