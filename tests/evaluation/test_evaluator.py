"""The Evaluator: outputs, counting, budget, failure policy, seeds, argument checks."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import voidgrad as vg
from voidgrad.evaluation import Outcome, SerialBackend


def row_sum(row: torch.Tensor) -> torch.Tensor:
    return row.sum()


def test_serial_and_vectorized_agree() -> None:
    X = torch.randn(5, 3, dtype=torch.float64)
    serial = vg.Evaluator(row_sum)(X)
    vectorized = vg.Evaluator(lambda X: X.sum(1), backend="vectorized")(X)
    torch.testing.assert_close(serial, X.sum(1))
    torch.testing.assert_close(vectorized, X.sum(1))


@pytest.mark.parametrize(
    ("fn", "shape"),
    [
        (lambda r: float(r[0]), ()),
        (lambda r: r[0], ()),
        (lambda r: torch.stack([r[0], r[1], r[0] * r[1]]), (3,)),
        (lambda r: np.outer(r.numpy(), r.numpy()), (2, 2)),
        (lambda r: np.float32(r[0].item()), ()),
        (lambda r: 3, ()),
    ],
)
def test_output_kinds_are_stacked(fn, shape) -> None:
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float32)
    Y = vg.Evaluator(fn)(X)
    assert Y.shape == (2, *shape)
    assert Y.dtype == torch.float32


def test_stats_count_evaluations_failures_and_time() -> None:
    def fn(row: torch.Tensor) -> float:
        if row[0] < 0:
            raise RuntimeError("negative")
        return float(row[0])

    ev = vg.Evaluator(fn, on_error="nan")
    ev(torch.tensor([[1.0], [-1.0], [2.0]]))
    ev(torch.tensor([[-3.0]]))
    assert ev.stats.evals == 4
    assert ev.stats.failures == 2
    assert ev.stats.seconds > 0


def test_budget_raises_before_evaluating_the_batch() -> None:
    calls = []
    ev = vg.Evaluator(lambda r: calls.append(1) or 0.0, budget=5)
    ev(torch.zeros(3, 2))
    with pytest.raises(vg.BudgetExhausted, match=r"budget=5, already used 3, a batch of 3"):
        ev(torch.zeros(3, 2))
    assert len(calls) == 3
    assert ev.stats.evals == 3
    assert ev.remaining == 2
    ev(torch.zeros(2, 2))
    assert ev.remaining == 0


def test_raise_policy_names_the_row_and_chains_the_cause() -> None:
    def fn(row: torch.Tensor) -> float:
        if row[0] == 7:
            raise ValueError("renderer crashed")
        return 0.0

    X = torch.tensor([[1.0, 0.5], [7.0, 0.25]])
    with pytest.raises(vg.EvaluationError, match=r"ValueError: renderer crashed at row 1") as info:
        vg.Evaluator(fn)(X)
    assert info.value.row == 1
    torch.testing.assert_close(info.value.params, X[1])
    assert isinstance(info.value.__cause__, ValueError)
    assert "0.2500" in str(info.value)


def test_nan_policy_returns_nan_rows_for_exceptions_and_non_finite_outputs() -> None:
    def fn(row: torch.Tensor) -> torch.Tensor:
        if row[0] == 1:
            raise RuntimeError("boom")
        if row[0] == 2:
            return torch.tensor([float("inf"), 0.0])
        return row * 10

    Y = vg.Evaluator(fn, on_error="nan")(torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]))
    torch.testing.assert_close(Y[0], torch.tensor([0.0, 10.0]))
    assert torch.isnan(Y[1]).all() and torch.isnan(Y[2]).all()


def test_raise_policy_reports_non_finite_outputs() -> None:
    ev = vg.Evaluator(lambda r: float("nan") if r[0] > 0 else 0.0)
    with pytest.raises(vg.EvaluationError, match=r"non-finite output at row 2"):
        ev(torch.tensor([[-1.0], [-2.0], [3.0]]))
    assert ev.stats.failures == 1


def test_nan_policy_with_every_evaluation_failing_and_no_known_shape() -> None:
    ev = vg.Evaluator(lambda r: 1 / 0, on_error="nan")
    with pytest.raises(vg.EvaluationError, match="all 2 evaluations failed.* ZeroDivisionError"):
        ev(torch.zeros(2, 1))
    assert ev.stats.failures == 2


def test_output_shape_change_is_an_error() -> None:
    ev = vg.Evaluator(lambda r: torch.zeros(int(r[0])))
    ev(torch.tensor([[2.0]]))
    with pytest.raises(
        ValueError, match=r"shape \(3,\), but earlier evaluations returned shape \(2,\)"
    ):
        ev(torch.tensor([[3.0]]))


def test_seeds_reach_fn_only_when_it_accepts_them() -> None:
    received = []

    def noisy(row: torch.Tensor, seed: int = -1) -> float:
        received.append(seed)
        return 0.0

    ev = vg.Evaluator(noisy)
    assert ev.accepts_seed
    ev(torch.zeros(3, 1), seeds=[4, 5, 6])
    ev(torch.zeros(1, 1))
    assert received == [4, 5, 6, -1]
    assert not vg.Evaluator(row_sum).accepts_seed
    vg.Evaluator(row_sum)(torch.zeros(2, 1), seeds=[1, 2])  # ignored, no error


def test_vectorized_backend_gets_a_seed_tensor() -> None:
    def batch_fn(X: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        return seed.to(X.dtype)

    Y = vg.Evaluator(batch_fn, backend="vectorized")(
        torch.zeros(3, 2), seeds=torch.tensor([7, 8, 9])
    )
    torch.testing.assert_close(Y, torch.tensor([7.0, 8.0, 9.0]))


def test_vectorized_exception_fails_every_row() -> None:
    def batch_fn(X: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("cluster down")

    ev = vg.Evaluator(batch_fn, backend="vectorized", on_error="raise")
    with pytest.raises(vg.EvaluationError, match="cluster down at row 0"):
        ev(torch.zeros(4, 2))
    assert ev.stats.failures == 4 and ev.stats.evals == 4


def test_vectorized_output_must_have_one_row_per_input() -> None:
    ev = vg.Evaluator(lambda X: X.sum(), backend="vectorized")
    with pytest.raises(ValueError, match=r"leading dimension 3 .* got shape \(\)"):
        ev(torch.zeros(3, 2))


def test_custom_backend_instance_is_used() -> None:
    class Recording(SerialBackend):
        def __init__(self) -> None:
            self.batches: list[int] = []

        def evaluate(self, fn, X, seeds):
            self.batches.append(X.shape[0])
            return super().evaluate(fn, X, seeds)

    backend = Recording()
    vg.Evaluator(row_sum, backend=backend)(torch.zeros(4, 2))
    assert backend.batches == [4]


def test_backend_returning_the_wrong_number_of_outcomes_is_an_error() -> None:
    class Lossy(SerialBackend):
        def evaluate(self, fn, X, seeds):
            return [Outcome(value=0.0)]

    with pytest.raises(RuntimeError, match="1 outcomes for 2 rows"):
        vg.Evaluator(row_sum, backend=Lossy())(torch.zeros(2, 1))


def test_rows_may_be_scalars_or_arrays() -> None:
    torch.testing.assert_close(
        vg.Evaluator(lambda r: r * 2)(torch.tensor([1.0, 2.0])), torch.tensor([2.0, 4.0])
    )
    images = torch.arange(24.0).reshape(2, 3, 4)
    torch.testing.assert_close(vg.Evaluator(lambda r: r.sum())(images), images.sum((1, 2)))
    labels = torch.tensor([0, 2, 1])  # integer rows, e.g. categorical samples
    Y = vg.Evaluator(lambda r: r * 1.5)(labels)
    assert Y.dtype == torch.get_default_dtype()
    torch.testing.assert_close(Y, torch.tensor([0.0, 3.0, 1.5]))


@pytest.mark.parametrize("backend", ["serial", "vectorized"])
def test_differentiable_calls_keep_the_graph(backend) -> None:
    fn = (lambda r: (r**2).sum()) if backend == "serial" else (lambda X: (X**2).sum(1))
    ev = vg.Evaluator(fn, backend=backend)
    X = torch.tensor([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    ev(X, differentiable=True).sum().backward()
    torch.testing.assert_close(X.grad, 2 * X.detach())
    assert not ev(X).requires_grad
    assert ev.stats.evals == 4


def test_outputs_follow_the_input_dtype() -> None:
    Y = vg.Evaluator(lambda r: np.float32(1.5))(torch.zeros(2, 1, dtype=torch.float64))
    assert Y.dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fn": 3}, TypeError, "fn must be callable; got int"),
        ({"backend": "process-pool"}, ValueError, "backend must be one of"),
        ({"backend": object()}, TypeError, "backend must be a name or an object"),
        ({"budget": 0}, ValueError, "budget must be a positive int or None; got 0"),
        ({"budget": 2.5}, ValueError, "budget must be a positive int"),
        ({"on_error": "ignore"}, ValueError, "on_error must be 'raise' or 'nan'; got 'ignore'"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message) -> None:
    kwargs = {"fn": row_sum, **kwargs}
    with pytest.raises(error, match=message):
        vg.Evaluator(**kwargs)


@pytest.mark.parametrize(
    ("X", "seeds", "message"),
    [
        (torch.tensor(3.0), None, r"X must have a leading batch dimension \[n, ...\]"),
        (torch.zeros(0, 2), None, "at least one row"),
        (torch.zeros(2, 2), [1], "one entry per row of X \\(2\\); got 1"),
    ],
)
def test_bad_call_arguments(X, seeds, message) -> None:
    with pytest.raises(ValueError, match=message):
        vg.Evaluator(row_sum)(X, seeds=seeds)


def test_non_numeric_output_is_a_type_error() -> None:
    with pytest.raises(
        TypeError, match="must return a float, a NumPy array or a torch tensor; got str"
    ):
        vg.Evaluator(lambda r: "image.png")(torch.zeros(1, 1))
    with pytest.raises(TypeError, match="real numbers"):
        vg.Evaluator(lambda r: torch.zeros(2, dtype=torch.complex64))(torch.zeros(1, 1))


def test_evaluator_is_a_context_manager_that_closes_its_backend() -> None:
    class Closing(SerialBackend):
        closed = False

        def close(self) -> None:
            self.closed = True

    backend = Closing()
    with vg.Evaluator(row_sum, backend=backend) as ev:
        ev(torch.zeros(1, 1))
    assert backend.closed


def test_a_missing_ray_names_the_extra_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ImportError, match=r"pip install 'voidgrad\[ray\]'"):
        vg.Evaluator(float, backend="ray")
