"""The Evaluator: outputs, counting, budget, failure policy, seeds, argument checks."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import voidgrad as vg
from voidgrad.evaluation import Outcome, SerialBackend, Tally, VectorizedBackend


def row_sum(row: torch.Tensor) -> torch.Tensor:
    return row.sum()


def test_serial_and_vectorized_agree() -> None:
    X = torch.randn(5, 3, dtype=torch.float64)
    serial = vg.Evaluator(row_sum)(X)
    vectorized = vg.Evaluator(lambda X: X.sum(1), backend="vectorized")(X)
    torch.testing.assert_close(serial, X.sum(1))
    torch.testing.assert_close(vectorized, X.sum(1))


@pytest.mark.parametrize(
    ("fn", "shape", "dtype"),
    [
        (lambda r: float(r[0]), (), torch.float64),  # a Python float is float64
        (lambda r: r[0], (), torch.float32),
        (lambda r: torch.stack([r[0], r[1], r[0] * r[1]]), (3,), torch.float32),
        (lambda r: np.outer(r.numpy(), r.numpy()), (2, 2), torch.float32),
        (lambda r: np.float32(r[0].item()), (), torch.float32),
        (lambda r: np.float16(r[0].item()), (), torch.float32),
        (lambda r: 3, (), torch.float64),
    ],
)
def test_output_kinds_are_stacked_in_the_wider_dtype(fn, shape, dtype) -> None:
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float32)
    Y = vg.Evaluator(fn)(X)
    assert Y.shape == (2, *shape)
    assert Y.dtype == dtype


def test_a_wide_output_keeps_the_resolution_that_the_dtype_of_x_would_lose() -> None:
    # 30000.001 and 30000.002 are one number in float32 (spacing 0.002 there).
    X = torch.tensor([[0.001], [0.002]], dtype=torch.float32)
    Y = vg.Evaluator(lambda r: 30000 + float(r.double()[0]))(X)
    assert Y[1] - Y[0] == pytest.approx(0.001, rel=1e-3)


def test_a_float_loss_of_a_float32_theta_gives_the_slope_finite_differences_divide_by() -> None:
    theta = torch.tensor([3e4, 2.0], requires_grad=True)
    value = vg.blackbox(lambda x: float(x.double().sum()), vg.FiniteDifferences(h=1e-2))(theta)
    value.backward()
    assert value.dtype == torch.float32  # the graph stays in theta's dtype
    torch.testing.assert_close(theta.grad, torch.ones(2))


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
    assert "parameters: [7.0, 0.25]" in str(info.value)


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
        ValueError,
        match=r"shape \(3,\) at row 0 of 1, but earlier evaluations returned shape \(2,\)",
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


NOT_REAL_NUMBERS = {
    "python bool": (lambda r: True, "bool True"),
    "numpy bool": (lambda r: np.bool_(False), "NumPy scalar of dtype bool: False"),
    "bool tensor": (lambda r: r > 0, "torch tensor of dtype torch.bool and shape \\(2,\\)"),
    "bool array": (lambda r: np.ones(2, dtype=bool), "NumPy array of dtype bool"),
    "object array": (
        lambda r: np.array([1.0, None], dtype=object),
        "NumPy array of dtype object and shape \\(2,\\)",
    ),
    "string array": (lambda r: np.array(["a"]), "NumPy array of dtype <U1"),
    "string": (lambda r: "image.png", "str 'image.png'"),
    "None": (lambda r: None, "None \\(does fn end with a return statement\\?\\)"),
    "complex": (lambda r: 1 + 2j, "complex \\(1\\+2j\\)"),
    "complex tensor": (
        lambda r: torch.zeros(2, dtype=torch.complex64),
        "torch tensor of dtype torch.complex64",
    ),
    "list": (lambda r: [1.0, 2.0], "list \\[1.0, 2.0\\]"),
}


@pytest.mark.parametrize("on_error", ["raise", "nan"])
@pytest.mark.parametrize("case", sorted(NOT_REAL_NUMBERS))
def test_an_output_that_is_not_real_numbers_is_refused_at_once(case, on_error) -> None:
    """A wrong type cannot be right for any parameters: a usage error, whatever the policy."""
    fn, returned = NOT_REAL_NUMBERS[case]
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    calls = []

    def black_box(row: torch.Tensor) -> object:
        calls.append(1)
        return 0.5 if len(calls) < 2 else fn(row)

    ev = vg.Evaluator(black_box, on_error=on_error)
    with pytest.raises(
        TypeError, match=f"fn returned (a )?{returned}.* at row 1 of 3; a black box"
    ):
        ev(X)
    assert ev.stats.evals == 3  # it ran: counted


@pytest.mark.parametrize("case", sorted(NOT_REAL_NUMBERS))
def test_a_vectorized_output_that_is_not_real_numbers_is_refused(case) -> None:
    fn, returned = NOT_REAL_NUMBERS[case]
    ev = vg.Evaluator(lambda X: fn(X[0]), backend="vectorized", on_error="nan")
    with pytest.raises(TypeError, match=f"fn returned (a )?{returned}.* for a batch of 2 rows"):
        ev(torch.ones(2, 2))
    assert ev.stats.evals == 2


@pytest.mark.parametrize(
    "empty", [torch.zeros(0), np.zeros((2, 0)), torch.zeros(3, 0)], ids=["tensor", "array", "3x0"]
)
def test_an_empty_output_is_refused_at_once(empty) -> None:
    ev = vg.Evaluator(lambda r: empty, on_error="nan")
    with pytest.raises(ValueError, match=r"fn returned an empty output, .* at row 0 of 2"):
        ev(torch.zeros(2, 1))
    vectorized = vg.Evaluator(lambda X: torch.zeros(2, 0), backend="vectorized")
    with pytest.raises(ValueError, match=r"empty output.* for a batch of 2 rows"):
        vectorized(torch.zeros(2, 1))


def test_integer_outputs_and_unusual_numpy_dtypes_are_accepted() -> None:
    outputs = iter([torch.tensor(3), np.array(2, dtype=">f8"), np.longdouble(1.5), np.uint16(7)])
    ev = vg.Evaluator(lambda r: next(outputs))
    assert ev(torch.zeros(4, 1, dtype=torch.float64)).tolist() == [3.0, 2.0, 1.5, 7.0]


@pytest.mark.parametrize("backend", ["serial", "vectorized"])
def test_fn_writing_into_its_input_leaves_the_callers_tensor_alone(backend) -> None:
    def serial(row: torch.Tensor) -> torch.Tensor:
        value = row.sum()
        row.mul_(0).add_(123)
        return value

    def vectorized(X: torch.Tensor) -> torch.Tensor:
        value = X.sum(1)
        X.zero_()
        return value

    X = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    ev = vg.Evaluator(serial if backend == "serial" else vectorized, backend=backend)
    torch.testing.assert_close(ev(X), torch.tensor([3.0, 7.0]))
    assert X.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    torch.testing.assert_close(ev(X), torch.tensor([3.0, 7.0]))  # and again: X is intact


def test_a_differentiable_call_still_gets_a_copy_and_keeps_the_graph() -> None:
    def fn(row: torch.Tensor) -> torch.Tensor:
        value = (row * torch.tensor([2.0, 3.0])).sum()  # its gradient does not need row
        row.detach().zero_()  # writes into the storage of what fn was given
        return value

    X = torch.tensor([[1.0, 2.0]], requires_grad=True)
    vg.Evaluator(fn)(X, differentiable=True).sum().backward()
    assert X.detach().tolist() == [[1.0, 2.0]]
    torch.testing.assert_close(X.grad, torch.tensor([[2.0, 3.0]]))


def test_a_vectorized_fn_writing_into_its_seeds_leaves_the_callers_alone() -> None:
    def fn(X: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        value = seed.to(X.dtype)
        seed.zero_()
        return value

    seeds = torch.tensor([7, 8, 9])
    outcomes = VectorizedBackend().evaluate(fn, torch.zeros(3, 1), seeds)
    assert [float(o.value) for o in outcomes] == [7.0, 8.0, 9.0]  # type: ignore[arg-type]
    assert seeds.tolist() == [7, 8, 9]


@pytest.mark.parametrize("kind", ["tensor", "numpy"])
def test_a_black_box_reusing_its_output_buffer_gives_each_row_its_own_output(kind) -> None:
    """Renderers often fill the same image every call; each row must keep its own."""
    buffer = torch.zeros(2) if kind == "tensor" else np.zeros(2)

    def render(row: torch.Tensor) -> object:
        buffer[:] = row * 10 if kind == "tensor" else row.numpy() * 10
        return buffer

    Y = vg.Evaluator(render)(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert Y.tolist() == [[10.0, 20.0], [30.0, 40.0]]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_mid_batch_still_counts_the_rows_that_ran(interrupt) -> None:
    """Rows 1 to 3 of 5 ran (the third raised): the budget must see 3, and the interrupt go on."""

    def fn(row: torch.Tensor) -> float:
        if row[0] == 2:
            raise interrupt()
        return 0.0

    ev = vg.Evaluator(fn, budget=10)
    with pytest.raises(interrupt):
        ev(torch.arange(5.0)[:, None])
    assert (ev.stats.evals, ev.stats.attempts, ev.remaining) == (3, 3, 7)
    ev(torch.zeros(2, 1))
    assert ev.stats.evals == 5


def test_an_interrupted_vectorized_batch_counts_every_row() -> None:
    def fn(X: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt

    ev = vg.Evaluator(fn, backend="vectorized")
    with pytest.raises(KeyboardInterrupt):
        ev(torch.zeros(4, 1))
    assert ev.stats.evals == 4


def test_a_vectorized_output_of_the_wrong_length_still_counts_the_batch() -> None:
    ev = vg.Evaluator(lambda X: X.sum(), backend="vectorized")
    with pytest.raises(ValueError, match="leading dimension 3"):
        ev(torch.zeros(3, 2))
    assert ev.stats.evals == 3


def test_the_tally_follows_a_serial_batch() -> None:
    tally = Tally()
    outcomes = SerialBackend().evaluate(row_sum, torch.ones(4, 2), None, tally=tally)
    assert (tally.rows, tally.attempts) == (4, 4)
    assert tally.seconds == pytest.approx(sum(o.seconds for o in outcomes))


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


@pytest.mark.parametrize(
    ("seeds", "error", "message"),
    [
        ([-1, 2], ValueError, "seeds must be non-negative ints, one per row of X; got -1"),
        ([1.5, 2], ValueError, "seeds must be non-negative ints, one per row of X; got 1.5"),
        ([True, 1], ValueError, "seeds must be non-negative ints, one per row of X; got True"),
        (torch.tensor([1.0, 2.0]), TypeError, "seeds must be integers.* torch.float32 tensor"),
    ],
)
def test_bad_per_row_seeds_are_refused(seeds, error, message) -> None:
    ev = vg.Evaluator(lambda row, seed: float(seed))
    with pytest.raises(error, match=message):
        ev(torch.zeros(2, 1), seeds)
    assert ev.stats.evals == 0


@pytest.mark.parametrize("seeds", [[3, 7], torch.tensor([3, 7]), np.array([3, 7])])
def test_integer_seeds_of_any_kind_reach_fn(seeds) -> None:
    ev = vg.Evaluator(lambda row, seed: float(seed))
    assert ev(torch.zeros(2, 1), seeds).tolist() == [3.0, 7.0]


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (["a", "b"], "X must be a tensor .* of numbers"),
        (torch.zeros(2, 1, dtype=torch.complex64), "X must hold real numbers"),
    ],
)
def test_x_that_is_not_real_numbers_is_named(X, message) -> None:
    with pytest.raises(TypeError, match=message):
        vg.Evaluator(lambda row: 1.0)(X)


def test_a_long_parameter_row_is_summarised_in_the_message_and_kept_whole() -> None:
    evaluator = vg.Evaluator(lambda x: 1 / 0)
    row = torch.arange(1000, dtype=torch.float64)
    with pytest.raises(vg.EvaluationError) as caught:
        evaluator(row[None])
    message = str(caught.value)
    assert "parameters: [0, 1, 2, ..., 997, 998, 999] (shape [1000]; all of them in" in message
    assert len(message) < 300 and torch.equal(caught.value.params, row)


def test_check_budget_refuses_what_does_not_fit_and_names_a_bad_count() -> None:
    evaluator = vg.Evaluator(lambda x: float(x.sum()), budget=3)
    evaluator(torch.zeros(2, 1))
    evaluator.check_budget(1)
    with pytest.raises(vg.BudgetExhausted):
        evaluator.check_budget(2)
    with pytest.raises(ValueError, match="n must be"):
        evaluator.check_budget(-1)
