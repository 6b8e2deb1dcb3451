"""The digits-MLP, texture and splines problems: piecewise-constant losses with known optima."""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import voidgrad as vg
from voidgrad.problems.base import Problem
from voidgrad.problems.digits_mlp import DIGIT_INDEX, DIGIT_THREE, DigitsMLPProblem
from voidgrad.problems.splines import SplinesProblem
from voidgrad.problems.texture import TextureProblem


@pytest.fixture(scope="module")
def digits() -> DigitsMLPProblem:
    return DigitsMLPProblem()


@pytest.fixture(scope="module")
def texture() -> TextureProblem:
    return TextureProblem(size=16)


@pytest.fixture(scope="module")
def splines() -> SplinesProblem:
    return SplinesProblem(curves=3, points=4)


def _nearby(problem: Problem, n: int, scale: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(n, problem.dim, generator=generator, dtype=torch.float64)
    return problem.x0 + scale * noise


# --- the protocol, dimensions, optima ---------------------------------------------------------


def test_all_satisfy_the_protocol(
    digits: DigitsMLPProblem, texture: TextureProblem, splines: SplinesProblem
) -> None:
    for problem, name in ((digits, "digits_mlp"), (texture, "texture"), (splines, "splines")):
        assert isinstance(problem, Problem)
        assert problem.name == name
        assert problem.x0.shape == (problem.dim,) and problem.x0.dtype == torch.float64
        assert problem.optimum == 0.0
        assert problem.optimum < problem.threshold < problem.loss(problem.x0)


def test_dimensions() -> None:
    assert DigitsMLPProblem.dim == 256 * 32 + 32 + 32 * 32 + 32 + 32 * 784 + 784 == 35_152
    assert TextureProblem().dim == 196_608  # the default size 256, 3 channels
    assert TextureProblem(size=16).dim == 768
    assert SplinesProblem().dim == 2 * 4 * 5
    assert SplinesProblem(curves=2, points=6).dim == 24


def test_digits_has_no_single_answer_but_reaches_zero(digits: DigitsMLPProblem) -> None:
    assert digits.x_target is None
    # the output biases alone can reproduce the 8-bit target exactly (module doc)
    W1, b1, W2, b2, W3, b3 = digits.unpack(digits.x0)
    assert W1.shape == (32, 256) and torch.equal(b3, digits.x0[-784:])  # the layout
    hidden = torch.relu(W2 @ torch.relu(W1 @ digits.input + b1) + b2)
    wanted = digits.target_image.reshape(-1).clamp(0.25 / 255, 254.75 / 255)
    x = digits.x0.clone()
    x[-784:] = torch.logit(wanted) - W3 @ hidden
    assert digits.loss(x) == 0.0
    assert torch.equal(digits.render(x), digits.target_image.to(torch.float32))


def test_texture_and_splines_vanish_at_their_targets(
    texture: TextureProblem, splines: SplinesProblem
) -> None:
    for problem in (texture, splines, TextureProblem(size=32, seed=3), SplinesProblem(seed=2)):
        assert problem.x_target is not None and problem.x_target.shape == (problem.dim,)
        assert problem.loss(problem.x_target) == 0.0


def test_digits_target_is_the_bundled_digit(digits: DigitsMLPProblem) -> None:
    image = digits.target_image
    assert image.shape == (28, 28)
    assert torch.equal(image, torch.round(255 * image) / 255)  # 8-bit
    assert float(image.min()) == 0.0 and 0.9 < float(image.max()) <= 1.0
    assert all(len(row) == 8 and all(0 <= v <= 16 for v in row) for row in DIGIT_THREE)


def test_digit_literal_matches_sklearns_data_file() -> None:
    """The literal is row 3 of scikit-learn's digits.csv.gz, read without importing sklearn.

    (Importing ``sklearn.datasets`` takes seconds; ``load_digits`` reads this very
    file: 64 pixel values and the label per row. The slow test below asks it.)
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-learn is not installed")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        pytest.skip(f"scikit-learn's digits file is not at {path}")
    with gzip.open(path, "rt") as lines:
        row = next(itertools.islice(lines, DIGIT_INDEX, None))
    values = [int(float(v)) for v in row.split(",")]
    assert values[-1] == 3
    assert values[:-1] == [v for line in DIGIT_THREE for v in line]


@pytest.mark.slow
def test_digit_literal_matches_load_digits() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits()
    assert int(data.target[DIGIT_INDEX]) == 3
    assert np.array_equal(data.images[DIGIT_INDEX], np.array(DIGIT_THREE))


def test_texture_is_scale_free_and_channel_last(texture: TextureProblem) -> None:
    t = texture.x_target
    assert bool((t > 0).all() and (t <= 1).all())
    assert torch.equal(torch.round(255 * t) / 255, t)
    image = texture.render(t)
    assert image.shape == (16, 16, 3) and image.dtype == torch.float32
    assert torch.equal(image, texture.target_image.to(torch.float32))
    assert float(image[2, 5, 1]) == pytest.approx(float(t[3 * (16 * 2 + 5) + 1]))
    # a darker copy differs only by quantization; every constant image costs the same
    assert texture.loss(0.5 * t) < texture.threshold
    constant = texture.loss(torch.full((texture.dim,), 0.3))
    assert texture.loss(torch.zeros(texture.dim)) == pytest.approx(constant, rel=1e-12)
    assert texture.loss(torch.full((texture.dim,), 7.0)) == pytest.approx(constant, rel=1e-12)


def test_splines_render_binary_images(splines: SplinesProblem) -> None:
    image = splines.render(splines.x0)
    assert image.shape == (64, 64) and image.dtype == torch.float32
    assert set(image.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(splines.render(splines.x_target), splines.target_image)
    # a curve moved entirely off the canvas draws nothing
    assert float(splines.render(splines.x_target + 5.0).sum()) == 0.0
    assert splines.loss(splines.x_target + 5.0) == pytest.approx(splines.blank_loss)
    assert splines.threshold == pytest.approx(0.1 * splines.blank_loss)
    unblurred = SplinesProblem(curves=3, points=4, blur=0.0, width=3.0)
    assert unblurred.loss(unblurred.x_target) == 0.0
    assert unblurred.loss(unblurred.x0) > unblurred.threshold


def test_digits_render(digits: DigitsMLPProblem) -> None:
    image = digits.render(digits.x0)
    assert image.shape == (28, 28) and image.dtype == torch.float32
    assert torch.equal(image, torch.round(255 * image) / 255)
    assert abs(float(image.mean()) - 0.5) < 0.1  # outputs near sigmoid(0) at the start


# --- seeds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda seed: DigitsMLPProblem(seed=seed),
        lambda seed: TextureProblem(size=8, seed=seed),
        lambda seed: SplinesProblem(curves=2, points=3, seed=seed),
    ],
)
def test_seeded_reproducibility(build: object) -> None:
    first, again, other = build(0), build(0), build(1)  # type: ignore[operator]
    assert torch.equal(first.x0, again.x0)
    assert first.loss(first.x0) == again.loss(again.x0)
    assert not torch.equal(first.x0, other.x0)
    if first.x_target is not None:
        assert torch.equal(first.x_target, again.x_target)
        assert not torch.equal(first.x_target, other.x_target)


# --- loss_batch, piecewise constancy, inputs -------------------------------------------------


@pytest.mark.parametrize("which", ["digits", "texture", "splines"])
def test_loss_batch_matches_loss(which: str, request: pytest.FixtureRequest) -> None:
    problem = request.getfixturevalue(which)
    X = _nearby(problem, 5, 0.05)
    batch = problem.loss_batch(X)
    assert batch.shape == (5,) and batch.dtype == torch.float64
    assert batch.tolist() == [problem.loss(row) for row in X]
    assert problem.loss_batch(X.float()).tolist() == [problem.loss(row.float()) for row in X]
    assert problem.loss_batch(X[:0]).shape == (0,)


@pytest.mark.parametrize(
    ("which", "coordinates", "step"),
    [
        ("digits", [0, 8_200, 9_250, 9_300, 35_000], 1.0),
        ("texture", [0, 100, 767], 0.2),
        ("splines", [0, 7, 23], 0.05),
    ],
)
def test_loss_is_piecewise_constant(
    which: str, coordinates: list[int], step: float, request: pytest.FixtureRequest
) -> None:
    problem = request.getfixturevalue(which)
    x = problem.x0
    base = problem.loss(x)
    for i in coordinates:
        for h in (1e-7, -1e-7):
            moved = x.clone()
            moved[i] += h
            assert problem.loss(moved) == base, f"coordinate {i} moved by {h}"
    moved = x.clone()
    moved[coordinates[-1]] += step
    assert problem.loss(moved) != base


@pytest.mark.parametrize("which", ["digits", "texture", "splines"])
def test_points_as_arrays_and_sequences(which: str, request: pytest.FixtureRequest) -> None:
    problem = request.getfixturevalue(which)
    expected = problem.loss(problem.x0)
    assert problem.loss(problem.x0.numpy()) == expected
    assert problem.loss(problem.x0.tolist()) == expected
    assert torch.equal(problem.render(problem.x0.tolist()), problem.render(problem.x0))


@pytest.mark.parametrize("which", ["digits", "texture", "splines"])
def test_bad_points_are_rejected(which: str, request: pytest.FixtureRequest) -> None:
    problem = request.getfixturevalue(which)
    with pytest.raises(ValueError, match=r"x must hold .* numbers"):
        problem.loss(torch.zeros(problem.dim + 1))
    with pytest.raises(ValueError, match=r"x must hold .* numbers"):
        problem.loss("not a point")
    bad = problem.x0.clone()
    bad[0] = math.nan
    with pytest.raises(ValueError, match="finite"):
        problem.loss(bad)
    with pytest.raises(ValueError, match="finite"):
        problem.render(bad)
    with pytest.raises(ValueError, match=r"X must have shape \[n, "):
        problem.loss_batch(problem.x0)
    with pytest.raises(ValueError, match="finite"):
        problem.loss_batch(bad[None])
    # huge but finite values are fine (the fast finiteness check must not reject them)
    huge = problem.x0.clone()
    huge[:2] = 1e308
    assert math.isfinite(problem.loss(huge))


# --- constructor arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: DigitsMLPProblem(seed=-1), "seed"),
        (lambda: DigitsMLPProblem(seed=1.5), "seed"),
        (lambda: DigitsMLPProblem(threshold=0), "threshold"),
        (lambda: DigitsMLPProblem(threshold=math.inf), "threshold"),
        (lambda: TextureProblem(size=3), "size"),
        (lambda: TextureProblem(size=True), "size"),
        (lambda: TextureProblem(size=8, seed=-2), "seed"),
        (lambda: TextureProblem(size=8, threshold=-1.0), "threshold"),
        (lambda: SplinesProblem(curves=0), "curves"),
        (lambda: SplinesProblem(points=1), "points"),
        (lambda: SplinesProblem(canvas=4), "canvas"),
        (lambda: SplinesProblem(width=0), "width"),
        (lambda: SplinesProblem(blur=-1.0), "blur"),
        (lambda: SplinesProblem(offset=math.nan), "offset"),
        (lambda: SplinesProblem(seed=True), "seed"),
        (lambda: SplinesProblem(threshold=0.0), "threshold"),
    ],
)
def test_constructor_arguments_are_checked(build: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()  # type: ignore[operator]


def test_thresholds_can_be_overridden() -> None:
    assert DigitsMLPProblem(threshold=0.02).threshold == 0.02
    assert TextureProblem(size=8, threshold=0.5).threshold == 0.5
    assert SplinesProblem(curves=1, points=2, threshold=1e-3).threshold == 1e-3


# --- texture: the renderer and its loss apart, and the renderer's pattern ---------------------

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ),
]


def _texture_points(problem: TextureProblem) -> list[torch.Tensor]:
    """x0, the target, a darker target, all-black, far out of range and two noisy starts."""
    generator = torch.Generator().manual_seed(7)
    noisy = [
        problem.x0 + scale * torch.randn(problem.dim, generator=generator, dtype=torch.float64)
        for scale in (0.01, 0.5)
    ]
    far = torch.full((problem.dim,), 7.0, dtype=torch.float64)
    return [problem.x0, problem.x_target, 0.5 * problem.x_target, 0 * far, far, *noisy]


@pytest.mark.parametrize("device", DEVICES)
def test_texture_image_loss_of_pixels_is_the_loss_exactly(device: str) -> None:
    for problem in (TextureProblem(size=16), TextureProblem(size=32, seed=3)):
        points = torch.stack(_texture_points(problem)).to(device)
        images = problem.pixels(points)
        assert images.shape == points.shape and images.dtype == torch.float64
        assert images.device == points.device
        expected = torch.tensor([problem.loss(row) for row in points], dtype=torch.float64)
        # bit for bit on the CPU; a GPU may sum the last dot product in another order
        same = torch.equal if device == "cpu" else torch.allclose
        assert same(torch.stack([problem.image_loss(image) for image in images]).cpu(), expected)
        assert same(problem.image_loss(images).cpu(), expected)  # rows at once
        # with a graph recorded through it, the same numbers
        tracked = images.clone().requires_grad_(True)
        assert same(problem.image_loss(tracked).detach().cpu(), expected)
        assert problem.image_loss(tracked).requires_grad
        # the float32 points a renderer would take quantize the same way
        assert torch.equal(problem.pixels(points[0].float()), images[0])


def test_texture_pixels_are_the_rendered_texture_flattened() -> None:
    problem = TextureProblem(size=16)
    for x in _texture_points(problem):
        image = problem.render(x)
        assert torch.equal(problem.pixels(x).to(torch.float32), image.reshape(-1))
    assert torch.equal(problem.pixels(problem.x_target.tolist()), problem.x_target)


def test_texture_image_loss_is_differentiable_in_the_image() -> None:
    """Autograd matches finite differences off the quantized levels; an all-black image is flat."""
    problem = TextureProblem(size=4)
    image = (0.3 + 0.4 * torch.rand(problem.dim, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(problem.image_loss, (image,))
    black = torch.zeros(problem.dim, dtype=torch.float64, requires_grad=True)
    problem.image_loss(black).backward()
    assert black.grad is not None and torch.equal(black.grad, torch.zeros(problem.dim))
    # the loss is scale-free: the gradient is orthogonal to the image
    (grad,) = torch.autograd.grad(problem.image_loss(image), image)
    assert abs(float(torch.dot(grad, image.detach()))) < 1e-12


def test_texture_pattern_is_the_sparse_identity() -> None:
    problem = TextureProblem(size=16)
    pattern = problem.jac_sparsity()
    assert pattern.layout == torch.sparse_coo and pattern.shape == (768, 768)
    assert pattern.is_coalesced() and pattern.values().numel() == 768
    index = torch.arange(768)
    assert torch.equal(pattern.indices(), torch.stack([index, index]))
    assert bool(pattern.values().all())
    estimator = vg.GaussianSmoothing(0.02, 2, jac_sparsity=pattern)
    assert estimator.jac_sparsity is not None
    assert estimator.jac_sparsity.shape == (768, 768) and estimator.jac_sparsity.nnz == 768


def test_texture_fits_through_its_renderer_with_the_pattern() -> None:
    """Adam on image_loss after the smoothed renderer: 40 evaluations for 768 parameters.

    Credited through the identity pattern, one antithetic pair moves every
    texel the right way; the dense estimator at the same budget barely moves.
    """
    problem = TextureProblem(size=16)
    start = problem.loss(problem.x0)

    def fit(pattern: torch.Tensor | None) -> float:
        estimator = vg.GaussianSmoothing(0.02, 2, jac_sparsity=pattern, seed=0)
        render = vg.blackbox(vg.Evaluator(problem.pixels, backend="vectorized"), estimator)
        theta = problem.x0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([theta], lr=0.02)
        for _ in range(20):
            optimizer.zero_grad()
            problem.image_loss(render(theta)).backward()
            optimizer.step()
        return problem.loss(theta.detach())

    assert fit(problem.jac_sparsity()) < 0.1 * start
    assert fit(None) > 0.5 * start


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: p.pixels(torch.zeros(p.dim + 1)), ValueError, r"x must have shape \[48\]"),
        (lambda p: p.pixels(torch.zeros(2, 3, p.dim)), ValueError, r"or \[n, 48\]; got"),
        (lambda p: p.pixels("texels"), ValueError, r"x must hold 48 numbers .* got a str"),
        (lambda p: p.pixels(torch.full((48,), math.nan)), ValueError, "x must hold finite"),
        (lambda p: p.image_loss([0.5] * 48), TypeError, r"image must be a floating .* list"),
        (lambda p: p.image_loss(torch.ones(48, dtype=torch.int64)), TypeError, "torch.int64"),
        (lambda p: p.image_loss(torch.ones(47)), ValueError, r"image must have shape \[48\]"),
        (lambda p: p.image_loss(torch.full((48,), math.inf)), ValueError, "image .* finite"),
    ],
)
def test_texture_renderer_arguments_are_checked(call: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call(TextureProblem(size=4))  # type: ignore[operator]
