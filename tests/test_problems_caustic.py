"""The caustic problem: a glass heightfield, refraction, and a hard-splatted caustic image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from voidgrad.problems.base import Problem
from voidgrad.problems.caustic import CausticProblem


@pytest.fixture(scope="module")
def problem() -> CausticProblem:
    return CausticProblem(seed=0)


def _tilted(problem: CausticProblem, slope: float) -> torch.Tensor:
    """Controls on a plane S(u, v) = slope·u: B-splines reproduce linear functions."""
    peaks = (torch.arange(problem.grid, dtype=torch.float64) - 1) / (problem.grid - 3)
    return (0.5 + slope * peaks).repeat(problem.grid)


def test_satisfies_the_protocol(problem: CausticProblem) -> None:
    assert isinstance(problem, Problem)
    assert problem.name == "caustic"
    assert problem.dim == 32 * 32
    assert problem.x0.shape == problem.x_target.shape == (problem.dim,)
    assert problem.optimum == 0.0


def test_loss_is_zero_at_the_target_and_above_threshold_at_the_start(
    problem: CausticProblem,
) -> None:
    assert problem.loss(problem.x_target) == 0.0
    start = problem.loss(problem.x0)
    assert isinstance(start, float)
    assert start > problem.threshold > 0
    assert problem.threshold == pytest.approx(0.1 * start, rel=1e-12)
    assert problem.loss(problem.x0.tolist()) == start
    assert problem.loss(problem.x0.numpy()) == start


def test_start_is_jittered_around_one_half(problem: CausticProblem) -> None:
    assert abs(float(problem.x0.mean()) - 0.5) < 0.01
    assert 0.04 < float(problem.x0.std()) < 0.06
    assert not torch.equal(problem.x0, problem.x_target)


def test_seeded_reproducibility() -> None:
    first, again, other = CausticProblem(seed=3), CausticProblem(seed=3), CausticProblem(seed=4)
    assert torch.equal(first.x0, again.x0)
    assert torch.equal(first.x_target, again.x_target)
    assert torch.equal(first.target_image, again.target_image)
    assert first.threshold == again.threshold
    assert not torch.equal(first.x0, other.x0)
    assert not torch.equal(first.x_target, other.x_target)
    assert not torch.equal(first.target_image, other.target_image)


def test_loss_batch_agrees_with_loss(problem: CausticProblem) -> None:
    generator = torch.Generator().manual_seed(0)
    rows = [problem.x0, problem.x_target]
    rows += [problem.x0 + 0.02 * torch.randn(problem.dim, generator=generator, dtype=torch.float64)]
    values = problem.loss_batch(torch.stack(rows))
    assert values.dtype == torch.float64 and values.shape == (3,)
    assert values.tolist() == [problem.loss(row) for row in rows]
    assert values[1] == 0.0
    with pytest.raises(ValueError, match="X must have shape"):
        problem.loss_batch(problem.x0)
    with pytest.raises(ValueError, match="X must have shape"):
        problem.loss_batch(torch.zeros(2, problem.dim - 1))


def test_render_is_a_normalized_image(problem: CausticProblem) -> None:
    image = problem.render(problem.x0)
    assert image.shape == (64, 64) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) == 1.0
    assert torch.equal(problem.render(problem.x_target), problem.target_image)
    # The target has structure: dark regions, a bright caustic, and everything between.
    target = problem.target_image
    assert float((target == 1.0).float().mean()) >= 0.005
    assert float((target < 0.05).float().mean()) > 0.1


def test_heightfield(problem: CausticProblem) -> None:
    surface = problem.heightfield(problem.x0)
    assert surface.shape == (256, 256) and surface.dtype == torch.float32
    # B-splines sum to 1 and reproduce linear functions (numpy: cheap on a busy machine).
    flat = problem.heightfield(torch.full((problem.dim,), 0.2, dtype=torch.float64))
    np.testing.assert_allclose(flat.numpy(), 0.75 + 0.25 * 0.2, rtol=1e-6)
    tilted = problem.heightfield(_tilted(problem, 0.4)).numpy()
    u = (np.arange(256) + 0.5) / 256
    np.testing.assert_allclose(tilted, np.tile(0.75 + 0.25 * (0.5 + 0.4 * u), (256, 1)), rtol=1e-6)


def test_flat_glass_images_uniformly(problem: CausticProblem) -> None:
    # Straight through: every 64 x 64 bin gets (256/64)² = 16 photons, normalized to 1.
    image = problem.render(torch.full((problem.dim,), 0.5, dtype=torch.float64))
    assert torch.equal(image, torch.ones(64, 64))


def test_gentle_tilt_shifts_the_light_against_the_slope(problem: CausticProblem) -> None:
    # h_u = 0.25·0.4 = 0.1: photons land about h (η − 1) h_u ≈ 0.03 (2 bins) towards −u.
    image = problem.render(_tilted(problem, 0.4))
    assert torch.all(image[:, -1] == 0) and torch.all(image[:, 0] > 0)


def test_total_internal_reflection_drops_every_ray(problem: CausticProblem) -> None:
    # h_u = 0.25·5 = 1.25 > 1/√(1.33² − 1) ≈ 1.14: every ray is reflected, none lands.
    x = _tilted(problem, 5.0)
    assert torch.equal(problem.render(x), torch.zeros(64, 64))
    assert problem.loss(x) == pytest.approx(float((problem.target_image.double() ** 2).mean()))


def test_loss_is_piecewise_constant(problem: CausticProblem) -> None:
    base = problem.loss(problem.x0)
    coordinates = range(0, problem.dim, 17)  # 61 coordinates spread over the grid
    unchanged = 0
    for i in coordinates:
        x = problem.x0.clone()
        x[i] += 1e-7
        unchanged += problem.loss(x) == base
    assert unchanged >= 0.9 * len(coordinates)  # finite differences: no useful gradient
    block = problem.x0.clone().reshape(32, 32)
    block[14:18, 14:18] += 0.05
    assert problem.loss(block.reshape(-1)) != base


def test_extreme_controls_give_a_finite_loss(problem: CausticProblem) -> None:
    for scale in (1e200, -1e200):
        x = scale * torch.linspace(-1, 1, problem.dim, dtype=torch.float64)
        image = problem.render(x)
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert math.isfinite(problem.loss(x))


def test_threshold_can_be_given() -> None:
    assert CausticProblem(grid=8, photons=32, resolution=16, threshold=0.5).threshold == 0.5


def test_smaller_instances() -> None:
    small = CausticProblem(seed=1, grid=8, photons=64, resolution=16)
    assert small.dim == 64
    assert small.render(small.x0).shape == (16, 16)
    assert small.heightfield(small.x0).shape == (64, 64)
    assert small.loss(small.x_target) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"grid": 3}, "grid"),
        ({"grid": "32"}, "grid"),
        ({"photons": 4}, "photons"),
        ({"photons": 64.0}, "photons"),
        ({"resolution": 2}, "resolution"),
        ({"ior": 1.0}, "ior"),
        ({"ior": math.nan}, "ior"),
        ({"ior": "1.33"}, "ior"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": -1.0}, "threshold"),
        ({"threshold": math.inf}, "threshold"),
    ],
)
def test_constructor_validation(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        CausticProblem(**kwargs)  # type: ignore[arg-type]


def test_point_validation(problem: CausticProblem) -> None:
    with pytest.raises(ValueError, match="x must hold 1024 numbers"):
        problem.loss(torch.zeros(10))
    with pytest.raises(ValueError, match="x must hold 1024 numbers"):
        problem.render(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="x must hold 1024 numbers"):
        problem.loss("glass")  # type: ignore[arg-type]
    bad = problem.x0.clone()
    bad[3] = math.nan
    with pytest.raises(ValueError, match="finite"):
        problem.loss(bad)
    with pytest.raises(ValueError, match="finite"):
        problem.heightfield(bad)
