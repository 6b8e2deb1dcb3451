"""Errors a new user meets first: a theta without grad, a per-sample f, a one-element array."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli

import voidgrad as vg

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ),
]

ESTIMATORS = {
    "smoothing": lambda: vg.GaussianSmoothing(sigma=0.1, samples=4, seed=0),
    "spsa": lambda: vg.SPSA(c=0.1, samples=2, seed=0),
    "fd": lambda: vg.FiniteDifferences(h=1e-3),
    "zerograds": lambda: vg.ZeroGrads(sigma=0.1, samples=4, seed=0),
}


def square(x: torch.Tensor) -> float:
    return float(x.double().pow(2).sum())


# 1. A theta that does not require grad.


@pytest.mark.parametrize(
    ("name", "shape"),
    [pytest.param(name, (3,), id=f"{name}-single") for name in ESTIMATORS]
    + [  # ZeroGrads keeps one surrogate, for one row
        pytest.param(name, (2, 3), id=f"{name}-batch") for name in ESTIMATORS if name != "zerograds"
    ],
)
def test_a_theta_without_grad_is_refused_before_anything_is_spent(name, shape) -> None:
    calls = []

    def fn(x: torch.Tensor) -> float:
        calls.append(x)
        return square(x)

    estimator = ESTIMATORS[name]()
    bb = vg.blackbox(fn, estimator)
    theta = torch.full(shape, 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"theta does not require grad") as error:
        bb(theta)
    assert "theta.requires_grad_()" in str(error.value)
    assert "requires_grad=True" in str(error.value)
    assert "torch.no_grad()" in str(error.value)
    assert calls == [] and bb.evaluator.stats.evals == 0 and bb.last_estimate is None
    # Nothing was drawn or trained either: the next call is a fresh estimator's first one.
    value = bb(theta.requires_grad_())
    fresh = vg.blackbox(fn, ESTIMATORS[name]())(theta)
    torch.testing.assert_close(value, fresh)


@pytest.mark.parametrize("device", DEVICES)
def test_a_theta_without_grad_is_refused_on_its_device(device) -> None:
    bb = vg.blackbox(square, vg.GaussianSmoothing(sigma=0.1, samples=4, seed=0))
    with pytest.raises(ValueError, match="theta does not require grad"):
        bb(torch.zeros(2, device=device))
    assert bb.evaluator.stats.evals == 0


@pytest.mark.parametrize(
    "mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"]
)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_without_grad_mode_a_call_evaluates_the_value(mode, requires_grad) -> None:
    bb = vg.blackbox(square, vg.GaussianSmoothing(sigma=0.1, samples=4, seed=0))
    theta = torch.ones(2, dtype=torch.float64, requires_grad=requires_grad)
    with mode():
        value = bb(theta)
    assert not value.requires_grad and value.shape == ()
    assert bb.evaluator.stats.evals == 4 and bb.last_estimate is not None


def test_a_theta_computed_from_parameters_keeps_working() -> None:
    layer = torch.nn.Linear(2, 3).double()
    theta = layer(torch.ones(4, 2, dtype=torch.float64))  # a non-leaf [4, 3]
    assert not theta.is_leaf
    vg.blackbox(square, vg.SPSA(c=0.1, samples=2, seed=0))(theta).sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("train", [True, False])
def test_train_and_last_estimate_paths_are_unchanged(train) -> None:
    zerograds = vg.ZeroGrads(sigma=0.1, samples=4, seed=0)
    bb = vg.blackbox(square, zerograds, train=train)
    theta = torch.ones(3, dtype=torch.float64, requires_grad=True)
    bb(theta).backward()
    assert theta.grad is not None and bb.last_estimate is not None
    if not train:
        zerograds.update(bb.last_estimate)  # the run loop's way


# 2. vg.expectation with an f written for one sample.


@pytest.mark.parametrize(
    ("f", "got"),
    [
        (lambda z: float(z.sum()), "got a Python float 12.0"),
        (lambda z: np.float64(z.sum()), "got a NumPy scalar of dtype float64: 12.0"),
        (lambda z: z.sum(), r"got shape \(\)"),
    ],
    ids=["float", "numpy scalar", "0-d tensor"],
)
@pytest.mark.parametrize("device", DEVICES)
def test_expectation_names_f_and_the_costs_n_for_a_single_number(f, got, device) -> None:
    probs = torch.tensor([1.0, 1.0, 1.0], device=device, requires_grad=True)  # every z is 1
    with pytest.raises(ValueError, match=r"^f must return costs of shape \[N\] ") as error:
        vg.expectation(f, Bernoulli(probs=probs), samples=4, estimator=vg.ScoreFunction(seed=0))
    assert "N = 4 samples, passed to f at once as [4, 3]" in str(error.value)
    assert error.match(got)


def test_an_evaluator_passed_to_expectation_keeps_its_own_message() -> None:
    evaluator = vg.Evaluator(lambda z: float(z.sum()), backend="vectorized")
    probs = torch.full((3,), 0.5, requires_grad=True)
    with pytest.raises(ValueError, match=r"vectorized black box .* leading dimension 4"):
        vg.expectation(evaluator, Bernoulli(probs=probs), samples=4)
    assert evaluator.stats.evals == 4


def test_the_vectorized_evaluators_message_is_unchanged() -> None:
    evaluator = vg.Evaluator(lambda X: float(X.sum()), backend="vectorized")
    with pytest.raises(ValueError, match=r"^a vectorized black box must return an output with"):
        evaluator(torch.zeros(3, 2))


# 3. A NumPy array of shape (1,) is a one-element vector, kept in float64.


def one_element(x: torch.Tensor) -> np.ndarray:
    return np.array([square(x)])


def test_a_one_element_array_is_a_vector_output_in_float64() -> None:
    Y = vg.Evaluator(one_element)(torch.ones(2, 3))  # float32 rows
    assert Y.shape == (2, 1) and Y.dtype == torch.float64


def test_a_one_element_array_through_blackbox_keeps_float64_in_the_estimate() -> None:
    bb = vg.blackbox(one_element, vg.GaussianSmoothing(sigma=0.1, samples=4, seed=0))
    theta = torch.ones(3, requires_grad=True)
    value = bb(theta)
    assert value.shape == (1,) and value.dtype == torch.float32  # theta's graph, documented
    assert bb.last_estimate is not None and bb.last_estimate.value.dtype == torch.float64


@pytest.mark.parametrize(
    ("minimize", "message"),
    [
        (
            lambda: vg.minimize(one_element, torch.ones(3), budget=8, progress=False),
            r"minimize needs a scalar loss; fn returned outputs of shape \(1,\)",
        ),
        (
            lambda: vg.blackbox(one_element, vg.ZeroGrads(sigma=0.1, samples=4, seed=0))(
                torch.ones(3, requires_grad=True)
            ),
            r"ZeroGrads needs a scalar loss; the black box returned outputs of shape \(1,\)",
        ),
    ],
    ids=["minimize", "zerograds"],
)
def test_a_one_element_array_is_refused_where_a_scalar_is_needed(minimize, message) -> None:
    with pytest.raises(ValueError, match=message):
        minimize()
