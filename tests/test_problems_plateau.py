"""The plateau problem: a hard-edged rasterizer whose loss is flat off the target."""

from __future__ import annotations

import pytest
import torch

import voidgrad as vg
from voidgrad.problems import PROBLEMS, PlateauProblem, make


@pytest.fixture
def problem() -> PlateauProblem:
    return PlateauProblem()


def _random_positions(n: int, low: float = -0.2, high: float = 1.2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return low + (high - low) * torch.rand(n, 2, generator=generator, dtype=torch.float64)


def test_protocol_attributes(problem: PlateauProblem) -> None:
    assert problem.name == "plateau"
    assert problem.dim == 2
    assert problem.x0.shape == (2,) and problem.x_target.shape == (2,)
    assert torch.allclose(problem.x0, torch.tensor([0.72, 0.68]))
    # the target is rounded to the pixel grid: (0.3, 0.35) -> (19/64, 22/64)
    assert problem.x_target.tolist() == [19 / 64, 22 / 64]
    assert problem.target_image.shape == (64, 64)


def test_render_is_binary_with_a_fixed_pixel_count(problem: PlateauProblem) -> None:
    for x in _random_positions(200):
        image = problem.render(x)
        assert image.shape == (64, 64) and image.dtype == torch.float32
        assert set(image.unique().tolist()) <= {0.0, 1.0}
        assert int(image.sum()) == problem.square**2  # clamped inside the image


def test_render_is_the_square_at_its_centre(problem: PlateauProblem) -> None:
    image = problem.render(torch.tensor([0.5, 0.25]))
    rows = image.sum(1).nonzero().flatten()
    columns = image.sum(0).nonzero().flatten()
    # centre 0.5 * 64 = 32, side 10 pixels: columns 27..36; y = 0.25 -> rows 11..20
    assert columns.tolist() == list(range(27, 37))
    assert rows.tolist() == list(range(11, 21))


def test_render_accepts_sequences_and_arrays(problem: PlateauProblem) -> None:
    expected = problem.render(torch.tensor([0.4, 0.6]))
    assert torch.equal(problem.render([0.4, 0.6]), expected)
    assert torch.equal(problem.render(torch.tensor([0.4, 0.6]).numpy()), expected)


def test_loss_is_flat_on_the_plateau(problem: PlateauProblem) -> None:
    plateau = 2 * problem.square**2 / problem.size**2
    far = [(0.72, 0.68), (0.8, 0.2), (0.15, 0.85), (0.6, 0.6), (0.5, 0.1)]
    losses = [problem.loss(torch.tensor(x)) for x in far]
    assert losses == [plateau] * len(far)


def test_loss_is_zero_at_the_target_and_positive_a_pixel_away(problem: PlateauProblem) -> None:
    assert problem.loss(problem.x_target) == 0.0
    assert problem.loss(torch.tensor([0.3, 0.35])) == 0.0
    pixel = 1 / problem.size
    assert problem.loss(problem.x_target + torch.tensor([pixel, 0.0])) > 0.0
    assert torch.equal(problem.render(problem.x_target), problem.target_image)


def test_loss_is_a_float(problem: PlateauProblem) -> None:
    assert isinstance(problem.loss(problem.x0), float)


def test_hard_render_matches_render(problem: PlateauProblem) -> None:
    for x in _random_positions(300).float():
        assert torch.equal(problem.render_hard(x), problem.render(x))
        assert problem.loss_hard(x).item() == pytest.approx(problem.loss(x), abs=1e-7)


@pytest.mark.parametrize("x", [(0.72, 0.68), (0.31, 0.36), (0.29, 0.34), (0.5, 0.4)])
def test_autograd_gradient_of_hard_render_is_exactly_zero(
    problem: PlateauProblem, x: tuple[float, float]
) -> None:
    theta = torch.tensor(x, requires_grad=True)
    loss = problem.loss_hard(theta)
    loss.backward()
    assert loss.requires_grad
    assert theta.grad is not None
    assert torch.equal(theta.grad, torch.zeros(2))


def test_finite_differences_are_zero_on_the_plateau(problem: PlateauProblem) -> None:
    loss = vg.blackbox(problem.loss, vg.FiniteDifferences(h=1e-3))
    theta = problem.x0.clone().requires_grad_(True)
    loss(theta).backward()
    assert torch.equal(theta.grad, torch.zeros(2))


def test_smoothed_gradient_points_towards_the_target(problem: PlateauProblem) -> None:
    loss = vg.blackbox(problem.loss, vg.GaussianSmoothing(sigma=0.25, samples=2000, seed=0))
    theta = problem.x0.clone().requires_grad_(True)
    loss(theta).backward()
    direction = problem.x_target - problem.x0
    cosine = torch.dot(-theta.grad, direction) / (theta.grad.norm() * direction.norm())
    assert cosine > 0.8


def test_custom_size_and_square() -> None:
    problem = PlateauProblem(size=32, square=4, start=(0.8, 0.8), target=(0.2, 0.2))
    assert problem.render(problem.x0).shape == (32, 32)
    assert problem.loss(problem.x_target) == 0.0
    assert problem.loss(problem.x0) == 2 * 16 / 32**2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 4}, "size"),
        ({"size": 64.0}, "size"),
        ({"size": True}, "size"),
        ({"square": 0}, "square"),
        ({"square": 64}, "square"),
        ({"square": 2.5}, "square"),
        ({"start": (0.5,)}, "start"),
        ({"start": (0.5, 1.5)}, "start"),
        ({"start": "ab"}, "start"),
        ({"start": 0.5}, "start"),
        ({"target": (float("nan"), 0.5)}, "target"),
        ({"target": (-0.1, 0.5)}, "target"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{message} must"):
        PlateauProblem(**kwargs)


@pytest.mark.parametrize("x", [[0.5], [0.1, 0.2, 0.3], [float("nan"), 0.5]])
def test_bad_positions_raise(problem: PlateauProblem, x: list[float]) -> None:
    with pytest.raises(ValueError, match="x must"):
        problem.loss(torch.tensor(x))


def test_hard_render_wants_a_tensor(problem: PlateauProblem) -> None:
    with pytest.raises(ValueError, match="x must be a tensor of shape"):
        problem.render_hard([0.5, 0.5])  # type: ignore[arg-type]


def test_make_builds_the_plateau_problem() -> None:
    assert "plateau" in PROBLEMS
    problem = make("plateau", seed=3, size=32, square=6)
    assert isinstance(problem, PlateauProblem)
    assert problem.size == 32 and problem.square == 6
    assert torch.equal(make("plateau", seed=1).target_image, make("plateau").target_image)


def test_make_rejects_unknown_names_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown problem 'nope'.*'plateau'"):
        make("nope")


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_make_rejects_bad_seeds(seed: object) -> None:
    with pytest.raises(ValueError, match="seed must"):
        make("plateau", seed=seed)  # type: ignore[arg-type]
