"""Perturbations lost to floating-point resolution are named, never a silent zero gradient.

Every black-box estimator perturbs θ; where θ ± perturbation rounds back to θ in θ's dtype,
the estimate there is zero (or, for the random perturbations of smoothing, shrunk toward
zero), which an optimizer would take for a flat function. These tests check that a
NumericalWarning names the argument at fault, that the estimate stays finite (no 1/σ² overflow,
no 0/0), and that ordinary perturbations stay silent.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch

import voidgrad as vg
from tests.conftest import assert_unbiased, fails_unbiased_check

Factory = Callable[[], vg.BlackBoxEstimator]

LOST = [
    pytest.param(
        lambda: vg.GaussianSmoothing(sigma=1e-300, samples=8, seed=0),
        torch.float64,
        "sigma=1e-300",
        id="smoothing-importance-float64",
    ),
    pytest.param(
        lambda: vg.GaussianSmoothing(sigma=1e-300, samples=8, importance=False, seed=0),
        torch.float64,
        "sigma=1e-300",
        id="smoothing-plain-float64",
    ),
    pytest.param(
        lambda: vg.GaussianSmoothing(sigma=1e-30, samples=8, seed=0),
        torch.float32,
        "sigma=1e-30",
        id="smoothing-float32",
    ),
    pytest.param(lambda: vg.FiniteDifferences(h=1e-30), torch.float64, "h=1e-30", id="fd-central"),
    pytest.param(
        lambda: vg.FiniteDifferences(h=1e-30, scheme="forward"),
        torch.float64,
        "h=1e-30",
        id="fd-forward",
    ),
    pytest.param(lambda: vg.SPSA(c=1e-30, samples=4, seed=0), torch.float32, "c=1e-30", id="spsa"),
    pytest.param(
        lambda: vg.ZeroGrads(sigma=1e-300, samples=8, seed=0),
        torch.float64,
        "sigma=1e-300",
        id="zerograds",
    ),
]


def quadratic(row: torch.Tensor) -> float:
    return float((row.double() ** 2).sum())


def gradient(estimator: vg.BlackBoxEstimator, theta: torch.Tensor, fn=quadratic) -> torch.Tensor:
    theta = theta.clone().requires_grad_(True)
    vg.blackbox(fn, estimator)(theta).backward()
    assert theta.grad is not None
    return theta.grad


@pytest.mark.parametrize(("make", "dtype", "argument"), LOST)
def test_a_perturbation_below_resolution_warns_and_gives_a_finite_zero(
    make: Factory, dtype: torch.dtype, argument: str
) -> None:
    theta = torch.tensor([1.0, -2.0, 0.5], dtype=dtype)
    expected = (
        f"^{argument} is below the resolution of {str(dtype)[6:]} at theta .* in 3 of 3 "
        "coordinates: the perturbed points equal theta there, so the gradient estimate there "
        "is zero"
    )
    with pytest.warns(vg.NumericalWarning, match=expected):
        grad = gradient(make(), theta)
    assert torch.equal(grad, torch.zeros_like(grad))  # finite: no 0/0, no overflowing 1/σ²


NORMAL = [
    lambda: vg.GaussianSmoothing(sigma=0.1, samples=8, seed=0),
    lambda: vg.GaussianSmoothing(sigma=0.1, samples=8, importance=False, seed=0),
    lambda: vg.FiniteDifferences(h=1e-3),
    lambda: vg.FiniteDifferences(h=1e-3, scheme="forward"),
    lambda: vg.SPSA(c=0.1, samples=4, seed=0),
    lambda: vg.ZeroGrads(sigma=0.1, samples=8, seed=0),
]


@pytest.mark.parametrize("make", NORMAL)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_ordinary_perturbations_do_not_warn(make: Factory, dtype: torch.dtype) -> None:
    theta = torch.tensor([1.0, -2.0, 0.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grad = gradient(make(), theta)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_only_the_lost_coordinates_are_counted_and_the_others_keep_their_gradient() -> None:
    theta = torch.tensor([1e8, 0.5], dtype=torch.float32)  # float32 spacing at 1e8 is 8
    with pytest.warns(vg.NumericalWarning, match=r"h=0.001 .*\(\|theta\| up to 1e\+08\) in 1 of 2"):
        grad = gradient(
            vg.FiniteDifferences(h=1e-3), theta, lambda r: float(r[0].double() - 1e8 + 3 * r[1])
        )
    assert grad[0] == 0 and grad[1] == pytest.approx(3.0, rel=1e-3)


def test_smoothing_just_below_resolution_is_named_as_biased() -> None:
    # σ between the realized reach and half the float32 spacing at 1e4 (4.9e-4): some
    # points move, most do not, so the estimate shrinks instead of vanishing.
    theta = torch.tensor([1e4], dtype=torch.float32)
    estimator = vg.GaussianSmoothing(sigma=3e-4, samples=256, seed=0)
    with pytest.warns(vg.NumericalWarning, match="sigma=0.0003 .* biased toward zero"):
        gradient(estimator, theta, lambda r: float(r[0].double() - 1e4))


def test_a_scheduled_sigma_is_named_with_its_step() -> None:
    estimator = vg.GaussianSmoothing(sigma=1e-300, samples=2, schedule=lambda s, t: s, seed=0)
    estimator.step()
    with pytest.warns(vg.NumericalWarning, match=r"^sigma \(scheduled, step 1\)=1e-300"):
        gradient(estimator, torch.ones(2, dtype=torch.float64))


def test_the_warning_points_at_the_call_of_the_black_box() -> None:
    with pytest.warns(vg.NumericalWarning) as caught:
        gradient(vg.FiniteDifferences(h=1e-30), torch.ones(2, dtype=torch.float64))
    assert caught[0].filename == __file__


def test_a_lost_step_gives_zero_not_noise_over_zero() -> None:
    # A noisy F gives different values at two equal points; dividing their difference by
    # the lost step would return ~1e29.
    def noisy(row: torch.Tensor, seed: int) -> float:
        return (
            float(row.sum())
            + 1e-3 * torch.randn(1, generator=torch.Generator().manual_seed(seed)).item()
        )

    with pytest.warns(vg.NumericalWarning):
        grad = gradient(
            vg.FiniteDifferences(h=1e-30, seed=0), torch.ones(2, dtype=torch.float64), noisy
        )
    assert torch.equal(grad, torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("importance", [True, False])
def test_float16_weights_do_not_overflow_for_a_small_sigma(importance: bool) -> None:
    # At θ = 0 float16 resolves σ = 1e-5, but the weight sqrt(2/π)/σ = 8e4 (or 1/σ² = 1e10)
    # is beyond float16's 65504: the estimate was inf. One pair: no averaging hides it.
    estimator = vg.GaussianSmoothing(sigma=1e-5, samples=2, importance=importance, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grad = gradient(estimator, torch.zeros(1, dtype=torch.float16), lambda r: float(r[0]))
    assert torch.isfinite(grad).all() and 0 < grad.item() < 10  # F = x: |τ|·w ≥ 0, of order 1


def test_smoothing_weighs_by_the_drawn_offsets_which_stay_unbiased_at_coarse_resolution() -> None:
    # float16 at θ = 1: spacing 2^-10 ≈ 1.6σ. The rounding of θ ± τ varies from draw to draw
    # and averages out, so weights from the drawn τ keep a linear F's slope unbiased; weights
    # from the rounded steps (as finite differences rightly use) would give 1.055, which the
    # same check rejects.
    sigma, K = 6e-4, 500
    theta = torch.ones(K, 1, dtype=torch.float16, requires_grad=True)
    vectorized = vg.Evaluator(lambda X: X[:, 0].double() - 1, backend="vectorized")
    make = lambda: vg.GaussianSmoothing(sigma, samples=256, importance=False, seed=0)  # noqa: E731
    vg.blackbox(vectorized, make())(theta).sum().backward()
    assert theta.grad is not None
    truth = torch.ones(1, dtype=torch.float64)
    assert_unbiased(theta.grad.double(), truth)

    centre, tau = theta.detach().unsqueeze(1), make().ask(theta.detach()).context.offsets  # same
    steps = ((centre + tau).double() - (centre - tau).double()) / 2  # rounded in float16
    rounded = (steps * steps).mean(1) / sigma**2  # F = x − 1: the signal is the step itself
    assert fails_unbiased_check(rounded, truth)


@pytest.mark.parametrize(
    ("make", "dtype", "argument"),
    [
        (lambda: vg.FiniteDifferences(h=1e5), torch.float16, "h=1e[+]05"),
        (lambda: vg.FiniteDifferences(h=1e308), torch.float64, "h=1e[+]308"),  # the step: 2e308
        (lambda: vg.SPSA(c=1e5, seed=0), torch.float16, "c=1e[+]05"),
        (
            lambda: vg.GaussianSmoothing(sigma=1e5, samples=4, seed=0),
            torch.float16,
            "sigma=1e[+]05",
        ),
        (lambda: vg.ZeroGrads(sigma=1e5, samples=4, seed=0), torch.float16, "sigma=1e[+]05"),
    ],
)
def test_a_perturbation_that_overflows_the_dtype_is_refused(make, dtype, argument) -> None:
    # The points (or the step between them) would be infinite: the estimate was inf or NaN.
    theta = torch.ones(2, dtype=dtype, requires_grad=True)
    with pytest.raises(ValueError, match=rf"^{argument} overflows {str(dtype)[6:]} at theta"):
        vg.blackbox(lambda r: float(r.double().sum()), make())(theta)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: vg.GaussianSmoothing(0.1, 2, seed=s),
        lambda s: vg.SPSA(0.1, seed=s),
        lambda s: vg.FiniteDifferences(0.1, seed=s),
        lambda s: vg.ZeroGrads(0.1, seed=s),
    ],
)
@pytest.mark.parametrize("seed", [-1, 1.5, True, "0", 2**64])
def test_bad_seeds_are_refused_by_every_black_box_estimator(make, seed) -> None:
    with pytest.raises(ValueError, match=r"^seed must be a non-negative int or None; got"):
        make(seed)


def test_the_largest_torch_seed_is_accepted() -> None:
    query = vg.SPSA(0.1, seed=2**64 - 1).ask(torch.zeros(1, 2))
    assert query.inputs.shape == (1, 2, 2)
