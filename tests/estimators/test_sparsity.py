"""jac_sparsity: per-output credit for GaussianSmoothing and SPSA (estimators/sparsity.py).

Tiers: the formula replayed exactly, the full pattern equal to the dense estimator, the
unbiasedness against the exact VJP (CLT), the variance it saves measured, and the errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

import voidgrad as vg
from tests.conftest import assert_unbiased, fails_unbiased_check
from voidgrad.estimators.protocol import Estimate, Estimator
from voidgrad.estimators.sparsity import JacobianSparsity

D = 32
WEIGHTS = torch.linspace(0.5, 1.5, D, dtype=torch.float64)  # v: the incoming gradient


def local(points: torch.Tensor) -> torch.Tensor:
    """F_o(x) = (x_o + 2 x_{o+1})², o = 0..D−1 (cyclic): each output reads two parameters."""
    return (points + 2 * points.roll(-1, dims=-1)) ** 2


def local_pattern() -> torch.Tensor:
    """S[o, o] = S[o, o + 1] = True (cyclic), as a dense bool tensor."""
    pattern = torch.eye(D, dtype=torch.bool)
    return pattern | pattern.roll(1, dims=1)


def exact_vjp(theta: torch.Tensor) -> torch.Tensor:
    """Jᵀ v of ``local`` at θ ``[d]`` by autograd."""
    x = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((local(x) * WEIGHTS).sum(), x)
    return grad


THETA = torch.linspace(-1.0, 1.0, D, dtype=torch.float64)

MAKERS: dict[str, Callable[..., Estimator]] = {
    "smoothing": lambda **kw: vg.GaussianSmoothing(0.05, 8, **kw),
    "smoothing-plain": lambda **kw: vg.GaussianSmoothing(0.05, 8, importance=False, **kw),
    "smoothing-one-sided": lambda **kw: vg.GaussianSmoothing(
        0.05, 8, antithetic=False, importance=False, **kw
    ),
    "spsa": lambda **kw: vg.SPSA(0.05, 8, **kw),
}


def vjp(estimator: Estimator, theta: torch.Tensor, fn=local) -> tuple[torch.Tensor, Estimate]:
    query = estimator.ask(theta.reshape(1, -1))
    estimate = estimator.tell(query, fn(query.inputs))
    assert estimate.vjp is not None
    return estimate.vjp(WEIGHTS.reshape(1, -1))[0][0], estimate


@pytest.mark.parametrize("name", list(MAKERS))
def test_the_full_pattern_is_the_dense_estimator(name: str) -> None:
    full = torch.ones(D, D, dtype=torch.bool)
    dense = vjp(MAKERS[name](seed=3), THETA)[0]
    sparse = vjp(MAKERS[name](seed=3, jac_sparsity=full), THETA)[0]
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-12)


def test_the_estimate_is_the_per_output_formula() -> None:
    """ĝ_j = (1/2n) Σ_i W_ij Σ_o S[o, j] v_o [F_o(θ + τ_i) − F_o(θ − τ_i)], W = τ/σ²."""
    sigma, samples = 0.05, 6
    estimator = vg.GaussianSmoothing(
        sigma, samples, importance=False, jac_sparsity=local_pattern(), seed=4
    )
    got, _ = vjp(estimator, THETA)
    query = vg.GaussianSmoothing(sigma, samples, importance=False, seed=4).ask(THETA[None])
    points = query.inputs[0]
    n = samples // 2
    pattern = local_pattern().double()
    expected = torch.zeros(D, dtype=torch.float64)
    for i in range(n):
        tau = points[i] - THETA
        difference = WEIGHTS * (local(points[i]) - local(points[n + i]))
        expected += tau / sigma**2 * (pattern.T @ difference) / (2 * n)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(MAKERS))
def test_the_true_pattern_keeps_the_estimate_unbiased_and_cuts_its_variance(name: str) -> None:
    """Unbiased for Jᵀv (F is quadratic) with and without the pattern; the variance ratio."""
    draws = 300
    truth = exact_vjp(THETA)
    sparse_estimator = MAKERS[name](seed=5, jac_sparsity=local_pattern())
    dense_estimator = MAKERS[name](seed=5)
    sparse = torch.stack([vjp(sparse_estimator, THETA)[0] for _ in range(draws)])
    dense = torch.stack([vjp(dense_estimator, THETA)[0] for _ in range(draws)])
    assert_unbiased(sparse, truth)
    assert fails_unbiased_check(sparse + 0.1 * truth.abs().mean(), truth)  # the check has power
    # Each output reads 2 of the 32 parameters: the dense estimate carries the other outputs'
    # noise on every coordinate. Measured: 12 (plain), 36 (importance), 52 (SPSA), 125
    # (one-sided) over seeds 5 and 6; 5 leaves room for the seed.
    ratio = dense.var(0).sum() / sparse.var(0).sum()
    assert ratio > 5, f"variance ratio dense/sparse = {float(ratio):.2f}"


def test_the_variance_estimate_matches_the_spread_of_the_estimates() -> None:
    estimator = vg.GaussianSmoothing(0.05, 16, jac_sparsity=local_pattern(), seed=6)
    pairs = [vjp(estimator, THETA) for _ in range(400)]
    spread = torch.stack([grad for grad, _ in pairs]).var(0).sum()
    reported = torch.stack(
        [estimate.vjp(WEIGHTS.reshape(1, -1))[1][0] for _, estimate in pairs]  # type: ignore[index,misc]
    ).mean()
    assert 0.8 < float(reported / spread) < 1.25


def test_an_output_with_an_empty_row_gets_no_credit() -> None:
    pattern = local_pattern()
    pattern[0] = False  # output 0 depends on nothing, by this pattern

    def with_noisy_first_output(points: torch.Tensor) -> torch.Tensor:
        values = local(points)
        values[..., 0] = torch.randn(values.shape[:-1], dtype=values.dtype) * 1e6
        return values

    quiet, _ = vjp(vg.GaussianSmoothing(0.05, 8, jac_sparsity=pattern, seed=7), THETA)
    noisy, _ = vjp(
        vg.GaussianSmoothing(0.05, 8, jac_sparsity=pattern, seed=7),
        THETA,
        with_noisy_first_output,
    )
    torch.testing.assert_close(noisy, quiet, rtol=1e-12, atol=1e-12)


def test_a_failed_direction_is_dropped() -> None:
    estimator = vg.GaussianSmoothing(0.05, 8, jac_sparsity=local_pattern(), seed=8)
    query = estimator.ask(THETA[None])
    values = local(query.inputs)
    values[0, 1, 5] = math.nan  # direction 1's + point fails in one output
    assert query.context is not None
    estimate = estimator.tell(query, values)
    assert estimate.vjp is not None
    got = estimate.vjp(WEIGHTS[None])[0][0]

    kept = [0, 2, 3]  # the directions left; the − points follow the 4 + points
    sigma = 0.05
    points = query.inputs[0]
    expected = torch.zeros(D, dtype=torch.float64)
    for i in kept:
        tau = points[i] - THETA
        weight = tau.sign() * math.sqrt(2 / math.pi) / sigma
        difference = WEIGHTS * (local(points[i]) - local(points[4 + i])) / 2
        expected += weight * (local_pattern().double().T @ difference) / len(kept)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
def test_patterns_in_every_accepted_form_agree() -> None:
    dense = local_pattern()
    forms = [dense, dense.to_sparse(), dense.to_sparse_csr(), dense.double().to_sparse()]
    scipy_sparse = pytest.importorskip("scipy.sparse")
    forms.append(scipy_sparse.csr_matrix(dense.numpy()))
    forms.append(scipy_sparse.coo_array(dense.numpy()))
    credits = [JacobianSparsity(form).credit(WEIGHTS[None]) for form in forms]
    for credit in credits[1:]:
        assert torch.equal(credit, credits[0])
    assert JacobianSparsity(dense).nnz == 2 * D


def test_explicit_zeros_of_a_sparse_pattern_are_not_dependencies() -> None:
    pattern = torch.sparse_coo_tensor([[0, 1], [0, 1]], [1.0, 0.0], (2, 2), check_invariants=True)
    assert JacobianSparsity(pattern).nnz == 1


@pytest.mark.parametrize(
    ("pattern", "error", "message"),
    [
        ([[True]], TypeError, "jac_sparsity must be a torch sparse .* got list"),
        (torch.ones(2, 2), TypeError, "a dense jac_sparsity must be a torch.bool tensor"),
        (torch.ones(2, dtype=torch.bool), ValueError, r"2-d \[outputs, d\] pattern; got shape"),
        (torch.ones(0, 3, dtype=torch.bool), ValueError, "outputs, d >= 1"),
        (
            torch.sparse_coo_tensor([[0, 5], [0, 0]], [1.0, 1.0], (2, 2), check_invariants=False),
            ValueError,
            r"row index out of range: indices must lie in \[0, 2\)",
        ),
        (
            torch.sparse_coo_tensor([[0], [0], [0]], [1.0], (2, 2, 2), check_invariants=True),
            ValueError,
            "2-d sparse",
        ),
    ],
)
def test_a_bad_pattern_is_refused_naming_jac_sparsity(pattern, error, message) -> None:
    with pytest.raises(error, match=message):
        vg.GaussianSmoothing(0.1, 4, jac_sparsity=pattern)
    with pytest.raises(error, match=message):
        vg.SPSA(0.1, 4, jac_sparsity=pattern)


def test_a_pattern_of_another_shape_is_refused_at_tell() -> None:
    estimator = vg.SPSA(0.1, 4, jac_sparsity=torch.ones(D, D + 1, dtype=torch.bool), seed=0)
    query = estimator.ask(THETA[None])
    with pytest.raises(ValueError, match=rf"shape \[{D}, {D + 1}\].* {D} outputs .* d = {D}"):
        estimator.tell(query, local(query.inputs))


def test_the_repr_names_the_pattern() -> None:
    assert "jac_sparsity=JacobianSparsity(shape=[32, 32], nnz=64)" in repr(
        vg.SPSA(0.1, jac_sparsity=local_pattern())
    )
    assert repr(vg.SPSA(0.1)) == "SPSA(c=0.1, samples=2)"


def test_an_image_black_box_with_a_loss_after_it_fits_through_its_pattern() -> None:
    """A renderer of D pixels with a torch loss after it: the pattern's estimate drives Adam."""
    target = local(torch.full((D,), 0.3, dtype=torch.float64))
    render = vg.blackbox(
        lambda x: local(x), vg.GaussianSmoothing(0.02, 4, jac_sparsity=local_pattern(), seed=9)
    )
    theta = THETA.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    start = float(((local(THETA) - target) ** 2).sum())
    for _ in range(150):
        optimizer.zero_grad()
        ((render(theta) - target) ** 2).sum().backward()
        optimizer.step()
    end = float(((local(theta.detach()) - target) ** 2).sum())
    assert end < 1e-2 * start
