"""MixedGradient: the mixing and the bias check replayed by hand, the fallback, bad input."""

from __future__ import annotations

import io
import math

import pytest
import torch

import voidgrad as vg
from voidgrad.estimators.mixing import MixedGradient

F64 = torch.float64
D = 20
SLOPE = torch.linspace(-1.0, 2.0, D, dtype=F64)


def linear(points: torch.Tensor) -> torch.Tensor:
    return points @ SLOPE


def cubic(points: torch.Tensor) -> torch.Tensor:
    return (points**3).sum(-1) + points[..., 0] * points[..., -1]


def estimate_at(
    estimator: MixedGradient, theta: torch.Tensor, fn=linear
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    query = estimator.ask(theta)
    estimate = estimator.tell(query, fn(query.inputs))
    assert estimate.vjp is not None
    grad, variance = estimate.vjp(torch.ones(theta.shape[0], dtype=theta.dtype))
    return grad[0], None if variance is None else variance[0], estimate.stats["gamma"]


def test_seeded_estimate_replays_the_mixing_and_the_check_by_hand() -> None:
    d, n, sigma, seed, z = 4, 6, 0.3, 5, 2.0
    theta = torch.tensor([[0.2, -0.4, 0.1, 0.5]], dtype=F64)

    def guide(x: torch.Tensor) -> torch.Tensor:  # near ∇cubic, so that the check passes
        return 3 * x**2 + 0.1

    estimator = MixedGradient(sigma, 2 * n, guide, guide_variance=0.5, z=z, seed=seed)
    grad, variance, gamma = estimate_at(estimator, theta, cubic)
    generator = torch.Generator().manual_seed(seed)
    eps = sigma * torch.randn((n, d), generator=generator, dtype=F64)
    terms = eps / sigma**2 * ((cubic(theta + eps) - cubic(theta - eps)) / 2)[:, None]
    g0 = terms.mean(0)
    v0 = (terms.pow(2).sum() - n * g0.pow(2).sum()) / (n * (n - 1))
    g1 = guide(theta[0])
    e = g1 / g1.norm()
    along = terms @ e
    v0e = (along.pow(2).sum() - n * along.mean() ** 2) / (n * (n - 1))
    assert (g1 - g0).pow(2).sum() <= z**2 * (v0 + 0.5)
    assert (g1.norm() - along.mean()) ** 2 <= z**2 * (v0e + 0.5)
    expected_gamma = float(v0 / (v0 + 0.5))
    assert gamma == pytest.approx(expected_gamma, rel=1e-12)
    torch.testing.assert_close(grad, expected_gamma * g1 + (1 - expected_gamma) * g0)
    torch.testing.assert_close(variance, (1 - expected_gamma) ** 2 * v0 + expected_gamma**2 * 0.5)


def test_a_guide_equal_to_the_gradient_of_a_linear_function_is_returned() -> None:
    theta = torch.zeros(1, D, dtype=F64)
    for seed in range(5):
        grad, _, gamma = estimate_at(MixedGradient(0.1, 8, lambda x: SLOPE, seed=seed), theta)
        assert gamma == 1.0
        torch.testing.assert_close(grad, SLOPE)


@pytest.mark.parametrize("wrong", ["long", "negative"])
def test_a_wildly_wrong_guide_falls_back_to_plain_smoothing_exactly(wrong: str) -> None:
    guide = (lambda x: 100 * SLOPE) if wrong == "long" else (lambda x: -SLOPE)
    theta = torch.full((1, D), 0.3, dtype=F64)
    for seed in range(5):
        grad, variance, gamma = estimate_at(MixedGradient(0.1, 8, guide, seed=seed), theta)
        plain = vg.GaussianSmoothing(0.1, 8, importance=False, seed=seed)
        query = plain.ask(theta)
        estimate = plain.tell(query, linear(query.inputs))
        assert estimate.vjp is not None
        expected, expected_variance = estimate.vjp(torch.ones(1, dtype=F64))
        assert gamma == 0.0
        assert torch.equal(grad, expected[0]) and torch.equal(variance, expected_variance[0])


def test_the_check_along_the_guide_catches_what_the_norm_misses() -> None:
    # −∇F at d = 20, n = 4: ‖g₁ − ĝ₀‖² ≈ 4‖∇F‖² is within z²V₀ ≈ 21 ‖∇F‖²; along the guide the
    # gap 2‖∇F‖ is about 3 standard deviations. Measured: rejected in 19 of 20 seeds.
    theta = torch.zeros(1, D, dtype=F64)
    gammas = [
        estimate_at(MixedGradient(0.1, 8, lambda x: -SLOPE, seed=seed), theta)[2]
        for seed in range(20)
    ]
    assert sum(gamma == 0.0 for gamma in gammas) >= 15


def test_vjp_scales_the_guide_by_the_incoming_gradient() -> None:
    estimator = MixedGradient(0.1, 8, lambda x: SLOPE, seed=0)
    query = estimator.ask(torch.zeros(1, D, dtype=F64))
    estimate = estimator.tell(query, linear(query.inputs))
    assert estimate.vjp is not None
    grad, _ = estimate.vjp(torch.tensor([-2.0], dtype=F64))
    torch.testing.assert_close(grad[0], -2 * SLOPE)


def test_minimize_runs_the_mixed_method_with_a_biased_twin() -> None:
    target = torch.linspace(-1.0, 1.0, 20)

    def staircase(x: torch.Tensor) -> float:
        return float(((x * 4).round() / 4 - target).pow(2).sum())

    result = vg.minimize(
        staircase,
        torch.zeros(20),
        method="mixed",
        guide=lambda x: 2 * (x - target) + 0.3,
        budget=400,
        lr=0.05,
        seed=0,
        progress=False,
    )
    assert result.nevals <= 400
    assert result.fun < 0.2 * staircase(torch.zeros(20))


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"samples": 2}, ValueError, "samples"),
        ({"samples": 5}, ValueError, "samples"),
        ({"sigma": -1.0}, ValueError, "sigma"),
        ({"guide": None}, TypeError, "guide"),
        ({"guide_variance": -1.0}, ValueError, "guide_variance"),
        ({"guide_variance": math.nan}, ValueError, "guide_variance"),
        ({"z": 0.0}, ValueError, "z"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    options: dict[str, object], error: type[Exception], name: str
) -> None:
    arguments: dict[str, object] = {"sigma": 0.1, "samples": 8, "guide": torch.cos, **options}
    with pytest.raises(error, match=name):
        MixedGradient(**arguments)  # type: ignore[arg-type]


def test_a_bad_guide_or_a_vector_output_is_refused() -> None:
    with pytest.raises(ValueError, match=r"guide must return a tensor of shape \[d\] = \[3\]"):
        MixedGradient(0.1, 4, lambda x: torch.ones(4)).ask(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="guide must return finite"):
        MixedGradient(0.1, 4, lambda x: torch.full((3,), math.nan)).ask(torch.zeros(1, 3))
    estimator = MixedGradient(0.1, 4, torch.cos)
    query = estimator.ask(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="needs a scalar F"):
        estimator.tell(query, query.inputs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_the_device_of_theta() -> None:
    theta = torch.tensor([0.3, -0.2, 0.5], device="cuda", requires_grad=True)
    target = torch.tensor([1.0, 0.0, -1.0], device="cuda")
    estimator = MixedGradient(0.1, 8, lambda x: (2 * (x - target)).cpu(), seed=0)
    vg.blackbox(lambda x: (x - target).pow(2).sum(), estimator)(theta).backward()
    assert theta.grad is not None and theta.grad.device.type == "cuda"


# --------------------------------------------------------------------------- schedule, CRN


def round_trip(state: dict[str, object]) -> dict[str, object]:
    """``state`` through torch.save and a weights-only torch.load, as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_the_schedule_advances_sigma_per_step_and_round_trips_in_the_state() -> None:
    schedule = vg.LinearAnneal(sigma_min=0.05, total_steps=4)
    estimator = MixedGradient(0.2, 8, lambda x: SLOPE, schedule=schedule, seed=1)
    plain = vg.GaussianSmoothing(0.2, 8, importance=False, schedule=schedule, seed=1)
    theta = torch.zeros(1, D, dtype=F64)
    sigmas = []
    for _ in range(3):
        sigmas.append(estimator.sigma)
        assert torch.equal(estimator.ask(theta).inputs, plain.ask(theta).inputs)
        estimator.step()
        plain.step()
    assert sigmas == pytest.approx([0.2, 0.1625, 0.125])
    state = round_trip(estimator.state_dict())
    assert state["steps"] == 3
    resumed = MixedGradient(0.2, 8, lambda x: SLOPE, schedule=schedule)
    resumed.load_state_dict(state)
    assert resumed.sigma == estimator.sigma == pytest.approx(0.0875)
    assert torch.equal(resumed.ask(theta).inputs, estimator.ask(theta).inputs)
    with pytest.raises(ValueError, match="steps"):
        resumed.load_state_dict({**state, "steps": -1})


def test_the_bias_check_reads_out_with_the_sigma_of_the_ask() -> None:
    # σ drops tenfold between the ask and the tell; the check along the guide must still use
    # the σ of the offsets. With the tell's σ its estimate along the guide is 100 times too
    # large, about 2.8 of its own standard deviations at 16 pairs: γ = 0 in 5 of 5 seeds.
    theta = torch.zeros(1, D, dtype=F64)

    def schedule(sigma0: float, step: int) -> float:
        return sigma0 / 10**step

    for seed in range(5):
        estimator = MixedGradient(0.2, 32, lambda x: SLOPE, schedule=schedule, seed=seed)
        query = estimator.ask(theta)
        estimator.step()
        estimate = estimator.tell(query, linear(query.inputs))
        fixed = MixedGradient(0.2, 32, lambda x: SLOPE, seed=seed)
        expected = fixed.tell(fixed.ask(theta), linear(query.inputs))
        assert estimate.stats["gamma"] == expected.stats["gamma"] == 1.0


@pytest.mark.parametrize("common", [False, True])
def test_common_random_numbers_give_the_two_points_of_a_pair_one_seed(common: bool) -> None:
    theta = torch.zeros(2, D, dtype=F64)
    estimator = MixedGradient(0.1, 8, lambda x: SLOPE, common_random_numbers=common, seed=2)
    seeds = estimator.ask(theta).seeds
    assert seeds is not None and seeds.shape == (2, 8)
    plus, minus = seeds.chunk(2, dim=1)
    assert torch.equal(plus, minus) == common
    if not common:  # the default keeps the stream bit for bit
        default = MixedGradient(0.1, 8, lambda x: SLOPE, seed=2).ask(theta).seeds
        assert default is not None and torch.equal(default, seeds)
