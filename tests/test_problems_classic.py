"""The Problem protocol, the classic functions and the Akima toy, and building them by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from voidgrad.problems import (
    PROBLEMS,
    AkimaProblem,
    AkimaSpline,
    PlateauProblem,
    Problem,
    Rastrigin,
    Rosenbrock,
    Sphere,
    make,
)
from voidgrad.problems.akima import AKIMA_NODES, AKIMA_VALUES

CLASSIC = [Sphere, Rosenbrock, Rastrigin]


# --- the protocol, for every registered problem ---------------------------------------


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_every_problem_satisfies_the_protocol(name: str) -> None:
    problem = make(name)
    assert isinstance(problem, Problem)
    assert problem.name == name
    assert problem.x0.shape == (problem.dim,)
    if problem.x_target is not None:  # digits_mlp knows only a lower bound
        assert problem.x_target.shape == (problem.dim,)
        assert problem.loss(problem.x_target) == problem.optimum
    assert problem.optimum <= problem.threshold < problem.loss(problem.x0)
    assert isinstance(problem.loss(problem.x0), float)
    assert isinstance(problem.render(problem.x0), torch.Tensor)


def test_plateau_threshold_means_at_most_one_pixel_off_along_each_axis() -> None:
    problem = PlateauProblem()
    pixel = 1 / problem.size
    assert problem.optimum == 0.0
    assert problem.threshold == 2 * (2 * 10 - 1) / 64**2
    for offset in [(1, 0), (0, -1), (1, 1), (-1, 1)]:
        x = problem.x_target + pixel * torch.tensor(offset, dtype=torch.float32)
        assert problem.loss(x) <= problem.threshold
    for offset in [(2, 0), (0, 2), (2, 1), (-1, -2)]:
        x = problem.x_target + pixel * torch.tensor(offset, dtype=torch.float32)
        assert problem.loss(x) > problem.threshold
    assert PlateauProblem(size=16, square=2).threshold == 6 / 16**2 < 8 / 16**2
    assert PlateauProblem(size=16, square=1).threshold == 0.0


# --- the classic functions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "x", "expected"),
    [
        (Sphere(dim=3), [1.0, 2.0, 3.0], 14.0),
        (Sphere(dim=1), [-0.5], 0.25),
        (Rosenbrock(dim=2), [0.0, 0.0], 1.0),
        (Rosenbrock(dim=2), [-1.2, 1.0], 24.2),
        (Rosenbrock(dim=3), [0.0, 1.0, 2.0], 201.0),
        (Rosenbrock(dim=3), [1.0, 1.0, 1.0], 0.0),
        (Rastrigin(dim=1), [0.5], 20.25),
        (Rastrigin(dim=3), [1.0, 0.5, 0.0], 21.25),
        (Rastrigin(dim=2), [0.25, -0.25], 2 * (0.0625 + 10.0)),
    ],
)
def test_classic_values_at_hand_computed_points(
    problem: Problem, x: list[float], expected: float
) -> None:
    value = problem.loss(torch.tensor(x, dtype=torch.float64))
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("cls", CLASSIC)
@pytest.mark.parametrize("dim", [2, 5, 10])
def test_classic_optimum_at_the_target(cls: type[Sphere], dim: int) -> None:
    problem = cls(dim=dim)
    assert problem.optimum == 0.0
    assert problem.loss(problem.x_target) == 0.0
    expected = torch.ones(dim) if cls is Rosenbrock else torch.zeros(dim)
    assert torch.equal(problem.x_target, expected.double())


@pytest.mark.parametrize("cls", CLASSIC)
def test_loss_batch_agrees_with_loss(cls: type[Sphere]) -> None:
    problem = cls(dim=7, seed=1)
    X = 3 * torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = problem.loss_batch(X)
    assert batch.shape == (50,) and batch.dtype == torch.float64
    single = torch.tensor([problem.loss(x) for x in X], dtype=torch.float64)
    assert torch.allclose(batch, single, rtol=1e-12, atol=1e-12)
    assert problem.loss_batch(X.float()).dtype == torch.float32
    assert torch.equal(problem.loss_batch(X.numpy()), batch)


@pytest.mark.parametrize("cls", CLASSIC)
def test_loss_accepts_tensors_arrays_and_sequences(cls: type[Sphere]) -> None:
    problem = cls(dim=3)
    x = [0.3, -0.7, 1.1]
    expected = problem.loss(torch.tensor(x, dtype=torch.float64))
    assert problem.loss(x) == expected
    assert problem.loss(np.array(x)) == expected
    assert problem.loss(torch.tensor(x)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("cls", [Sphere, Rastrigin])
def test_seeded_starts_are_uniform_in_the_box(cls: type[Sphere]) -> None:
    starts = [cls(dim=10, seed=seed).x0 for seed in range(5)]
    assert torch.equal(starts[0], cls(dim=10, seed=0).x0)
    assert all(not torch.equal(starts[0], other) for other in starts[1:])
    assert all(float(x.abs().max()) <= 5.12 for x in starts)
    assert starts[0].dtype == torch.float64


def test_rosenbrock_start_is_the_classic_start_jittered() -> None:
    classic = torch.tensor([-1.2, 1.0, -1.2, 1.0, -1.2], dtype=torch.float64)
    starts = [Rosenbrock(dim=5, seed=seed).x0 for seed in range(4)]
    assert torch.equal(starts[0], Rosenbrock(dim=5, seed=0).x0)
    assert all(not torch.equal(starts[0], other) for other in starts[1:])
    assert all(float((x - classic).abs().max()) <= 0.5 for x in starts)


def test_rastrigin_threshold_lies_below_every_other_local_minimum() -> None:
    # one coordinate's term x² + 10 (1 − cos 2πx): at least ≈ 0.995 for |x| ≥ 1/2,
    # and at most 0.5 only for |x| < 0.051
    problem = Rastrigin(dim=1)
    far = torch.linspace(0.5, 5.12, 20_001, dtype=torch.float64).unsqueeze(1)
    assert float(problem.loss_batch(far).min()) > 0.99
    near = torch.linspace(0.0, 0.5, 20_001, dtype=torch.float64).unsqueeze(1)
    solved = near[problem.loss_batch(near) <= problem.threshold]
    assert float(solved.max()) < 0.051


@pytest.mark.parametrize("cls", CLASSIC)
def test_render_is_the_loss_on_a_slice(cls: type[Sphere]) -> None:
    problem = cls(dim=4, seed=2)
    image = problem.render(problem.x0, size=16)
    assert image.shape == (16, 16) and image.dtype == torch.float32
    (low_1, high_1), (low_2, high_2) = problem.window
    i, j = 5, 11
    point = problem.x0.clone()
    point[0] = low_1 + (j + 0.5) * (high_1 - low_1) / 16
    point[1] = low_2 + (i + 0.5) * (high_2 - low_2) / 16
    assert float(image[i, j]) == pytest.approx(problem.loss(point), rel=1e-6)


def test_render_of_a_one_dimensional_problem_is_one_row() -> None:
    image = Sphere(dim=1).render([0.0], size=8)
    assert image.shape == (1, 8)
    centres = -5.12 + (torch.arange(8) + 0.5) * 10.24 / 8
    assert torch.allclose(image[0], (centres**2).float())


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (Rosenbrock, {"dim": 1}, r"dim must be an int >= 2 for rosenbrock; got 1"),
        (Sphere, {"dim": 0}, r"dim must be an int >= 1 for sphere; got 0"),
        (Rastrigin, {"dim": 2.0}, r"dim must be an int"),
        (Sphere, {"dim": True}, r"dim must be an int"),
        (Sphere, {"seed": -1}, r"seed must be a non-negative int"),
        (Rastrigin, {"seed": 0.5}, r"seed must be a non-negative int"),
        (Sphere, {"threshold": 0.0}, r"threshold must be a positive finite number"),
        (Rosenbrock, {"threshold": math.inf}, r"threshold must be a positive finite number"),
    ],
)
def test_bad_classic_arguments_raise(cls: type[Sphere], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{message}"):
        cls(**kwargs)


def test_threshold_can_be_overridden() -> None:
    assert Sphere(threshold=1e-8).threshold == 1e-8
    assert Sphere().threshold == 1e-4 and Rosenbrock().threshold == 1e-4
    assert Rastrigin().threshold == 0.5


@pytest.mark.parametrize(
    ("x", "message"),
    [([1.0, 2.0], r"x must hold 3 numbers"), ([1.0, math.nan, 0.0], r"x must hold finite")],
)
def test_bad_points_raise(x: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Sphere(dim=3).loss(x)
    with pytest.raises(ValueError, match=message):
        Rastrigin(dim=3).render(torch.tensor(x))


def test_bad_batches_raise() -> None:
    problem = Rosenbrock(dim=3)
    with pytest.raises(ValueError, match=r"X must have shape \[n, 3\]"):
        problem.loss_batch(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"X must have shape"):
        problem.loss_batch(torch.zeros(3))
    with pytest.raises(ValueError, match="X must hold finite"):
        problem.loss_batch(torch.tensor([[0.0, math.inf, 1.0]]))
    with pytest.raises(ValueError, match="size must be an int >= 2"):
        problem.render(problem.x0, size=1)


# --- Akima's spline and the toy --------------------------------------------------------


def test_akima_spline_matches_scipy_on_the_toy() -> None:
    interpolate = pytest.importorskip("scipy.interpolate")
    spline = AkimaSpline(AKIMA_NODES, AKIMA_VALUES)
    reference = interpolate.Akima1DInterpolator(AKIMA_NODES, AKIMA_VALUES)
    x = np.concatenate([np.linspace(-100, 100, 20_001), np.linspace(-3, 9, 5_001)])
    np.testing.assert_allclose(spline(x), reference(x), rtol=0, atol=1e-12)
    nodes = np.array(AKIMA_NODES)
    np.testing.assert_allclose(spline.slopes, reference(nodes, 1), rtol=0, atol=1e-12)


def test_akima_spline_interpolates_the_nodes() -> None:
    spline = AkimaSpline(AKIMA_NODES, AKIMA_VALUES)
    values = spline(np.array(AKIMA_NODES))
    np.testing.assert_array_equal(values[:-1], AKIMA_VALUES[:-1])  # s = 0: exact
    assert values[-1] == pytest.approx(AKIMA_VALUES[-1], abs=1e-12)  # end of the last piece
    assert [spline.value(x) for x in AKIMA_NODES[:-1]] == list(AKIMA_VALUES[:-1])


@pytest.mark.parametrize("n", [3, 4, 9, 30])
def test_akima_spline_matches_scipy_on_random_data(n: int) -> None:
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(n)
    x = np.cumsum(rng.uniform(0.1, 2.0, n))
    y = rng.normal(size=n)
    grid = np.linspace(x[0], x[-1], 2_001)
    expected = interpolate.Akima1DInterpolator(x, y)(grid)
    np.testing.assert_allclose(AkimaSpline(x, y)(grid), expected, rtol=0, atol=1e-10)


def test_akima_spline_averages_the_slopes_when_both_weights_vanish() -> None:
    interpolate = pytest.importorskip("scipy.interpolate")
    # slopes 0, 0, 1, 1, 1: at x = 2 both weights are 0, so t = (0 + 1)/2
    x, y = np.arange(6.0), np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    spline = AkimaSpline(x, y)
    assert spline.slopes[2] == 0.5
    np.testing.assert_allclose(spline.slopes, interpolate.Akima1DInterpolator(x, y)(x, 1))


def test_akima_spline_is_constant_outside_the_nodes_and_value_matches_call() -> None:
    spline = AkimaSpline(AKIMA_NODES, AKIMA_VALUES)
    assert spline(-1e6) == spline(-100.0) == 9.0
    assert spline(250.0) == spline(100.0)
    x = np.linspace(-120, 120, 4_001)
    np.testing.assert_allclose([spline.value(float(v)) for v in x], spline(x), rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([0.0, 1.0], [0.0, 1.0], "x must hold at least 3 nodes"),
        ([0.0, 2.0, 1.0], [0.0, 1.0, 2.0], "x must be strictly increasing"),
        ([0.0, 1.0, 1.0], [0.0, 1.0, 2.0], "x must be strictly increasing"),
        ([0.0, 1.0, 2.0], [0.0, 1.0], "y must hold as many values as x"),
        ([0.0, 1.0, math.inf], [0.0, 1.0, 2.0], "x must be a 1-D sequence of finite"),
        ([0.0, 1.0, 2.0], "abc", "y must be a sequence of numbers"),
    ],
)
def test_bad_akima_nodes_raise(x: list[float], y: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AkimaSpline(x, y)  # type: ignore[arg-type]


def test_akima_problem_minimum_is_at_four() -> None:
    problem = AkimaProblem()
    assert problem.dim == 1 and problem.x0.tolist() == [1.1]
    assert problem.x_target.tolist() == [4.0]
    assert problem.loss([4.0]) == 0.0 == problem.optimum
    grid = torch.linspace(-110, 110, 50_001, dtype=torch.float64).unsqueeze(1)
    losses = problem.loss_batch(grid)
    assert float(losses.min()) >= 0.0
    # the other zero of S, just right of 4
    zero = float(grid[(grid[:, 0] > 4.05) & (grid[:, 0] < 4.5)][0])
    assert problem.loss([4.1163]) < 1e-6 and zero < 4.1163
    # far from both zeros, including the local minimum near 5.85, the loss is not solved
    away = (grid[:, 0] - 4.0).abs().gt(0.2) & (grid[:, 0] - 4.1163).abs().gt(0.2)
    assert float(losses[away].min()) > problem.threshold


def test_akima_problem_has_a_local_minimum_right_of_the_target() -> None:
    problem = AkimaProblem()
    grid = torch.linspace(5.0, 7.0, 20_001, dtype=torch.float64).unsqueeze(1)
    losses = problem.loss_batch(grid)
    best = int(losses.argmin())
    assert float(grid[best]) == pytest.approx(5.846, abs=1e-3)
    assert float(losses[best]) == pytest.approx(0.7306, abs=1e-3)
    assert problem.loss([6.0]) == 1.0


def test_akima_loss_and_batch_agree() -> None:
    problem = AkimaProblem()
    x = torch.linspace(-5, 12, 301, dtype=torch.float64)
    batch = problem.loss_batch(x.unsqueeze(1))
    single = torch.tensor([problem.loss(v.reshape(1)) for v in x], dtype=torch.float64)
    assert torch.allclose(batch, single, rtol=1e-12, atol=1e-12)
    assert problem.loss(np.array([2.5])) == problem.loss([2.5]) == problem.loss(torch.tensor([2.5]))


def test_akima_render_is_a_plot_with_the_point_marked() -> None:
    problem = AkimaProblem()
    image = problem.render(problem.x0, width=120, height=40)
    assert image.shape == (40, 120) and image.dtype == torch.float32
    assert torch.equal((image == 1.0).sum(0), torch.ones(120, dtype=torch.long))
    column = int((1.1 + 2.0) / 12.0 * 120)
    assert torch.all(image[:, column] > 0) and int((image == 0.5).sum()) == 39
    assert int((problem.render([50.0]) == 0.5).sum()) == 0  # outside the window: no marker


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.loss([1.0, 2.0]), r"x must hold 1 number"),
        (lambda p: p.loss([math.nan]), r"x must hold a finite number"),
        (lambda p: p.loss_batch(torch.zeros(3)), r"X must have shape \[n, 1\]"),
        (lambda p: p.render([1.0], width=1), r"width must be an int >= 2"),
        (lambda p: AkimaProblem(start=math.inf), r"start must be a finite number"),
        (lambda p: AkimaProblem(threshold=-1.0), r"threshold must be a positive"),
    ],
)
def test_bad_akima_arguments_raise(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(AkimaProblem())  # type: ignore[operator]


# --- the registry ------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(PROBLEMS) == {
        "plateau",
        "sphere",
        "rosenbrock",
        "rastrigin",
        "akima",
        "digits_mlp",
        "texture",
        "splines",
        "caustic",
    }


def test_make_passes_the_seed_to_random_instances() -> None:
    sphere = make("sphere", seed=3, dim=4)
    assert isinstance(sphere, Sphere) and sphere.dim == 4 and sphere.seed == 3
    assert torch.equal(sphere.x0, Sphere(dim=4, seed=3).x0)
    assert not torch.equal(make("rastrigin", seed=1).x0, make("rastrigin", seed=2).x0)
    assert make("rosenbrock").dim == 10
    # deterministic problems take any seed and ignore it
    assert torch.equal(make("akima", seed=7).x0, AkimaProblem().x0)
    assert isinstance(make("plateau", seed=7), PlateauProblem)


def test_make_rejects_unknown_names_listing_all_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown problem 'nope'.*'akima'.*'sphere'"):
        make("nope")
    with pytest.raises(ValueError, match="seed must"):
        make("sphere", seed=-2)
